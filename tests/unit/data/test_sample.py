"""The offline sample the suite and the demo stand on: seeded, balanced, distinct; a GPT-2-like tokenizer."""

from __future__ import annotations

import pandas as pd

from tests.conftest import LABELS
from tuneops.data.sample import sample_texts


def test_the_sample_is_seeded_balanced_and_distinct():
    a, b = sample_texts(300, seed=3), sample_texts(300, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(sample_texts(300, seed=4))
    assert a["sentiment"].value_counts().to_dict() == dict.fromkeys(LABELS, 100)
    assert a["text"].str.lower().is_unique  # no leakage between the splits carved from it


def test_the_sample_written_as_split_files(sample):
    train, test = (pd.read_csv(sample.data_dir / f"{s}.csv") for s in ("train", "test"))
    assert (len(train), len(test)) == (600, 150) and list(train.columns) == ["text", "selected_text", "sentiment"]
    assert not set(train["text"].str.lower()) & set(test["text"].str.lower())
    # the span that carries the sentiment is part of the text (the whole text when neutral), as in Kaggle's
    assert all(span in text for text, span in zip(train["text"], train["selected_text"], strict=True))
    neutral = train[train["sentiment"] == "neutral"]
    assert (neutral["selected_text"] == neutral["text"]).all()


def test_the_tokenizer_is_byte_level_bpe_with_eos_last_and_no_pad(sample):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sample.model_dir)
    assert tok.pad_token is None and tok.eos_token == "<|endoftext|>" and tok.eos_token_id == len(tok) - 1
    text = "Any text at all: émojis 🎉, ünïcode and numbers 12345"
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level: nothing is unknown


def test_the_gpt2_loads_as_a_classifier_with_a_fresh_head(sample, tokenizer):
    from tuneops.models.loading import load_classifier

    model = load_classifier(str(sample.model_dir), LABELS, tokenizer)
    assert model.config.model_type == "gpt2" and model.config.pad_token_id == tokenizer.eos_token_id
    assert model.config.id2label == dict(enumerate(LABELS))
