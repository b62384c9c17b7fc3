"""Chat data through `dvc repro`: multi-turn conversations rendered with the model's chat template, the template
saved into the registered model's tokenizer, and the server rendering a conversation to the very token ids
training saw."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MODEL, Project, make_project, use_generation_sample
from tuneops.data.sample import sample_spans

pytestmark = pytest.mark.slow
SYSTEM = "Answer with the sentiment."


def conversation(text: str, label: str, earlier: tuple[str, str]) -> dict[str, Any]:
    """Two turns: an earlier question answered (trained too), then this text's."""
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": earlier[0]},
            {"role": "assistant", "content": earlier[1]},
            {"role": "user", "content": text},
            {"role": "assistant", "content": label},
        ]
    }


def write_chat(folder: Path) -> dict[str, list[dict[str, Any]]]:
    df = sample_spans(450, seed=3)
    pairs = list(zip(df.text, df.sentiment, strict=True))
    rows = [conversation(*pairs[i], earlier=pairs[i - 1]) for i in range(1, len(pairs))]
    splits = {"train": rows[:360], "test": rows[360:]}
    folder.mkdir()
    for split, convs in splits.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(c) + "\n" for c in convs))
    return splits


@pytest.fixture(scope="module")
def chatted(tmp_path_factory, sample) -> tuple[Project, dict[str, list[dict[str, Any]]]]:
    project = make_project(tmp_path_factory.mktemp("chat") / "project")
    splits = write_chat(project.path / "chat")

    def setup(p: dict[str, Any]) -> None:
        use_generation_sample(p, sample)
        p["data"]["source"] = "chat"
        p["generation"].update(prompt_template="{prompt}", completion_template="{completion}")

    project.set_params(setup)
    result = project.dvc("repro")
    assert project.ran(result) == ["ingest", "validate", "tokenize", "train", "evaluate", "register"]
    return project, splits


def registry(project: Project, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The project's registry, read from inside the project (its artifacts are at ./mlruns there)."""
    from tuneops.config.params import load_params

    monkeypatch.chdir(project.path)
    return load_params(project.path / "params.yaml")


def test_the_registered_model_carries_the_template_it_was_trained_with(chatted, monkeypatch):
    from tuneops.data.chat import declared_template
    from tuneops.registry.store import load_registered

    project, _ = chatted
    params = registry(project, monkeypatch)
    _, tokenizer = load_registered(params.register_, 1)
    # the sample's GPT-2 ships no template: the declared one, written into the saved tokenizer
    assert tokenizer.chat_template == declared_template(params.generation.chat_template)


def test_serving_renders_a_conversation_to_the_token_ids_training_saw(chatted, monkeypatch):
    from datasets import load_from_disk
    from fastapi.testclient import TestClient

    from tuneops.data.chat import render
    from tuneops.registry.catalog import Catalog, MlflowRegistry
    from tuneops.registry.store import load_registered
    from tuneops.serve.app import create_app

    project, splits = chatted
    register = registry(project, monkeypatch).register_
    _, tokenizer = load_registered(register, 1)
    by_user = {c["messages"][-2]["content"]: c["messages"] for c in splits["test"]}
    test = load_from_disk(str(project.path / "data" / "processed"))["test"]
    for row in test.select(range(20)):
        messages = by_user[row["source_text"]][:-1]
        served = tokenizer(render(tokenizer, messages, add_generation_prompt=True))["input_ids"]
        assert row["input_ids"][: row["prompt_length"]] == served
        # both replies train: the earlier one in the prompt, and the last
        assert [end - start for start, end in row["loss_spans"]][-1] == len(row["input_ids"]) - row["prompt_length"]
        assert len(row["loss_spans"]) == 2

    messages = splits["test"][0]["messages"][:-1]
    app = create_app(Catalog(MlflowRegistry(register), 2), f"{MODEL}@champion")
    with TestClient(app) as client:
        body = {"model": f"{MODEL}@champion", "messages": messages, "max_tokens": 4, "temperature": 0}
        chat = client.post("/v1/chat/completions", json=body)
        assert chat.status_code == 200, chat.text
        prompt = render(tokenizer, messages, add_generation_prompt=True)
        same = client.post(
            "/v1/completions",
            json={"model": f"{MODEL}@champion", "prompt": prompt, "max_tokens": 4, "temperature": 0, "stop": ["\n"]},
        )
        assert chat.json()["choices"][0]["message"]["content"] == same.json()["choices"][0]["text"]
        assert chat.json()["usage"]["prompt_tokens"] == len(tokenizer(prompt)["input_ids"])
        # `tuneops predict --chat` asks the same way
        alone = {**body, "messages": [{"role": "user", "content": "so happy today"}]}
        served = client.post("/v1/chat/completions", json=alone).json()["choices"][0]["message"]["content"]
    said = project.run(sys.executable, "-m", "tuneops.cli", "predict", "--chat", "so happy today", "--max-tokens", "4")
    assert json.loads(said.stdout.splitlines()[0])["completion"] == served
