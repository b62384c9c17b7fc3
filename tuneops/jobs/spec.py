"""A fine-tuning job as OpenAI's API asks for it and as the retrain flow runs it: the request, the
hyperparameters resolved against params.yaml, the params overrides, and the ids a job and its model get."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from tuneops.config.errors import UserError
from tuneops.config.params import Params, TrainParams

JOB_PREFIX = "ftjob-"


ORGANIZATION = "tuneops"  # the <org> part of an ft: model id


FT_MODEL_TAG = "tuneops.fine_tuned_model"  # on a registered version: the ft: id /v1/models lists it under


JOB_TAG = "tuneops:fine-tuning-job"  # on every job's flow run: how jobs are told from other retrain runs


JOB_DATA_DIR = "data/raw/job"  # in a job's workspace: train.jsonl (validation.jsonl and test.jsonl: validation_file)


MAX_SUFFIX = 64


KEPT_CHECKPOINTS = 3


Auto = Literal["auto"]


def positive_or_auto(value: Auto | float) -> Auto | float:
    if value != "auto" and not 0 < value < float("inf"):
        raise ValueError("must be a number > 0 or 'auto'")
    return value


class Hyperparameters(BaseModel):
    """OpenAI's supervised hyperparameters: each a number or "auto" (params.yaml's value)."""

    model_config = ConfigDict(extra="forbid")

    n_epochs: Auto | int = Field(default="auto")
    batch_size: Auto | int = Field(default="auto")
    learning_rate_multiplier: Auto | float = Field(default="auto")

    @field_validator("n_epochs", "batch_size")
    @classmethod
    def _positive_int(cls, value: Auto | int) -> Auto | int:
        if value != "auto" and value <= 0:
            raise ValueError("must be a whole number > 0 or 'auto'")
        return value

    @field_validator("learning_rate_multiplier")
    @classmethod
    def _positive(cls, value: Auto | float) -> Auto | float:
        return positive_or_auto(value)


class DpoHyperparameters(Hyperparameters):
    """OpenAI's DPO hyperparameters: the supervised ones and `beta` (TRL's DPOConfig.beta; "auto" = params.yaml's)."""

    beta: Auto | float = Field(default="auto")

    @field_validator("beta")
    @classmethod
    def _positive_beta(cls, value: Auto | float) -> Auto | float:
        return positive_or_auto(value)


class Supervised(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hyperparameters: Hyperparameters = Hyperparameters()


class Dpo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hyperparameters: DpoHyperparameters = DpoHyperparameters()


MethodType = Literal["supervised", "dpo"]


class Method(BaseModel):
    """OpenAI's `method`: supervised or dpo (TRL's DPOTrainer). `reinforcement` is OpenAI's too; it is refused with
    a message, not as an unknown value."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: Supervised | None = None
    dpo: Dpo | None = None
    reinforcement: dict[str, JsonValue] | None = None


MAX_SEED = 2**31 - 1  # numpy's and the Trainer's seeds take 32 bits; OpenAI draws its own in this range


class JobRequest(BaseModel):
    """The body of POST /v1/fine_tuning/jobs. `max_train_samples` is tuneops' own (OpenAI's client sends it with
    `extra_body`): train on a seeded subset of that many rows; by default every row of the training file trains."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    training_file: str
    validation_file: str | None = None
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    suffix: str | None = Field(default=None, max_length=MAX_SUFFIX)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    metadata: dict[str, str] | None = None
    integrations: list[JsonValue] | None = None
    max_train_samples: int | None = Field(default=None, gt=0)

    @field_validator("suffix")
    @classmethod
    def _no_colon(cls, value: str | None) -> str | None:
        if value is not None and ":" in value:
            raise ValueError("no ':' in a suffix (it separates the parts of the fine-tuned model id)")
        return value

    @field_validator("metadata")
    @classmethod
    def _openai_metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and (len(value) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in value.items())):
            raise ValueError("at most 16 keys of up to 64 characters, values up to 512")
        return value

    def method_type(self) -> MethodType:
        """supervised (the default) or dpo; UserError for what tuneops does not offer or a method at odds with
        itself."""
        if self.method is None:
            return "supervised"
        if self.method.type == "reinforcement":
            raise UserError(
                "method.type 'reinforcement' is not offered here (it needs graders run during training): "
                "use 'supervised' or 'dpo'"
            )
        other = "dpo" if self.method.type == "supervised" else "supervised"
        if getattr(self.method, other) is not None:
            raise UserError(f"method.{other}: given with method.type {self.method.type!r}")
        return self.method.type

    def requested(self) -> Hyperparameters | DpoHyperparameters:
        """The hyperparameters asked for, under `method.<type>` or the older top-level key."""
        kind = self.method_type()
        section = getattr(self.method, kind) if self.method else None
        under_method = section.hyperparameters if section is not None else None
        if under_method is not None and self.hyperparameters is not None:
            top = self.hyperparameters.model_dump()
            if {k: v for k, v in under_method.model_dump().items() if k in top} != top:
                raise UserError(f"hyperparameters: given both at the top level and under method.{kind}, differently")
        if under_method is not None:
            return under_method
        if kind == "dpo":
            return DpoHyperparameters(**(self.hyperparameters.model_dump() if self.hyperparameters else {}))
        return self.hyperparameters or Hyperparameters()


