"""Typed view of params.yaml: the one home of every knob.

Every model forbids unknown keys and has no defaults, so params.yaml stays the single source of truth and a
typo or a wrong type stops with a message that names the key.
"""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from tuneops.config.checks import ValidateParams
from tuneops.config.errors import UserError
from tuneops.config.paths import PARAMS_PATH
from tuneops.config.strict import Strict


class DataParams(Strict):
    source: str
    revision: str | None
    text_column: str
    label_column: str
    labels: list[str] = Field(min_length=2)
    validation_fraction: float = Field(gt=0, lt=1)
    test_fraction: float = Field(gt=0, lt=1)
    seed: int = Field(ge=0)
    max_train_samples: int | None = Field(gt=0)
    max_eval_samples: int | None = Field(gt=0)

    @field_validator("labels")
    @classmethod
    def _distinct_labels(cls, labels: list[str]) -> list[str]:
        seen = [label.strip().lower() for label in labels]  # ingest maps names case-insensitively
        if dupes := sorted({label for label in seen if seen.count(label) > 1}):
            raise ValueError(f"each label once (a label's id is its position); repeated: {dupes}")
        return labels


class ModelParams(Strict):
    name: str
    revision: str | None


class TokenizeParams(Strict):
    max_length: int = Field(gt=0)


class LoraParams(Strict):
    r: int = Field(gt=0)
    lora_alpha: int = Field(gt=0)
    lora_dropout: float = Field(ge=0, lt=1)
    # `auto`: the architecture's own (tuneops.models.quirks: GPT-2's c_attn and c_proj, PEFT's all-linear elsewhere)
    target_modules: list[str] | Literal["auto"]


class TrainingArgs(Strict):
    """The TrainingArguments we expose, under Hugging Face's own names (transformers 5)."""

    learning_rate: float = Field(gt=0)
    num_train_epochs: float = Field(gt=0)
    max_steps: int
    per_device_train_batch_size: int = Field(gt=0)
    per_device_eval_batch_size: int = Field(gt=0)
    gradient_accumulation_steps: int = Field(gt=0)
    weight_decay: float = Field(ge=0)
    warmup_steps: float = Field(ge=0)
    lr_scheduler_type: str
    max_grad_norm: float = Field(gt=0)
    seed: int = Field(ge=0)
    train_sampling_strategy: Literal["random", "sequential", "group_by_length"]
    eval_strategy: Literal["no", "epoch", "steps"]
    save_strategy: Literal["no", "epoch", "steps"]
    save_total_limit: int = Field(gt=0)
    load_best_model_at_end: bool
    metric_for_best_model: Literal["accuracy", "macro_f1", "loss"]
    logging_steps: int = Field(gt=0)
    optim: str
    dataloader_num_workers: int = Field(ge=0)
    torch_compile: bool
    use_liger_kernel: bool
    bf16: bool
    activation_checkpointing: bool
    activation_checkpointing_kwargs: dict[str, JsonValue] | None = None
    eval_steps: int | None = Field(default=None, gt=0)
    save_steps: int | None = Field(default=None, gt=0)

    @field_validator("optim", "lr_scheduler_type")
    @classmethod
    def _known_to_transformers(cls, value: str, info: ValidationInfo) -> str:
        if value in COMMON_NAMES[info.field_name]:
            return value  # no need to import transformers (seconds) for the usual names
        known = transformers_names(info.field_name)
        if value not in known:
            raise ValueError(f"not one transformers knows; one of {', '.join(sorted(known))}")
        return value


# Names every transformers 5 accepts; others are checked against its own enums, imported only then.
COMMON_NAMES = {
    "optim": {"adamw_torch", "adamw_torch_fused", "adafactor", "sgd"},
    "lr_scheduler_type": {"linear", "cosine", "constant", "constant_with_warmup"},
}


def transformers_names(field: str) -> set[str]:
    if field == "optim":
        from transformers.training_args import OptimizerNames

        return {o.value for o in OptimizerNames}
    from transformers.trainer_utils import SchedulerType

    return {s.value for s in SchedulerType}


