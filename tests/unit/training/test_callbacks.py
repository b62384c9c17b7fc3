"""The callbacks behind a job's pause and its metrics events: a pause checkpoints and stops, and training resumed
from that checkpoint ends where an uninterrupted run does; each logged step is kept with its time."""

from __future__ import annotations

import json
import time

import pytest
import torch

from tests.conftest import short_run_train_params
from tuneops.config.paths import CHECKPOINT_DIR, PAUSE_REQUEST_PATH, STEP_LOG_PATH
from tuneops.training.callbacks import stopped_for_pause
from tuneops.training.trainer import build_trainer

STEPS = 6


def trainer(tokenizer, out_dir, init_seed=0):
    from datasets import Dataset
    from transformers import GPT2Config, GPT2ForSequenceClassification, set_seed

    set_seed(init_seed)
    # evaluated each epoch, as a job is: a pause mid-epoch must not evaluate (it would draw on the random state)
    train = short_run_train_params(
        STEPS, per_device_train_batch_size=2, logging_steps=1, bf16=False, eval_strategy="epoch"
    )
    config = GPT2Config(
        vocab_size=len(tokenizer), n_layer=1, n_embd=16, n_head=2, num_labels=3, pad_token_id=tokenizer.pad_token_id
    )
    rows = 8
    data = Dataset.from_dict(
        {
            "input_ids": [[1 + i, 2 + i, 3 + i] for i in range(rows)],
            "attention_mask": [[1, 1, 1]] * rows,
            "labels": [i % 3 for i in range(rows)],
        }
    )
    splits = {"train": data, "validation": data.select(range(4))}
    return build_trainer(GPT2ForSequenceClassification(config), tokenizer, splits, train, out_dir)


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the callbacks' paths are relative to the job's workspace, as the stage runs
    return tmp_path


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_pause_checkpoints_and_stops_and_the_resumed_run_ends_where_an_uninterrupted_one_does(tokenizer, workspace):
    straight = trainer(tokenizer, workspace / "straight")
    straight.train()
    assert not stopped_for_pause(straight) and straight.state.global_step == STEPS

    PAUSE_REQUEST_PATH.parent.mkdir(parents=True, exist_ok=True)
    PAUSE_REQUEST_PATH.write_text("key")
    paused = trainer(tokenizer, workspace / CHECKPOINT_DIR)
    paused.train()
    assert stopped_for_pause(paused) and paused.state.global_step == 1  # at the end of the step under way
    assert not [e for e in paused.state.log_history if "eval_loss" in e]  # a pause is no epoch's end
    saved = workspace / CHECKPOINT_DIR / "checkpoint-1"
    assert (saved / "trainer_state.json").is_file()

    PAUSE_REQUEST_PATH.unlink()  # what the resume route does
    resumed = trainer(tokenizer, workspace / CHECKPOINT_DIR, init_seed=1)  # only the checkpoint can make it equal
    resumed.train(resume_from_checkpoint=str(saved))
    assert not stopped_for_pause(resumed) and resumed.state.global_step == STEPS
    expected, got = weights(straight.model), weights(resumed.model)
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_each_logged_step_is_kept_with_the_time_it_was_logged(tokenizer, workspace):
    before = time.time()
    trainer(tokenizer, workspace / CHECKPOINT_DIR).train()
    entries = [json.loads(line) for line in STEP_LOG_PATH.read_text().splitlines()]
    losses = [e for e in entries if "loss" in e]
    assert [e["step"] for e in losses] == list(range(1, STEPS + 1))
    times = [e["time"] for e in losses]
    assert times == sorted(times) and before <= times[0] <= times[-1] <= time.time()
