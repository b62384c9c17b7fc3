"""The MLflow Model Registry: the champion lookup, logging and registering a candidate, loading a version.

MLflow runs on a SQLite file by default (register.tracking_uri); MLFLOW_TRACKING_URI points at a shared
server instead. Aliases say what is served: `champion` moves only through `register`, after a passed gate.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import JsonValue

from tuneops.config.errors import TransientError, UserError
from tuneops.config.params import ChatTemplate, GenerationParams, RegisterParams, tracking_uri
from tuneops.config.records import Champion, GenerationMetrics, Metrics, Registration
from tuneops.io.files import read_json, sha256_file
from tuneops.io.integrity import outs_by_stage, read_lock
from tuneops.models.loading import is_generator, load_trained

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models.model import ModelInfo
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def no_such_model_or_alias(error_code: str, message: str) -> bool:
    """Did the registry answer that the model or its alias does not exist (as opposed to failing to answer)?"""
    alias_missing = error_code == "INVALID_PARAMETER_VALUE" and "alias" in message and "not found" in message
    return error_code == "RESOURCE_DOES_NOT_EXIST" or alias_missing


def alias_version(register: RegisterParams, client: MlflowClient) -> ModelVersion | None:
    """The model version the alias points at, or None when the registry answers that there is none.

    A registry that does not answer raises TransientError (exit 75): guessing "none" would promote any model.
    """
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(register.model_name, register.alias)
    except MlflowException as exc:
        if no_such_model_or_alias(exc.error_code, exc.message):
            return None
        first = " ".join(exc.message.split())[:200]
        raise TransientError(
            f"registry {tracking_uri(register)}: no answer about the {register.alias} ({first})"
        ) from None


def champion(register: RegisterParams, registered_before: Registration | None = None) -> Champion | None:
    """The version the alias points at and its run's metrics, or None before the first registration.

    Only a registry that answers "no such model or alias" means there is no champion. A registry that does
    not answer stops the caller as transient (exit 75): guessing "no champion" would promote any model.
    `registered_before` is this workspace's models/registered.json: a registry that has never heard of the
    version it records was lost or replaced (a deleted mlflow.db, another server), which waives nothing either.
    """
    from mlflow import MlflowClient

    uri = tracking_uri(register)
    client = MlflowClient(uri)
    version = alias_version(register, client)
    if version is None:
        if registered_before is not None:
            raise UserError(
                f"registry {uri} has no {register.model_name} {register.alias}, but models/registered.json records "
                f"version {registered_before.version} registered from here: the registry was lost or replaced. "
                "Point register.tracking_uri (or MLFLOW_TRACKING_URI) at it, or delete models/registered.json to "
                "start afresh"
            )
        return None
    metrics = client.get_run(version.run_id).data.metrics
    return Champion(
        name=register.model_name,
        version=str(version.version),
        alias=register.alias,
        run_id=version.run_id,
        metrics=metrics,
    )


def registered_before(path: Path) -> Registration | None:
    """This workspace's last registration (models/registered.json), if it made one."""
    return read_json(path, Registration) if path.is_file() else None


def model_uri(register: RegisterParams, version: int | None = None) -> str:
    name = register.model_name
    return f"models:/{name}/{version}" if version is not None else f"models:/{name}@{register.alias}"


def load_registered(
    register: RegisterParams, version: int | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model and tokenizer of a registered version (the champion by default), ready to predict.

    The artifact's files are fetched and loaded by tuneops (load_trained: transformers' own classes, no code
    from the artifact), not by mlflow.transformers.load_model, which trusts remote code when the model was
    logged with it: what the registry holds decides nothing about what runs here.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri(register))
    uri = model_uri(register, version)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except MlflowException as exc:
        raise UserError(f"{uri}: {exc.message.splitlines()[0]} (run `dvc repro` to register a model)") from None
    flavor = (yaml.safe_load((local / "MLmodel").read_text()) or {}).get("flavors", {}).get("transformers", {})
    model_dir = local / flavor.get("model_binary", "model")
    tokenizer_dir = local / "components" / "tokenizer"
    return load_trained(model_dir, tokenizer_dir if tokenizer_dir.is_dir() else model_dir)


