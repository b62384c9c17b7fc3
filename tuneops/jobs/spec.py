"""A fine-tuning job as OpenAI's API asks for it and as the retrain flow runs it: the request, the
hyperparameters resolved against params.yaml, the params overrides, and the ids a job and its model get."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from tuneops.config.errors import UserError
from tuneops.config.params import Params, TrainingArgs
from tuneops.config.paths import (
    JOBS_DIR,
)

JOB_PREFIX = "ftjob-"


ORGANIZATION = "tuneops"  # the <org> part of an ft: model id


FT_MODEL_TAG = "tuneops.fine_tuned_model"  # on a registered version: the ft: id /v1/models lists it under


JOB_TAG = "tuneops:fine-tuning-job"  # on every job's flow run: how jobs are told from other retrain runs


JOB_DATA_DIR = "data/raw/job"  # in a job's workspace: train.jsonl (and test.jsonl from validation_file)


MAX_SUFFIX = 64


Auto = Literal["auto"]


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
        if value != "auto" and not 0 < value < float("inf"):
            raise ValueError("must be a number > 0 or 'auto'")
        return value


class Supervised(BaseModel):
    hyperparameters: Hyperparameters = Hyperparameters()


class Method(BaseModel):
    type: Literal["supervised"]
    supervised: Supervised = Supervised()


class JobRequest(BaseModel):
    """The body of POST /v1/fine_tuning/jobs."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    training_file: str
    validation_file: str | None = None
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    suffix: str | None = Field(default=None, max_length=MAX_SUFFIX)
    seed: int | None = Field(default=None, ge=0)
    metadata: dict[str, str] | None = None
    integrations: list[JsonValue] | None = None

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

    def requested(self) -> Hyperparameters:
        """The hyperparameters asked for, under `method.supervised` or the older top-level key."""
        under_method = self.method.supervised.hyperparameters if self.method else None
        if under_method is not None and self.hyperparameters is not None and under_method != self.hyperparameters:
            raise UserError("hyperparameters: given both at the top level and under method.supervised, differently")
        return under_method or self.hyperparameters or Hyperparameters()


class Resolved(BaseModel):
    """The hyperparameters a job trains with, "auto" replaced by params.yaml's values."""

    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float


class JobSpec(BaseModel):
    """A fine-tuning job as the flow receives it (the flow run's `job` parameter)."""

    model: str
    training_file: str
    validation_file: str | None = None
    hyperparameters: Resolved
    suffix: str | None = None
    seed: int
    metadata: dict[str, str] | None = None
    overrides: dict[str, JsonValue]


def resolve(asked: Hyperparameters, args: TrainingArgs) -> Resolved:
    return Resolved(
        n_epochs=round(args.num_train_epochs) if asked.n_epochs == "auto" else asked.n_epochs,
        batch_size=args.per_device_train_batch_size if asked.batch_size == "auto" else asked.batch_size,
        learning_rate_multiplier=1.0 if asked.learning_rate_multiplier == "auto" else asked.learning_rate_multiplier,
    )


def absolute_tracking_uri(uri: str, root: Path) -> str:
    """A relative SQLite store (params.yaml's sqlite:///mlflow.db) made absolute, so a job's workspace registers
    into the project's registry, not one of its own."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str((root / uri.removeprefix(prefix)).resolve())
    return uri


def job_overrides(request: JobRequest, params: Params, tracking: str) -> dict[str, JsonValue]:
    """The params.yaml keys a job changes (dotted), from its request: flow parameters of its run. The flow adds
    `register.alias` (job_alias: the job's own, so a job never moves the champion nor is judged against it)."""
    args = params.train.args
    asked = request.requested()
    hp = resolve(asked, args)
    seed = request.seed if request.seed is not None else args.seed
    out: dict[str, JsonValue] = {
        "data.source": JOB_DATA_DIR,
        "data.seed": seed,
        "train.args.seed": seed,
        "train.args.learning_rate": args.learning_rate * hp.learning_rate_multiplier,
        "train.args.num_train_epochs": float(hp.n_epochs),
        "train.args.per_device_train_batch_size": hp.batch_size,
        "register.tracking_uri": tracking,
        "flow.review_data": "never",  # nobody is there to answer a review pause: error checks still stop it
    }
    if asked.n_epochs != "auto":
        out["train.args.max_steps"] = -1  # an explicit epoch count wins over a step cap in params.yaml
    if request.model not in (params.model.name, base_model_name(params.model.name)):  # "gpt2" for ../models/gpt2
        out["model.name"] = request.model
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


def job_workspace(root: Path, job: str) -> Path:
    return root / JOBS_DIR / job


def base_model_name(model: str) -> str:
    """A local model directory is named by its folder; a Hub id as it is."""
    return Path(model).name if model.startswith(("/", ".", "~")) else model


def fine_tuned_model(model: str, suffix: str | None, version: str) -> str:
    return f"ft:{base_model_name(model)}:{ORGANIZATION}:{suffix or ''}:{version}"


def stable_id(prefix: str, *parts: str) -> str:
    return prefix + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]
