"""Token ids into tensors, masked by position: right padding for training and scoring, left padding for
generation, batches of similar length so dynamic padding pads almost nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    pass


# oneDNN builds and keeps kernels for every new batch shape: a server that met every length would grow by
# ~10 MB a length. Rounding lengths up to a multiple of 8 bounds the shapes (train: train.pad_to_multiple_of).
PAD_TO_MULTIPLE_OF = 8


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar length, so dynamic padding pads almost nothing."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad_right(
    seqs: Sequence[Sequence[int]], pad_id: int, multiple: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids padded on the right into one tensor, and the attention mask built from each row's length.

    The mask comes from positions, never from comparing ids with pad_id: GPT-2 pads with eos, so a mask by id
    would also hide every real eos, the one token that teaches the model to stop (transformers#23530).
    """
    longest = max(len(s) for s in seqs)
    if multiple:
        longest = -(-longest // multiple) * multiple
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


class CompletionCollator:
    """Batches of prompt+completion+eos token ids for causal-LM fine-tuning, masked by position.

    `labels` are the tokens of each row's `loss_spans` (its completion and eos, and a conversation's earlier
    assistant replies; without spans, everything from `prompt_length` on): the rest of the prompt and the padding
    are -100, no loss there. With `prompt_loss_weight` > 0 the batch also carries `loss_weights` (the other prompt
    tokens weighted by it, the trained ones by 1), which training.CompletionTrainer applies; the labels stay the
    trained tokens only, so token accuracy always measures what the model is taught to write.
    """

    def __init__(self, pad_id: int, prompt_loss_weight: float = 0.0, pad_to_multiple_of: int | None = None) -> None:
        self.pad_id, self.prompt_loss_weight, self.multiple = pad_id, prompt_loss_weight, pad_to_multiple_of

    def __call__(self, rows: list[dict[str, list[int] | int]]) -> dict[str, torch.Tensor]:
        seqs = [row["input_ids"] for row in rows]
        ids, mask = pad_right(seqs, self.pad_id, self.multiple)
        labels = torch.full_like(ids, -100)
        for i, row in enumerate(rows):
            for start, end in trained_spans(row):
                labels[i, start:end] = ids[i, start:end]
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if self.prompt_loss_weight > 0:
            weights = mask.float() * self.prompt_loss_weight
            weights[labels != -100] = 1.0
            batch["loss_weights"] = weights
        return batch


def trained_spans(row: dict[str, list[int] | int]) -> list[tuple[int, int]]:
    """The token spans of a row that train: its `loss_spans`, else everything from `prompt_length` on."""
    if "loss_spans" in row:
        return [(int(start), int(end)) for start, end in row["loss_spans"]]
    return [(int(row["prompt_length"]), len(row["input_ids"]))]


def left_pad(
    seqs: Sequence[Sequence[int]], pad_id: int, multiple: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompts padded on the LEFT for generation: input ids, attention mask and position ids, by position.

    Generation appends each new token after the last column, so every row's last real token must sit there:
    pad on the left (training pads on the right). The mask comes from each row's length, never from comparing
    ids with pad_id (GPT-2 pads with eos, a token a prompt may hold). GPT-2 adds learned position embeddings by
    index and would count a left-padded row's positions from its first pad, so the positions are explicit: 0 at
    each row's first real token, as if it had no padding (the pads get 0 too; they are masked, never attended).
    """
    longest = max(len(s) for s in seqs)
    if multiple:
        longest = -(-longest // multiple) * multiple
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    positions = torch.zeros((len(seqs), longest), dtype=torch.long)
    for row, seq in enumerate(seqs):
        pad = longest - len(seq)
        ids[row, pad:] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, pad:] = 1
        positions[row, pad:] = torch.arange(len(seq))
    return ids, mask, positions
