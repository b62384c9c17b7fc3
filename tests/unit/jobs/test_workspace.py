"""One run per workspace across processes (and so across Prefect servers), freed the moment its holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from flows.stages import dvc_lock_holder
from tests.conftest import ROOT
from tuneops.jobs.workspace import hold_workspace, workspace_free

HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from tuneops.jobs.workspace import hold_workspace
with hold_workspace(5, "retrain run test-holder", Path({lock!r})):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def holder(tmp_path):
    lock = tmp_path / "retrain.lock"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(root=str(ROOT), lock=str(lock))], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    yield proc, lock
    proc.kill()
    proc.wait()


def test_a_second_holder_waits_then_times_out_naming_the_first(holder):
    proc, lock = holder
    assert not workspace_free(lock)
    named = rf"process {proc.pid} \(retrain run test-holder\) holds"
    with pytest.raises(TimeoutError, match=named), hold_workspace(1.5, "second", lock):
        pass


def test_a_killed_holder_frees_the_workspace_at_once(holder):
    proc, lock = holder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    start = time.monotonic()
    with hold_workspace(5, "next", lock):
        assert time.monotonic() - start < 2
    assert workspace_free(lock)


def test_dvcs_lock_message_names_the_process(tmp_path):
    (tmp_path / "lock").write_text(" 23433\n")
    assert "DVC process 23433 (`ps -p 23433` shows it)" in dvc_lock_holder(tmp_path / "lock")
    assert "another DVC process" in dvc_lock_holder(tmp_path / "missing")


def test_the_flow_starts_prefect_with_telemetry_off():
    """Prefect's temporary server (`tuneops run` without PREFECT_API_URL) inherits this environment."""
    result = subprocess.run(
        [sys.executable, "-c", "import os, flows.retrain; print(os.environ['PREFECT_SERVER_ANALYTICS_ENABLED'])"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PREFECT_SERVER_ANALYTICS_ENABLED"},
    )
    assert result.stdout.strip() == "false", result.stderr[-2000:]


def test_dvcs_path_lock_message_keeps_the_pids_and_the_advice():
    from flows.stages import failure_reason

    lines = [
        "Running stage 'tokenize':",
        "ERROR: failed to reproduce 'tokenize': 'reports/tokenization.json' is busy, it is being blocked by:",
        "  (PID 4242): dvc repro --single-item tokenize",
        "If there are no processes with such PIDs, you can manually remove '.dvc/tmp/rwlock' and try again.",
    ]
    reason = failure_reason("tokenize", lines)
    assert "blocked by: (PID 4242): dvc repro --single-item tokenize" in reason
    assert reason.endswith("remove '.dvc/tmp/rwlock' and try again.")
