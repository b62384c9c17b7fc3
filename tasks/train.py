"""Stage `train`: fine-tune a sequence classifier with the transformers Trainer -> models/candidate.

    python -m tasks.train             (dvc.yaml runs it; reads data.labels, model, train, register)
    torchrun --nproc_per_node 2 -m tasks.train     (several processes; the Trainer runs DDP)

Evaluates on `validation` each epoch, keeps the best checkpoint by `metric_for_best_model`, stops early after
`early_stopping_patience` evaluations without improvement. Checkpoints live in models/checkpoints (a DVC
`persist` output): a run killed and started again with the same data and params resumes from the last one.
Writes models/candidate (safetensors, config with label names, tokenizer) and reports/train_history.json.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback

from tasks.common import run_main, stage_parser, staged_dir, write_json
from tasks.config import ModelParams, Params, RegisterParams, TokenizeParams, TrainParams, load_params
from tasks.modeling import configure_padding, fuse_gelu, load_classifier, load_tokenizer, native_bf16, set_threads

log = logging.getLogger("tuneops.train")
FINGERPRINT = "fingerprint.json"


def classification_metrics(eval_pred: Any) -> dict[str, float]:
    from tasks.evaluate import accuracy_macro_f1

    logits, labels = eval_pred
    return accuracy_macro_f1(logits, labels)


def fingerprint(processed_dir: Path, *sections: Any) -> str:
    """What a checkpoint was trained from: the tokenized data and every param that shapes training."""
    digest = hashlib.sha256()
    for state in sorted(processed_dir.rglob("*")):
        if state.is_file():
            digest.update(state.name.encode() + state.read_bytes())
    digest.update(json.dumps([s.model_dump(mode="json") for s in sections], sort_keys=True).encode())
    return digest.hexdigest()


def prepare_checkpoints(checkpoint_dir: Path, print_: str) -> bool:
    """True if training should resume from checkpoint_dir; otherwise it is emptied for a fresh start."""
    marker = checkpoint_dir / FINGERPRINT
    saved = json.loads(marker.read_text()) if marker.is_file() else {}
    checkpoints = sorted(checkpoint_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if saved.get("fingerprint") == print_ and checkpoints and not saved.get("completed"):
        log.info("resuming from %s (same data and params as the interrupted run)", checkpoints[-1])
        return True
    if checkpoints:
        why = "the last run finished" if saved.get("fingerprint") == print_ else "data or params changed"
        log.info("starting fresh: %s since %s was saved", why, checkpoints[-1])
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    checkpoint_dir.mkdir(parents=True)
    write_json(marker, {"fingerprint": print_})
    return False


def build_model(model: ModelParams, train: TrainParams, labels: list[str], tokenizer: Any) -> Any:
    net = load_classifier(model.name, labels, tokenizer, model.revision)
    if train.method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        lora = LoraConfig(task_type=TaskType.SEQ_CLS, **train.lora.model_dump())  # the head is trained in full
        net = get_peft_model(net, lora)
        trainable, total = net.get_nb_trainable_parameters()
        log.info("LoRA: training %d of %d parameters (%.2f%%)", trainable, total, 100 * trainable / total)
    return net


def build_trainer(net: Any, tokenizer: Any, datasets: Any, train: TrainParams, output_dir: Path,
                  report_to: list[str] | None = None) -> Any:  # fmt: skip
    """The Trainer exactly as the stage configures it (the speed benchmark calls this too)."""
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainingArguments

    set_threads(train.num_threads)
    fuse_gelu(net)
    settings = train.args.model_dump(exclude_none=True)
    if settings["bf16"] and not native_bf16():  # emulated bf16 is several times slower than fp32
        log.warning("bf16: this machine has no native bf16 (AMX/AVX512-BF16 or a bf16 GPU): training in fp32")
        settings["bf16"] = False
    args = TrainingArguments(
        output_dir=str(output_dir), report_to=report_to or [], use_cpu=not _has_accelerator(),
        greater_is_better=train.args.metric_for_best_model != "loss", disable_tqdm=False, **settings,
    )  # fmt: skip
    callbacks = [EarlyStoppingCallback(train.early_stopping_patience)] if "validation" in datasets else []
    if train.release_freed_memory and args.use_cpu and (trim := _malloc_trim()) is not None:
        callbacks.append(ReleaseFreedMemory(trim))
    trainer = Trainer(
        model=net, args=args, train_dataset=datasets["train"], eval_dataset=datasets.get("validation"),
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=train.pad_to_multiple_of),
        processing_class=tokenizer, compute_metrics=classification_metrics, callbacks=callbacks,
    )  # fmt: skip
    # transformers 5 sees GPT-2's **kwargs and expects the model to divide its loss by the items in the whole
    # accumulated batch; a sequence classifier averages its own loss instead, so the Trainer would skip its
    # division by gradient_accumulation_steps: gradients and logged loss would grow with accumulation.
    trainer.model_accepts_loss_kwargs = False
    return trainer


class ReleaseFreedMemory(TrainerCallback):
    """Hand the memory freed during a step back to the OS at its end (glibc's malloc_trim).

    glibc keeps freed heap pages resident and reuses them only for allocations that fit, so batches of
    different lengths leave holes that pile up in the peak. bench/train_speed.py: ~0.1 GB less peak RSS
    for ~5% fewer samples/s.
    """

    def __init__(self, trim: Callable[[int], int]) -> None:
        self.trim = trim

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trim(0)


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (macOS, musl)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available()


def epoch_history(log_history: list[dict]) -> list[dict]:
    """One row per epoch: mean train loss since the last evaluation, validation loss, accuracy, macro-F1."""
    rows, losses = [], []
    for entry in log_history:
        if "loss" in entry:
            losses.append(entry["loss"])
        if "eval_loss" in entry:
            rows.append({
                "epoch": round(entry["epoch"], 3),
                "train_loss": round(float(np.mean(losses)), 5) if losses else None,
                "validation_loss": round(entry["eval_loss"], 5),
                "validation_accuracy": round(entry["eval_accuracy"], 5),
                "validation_macro_f1": round(entry["eval_macro_f1"], 5),
            })  # fmt: skip
            losses = []
    return rows


def save_candidate(trainer: Any, tokenizer: Any, tokenize: TokenizeParams, out_dir: Path) -> None:
    net = trainer.model
    if hasattr(net, "merge_and_unload"):  # LoRA: fold the adapters in, so inference needs no PEFT
        net = net.merge_and_unload()
    tokenizer.model_max_length = tokenize.max_length  # predict truncates exactly as training did
    with staged_dir(out_dir) as staging:
        configure_padding(net, tokenizer).save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)


def mlflow_env(register: RegisterParams) -> None:
    """The Trainer's MLflow callback reads the environment; point it at the registry's store."""
    from tasks.register import tracking_uri

    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri(register)
    os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", register.experiment_name)
    os.environ.setdefault("HF_MLFLOW_LOG_ARTIFACTS", "0")  # checkpoints go to DVC, not to MLflow twice


def train(params: Params, processed_dir: Path, checkpoint_dir: Path, model_dir: Path, history_path: Path) -> list[dict]:
    from tasks.tokenize import load_processed

    datasets = load_processed(processed_dir)
    tokenizer = load_tokenizer(params.model.name, params.model.revision)
    net = build_model(params.model, params.train, params.data.labels, tokenizer)
    print_ = fingerprint(processed_dir, params.model, params.train, params.data, params.tokenize)
    resume = prepare_checkpoints(checkpoint_dir, print_)
    mlflow_env(params.register_)
    trainer = build_trainer(net, tokenizer, datasets, params.train, checkpoint_dir, report_to=["mlflow"])
    trainer.train(resume_from_checkpoint=resume or None)
    history = epoch_history(trainer.state.log_history)
    if trainer.is_world_process_zero():
        save_candidate(trainer, tokenizer, params.tokenize, model_dir)
        write_json(history_path, history)
        write_json(checkpoint_dir / FINGERPRINT, {"fingerprint": print_, "completed": True})
        log.info("best %s: %s (%s)", params.train.args.metric_for_best_model, trainer.state.best_metric,
                 trainer.state.best_model_checkpoint)  # fmt: skip
    return history


def main() -> None:
    args = stage_parser(__doc__).parse_args()
    train(load_params(args.params), Path("data/processed"), Path("models/checkpoints"), Path("models/candidate"),
          Path("reports/train_history.json"))  # fmt: skip


if __name__ == "__main__":
    run_main(main)