class DpoParams(Strict):
    """train.objective: dpo, under TRL's DPOConfig names (tuneops/training/preference.py passes them on)."""

    beta: float = Field(gt=0)  # how far the policy may move from the reference (DPO's KL weight)
    loss_type: Literal["sigmoid", "hinge", "ipo", "robust", "bco_pair", "sppo_hard", "apo_zero", "apo_down"]
    label_smoothing: float = Field(ge=0, lt=0.5)  # cDPO / robust: the share of preference labels taken as noisy


class TrainParams(Strict):
    # supervised: next-token loss on completions; dpo: OpenAI's method {"type": "dpo"} on preference data (TRL)
    objective: Literal["supervised", "dpo"]
    method: Literal["full", "lora"]
    lora: LoraParams
    dpo: DpoParams
    early_stopping_patience: int = Field(gt=0)
    args: TrainingArgs
    num_threads: int | None = Field(gt=0)
    pad_to_multiple_of: int | None = Field(gt=0)
    # task: generation (supervised): each batch's examples packed into rows, positions restarting per example
    # (tuneops/models/packing.py); TRL's SFTConfig name. max_packed_length: a row's token budget (null = one row)
    packing: bool
    max_packed_length: int | None = Field(gt=0)
    # QLoRA (method: lora): the frozen base loaded in 4-bit NF4 or 8-bit by bitsandbytes; CUDA GPUs only
    quantization: Literal["4bit", "8bit"] | None
    release_freed_memory: bool
    # torchrun's own names (tuneops/training/launch.py builds its command line from them)
    launcher: Literal["single", "torchrun"]
    nproc_per_node: int = Field(gt=0)
    nnodes: int = Field(gt=0)
    rdzv_endpoint: str | None = Field(pattern=r"^[^\s:]+:\d+$")
    rdzv_id: str = Field(min_length=1)

    @field_validator("rdzv_endpoint")
    @classmethod
    def _several_nodes_meet(cls, endpoint: str | None, info: ValidationInfo) -> str | None:
        if endpoint is None and info.data.get("nnodes", 1) > 1:
            raise ValueError("nnodes > 1 needs the host:port where the machines meet (one of them)")
        return endpoint


class GenerationGate(Strict):
    """The gate of a generation candidate, on completions it generated for held-out prompts."""

    primary_metric: Literal["jaccard", "exact_match"]
    min_score: float = Field(ge=0, le=1)
    baseline_margin: float
    sample_size: int | None = Field(gt=0)


class EvaluateParams(Strict):
    min_accuracy: float = Field(ge=0, le=1)
    min_macro_f1: float = Field(ge=0, le=1)
    max_overfit_gap: float
    max_loss_gap: float
    primary_metric: Literal["accuracy", "macro_f1"]
    min_improvement: float
    train_sample_size: int | None = Field(gt=0)
    batch_size: int = Field(gt=0)
    # the candidate must beat the base model (model.name, zero-shot) on the primary metric by more than this
    base_margin: float
    samples_kept: int | None = Field(gt=0)  # lines of reports/samples.jsonl; None = every scored row
    generation: GenerationGate

    def primary(self, task: str) -> str:
        """The metric champion and challenger are compared on, for this task."""
        return self.generation.primary_metric if task == "generation" else self.primary_metric


class RegisterParams(Strict):
    model_name: str
    tracking_uri: str
    experiment_name: str
    alias: str


def tracking_uri(register: RegisterParams) -> str:
    """A shared server's MLFLOW_TRACKING_URI wins over the local SQLite default in params.yaml."""
    return os.environ.get("MLFLOW_TRACKING_URI") or register.tracking_uri


class FlowParams(Strict):
    review_data: Literal["never", "on_warning", "always"]
    review_timeout: int = Field(gt=0)
    schedule: str | None
    push: bool
    workspace_lock_timeout: float = Field(gt=0)
    ingest_retries: int = Field(ge=0)
    ingest_retry_delay_seconds: float = Field(ge=0)


class ChatTemplate(Strict):
    """How chat messages become one text: each role's turn, `{content}` standing for the message."""

    system: str
    user: str
    assistant: str

    @field_validator("system", "user", "assistant")
    @classmethod
    def _one_content(cls, template: str) -> str:
        if template.count("{content}") != 1:
            raise ValueError("needs {content} exactly once, where the message goes")
        return template


