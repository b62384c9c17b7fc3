"""Preference fine-tuning (train.objective: dpo, OpenAI's method {"type": "dpo"}) with TRL's DPOTrainer.

The same TrainingArguments as supervised training (train.args, fitted to the machine by
tuneops.training.trainer.training_arguments) plus train.dpo under DPOConfig's own names; LoRA through the same
LoraConfig. With LoRA the model goes to TRL unwrapped with that config: TRL wraps it, and computes the reference
log-probabilities with the adapters disabled, i.e. from the base itself (no second copy). With method: full and no
ref_model, TRL keeps a frozen copy of the model as the reference (twice the weights in memory).

TRL tokenizes the prompt/chosen/rejected texts itself (1.16 takes no pre-tokenized rows); tokenize's processed
splits carry them as prompt/completion/rejected.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tuneops.config.params import TrainParams
from tuneops.models.quirks import fuse_gelu
from tuneops.training.trainer import lora_config, trainer_callbacks, training_arguments

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from trl import DPOTrainer

# metric_for_best_model as DPOTrainer logs it: `accuracy` is its reward accuracy on the validation pairs (the
# share whose preferred reply gains more log-probability over the reference than the other one)
BEST_METRIC = {"accuracy": "rewards/accuracies", "loss": "loss"}
REWARD_ACCURACY = "eval_rewards/accuracies"  # the key in the Trainer's log history


def preference_pairs(split: Dataset) -> Dataset:
    """A processed split as TRL's standard (text) preference rows: prompt, chosen, rejected, and `length` (the
    longer tokenized side, for train_sampling_strategy: group_by_length)."""
    lengths = [max(len(a), len(b)) for a, b in zip(split["input_ids"], split["rejected_input_ids"], strict=True)]
    pairs = split.select_columns(["prompt", "completion", "rejected"]).rename_column("completion", "chosen")
    return pairs.add_column("length", lengths)


def build_dpo_trainer(
    net: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    datasets: DatasetDict,
    train: TrainParams,
    output_dir: Path,
    max_length: int,
    report_to: list[str] | None = None,
) -> DPOTrainer:
    """DPOTrainer as the train stage configures it; `net` is the causal LM unwrapped (LoRA is TRL's to apply)."""
    from trl import DPOConfig, DPOTrainer

    fuse_gelu(net)
    settings = training_arguments(train, output_dir, report_to)
    settings["metric_for_best_model"] = BEST_METRIC[train.args.metric_for_best_model]
    args = DPOConfig(
        **settings,
        **train.dpo.model_dump(),
        max_length=max_length,  # tokenize dropped longer pairs: nothing is cut
        pad_to_multiple_of=train.pad_to_multiple_of,
        # keeps `length` for the length-grouped sampler; TRL's collator reads only the token ids
        remove_unused_columns=False,
    )
    validation = datasets.get("validation")
    return DPOTrainer(
        model=net,
        ref_model=None,
        args=args,
        train_dataset=preference_pairs(datasets["train"]),
        eval_dataset=preference_pairs(validation) if validation is not None else None,
        processing_class=tokenizer,
        callbacks=trainer_callbacks(train, datasets, args),
        peft_config=lora_config(net, train, generator=True) if train.method == "lora" else None,
    )
