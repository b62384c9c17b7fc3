"""OpenAI's fine-tuning workflow with the official `openai` client against tuneops, started the way users start it:
`prefect server start`, `prefect worker start --pool tuneops`, `tuneops serve`. Upload files, create jobs, follow
them, call the fine-tuned models; a bad file, a cancelled job, and pages of jobs. The migration tests are what a
team leaving OpenAI's fine-tuning brings: chat files, two jobs at once, pause and resume, checkpoints as models,
DPO on preference data continuing a fine-tuned model, and `models.delete`.

One server, worker and API for the module; the offline sample (span extraction) as prompt/completion, chat and
preference files, its 2-layer GPT-2.
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
CHAT_ROWS = 96  # conversations: three epochs of six steps, a checkpoint each


@dataclass
class Stack:
    client: Any  # openai.OpenAI
    project: Project
    base: Path
    env: dict[str, str]
    sample: Sample


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


def prefect_env(base: Path, port: int) -> dict[str, str]:
    """This process's environment for a Prefect server of the test's own on `port`, its home under `base`."""
    return {
        **os.environ,
        "PREFECT_HOME": str(base / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # pick a job up within a second, not Prefect's default 10
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, sample: Sample) -> Iterator[Stack]:
    import openai

    base = tmp_path_factory.mktemp("finetune")
    project = make_project(base / "project")
    project.set_params(lambda p: generation_params(p, sample))
    (base / "train.jsonl").write_text(spans(sample, "train", ROWS))
    (base / "valid.jsonl").write_text(spans(sample, "test", 60))
    port, api_port = free_port(), free_port()
    env = prefect_env(base, port)
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
        yield Stack(client, project, base, env, sample)
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
    import openai
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
    with pytest.raises(openai.ConflictError, match=job.id):  # a running job's training file stays (409)
        stack.client.files.delete(train.id)
    cancelled = stack.client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    job, _, events = follow(stack.client, job.id)
    assert job.status == "cancelled" and job.fine_tuned_model is None and job.finished_at is not None
    assert events[-1].message == "The job was cancelled"
    assert stack.client.files.delete(train.id).deleted  # the job is over: its file may go
    gone = time.monotonic() + 60
    while training_processes(workspace):  # the worker kills the flow run's process group: DVC, the trainer
        assert time.monotonic() < gone, [p.info["cmdline"] for p in training_processes(workspace)]
        time.sleep(1)
    registry = MlflowClient(f"sqlite:///{stack.project.path / 'mlflow.db'}")
    versions = registry.search_model_versions(f"name='{stack.project.params()['register']['model_name']}'")
    assert not [v for v in versions if v.tags.get("tuneops.fine_tuning_job") == job.id]


SYSTEM = "Copy the words of the tweet that carry its sentiment."


def chat_lines(sample: Sample, split: str, rows: int) -> str:
    """The spans as OpenAI's chat format: a system message, the tweet, the span; every fifth example two turns,
    the first reply not trained on (weight 0)."""
    import pandas as pd

    df = pd.read_csv(sample.data_dir / f"{split}.csv").head(rows)
    lines = []
    for i, (t, span, s) in enumerate(zip(df.text, df.selected_text, df.sentiment, strict=True)):
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"{t}\nsentiment: {s}"}]
        if i % 5 == 0:
            messages += [
                {"role": "assistant", "content": t, "weight": 0},
                {"role": "user", "content": "Only the words that carry the sentiment."},
            ]
        lines.append(json.dumps({"messages": [*messages, {"role": "assistant", "content": span}]}) + "\n")
    return "".join(lines)


def preference_lines(sample: Sample, split: str, rows: int) -> str:
    """OpenAI's DPO format: the span preferred over the whole tweet."""
    import pandas as pd

    df = pd.read_csv(sample.data_dir / f"{split}.csv").head(rows)
    df = df[df.text.str.strip() != df.selected_text.str.strip()]
    return "".join(
        json.dumps(
            {
                "input": {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"{t}"}]},
                "preferred_output": [{"role": "assistant", "content": span}],
                "non_preferred_output": [{"role": "assistant", "content": t}],
            }
        )
        + "\n"
        for t, span in zip(df.text, df.selected_text, strict=True)
    )


def ask(stack: Stack, model: str) -> str:
    reply = stack.client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "so happy today\nsentiment: positive"},
        ],
        max_tokens=8,
        temperature=0,
    )
    assert reply.model == model and reply.usage.completion_tokens >= 1
    return reply.choices[0].message.content


def result_rows(stack: Stack, job: Any) -> list[dict[str, str]]:
    import csv
    import io

    (result,) = job.result_files
    assert stack.client.files.retrieve(result).purpose == "fine-tune-results"
    text = stack.client.files.content(result).text
    assert text.splitlines()[0] == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
    return list(csv.DictReader(io.StringIO(text)))


