"""A job's events, checkpoints and result file, read back from its flow run's task runs and the files the
pipeline wrote in its workspace: nothing else records them."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, JsonValue

from tuneops.config.paths import (
    CHECKPOINT_DIR,
    DATA_QUALITY_PATH,
    GATE_PATH,
    MANIFEST_PATH,
    REGISTERED_PATH,
    STEP_LOG_PATH,
    TOKENIZATION_PATH,
)
from tuneops.config.records import GateVerdict, QualityRecord, Registration
from tuneops.jobs.spec import fine_tuned_model, stable_id
from tuneops.jobs.states import FILE_CHECK_TASK, JobError, Status, gate_reasons

EVENT_PREFIX = "ftevent-"


PAUSED_STAGE = re.compile(r"paused( at step \d+)?, its checkpoint saved")  # flows/stages.py's StagePaused message


CHECKPOINT_PREFIX = "ftckpt-"


RESULTS_CSV = Path("reports/fine_tune_results.csv")  # in a job's workspace; stored as a fine-tune-results file


RESULT_COLUMNS = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]

LogEntry = dict[str, float]  # one entry of the Trainer's log_history: step, epoch, loss, eval_loss, ...


class Event(BaseModel):
    """OpenAI's `fine_tuning.job.event`."""

    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"] = "info"
    message: str
    type: Literal["message", "metrics"] = "message"
    data: dict[str, JsonValue] | None = None


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

    value: JsonValue
    at: float


@dataclass
class JobFiles:
    """What the pipeline wrote in a job's workspace (each None until written)."""

    quality: Timed | None = None  # list[QualityRecord]
    log_history: Timed | None = None  # the Trainer's log_history (per-step loss, per-evaluation metrics)
    gate: Timed | None = None  # GateVerdict
    registration: Timed | None = None  # Registration
    manifest: Timed | None = None  # Manifest: the rows of each split
    steps: Timed | None = None  # the step log: each logged entry with its time, as training logs it
    tokenization: dict[str, JsonValue] | None = None
    checkpoints: list[Timed] = field(default_factory=list)  # each: (step, log_history)


def step_rows(log_history: list[LogEntry]) -> list[dict[str, float]]:
    """One row per logged step, OpenAI's result-file columns: training loss where the Trainer logged it, validation
    loss and token accuracy where it evaluated (train_accuracy is never measured: left empty)."""
    rows: dict[int, dict[str, float]] = {}
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


