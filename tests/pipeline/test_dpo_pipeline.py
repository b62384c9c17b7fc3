"""DPO (OpenAI's method {"type": "dpo"}) through `dvc repro`: OpenAI's preference JSONL made from the sample's
tweets, stories260K (shipped in tests/fixtures) trained with LoRA by TRL's DPOTrainer, and held-out preference
accuracy measured for the candidate and its base, the candidate's beating the base's through the gate."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import STORIES_FIXTURE, Project, use_generation_sample

pytestmark = pytest.mark.slow


def preference_lines(tweets: pd.DataFrame) -> list[dict]:
    """Kaggle's span extraction as preferences: the tweet's words that carry its sentiment (the true span) preferred
    over naming the sentiment (answering another question, a short reply its base finds likelier)."""
    lines = []
    for row in tweets.to_dict("records"):
        ask = f"Quote the words of this tweet that carry its {row['sentiment']} sentiment.\n\n{row['text']}"
        lines.append(
            {
                "input": {"messages": [{"role": "user", "content": ask}]},
                "preferred_output": [{"role": "assistant", "content": row["selected_text"]}],
                "non_preferred_output": [{"role": "assistant", "content": row["sentiment"]}],
            }
        )
    return lines


def test_dpo_with_lora_makes_a_llama_prefer_the_preferred_replies_more_than_its_base(project: Project, sample):
    source = project.path / "data" / "raw" / "preferences.jsonl"
    source.parent.mkdir(parents=True, exist_ok=True)
    tweets = pd.read_csv(sample.data_dir / "train.csv", keep_default_na=False)
    source.write_text("".join(json.dumps(line) + "\n" for line in preference_lines(tweets)))

    def setup(p):
        use_generation_sample(p, sample)
        p["data"]["source"] = str(source)
        p["model"]["name"] = str(STORIES_FIXTURE)
        p["train"].update(objective="dpo", method="lora")
        p["train"]["dpo"]["beta"] = 0.1  # the jobs API's `train.dpo.beta`
        steps = {"max_steps": 8, "eval_strategy": "steps", "save_strategy": "steps", "eval_steps": 4, "save_steps": 4}
        p["train"]["args"].update(steps, per_device_train_batch_size=16, learning_rate=2.0e-3)
        p["evaluate"]["generation"].update(primary_metric="jaccard", sample_size=10)
        p["generation"]["max_new_tokens"] = 4

    project.set_params(setup)
    result = project.dvc("repro", "evaluate")  # register would stop on the generation checks: not this test's
    assert project.ran(result) == ["ingest", "validate", "tokenize", "train", "evaluate"]

    interim = pd.read_parquet(project.path / "data" / "interim" / "test.parquet")
    assert {"prompt", "completion", "rejected"} <= set(interim.columns)
    metrics = json.loads((project.path / "reports" / "metrics.json").read_text())
    ours, theirs = metrics["test"]["preference_accuracy"], metrics["base"]["preference_accuracy"]
    assert ours > theirs + 0.1, (ours, theirs)
    gate = json.loads((project.path / "reports" / "gate.json").read_text())
    check = next(c for c in gate["checks"] if c["check"] == "preference_beats_base")
    assert check["passed"] and check["observed"] == ours and check["threshold"] == theirs
    history = json.loads((project.path / "reports" / "train_history.json").read_text())
    assert history and all(0 <= row["validation_accuracy"] <= 1 for row in history)  # reward accuracy
    candidate = project.path / "models" / "candidate"
    assert (candidate / "model.safetensors").is_file() and not list(candidate.glob("adapter_*"))  # LoRA merged
