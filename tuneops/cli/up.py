"""`tuneops up`: one machine's whole service, a Prefect server (when PREFECT_API_URL is unset), a worker on the
pool and `tuneops serve`, started together and stopped together."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from tuneops.config.errors import UserError
from tuneops.jobs.orchestration import PREFECT_PORT, JobDeployment, ensure_pool

log = logging.getLogger("tuneops.deploy")


def prefect_healthy(api: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{api.rstrip('/')}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def wait_until(
    check: Callable[[], bool],
    what: str,
    procs: list[subprocess.Popen],
    stopped: Callable[[], bool],
    timeout: float = 120,
) -> None:
    deadline = time.monotonic() + timeout
    while not check() and not stopped():
        for proc in procs:
            if proc.poll() is not None:
                raise UserError(f"{' '.join(map(str, proc.args[:4]))} exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise UserError(f"no {what} within {timeout:.0f} s")
        time.sleep(0.5)


def start(args: list[str], root: Path, env: dict[str, str]) -> subprocess.Popen:
    log.info("starting: %s", " ".join(args))
    return subprocess.Popen(args, cwd=root, env=env, start_new_session=True)  # its own group: stopped as a whole


def stop(proc: subprocess.Popen, grace: float = 20) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def up(root: Path, pool: str, serve_args: list[str], port: int = PREFECT_PORT) -> int:
    """A Prefect server (unless PREFECT_API_URL names one), a worker on `pool` and `tuneops serve`; when any of them
    exits, or on Ctrl-C / SIGTERM, all are stopped. Returns the exit code of the one that ended first."""
    env = dict(os.environ)
    procs: list[subprocess.Popen] = []
    stopping = {"signal": None}

    def on_signal(signum: int, _: FrameType | None) -> None:
        stopping["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if not env.get("PREFECT_API_URL"):
            env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
            server = start([sys.executable, "-m", "prefect", "server", "start", "--port", str(port)], root, env)
            procs.append(server)
            healthy = lambda: prefect_healthy(env["PREFECT_API_URL"])  # noqa: E731
            wait_until(healthy, "a healthy Prefect server", procs, lambda: stopping["signal"] is not None)
            if stopping["signal"] is not None:
                return 0
        os.environ["PREFECT_API_URL"] = env["PREFECT_API_URL"]
        ensure_pool(pool)
        JobDeployment(root, pool).ensure()
        worker = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"]
        procs.append(start(worker, root, env))
        procs.append(start([sys.executable, "-m", "tuneops.cli", "serve", *serve_args], root, env))
        log.info("up: Prefect API %s, worker on pool %s, tuneops serve; Ctrl-C stops all", env["PREFECT_API_URL"], pool)
        while stopping["signal"] is None:
            ended = [p for p in procs if p.poll() is not None]
            if ended:
                log.error(
                    "%s exited (%s): stopping the rest", " ".join(map(str, ended[0].args[:4])), ended[0].returncode
                )
                return ended[0].returncode or 1
            time.sleep(0.5)
        return 0
    finally:
        for proc in reversed(procs):  # the API and worker first, the Prefect server they talk to last
            stop(proc)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def command(
    pool: Annotated[str, typer.Option(metavar="POOL", help="work pool for jobs and the worker")] = "tuneops",
    host: Annotated[str, typer.Option(metavar="HOST", help="address `tuneops serve` binds")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="port of `tuneops serve`")] = 8000,
    prefect_port: Annotated[int, typer.Option(metavar="PORT", help="port of the Prefect server")] = PREFECT_PORT,
) -> None:
    """one machine: a Prefect server (if PREFECT_API_URL is unset), a worker and `tuneops serve`, together

    Starts `prefect server start` when PREFECT_API_URL is unset, `prefect worker start --pool POOL` and
    `tuneops serve` (with the files and fine-tuning jobs API); Ctrl-C or SIGTERM stops all three, and so does any one
    of them exiting."""
    code = up(Path.cwd(), pool, ["--host", host, "--port", str(port)], prefect_port)
    if code:
        raise SystemExit(code)
