"""The train stage's Trainer as params.yaml configures it: the memory levers bench/train_speed.py measured."""

import pytest

from tests.conftest import short_run_train_params
from tuneops.training.trainer import ReleaseFreedMemory, build_trainer, malloc_trim


@pytest.fixture
def trainer_for(tokenizer):
    return lambda tmp_path, **updates: make_trainer(tokenizer, tmp_path, **updates)


def make_trainer(tokenizer, tmp_path, **train_updates):
    from datasets import Dataset
    from transformers import GPT2Config, GPT2ForSequenceClassification

    train = short_run_train_params(1).model_copy(update=train_updates)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_layer=1, n_embd=16, n_head=2, num_labels=3, pad_token_id=tokenizer.pad_token_id
    )
    data = Dataset.from_dict({"input_ids": [[1, 2, 3]], "attention_mask": [[1, 1, 1]], "labels": [0]})
    return build_trainer(GPT2ForSequenceClassification(config), tokenizer, {"train": data}, train, tmp_path)


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


def test_freed_memory_is_released_each_step_on_cpu_unless_turned_off(trainer_for, tmp_path):
    def releases(trainer) -> bool:
        return any(isinstance(cb, ReleaseFreedMemory) for cb in trainer.callback_handler.callbacks)

    if malloc_trim() is None:
        pytest.skip("no glibc malloc_trim here")
    assert releases(trainer_for(tmp_path / "on"))
    assert not releases(trainer_for(tmp_path / "off", release_freed_memory=False))


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
