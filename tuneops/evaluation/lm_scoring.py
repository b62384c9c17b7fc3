"""Scoring a causal LM on prompt/completion pairs: teacher-forced loss and token accuracy on the completions,
and completions it generates for held-out prompts against the expected ones, next to trivial baselines.

Teacher-forced token accuracy overstates what the model does on its own (transformers#26474): the gate's
metric comes from generated text.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from tuneops.config.records import BaselineScores, GenerationSample
from tuneops.data.chat import turn_end
from tuneops.models.batches import PAD_TO_MULTIPLE_OF, CompletionCollator, length_sorted_batches, pad_right
from tuneops.quality.measures import common_suffix

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class Generated(Protocol):
    """A generated completion (tuneops.inference.generation.Completion, which this layer sits below)."""

    text: str
    finish_reason: str


def words(text: str) -> set[str]:
    return set(text.lower().split())


def jaccard(expected: str, generated: str) -> float:
    """Word-level Jaccard, as Kaggle's Tweet Sentiment Extraction scores a span (two empty texts agree)."""
    a, b = words(expected), words(generated)
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def exact(expected: str, generated: str) -> bool:
    return expected.strip() == generated.strip()


def answer_stops(stop: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Where an answer ends: generation.stop, and the end of an assistant turn of the candidate's chat template
    (its tokenizer carries the one it was trained with). A ChatML completion is "positive<|im_end|>\n": the answer
    is "positive", as the model, which stops at eos = <|im_end|>, writes it."""
    end = turn_end(tokenizer) if tokenizer.chat_template else ""
    return list(dict.fromkeys([*stop, *([end] if end else [])]))


def answer(completion: str, stop: Sequence[str]) -> str:
    """The part of an expected completion a model should generate: up to its first stop sequence, stripped."""
    cut = min((i for s in stop if (i := completion.find(s)) >= 0), default=len(completion))
    return completion[:cut].strip()


def text_scores(expected: Sequence[str], generated: Sequence[str]) -> BaselineScores:
    return BaselineScores(
        exact_match=float(np.mean([exact(e, g) for e, g in zip(expected, generated, strict=True)])),
        jaccard=float(np.mean([jaccard(e, g) for e, g in zip(expected, generated, strict=True)])),
    )


def baselines(
    source_texts: Sequence[str], train_answers: Sequence[str], expected: Sequence[str]
) -> dict[str, BaselineScores]:
    """The trivial answers a model must beat: copy the prompt's input text (the whole tweet scores Jaccard 0.589
    on Kaggle's spans), and always answer the most frequent training completion (a majority class)."""
    suffix = common_suffix(source_texts)
    copies = [t[: len(t) - len(suffix)] if suffix else t for t in source_texts]
    frequent = Counter(train_answers).most_common(1)[0][0] if train_answers else ""
    return {
        "copy_prompt": text_scores(expected, copies),
        "most_frequent": text_scores(expected, [frequent] * len(expected)),
    }


@torch.inference_mode()
def teacher_forced(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: Dataset, batch_size: int
) -> tuple[float, float]:
    """Mean loss per completion token (its eos included) and token accuracy, the prompt given and masked by
    position, as in training (prompt_loss_weight aside: this measures the completions only)."""
    collate = CompletionCollator(tokenizer.pad_token_id, 0.0, PAD_TO_MULTIPLE_OF)
    device = next(model.parameters()).device
    total_loss, right, tokens = 0.0, 0, 0
    ids, starts = rows["input_ids"], rows["prompt_length"]
    for idx in length_sorted_batches([len(x) for x in ids], batch_size):
        batch = collate([{"input_ids": ids[i], "prompt_length": starts[i]} for i in idx])
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        labels = batch["labels"][:, 1:]
        scored = labels != -100
        losses = torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum"
        )
        total_loss += float(losses)
        right += int((logits[:, :-1].argmax(-1)[scored] == labels[scored]).sum())
        tokens += int(scored.sum())
    return total_loss / max(tokens, 1), right / max(tokens, 1)


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))  # capped: an untrained model's exp(loss) overflows the JSON


def samples(
    prompts: Sequence[str],
    expected: Sequence[str],
    completions: Sequence[Generated],
    base: Sequence[Generated],
) -> list[GenerationSample]:
    """reports/samples.jsonl's rows: each prompt with its expected answer, the candidate's and the base's."""
    return [
        GenerationSample(
            prompt=p,
            expected=e,
            generated=c.text.strip(),
            finish_reason=c.finish_reason,
            exact_match=exact(e, c.text),
            jaccard=round(jaccard(e, c.text), 5),
            base=b.text.strip(),
            base_exact_match=exact(e, b.text),
            base_jaccard=round(jaccard(e, b.text), 5),
        )
        for p, e, c, b in zip(prompts, expected, completions, base, strict=True)
    ]


@torch.inference_mode()
def completion_logprobs(
    model: PreTrainedModel, pad_id: int, ids: Sequence[Sequence[int]], starts: Sequence[int], batch_size: int
) -> np.ndarray:
    """Each row's summed log-probability of its tokens from `starts[i]` on (the completion, its eos included) given
    the tokens before them, teacher-forced; padding masked by position (pad_right), never by id."""
    device = next(model.parameters()).device
    totals = np.zeros(len(ids))
    for idx in length_sorted_batches([len(x) for x in ids], batch_size):
        batch, mask = pad_right([ids[i] for i in idx], pad_id, PAD_TO_MULTIPLE_OF)
        batch, mask = batch.to(device), mask.to(device)
        logps = model(input_ids=batch, attention_mask=mask).logits[:, :-1].float().log_softmax(-1)
        token = logps.gather(-1, batch[:, 1:, None])[..., 0]  # log p(token t+1 | tokens up to t)
        positions = torch.arange(1, batch.shape[1], device=device)
        begins = torch.as_tensor([starts[i] for i in idx], device=device)[:, None]
        scored = (positions[None, :] >= begins) & mask[:, 1:].bool()  # completion tokens of each row
        totals[idx] = (token * scored).sum(-1).cpu().numpy()
    return totals


def preference_accuracy(model: PreTrainedModel, pad_id: int, rows: Dataset, batch_size: int) -> float:
    """The share of preference pairs whose preferred completion the model finds likelier than the rejected one
    (summed log-probabilities given the prompt; a tie counts as a miss). Both share the prompt's tokens."""
    starts = rows["prompt_length"]
    chosen = completion_logprobs(model, pad_id, rows["input_ids"], starts, batch_size)
    rejected = completion_logprobs(model, pad_id, rows["rejected_input_ids"], starts, batch_size)
    return float(np.mean(chosen > rejected))
