"""The retrain flow is found by its entrypoint in a checkout (flows/ is not installed), or refused in one line."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT
from tuneops.config.errors import UserError
from tuneops.jobs.orchestration import HEARTBEAT_S, load_retrain, restart_automations, run_idempotency_key
from tuneops.jobs.spec import JOB_TAG
from tuneops.jobs.states import MAX_RUNS, RESTART_STATE, SUSPENDED, UNRESPONSIVE


def test_the_flow_loads_from_the_checkouts_entrypoint():
    assert load_retrain(ROOT).name == "retrain"


def test_outside_a_checkout_the_error_says_where_to_run(tmp_path):
    with pytest.raises(UserError, match=r"no flows/retrain.py in .*: run this from the project's checkout"):
        load_retrain(tmp_path)


def test_a_clients_idempotency_key_names_one_flow_run_key_of_bounded_length():
    assert run_idempotency_key("k-1") == run_idempotency_key("k-1") != run_idempotency_key("k-2")
    assert len(run_idempotency_key("x" * 10_000)) == len(run_idempotency_key("k")) < 100


def test_a_job_run_without_heartbeats_is_crashed_then_put_back_on_its_pool():
    crash, restart = restart_automations()
    silent = crash.trigger
    assert silent.after == {"prefect.flow-run.heartbeat"} and silent.posture == "Proactive"
    assert silent.within.total_seconds() >= 2 * HEARTBEAT_S  # one late beat is no death
    # a run that ended, paused or was suspended (a job's pause) sends no more heartbeats and is not dead
    for ended in ("Completed", "Failed", "Cancelled", "Crashed", SUSPENDED):
        assert f"prefect.flow-run.{ended}" in silent.expect
    assert silent.match_related["prefect.resource.id"] == [f"prefect.tag.{JOB_TAG}"]  # jobs only
    (crashed,) = crash.actions
    assert crashed.state == "CRASHED" and crashed.name == UNRESPONSIVE
    assert restart.trigger.expect == {f"prefect.flow-run.{UNRESPONSIVE}", "prefect.flow-run.Crashed"}
    assert restart.trigger.match["prefect.run-count"] == [str(n) for n in range(1, MAX_RUNS + 1)]  # it had run
    (scheduled,) = restart.actions
    assert scheduled.state == "SCHEDULED" and scheduled.name == RESTART_STATE
