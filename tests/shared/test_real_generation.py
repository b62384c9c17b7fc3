"""task: generation on the real thing: Kaggle's span extraction and GPT-2's own tokenizer."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import GPT2_TOKENIZER, ROOT, TWEETS
from tuneops.config.params import load_params
from tuneops.data.sources import read_file
from tuneops.data.splits import to_pairs
from tuneops.data.tokenization import encode_pairs
from tuneops.evaluation.lm_scoring import answer, baselines
from tuneops.models.loading import load_tokenizer

SPAN = {"prompt_template": "{text}\nsentiment: {sentiment}\n\n###\n\n", "completion_template": " {selected_text}\n"}


@pytest.fixture(scope="module")
def span_pairs() -> pd.DataFrame:
    gen = load_params(ROOT / "params.yaml").generation.model_copy(update=SPAN)
    return to_pairs(read_file(TWEETS / "train.csv").fillna(""), str(TWEETS / "train.csv"), gen)


def test_copying_the_tweet_scores_kaggles_0_589_baseline(span_pairs):
    expected = [answer(c, ["\n"]) for c in span_pairs["completion"]]
    scores = baselines(span_pairs["source_text"].tolist(), expected, expected)
    assert round(scores["copy_prompt"].jaccard, 3) == 0.589


def test_completions_start_with_a_space_that_gpt2_reads_as_part_of_the_first_word(span_pairs):
    tokenizer = load_tokenizer(str(GPT2_TOKENIZER))
    assert tokenizer(" positive")["input_ids"] == [3967]  # one token: the space belongs to the word
    columns, stats = encode_pairs(span_pairs.head(500), tokenizer, max_length=128)
    assert stats.truncation_rate == 0 and len(columns["input_ids"]) == 500
    ids, start = columns["input_ids"][0], columns["prompt_length"][0]
    assert tokenizer.decode(ids[start:]) == span_pairs["completion"].iloc[0] + "<|endoftext|>"
