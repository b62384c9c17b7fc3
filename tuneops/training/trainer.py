"""Fine-tuning with the transformers Trainer: the model, the Trainer as params.yaml configures it, the prompt-weighted
loss, the per-epoch history, and the saved candidate (checkpoints and resume: tuneops.training.checkpoints)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments
from transformers.utils import ModelOutput

from tuneops.config.params import ModelParams, RegisterParams, TrainParams, tracking_uri
from tuneops.config.records import EpochRow
from tuneops.evaluation.metrics import token_accuracy_metrics, trainer_metrics
from tuneops.io.files import staged_dir
from tuneops.models.batches import CompletionCollator
from tuneops.models.hardware import set_threads
from tuneops.models.loading import load_causal_lm, load_classifier
from tuneops.models.packing import PackedCompletionCollator
from tuneops.models.quirks import configure_padding, fuse_gelu, lora_target_modules
from tuneops.training.callbacks import stage_callbacks
from tuneops.training.devices import hardware, training_settings
from tuneops.training.memory import ReleaseFreedMemory, malloc_trim
from tuneops.training.quantization import load_quantized_causal_lm, refuse_unsupported_quantization

if TYPE_CHECKING:
    from datasets import DatasetDict
    from peft import LoraConfig, PeftModel

log = logging.getLogger("tuneops.training")


def build_model(
    model: ModelParams,
    train: TrainParams,
    labels: list[str],
    tokenizer: PreTrainedTokenizerBase,
    generator: bool = False,
    adapters: bool = True,
) -> PreTrainedModel | PeftModel:
    """A sequence classifier with a fresh head for `labels`, or (generator) the causal LM itself; with train.method
    lora, wrapped in its adapters unless `adapters` is False (the DPO trainer applies lora_config itself)."""
    from transformers import set_seed

    set_seed(train.args.seed)  # the classifier head is initialised here: two runs must start from the same one
    refuse_unsupported_quantization(train, model, generator)
    if generator and train.quantization:
        net = load_quantized_causal_lm(model, train, tokenizer)
    elif generator:
        net = load_causal_lm(model.name, tokenizer, model.revision)
    else:
        net = load_classifier(model.name, labels, tokenizer, model.revision)
    if train.method == "lora" and adapters:
        from peft import get_peft_model

        net = get_peft_model(net, lora_config(net, train, generator))
        trainable, total = net.get_nb_trainable_parameters()
        share = 100 * trainable / total
        log.info("LoRA: training %d of %d parameters (%.2f%%)", trainable, total, share)
    return net


def lora_config(net: PreTrainedModel, train: TrainParams, generator: bool) -> LoraConfig:
    """train.lora as PEFT's LoraConfig, on the architecture's own modules where target_modules is `auto`."""
    from peft import LoraConfig, TaskType

    # a classifier's head is trained in full; a causal LM's head is tied to its embeddings
    task = TaskType.CAUSAL_LM if generator else TaskType.SEQ_CLS
    targets = lora_target_modules(net.config, train.lora.target_modules)
    log.info("LoRA adapters on %s", targets)
    return LoraConfig(task_type=task, **train.lora.model_dump(exclude={"target_modules"}), target_modules=targets)


def build_trainer(
    net: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    datasets: DatasetDict,
    train: TrainParams,
    output_dir: Path,
    report_to: list[str] | None = None,
    prompt_loss_weight: float | None = None,
) -> Trainer:
    """The Trainer exactly as the stage configures it (the speed benchmark calls this too).

    `prompt_loss_weight` set (task: generation): prompt+completion batches masked by position, loss on the
    completions (and the prompts by that weight), token accuracy on completions as the metric; with train.packing,
    each batch's examples packed into rows of train.max_packed_length tokens (tuneops.models.packing).
    """
    from transformers import DataCollatorWithPadding

    generator = prompt_loss_weight is not None
    fuse_gelu(net)
    args = TrainingArguments(
        **training_arguments(train, output_dir, report_to),
        # generation rows carry prompt_length (and their texts), which the model's forward does not take but
        # the collator needs: the Trainer must not drop them
        remove_unused_columns=not generator,
    )
    callbacks = trainer_callbacks(train, datasets, args)
    if generator:
        collator = completion_collator(tokenizer, train, prompt_loss_weight)
        extra = {"compute_metrics": token_accuracy_metrics, "preprocess_logits_for_metrics": argmax_ids}
    else:
        collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=train.pad_to_multiple_of)
        extra = {"compute_metrics": trainer_metrics}
    trainer_class = (CompletionTrainer if prompt_loss_weight else CausalLMTrainer) if generator else Trainer
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
    trainer.model_accepts_loss_kwargs = trainer_class is CausalLMTrainer
    return trainer


def completion_collator(
    tokenizer: PreTrainedTokenizerBase, train: TrainParams, prompt_loss_weight: float
) -> CompletionCollator | PackedCompletionCollator:
    """Packed rows (train.packing) or one padded row per example: the same examples a step, the same loss."""
    pad_id, multiple = tokenizer.pad_token_id, train.pad_to_multiple_of
    if train.packing:
        return PackedCompletionCollator(pad_id, prompt_loss_weight, train.max_packed_length, multiple)
    return CompletionCollator(pad_id, prompt_loss_weight, multiple)


def training_arguments(train: TrainParams, output_dir: Path, report_to: list[str] | None) -> dict[str, object]:
    """TrainingArguments' keywords as params.yaml sets them (train.args), fitted to this machine: threads, bf16
    where the hardware has it (else fp16 on a GPU, or fp32). TRL's configs extend TrainingArguments: the
    preference trainer takes the same."""
    hw = hardware()
    if train.num_threads is not None or not hw.cuda:  # a GPU's processes keep torch's (torchrun's) thread count
        set_threads(train.num_threads)
    settings = train.args.model_dump(exclude_none=True)
    on_device, why = training_settings(settings["bf16"], hw)  # bf16, else fp16 on a GPU or fp32; pinned loading
    if why:
        log.warning("%s", why)
    settings.update(on_device)
    if settings["use_liger_kernel"] and (why := liger_unavailable(hw.cuda)):
        log.warning("use_liger_kernel: %s; training without Liger's kernels", why)
        settings["use_liger_kernel"] = False
    return {
        "output_dir": str(output_dir),
        "report_to": report_to or [],
        "use_cpu": not has_accelerator(),
        "greater_is_better": train.args.metric_for_best_model != "loss",
        "disable_tqdm": False,
        **settings,
    }


def liger_unavailable(cuda: bool) -> str | None:
    """Why Liger's Triton kernels cannot run here, or None where they can."""
    import importlib.util

    if not cuda:
        return "Liger's kernels are Triton kernels for GPUs, and this machine has none"
    missing = [name for name in ("triton", "liger_kernel") if importlib.util.find_spec(name) is None]
    return f"{' and '.join(missing)} not installed (pip install liger-kernel)" if missing else None


