"""OpenAI's fine-tuning workflow with the official `openai` client against tuneops, started the way users start it:
`prefect server start`, `prefect worker start --pool tuneops`, `tuneops serve`. Upload a file, create jobs, follow
them, call the fine-tuned model; a bad file, a cancelled job, two jobs at once, and pages of jobs.

One server, worker and API for the module; the offline sample as prompt/completion pairs (span extraction), its
2-layer GPT-2, one epoch.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Project, Sample, free_port, make_project, use_sample
from tests.flows.test_schedule import stop

pytestmark = pytest.mark.slow

FINAL = ("succeeded", "failed", "cancelled")
ORDER = ["queued", "validating_files", "running", "succeeded"]  # the worker picks a run up, then checks its files
ROWS = 240  # training pairs: enough for every data check, quick to train


@dataclass
class Stack:
    client: Any  # openai.OpenAI
    project: Project
    base: Path
    env: dict[str, str]


def spans(sample: Sample, split: str, rows: int) -> str:
    """The sample as OpenAI fine-tuning JSONL: the tweet and its sentiment, a separator; the span, a stop."""
    import pandas as pd

    df = pd.read_csv(sample.data_dir / f"{split}.csv").head(rows)
    return "".join(
        json.dumps({"prompt": f"{t}\nsentiment: {s}\n\n###\n\n", "completion": f" {span}\n"}) + "\n"
        for t, span, s in zip(df.text, df.selected_text, df.sentiment, strict=True)
    )


def generation_params(params: dict[str, Any], sample: Sample) -> None:
    use_sample(params, sample)
    params["task"] = "generation"
    params["evaluate"]["generation"].update(min_score=0.0, baseline_margin=-1.0, sample_size=10)
    # one epoch on 240 spans may score no better than the untrained base on 10 prompts (both 0.0 is a tie, which
    # fails beats_base): these tests are about the jobs API, and the gate has tests of its own
    params["evaluate"]["base_margin"] = -1.0
    params["generation"]["max_new_tokens"] = 8
    params["train"]["args"].update(metric_for_best_model="loss", logging_steps=2)
    params["flow"]["push"] = False


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, sample: Sample) -> Iterator[Stack]:
    import openai

    base = tmp_path_factory.mktemp("finetune")
    project = make_project(base / "project")
    project.set_params(lambda p: generation_params(p, sample))
    (base / "train.jsonl").write_text(spans(sample, "train", ROWS))
    (base / "valid.jsonl").write_text(spans(sample, "test", 60))
    port, api_port = free_port(), free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(base / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # pick a job up within a second, not Prefect's default 10
    }
    server = ["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    procs = [start(server, base, env, base / "server.log")]
    try:
        wait_for(lambda: healthy(f"{env['PREFECT_API_URL']}/health"), "Prefect server", procs[0], base / "server.log")
        worker = ["prefect", "worker", "start", "--pool", "tuneops", "--type", "process"]
        procs.append(start(worker, project.path, env, base / "worker.log"))
        procs.append(start(["tuneops", "serve", "--port", str(api_port)], project.path, env, base / "serve.log"))
        url = f"http://127.0.0.1:{api_port}/v1"
        wait_for(lambda: healthy(f"{url}/models"), "tuneops serve", procs[-1], base / "serve.log", timeout=120)
        client = openai.OpenAI(base_url=url, api_key="unused-on-loopback", max_retries=0, timeout=120)
        yield Stack(client, project, base, env)
    finally:
        for proc in reversed(procs):
            stop(proc)


def start(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """A long-lived process logging to a file (a pipe nobody reads would fill and block it)."""
    with log.open("w") as out:
        return subprocess.Popen(args, cwd=cwd, env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)


def wait_for(check: Any, what: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, f"{proc.args[0]} exited while waiting for {what}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def follow(client: Any, job_id: str, timeout: float = 900) -> tuple[Any, list[str], list[Any]]:
    """Poll retrieve and list_events until the job ends: the job, the statuses seen, every event."""
    seen: list[str] = []
    events: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if not seen or seen[-1] != job.status:
            seen.append(job.status)
        for event in client.fine_tuning.jobs.list_events(job_id, limit=100):
            events[event.id] = event
        if job.status in FINAL:
            return job, seen, sorted(events.values(), key=lambda e: e.created_at)
        assert time.monotonic() < deadline, f"{job_id} still {job.status} after {timeout} s"
        time.sleep(2)


def upload(stack: Stack, name: str) -> Any:
    with (stack.base / name).open("rb") as f:
        return stack.client.files.create(file=f, purpose="fine-tune")


def test_a_bad_file_is_marked_and_its_job_fails_at_validating_files(stack):
    (stack.base / "bad.jsonl").write_text(
        '{"prompt": "ok ->", "completion": " fine\\n"}\n{"prompt": "no completion"}\n'
    )
    bad = upload(stack, "bad.jsonl")
    assert bad.status == "error" and "completion" in bad.status_details
    job = stack.client.fine_tuning.jobs.create(model=str(stack.project.params()["model"]["name"]), training_file=bad.id)
    job, seen, events = follow(stack.client, job.id)
    assert job.status == "failed" and job.error.param == "training_file" and job.error.code == "invalid_training_file"
    assert bad.id in job.error.message and "completion" in job.error.message
    assert "running" not in seen and job.fine_tuned_model is None
    assert any(e.level == "error" and e.message.startswith("Checking the job's files failed") for e in events)
    assert not any(e.message.startswith("Stage ") for e in events)  # no pipeline stage ever ran


def training_processes(workspace: Path) -> list[Any]:
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if (proc.info["cwd"] or "").startswith(str(workspace)):
            found.append(proc)
    return found


def test_a_cancelled_job_ends_cancelled_with_its_training_process_gone_and_nothing_registered(stack):
    from mlflow import MlflowClient

    train = upload(stack, "train.jsonl")
    model = stack.project.params()["model"]["name"]
    job = stack.client.fine_tuning.jobs.create(model=model, training_file=train.id, hyperparameters={"n_epochs": 50})
    workspace = stack.project.path / "jobs" / job.id
    deadline = time.monotonic() + 600
    while not any("tasks.train" in " ".join(p.info["cmdline"] or []) for p in training_processes(workspace)):
        assert time.monotonic() < deadline, "training never started"
        assert stack.client.fine_tuning.jobs.retrieve(job.id).status not in FINAL
        time.sleep(1)
    assert stack.client.fine_tuning.jobs.retrieve(job.id).status == "running"
    cancelled = stack.client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    job, _, events = follow(stack.client, job.id)
    assert job.status == "cancelled" and job.fine_tuned_model is None and job.finished_at is not None
    assert events[-1].message == "The job was cancelled"
    gone = time.monotonic() + 60
    while training_processes(workspace):  # the worker kills the flow run's process group: DVC, the trainer
        assert time.monotonic() < gone, [p.info["cmdline"] for p in training_processes(workspace)]
        time.sleep(1)
    registry = MlflowClient(f"sqlite:///{stack.project.path / 'mlflow.db'}")
    versions = registry.search_model_versions(f"name='{stack.project.params()['register']['model_name']}'")
    assert not [v for v in versions if v.tags.get("tuneops.fine_tuning_job") == job.id]


def test_two_jobs_submitted_together_each_register_their_own_model_which_completions_serves(stack):
    train, valid = upload(stack, "train.jsonl"), upload(stack, "valid.jsonl")
    assert train.status == "processed" and train.bytes == (stack.base / "train.jsonl").stat().st_size
    assert upload(stack, "train.jsonl").id == train.id  # content-addressed
    assert stack.client.files.content(train.id).content == (stack.base / "train.jsonl").read_bytes()
    model = stack.project.params()["model"]["name"]
    first = stack.client.fine_tuning.jobs.create(
        model=model,
        training_file=train.id,
        validation_file=valid.id,
        suffix="spans",
        hyperparameters={"n_epochs": 1, "learning_rate_multiplier": 1.0},
        metadata={"team": "tests"},
    )
    second = stack.client.fine_tuning.jobs.create(
        model=model,
        training_file=train.id,
        suffix="spans-b",
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 8}}},
        seed=3,
    )
    assert first.status in ("queued", "validating_files") and first.metadata == {"team": "tests"}
    assert second.hyperparameters.batch_size == 8 and second.seed == 3

    done, seen, events = follow(stack.client, first.id)
    assert done.status == "succeeded", done.error
    assert seen == sorted(seen, key=ORDER.index) and seen[-1] == "succeeded"  # never back, nothing else
    other, _, _ = follow(stack.client, second.id)
    assert other.status == "succeeded", other.error

    versions = {done.fine_tuned_model.rsplit(":", 1)[1], other.fine_tuned_model.rsplit(":", 1)[1]}
    assert len(versions) == 2
    assert done.fine_tuned_model.startswith("ft:gpt2-from-config:tuneops:spans:")
    assert other.fine_tuned_model.startswith("ft:gpt2-from-config:tuneops:spans-b:")
    assert done.trained_tokens > 0 and done.finished_at >= done.created_at and done.error is None

    messages = [e.message for e in events]
    for expected in ("Created fine-tuning job", "Stage ingest started", "Stage train finished", "Gate passed"):
        assert any(m.startswith(expected) for m in messages), (expected, messages)
    assert any(m.startswith("Data quality passed") for m in messages)
    assert f"as {done.fine_tuned_model}" in next(m for m in messages if m.startswith("Registered"))
    metrics = [e for e in events if e.type == "metrics"]
    assert metrics and all(e.data["step"] > 0 for e in metrics) and any("train_loss" in e.data for e in metrics)

    (result,) = done.result_files
    assert stack.client.files.retrieve(result).purpose == "fine-tune-results"
    table = stack.client.files.content(result).text.splitlines()
    assert table[0] == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy" and len(table) > 2
    checkpoints = stack.client.fine_tuning.jobs.checkpoints.list(done.id).data
    assert checkpoints and checkpoints[0].metrics.valid_loss is not None and checkpoints[0].step_number > 0

    for job in (done, other):
        answer = stack.client.completions.create(
            model=job.fine_tuned_model, prompt="so happy today\nsentiment: positive\n\n###\n\n", max_tokens=8
        )
        assert answer.model == job.fine_tuned_model and isinstance(answer.choices[0].text, str)
        assert answer.usage.completion_tokens >= 1
    # the user's checkout ran nothing: each job trained in jobs/<id>/
    assert not (stack.project.path / "dvc.lock").exists() and not (stack.project.path / "models").exists()
    assert (stack.project.path / "jobs" / done.id / "dvc.lock").is_file()


def test_jobs_list_in_pages_newest_first(stack):
    everything = stack.client.fine_tuning.jobs.list(limit=100).data
    assert len(everything) >= 2
    first = stack.client.fine_tuning.jobs.list(limit=1)
    assert first.has_more and first.data[0].id == everything[0].id
    paged = [job.id for job in stack.client.fine_tuning.jobs.list(limit=1)]
    assert paged == [job.id for job in everything]
    assert [j.created_at for j in everything] == sorted((j.created_at for j in everything), reverse=True)
