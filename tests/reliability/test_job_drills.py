"""Fault drills for fine-tuning jobs (bench/drills.py tabulates them): the worker killed mid-training, `tuneops
serve` and the Prefect server restarted mid-job, and a job creation whose answer was lost, retried by the client.

One stack for the module, started the way users start it (`prefect server start`, `prefect worker start --pool
tuneops`, `tuneops serve`, the official `openai` client); `tuneops serve` reaches Prefect through a proxy in this
process that can lose the answer to a flow run's creation after Prefect made the run. Each drill records how long
the job took to recover (`time_to_recover_s`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.test_finetune_client import (
    FINAL,
    follow,
    generation_params,
    healthy,
    prefect_env,
    result_rows,
    spans,
    training_processes,
    wait_for,
)
from tests.conftest import Project, Sample, free_port, make_project
from tests.flows.test_schedule import stop

pytestmark = pytest.mark.slow

ROWS = 240
HYPER = {"n_epochs": 3, "batch_size": 16}  # 15 steps an epoch, a checkpoint at each epoch's end
SEED = 11
SKIPPED = {"host", "content-length", "connection", "accept-encoding", "transfer-encoding", "content-encoding"}


class LossyProxy(ThreadingHTTPServer):
    """An HTTP proxy to the Prefect API that can lose the answers to the next `drop` flow-run creations: Prefect
    makes the run, the caller never hears of it (a connection cut after the request went through)."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream, self.drop, self.dropped = upstream, 0, 0
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def lose_this_answer(self) -> bool:
        with self.lock:
            if self.drop <= 0:
                return False
            self.drop -= 1
            self.dropped += 1
            return True


class _Forward(BaseHTTPRequestHandler):
    server: LossyProxy

    def forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in SKIPPED}
        try:
            reply = httpx.request(
                self.command, self.server.upstream + self.path, content=body, headers=headers, timeout=60
            )
        except httpx.TransportError:  # the Prefect server is down (restarting)
            self.send_error(502)
            return
        if self.command == "POST" and self.path.endswith("/create_flow_run") and self.server.lose_this_answer():
            self.close_connection = True  # the run exists; its answer is lost
            return
        self.send_response(reply.status_code)
        for key, value in reply.headers.items():
            if key.lower() not in SKIPPED:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.content)))
        self.end_headers()
        self.wfile.write(reply.content)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = forward

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Stack:
    client: Any  # openai.OpenAI
    project: Project
    base: Path
    env: dict[str, str]
    proxy: LossyProxy
    api_port: int
    train_file: str = ""
    procs: dict[str, Any] = field(default_factory=dict)

    def start(self, name: str) -> None:
        """Start (or start again) the Prefect server, the worker or `tuneops serve`, and wait until it answers."""
        port = self.env["PREFECT_API_URL"].split(":")[2].split("/")[0]
        commands = {
            "server": (["prefect", "server", "start", "--host", "127.0.0.1", "--port", port], self.base, self.env),
            "worker": (["prefect", "worker", "start", "--pool", "tuneops", "--type", "process"], None, self.env),
            # serve reaches Prefect through the proxy; retries by Prefect's client: one, quickly (a lost answer)
            "serve": (
                ["tuneops", "serve", "--port", str(self.api_port)],
                None,
                {**self.env, "PREFECT_API_URL": f"{self.proxy.url}/api", "PREFECT_CLIENT_MAX_RETRIES": "1"},
            ),
        }
        args, cwd, env = commands[name]
        log = self.base / f"{name}.log"
        with log.open("a") as out:  # appended to: a restarted process's log follows its first life's
            out.write(f"\n--- started at {time.time():.1f}\n")
            proc = subprocess.Popen(
                args,
                cwd=cwd or self.project.path,
                env=env,
                start_new_session=True,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs[name] = proc
        ready = {
            "server": lambda: healthy(f"{self.env['PREFECT_API_URL']}/health"),
            "worker": lambda: True,
            "serve": lambda: healthy(f"http://127.0.0.1:{self.api_port}/v1/models"),
        }
        wait_for(ready[name], name, proc, log, timeout=120)

    def stop(self, name: str) -> None:
        stop(self.procs[name])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, sample: Sample) -> Iterator[Stack]:
    import openai

    base = tmp_path_factory.mktemp("job-drills")
    project = make_project(base / "project")
    project.set_params(lambda p: generation_params(p, sample))
    (base / "train.jsonl").write_text(spans(sample, "train", ROWS))
    port, api_port = free_port(), free_port()
    env = prefect_env(base, port)
    proxy = LossyProxy(f"http://127.0.0.1:{port}")
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{api_port}/v1", api_key="loopback", max_retries=0, timeout=120)
    stack = Stack(client, project, base, env, proxy, api_port)
    # PR_SET_CHILD_SUBREAPER: a killed worker's processes become ours to reap (a zombie `dvc` holds DVC's locks)
    ctypes.CDLL(None).prctl(36, 1)
    try:
        for name in ("server", "worker", "serve"):
            stack.start(name)
        with (base / "train.jsonl").open("rb") as f:
            stack.train_file = client.files.create(file=f, purpose="fine-tune").id
        yield stack
    finally:
        for proc in reversed(stack.procs.values()):
            stop(proc)
        proxy.shutdown()


