"""The base model as a zero-shot classifier: prompts through its chat template naming the labels, answers read
back as labels, and scores where an answer that names no label only ever costs."""

from __future__ import annotations

import copy

import pytest

from tuneops.config.params import ChatTemplate
from tuneops.data.chat import with_chat_template
from tuneops.evaluation.zero_shot import answer_stop, answer_tokens, label_prompts, label_scores, read_label

LABELS = ["negative", "neutral", "positive"]
CHAT = ChatTemplate(system="{content}\n\n", user="User: {content}\n", assistant="Assistant: {content}\n")


@pytest.fixture
def declared(tokenizer):
    """The sample's tokenizer (GPT-2's kind: no template of its own) with the declared one, as evaluate sets it."""
    return with_chat_template(copy.deepcopy(tokenizer), CHAT)


def test_a_prompt_names_the_labels_and_the_text_and_ends_where_the_assistant_answers(declared):
    (prompt,) = label_prompts(declared, LABELS, ["my laptop is broken again"])
    assert prompt == (
        "User: Classify the text below as one of: negative, neutral, positive. Answer with the label only.\n\n"
        "Text: my laptop is broken again\nAssistant:"
    )
    assert answer_stop(declared) == ["\n"]


def test_a_chat_models_prompt_is_its_own_template_and_stops_at_its_end_of_turn(chatml_tokenizer):
    own = with_chat_template(copy.deepcopy(chatml_tokenizer), CHAT)
    (prompt,) = label_prompts(own, LABELS, ["so happy today"])
    assert prompt.endswith("Text: so happy today<|im_end|>\n<|im_start|>assistant\n")
    assert answer_stop(own) == ["<|im_end|>", "\n"]


def test_answer_tokens_fit_the_longest_label_with_its_space_and_a_full_stop(declared):
    longest = max(len(declared(f" {label}.")["input_ids"]) for label in LABELS)
    assert answer_tokens(declared, LABELS) == longest + 1


@pytest.mark.parametrize(
    ("said", "label"),
    [
        (" positive", 2),
        ("Negative.", 0),
        ("  NEUTRAL!\n", 1),
        ('"positive"', None),  # a leading quote: the answer is not the label alone
        ("positive sentiment", None),
        ("", None),
        ("I think it is negative", None),
    ],
)
def test_an_answer_is_a_label_only_when_it_is_a_label_name(said, label):
    assert read_label(said, LABELS) == label


def test_no_label_counts_wrong_and_never_earns_f1():
    scores = label_scores("gpt2", [0, None, 2, None], [0, 1, 2, 2], LABELS)
    assert scores.model == "gpt2" and scores.accuracy == 0.5 and scores.answered == 0.5
    # negative and positive are precise (1.0); recall 1 and 1/2; neutral never predicted: F1 0
    assert scores.macro_f1 == pytest.approx((1.0 + 0.0 + 2 / 3) / 3)
    silent = label_scores("gpt2", [None] * 4, [0, 1, 2, 2], LABELS)
    assert (silent.accuracy, silent.macro_f1, silent.answered) == (0.0, 0.0, 0.0)


def test_scores_need_one_answer_per_row():
    with pytest.raises(ValueError, match="3 answers for 2 rows"):
        label_scores("gpt2", [0, 1, 2], [0, 1], LABELS)
