"""A job's OpenAI status and error, decided from its flow run's Prefect state and what its workspace holds
(pure: unit-tested)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from tuneops.config.records import GateVerdict

FILE_CHECK_TASK = "validate-files"  # the flow's task that checks the job's files (status validating_files)


Status = Literal["validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"]

SUSPENDED = "Suspended"  # Prefect's name for a PAUSED state whose run left its worker (suspend_flow_run): a job paused


def job_status(state_type: str | None, stages_started: bool, registered: bool, state_name: str | None = None) -> Status:
    """OpenAI's status from the flow run's Prefect state type (SCHEDULED, RUNNING, ...) and name."""
    if state_type == "PAUSED" and state_name == SUSPENDED:
        return "paused"
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