def create(stack: Stack, **extra: Any) -> Any:
    model = stack.project.params()["model"]["name"]
    return stack.client.fine_tuning.jobs.create(
        model=model, training_file=stack.train_file, seed=SEED, hyperparameters=HYPER, **extra
    )


@pytest.fixture(scope="module")
def twin(stack: Stack) -> str:
    """A job the restart drill follows and the kill drill compares with: the same files, seed and hyperparameters."""
    return create(stack, suffix="twin").id


def checkpoint_steps(stack: Stack, job: str) -> list[int]:
    """The job's complete checkpoints (their trainer state written), by step."""
    found = (stack.project.path / "jobs" / job / "models" / "checkpoints").glob("checkpoint-*/trainer_state.json")
    return sorted(int(p.parent.name.split("-")[1]) for p in found)


def wait_mid_training(stack: Stack, job: str, timeout: float = 600) -> int:
    """Wait for the job's first complete checkpoint while its training process still runs; its step."""
    deadline = time.monotonic() + timeout
    workspace = stack.project.path / "jobs" / job
    while not checkpoint_steps(stack, job):
        assert stack.client.fine_tuning.jobs.retrieve(job).status not in FINAL
        assert time.monotonic() < deadline, f"{job}: no checkpoint after {timeout} s"
        time.sleep(0.3)
    training = [p for p in training_processes(workspace) if "tasks.train" in " ".join(p.info["cmdline"] or [])]
    assert training, "training ended before the drill could break it: give the job more epochs"
    return checkpoint_steps(stack, job)[-1]


