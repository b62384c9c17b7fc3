"""Stage `train`: fine-tune a sequence classifier with the transformers Trainer.

    python -m tasks.train             (dvc.yaml runs it)
    torchrun --nproc_per_node 2 -m tasks.train     (several processes; the Trainer runs DDP)

params: data.labels, model, tokenize, train, register.tracking_uri, register.experiment_name
reads:  data/processed
writes: models/candidate (safetensors, config with label names, tokenizer), models/checkpoints (kept between
        runs, so an interrupted training resumes), reports/train_history.json (loss and accuracy per epoch)

Evaluates on `validation` each epoch, keeps the best checkpoint by `metric_for_best_model`, stops early after
`early_stopping_patience` evaluations without improvement. A run killed and started again with the same data
and params resumes from the last complete checkpoint (one cut short by a kill or a full disk is set aside in
models/checkpoints/incomplete, with a log line); any change starts fresh. A full disk is said as such. The
Trainer logs the run to MLflow.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tuneops.files import said_when_disk_full, write_json
from tuneops.modeling import load_tokenizer
from tuneops.params import Params, load_params
from tuneops.paths import CANDIDATE_DIR, CHECKPOINT_DIR, PROCESSED_DIR, TRAIN_HISTORY_PATH
from tuneops.records import EpochRow
from tuneops.runner import run_main, stage_parser
from tuneops.tokenization import load_processed
from tuneops.training import (
    FINGERPRINT,
    CheckpointMarker,
    build_model,
    build_trainer,
    epoch_history,
    fingerprint,
    mlflow_env,
    prepare_checkpoints,
    save_candidate,
)

log = logging.getLogger("tuneops.train")


def train(
    params: Params,
    processed_dir: Path = PROCESSED_DIR,
    checkpoint_dir: Path = CHECKPOINT_DIR,
    candidate_dir: Path = CANDIDATE_DIR,
    history_path: Path = TRAIN_HISTORY_PATH,
) -> list[EpochRow]:
    datasets = load_processed(processed_dir)
    tokenizer = load_tokenizer(params.model.name, params.model.revision)
    net = build_model(params.model, params.train, params.data.labels, tokenizer)
    # the params dvc.yaml gives this stage that shape training (the data itself is in processed_dir)
    shaping = {"data": {"labels": True}, "model": True, "tokenize": True, "train": True}
    print_ = fingerprint(processed_dir, params.model_dump(mode="json", include=shaping))
    resume = prepare_checkpoints(checkpoint_dir, print_)
    mlflow_env(params.register_)
    trainer = build_trainer(net, tokenizer, datasets, params.train, checkpoint_dir, report_to=["mlflow"])
    with said_when_disk_full(checkpoint_dir, "training resumes from the last complete checkpoint"):
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    history = epoch_history(trainer.state.log_history)
    if trainer.is_world_process_zero():  # under torchrun, one process writes
        with said_when_disk_full(candidate_dir.parent, "the checkpoints are kept: training resumes from them"):
            save_candidate(trainer, tokenizer, params.tokenize.max_length, candidate_dir)
        write_json(history_path, history)
        write_json(checkpoint_dir / FINGERPRINT, CheckpointMarker(fingerprint=print_, completed=True))
        best = params.train.args.metric_for_best_model
        log.info("best %s: %s (%s)", best, trainer.state.best_metric, trainer.state.best_model_checkpoint)
    return history


def main() -> None:
    train(load_params(stage_parser(__doc__).parse_args().params))


if __name__ == "__main__":
    run_main(main)
