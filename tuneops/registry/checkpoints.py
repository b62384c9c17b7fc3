"""A fine-tuning job's checkpoints as models: their ids, where they lie, and loading one ready to serve or export.

A job (flows/job.py) trains in its workspace `<project root>/jobs/<job id>/`; the Trainer saves each epoch to
`models/checkpoints/checkpoint-<step>/` there (the whole model's model.safetensors, or for train.method lora
adapter_model.safetensors + adapter_config.json; the tokenizer too, the Trainer being given it as processing_class)
and `GET /v1/fine_tuning/jobs/{id}/checkpoints` lists each under its OpenAI id

    ft:<base>:tuneops:<suffix>:<job id>:ckpt-step-<step>

which is the job's own `ft:` id (tuneops.jobs.spec.fine_tuned_model) with the job id in the version's place.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import ValidationError

from tuneops.config.errors import UserError
from tuneops.config.params import GenerationParams, ModelParams
from tuneops.config.paths import CANDIDATE_DIR, CHECKPOINT_DIR, PARAMS_PATH, job_workspace
from tuneops.models.loading import (
    for_inference,
    load_causal_lm,
    load_classifier,
    load_tokenizer,
    load_trained,
    refuse_code,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# a job id is a path component here: letters, digits, '-' and '_' only, so no id reaches outside jobs/
CHECKPOINT_ID = re.compile(r"(?P<model>ft:.+):(?P<job>[A-Za-z0-9_-]+):ckpt-step-(?P<step>[0-9]+)")
ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class CheckpointRef:
    """A parsed checkpoint id: the job's `ft:` id without its version (`model`), the job and the step."""

    model: str
    job: str
    step: int

    @property
    def label(self) -> str:
        """What names the checkpoint where a registered version has its number (X-Model-Version)."""
        return f"{self.job}:ckpt-step-{self.step}"


def parse_checkpoint_id(model_id: str) -> CheckpointRef | None:
    """The checkpoint `model_id` names, or None when it is no checkpoint id."""
    found = CHECKPOINT_ID.fullmatch(model_id)
    if found is None:
        return None
    return CheckpointRef(found["model"], found["job"], int(found["step"]))


def fine_tuned_prefix(fine_tuned: str) -> str:
    """A registered version's ft: id without its version: what its job's checkpoint ids start with."""
    return fine_tuned.rpartition(":")[0]


def checkpoint_id(fine_tuned: str, job: str, step: int) -> str:
    """The id of a checkpoint of the job that registered the version whose ft: id is `fine_tuned`."""
    return f"{fine_tuned_prefix(fine_tuned)}:{job}:ckpt-step-{step}"


def checkpoint_path(root: Path, job: str, step: int) -> Path:
    return job_workspace(root, job) / CHECKPOINT_DIR / f"checkpoint-{step}"


def servable_steps(workspace: Path) -> dict[int, int]:
    """The steps of the workspace's complete checkpoints (a half-saved one is not a model), newest first, each
    with when it was saved (Unix seconds)."""
    saved = {}
    for path in (workspace / CHECKPOINT_DIR).glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        try:
            if step.isdigit() and is_servable(path):
                saved[int(step)] = int(path.stat().st_mtime)
        except OSError:  # removed while we looked (a fresh start empties the folder)
            continue
    return dict(sorted(saved.items(), reverse=True))


def is_servable(path: Path) -> bool:
    """A whole checkpoint, as training's resume judges one (checkpoint_problem)."""
    from tuneops.training.checkpoints import checkpoint_problem  # start-up: imports the Trainer

    return path.is_dir() and checkpoint_problem(path) is None


def has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer_config.json").is_file()


def tokenizer_dir(checkpoint: Path, candidate: Path) -> Path:
    """The job's candidate's tokenizer (saved with the model_max_length predict truncates to and the chat template
    the registered version has), or the checkpoint's own where there is no candidate's."""
    if has_tokenizer(candidate):
        return candidate
    if has_tokenizer(checkpoint):
        return checkpoint
    raise UserError(f"{checkpoint}: no tokenizer saved with it nor in the job's {CANDIDATE_DIR}")


@dataclass(frozen=True)
class JobParams:
    """What a job's workspace params.yaml says about its model: the base it trained from, how it generates."""

    model: ModelParams
    generation: GenerationParams


def job_params(workspace: Path) -> JobParams:
    """The `model` and `generation` sections of the workspace's params.yaml (only those: a workspace written by an
    older tuneops may lack sections added since)."""
    path = workspace / PARAMS_PATH
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return JobParams(ModelParams.model_validate(raw["model"]), GenerationParams.model_validate(raw["generation"]))
    except (OSError, yaml.YAMLError, TypeError, KeyError, ValidationError) as exc:
        raise UserError(f"{path}: no readable model and generation sections ({type(exc).__name__})") from None


def base_model(model: ModelParams, workspace: Path) -> str:
    """model.name as the job's training read it: a relative folder or file is relative to its workspace."""
    name = model.name
    if name.startswith("~"):
        return str(Path(name).expanduser())
    if name.startswith("."):
        return str((workspace / name).resolve())
    return name


def load_checkpoint(path: Path, workspace: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A checkpoint's model (a LoRA checkpoint's adapters merged into the job's base) and tokenizer, ready to
    predict (tuneops.models.loading: transformers' own classes, no code from the folder)."""
    tokenizer_from = tokenizer_dir(path, workspace / CANDIDATE_DIR)
    if not (path / ADAPTER_CONFIG).is_file():
        return load_trained(path, tokenizer_from)
    refuse_code(path, tokenizer_from)
    tokenizer = load_tokenizer(str(tokenizer_from))
    return for_inference(merged_lora(path, workspace, tokenizer), tokenizer), tokenizer


def merged_lora(path: Path, workspace: Path, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """The job's base model with the checkpoint's adapters folded in, as save_candidate folds them: the base from
    the workspace's params.yaml (a .gguf base is dequantised as training did; adapter_config.json names only the
    folder it was loaded from)."""
    from peft import PeftModel  # start-up: only a LoRA checkpoint needs PEFT

    model = job_params(workspace).model
    name = base_model(model, workspace)
    task = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("task_type")
    if task == "SEQ_CLS":  # a classifier's label names: the candidate's config has them
        config = json.loads((workspace / CANDIDATE_DIR / "config.json").read_text(encoding="utf-8"))
        labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
        base = load_classifier(name, labels, tokenizer, model.revision)
    else:
        base = load_causal_lm(name, tokenizer, model.revision)
    return PeftModel.from_pretrained(base, str(path)).merge_and_unload()
