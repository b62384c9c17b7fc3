"""Padding-free packing: examples side by side in a row attend only to themselves, and a packed batch's loss is
the token-weighted loss of the same examples unpacked (GPT-2's learned positions, and a real Llama's rotary ones)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tuneops.models.batches import CompletionCollator
from tuneops.models.packing import PackedCompletionCollator, pack_bins
from tuneops.training.trainer import weighted_lm_loss

STORIES = Path(__file__).resolve().parents[2] / "fixtures" / "stories260k"
# prompt + completion ids of uneven length; the last has an empty prompt (its first token is a completion's)
ROWS = [
    {"input_ids": [5, 6, 7, 8, 9, 10, 2], "prompt_length": 4},
    {"input_ids": [11, 12, 13, 2], "prompt_length": 2},
    {"input_ids": [14, 15, 16, 17, 18, 19, 20, 21, 2], "prompt_length": 3},
    {"input_ids": [22, 23, 2], "loss_spans": [[0, 3]], "prompt_length": 0},
    {"input_ids": [24, 25, 26, 27, 2], "loss_spans": [[1, 2], [3, 5]], "prompt_length": 3},
]


def gpt2_lm():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=64, n_layer=2, n_embd=32, n_head=4, attn_implementation="sdpa")
    return GPT2LMHeadModel(config).eval()


def stories_lm():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(STORIES, attn_implementation="sdpa").eval()


MODELS = {"gpt2": gpt2_lm, "stories260k": stories_lm}


def test_best_fit_decreasing_fills_rows_up_to_the_budget_and_keeps_every_example_once():
    bins = pack_bins([7, 4, 9, 3, 5, 12], budget=12)
    assert sorted(i for b in bins for i in b) == list(range(6))
    lengths = [7, 4, 9, 3, 5, 12]
    assert all(sum(lengths[i] for i in b) <= 12 for b in bins)
    assert len(bins) == 4  # 40 tokens in rows of 12: the fewest rows that can hold them
    assert pack_bins([20, 3], budget=8) == [[0], [1]]  # too long for the budget: a row of its own
    assert pack_bins([2, 3, 4], budget=None) == [[0, 1, 2]]


def test_positions_restart_at_each_example_and_the_padding_is_a_sequence_of_its_own():
    batch = PackedCompletionCollator(0, max_packed_length=11, pad_to_multiple_of=8)(ROWS[:2])
    assert batch["input_ids"].shape == (1, 16) and "attention_mask" not in batch
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 0, 1, 2, 3, 4]]
    # labels on completions only, none on an example's first token nor on the padding
    assert batch["labels"].tolist() == [[-100] * 4 + [9, 10, 2] + [-100, -100, 13, 2] + [-100] * 5]


def test_padding_positions_never_pass_the_longest_example():
    """GPT-2 embeds positions only up to n_positions: a short row beside a long one must not count past them."""
    rows = [{"input_ids": list(range(3, 13)), "prompt_length": 5}] * 2 + [{"input_ids": [3, 4, 2], "prompt_length": 1}]
    batch = PackedCompletionCollator(0, max_packed_length=20)(rows)
    assert batch["input_ids"].shape == (2, 20)
    assert batch["position_ids"].max() == 9  # the short row's 17 pads restart every 10 positions


@pytest.mark.parametrize("name", list(MODELS))
def test_no_token_attends_across_an_example_boundary(name):
    model = MODELS[name]()
    collate = PackedCompletionCollator(0, max_packed_length=None)
    batch = collate(ROWS[:3])
    changed = [dict(ROWS[0], input_ids=[30, 31, 32, 33, 34, 35, 2]), *ROWS[1:3]]
    other = collate(changed)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        logits_changed = model(input_ids=other["input_ids"], position_ids=other["position_ids"], use_cache=False).logits
    first = len(ROWS[0]["input_ids"])
    assert not torch.allclose(logits[0, :first], logits_changed[0, :first])  # the changed example did change
    torch.testing.assert_close(logits[0, first:], logits_changed[0, first:], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("budget", [None, 12])
def test_a_packed_batch_has_the_loss_of_the_same_examples_unpacked(name, budget):
    """The model's own loss (prompt_loss_weight 0: the sum over completion tokens over their number)."""
    model = MODELS[name]()
    unpacked = CompletionCollator(0)(ROWS)
    packed = PackedCompletionCollator(0, max_packed_length=budget)(ROWS)
    assert packed["input_ids"].numel() < unpacked["input_ids"].numel()  # less compute on padding
    with torch.no_grad():
        want = model(**unpacked).loss
        got = model(**packed, use_cache=False).loss  # a cache turns packing detection off, as in generation
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_prompt_loss_weight_weighs_each_packed_example_as_unpacked(name):
    model = MODELS[name]()
    unpacked = CompletionCollator(0, prompt_loss_weight=0.3)(ROWS)
    packed = PackedCompletionCollator(0, prompt_loss_weight=0.3, max_packed_length=16)(ROWS)
    with torch.no_grad():
        want = weighted_lm_loss(
            model(input_ids=unpacked["input_ids"], attention_mask=unpacked["attention_mask"]).logits,
            unpacked["input_ids"],
            unpacked["loss_weights"],
        )
        logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits
        got = weighted_lm_loss(logits, packed["input_ids"], packed["loss_weights"])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
