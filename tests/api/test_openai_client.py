"""Acceptance with the official `openai` client: `tuneops serve` started as users start it, on a free local port,
over a real MLflow registry holding a tiny generation model and a classifier (tests/api/conftest.py), called
through `OpenAI(base_url=..., api_key=...)` exactly as code written for OpenAI calls it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.api.conftest import CLASSIFIER, FINE_TUNED, GENERATOR, LABELS
from tests.conftest import ROOT, free_port

KEY = "sk-tuneops-test-key"
pytestmark = pytest.mark.slow  # a real `tuneops serve` process: ~30 s with its start


def params_for(store: Any, dest: Path) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["register"].update(tracking_uri=store.uri, model_name=CLASSIFIER)
    path = dest / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def base_url(store: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for the module, started with `tuneops serve` and stopped at the end."""
    workdir = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {**os.environ, "TUNEOPS_API_KEY": KEY}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = (workdir / "serve.log").open("w")
    cmd = [
        sys.executable,
        "-m",
        "tuneops.cli",
        "--params",
        str(params_for(store, workdir)),
        "serve",
        "--port",
        str(port),
    ]
    server = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                raise AssertionError(
                    f"tuneops serve exited {server.returncode}:\n{(workdir / 'serve.log').read_text()}"
                )
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (workdir / "serve.log").read_text()
            time.sleep(0.5)
        yield f"{url}/v1"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        assert KEY not in (workdir / "serve.log").read_text()  # the key is never logged


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=60)


def test_models_are_listed(client):
    ids = [m.id for m in client.models.list()]
    assert {f"{CLASSIFIER}@champion", f"{CLASSIFIER}:1", f"{GENERATOR}@champion", FINE_TUNED} <= set(ids)
    assert client.models.retrieve(FINE_TUNED).owned_by == "tuneops"


@pytest.mark.smoke  # `make test`'s one round trip: the official client against `tuneops serve`
def test_the_seeds_snippet_runs_against_a_fine_tuned_model(client):
    response = client.completions.create(model=FINE_TUNED, prompt="I love my cat", max_tokens=5, temperature=0)
    assert isinstance(response.choices[0].text.strip(), str)
    assert response.choices[0].finish_reason in ("stop", "length")
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_a_classification_model_answers_its_label(client):
    response = client.completions.create(model=f"{CLASSIFIER}@champion", prompt="so happy", max_tokens=1, logprobs=3)
    choice = response.choices[0]
    assert choice.text in LABELS and set(choice.logprobs.top_logprobs[0]) == set(LABELS)


def test_streamed_completions_from_both_models(client):
    body = {"prompt": "the beach", "max_tokens": 6, "temperature": 0}
    whole = client.completions.create(model=GENERATOR, **body).choices[0].text
    chunks = list(client.completions.create(model=GENERATOR, stream=True, **body))
    assert "".join(c.choices[0].text for c in chunks) == whole
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    labels = list(client.completions.create(model=CLASSIFIER, prompt="so sad", stream=True))
    assert labels[0].choices[0].text in LABELS


def test_chat_completion(client):
    messages = [{"role": "user", "content": "how was the beach?"}]
    response = client.chat.completions.create(model=f"{GENERATOR}@champion", messages=messages, max_tokens=5)
    assert response.choices[0].message.role == "assistant" and response.usage.completion_tokens <= 5
    streamed = client.chat.completions.create(model=GENERATOR, messages=messages, max_tokens=5, stream=True)
    assert [c.object for c in streamed][-1] == "chat.completion.chunk"


def test_errors_are_the_clients_own_exceptions(client, base_url):
    with pytest.raises(openai.NotFoundError) as unknown:
        client.completions.create(model="davinci-002", prompt="hi")
    assert unknown.value.code == "model_not_found" and unknown.value.param == "model"
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model=GENERATOR, prompt="hi", temperature=5)
    assert bad.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as long:
        client.completions.create(model=GENERATOR, prompt="word " * 300)
    assert long.value.code == "context_length_exceeded"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0).models.list()
