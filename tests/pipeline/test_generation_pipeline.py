"""task: generation through `dvc repro` on the offline sample as multi-turn chat (OpenAI's chat fine-tuning format): a
causal LM fine-tuned on conversations rendered with its chat template (the sample's GPT-2 has none: params' declared
one, then saved into its tokenizer), evaluated on completions it generates against its base, registered as an
MLflow text-generation model that carries its template; the server and `tuneops predict` render a conversation to
the very token ids training saw."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
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
    """The sample's texts and labels as conversations: 600 train, 150 test, as the sample's own split files."""
    df = sample_spans(751, seed=3)
    pairs = list(zip(df.text, df.sentiment, strict=True))
    rows = [conversation(*pairs[i], earlier=pairs[i - 1]) for i in range(1, len(pairs))]
    splits = {"train": rows[:600], "test": rows[600:]}
    folder.mkdir()
    for split, convs in splits.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(c) + "\n" for c in convs))
    return splits


@dataclass(frozen=True)
class Generated:
    project: Project
    splits: dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def generated(tmp_path_factory, sample) -> Generated:
    project = make_project(tmp_path_factory.mktemp("gen") / "project")
    splits = write_chat(project.path / "chat")

    def setup(p: dict[str, Any]) -> None:
        use_generation_sample(p, sample)
        p["data"]["source"] = "chat"
        p["generation"].update(prompt_template="{prompt}", completion_template="{completion}")

    project.set_params(setup)
    result = project.dvc("repro")
    assert project.ran(result) == ["ingest", "validate", "tokenize", "train", "evaluate", "register"]
    return Generated(project, splits)


def test_repro_fine_tunes_a_causal_lm_and_registers_it_with_its_generation_settings(generated):
    project = generated.project
    path = project.path
    interim = json.loads((path / "data" / "interim" / "manifest.json").read_text())
    assert interim["labels"] == [] and interim["splits"]["test"]["rows"] == 150
    candidate = json.loads((path / "models" / "candidate" / "config.json").read_text())
    assert candidate["architectures"] == ["GPT2LMHeadModel"]
    assert json.loads((path / "models" / "candidate" / "generation_config.json").read_text())["max_new_tokens"] == 8

    metrics = json.loads((path / "reports" / "metrics.json").read_text())
    assert metrics["task"] == "generation" and metrics["test"]["generated"] == 60
    assert metrics["test"]["perplexity"] > 1 and 0 <= metrics["test"]["token_accuracy"] <= 1
    assert set(metrics["baselines"]) == {"copy_prompt", "most_frequent"}
    gate = json.loads((path / "reports" / "gate.json").read_text())
    assert [c["check"] for c in gate["checks"]] == [
        "min_exact_match",
        "max_loss_gap",
        "beats_baseline",
        "beats_base",
        "beats_champion",
    ]
    # the base (the sample's GPT-2 from random weights) on the same 60 prompts, and teacher-forced on all of test
    assert metrics["base"]["generated"] == 60 and metrics["base"]["loss"] > metrics["test"]["loss"]
    samples = [json.loads(line) for line in (path / "reports" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 60 and samples[0]["prompt"].endswith("\nAssistant:")
    assert samples[0]["expected"] in {"negative", "neutral", "positive"}  # the stop sequence is not the answer
    assert isinstance(samples[0]["base"], str) and isinstance(samples[0]["base_exact_match"], bool)
    assert (path / "reports" / "evaluation.png").stat().st_size > 1000
    history = json.loads((path / "reports" / "train_history.json").read_text())
    assert history[-1]["validation_macro_f1"] is None and 0 < history[-1]["validation_accuracy"] <= 1

    record = json.loads((path / "models" / "registered.json").read_text())
    assert (record["name"], record["version"]) == (MODEL, "1")
    version = project.registry().get_model_version(MODEL, "1")
    assert version.tags["tuneops.task"] == "generation" and json.loads(version.tags["tuneops.stop"]) == ["\n"]
    run = project.registry().get_run(record["run_id"])
    assert "test_exact_match" in run.data.metrics and run.data.params["task"] == "generation"
    assert {"base_exact_match", "base_jaccard", "base_loss"} <= set(run.data.metrics)


def test_predict_completes_prompts_with_the_registered_model(generated):
    prompt = "User: I love the concert tonight!\nAssistant:"
    result = generated.project.run(sys.executable, "-m", "tuneops.cli", "predict", prompt, "--max-tokens", "3")
    line = json.loads(result.stdout.splitlines()[0])
    assert line["text"] == prompt
    assert line["finish_reason"] in {"stop", "length"} and "\n" not in line["completion"]


def registry(project: Project, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The project's registry, read from inside the project (its artifacts are at ./mlruns there)."""
    from tuneops.config.params import load_params

    monkeypatch.chdir(project.path)
    return load_params(project.path / "params.yaml")


def test_the_registered_model_carries_the_template_it_was_trained_with(generated, monkeypatch):
    from tuneops.data.chat import declared_template
    from tuneops.registry.store import load_registered

    project = generated.project
    params = registry(project, monkeypatch)
    _, tokenizer = load_registered(params.register_, 1)
    # the sample's GPT-2 ships no template: the declared one, written into the saved tokenizer
    assert tokenizer.chat_template == declared_template(params.generation.chat_template)


def test_serving_renders_a_conversation_to_the_token_ids_training_saw(generated, monkeypatch):
    from datasets import load_from_disk
    from fastapi.testclient import TestClient

    from tuneops.data.chat import render
    from tuneops.registry.catalog import Catalog
    from tuneops.registry.mlflow_registry import MlflowRegistry
    from tuneops.registry.store import load_registered
    from tuneops.serve.app import create_app

    project, splits = generated.project, generated.splits
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
