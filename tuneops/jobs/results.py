"""A job's results, read back from the files the pipeline wrote in its workspace: OpenAI's result file (the
per-step losses as CSV), its checkpoints with their metrics, and the tokens it trained on.
"""

from __future__ import annotations

import csv
import io
import json
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
from tuneops.jobs.spec import fine_tuned_model, stable_id

CHECKPOINT_PREFIX = "ftckpt-"


RESULTS_CSV = Path("reports/fine_tune_results.csv")  # in a job's workspace; stored as a fine-tune-results file


RESULT_COLUMNS = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]

LogEntry = dict[str, float]  # one entry of the Trainer's log_history: step, epoch, loss, eval_loss, ...


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