def template_fields(template: str) -> list[str]:
    """The column names a template uses, in order (`"{text}\\nsentiment: {sentiment}"` -> text, sentiment)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:  # an unmatched brace
        raise ValueError(f"not a valid template ({exc}); write a literal brace as {{{{ or }}}}") from None
    return [name for _, name, _, _ in parsed if name]


class GenerationParams(Strict):
    prompt_template: str
    completion_template: str
    chat_template: ChatTemplate
    prompt_loss_weight: float = Field(ge=0, le=1)
    stop: list[str]
    max_new_tokens: int = Field(gt=0)

    @field_validator("prompt_template", "completion_template")
    @classmethod
    def _has_fields(cls, template: str) -> str:
        if not template_fields(template):
            raise ValueError("names no column; write the columns in braces, e.g. {prompt}")
        return template

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, stop: list[str]) -> list[str]:
        if "" in stop:
            raise ValueError("an empty stop sequence would end every completion before it starts")
        return stop


class VllmParams(Strict):
    """`serve.engine: vllm`: how tuneops starts vLLM's OpenAI server for each served generation version
    (tuneops/inference/vllm_engine.py). vLLM's own names where it has them."""

    python: str | None  # an interpreter whose environment has vLLM; null = this one (when `vllm` imports)
    dtype: str
    max_model_len: int | None = Field(gt=0)
    kv_cache_space_gib: float = Field(gt=0)  # VLLM_CPU_KVCACHE_SPACE (the CPU build)
    tensor_parallel_size: int = Field(gt=0)
    startup_timeout_s: float = Field(gt=0)
    request_timeout_s: float = Field(gt=0)
    max_restarts: int = Field(ge=0)
    extra_args: list[str]


class ServeParams(Strict):
    """`tuneops serve`: the loaded-model cache, request batching and the limits on a request."""

    num_threads: int | None = Field(gt=0)
    engine: Literal["builtin", "vllm"]
    vllm: VllmParams
    model_cache_size: int = Field(gt=0)
    batch_window_ms: float = Field(ge=0)
    max_batch_size: int = Field(gt=0)
    max_body_bytes: int = Field(gt=0)
    max_upload_bytes: int = Field(gt=0)
    max_tokens_limit: int = Field(gt=0)
    max_queued_tokens: int = Field(gt=0)


class Params(Strict):
    task: Literal["classification", "generation"]
    data: DataParams
    validate_: ValidateParams = Field(alias="validate")
    model: ModelParams
    tokenize: TokenizeParams
    train: TrainParams
    evaluate: EvaluateParams
    register_: RegisterParams = Field(alias="register")
    flow: FlowParams
    generation: GenerationParams
    serve: ServeParams

    @model_validator(mode="after")
    def _task_metrics(self) -> Params:
        best = self.train.args.metric_for_best_model
        if self.task == "generation" and best == "macro_f1":
            raise ValueError(
                "train.args.metric_for_best_model: macro_f1 is a classification metric; for generation use loss "
                "or accuracy (token accuracy on completions)"
            )
        if self.train.objective == "dpo" and self.task != "generation":
            raise ValueError(
                f"train.objective: dpo trains a causal LM on preference pairs; it needs task: generation "
                f"(got task: {self.task})"
            )
        return self


# TrainingArguments that transformers 5 renamed: users arrive with the old names from tutorials.
RENAMED = {
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
    "warmup_ratio": "warmup_steps (a float below 1 is a share of all steps)",
    "group_by_length": "train_sampling_strategy: group_by_length",
    "evaluation_strategy": "eval_strategy",
}


def _describe(error: ErrorDetails) -> str:
    key = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        if (new := RENAMED.get(str(error["loc"][-1]))) and error["loc"][:2] == ("train", "args"):
            return f"{key}: transformers 5 renamed this key; write {new}"
        return f"{key}: unknown key (a typo? see the keys beside it in params.yaml)"
    if error["type"] == "missing":
        return f"{key}: missing"
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:  # a check across sections names its keys itself
        return message
    return f"{key}: {message} (got {error.get('input')!r})"


def parse_params(raw: dict[str, JsonValue], origin: str = str(PARAMS_PATH)) -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise UserError(f"{origin}: {problems}") from None


def load_params(path: Path = PARAMS_PATH) -> Params:
    if not path.is_file():
        raise UserError(f"{path}: not found (run from the project root, where params.yaml lives)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return parse_params(raw, str(path))
