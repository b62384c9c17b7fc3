"""A real MLflow registry (SQLite in a temp dir) holding what `tuneops serve` serves in these tests: two versions of
a classifier and one of a generation model, each the sample's tiny GPT-2, registered the way tuneops registers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LABELS, Sample

CLASSIFIER = "tuneops-tweet-sentiment"
GENERATOR = "tuneops-tweet-spans"
FINE_TUNED = "ft:gpt2:tuneops:spans:1"
CHAT = {"system": "{content}\n", "user": "Q: {content}\n", "assistant": "A: {content}\n"}


@dataclass(frozen=True)
class Store:
    """The registry: its tracking URI and the params a server reads it with."""

    path: Path
    uri: str

    def register(self, name: str = CLASSIFIER) -> Any:
        from tuneops.config.params import RegisterParams

        return RegisterParams(model_name=name, tracking_uri=self.uri, experiment_name="serve-tests", alias="champion")


def register_classifier(sample: Sample, tokenizer: Any, dest: Path, name: str) -> str:
    import mlflow

    from tuneops.models.loading import load_classifier
    from tuneops.registry.store import log_model

    load_classifier(str(sample.model_dir), LABELS, tokenizer).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    with mlflow.start_run():
        return str(log_model(dest, name).registered_model_version)


def register_generator(sample: Sample, tokenizer: Any, dest: Path, name: str) -> str:
    """A causal LM registered the way the register stage does it (text-generation, through registry.log_model).

    Through a saved folder, not the session's tokenizer object: MLflow builds a text-generation pipeline from
    what it is given, and that pipeline sets the tokenizer's padding_side to "left" for good."""
    import mlflow
    from transformers import AutoModelForCausalLM

    from tuneops.registry.store import log_model

    AutoModelForCausalLM.from_pretrained(sample.model_dir).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    with mlflow.start_run():
        return str(log_model(dest, name).registered_model_version)


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory, sample: Sample, tokenizer: Any) -> Store:
    """Classifier versions 1 and 2 (champion: 2) and generation version 1 (champion, with a fine-tuned id and its
    generation settings in tags, as the register stage and the fine-tuning jobs leave them)."""
    import json

    import mlflow
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("serve-tests")
    first = register_classifier(sample, tokenizer, path / "classifier", CLASSIFIER)
    second = register_classifier(sample, tokenizer, path / "classifier", CLASSIFIER)
    generated = register_generator(sample, tokenizer, path / "generator", GENERATOR)
    client = MlflowClient(uri)
    client.set_registered_model_alias(CLASSIFIER, "champion", second)
    client.set_registered_model_alias(GENERATOR, "champion", generated)
    tags = {
        "tuneops.fine_tuned_model": FINE_TUNED,
        "tuneops.task": "generation",
        "tuneops.stop": json.dumps(["\n"]),
        "tuneops.max_new_tokens": "8",
        "tuneops.chat_template": json.dumps(CHAT),
    }
    for key, value in tags.items():
        client.set_model_version_tag(GENERATOR, generated, key, value)
    assert (first, second, generated) == ("1", "2", "1")
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # set by mlflow.set_tracking_uri
    return Store(path, uri)
