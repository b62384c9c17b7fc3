"""Prefect's states onto OpenAI's job statuses, and a failed job's error in OpenAI's shape."""

from __future__ import annotations

import pytest

from tuneops.config.records import GateCheck, GateVerdict
from tuneops.jobs.states import (
    FILE_CHECK_TASK,
    MAX_RESTARTS,
    MAX_RUNS,
    RESTART_STATE,
    SUSPENDED,
    UNRESPONSIVE,
    job_error,
    job_status,
    restart_refusal,
)


@pytest.mark.parametrize(
    ("state", "started", "registered", "status"),
    [
        ("SCHEDULED", False, False, "queued"),
        ("PENDING", False, False, "queued"),
        (None, False, False, "queued"),
        ("RUNNING", False, False, "validating_files"),
        ("RUNNING", True, False, "running"),
        ("PAUSED", True, False, "running"),
        ("COMPLETED", True, True, "succeeded"),
        ("COMPLETED", True, False, "failed"),
        ("FAILED", True, True, "failed"),
        ("CRASHED", True, False, "failed"),
        ("CANCELLING", True, False, "cancelled"),
        ("CANCELLED", True, False, "cancelled"),
    ],
)
def test_prefect_states_map_onto_openai_statuses(state, started, registered, status):
    assert job_status(state, started, registered) == status


def test_a_suspended_run_is_a_paused_job_and_a_review_pause_is_still_running():
    assert job_status("PAUSED", True, False, "Suspended") == "paused"
    assert job_status("PAUSED", True, False, "Paused") == "running"  # a person reviewing data: the run waits
    assert job_status("SCHEDULED", True, False, "Resuming") == "queued"


def test_a_failed_job_says_why_in_openais_error_shape():
    gate = GateVerdict(
        verdict="failed",
        checks=[
            GateCheck(check="min_accuracy", observed=0.3, threshold=0.45, passed=False),
            GateCheck(check="max_overfit_gap", observed=0.01, threshold=0.15, passed=True),
        ],
    )
    failed_gate = job_error("failed", "register: gate failed ...", gate, None)
    assert failed_gate.code == "gate_failed" and failed_gate.message == (
        "gate failed: min_accuracy: observed 0.3, threshold 0.45"
    )
    bad_file = job_error("failed", "training_file file-x (a.jsonl): line 3: not valid JSON", None, FILE_CHECK_TASK)
    assert bad_file.code == "invalid_training_file" and bad_file.param == "training_file"
    assert "line 3" in bad_file.message
    assert job_error("failed", "train: out of memory", None, None).message == "train: out of memory"
    assert job_error("succeeded", None, gate, None) is None


@pytest.mark.parametrize(
    ("state", "name", "runs", "status"),
    [
        ("CRASHED", UNRESPONSIVE, 1, "queued"),  # no heartbeats: about to go back on its pool, not failed
        ("CRASHED", "Crashed", 2, "queued"),  # its worker died and it exited, saying so: the same
        ("SCHEDULED", RESTART_STATE, 2, "queued"),
        ("CRASHED", "Crashed", 0, "failed"),  # crashed before it ever ran (a flow that cannot load): not restarted
        ("CRASHED", "Crashed", MAX_RUNS + 1, "failed"),  # the backstop to a crash loop
        ("PAUSED", SUSPENDED, 1, "paused"),
    ],
)
def test_a_job_whose_process_died_is_queued_again_not_failed(state, name, runs, status):
    assert job_status(state, True, False, name, runs) == status


def test_a_job_resumes_up_to_the_restart_limit_then_fails_saying_why():
    assert restart_refusal(0, None) is None
    assert restart_refusal(MAX_RESTARTS, "no heartbeat for 75 s") is None
    refusal = restart_refusal(MAX_RESTARTS + 1, "no heartbeat for 75 s")
    assert refusal.startswith(f"the job's process died {MAX_RESTARTS + 1} times (no heartbeat for 75 s)")
    assert f"after {MAX_RESTARTS} restarts" in refusal
