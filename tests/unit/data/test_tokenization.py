"""Pairs into prompt + completion + eos token ids; too-long pairs dropped and counted, never cut."""

from __future__ import annotations

import pandas as pd

from tuneops.data.tokenization import encode_pairs


def test_pairs_become_prompt_completion_eos_and_too_long_ones_are_dropped(tokenizer):
    df = pd.DataFrame(
        {"prompt": ["I love it ->", "x " * 200], "completion": [" love\n", " y\n"], "source_text": ["a", "b"]}
    )
    columns, stats = encode_pairs(df, tokenizer, max_length=64)
    assert len(columns["input_ids"]) == 1 and stats.truncation_rate == 0.5
    ids, start = columns["input_ids"][0], columns["prompt_length"][0]
    assert ids[:start] == tokenizer("I love it ->")["input_ids"]
    assert ids[start:] == tokenizer(" love\n")["input_ids"] + [tokenizer.eos_token_id]
