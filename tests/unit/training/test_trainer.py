"""The train stage's Trainer as params.yaml configures it, and the proof that its levers change speed, not learning."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from bench.train_speed import seed_trainer
from tests.conftest import LABELS, short_run_train_params
from tuneops.data.sample import sample_texts
from tuneops.data.tokenization import encode
from tuneops.training.trainer import build_trainer, epoch_history


def test_epoch_history_averages_the_train_loss_between_evaluations():
    logged = [
        {"loss": 1.0, "epoch": 0.5},
        {"loss": 0.8, "epoch": 1.0},
        {"eval_loss": 0.7, "eval_accuracy": 0.6, "eval_macro_f1": 0.5, "epoch": 1.0},
        {"eval_loss": 0.6, "eval_accuracy": 0.7, "eval_macro_f1": 0.6, "epoch": 2.0},
    ]
    rows = epoch_history(logged)
    assert [(r.epoch, r.train_loss, r.validation_accuracy) for r in rows] == [(1.0, 0.9, 0.6), (2.0, None, 0.7)]


def test_batches_are_padded_to_a_multiple_of_8_with_eos_on_the_right(trainer_for, tokenizer, tmp_path):
    trainer = trainer_for(tmp_path)
    batch = trainer.data_collator([{"input_ids": [5, 6, 7]}, {"input_ids": list(range(10, 20))}])
    assert batch["input_ids"].shape == (2, 16)
    assert batch["input_ids"][0, 3:].tolist() == [tokenizer.eos_token_id] * 13
    assert batch["attention_mask"].sum(dim=1).tolist() == [3, 10]


def test_rounding_can_be_turned_off(trainer_for, tmp_path):
    trainer = trainer_for(tmp_path, pad_to_multiple_of=None)
    assert trainer.data_collator([{"input_ids": [5, 6, 7]}])["input_ids"].shape == (1, 3)


def test_the_stage_recomputes_activations_and_uses_the_fused_gelu(trainer_for, tmp_path):
    from transformers.activations import GELUTanh

    trainer = trainer_for(tmp_path)
    trainer.train()  # the Trainer turns checkpointing on when training starts
    assert trainer.model.is_gradient_checkpointing
    assert any(isinstance(m, GELUTanh) for m in trainer.model.modules())


def test_the_classifier_head_is_the_same_in_two_runs(sample, tokenizer):
    """The head is initialised from the seed: two identical runs start from identical weights."""
    from tests.conftest import LABELS, ROOT
    from tuneops.config.params import load_params
    from tuneops.training.trainer import build_model

    params = load_params(ROOT / "params.yaml")
    model = params.model.model_copy(update={"name": str(sample.model_dir)})
    first, second = (build_model(model, params.train, LABELS, tokenizer) for _ in range(2))
    assert first.score.weight.equal(second.score.weight)


def test_a_causal_lm_trains_on_completions_and_prompt_loss_weight_counts_the_prompt(tokenizer, tmp_path):
    """task: generation: the collator keeps prompt_length (the Trainer must not drop the column), the loss is
    the model's own on completion labels, and with prompt_loss_weight the prompt's tokens add to it."""
    import torch
    from datasets import Dataset
    from transformers import GPT2Config, GPT2LMHeadModel

    from tuneops.training.trainer import CompletionTrainer

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_embd=16, n_head=2)
    rows = {"input_ids": [[5, 6, 7, 8, tokenizer.eos_token_id]], "prompt_length": [2]}
    data = {"train": Dataset.from_dict(rows), "validation": Dataset.from_dict(rows)}
    train = short_run_train_params(1)  # eval_strategy no, with a validation split: no early stopping to trip on
    plain = build_trainer(GPT2LMHeadModel(config), tokenizer, data, train, tmp_path / "a", prompt_loss_weight=0.0)
    weighted = build_trainer(GPT2LMHeadModel(config), tokenizer, data, train, tmp_path / "b", prompt_loss_weight=0.5)
    assert type(plain) is not CompletionTrainer and isinstance(weighted, CompletionTrainer)
    batch = plain.data_collator([data["train"][0]])
    assert batch["labels"].tolist()[0][:2] == [-100, -100] and "loss_weights" not in batch
    plain.train()
    assert plain.state.global_step == 1
    model = weighted.model
    wbatch = weighted.data_collator([data["train"][0]])
    loss = weighted.compute_loss(model, dict(wbatch))
    only_completion = model(input_ids=wbatch["input_ids"], labels=wbatch["labels"]).loss
    assert not torch.isclose(loss, only_completion)  # the prompt's tokens count, by half


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


def test_lora_auto_adapts_gpt2_exactly_as_the_old_explicit_list(sample, tokenizer):
    """`target_modules: auto` resolves to GPT-2's [c_attn, c_proj]: the same adapters, initialised the same."""
    from tests.conftest import ROOT
    from tuneops.config.params import load_params
    from tuneops.training.trainer import build_model

    params = load_params(ROOT / "params.yaml")
    model = params.model.model_copy(update={"name": str(sample.model_dir)})

    def lora(targets):
        lora_params = params.train.lora.model_copy(update={"target_modules": targets})
        train = params.train.model_copy(update={"method": "lora", "lora": lora_params})
        return dict(build_model(model, train, LABELS, tokenizer).named_parameters())

    auto, listed = lora("auto"), lora(["c_attn", "c_proj"])
    assert auto.keys() == listed.keys() and any("c_attn.lora_A" in name for name in auto)
    assert all(auto[name].equal(listed[name]) for name in auto)
