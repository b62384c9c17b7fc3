"""The base model as a zero-shot classifier: what a classification fine-tune is measured against.

A causal LM has no classification head, so the base (model.name, as loaded for training) is asked through its chat
template to answer with a label name, and its answer is read back as a label: stripped, lower-cased, trailing
punctuation dropped, it must be one of the label names, else it is no label and counts wrong. Instruction-tuned
bases (SmolLM2, Qwen) answer this way; a plain LM (GPT-2) mostly does not, which is the comparison that matters:
the fine-tune has to beat what the model already did on its own. Generating the answers is the caller's (the
inference layer sits above this one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from tuneops.config.records import BaseLabelScores
from tuneops.data.chat import render, turn_end

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

INSTRUCTION = "Classify the text below as one of: {labels}. Answer with the label only.\n\nText: {text}"
TRAILING = ".!?,;:'\"` "  # what a chat model puts after a one-word answer ("Positive.")


def label_prompts(tokenizer: PreTrainedTokenizerBase, labels: Sequence[str], texts: Sequence[str]) -> list[str]:
    """One user turn per text naming the labels, rendered with the generation prompt: the assistant answers next.
    `tokenizer` must carry a chat template (tuneops.data.chat.with_chat_template gives it the declared one)."""
    names = ", ".join(labels)
    return [
        render(
            tokenizer,
            [{"role": "user", "content": INSTRUCTION.format(labels=names, text=t)}],
            add_generation_prompt=True,
        )
        for t in texts
    ]


def answer_stop(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Where an answer ends: the template's end of turn, or a new line (a one-line answer was asked for)."""
    return list(dict.fromkeys([turn_end(tokenizer), "\n"]))


def answer_tokens(tokenizer: PreTrainedTokenizerBase, labels: Sequence[str]) -> int:
    """New tokens enough for the longest label name with a space before it and punctuation after, and no more:
    a longer answer is no label anyway, and every token costs a forward pass."""
    return max(len(tokenizer(f" {label}.")["input_ids"]) for label in labels) + 1


def read_label(answer: str, labels: Sequence[str]) -> int | None:
    """The label id an answer names, or None when it names none (case and trailing punctuation aside)."""
    said = answer.strip().lower().rstrip(TRAILING)
    names = [label.strip().lower() for label in labels]
    return names.index(said) if said in names else None


def label_scores(
    model: str, predicted: Sequence[int | None], expected: Sequence[int], labels: Sequence[str]
) -> BaseLabelScores:
    """Accuracy and macro-F1 of the base's answers. An answer that is no label is its own class (-1) outside the
    label set F1 averages over: it costs the true class's recall and never earns precision."""
    from sklearn.metrics import f1_score

    if len(predicted) != len(expected) or not expected:
        raise ValueError(f"{len(predicted)} answers for {len(expected)} rows")
    pred = np.array([-1 if p is None else p for p in predicted])
    true = np.asarray(expected)
    macro_f1 = f1_score(true, pred, labels=list(range(len(labels))), average="macro", zero_division=0)
    return BaseLabelScores(
        model=model,
        accuracy=float((pred == true).mean()),
        macro_f1=float(macro_f1),
        answered=float((pred >= 0).mean()),
    )
