"""Scoring generated text: Kaggle's word-level Jaccard and the trivial baselines a fine-tune must beat."""

from __future__ import annotations

import pytest

from tuneops.evaluation.lm_scoring import answer, baselines, common_suffix, jaccard


def test_jaccard_is_kaggles_word_overlap():
    assert jaccard("so sad", "so sad") == 1.0
    assert jaccard("so sad", "Sad today") == pytest.approx(1 / 3)
    assert jaccard("", "") == 1.0
    assert answer(" the worst\n", ["\n"]) == "the worst"


def test_baselines_copy_the_input_without_its_separator_and_repeat_the_majority():
    sources = ["I hate rain", "so happy today"]
    expected = ["hate", "so happy today"]
    scores = baselines(sources, ["hate", "hate", "x"], expected)
    assert scores["copy_prompt"].jaccard == pytest.approx((1 / 3 + 1) / 2)
    assert scores["most_frequent"].exact_match == 0.5
    assert common_suffix(["a ->", "bb ->"]) == " ->"
