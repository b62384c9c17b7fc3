"""A job's events, read back from its flow run's task runs and the files the pipeline wrote in its workspace
(tuneops.jobs.results reads them): nothing else records them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, JsonValue

from tuneops.config.records import GateVerdict, QualityRecord, Registration
from tuneops.jobs.results import JobFiles, Timed, step_rows
from tuneops.jobs.spec import stable_id
from tuneops.jobs.states import FILE_CHECK_TASK, JobError, Status, gate_reasons

EVENT_PREFIX = "ftevent-"


PAUSED_STAGE = re.compile(r"paused( at step \d+)?, its checkpoint saved")  # flows/stages.py's StagePaused message


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


def _restart_event(job: str, n: int, at: float, why: str) -> tuple[float, Event]:
    message = f"The job restarted ({n}) after its process died ({why}); it resumes from its last complete checkpoint"
    return at, Event(
        id=stable_id(EVENT_PREFIX, job, "restart", str(n)), created_at=int(at), level="warn", message=message
    )


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
    restarts: Sequence[tuple[float, str]] = (),
) -> list[Event]:
    """The job's events, newest first (OpenAI's order): creation, each stage's start and end, the data-quality
    verdict, the loss at each logged step (type metrics), the gate's verdict, the registration, each restart after
    its process died (when, why), the end."""
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
    timed += [_restart_event(job, n, at, why) for n, (at, why) in enumerate(restarts, start=1)]
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
