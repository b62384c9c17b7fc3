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


def test_a_chat_answer_ends_at_the_templates_end_of_turn_as_the_model_writes_it(tokenizer, chatml_tokenizer):
    """The expected answer of a ChatML completion is the reply without <|im_end|> (the model stops at eos and its
    text has no special tokens): scoring "positive<|im_end|>" against "positive" would count every answer wrong."""
    from tuneops.evaluation.lm_scoring import answer, answer_stops

    stop = answer_stops(["\n"], chatml_tokenizer)
    assert stop == ["\n", "<|im_end|>"]
    assert answer("positive<|im_end|>\n", stop) == "positive"
    assert answer("two\nlines<|im_end|>\n", answer_stops([], chatml_tokenizer)) == "two\nlines"
    assert answer_stops(["\n"], tokenizer) == ["\n"]  # no template: generation.stop alone
