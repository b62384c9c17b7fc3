"""A job's OpenAI status and error, decided from its flow run's Prefect state and what its workspace holds
(pure: unit-tested)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from tuneops.config.records import GateVerdict

FILE_CHECK_TASK = "validate-files"  # the flow's task that checks the job's files (status validating_files)


Status = Literal["validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"]

SUSPENDED = "Suspended"  # Prefect's name for a PAUSED state whose run left its worker (suspend_flow_run): a job paused

UNRESPONSIVE = "Unresponsive"  # a CRASHED state: the run stopped sending heartbeats (tuneops.jobs.orchestration)
RESTART_STATE = "AwaitingRestart"  # a SCHEDULED state: that run put back on its pool, to resume from its checkpoint
MAX_RESTARTS = 3  # a job whose machine keeps dying fails after this many restarts, saying so
# Runs (first, resumed after a pause, restarted) past which a crashed job is no longer put back on its pool: a backstop
# for crashes before the flow starts (an unloadable flow), where MAX_RESTARTS's check never runs.
MAX_RUNS = 8


def job_status(
    state_type: str | None, stages_started: bool, registered: bool, state_name: str | None = None, run_count: int = 0
) -> Status:
    """OpenAI's status from the flow run's Prefect state type (SCHEDULED, RUNNING, ...) and name. A crashed run that
    had started, within MAX_RUNS, is about to go back on its pool (queued), not failed."""
    if state_type == "PAUSED" and state_name == SUSPENDED:
        return "paused"
    if state_type == "CRASHED" and restartable(run_count):
        return "queued"
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


def restartable(run_count: int) -> bool:
    """Whether a crashed job's run goes back on its pool: it ran (a crash before it ever started is no machine's
    death), and not past MAX_RUNS."""
    return 1 <= run_count <= MAX_RUNS


def restart_refusal(restarts: int, last_reason: str | None, limit: int = MAX_RESTARTS) -> str | None:
    """Why a job put back on its pool `restarts` times must fail now rather than resume, or None to resume."""
    if restarts <= limit:
        return None
    return (
        f"the job's process died {restarts} times ({last_reason or 'no reason given'}); after {limit} restarts from "
        "its last checkpoint it fails rather than restart again: look for what kills it (memory, the machine)"
    )
