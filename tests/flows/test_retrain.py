"""The retrain flow on a real Prefect API (prefect_test_harness), real DVC, the offline sample and its GPT-2."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.conftest import Project, make_project, use_sample

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api():
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="module")
def workspace(api, tmp_path_factory, sample) -> Project:
    project = make_project(tmp_path_factory.mktemp("flow") / "project")

    def setup(p):
        use_sample(p, sample)
        p["flow"].update(review_data="never")

    project.set_params(setup)
    return project


@pytest.fixture
def in_workspace(workspace, monkeypatch) -> Project:
    monkeypatch.chdir(workspace.path)
    return workspace


def run_flow():
    from flows.retrain import retrain

    return retrain(return_state=True)


def artifact_keys(flow_run_id) -> set[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key for a in found}


def test_flow_runs_every_stage_then_nothing_when_nothing_changed(in_workspace):
    state = run_flow()
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary.ran == ["ingest", "validate", "tokenize", "train", "evaluate", "register"]
    assert summary.verdict == "passed" and summary.registered.version == "1"
    assert "pushed to the DVC remote" in state.message
    assert (in_workspace.path.parent / "tuneops-dvc-remote" / "files" / "md5").is_dir()  # the default remote
    assert {"data-quality", "data-quality-summary", "metrics", "gate", "registered-model"} <= artifact_keys(
        state.state_details.flow_run_id
    )

    again = run_flow()
    assert again.is_completed() and again.message == "nothing changed: no stage ran"
    assert again.result().skipped == summary.ran and again.result().registered is None
    assert in_workspace.champion_version() == "1"


def test_changing_a_train_param_reruns_train_evaluate_register_only(in_workspace):
    in_workspace.set_params(lambda p: p["train"]["args"].update(learning_rate=3.0e-5))
    state = run_flow()
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary.ran == ["train", "evaluate", "register"]
    assert summary.skipped == ["ingest", "validate", "tokenize"]
    assert in_workspace.champion_version() == summary.registered.version == "2"


def test_gate_failure_fails_the_run_with_reasons_and_keeps_the_champion(in_workspace):
    in_workspace.set_params(lambda p: p["evaluate"].update(min_accuracy=1.0))
    state = run_flow()
    assert state.is_failed()
    assert state.message.startswith("register: gate failed") and "min_accuracy: observed" in state.message
    assert in_workspace.champion_version() == "2"
    in_workspace.set_params(lambda p: p["evaluate"].update(min_accuracy=0.0))


def paused_run_id(timeout: float = 120):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(flow_run_filter=paused)
            if runs:
                return runs[0].id
            time.sleep(0.5)
    raise AssertionError("the flow never paused for review")


def run_with_review(decision: dict):
    from prefect.flow_runs import resume_flow_run

    result = {}
    runner = threading.Thread(target=lambda: result.update(state=run_flow()))
    runner.start()
    resume_flow_run(paused_run_id(), run_input=decision)
    runner.join(timeout=300)
    return result["state"]


def test_review_pauses_and_approval_continues_to_registration(in_workspace):
    def review_always(p):
        p["flow"].update(review_data="always")
        p["train"]["args"].update(learning_rate=4.0e-5)

    in_workspace.set_params(review_always)
    state = run_with_review({"approve": True, "comment": "looks fine"})
    assert state.is_completed(), state.message
    assert state.result().ran == ["train", "evaluate", "register"]
    record = json.loads((in_workspace.path / "reports" / "data_review.json").read_text())
    assert record["approve"] is True and record["comment"] == "looks fine"


def test_review_rejection_stops_before_tokenize(in_workspace):
    in_workspace.set_params(lambda p: p["data"].update(seed=3))  # new data: needs a new review
    before = (in_workspace.path / "data" / "processed").stat().st_mtime
    state = run_with_review({"approve": False, "comment": "mojibake"})
    assert state.is_failed() and state.message == "data rejected in review: mojibake: nothing trained"
    assert (in_workspace.path / "data" / "processed").stat().st_mtime == before
    in_workspace.set_params(lambda p: p["flow"].update(review_data="never"))


def test_two_runs_at_once_never_run_stages_together(in_workspace):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    in_workspace.set_params(lambda p: p["data"].update(seed=42))
    first = run_flow()  # settle the workspace, so both runs below are quick
    states: list = []
    runners = [threading.Thread(target=lambda: states.append(run_flow())) for _ in range(2)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(timeout=300)
    assert first.is_completed() and len(states) == 2 and all(s.is_completed() for s in states)
    spans = []
    with get_client(sync_client=True) as client:
        for state in states:
            run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
            tasks = client.read_task_runs(flow_run_filter=run_filter)
            spans.append((min(t.start_time for t in tasks), max(t.end_time for t in tasks)))
    (a_start, a_end), (b_start, b_end) = sorted(spans)
    assert a_end <= b_start, f"stages of two runs overlapped: {spans}"


def test_failed_push_fails_the_run_but_keeps_the_registration(in_workspace):
    before = in_workspace.champion_version()
    in_workspace.dvc("remote", "modify", "local", "url", "/proc/tuneops-no-such-remote")
    in_workspace.set_params(lambda p: p["train"]["args"].update(learning_rate=6.0e-5))
    state = run_flow()
    assert state.is_failed() and "but dvc push failed" in state.message and "the registration stands" in state.message
    assert "Having any troubles" not in state.message  # DVC's error, not its footer
    assert in_workspace.champion_version() != before  # the new version was registered and promoted all the same


FLAKY = """import pathlib, subprocess, sys
marker = pathlib.Path("flaky.once")
if not marker.exists():
    marker.write_text("x")
    print("error: network share went away (transient: retry later)", file=sys.stderr)
    sys.exit(75)
