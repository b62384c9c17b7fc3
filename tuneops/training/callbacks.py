"""Trainer callbacks every training (supervised or preference) runs with, for the fine-tuning jobs API:

- `StepLog` appends each logged step to models/checkpoints/steps.jsonl with the time it was logged, so a job's
  metrics events come as training logs them, each with its own time (a checkpoint's trainer_state.json has none);
- `PauseOnRequest` checkpoints and stops at the next step once models/checkpoints/pause-requested exists (the
  pause route writes it); the stage then exits with EXIT_PAUSED, writing nothing a later stage could trust, and a
  later run resumes from that checkpoint (tuneops.training.checkpoints).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from tuneops.config.paths import PAUSE_REQUEST_PATH, STEP_LOG_PATH


class StepLog(TrainerCallback):
    """Each `on_log` entry (loss, eval_loss, ...) as one JSON line with its step and wall time."""

    def __init__(self, path: Path = STEP_LOG_PATH) -> None:
        self.path = path

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kwargs
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        entry = {"step": state.global_step, "epoch": state.epoch, "time": time.time(), **logs}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")


class PauseOnRequest(TrainerCallback):
    """Save a checkpoint and stop at the end of the step during which a pause was asked for."""

    def __init__(self, request_path: Path = PAUSE_REQUEST_PATH) -> None:
        self.request_path = request_path
        self.paused = False

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if self.request_path.exists():
            control.should_save = True
            control.should_training_stop = True
            self.paused = True

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        """Stopping ends the epoch loop, and an epoch's end evaluates and saves (eval_strategy: epoch): not for a
        pause mid-epoch. The evaluation would draw on the random state after the checkpoint saved it, and the save
        would store that state, so the resumed run would no longer follow the uninterrupted one."""
        if self.paused:
            control.should_evaluate = control.should_save = False


def stage_callbacks() -> list[TrainerCallback]:
    """The callbacks a training stage adds to its Trainer (after its own)."""
    return [StepLog(), PauseOnRequest()]


def stopped_for_pause(trainer: Trainer) -> bool:
    """Whether `trainer.train()` returned because a pause was asked for (its checkpoint is saved)."""
    return any(isinstance(c, PauseOnRequest) and c.paused for c in trainer.callback_handler.callbacks)
