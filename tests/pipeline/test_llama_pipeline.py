"""A real pretrained Llama through `dvc repro`, with nothing from ../shared: stories260K (shipped in tests/fixtures,
MIT) fine-tuned with LoRA on the sample's sentiment as a completion must beat its own base model through the gate,
registered in Hub format, and answer `tuneops predict`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import MODEL, STORIES_FIXTURE, Project, use_generation_sample

pytestmark = pytest.mark.slow


def test_a_fine_tuned_llama_beats_its_base_through_the_gate_and_registers_in_hub_format(project: Project, sample):
    def setup(p):
        use_generation_sample(p, sample)
        p["model"]["name"] = str(STORIES_FIXTURE)
        p["train"]["method"] = "lora"  # target_modules: auto, on a Llama: every linear layer of its blocks
        p["evaluate"]["base_margin"] = 0.2  # the fine-tune must answer a fifth more labels right than its base

    project.set_params(setup)
    result = project.dvc("repro")
    assert project.ran(result) == ["ingest", "validate", "tokenize", "train", "evaluate", "register"]

    metrics = json.loads((project.path / "reports" / "metrics.json").read_text())
    gate = json.loads((project.path / "reports" / "gate.json").read_text())
    beats_base = next(c for c in gate["checks"] if c["check"] == "beats_base")
    # a story model asked for a sentiment writes a story: its base gets (almost) none right, the fine-tune most
    assert metrics["base"]["exact_match"] < 0.2 < metrics["test"]["exact_match"] - metrics["base"]["exact_match"]
    assert beats_base["passed"] and beats_base["observed"] == metrics["test"]["exact_match"]
    samples = [json.loads(line) for line in (project.path / "reports" / "samples.jsonl").read_text().splitlines()]
    assert all({"prompt", "expected", "generated", "base"} <= set(s) for s in samples)

    candidate = project.path / "models" / "candidate"
    config = json.loads((candidate / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    assert (candidate / "model.safetensors").is_file() and not list(candidate.glob("adapter_*"))  # LoRA merged
    assert project.versions() == ["1"]
    script = (  # in the project, as `tuneops predict` finds its registry (params.yaml's sqlite:///mlflow.db)
        "import mlflow; mlflow.set_tracking_uri('sqlite:///mlflow.db'); "
        f"print(mlflow.artifacts.download_artifacts(artifact_uri='models:/{MODEL}/1'))"
    )
    registered = Path(project.run(sys.executable, "-c", script).stdout.strip().splitlines()[-1])
    assert list(registered.rglob("model.safetensors")) and not list(registered.rglob("*.gguf"))
    prompt = "I love the concert tonight!\n\n###\n\n"
    answer = project.run(sys.executable, "-m", "tuneops.cli", "predict", prompt, "--max-tokens", "3")
    line = json.loads(answer.stdout.splitlines()[0])
    assert line["text"] == prompt and line["finish_reason"] in {"stop", "length"}
