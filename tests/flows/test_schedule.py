"""`tuneops schedule` against a real `prefect server start` (SQLite), the way users run it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Project, free_port

pytestmark = pytest.mark.slow


def start(args: list[str], cwd, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        args, cwd=cwd, env=env, start_new_session=True, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def wait_for(check, what: str, proc: subprocess.Popen, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        assert proc.poll() is None, f"{proc.args[0]} exited while waiting for {what}:\n{proc.stdout.read()}"
        time.sleep(0.5)
    raise AssertionError(f"no {what} within {timeout} s")


@pytest.fixture
def prefect_server(tmp_path) -> Iterator[dict[str, str]]:
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server = start(["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)], tmp_path, env)
    api = f"http://127.0.0.1:{port}/api"

    def healthy() -> bool:
        try:
            return httpx.get(f"{api}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, "healthy Prefect server", server)
        yield {**env, "PREFECT_API_URL": api}
    finally:
        stop(server)


def test_schedule_serves_a_deployment_with_its_cron_and_a_next_run(project: Project, prefect_server):
    served = start(["tuneops", "schedule", "--cron", "0 3 * * *", "--name", "nightly"], project.path, prefect_server)
    api = prefect_server["PREFECT_API_URL"]

    def deployment() -> dict | None:
        found = httpx.get(f"{api}/deployments/name/retrain/nightly", timeout=5)
        return found.json() if found.status_code == 200 else None

    def scheduled_runs() -> list[dict]:
        body = {
            "deployments": {"id": {"any_": [dep["id"]]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
            "sort": "EXPECTED_START_TIME_ASC",
        }
        return httpx.post(f"{api}/flow_runs/filter", json=body, timeout=5).json()

    try:
        dep = wait_for(deployment, "deployment retrain/nightly", served)
        assert [s["schedule"]["cron"] for s in dep["schedules"]] == ["0 3 * * *"]
        assert dep["parameters"] == {"params_path": "params.yaml"}
        runs = wait_for(scheduled_runs, "scheduled run", served)  # the server's scheduler service creates them
    finally:
        stop(served)
    assert runs[0]["expected_start_time"][11:16] == "03:00"
