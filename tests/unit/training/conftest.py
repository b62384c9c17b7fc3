"""What the training/ tests share: the stage's Trainer around a one-layer GPT-2, with short-run settings."""

from __future__ import annotations

import pytest

from tests.conftest import short_run_train_params
from tuneops.training.trainer import build_trainer


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
