"""Loading and batched classification: dynamic padding changes cost, not results; models bringing code are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.unit.models.conftest import TWEETS
from tuneops.models.loading import predict_logits, predict_texts


def test_dynamic_padding_gives_the_logits_of_max_length_padding(gpt2):
    model, tokenizer = gpt2
    with torch.inference_mode():
        seed_way = tokenizer(TWEETS, padding="max_length", max_length=1024, truncation=True, return_tensors="pt")
        reference = model(**seed_way).logits.numpy()
    encoded = tokenizer(TWEETS)["input_ids"]
    dynamic = predict_logits(model, tokenizer, encoded, batch_size=4)  # length-sorted, padded per batch
    assert seed_way["input_ids"].shape[1] == 1024 and max(map(len, encoded)) < 100
    np.testing.assert_allclose(dynamic, reference, atol=1e-4)


def test_classifier_reads_the_last_real_token_not_a_pad(gpt2):
    model, tokenizer = gpt2
    with torch.inference_mode():
        alone = model(**tokenizer(TWEETS[2:3], return_tensors="pt")).logits
        padded = model(**tokenizer(TWEETS[2:4], padding=True, return_tensors="pt")).logits[0:1]
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=0)


def test_predictions_keep_input_order_and_are_probabilities(gpt2):
    model, tokenizer = gpt2
    model.config.id2label = {0: "negative", 1: "neutral", 2: "positive"}
    results = predict_texts(model, tokenizer, TWEETS + [""], max_length=128, batch_size=3)
    assert len(results) == len(TWEETS) + 1
    singles = [predict_texts(model, tokenizer, [t], max_length=128)[0] for t in TWEETS[:2]]
    assert [r["label"] for r in results[:2]] == [s["label"] for s in singles]
    for r in results:
        assert set(r["probabilities"]) == {"negative", "neutral", "positive"}
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-4


EVIL = "import pathlib\npathlib.Path(__file__).with_name('RAN').write_text('code from the artifact ran')\n"


@pytest.mark.parametrize("where", ["config.json", "tokenizer_config.json"])
def test_a_model_folder_with_its_own_code_is_refused_and_nothing_runs(gpt2, tmp_path, where):
    """An artifact with an auto_map and a .py beside it (a planted registry entry) never runs its code."""
    import json

    from tuneops.config.errors import UserError
    from tuneops.models.loading import load_trained

    model, tokenizer = gpt2
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / where).read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"}
    (tmp_path / where).write_text(json.dumps(config))
    with pytest.raises(UserError, match=r"has an auto_map .* tuneops loads no code"):
        load_trained(tmp_path)
    (tmp_path / "evil.py").write_text(EVIL)
    with pytest.raises(UserError, match=r"carries Python code \(evil\.py\)"):
        load_trained(tmp_path)
    assert not (tmp_path / "RAN").exists()
