"""The extra layer on real data no one here wrote (../shared): the Kaggle tweets and GPT-2's own tokenizer.

The suite proper runs on the sample tuneops makes; these check the same code on the real thing.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from tasks.ingest import ingest
from tasks.validate import validate
from tests.conftest import GPT2_TOKENIZER, LABELS, ROOT, TWEETS, data_params
from tuneops.config.params import load_params
from tuneops.models.loading import load_tokenizer, predict_logits


def test_real_tweets_load_with_only_source_and_columns_changed(tmp_path):
    manifest = ingest(data_params(TWEETS, label_column="sentiment", validation_fraction=0.1), tmp_path / "out")
    splits = manifest.splits
    assert splits["train"].rows + splits["validation"].rows == 27481
    assert splits["test"].label_counts == {"negative": 1001, "neutral": 1430, "positive": 1103}
    assert len(splits["train"].sha256) == 64
    # "NA"-like tweets stay text, and the known empty tweet is kept for validate to report
    train = pd.concat(pd.read_parquet(tmp_path / "out" / f"{s}.parquet") for s in ("train", "validation"))
    assert train["text"].notna().all() and (train["text"].str.strip() == "").sum() == 1


def test_real_tweets_warnings_are_reported_but_pass(tmp_path):
    """The known empty text shows up as a failed warning, and validation passes."""
    interim = tmp_path / "interim"
    ingest(data_params(TWEETS, label_column="sentiment", validation_fraction=0.1), interim)
    verdict = tmp_path / "verdict.json"
    params = load_params(ROOT / "params.yaml").validate_
    records = validate(params, LABELS, interim, tmp_path / "docs", tmp_path / "dq.json", verdict)
    empty = next(r for r in records if r.check == "empty_text_rate" and r.split == "train")
    assert not empty.passed and empty.severity == "warning" and empty.observed > 0
    assert json.loads(verdict.read_text())["passed"] is True


def test_real_gpt2_tokenizer_pads_with_eos_on_the_right():
    tokenizer = load_tokenizer(str(GPT2_TOKENIZER))
    assert tokenizer("Hello world")["input_ids"] == [15496, 995]
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == 50256
    assert tokenizer.padding_side == "right"


def test_dynamic_padding_gives_the_logits_of_the_seeds_1024_padding_on_real_tweets():
    from transformers import GPT2Config, GPT2ForSequenceClassification

    tokenizer = load_tokenizer(str(GPT2_TOKENIZER))
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=4, num_labels=3, pad_token_id=tokenizer.pad_token_id)
    model = GPT2ForSequenceClassification(config).eval()
    texts = pd.read_csv(TWEETS / "test.csv", dtype=str, keep_default_na=False)["text"].head(12).tolist()
    with torch.inference_mode():
        seed_way = tokenizer(texts, padding="max_length", max_length=1024, truncation=True, return_tensors="pt")
        reference = model(**seed_way).logits.numpy()
    dynamic = predict_logits(model, tokenizer, tokenizer(texts)["input_ids"], batch_size=5)
    np.testing.assert_allclose(dynamic, reference, atol=1e-4)