sys.exit(subprocess.call([sys.executable, "-m", "tasks.ingest"]))
"""


def ingest_only(project: Project, cmd: str) -> None:
    """A dvc.yaml with only `ingest`, whose command stands in for a flaky network or a bad file."""
    import yaml

    pipeline = yaml.safe_load((project.path / "dvc.yaml").read_text())
    ingest = {**pipeline["stages"]["ingest"], "cmd": cmd}
    (project.path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"ingest": ingest}}, sort_keys=False))


def ingest_attempts(state) -> int:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        (task_run,) = client.read_task_runs(flow_run_filter=run_filter)
    return task_run.run_count


def test_ingest_retries_a_transient_failure(api, project, monkeypatch, sample):
    monkeypatch.chdir(project.path)
    (project.path / "flaky.py").write_text(FLAKY)
    ingest_only(project, "python flaky.py")
    project.set_params(lambda p: (use_sample(p, sample), p["flow"].update(ingest_retry_delay_seconds=0)))
    state = run_flow()
    assert state.is_completed(), state.message
    assert state.result().ran == ["ingest"] and ingest_attempts(state) == 2


def test_ingest_does_not_retry_a_data_mistake(api, project, monkeypatch, tmp_path):
    monkeypatch.chdir(project.path)
    bad = tmp_path / "bad.csv"
    bad.write_text('text,label\n"open,positive\n')
    project.set_params(lambda p: (p["data"].update(source=str(bad)), p["flow"].update(ingest_retry_delay_seconds=0)))
    ingest_only(project, "python -m tasks.ingest")
    state = run_flow()
    assert state.is_failed()
    assert state.message == f'ingest: {bad}: line 2: unbalanced quote (a field opens " and never closes)'
    assert ingest_attempts(state) == 1


def test_a_killed_run_is_marked_crashed_and_does_not_hold_the_workspace(in_workspace, api):
    """kill -9 mid-training: the next run neither waits out a lease of minutes nor leaves the dead one 'Running'."""
    import contextlib
    import ctypes
    import os
    import shutil
    import signal
    import subprocess
    import sys

    import psutil
    from prefect import get_client

    in_workspace.dvc("remote", "modify", "local", "url", str(in_workspace.path.parent / "remote"))  # a working one
    in_workspace.set_params(lambda p: p["train"]["args"].update(num_train_epochs=30, learning_rate=7.0e-4))
    checkpoints = in_workspace.path / "models" / "checkpoints"
    shutil.rmtree(checkpoints, ignore_errors=True)  # so the first checkpoint seen is this run's: it is training
    # PR_SET_CHILD_SUBREAPER: the killed run's processes become ours to reap, as an init would; unreaped, a
    # zombie `dvc` would still "exist" and hold DVC's path locks
    ctypes.CDLL(None).prctl(36, 1)
    env = {**os.environ, "PREFECT_API_URL": api}
    killed = subprocess.Popen(
        [sys.executable, "-c", "from flows.retrain import retrain; retrain()"],
        cwd=in_workspace.path,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while not list(checkpoints.glob("checkpoint-*/trainer_state.json")):  # well inside the run: training
        assert killed.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    tree = [killed.pid, *(p.pid for p in psutil.Process(killed.pid).children(recursive=True))]
    os.killpg(killed.pid, signal.SIGKILL)
    for pid in tree:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    in_workspace.set_params(lambda p: p["train"]["args"].update(num_train_epochs=2, learning_rate=8.0e-4))
    start = time.monotonic()
    state = run_flow()
    assert state.is_completed(), state.message
    assert time.monotonic() - start < 200  # not the 300 s lease of Prefect's default, plus the run itself
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
    dead = [r for r in runs if r.state and r.state.is_crashed()]
    assert dead, [(r.name, r.state_name, r.tags) for r in runs]
    assert "its process died" in dead[0].state.message
