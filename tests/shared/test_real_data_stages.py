"""`dvc repro` on the real tweets and the real tiny-gpt2 checkpoint, in a fresh copy of the repository."""

import json

import pandas as pd
import pytest

from tests.conftest import TINY_GPT2, TWEETS, Project

pytestmark = pytest.mark.slow


def use_shared_tweets(params: dict) -> None:
    params["data"].update(source=str(TWEETS), text_column="text", label_column="sentiment")


def test_dvc_runs_skips_and_reruns_only_what_changed(project):
    project.set_params(use_shared_tweets)
    first = project.dvc("repro", "validate")
    assert project.ran(first) == ["ingest", "validate"]
    assert (project.path / "reports" / "data_quality" / "index.html").is_file()
    records = json.loads((project.path / "reports" / "data_quality.json").read_text())
    empty = next(r for r in records if r["check"] == "empty_text_rate" and r["split"] == "train")
    assert empty["passed"] is False and empty["observed"] > 0  # the known empty tweet, fdb77c3752
    manifest = json.loads((project.path / "data" / "interim" / "manifest.json").read_text())
    assert manifest["splits"]["test"]["rows"] == 3534

    assert project.ran(project.dvc("repro", "validate")) == []

    project.set_params(lambda p: p["validate"]["max_class_ratio"].update(threshold=2.5))
    assert project.ran(project.dvc("repro", "validate")) == ["validate"]

    project.set_params(lambda p: p["data"].update(seed=7))
    assert project.ran(project.dvc("repro", "validate")) == ["ingest", "validate"]


def test_failing_error_check_stops_dvc_with_the_reason(project):
    project.set_params(use_shared_tweets)
    project.set_params(lambda p: p["validate"]["min_class_share"].update(threshold=0.34))
    result = project.dvc("repro", "validate", check=False)
    assert result.returncode != 0
    assert "min_class_share on train: observed 0.28" in result.stderr + result.stdout
    assert not (project.path / "reports" / "data_quality_verdict.json").exists()
    assert (project.path / "reports" / "data_quality" / "index.html").is_file()


def test_the_real_tiny_gpt2_checkpoint_trains_and_registers_on_real_tweets(project: Project, tmp_path):
    """`from_pretrained` of a real Hub-format GPT-2 checkpoint, end to end, on a stratified sample of the tweets."""
    subset = tmp_path / "tweets"
    subset.mkdir()
    for split, n in (("train", 600), ("test", 150)):
        df = pd.read_csv(TWEETS / f"{split}.csv", dtype=str, keep_default_na=False)
        df.groupby("sentiment").sample(n=n // 3, random_state=0).to_csv(subset / f"{split}.csv", index=False)

    def setup(p):
        use_shared_tweets(p)
        p["data"].update(source=str(subset), max_train_samples=None, max_eval_samples=None)
        p["model"]["name"] = str(TINY_GPT2)
        p["train"]["args"].update(num_train_epochs=1, per_device_train_batch_size=16)
        p["evaluate"].update(min_accuracy=0.0, min_macro_f1=0.0, max_overfit_gap=1.0, max_loss_gap=1.0)

    project.set_params(setup)
    assert project.ran(project.dvc("repro")) == ["ingest", "validate", "tokenize", "train", "evaluate", "register"]
    assert project.champion_version() == "1"
    config = json.loads((project.path / "models" / "candidate" / "config.json").read_text())
    assert config["n_embd"] == 2 and config["pad_token_id"] == 50256