def flow_artifacts(stack: Stack, job_id: str) -> dict[str, str]:
    """The Prefect artifacts (key: data) the job's flow run published, read from the stack's Prefect server."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tuneops.jobs.spec import flow_run_id

    only = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id(job_id)]))
    with temporary_settings({PREFECT_API_URL: stack.env["PREFECT_API_URL"]}), get_client(sync_client=True) as client:
        return {a.key: str(a.data) for a in client.read_artifacts(artifact_filter=only)}


def wait_status(stack: Stack, job_id: str, status: str, timeout: float = 600) -> Any:
    deadline = time.monotonic() + timeout
    while (job := stack.client.fine_tuning.jobs.retrieve(job_id)).status != status:
        assert job.status not in FINAL, (job.status, job.error)
        assert time.monotonic() < deadline, f"{job_id} never {status}: {job.status}"
        time.sleep(0.5)
    return job


def test_migration_chat_jobs_one_paused_and_resumed_train_alike_and_serve_from_checkpoints(stack):
    """Code written for OpenAI: a chat file, two jobs at once, one paused and resumed, events, checkpoints, and
    chat completions from a checkpoint and the final models."""
    (stack.base / "chat_train.jsonl").write_text(chat_lines(stack.sample, "train", CHAT_ROWS))
    (stack.base / "chat_valid.jsonl").write_text(chat_lines(stack.sample, "test", 40))
    train, valid = upload(stack, "chat_train.jsonl"), upload(stack, "chat_valid.jsonl")
    assert train.status == "processed" and valid.status == "processed", (train.status_details, valid.status_details)
    again = upload(stack, "chat_train.jsonl")  # the same bytes again: another file, which deleting leaves alone
    assert again.id != train.id and again.filename == train.filename and stack.client.files.delete(again.id).deleted
    assert stack.client.files.content(train.id).content == (stack.base / "chat_train.jsonl").read_bytes()

    model = stack.project.params()["model"]["name"]
    hyper = {"n_epochs": 3, "batch_size": 16}
    common = {
        "model": model,
        "training_file": train.id,
        "validation_file": valid.id,
        "seed": 7,
        "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
    }
    first = stack.client.fine_tuning.jobs.create(**common, suffix="chat", metadata={"team": "tests", "run": "straight"})
    second = stack.client.fine_tuning.jobs.create(
        **common, suffix="paused", metadata={"team": "tests", "run": "paused"}
    )
    assert first.seed == 7 and first.method.type == "supervised" and first.metadata["run"] == "straight"

    wait_status(stack, second.id, "running")
    paused = stack.client.fine_tuning.jobs.pause(second.id)
    paused = paused if paused.status == "paused" else wait_status(stack, second.id, "paused", 120)
    gone = time.monotonic() + 60
    while left := training_processes(stack.project.path / "jobs" / second.id):  # the run leaves its worker
        assert time.monotonic() < gone, [p.info["cmdline"] for p in left]
        time.sleep(1)
    listed = stack.client.fine_tuning.jobs.list(metadata={"run": "paused"}).data
    assert [j.id for j in listed] == [second.id] and listed[0].status == "paused"

    done, seen, events = follow(stack.client, first.id)
    assert done.status == "succeeded", done.error
    assert seen == sorted(seen, key=ORDER.index) and seen[-1] == "succeeded"
    assert done.fine_tuned_model.startswith("ft:gpt2-from-config:tuneops:chat:")
    assert done.trained_tokens > 0 and done.finished_at >= done.created_at and done.error is None
    messages = [e.message for e in events]
    split_said = next(m for m in messages if m.startswith("Training on"))
    assert f"all {CHAT_ROWS} rows of training_file" in split_said
    assert f"40 rows of validation_file {valid.id}" in split_said
    for expected in ("Created fine-tuning job", "Stage ingest started", "Stage train finished", "Gate passed"):
        assert any(m.startswith(expected) for m in messages), (expected, messages)
    metrics = [e for e in events if e.type == "metrics"]
    train_done = next(e for e in events if e.message.startswith("Stage train finished"))
    assert metrics and all(e.data["step"] > 0 and e.created_at <= train_done.created_at for e in metrics)

    published = flow_artifacts(stack, done.id)  # the retrain flow on generation data publishes its held-out samples
    assert {"metrics", "samples", "gate", "registered-model"} <= published.keys()
    assert "expected" in published["samples"] and "generated" in published["samples"]

    checkpoints = stack.client.fine_tuning.jobs.checkpoints.list(done.id).data
    assert len(checkpoints) == 3 and checkpoints[0].metrics.valid_loss is not None
    for checkpoint in checkpoints:
        ask(stack, checkpoint.fine_tuned_model_checkpoint)
    straight_answer = ask(stack, done.fine_tuned_model)

    start_dpo(stack, done)  # continues this job's model; runs beside the resumed job (tested below)
    resumed = stack.client.fine_tuning.jobs.resume(second.id)
    assert resumed.id == second.id and resumed.status in ("queued", "running")
    other, seen_other, other_events = follow(stack.client, second.id)
    assert other.status == "succeeded", other.error
    said = [e.message for e in other_events]
    paused_at = [m for m in said if m.startswith("Stage train paused at step")]
    assert paused_at and any(m.startswith("Stage train finished") for m in said), said
    resumed_from = int(paused_at[0].split()[5])  # "Stage train paused at step N (checkpoint saved) ..."
    # the same result as the uninterrupted job: step for step, and the same greedy answer
    ours, theirs = result_rows(stack, other), result_rows(stack, done)
    assert {r["step"] for r in ours} - {r["step"] for r in theirs} <= {str(resumed_from)}  # it evaluated there
    ours_at = {r["step"]: r for r in ours}
    for before, b in zip([{"step": "0"}, *theirs], theirs, strict=False):
        a = ours_at[b["step"]]
        if b["valid_loss"]:
            assert abs(float(a["valid_loss"]) - float(b["valid_loss"])) < 1e-4, (a, b)
        # a logged loss averages the steps since the last log: compared once that window began after the resume
        if b["train_loss"] and int(before["step"]) >= resumed_from:
            assert abs(float(a["train_loss"]) - float(b["train_loss"])) < 1e-4, (a, b)
    assert ask(stack, other.fine_tuned_model) == straight_answer
    # the user's checkout ran nothing: each job trained in jobs/<id>/
    assert not (stack.project.path / "dvc.lock").exists() and not (stack.project.path / "models").exists()


def start_dpo(stack: Stack, chat: Any) -> Any:
    """A DPO job on OpenAI's preference format continuing the chat job's model; what is not offered is refused."""
    import openai

    (stack.base / "prefs.jsonl").write_text(preference_lines(stack.sample, "train", ROWS))
    prefs = upload(stack, "prefs.jsonl")
    assert prefs.status == "processed", prefs.status_details
    for refused in ({"method": {"type": "reinforcement"}}, {"integrations": [{"type": "wandb", "wandb": {}}]}):
        with pytest.raises(openai.BadRequestError) as caught:
            stack.client.fine_tuning.jobs.create(model=chat.fine_tuned_model, training_file=prefs.id, **refused)
        assert caught.value.body["param"] in refused
    dpo = {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 1, "batch_size": 8}}}
    job = stack.client.fine_tuning.jobs.create(
        model=chat.fine_tuned_model,
        training_file=prefs.id,
        method=dpo,
        suffix="dpo",
        metadata={"run": "dpo"},
        extra_body={"max_train_samples": 48},  # tuneops' own: fewer rows, asked for (a job trains on all by default)
    )
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.2
    assert isinstance(job.seed, int) and job.model == chat.fine_tuned_model  # no seed asked: one drawn, reported
    return job


def test_migration_dpo_continues_a_fine_tuned_model_and_models_delete_removes_it(stack):
    """The DPO job the chat test started, from the chat job's model (continued fine-tuning), then `models.delete`."""
    import openai

    (chat,) = stack.client.fine_tuning.jobs.list(metadata={"run": "straight"}).data
    (job,) = stack.client.fine_tuning.jobs.list(metadata={"run": "dpo"}).data
    done, _, events = follow(stack.client, job.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model.startswith("ft:gpt2-from-config:tuneops:dpo:")
    split_said = next(e.message for e in events if e.message.startswith("Training on"))
    assert "held out for validation metrics" in split_said and "a seeded 48 of the training rows" in split_said
    gate = next(e for e in events if e.message.startswith("Gate passed"))
    assert any("preference" in check["check"] for check in gate.data["checks"]), gate.data
    ask(stack, done.fine_tuned_model)

    deleted = stack.client.models.delete(done.fine_tuned_model)
    assert deleted.id == done.fine_tuned_model and deleted.deleted
    with pytest.raises(openai.NotFoundError):
        ask(stack, done.fine_tuned_model)
    ask(stack, chat.fine_tuned_model)  # the model it continued from is untouched


def test_jobs_list_in_pages_newest_first(stack):
    everything = stack.client.fine_tuning.jobs.list(limit=100).data
    assert len(everything) >= 2
    first = stack.client.fine_tuning.jobs.list(limit=1)
    assert first.has_more and first.data[0].id == everything[0].id
    paged = [job.id for job in stack.client.fine_tuning.jobs.list(limit=1)]
    assert paged == [job.id for job in everything]
    assert [j.created_at for j in everything] == sorted((j.created_at for j in everything), reverse=True)
