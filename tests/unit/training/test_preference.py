"""The DPO trainer as the train stage builds it: TRL's DPOTrainer with train.dpo's names, LoRA's reference the base
itself (adapters off, no second model), the validation reward accuracy as `accuracy`, a step that trains."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.conftest import short_run_train_params
from tuneops.training.preference import REWARD_ACCURACY, build_dpo_trainer
from tuneops.training.trainer import epoch_history


@pytest.fixture
def pairs(tokenizer):
    from datasets import Dataset

    texts = {"prompt": ["User: hi\nAssistant:"] * 4, "completion": [" yes\n"] * 4, "rejected": [" no no\n"] * 4}
    ids = {k: [tokenizer(p + c)["input_ids"] for p, c in zip(texts["prompt"], texts[k], strict=True)] for k in texts}
    split = Dataset.from_dict({**texts, "input_ids": ids["completion"], "rejected_input_ids": ids["rejected"]})
    return {"train": split, "validation": split}


def gpt2(tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_embd=16, n_head=2, pad_token_id=tokenizer.eos_token_id)
    return GPT2LMHeadModel(config)


def test_lora_dpo_uses_the_base_as_reference_and_train_dpo_names(tokenizer, pairs, tmp_path):
    train = short_run_train_params(2, eval_strategy="steps", eval_steps=1, metric_for_best_model="accuracy")
    dpo = train.dpo.model_copy(update={"beta": 0.25})
    train = train.model_copy(update={"method": "lora", "objective": "dpo", "dpo": dpo})
    trainer = build_dpo_trainer(gpt2(tokenizer), copy.deepcopy(tokenizer), pairs, train, tmp_path, max_length=64)
    assert trainer.ref_model is None and list(trainer.model.peft_config) == ["default"]  # no copy, no ref adapter
    assert trainer.args.beta == 0.25 and trainer.args.loss_type == ["sigmoid"]
    assert trainer.args.metric_for_best_model == "rewards/accuracies" and trainer.args.greater_is_better
    trainer.train()
    history = epoch_history(trainer.state.log_history, REWARD_ACCURACY)
    assert len(history) == 2 and all(0 <= row.validation_accuracy <= 1 for row in history)