def results_csv(log_history: list[LogEntry]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in step_rows(log_history):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def _stage_events(job: str, runs: list[StageRun]) -> list[tuple[float, Event]]:
    """A start and an end event per stage run; a resumed job runs its stages again (DVC skips those done), so
    the second run of a stage has ids of its own."""
    out = []
    seen: dict[str, int] = {}
    for run in runs:
        what = "Checking the job's files" if run.name == FILE_CHECK_TASK else f"Stage {run.name}"
        nth = seen[run.name] = seen.get(run.name, 0) + 1
        key = (run.name,) if nth == 1 else (run.name, str(nth))
        if run.started is not None:
            event = Event(
                id=stable_id(EVENT_PREFIX, job, *key, "start"),
                created_at=int(run.started),
                message=f"{what} started",
            )
            out.append((run.started, event))
        if run.ended is not None:
            paused = PAUSED_STAGE.search(run.message or "")
            failed = run.state_type in ("FAILED", "CRASHED") and not paused
            took = f" in {run.ended - run.started:.1f} s" if run.started is not None else ""
            said = f": {run.message}" if failed and run.message else ""
            ended = f"paused{paused[1] or ''} (checkpoint saved)" if paused else ("failed" if failed else "finished")
            message = f"{what} {ended}{took}{said}"
            event = Event(
                id=stable_id(EVENT_PREFIX, job, *key, "end"),
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


def _metric_events(job: str, history: Timed, total: int | None) -> list[tuple[float, Event]]:
    """One metrics event per logged step, at the time it was logged (the step log's `time`; a history read from a
    checkpoint has none: then the checkpoint's time)."""
    rows = step_rows(history.value)
    times = {int(e["step"]): float(e["time"]) for e in history.value if "time" in e and "step" in e}
    out = []
    for row in rows:
        at = times.get(row["step"], history.at)
        parts = [
            f"{k}={row[k]:.4f}" for k in ("train_loss", "valid_loss", "valid_mean_token_accuracy") if row[k] is not None
        ]
        data = {k: v for k, v in row.items() if v is not None} | ({"total_steps": total} if total else {})
        event = Event(
            id=stable_id(EVENT_PREFIX, job, "step", str(row["step"])),
            created_at=int(at),
            message=f"Step {row['step']}{f'/{total}' if total else ''}: {', '.join(parts)}",
            type="metrics",
            data=data,
        )
        out.append((at, event))
    return out


def _split_event(job: str, manifest: Timed, validation_file: str | None, asked_rows: int | None) -> tuple[float, Event]:
    """Which rows train, which give the validation metrics, and which the gate scores: said once ingest split them.
    OpenAI trains on the whole training file; without a validation_file the gate still needs held-out rows."""
    rows = {name: split["rows"] for name, split in manifest.value["splits"].items()}
    if validation_file:
        message = (
            f"Training on all {rows['train']} rows of training_file; validation metrics and the gate on the "
            f"{rows['validation']} rows of validation_file {validation_file}"
        )
    else:
        total = rows["train"] + rows["validation"] + rows["test"]
        message = (
            f"Training on {rows['train']} of the {total} rows of training_file: {rows['validation']} held out for "
            f"validation metrics and {rows['test']} for the gate (send a validation_file to train on every row)"
        )
    if asked_rows is not None:
        message += f"; a seeded {asked_rows} of the training rows train (max_train_samples)"
    event = Event(id=stable_id(EVENT_PREFIX, job, "splits"), created_at=int(manifest.at), message=message, data=rows)
    return manifest.at, event


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
    validation_file: str | None = None,
    asked_rows: int | None = None,
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
    if files.manifest is not None:
        timed.append(_split_event(job, files.manifest, validation_file, asked_rows))
    if files.quality is not None:
        timed.append(_quality_event(job, files.quality))
    if files.steps is not None or files.log_history is not None:
        total = max(
            (int(e["max_steps"]) for e in (files.log_history.value if files.log_history else []) if "max_steps" in e),
            default=None,
        )
        timed += _metric_events(job, files.steps or files.log_history, total)
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


def checkpoint_metrics(step: int, log_history: list[LogEntry]) -> CheckpointMetrics:
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


def trained_tokens(tokenization: dict[str, JsonValue] | None, epochs: float) -> int | None:
    """Tokens seen in training: the train split's tokens (after truncation) times the epochs."""
    if not tokenization:
        return None
    train = tokenization.get("splits", {}).get("train")
    if not train:
        return None
    return round(train["rows"] * train["mean"] * epochs)


def _timed_json(path: Path) -> Timed | None:
    if not path.is_file():
        return None
    try:
        return Timed(json.loads(path.read_text()), path.stat().st_mtime)
    except (OSError, json.JSONDecodeError):  # being written right now: read it next time
        return None


def _step_log(path: Path) -> Timed | None:
    """The step log's entries (a line being written is left for next time); a resumed training logs again from
    its checkpoint's step: the later entry of a step wins."""
    if not path.is_file():
        return None
    entries: dict[tuple[int, bool], dict] = {}
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if {"loss", "eval_loss"} & entry.keys():  # not the run's closing summary (train_runtime, ...)
            entries[(int(entry["step"]), "eval_loss" in entry)] = entry
    return Timed([entries[k] for k in sorted(entries)], path.stat().st_mtime) if entries else None


def read_job_files(workspace: Path) -> JobFiles:
    files = JobFiles(
        quality=_timed_json(workspace / DATA_QUALITY_PATH),
        gate=_timed_json(workspace / GATE_PATH),
        registration=_timed_json(workspace / REGISTERED_PATH),
    )
    tokenization = _timed_json(workspace / TOKENIZATION_PATH)
    files.tokenization = tokenization.value if tokenization else None
    files.manifest = _timed_json(workspace / MANIFEST_PATH)
    files.steps = _step_log(workspace / STEP_LOG_PATH)
    for state_path in sorted((workspace / CHECKPOINT_DIR).glob("checkpoint-*/trainer_state.json")):
        state = _timed_json(state_path)
        if state is not None:
            files.checkpoints.append(Timed((int(state.value["global_step"]), state.value["log_history"]), state.at))
    if files.checkpoints:  # the newest checkpoint's state holds the whole history up to it
        newest = max(files.checkpoints, key=lambda c: c.value[0])
        files.log_history = Timed(newest.value[1], newest.at)
    return files


def final_log_history(workspace: Path) -> list[LogEntry]:
    """The whole log history of a finished training: the newest checkpoint's trainer_state.json."""
    files = read_job_files(workspace)
    return files.log_history.value if files.log_history else []
