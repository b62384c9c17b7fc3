"""OpenAI fine-tuning jobs as tuneops runs them: the decisions, and the job record read back from what exists.

A job is a Prefect flow run of the `retrain` flow (submitted to a deployment on a work pool, run by a worker) in
a workspace of its own, jobs/<job id>/. Nothing else records a job: its object is derived from the flow run
(state, parameters, timestamps, task runs) and from the files the pipeline wrote in its workspace (the data
quality records, the Trainer's log history, the gate, the registration). Everything here but the readers of a
workspace is pure, and unit-tested.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tuneops.config.errors import UserError
from tuneops.config.params import Params, TrainingArgs
from tuneops.config.paths import (
    CHECKPOINT_DIR,
    DATA_QUALITY_PATH,
    GATE_PATH,
    JOBS_DIR,
    REGISTERED_PATH,
    TOKENIZATION_PATH,
)
from tuneops.config.records import GateVerdict, QualityRecord, Registration

JOB_PREFIX = "ftjob-"
EVENT_PREFIX = "ftevent-"
CHECKPOINT_PREFIX = "ftckpt-"
ORGANIZATION = "tuneops"  # the <org> part of an ft: model id
FT_MODEL_TAG = "tuneops.fine_tuned_model"  # on a registered version: the ft: id /v1/models lists it under
JOB_TAG = "tuneops:fine-tuning-job"  # on every job's flow run: how jobs are told from other retrain runs
JOB_DATA_DIR = "data/raw/job"  # in a job's workspace: train.jsonl (and test.jsonl from validation_file)
FILE_CHECK_TASK = "validate-files"  # the flow's task that checks the job's files (status validating_files)
RESULTS_CSV = Path("reports/fine_tune_results.csv")  # in a job's workspace; stored as a fine-tune-results file
RESULT_COLUMNS = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
MAX_SUFFIX = 64

Status = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
Auto = Literal["auto"]


# ---------------------------------------------------------------------------------------------- the request


class Hyperparameters(BaseModel):
    """OpenAI's supervised hyperparameters: each a number or "auto" (params.yaml's value)."""

    model_config = ConfigDict(extra="forbid")

    n_epochs: Auto | int = Field(default="auto")
    batch_size: Auto | int = Field(default="auto")
    learning_rate_multiplier: Auto | float = Field(default="auto")

    @field_validator("n_epochs", "batch_size")
    @classmethod
    def _positive_int(cls, value: Any) -> Any:
        if value != "auto" and value <= 0:
            raise ValueError("must be a whole number > 0 or 'auto'")
        return value

    @field_validator("learning_rate_multiplier")
    @classmethod
    def _positive(cls, value: Any) -> Any:
        if value != "auto" and not 0 < value < float("inf"):
            raise ValueError("must be a number > 0 or 'auto'")
        return value


class Supervised(BaseModel):
    hyperparameters: Hyperparameters = Hyperparameters()


class Method(BaseModel):
    type: Literal["supervised"]
    supervised: Supervised = Supervised()


class JobRequest(BaseModel):
    """The body of POST /v1/fine_tuning/jobs."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    training_file: str
    validation_file: str | None = None
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    suffix: str | None = Field(default=None, max_length=MAX_SUFFIX)
    seed: int | None = Field(default=None, ge=0)
    metadata: dict[str, str] | None = None
    integrations: list[Any] | None = None

    @field_validator("suffix")
    @classmethod
    def _no_colon(cls, value: str | None) -> str | None:
        if value is not None and ":" in value:
            raise ValueError("no ':' in a suffix (it separates the parts of the fine-tuned model id)")
        return value

    @field_validator("metadata")
    @classmethod
    def _openai_metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and (len(value) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in value.items())):
            raise ValueError("at most 16 keys of up to 64 characters, values up to 512")
        return value

    def requested(self) -> Hyperparameters:
        """The hyperparameters asked for, under `method.supervised` or the older top-level key."""
        under_method = self.method.supervised.hyperparameters if self.method else None
        if under_method is not None and self.hyperparameters is not None and under_method != self.hyperparameters:
            raise UserError("hyperparameters: given both at the top level and under method.supervised, differently")
        return under_method or self.hyperparameters or Hyperparameters()


