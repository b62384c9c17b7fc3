"""The queue's cap on tokens (tuneops.inference.admission): within the cap or alone, and each prompt's tokens."""

from __future__ import annotations

from typing import Any

from tuneops.inference.admission import Overloaded, admits, prompt_lengths


def test_a_request_joins_within_the_cap_or_alone():
    assert admits(0, 100, 1000) and admits(900, 100, 1000)
    assert not admits(901, 100, 1000)
    assert admits(0, 5000, 1000)  # alone: a request over the cap by itself is still answered, never refused forever
    assert admits(10**9, 10**9, None)  # no cap


def test_overloaded_says_what_is_queued_the_cap_and_when_to_retry():
    said = str(Overloaded(900, 200, 1000, retry_after_s=2))
    assert "900 tokens are queued" in said and "200" in said and "1000" in said and "retry after 2 s" in said


def test_prompt_lengths_count_texts_with_the_tokenizer_and_token_ids_as_given(tokenizer: Any):
    text = "the beach was sunny"
    assert prompt_lengths(tokenizer, [text, [1, 2, 3], ""]) == [len(tokenizer(text)["input_ids"]), 3, 0]