def pip_requirements() -> list[str]:
    """Pinned explicitly: MLflow's inference of them imports torchvision, which a CPU install lacks."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("torch", "transformers", "tokenizers", "safetensors", "numpy")]


def flat(prefix: str, value: JsonValue) -> dict[str, JsonValue]:
    """Nested dicts as dotted keys, the way MLflow params and metrics want them."""
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in flat(f"{prefix}.{key}" if prefix else key, sub).items()}
    return {prefix: value}


def metric_numbers(metrics: Metrics | GenerationMetrics) -> dict[str, float]:
    """Every number of the test/train/gap scores, the baselines and the base model's but the confusion matrix,
    under MLflow's names (`test_accuracy`, `test_per_class_positive_f1`, `base_accuracy`, ...): the registration
    record, the run and the champion lookup share them."""
    return {
        k.replace(".", "_"): float(v)
        for k, v in flat("", metrics.model_dump(mode="json")).items()
        if isinstance(v, (int, float)) and "confusion" not in k
    }


def lineage_tags(commit: str, dirty: bool, manifest_sha: str | None, lock: dict[str, JsonValue]) -> dict[str, str]:
    """Enough to find the exact data and model again: `git checkout <commit> && dvc pull`."""
    tags = {"git_commit": commit, "git_dirty": str(dirty)}
    if manifest_sha is not None:
        tags["data_manifest_sha256"] = manifest_sha
    for stage, outs in outs_by_stage(lock).items():
        tags[f"dvc.{stage}.outs"] = json.dumps(outs, sort_keys=True)
    return tags


def workspace_lineage(manifest_path: Path, lock_path: Path) -> dict[str, str]:
    """lineage_tags of this workspace: its git commit, data manifest and dvc.lock."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else "unknown"

    manifest_sha = sha256_file(manifest_path) if manifest_path.is_file() else None
    commit, dirty = git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "-uno"))
    return lineage_tags(commit, dirty, manifest_sha, read_lock(lock_path))


def log_model(model_dir: Path, name: str) -> ModelInfo:
    """Log the candidate as an MLflow transformers model (text-classification or text-generation) and register it
    as a new version of `name`."""
    import mlflow

    model, tokenizer = load_trained(str(model_dir))
    return mlflow.transformers.log_model(
        transformers_model={"model": model, "tokenizer": tokenizer},
        name="model",
        task="text-generation" if is_generator(model) else "text-classification",
        registered_model_name=name,
        pip_requirements=pip_requirements(),
        save_pretrained=True,
    )


# Version tags a server reads to ask a generation model the way it was taught.
TASK_TAG, STOP_TAG, MAX_NEW_TOKENS_TAG, CHAT_TEMPLATE_TAG = (
    "tuneops.task",
    "tuneops.stop",
    "tuneops.max_new_tokens",
    "tuneops.chat_template",
)


def generation_tags(generation: GenerationParams) -> dict[str, str]:
    return {
        TASK_TAG: "generation",
        STOP_TAG: json.dumps(generation.stop),
        MAX_NEW_TOKENS_TAG: str(generation.max_new_tokens),
        CHAT_TEMPLATE_TAG: generation.chat_template.model_dump_json(),
    }


def version_tags(register: RegisterParams, version: int | None = None) -> dict[str, str]:
    """The tags of a registered version (the alias's by default): a generation model's settings live there."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri(register))
    found = client.get_model_version(register.model_name, str(version)) if version else alias_version(register, client)
    return dict(found.tags) if found is not None else {}


def tagged_generation(tags: dict[str, str]) -> tuple[list[str], int, ChatTemplate | None] | None:
    """(stop sequences, max_new_tokens, chat template) from a version's tags; None when it has none (registered
    before tuneops tagged versions: the caller falls back to params.yaml)."""
    if STOP_TAG not in tags:
        return None
    chat = tags.get(CHAT_TEMPLATE_TAG)
    chat_template = ChatTemplate.model_validate_json(chat) if chat else None
    return list(json.loads(tags[STOP_TAG])), int(tags[MAX_NEW_TOKENS_TAG]), chat_template


def registered_generation(register: RegisterParams, version: int | None = None) -> tuple[list[str], int] | None:
    """(stop sequences, max_new_tokens) a registered generation model was evaluated with, or None."""
    found = tagged_generation(version_tags(register, version))
    return found[:2] if found is not None else None


def tag_generation(register: RegisterParams, version: str, generation: GenerationParams) -> None:
    """The generation settings the version was trained and evaluated with, as tags of that version."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri(register))
    for key, value in generation_tags(generation).items():
        client.set_model_version_tag(register.model_name, version, key, value)


def set_alias(register: RegisterParams, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri(register)).set_registered_model_alias(register.model_name, register.alias, version)
