"""`tuneops deploy --pool` against a real `prefect server start`: a process work pool, a deployment of the retrain flow
with params.yaml's schedule, a `prefect worker start` process that runs a run triggered through the API, to a
champion."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from tests.conftest import Project
from tests.flows.test_schedule import prefect_server, stop  # noqa: F401  (a fixture, used by name)

pytestmark = pytest.mark.slow


def create_flow_run(api: str, deployment_id: str) -> dict:
    """A run of the deployment, as the UI's "Quick run" makes it. Asked up to 3 times: the server's scheduler writes
    the cron's next runs into its SQLite database and the worker starts (seconds of CPU on 2 cores) just as this
    asks; once in CI the run was never created (a timeout or a locked database, the test could not tell)."""
    for attempt in range(3):
        try:
            made = httpx.post(f"{api}/deployments/{deployment_id}/create_flow_run", json={}, timeout=60)
            if made.status_code == 201:
                return made.json()
            why = f"{made.status_code} {made.text[:300]}"
        except httpx.HTTPError as exc:
            why = repr(exc)
        time.sleep(2 * (attempt + 1))
    raise AssertionError(f"no flow run created: {why}")


def test_deploy_on_a_pool_runs_on_a_worker_to_a_champion(sample_project: Project, prefect_server, tmp_path):  # noqa: F811
    api = prefect_server["PREFECT_API_URL"]
    sample_project.set_params(lambda p: p["flow"].update(review_data="never", push=False, schedule="30 2 * * *"))
    deployed = sample_project.run("tuneops", "deploy", "--pool", "edge", "--name", "nightly", env=prefect_server)
    assert "work pool edge (created, process)" in deployed.stderr

    pool = httpx.get(f"{api}/work_pools/edge", timeout=10).json()
    dep = httpx.get(f"{api}/deployments/name/retrain/nightly", timeout=10).json()
    assert pool["type"] == "process" and dep["work_pool_name"] == "edge"
    assert [s["schedule"]["cron"] for s in dep["schedules"]] == ["30 2 * * *"]  # flow.schedule from params.yaml
    assert dep["parameters"] == {"params_path": "params.yaml"}
    again = sample_project.run("tuneops", "deploy", "--pool", "edge", "--name", "nightly", env=prefect_server)
    assert "work pool edge (exists, process)" in again.stderr  # idempotent: the same deployment, updated

    # the worker runs in another directory: the deployment says where the project is
    env = {**prefect_server, "PREFECT_WORKER_QUERY_SECONDS": "1"}
    with (tmp_path / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            ["prefect", "worker", "start", "--pool", "edge"],
            cwd=tmp_path,
            env=env,
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        run = create_flow_run(api, dep["id"])
        deadline = time.monotonic() + 600
        while True:
            state = httpx.get(f"{api}/flow_runs/{run['id']}", timeout=60).json()["state"]
            if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                break
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"run still {state['type']}"
            time.sleep(2)
    finally:
        stop(worker)
    assert state["type"] == "COMPLETED", (state["message"], (tmp_path / "worker.log").read_text()[-3000:])
    assert state["message"].startswith("registered tuneops-tweet-sentiment v1 as champion")
    assert sample_project.champion_version() == "1"


def test_up_starts_a_server_a_worker_and_the_api_and_stops_them_together(project: Project, tmp_path):
    import os
    import signal

    import psutil

    from tests.conftest import free_port

    port, prefect_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    args = ["tuneops", "up", "--pool", "edge", "--port", str(port), "--prefect-port", str(prefect_port)]
    with (tmp_path / "up.log").open("w") as log:
        up = subprocess.Popen(args, cwd=project.path, env=env, stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{prefect_port}/api"

    def workers() -> list[dict]:
        try:
            found = httpx.post(f"{api}/work_pools/edge/workers/filter", json={}, timeout=5)
            served = httpx.get(f"http://127.0.0.1:{port}/v1/files", timeout=5).status_code == 200
        except httpx.TransportError:
            return []
        return found.json() if found.status_code == 200 and served else []

    deadline = time.monotonic() + 180
    try:
        while not workers():
            assert up.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()[-3000:]
            time.sleep(1)
        deployment = httpx.get(f"{api}/deployments/name/retrain/fine-tuning-jobs", timeout=5).json()
        assert deployment["work_pool_name"] == "edge"
        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) >= 3  # prefect server, worker, tuneops serve (and their own children)
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0
    finally:
        if up.poll() is None:
            up.kill()
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
