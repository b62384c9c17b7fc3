"""Stage `train`: fine-tune a sequence classifier, or a causal LM on prompt/completion pairs, with the Trainer.

    python -m tasks.train             (dvc.yaml runs it)
    (train.launcher: torchrun: it re-launches itself under torchrun, data-parallel; rank 0 alone writes)

params: task, data.labels, model, tokenize, train, generation.prompt_loss_weight, generation.max_new_tokens,
        generation.chat_template, register.tracking_uri, register.experiment_name
reads:  data/processed
writes: models/candidate (safetensors, config with label names or generation settings, tokenizer: for generation
        with its chat template, the model's own or generation.chat_template, so every server renders chat alike),
        models/checkpoints (kept between runs, so an interrupted training resumes), reports/train_history.json
        (loss and accuracy per epoch; token accuracy on completions for generation)

Generation: the loss is on completion tokens (and their eos) and a conversation's earlier assistant replies,
other prompt tokens weighted by
`generation.prompt_loss_weight` (0 = not at all); padding and prompt are masked by position.

train.objective: dpo trains on preference pairs with TRL's DPOTrainer instead (tuneops.training.preference:
train.args plus train.dpo; with LoRA the reference is the base, adapters off); the history's accuracy is then the
validation pairs' reward accuracy. Everything else below holds for both.

Evaluates on `validation` each epoch, keeps the best checkpoint by `metric_for_best_model`, stops early after
`early_stopping_patience` evaluations without improvement. A run killed and started again with the same data
and params resumes from the last complete checkpoint (one cut short by a kill or a full disk is set aside in
models/checkpoints/incomplete, with a log line); any change starts fresh. A full disk is said as such. The
Trainer logs the run to MLflow.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from tuneops.config.errors import EXIT_PAUSED
from tuneops.config.params import Params, load_params
from tuneops.config.paths import CANDIDATE_DIR, CHECKPOINT_DIR, PROCESSED_DIR, TRAIN_HISTORY_PATH
from tuneops.config.records import EpochRow
from tuneops.config.runner import run_main, stage_parser
from tuneops.data.tokenization import load_processed
from tuneops.io.files import said_when_disk_full, write_json
from tuneops.models.loading import load_chat_tokenizer, load_tokenizer
from tuneops.training.callbacks import stopped_for_pause
from tuneops.training.checkpoints import FINGERPRINT, CheckpointMarker, fingerprint, prepare_checkpoints_once
from tuneops.training.launch import recorded, torchrun, wants_torchrun
from tuneops.training.preference import REWARD_ACCURACY, build_dpo_trainer
from tuneops.training.trainer import build_model, build_trainer, epoch_history, mlflow_env, save_candidate

log = logging.getLogger("tuneops.train")


def train(
    params: Params,
    processed_dir: Path = PROCESSED_DIR,
    checkpoint_dir: Path = CHECKPOINT_DIR,
    candidate_dir: Path = CANDIDATE_DIR,
    history_path: Path = TRAIN_HISTORY_PATH,
) -> list[EpochRow]:
    datasets = load_processed(processed_dir)
    generator = params.task == "generation"
    model = params.model
    # generation: saved with the model, the chat template it was trained with travels with it to every server
    tokenizer = (
        load_chat_tokenizer(model.name, model.revision, params.generation.chat_template)
        if generator
        else load_tokenizer(model.name, model.revision)
    )
    preference = params.train.objective == "dpo"
    net = build_model(params.model, params.train, params.data.labels, tokenizer, generator, adapters=not preference)
    # the params dvc.yaml gives this stage that shape training (the data itself is in processed_dir)
    shaping = {
        "task": True,
        "data": {"labels": True},
        "model": True,
        "tokenize": True,
        "train": True,
        "generation": {"prompt_loss_weight": True},
    }
    print_ = fingerprint(processed_dir, params.model_dump(mode="json", include=shaping))
    mlflow_env(params.register_)
    weight = params.generation.prompt_loss_weight if generator else None
    if preference:
        max_length = params.tokenize.max_length
        trainer = build_dpo_trainer(net, tokenizer, datasets, params.train, checkpoint_dir, max_length, ["mlflow"])
    else:
        trainer = build_trainer(net, tokenizer, datasets, params.train, checkpoint_dir, ["mlflow"], weight)
    resume = prepare_checkpoints_once(trainer.args, checkpoint_dir, print_)  # once, rank 0, under torchrun
    with said_when_disk_full(checkpoint_dir, "training resumes from the last complete checkpoint"):
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if stopped_for_pause(trainer):  # a job paused: its checkpoint is saved, nothing else is written
        log.warning("paused at step %d: checkpoint saved; training resumes from it", trainer.state.global_step)
        raise SystemExit(EXIT_PAUSED)
    history = epoch_history(trainer.state.log_history, REWARD_ACCURACY if preference else "eval_accuracy")
    if trainer.is_world_process_zero():  # under torchrun, one process writes
        with said_when_disk_full(candidate_dir.parent, "the checkpoints are kept: training resumes from them"):
            max_new = params.generation.max_new_tokens if generator else None
            save_candidate(trainer, tokenizer, params.tokenize.max_length, candidate_dir, max_new)
        write_json(history_path, history)
        write_json(checkpoint_dir / FINGERPRINT, CheckpointMarker(fingerprint=print_, completed=True))
        best = params.train.args.metric_for_best_model
        log.info("best %s: %s (%s)", best, trainer.state.best_metric, trainer.state.best_model_checkpoint)
    return history


def main() -> None:
    params = load_params(stage_parser(__doc__).parse_args().params)
    if wants_torchrun(params.train):  # this module again, under torchrun with the same arguments
        torchrun(params.train, "tasks.train", sys.argv[1:])
    else:
        recorded(train)(params)  # a torchrun worker's error reaches the launching process


if __name__ == "__main__":
    run_main(main)