class Resolved(BaseModel):
    """The hyperparameters a job trains with, "auto" replaced by params.yaml's values."""

    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float


class JobSpec(BaseModel):
    """A fine-tuning job as the flow receives it (the flow run's `job` parameter)."""

    model: str
    training_file: str
    validation_file: str | None = None
    hyperparameters: Resolved
    suffix: str | None = None
    seed: int
    metadata: dict[str, str] | None = None
    overrides: dict[str, Any]


def resolve(asked: Hyperparameters, args: TrainingArgs) -> Resolved:
    return Resolved(
        n_epochs=round(args.num_train_epochs) if asked.n_epochs == "auto" else asked.n_epochs,
        batch_size=args.per_device_train_batch_size if asked.batch_size == "auto" else asked.batch_size,
        learning_rate_multiplier=1.0 if asked.learning_rate_multiplier == "auto" else asked.learning_rate_multiplier,
    )


def absolute_tracking_uri(uri: str, root: Path) -> str:
    """A relative SQLite store (params.yaml's sqlite:///mlflow.db) made absolute, so a job's workspace registers
    into the project's registry, not one of its own."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str((root / uri.removeprefix(prefix)).resolve())
    return uri


def job_overrides(request: JobRequest, params: Params, tracking: str) -> dict[str, Any]:
    """The params.yaml keys a job changes (dotted), from its request: flow parameters of its run. The flow adds
    `register.alias` (job_alias: the job's own, so a job never moves the champion nor is judged against it)."""
    args = params.train.args
    asked = request.requested()
    hp = resolve(asked, args)
    seed = request.seed if request.seed is not None else args.seed
    out: dict[str, Any] = {
        "data.source": JOB_DATA_DIR,
        "data.seed": seed,
        "train.args.seed": seed,
        "train.args.learning_rate": args.learning_rate * hp.learning_rate_multiplier,
        "train.args.num_train_epochs": float(hp.n_epochs),
        "train.args.per_device_train_batch_size": hp.batch_size,
        "register.tracking_uri": tracking,
        "flow.review_data": "never",  # nobody is there to answer a review pause: error checks still stop it
    }
    if asked.n_epochs != "auto":
        out["train.args.max_steps"] = -1  # an explicit epoch count wins over a step cap in params.yaml
    if request.model not in (params.model.name, base_model_name(params.model.name)):  # "gpt2" for ../models/gpt2
        out["model.name"] = request.model
    return out


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """params.yaml's mapping with dotted keys replaced; a key params.yaml does not have is a UserError."""
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = raw
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise UserError(f"override {dotted}: params.yaml has no section {part!r}")
            node = node[part]
        if leaf not in node:
            raise UserError(f"override {dotted}: params.yaml has no key {leaf!r}")
        node[leaf] = value
    return raw


# ---------------------------------------------------------------------------------------------------- ids


def job_id(flow_run_id: uuid.UUID | str) -> str:
    return JOB_PREFIX + uuid.UUID(str(flow_run_id)).hex


def flow_run_id(job: str) -> uuid.UUID | None:
    """The flow run a job id names, or None when it is not a job id."""
    if not job.startswith(JOB_PREFIX):
        return None
    try:
        return uuid.UUID(hex=job.removeprefix(JOB_PREFIX))
    except ValueError:
        return None


def job_alias(job: str) -> str:
    """The MLflow alias a job's registered version gets (aliases take letters, digits, '_' and '-')."""
    return job


def job_workspace(root: Path, job: str) -> Path:
    return root / JOBS_DIR / job


def base_model_name(model: str) -> str:
    """A local model directory is named by its folder; a Hub id as it is."""
    return Path(model).name if model.startswith(("/", ".", "~")) else model


def fine_tuned_model(model: str, suffix: str | None, version: str) -> str:
    return f"ft:{base_model_name(model)}:{ORGANIZATION}:{suffix or ''}:{version}"


def stable_id(prefix: str, *parts: str) -> str:
    return prefix + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


# --------------------------------------------------------------------------------------------- the status


def job_status(state_type: str | None, stages_started: bool, registered: bool) -> Status:
    """OpenAI's status from the flow run's Prefect state type (SCHEDULED, RUNNING, ...)."""
    if state_type in ("CANCELLED", "CANCELLING"):
        return "cancelled"
    if state_type in ("FAILED", "CRASHED"):
        return "failed"
    if state_type == "COMPLETED":
        return "succeeded" if registered else "failed"
    if state_type in ("RUNNING", "PAUSED"):
        return "running" if stages_started else "validating_files"
    return "queued"  # SCHEDULED, PENDING, or not yet known


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


def gate_reasons(gate: GateVerdict) -> str:
    return "; ".join(f"{c.check}: observed {c.observed}, threshold {c.threshold}" for c in gate.failed)


def job_error(
    status: Status, message: str | None, gate: GateVerdict | None, failed_task: str | None
) -> JobError | None:
    """Why a failed job failed, in OpenAI's error shape; None unless it failed."""
    if status != "failed":
        return None
    if failed_task == FILE_CHECK_TASK:
        param = "validation_file" if (message or "").startswith("validation_file") else "training_file"
        return JobError(code="invalid_training_file", message=message or "the file failed its checks", param=param)
    if gate is not None and gate.verdict == "failed":
        return JobError(code="gate_failed", message=f"gate failed: {gate_reasons(gate)}")
    return JobError(code="job_failed", message=message or "the flow run failed")


# ----------------------------------------------------------------------------------------------- pagination


def page(items: list[Any], after: str | None, limit: int) -> tuple[list[Any], bool]:
    """OpenAI's cursor pages: the `limit` items following the one whose id is `after`, and whether more follow."""
    start = 0
    if after is not None:
        ids = [item.id for item in items]
        if after not in ids:
            raise KeyError(after)
        start = ids.index(after) + 1
    chunk = items[start : start + limit]
    return chunk, start + limit < len(items)


# ------------------------------------------------------------------------------------- events, checkpoints


class Event(BaseModel):
    """OpenAI's `fine_tuning.job.event`."""

    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"] = "info"
    message: str
    type: Literal["message", "metrics"] = "message"
    data: dict[str, Any] | None = None


@dataclass(frozen=True)
class StageRun:
    """One task run of the job's flow run: a dvc.yaml stage, or the file check."""

    name: str
    started: float | None
    ended: float | None
    state_type: str | None
    message: str | None = None


@dataclass
class Timed:
    """A workspace file's content and when it was written."""

    value: Any
    at: float


@dataclass
class JobFiles:
    """What the pipeline wrote in a job's workspace (each None until written)."""

    quality: Timed | None = None  # list[QualityRecord]
    log_history: Timed | None = None  # the Trainer's log_history (per-step loss, per-evaluation metrics)
    gate: Timed | None = None  # GateVerdict
    registration: Timed | None = None  # Registration
    tokenization: dict[str, Any] | None = None
    checkpoints: list[Timed] = field(default_factory=list)  # each: (step, log_history)


def step_rows(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per logged step, OpenAI's result-file columns: training loss where the Trainer logged it, validation
    loss and token accuracy where it evaluated (train_accuracy is never measured: left empty)."""
    rows: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        step = entry.get("step")
        if step is None or not ({"loss", "eval_loss"} & entry.keys()):
            continue
        row = rows.setdefault(int(step), dict.fromkeys(RESULT_COLUMNS) | {"step": int(step)})
        if "loss" in entry:
            row["train_loss"] = float(entry["loss"])
        if "eval_loss" in entry:
            row["valid_loss"] = float(entry["eval_loss"])
            if "eval_accuracy" in entry:
                row["valid_mean_token_accuracy"] = float(entry["eval_accuracy"])
    return [rows[s] for s in sorted(rows)]


def results_csv(log_history: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in step_rows(log_history):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def _stage_events(job: str, runs: list[StageRun]) -> list[tuple[float, Event]]:
    out = []
    for run in runs:
        what = "Checking the job's files" if run.name == FILE_CHECK_TASK else f"Stage {run.name}"
        if run.started is not None:
            event = Event(
                id=stable_id(EVENT_PREFIX, job, run.name, "start"),
                created_at=int(run.started),
                message=f"{what} started",
            )
            out.append((run.started, event))
        if run.ended is not None:
            failed = run.state_type in ("FAILED", "CRASHED")
            took = f" in {run.ended - run.started:.1f} s" if run.started is not None else ""
            said = f": {run.message}" if failed and run.message else ""
            message = f"{what} {'failed' if failed else 'finished'}{took}{said}"
            event = Event(
                id=stable_id(EVENT_PREFIX, job, run.name, "end"),
                created_at=int(run.ended),
                level="error" if failed else "info",
                message=message,
            )
            out.append((run.ended, event))
    return out


def _quality_event(job: str, quality: Timed) -> tuple[float, Event]:
    records = [QualityRecord.model_validate(r) for r in quality.value]
    errors = [r for r in records if not r.passed and r.severity == "error"]
    warnings = [r for r in records if not r.passed and r.severity == "warning"]
    verdict = "failed" if errors else "passed"
    listed = "; ".join(r.line() for r in (errors or warnings)[:5])
    message = f"Data quality {verdict}: {len(records)} checks, {len(errors)} errors, {len(warnings)} warnings"
    data = {"verdict": verdict, "checks": len(records), "errors": len(errors), "warnings": len(warnings)}
    level = "error" if errors else ("warn" if warnings else "info")
    event = Event(
        id=stable_id(EVENT_PREFIX, job, "quality"),
        created_at=int(quality.at),
        level=level,
        message=message + (f" ({listed})" if listed else ""),
        data=data,
    )
    return quality.at, event


def _metric_events(job: str, history: Timed) -> list[tuple[float, Event]]:
    rows = step_rows(history.value)
    total = max((int(e["max_steps"]) for e in history.value if "max_steps" in e), default=None)
    out = []
    for row in rows:
        parts = [
            f"{k}={row[k]:.4f}" for k in ("train_loss", "valid_loss", "valid_mean_token_accuracy") if row[k] is not None
        ]
        data = {k: v for k, v in row.items() if v is not None} | ({"total_steps": total} if total else {})
        event = Event(
            id=stable_id(EVENT_PREFIX, job, "step", str(row["step"])),
            created_at=int(history.at),
            message=f"Step {row['step']}{f'/{total}' if total else ''}: {', '.join(parts)}",
            type="metrics",
            data=data,
        )
        out.append((history.at, event))
    return out


def _gate_event(job: str, gate: Timed) -> tuple[float, Event]:
    verdict = GateVerdict.model_validate(gate.value)
    failed = verdict.verdict == "failed"
    message = f"Gate failed: {gate_reasons(verdict)}" if failed else f"Gate passed: {len(verdict.checks)} checks"
    data = {"verdict": verdict.verdict, "checks": [c.model_dump() for c in verdict.checks]}
    event = Event(
        id=stable_id(EVENT_PREFIX, job, "gate"),
        created_at=int(gate.at),
        level="error" if failed else "info",
        message=message,
        data=data,
    )
    return gate.at, event


def job_events(
    job: str,
    created_at: float,
    runs: list[StageRun],
    files: JobFiles,
    status: Status,
    finished_at: float | None,
    ft_model: str | None,
    error: JobError | None,
) -> list[Event]:
    """The job's events, newest first (OpenAI's order): creation, each stage's start and end, the data-quality
    verdict, the loss at each logged step (type metrics), the gate's verdict, the registration, the end."""
    timed = [
        (
            created_at,
            Event(
                id=stable_id(EVENT_PREFIX, job, "created"),
                created_at=int(created_at),
                message="Created fine-tuning job",
            ),
        )
    ]
    timed += _stage_events(job, runs)
    if files.quality is not None:
        timed.append(_quality_event(job, files.quality))
    if files.log_history is not None:
        timed += _metric_events(job, files.log_history)
    if files.gate is not None:
        timed.append(_gate_event(job, files.gate))
    if files.registration is not None and ft_model is not None:
        reg = Registration.model_validate(files.registration.value)
        message = f"Registered {reg.name} version {reg.version} as {ft_model}"
        data = {"name": reg.name, "version": reg.version, "fine_tuned_model": ft_model}
        timed.append(
            (
                files.registration.at,
                Event(
                    id=stable_id(EVENT_PREFIX, job, "registered"),
                    created_at=int(files.registration.at),
                    message=message,
                    data=data,
                ),
            )
        )
    if finished_at is not None and status in ("succeeded", "failed", "cancelled"):
        said = {"succeeded": "The job has successfully completed", "cancelled": "The job was cancelled"}
        message = said.get(status) or f"The job failed: {error.message if error else 'unknown error'}"
        level = "error" if status == "failed" else "info"
        timed.append(
            (
                finished_at,
                Event(
                    id=stable_id(EVENT_PREFIX, job, "end"), created_at=int(finished_at), level=level, message=message
                ),
            )
        )
    order = sorted(range(len(timed)), key=lambda i: (timed[i][0], i))  # by time; ties keep their logical order
    return [timed[i][1] for i in reversed(order)]


class CheckpointMetrics(BaseModel):
    step: float
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None


class Checkpoint(BaseModel):
    """OpenAI's `fine_tuning.job.checkpoint`."""

    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    step_number: int
    metrics: CheckpointMetrics


def checkpoint_metrics(step: int, log_history: list[dict[str, Any]]) -> CheckpointMetrics:
    """At a checkpoint's step: the last training loss logged by then and the evaluation at that step, if any."""
    rows = [r for r in step_rows(log_history) if r["step"] <= step]
    train = [r["train_loss"] for r in rows if r["train_loss"] is not None]
    evals = [r for r in rows if r["valid_loss"] is not None and r["step"] == step]
    valid = evals[-1] if evals else {"valid_loss": None, "valid_mean_token_accuracy": None}
    return CheckpointMetrics(
        step=float(step),
        train_loss=train[-1] if train else None,
        valid_loss=valid["valid_loss"],
        valid_mean_token_accuracy=valid["valid_mean_token_accuracy"],
        full_valid_loss=valid["valid_loss"],
        full_valid_mean_token_accuracy=valid["valid_mean_token_accuracy"],
    )


def job_checkpoints(job: str, model: str, suffix: str | None, files: JobFiles) -> list[Checkpoint]:
    """The saved checkpoints, newest first."""
    out = []
    for saved in files.checkpoints:
        step, history = saved.value
        out.append(
            Checkpoint(
                id=stable_id(CHECKPOINT_PREFIX, job, str(step)),
                created_at=int(saved.at),
                fine_tuned_model_checkpoint=f"{fine_tuned_model(model, suffix, job)}:ckpt-step-{step}",
                fine_tuning_job_id=job,
                step_number=step,
                metrics=checkpoint_metrics(step, history),
            )
        )
    return sorted(out, key=lambda c: c.step_number, reverse=True)


def trained_tokens(tokenization: dict[str, Any] | None, epochs: float) -> int | None:
    """Tokens seen in training: the train split's tokens (after truncation) times the epochs."""
    if not tokenization:
        return None
    train = tokenization.get("splits", {}).get("train")
    if not train:
        return None
    return round(train["rows"] * train["mean"] * epochs)


# ------------------------------------------------------------------------------------- reading a workspace


def _timed_json(path: Path) -> Timed | None:
    if not path.is_file():
        return None
    try:
        return Timed(json.loads(path.read_text()), path.stat().st_mtime)
    except (OSError, json.JSONDecodeError):  # being written right now: read it next time
        return None


def read_job_files(workspace: Path) -> JobFiles:
    files = JobFiles(
        quality=_timed_json(workspace / DATA_QUALITY_PATH),
        gate=_timed_json(workspace / GATE_PATH),
        registration=_timed_json(workspace / REGISTERED_PATH),
    )
    tokenization = _timed_json(workspace / TOKENIZATION_PATH)
    files.tokenization = tokenization.value if tokenization else None
    for state_path in sorted((workspace / CHECKPOINT_DIR).glob("checkpoint-*/trainer_state.json")):
        state = _timed_json(state_path)
        if state is not None:
            files.checkpoints.append(Timed((int(state.value["global_step"]), state.value["log_history"]), state.at))
    if files.checkpoints:  # the newest checkpoint's state holds the whole history up to it
        newest = max(files.checkpoints, key=lambda c: c.value[0])
        files.log_history = Timed(newest.value[1], newest.at)
    return files


def final_log_history(workspace: Path) -> list[dict[str, Any]]:
    """The whole log history of a finished training: the newest checkpoint's trainer_state.json."""
    files = read_job_files(workspace)
    return files.log_history.value if files.log_history else []
