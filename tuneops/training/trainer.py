"""Fine-tuning with the transformers Trainer: the model, the Trainer as params.yaml configures it, resumable
checkpoints, the per-epoch history, and the saved candidate.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel
from transformers import Trainer, TrainerCallback

from tuneops.config.params import ModelParams, RegisterParams, TrainParams, tracking_uri
from tuneops.config.records import EpochRow
from tuneops.evaluation.metrics import token_accuracy_metrics, trainer_metrics
from tuneops.io.files import remove, staged_dir, write_json
from tuneops.models.loading import (
    CompletionCollator,
    configure_padding,
    fuse_gelu,
    load_causal_lm,
    load_classifier,
    set_threads,
)
from tuneops.training.devices import hardware, training_settings

log = logging.getLogger("tuneops.training")
FINGERPRINT = "fingerprint.json"


def fingerprint(processed_dir: Path, settings: dict[str, Any]) -> str:
    """What a checkpoint was trained from: the tokenized data and every param that shapes training."""
    digest = hashlib.sha256()
    for state in sorted(processed_dir.rglob("*")):
        if state.is_file():
            digest.update(state.name.encode() + state.read_bytes())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


class CheckpointMarker(BaseModel):
    """models/checkpoints/fingerprint.json: what the checkpoints beside it were trained from."""

    fingerprint: str
    completed: bool = False


def resume_decision(saved: CheckpointMarker | None, fingerprint_: str, checkpoints: list[str]) -> tuple[bool, str]:
    """Resume from the last checkpoint, or start fresh? Only an unfinished run on the same data and params
    resumes; anything else would mix two trainings. Returns the decision and why, for the log."""
    same = saved is not None and saved.fingerprint == fingerprint_
    if not checkpoints:
        return False, "no checkpoint to resume from"
    if same and not saved.completed:
        return True, f"resuming from {checkpoints[-1]} (same data and params as the interrupted run)"
    why = "the last run finished" if same else "data or params changed"
    return False, f"starting fresh: {why} since {checkpoints[-1]} was saved"


def _whole_safetensors(path: Path) -> bool:
    """The header parses and the file is as long as the header says (a cut-short write is not)."""
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return False
        size = int.from_bytes(head, "little")
        try:
            header = json.loads(f.read(size))
        except ValueError:
            return False
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    return path.stat().st_size == 8 + size + max(ends, default=0)


def checkpoint_problem(path: Path) -> str | None:
    """Why training cannot resume from this checkpoint (a file missing or cut short), or None when it is whole.

    The Trainer writes a checkpoint file by file; a kill or a full disk in between leaves a folder without its
    trainer_state.json or scheduler.pt, or with a truncated optimizer.pt, that every later resume would fail on.
    """
    for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt"):
        if not (path / name).is_file():
            return f"no {name}"
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):  # torch.save writes zip archives
        if (path / name).is_file() and not zipfile.is_zipfile(path / name):
            return f"{name} is cut short"
    weights = [w for w in ("model.safetensors", "adapter_model.safetensors") if (path / w).is_file()]
    if not weights:
        return "no model weights"
    if not _whole_safetensors(path / weights[0]):
        return f"{weights[0]} is cut short"
    try:
        step = json.loads((path / "trainer_state.json").read_text())["global_step"]
    except (ValueError, KeyError):
        return "trainer_state.json is unreadable"
    return None if f"checkpoint-{step}" == path.name else f"trainer_state.json is for step {step}"


def set_aside(checkpoint_dir: Path, checkpoints: list[Path]) -> list[Path]:
    """Move incomplete checkpoints to checkpoint_dir/incomplete (kept for a look, out of the Trainer's way);
    return the complete ones."""
    complete = []
    for path in checkpoints:
        if (problem := checkpoint_problem(path)) is None:
            complete.append(path)
            continue
        target = checkpoint_dir / "incomplete" / path.name
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(exist_ok=True)
        path.rename(target)
        log.warning("set aside %s (incomplete: %s) as %s", path, problem, target)
    return complete


def prepare_checkpoints(checkpoint_dir: Path, fingerprint_: str) -> Path | None:
    """The checkpoint to resume from, or None: then checkpoint_dir is emptied for a fresh start."""
    marker = checkpoint_dir / FINGERPRINT
    saved = CheckpointMarker.model_validate_json(marker.read_text()) if marker.is_file() else None
    found = sorted(checkpoint_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    complete = set_aside(checkpoint_dir, found)
    resume, why = resume_decision(saved, fingerprint_, [p.as_posix() for p in complete])
    log.info("%s", why)
    if resume:
        return complete[-1]
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    for child in checkpoint_dir.iterdir():  # its contents, not the folder: it may be a mount point
        remove(child)
    write_json(marker, CheckpointMarker(fingerprint=fingerprint_))
    return None


def prepare_checkpoints_once(args: Any, checkpoint_dir: Path, fingerprint_: str) -> Path | None:
    """prepare_checkpoints under torchrun too: rank 0 decides and prepares while the other ranks wait (the
    Trainer's barrier); then they resume from the same checkpoint, the last one it kept (none after a fresh
    start, which empties the folder). A rank that decided alone could empty the folder another resumes from."""
    with args.main_process_first(local=False, desc="preparing the checkpoints"):
        if args.process_index == 0:
            return prepare_checkpoints(checkpoint_dir, fingerprint_)
        kept = sorted(checkpoint_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        return kept[-1] if kept else None


def build_model(
    model: ModelParams, train: TrainParams, labels: list[str], tokenizer: Any, generator: bool = False
) -> Any:
    """A sequence classifier with a fresh head for `labels`, or (generator) the causal LM itself."""
    from transformers import set_seed

    set_seed(train.args.seed)  # the classifier head is initialised here: two runs must start from the same one
    if generator:
        net = load_causal_lm(model.name, tokenizer, model.revision)
    else:
        net = load_classifier(model.name, labels, tokenizer, model.revision)
    if train.method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        # a classifier's head is trained in full; a causal LM's head is tied to its embeddings
        task = TaskType.CAUSAL_LM if generator else TaskType.SEQ_CLS
        lora = LoraConfig(task_type=task, **train.lora.model_dump())
        net = get_peft_model(net, lora)
        trainable, total = net.get_nb_trainable_parameters()
        log.info("LoRA: training %d of %d parameters (%.2f%%)", trainable, total, 100 * trainable / total)
    return net


def build_trainer(
    net: Any,
    tokenizer: Any,
    datasets: Any,
    train: TrainParams,
    output_dir: Path,
    report_to: list[str] | None = None,
    prompt_loss_weight: float | None = None,
) -> Any:
    """The Trainer exactly as the stage configures it (the speed benchmark calls this too).

    `prompt_loss_weight` set (task: generation): prompt+completion batches masked by position, loss on the
    completions (and the prompts by that weight), token accuracy on completions as the metric.
    """
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, TrainingArguments

    generator = prompt_loss_weight is not None

    hw = hardware()
    if train.num_threads is not None or not hw.cuda:  # a GPU's processes keep torch's (torchrun's) thread count
        set_threads(train.num_threads)
    fuse_gelu(net)
    settings = train.args.model_dump(exclude_none=True)
    on_device, why = training_settings(settings["bf16"], hw)  # bf16, else fp16 on a GPU or fp32; pinned loading
    if why:
        log.warning("%s", why)
    settings.update(on_device)
    args = TrainingArguments(
        output_dir=str(output_dir),
        report_to=report_to or [],
        use_cpu=not has_accelerator(),
        greater_is_better=train.args.metric_for_best_model != "loss",
        disable_tqdm=False,
        # generation rows carry prompt_length (and their texts), which the model's forward does not take but
        # the collator needs: the Trainer must not drop them
        remove_unused_columns=not generator,
        **settings,
    )
    # early stopping needs evaluations to compare: none without a validation split or with eval_strategy: no
    evaluates = "validation" in datasets and train.args.eval_strategy != "no"
    callbacks = [EarlyStoppingCallback(train.early_stopping_patience)] if evaluates else []
    if train.release_freed_memory and args.use_cpu and (trim := malloc_trim()) is not None:
        callbacks.append(ReleaseFreedMemory(trim))
    if generator:
        collator = CompletionCollator(tokenizer.pad_token_id, prompt_loss_weight, train.pad_to_multiple_of)
        extra = {"compute_metrics": token_accuracy_metrics, "preprocess_logits_for_metrics": argmax_ids}
    else:
        collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=train.pad_to_multiple_of)
        extra = {"compute_metrics": trainer_metrics}
    trainer_class = CompletionTrainer if generator and prompt_loss_weight else Trainer
    trainer = trainer_class(
        model=net,
        args=args,
        train_dataset=datasets["train"],
        eval_dataset=datasets.get("validation"),
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=callbacks,
        **extra,
    )
    # transformers 5 sees GPT-2's **kwargs and expects the model to divide its loss by the items in the whole
    # accumulated batch. A causal LM's own loss does (sum over completion tokens / tokens in the accumulated
    # batch); a sequence classifier and CompletionTrainer average per batch instead, so the Trainer must divide by
    # gradient_accumulation_steps itself, or gradients and logged loss would grow with accumulation.
    trainer.model_accepts_loss_kwargs = generator and trainer_class is Trainer
    return trainer


def argmax_ids(logits: Any, labels: Any) -> Any:
    """Keep the predicted ids, not the logits: a validation split's logits over GPT-2's 50k vocabulary would
    fill gigabytes before compute_metrics sees them."""
    return logits.argmax(-1)


def weighted_lm_loss(logits: Any, input_ids: Any, weights: Any) -> Any:
    """Next-token cross-entropy of every position, weighted (prompt tokens by prompt_loss_weight, completion
    tokens by 1, padding by 0), averaged over the weights."""
    import torch.nn.functional as F

    losses = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), input_ids[:, 1:].flatten(), reduction="none")
    w = weights[:, 1:].flatten()
    return (losses * w).sum() / w.sum().clamp(min=1e-8)


class CompletionTrainer(Trainer):
    """The Trainer with OpenAI's prompt_loss_weight: prompt tokens count in the loss by that weight."""

    def compute_loss(
        self, model: Any, inputs: dict, return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        weights, labels = inputs.pop("loss_weights"), inputs.pop("labels")
        outputs = model(**inputs)
        loss = weighted_lm_loss(outputs.logits, inputs["input_ids"], weights)
        inputs["labels"] = labels  # evaluation measures token accuracy on the completion labels
        return (loss, outputs) if return_outputs else loss


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


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (macOS, musl)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available()


def epoch_history(log_history: list[dict]) -> list[EpochRow]:
    """One row per epoch: mean train loss since the last evaluation, validation loss, accuracy, macro-F1."""
    rows, losses = [], []
    for entry in log_history:
        if "loss" in entry:
            losses.append(entry["loss"])
        if "eval_loss" in entry:
            row = EpochRow(
                epoch=round(entry["epoch"], 3),
                train_loss=round(float(np.mean(losses)), 5) if losses else None,
                validation_loss=round(entry["eval_loss"], 5),
                validation_accuracy=round(entry["eval_accuracy"], 5),
                # generation: eval_accuracy is token accuracy on completions, and there is no macro-F1
                validation_macro_f1=round(entry["eval_macro_f1"], 5) if "eval_macro_f1" in entry else None,
            )
            rows.append(row)
            losses = []
    return rows


def save_candidate(
    trainer: Any, tokenizer: Any, max_length: int, out_dir: Path, max_new_tokens: int | None = None
) -> None:
    """The trained model (LoRA merged), its label names and the tokenizer, all or nothing. A causal LM keeps
    its generation settings (`max_new_tokens`, eos, pad) in generation_config.json."""
    net = trainer.model
    if hasattr(net, "merge_and_unload"):  # LoRA: fold the adapters in, so inference needs no PEFT
        net = net.merge_and_unload()
    tokenizer.model_max_length = max_length  # predict truncates exactly as training did
    if max_new_tokens is not None:
        net.generation_config.max_new_tokens = max_new_tokens
        net.generation_config.max_length = None  # max_new_tokens rules; both set makes generate() warn
        net.generation_config.eos_token_id = tokenizer.eos_token_id
        net.generation_config.pad_token_id = tokenizer.pad_token_id
    with staged_dir(out_dir) as staging:
        configure_padding(net, tokenizer).save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)


def mlflow_env(register: RegisterParams) -> None:
    """The Trainer's MLflow callback reads the environment; point it at the registry's store."""
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri(register)
    os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", register.experiment_name)
    os.environ.setdefault("HF_MLFLOW_LOG_ARTIFACTS", "0")  # checkpoints go to DVC, not to MLflow twice