def trainer_callbacks(train: TrainParams, datasets: DatasetDict, args: TrainingArguments) -> list[TrainerCallback]:
    """Early stopping (when there are evaluations to compare: a validation split and an eval_strategy), freed
    memory handed back to the OS on a CPU, and the stage's own (timed step log, pause on request: the jobs API)."""
    from transformers import EarlyStoppingCallback

    evaluates = "validation" in datasets and train.args.eval_strategy != "no"
    callbacks: list[TrainerCallback] = [EarlyStoppingCallback(train.early_stopping_patience)] if evaluates else []
    if train.release_freed_memory and args.use_cpu and (trim := malloc_trim()) is not None:
        callbacks.append(ReleaseFreedMemory(trim))
    return callbacks + stage_callbacks()


def argmax_ids(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Keep the predicted ids, not the logits: a validation split's logits over GPT-2's 50k vocabulary would
    fill gigabytes before compute_metrics sees them."""
    return logits.argmax(-1)


def weighted_lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of every position, weighted (prompt tokens by prompt_loss_weight, completion
    tokens by 1, padding by 0), averaged over the weights."""
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), input_ids[:, 1:].flatten(), reduction="none"
    )
    w = weights[:, 1:].flatten()
    return (losses * w).sum() / w.sum().clamp(min=1e-8)


class CausalLMTrainer(Trainer):
    """The Trainer for a causal LM: no key/value cache in training. A cache is never read there, and with one
    transformers does not look for packed sequences in position_ids (masking_utils: `cache is None`), so packed
    examples would attend to each other. TRL's SFTTrainer does the same."""

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, ModelOutput]:
        return super().compute_loss(model, {**inputs, "use_cache": False}, return_outputs, num_items_in_batch)


class CompletionTrainer(Trainer):
    """The Trainer with OpenAI's prompt_loss_weight: prompt tokens count in the loss by that weight."""

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, ModelOutput]:
        weights, labels = inputs.pop("loss_weights"), inputs.pop("labels")
        outputs = model(**inputs, use_cache=False)  # see CausalLMTrainer
        loss = weighted_lm_loss(outputs.logits, inputs["input_ids"], weights)
        inputs["labels"] = labels  # evaluation measures token accuracy on the completion labels
        return (loss, outputs) if return_outputs else loss


def has_accelerator() -> bool:
    return torch.cuda.is_available()


def epoch_history(log_history: list[dict[str, float]], accuracy: str = "eval_accuracy") -> list[EpochRow]:
    """One row per epoch: mean train loss since the last evaluation, validation loss, accuracy, macro-F1.
    `accuracy` is the logged key that is the accuracy (DPO: the validation pairs' reward accuracy)."""
    rows, losses = [], []
    for entry in log_history:
        if "loss" in entry:
            losses.append(entry["loss"])
        if "eval_loss" in entry:
            row = EpochRow(
                epoch=round(entry["epoch"], 3),
                train_loss=round(float(np.mean(losses)), 5) if losses else None,
                validation_loss=round(entry["eval_loss"], 5),
                validation_accuracy=round(entry[accuracy], 5),
                # generation: eval_accuracy is token accuracy on completions, and there is no macro-F1
                validation_macro_f1=round(entry["eval_macro_f1"], 5) if "eval_macro_f1" in entry else None,
            )
            rows.append(row)
            losses = []
    return rows


def save_candidate(
    trainer: Trainer,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    out_dir: Path,
    max_new_tokens: int | None = None,
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
