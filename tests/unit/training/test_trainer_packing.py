"""The train stage's Trainer with packing on and off: the same data, steps and seed reach the same validation loss."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import short_run_train_params
from tuneops.data.sample import sample_spans
from tuneops.data.tokenization import encode_pairs
from tuneops.models.packing import PackedCompletionCollator
from tuneops.training.trainer import build_trainer

STEPS = 12
# fp32 on the CPU: packing changes only how the same sums are laid out, so the two runs differ by float rounding
# (measured: equal to all of float32's digits); 1e-3 is far below what one optimizer step moves the loss (~5e-2 here).
TOLERANCE = 1e-3


def spans_pairs(tokenizer, n: int):
    from datasets import Dataset

    df = sample_spans(n, seed=3)
    df = df.assign(
        prompt=df["text"] + "\nsentiment: " + df["sentiment"] + "\n\n###\n\n",
        completion=" " + df["selected_text"] + "\n",
        source_text=df["text"],
    )
    columns, _ = encode_pairs(df, tokenizer, 128)
    return Dataset.from_dict(columns)


def run(tokenizer, tmp_path, packing: bool, weight: float):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    no_dropout = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=2, n_embd=32, n_head=2, **no_dropout)
    train = short_run_train_params(
        STEPS,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        learning_rate=1.0e-3,
        train_sampling_strategy="sequential",
        bf16=False,
        logging_steps=1,
    ).model_copy(update={"packing": packing, "max_packed_length": 64})
    data = {"train": spans_pairs(tokenizer, 8 * STEPS), "validation": spans_pairs(tokenizer, 32)}
    trainer = build_trainer(GPT2LMHeadModel(config), tokenizer, data, train, tmp_path / str(packing), None, weight)
    assert isinstance(trainer.data_collator, PackedCompletionCollator) == packing
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    return before, trainer.evaluate()


@pytest.mark.slow
@pytest.mark.parametrize("weight", [0.0, 0.1], ids=["completions", "prompt_loss_weight"])
def test_packed_and_padded_training_reach_the_same_validation_loss(tokenizer, tmp_path, weight):
    before, packed = run(tokenizer, tmp_path, packing=True, weight=weight)
    _, padded = run(tokenizer, tmp_path, packing=False, weight=weight)
    assert packed["eval_loss"] < before - 0.1  # it learned something, so the comparison means something
    assert packed["eval_loss"] == pytest.approx(padded["eval_loss"], rel=TOLERANCE)
    assert packed["eval_accuracy"] == pytest.approx(padded["eval_accuracy"], abs=0.01)


def test_liger_kernel_without_triton_or_a_gpu_is_one_log_line_and_no_error(tmp_path, caplog):
    """use_liger_kernel where Liger cannot run (this CPU; a GPU without liger-kernel): training goes on without."""
    from tuneops.training.trainer import training_arguments

    train = short_run_train_params(1, use_liger_kernel=True)
    with caplog.at_level("WARNING", logger="tuneops.training"):
        settings = training_arguments(train, tmp_path, None)
    assert settings["use_liger_kernel"] is False
    assert [r.message for r in caplog.records if "use_liger_kernel" in r.message]
