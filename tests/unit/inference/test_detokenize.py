"""A completion's text keeps the space its first word starts with, on a SentencePiece tokenizer too."""

from __future__ import annotations

from tests.conftest import STORIES_FIXTURE
from tuneops.inference.detokenize import IncrementalText
from tuneops.models.loading import load_tokenizer


def test_a_completions_first_word_keeps_its_leading_space_after_the_prompt() -> None:
    """llama2.c's SentencePiece tokenizer decodes "▁park" alone as "park": the prompt's last tokens give it its
    context, so "The dog ran to the" + " park." reads as it should (and as vLLM answers it)."""
    tokenizer = load_tokenizer(str(STORIES_FIXTURE))
    prompt = tokenizer("The dog ran to the")["input_ids"]
    new = tokenizer("The dog ran to the park.")["input_ids"][len(prompt) :]
    assert tokenizer.decode(new) == "park."  # the trap: decoded alone, the space is gone

    def complete(context: list[int]) -> str:
        text = IncrementalText(tokenizer, (), context)
        for token in new:
            text.ids.append(token)
            before, after = text.windows()
            text.take(tokenizer.decode(before), tokenizer.decode(after), final=False)
        return text.text

    assert complete(prompt) == " park."
    assert complete([]) == "park."  # without the prompt there is nothing to say a space was due
