"""The seed recipe and the train stage learn the same thing: only the cost differs.

Over the same tweets in the same order, (a) the seed's recipe (pad to 1,024, batch 1 x 4 accumulation) and
(b) the train stage's code path with params.yaml's levers (tuneops.tokenization.encode + build_trainer:
dynamic padding to a multiple of 8, activation checkpointing, fused GELU, memory released each step, batch
4 x 1) give the same loss at every optimizer step. A tiny GPT-2 (no dropout, so both draw no random masks).

transformers 5 sums, not averages, a sequence classifier's loss over accumulation micro-batches (see
build_trainer): the seed's logged loss and gradient are 4x ours. AdamW is scale-invariant and the gradient is
clipped, so its updates are the same; we compare the per-step mean loss, the seed's divided by 4.
"""

import pandas as pd
import pytest
import torch

from bench.train_speed import seed_trainer
from tests.conftest import LABELS, short_run_train_params
from tuneops.data.sample import sample_texts
from tuneops.data.tokenization import encode
from tuneops.training.trainer import build_trainer

STEPS = 4


def tiny_gpt2(tokenizer):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(0)
    no_dropout = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_layer=2,
        n_embd=32,
        n_head=2,
        num_labels=3,
        pad_token_id=tokenizer.pad_token_id,
        **no_dropout,
    )
    return GPT2ForSequenceClassification(config)


def step_losses(trainer) -> list[float]:
    trainer.train()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


@pytest.fixture(scope="module")
def tweets() -> pd.DataFrame:
    df = sample_texts(STEPS * 4, seed=1)
    return df.assign(label=df["sentiment"].map(LABELS.index))


def stage_trainer(tweets, tokenizer, tmp_path, batch: int, accumulation: int, bf16: bool = False):
    """The train stage's code path and params.yaml, run for STEPS steps in order."""
    from datasets import Dataset

    train = short_run_train_params(
        STEPS,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        logging_steps=1,
        train_sampling_strategy="sequential",
        bf16=bf16,
        torch_compile=False,
    )
    columns, _ = encode(tweets, tokenizer, 128)
    data = {"train": Dataset.from_dict(columns)}
    trainer = build_trainer(tiny_gpt2(tokenizer), tokenizer, data, train, tmp_path / f"b{batch}x{accumulation}")
    return trainer, train.args


@pytest.mark.parametrize("bf16, tolerance", [(False, 1e-4), (True, 3e-2)], ids=["fp32", "bf16"])
def test_seed_recipe_and_train_stage_have_the_same_per_step_losses(tweets, tokenizer, tmp_path, bf16, tolerance):
    stage, args = stage_trainer(tweets, tokenizer, tmp_path, batch=4, accumulation=1, bf16=bf16)
    aligned = ("learning_rate", "weight_decay", "warmup_steps", "lr_scheduler_type", "max_grad_norm", "optim", "seed")
    same = {k: getattr(args, k) for k in (*aligned, "train_sampling_strategy")}
    seed = seed_trainer(tiny_gpt2(tokenizer), tokenizer, tweets, tmp_path / "a", STEPS, **same)

    ours, theirs = step_losses(stage), [loss / 4 for loss in step_losses(seed)]
    assert len(ours) == len(theirs) == STEPS
    assert ours == pytest.approx(theirs, abs=tolerance)
    assert ours[0] != ours[-1]  # it did learn something: the weights moved between steps


def test_accumulation_in_the_train_stage_equals_a_bigger_batch(tweets, tokenizer, tmp_path):
    whole, _ = stage_trainer(tweets, tokenizer, tmp_path, batch=4, accumulation=1)
    halves, _ = stage_trainer(tweets, tokenizer, tmp_path, batch=2, accumulation=2)
    assert step_losses(halves) == pytest.approx(step_losses(whole), abs=1e-4)
