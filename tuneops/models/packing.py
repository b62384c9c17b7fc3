"""Padding-free packing for causal-LM fine-tuning: a batch's examples concatenated into a few rows, each example
starting again at position 0, so attention stays inside it and (almost) no compute goes to padding.

transformers 5 (masking_utils.find_packed_sequence_indices) reads a batch with `position_ids` and no
`attention_mask` as packed: wherever a row's positions do not go up by one, a new sequence starts, and the causal
mask it builds for SDPA and eager attention is block-diagonal, one block per example (flash-attention varlen
reads the same positions on a GPU). GPT-2 adds learned position embeddings by index: the restarted positions must
reach the model, which is why the collator passes them explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tuneops.models.batches import trained_spans


def pack_bins(lengths: Sequence[int], budget: int | None) -> list[list[int]]:
    """Example indices grouped into rows of at most `budget` tokens, best fit by decreasing length (TRL's `bfd`):
    each example, longest first, goes to the fullest row it still fits in. An example longer than the budget gets
    a row of its own; budget None puts the whole batch in one row (DataCollatorWithFlattening's padding-free)."""
    if budget is None:
        return [list(range(len(lengths)))]
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        fits = [b for b in range(len(bins)) if room[b] >= lengths[i]]
        if fits:
            best = min(fits, key=lambda b: room[b])
            bins[best].append(i)
            room[best] -= lengths[i]
        else:
            bins.append([i])
            room.append(budget - lengths[i])
    return bins


def restarting_positions(lengths: Sequence[int]) -> torch.Tensor:
    """0, 1, ... for each example in turn: where the count drops, the model sees a new sequence start."""
    return torch.cat([torch.arange(n) for n in lengths]) if lengths else torch.zeros(0, dtype=torch.long)


class PackedCompletionCollator:
    """CompletionCollator's batches (labels on each example's trained spans, `loss_weights` with a
    prompt_loss_weight), packed: each row holds several examples back to back, `position_ids` restart at each,
    and there is no attention_mask. Rows shorter than the longest are filled with pad tokens that form a sequence
    of their own (their positions restart too): nothing attends to them and they carry no loss.

    Each example's first token gets no label and no weight: unpacked, nothing predicts it (the shift drops it);
    packed, the previous example's last token would, across the boundary.
    """

    def __init__(
        self,
        pad_id: int,
        prompt_loss_weight: float = 0.0,
        max_packed_length: int | None = None,
        pad_to_multiple_of: int | None = None,
    ) -> None:
        self.pad_id, self.prompt_loss_weight = pad_id, prompt_loss_weight
        self.budget, self.multiple = max_packed_length, pad_to_multiple_of

    def __call__(self, rows: list[dict[str, list[int] | int]]) -> dict[str, torch.Tensor]:
        bins = pack_bins([len(row["input_ids"]) for row in rows], self.budget)
        packed = [self._row([rows[i] for i in members]) for members in bins]
        width = max(len(ids) for ids, _, _, _ in packed)
        if self.multiple:
            width = -(-width // self.multiple) * self.multiple
        longest = max(len(row["input_ids"]) for row in rows)
        batch = {
            name: torch.stack([self._fill(part[k], width, fill, longest) for part in packed])
            for k, (name, fill) in enumerate(
                [("input_ids", self.pad_id), ("position_ids", None), ("labels", -100), ("loss_weights", 0.0)]
            )
        }
        if self.prompt_loss_weight <= 0:
            del batch["loss_weights"]
        return batch

    def _row(self, members: list[dict[str, list[int] | int]]) -> tuple[torch.Tensor, ...]:
        ids = torch.cat([torch.as_tensor(row["input_ids"], dtype=torch.long) for row in members])
        positions = restarting_positions([len(row["input_ids"]) for row in members])
        labels = torch.full_like(ids, -100)
        weights = torch.full(ids.shape, self.prompt_loss_weight, dtype=torch.float)
        offset = 0
        for row in members:
            for start, end in trained_spans(row):
                labels[offset + start : offset + end] = ids[offset + start : offset + end]
                weights[offset + start : offset + end] = 1.0
            labels[offset], weights[offset] = -100, 0.0  # see the class docstring
            offset += len(row["input_ids"])
        return ids, positions, labels, weights

    @staticmethod
    def _fill(values: torch.Tensor, width: int, fill: float | None, longest: int) -> torch.Tensor:
        """Values filled to `width`: with `fill`, or (positions) pad sequences of their own counted from 0, none
        longer than the batch's longest example: GPT-2 has position embeddings for only n_positions (the sample's
        GPT-2: 256), and a short row beside a full one of 512 would otherwise count its padding past them."""
        extra = width - len(values)
        tail = torch.arange(extra) % longest if fill is None else torch.full((extra,), fill, dtype=values.dtype)
        return torch.cat([values, tail.to(values.dtype)])
