"""task: generation through `dvc repro` on the offline sample: a causal LM fine-tuned on prompt/completion pairs,
evaluated on completions it generates, registered as an MLflow text-generation model, and `tuneops predict`."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import MODEL, Project, make_project, use_generation_sample

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def generated(tmp_path_factory, sample) -> Project:
    project = make_project(tmp_path_factory.mktemp("gen") / "project")
    project.set_params(lambda p: use_generation_sample(p, sample))
    result = project.dvc("repro")
    assert project.ran(result) == ["ingest", "validate", "tokenize", "train", "evaluate", "register"]
    return project


def test_repro_fine_tunes_a_causal_lm_and_registers_it_with_its_generation_settings(generated):
    path = generated.path
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
    assert len(samples) == 60 and samples[0]["prompt"].endswith("\n\n###\n\n")
    assert samples[0]["expected"] in {"negative", "neutral", "positive"}  # the stop sequence is not the answer
    assert isinstance(samples[0]["base"], str) and isinstance(samples[0]["base_exact_match"], bool)
    assert (path / "reports" / "evaluation.png").stat().st_size > 1000
    history = json.loads((path / "reports" / "train_history.json").read_text())
    assert history[-1]["validation_macro_f1"] is None and 0 < history[-1]["validation_accuracy"] <= 1

    record = json.loads((path / "models" / "registered.json").read_text())
    assert (record["name"], record["version"]) == (MODEL, "1")
    version = generated.registry().get_model_version(MODEL, "1")
    assert version.tags["tuneops.task"] == "generation" and json.loads(version.tags["tuneops.stop"]) == ["\n"]
    run = generated.registry().get_run(record["run_id"])
    assert "test_exact_match" in run.data.metrics and run.data.params["task"] == "generation"
    assert {"base_exact_match", "base_jaccard", "base_loss"} <= set(run.data.metrics)


def test_predict_completes_prompts_with_the_registered_model(generated):
    prompt = "I love the concert tonight!\n\n###\n\n"
    result = generated.run(sys.executable, "-m", "tuneops.cli", "predict", prompt, "--max-tokens", "3")
    line = json.loads(result.stdout.splitlines()[0])
    assert line["text"] == prompt
    assert line["finish_reason"] in {"stop", "length"} and "\n" not in line["completion"]