class Resolved(BaseModel):
    """The hyperparameters a job trains with, "auto" replaced by params.yaml's values (beta: DPO only)."""

    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    beta: float | None = None


class JobSpec(BaseModel):
    """A fine-tuning job as the flow receives it (the flow run's `job` parameter)."""

    model: str
    training_file: str
    validation_file: str | None = None
    hyperparameters: Resolved
    method: MethodType = "supervised"
    suffix: str | None = None
    seed: int
    metadata: dict[str, str] | None = None
    overrides: dict[str, JsonValue]


def resolve(asked: Hyperparameters, train: TrainParams) -> Resolved:
    args = train.args
    beta = getattr(asked, "beta", None)
    return Resolved(
        n_epochs=round(args.num_train_epochs) if asked.n_epochs == "auto" else asked.n_epochs,
        batch_size=args.per_device_train_batch_size if asked.batch_size == "auto" else asked.batch_size,
        learning_rate_multiplier=1.0 if asked.learning_rate_multiplier == "auto" else asked.learning_rate_multiplier,
        beta=None if beta is None else (train.dpo.beta if beta == "auto" else beta),
    )


def draw_seed() -> int:
    """A seed for a job that asked for none (OpenAI picks one and reports it): reported on the job, so the run can
    be repeated."""
    return secrets.randbelow(MAX_SEED + 1)


def absolute_tracking_uri(uri: str, root: Path) -> str:
    """A relative SQLite store (params.yaml's sqlite:///mlflow.db) made absolute, so a job's workspace registers
    into the project's registry, not one of its own."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str((root / uri.removeprefix(prefix)).resolve())
    return uri


def job_overrides(request: JobRequest, params: Params, tracking: str, seed: int) -> dict[str, JsonValue]:
    """The params.yaml keys a job changes (dotted), from its request: flow parameters of its run. The flow adds
    `register.alias` (job_alias: the job's own, so a job never moves the champion nor is judged against it), and
    `model.name` for a job that continues an `ft:` model (the weights exported where the worker runs)."""
    args = params.train.args
    asked = request.requested()
    hp = resolve(asked, params.train)
    out: dict[str, JsonValue] = {
        "task": "generation",  # OpenAI's fine-tuning files (prompt/completion, chat, preference) all teach text
        "data.source": JOB_DATA_DIR,
        # OpenAI trains on the whole training file: no cap unless the request asks for one (tuneops' own field)
        "data.max_train_samples": request.max_train_samples,
        "data.max_eval_samples": None,
        "data.seed": seed,
        "train.args.seed": seed,
        "train.args.learning_rate": args.learning_rate * hp.learning_rate_multiplier,
        "train.args.num_train_epochs": float(hp.n_epochs),
        "train.args.per_device_train_batch_size": hp.batch_size,
        "register.tracking_uri": tracking,
        "flow.review_data": "never",  # nobody is there to answer a review pause: error checks still stop it
        # OpenAI keeps a job's last three epoch checkpoints, each servable as a model
        "train.args.save_total_limit": KEPT_CHECKPOINTS,
    }
    if hp.beta is not None:
        out["train.objective"] = "dpo"
        out["train.dpo.beta"] = hp.beta
    if asked.n_epochs != "auto":
        out["train.args.max_steps"] = -1  # an explicit epoch count wins over a step cap in params.yaml
    continued = request.model.startswith("ft:")
    if not continued and request.model not in (params.model.name, base_model_name(params.model.name)):
        out["model.name"] = request.model  # "gpt2" for ../models/gpt2 is params.yaml's own
    return out


def apply_overrides(raw: dict[str, JsonValue], overrides: dict[str, JsonValue]) -> dict[str, JsonValue]:
    """params.yaml's mapping with dotted keys replaced; a key params.yaml does not have is a UserError."""
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = raw
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise UserError(f"override {dotted}: params.yaml has no section {part!r}")
            node = node[part]
        if leaf not in node:
            raise UserError(f"override {dotted}: params.yaml has no key {leaf!r}")
        node[leaf] = value
    return raw


def job_id(flow_run_id: uuid.UUID | str) -> str:
    return JOB_PREFIX + uuid.UUID(str(flow_run_id)).hex


def flow_run_id(job: str) -> uuid.UUID | None:
    """The flow run a job id names, or None when it is not a job id."""
    if not job.startswith(JOB_PREFIX):
        return None
    try:
        return uuid.UUID(hex=job.removeprefix(JOB_PREFIX))
    except ValueError:
        return None


def job_alias(job: str) -> str:
    """The MLflow alias a job's registered version gets (aliases take letters, digits, '_' and '-')."""
    return job


def base_model_name(model: str) -> str:
    """A local model directory is named by its folder; a Hub id as it is; an `ft:` model by its base (OpenAI names
    a fine-tune of a fine-tune after the base model)."""
    if model.startswith("ft:"):
        return model.split(":")[1]
    return Path(model).name if model.startswith(("/", ".", "~")) else model


def fine_tuned_model(model: str, suffix: str | None, version: str) -> str:
    return f"ft:{base_model_name(model)}:{ORGANIZATION}:{suffix or ''}:{version}"


def stable_id(prefix: str, *parts: str) -> str:
    return prefix + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]
