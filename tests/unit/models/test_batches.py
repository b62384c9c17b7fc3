"""Token ids into tensors, masked by position: the eos that ends a completion is learned, padding never is."""

from __future__ import annotations

import numpy as np
import torch

from tuneops.models.batches import CompletionCollator, length_sorted_batches


def test_collator_masks_by_position_so_the_eos_that_ends_a_completion_is_learned(tokenizer):
    eos = tokenizer.eos_token_id  # also the pad id: GPT-2's quirk
    rows = [{"input_ids": [5, 6, 7, eos], "prompt_length": 2}, {"input_ids": [5, 6, 7, 8, 9, eos], "prompt_length": 3}]
    batch = CompletionCollator(eos)(rows)
    assert batch["labels"].tolist() == [[-100, -100, 7, eos, -100, -100], [-100, -100, -100, 8, 9, eos]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0], [1] * 6]
    assert "loss_weights" not in batch


def test_prompt_loss_weight_weighs_prompt_tokens_and_not_padding():
    batch = CompletionCollator(0, prompt_loss_weight=0.1, pad_to_multiple_of=4)(
        [{"input_ids": [1, 2, 3], "prompt_length": 2}]
    )
    assert batch["input_ids"].shape == (1, 4)
    assert torch.allclose(batch["loss_weights"], torch.tensor([[0.1, 0.1, 1.0, 0.0]]))


def test_length_sorted_batches_cover_every_index_once():
    batches = length_sorted_batches([5, 1, 9, 3, 7], batch_size=2)
    assert sorted(np.concatenate(batches).tolist()) == [0, 1, 2, 3, 4]
    assert batches[0].tolist() == [1, 3]