def snapshot(stack: Stack, job: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    jobs = stack.client.fine_tuning.jobs
    events = {e.id: e.model_dump() for e in jobs.list_events(job, limit=1000).data}
    checkpoints = {c.id: c.model_dump() for c in jobs.checkpoints.list(job, limit=100).data}
    return jobs.retrieve(job), events, checkpoints


def test_drill_serve_and_the_prefect_server_restarted_mid_job(stack, twin, record_property):
    """`tuneops serve` and the Prefect server restarted mid-training: the job reads the same, and finishes.

    The job, its events and its checkpoints read the same afterwards, and it never restarted."""
    wait_mid_training(stack, twin)
    job, events, checkpoints = snapshot(stack, twin)
    assert job.status == "running"
    started = time.monotonic()
    stack.stop("serve")
    stack.stop("server")
    stack.start("server")
    stack.start("serve")
    record_property("time_to_recover_s", round(time.monotonic() - started, 1))
    again, events_again, checkpoints_again = snapshot(stack, twin)
    assert again.status in ("running", "succeeded"), again.error
    same = ("id", "created_at", "model", "training_file", "seed", "hyperparameters", "method")
    assert {k: getattr(again, k) for k in same} == {k: getattr(job, k) for k in same}
    assert {k: events_again.get(k) for k in events} == events  # every event as it read before
    assert {k: checkpoints_again.get(k) for k in checkpoints} == checkpoints
    done, _, finished_events = follow(stack.client, twin)
    assert done.status == "succeeded", done.error
    assert not [e for e in finished_events if e.message.startswith("The job restarted")]  # it never stopped


def reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def kill_worker(stack: Stack) -> float:
    """SIGKILL the worker's process group and those of its flow runs (Prefect starts each in a session of its own):
    the worker, the flow run, DVC and the trainer die at once, as on a machine that died, and nobody tells Prefect;
    when."""
    import psutil

    worker = stack.procs["worker"]
    tree = [worker.pid, *(p.pid for p in psutil.Process(worker.pid).children(recursive=True))]
    groups = {os.getpgid(pid) for pid in tree if psutil.pid_exists(pid)}
    killed_at = time.time()
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    for pid in tree:
        reap(pid)
    return killed_at


def steps_logged_after(stack: Stack, job: str, moment: float) -> list[int]:
    log = stack.project.path / "jobs" / job / "models" / "checkpoints" / "steps.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [int(e["step"]) for e in entries if e["time"] > moment]


def test_drill_a_worker_killed_mid_training_resumes_from_its_checkpoint(stack, twin, record_property):
    """A worker killed mid-training (SIGKILL, its process group): the job resumes from its last checkpoint.

    It goes back on the pool, the next worker resumes it from its last complete checkpoint, and it ends as its
    uninterrupted twin did, registered once."""
    from mlflow import MlflowClient

    twin_done, _, _ = follow(stack.client, twin)  # done before the kill, which would take it down too
    job = create(stack, suffix="killed")
    checkpoint = wait_mid_training(stack, job.id)
    killed_at = kill_worker(stack)
    workspace = stack.project.path / "jobs" / job.id
    assert not training_processes(workspace)
    assert stack.client.fine_tuning.jobs.retrieve(job.id).status == "running"  # Prefect has not noticed yet
    stack.start("worker")  # the next worker to poll the pool

    done, _, events = follow(stack.client, job.id)
    assert done.status == "succeeded", done.error
    (restart,) = [e for e in events if e.message.startswith("The job restarted")]
    assert restart.level == "warn" and "no heartbeat for 75 s" in restart.message  # nobody said it died
    train_starts = [e.created_at for e in events if e.message == "Stage train started"]
    assert len(train_starts) == 2
    record_property("time_to_recover_s", round(train_starts[-1] - killed_at, 1))
    resumed = steps_logged_after(stack, job.id, restart.created_at)
    assert resumed and min(resumed) > checkpoint, (checkpoint, resumed)  # from the checkpoint, not from step 0

    ours, theirs = result_rows(stack, done), result_rows(stack, twin_done)
    assert [r["step"] for r in ours] == [r["step"] for r in theirs]
    resumed_from, logged_before = min(resumed) - 1, 0
    for a, b in zip(ours, theirs, strict=True):
        if b["valid_loss"]:
            assert abs(float(a["valid_loss"]) - float(b["valid_loss"])) < 1e-4, (a, b)
        if b[
            "train_loss"
        ]:  # a logged loss averages the steps since the last: compared once that began after the resume
            if logged_before >= resumed_from:
                assert abs(float(a["train_loss"]) - float(b["train_loss"])) < 1e-4, (a, b)
            logged_before = int(b["step"])
    registry = MlflowClient(f"sqlite:///{stack.project.path / 'mlflow.db'}")
    name = stack.project.params()["register"]["model_name"]
    mine = [
        v for v in registry.search_model_versions(f"name='{name}'") if v.tags.get("tuneops.fine_tuning_job") == job.id
    ]
    assert len(mine) == 1 and mine[0].tags["tuneops.fine_tuned_model"] == done.fine_tuned_model


def job_ids(stack: Stack) -> set[str]:
    return {j.id for j in stack.client.fine_tuning.jobs.list(limit=100).data}


def test_drill_a_job_creation_whose_answer_was_lost_makes_one_job(stack, record_property):
    """A job creation answered 503 after Prefect made the run, retried by the client: one job.

    With an Idempotency-Key the client's retry gets the job the first attempt made; without one, the 503 says
    `x-should-retry: false` and Prefect's own resend still makes one run."""
    import openai

    before = job_ids(stack)
    key = f"drill-{uuid.uuid4()}"
    retrying = stack.client.with_options(max_retries=2)
    stack.proxy.drop, stack.proxy.dropped = 2, 0  # Prefect's client resends once; both answers lost: a 503
    started = time.monotonic()
    job = retrying.fine_tuning.jobs.create(
        model=stack.project.params()["model"]["name"],
        training_file=stack.train_file,
        hyperparameters=HYPER,
        suffix="idem",
        extra_headers={"Idempotency-Key": key},
    )
    record_property("time_to_recover_s", round(time.monotonic() - started, 1))
    assert stack.proxy.dropped == 2
    assert job_ids(stack) - before == {job.id}
    again = retrying.fine_tuning.jobs.create(
        model=stack.project.params()["model"]["name"],
        training_file=stack.train_file,
        hyperparameters=HYPER,
        suffix="idem",
        extra_headers={"Idempotency-Key": key},
    )
    assert again.id == job.id
    with pytest.raises(openai.BadRequestError) as reused:
        retrying.fine_tuning.jobs.create(
            model="other", training_file=stack.train_file, extra_headers={"Idempotency-Key": key}
        )
    assert reused.value.code == "idempotency_key_reused"
    assert reused.value.response.headers["x-should-retry"] == "false"

    stack.proxy.drop, stack.proxy.dropped = 2, 0
    with pytest.raises(openai.InternalServerError) as lost:
        retrying.fine_tuning.jobs.create(
            model=stack.project.params()["model"]["name"], training_file=stack.train_file, suffix="nokey"
        )
    assert lost.value.status_code == 503 and lost.value.response.headers["x-should-retry"] == "false"
    assert "may have been created" in lost.value.message
    assert stack.proxy.dropped == 2  # one request from the client: it did not retry
    created = job_ids(stack) - before - {job.id}
    assert len(created) == 1  # Prefect's client resent the create; the per-request key kept it one run
    for id_ in (job.id, *created):
        stack.client.fine_tuning.jobs.cancel(id_)
