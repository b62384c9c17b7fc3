"""The MLflow Model Registry: the champion lookup, logging and registering a candidate, loading a version.

MLflow runs on a SQLite file by default (register.tracking_uri); MLFLOW_TRACKING_URI points at a shared
server instead. Aliases say what is served: `champion` moves only through `register`, after a passed gate.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tuneops.errors import UserError
from tuneops.files import sha256_file
from tuneops.modeling import for_inference, load_trained
from tuneops.params import RegisterParams, tracking_uri
from tuneops.records import Champion, Metrics


def champion(register: RegisterParams) -> Champion | None:
    """The version the alias points at and its run's metrics, or None before the first registration."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri(register))
    try:
        version = client.get_model_version_by_alias(register.model_name, register.alias)
    except MlflowException:
        return None
    metrics = client.get_run(version.run_id).data.metrics
    return Champion(
        name=register.model_name,
        version=str(version.version),
        alias=register.alias,
        run_id=version.run_id,
        metrics=metrics,
    )


def model_uri(register: RegisterParams, version: int | None = None) -> str:
    name = register.model_name
    return f"models:/{name}/{version}" if version is not None else f"models:/{name}@{register.alias}"


def load_registered(register: RegisterParams, version: int | None = None) -> tuple[Any, Any]:
    """Model and tokenizer of a registered version (the champion by default), ready to predict."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri(register))
    uri = model_uri(register, version)
    try:
        parts = mlflow.transformers.load_model(uri, return_type="components")
    except MlflowException as exc:
        raise UserError(f"{uri}: {exc.message.splitlines()[0]} (run `dvc repro` to register a model)") from None
    return for_inference(parts["model"], parts["tokenizer"]), parts["tokenizer"]


def pip_requirements() -> list[str]:
    """Pinned explicitly: MLflow's inference of them imports torchvision, which a CPU install lacks."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("torch", "transformers", "tokenizers", "safetensors", "numpy")]


def flat(prefix: str, value: Any) -> dict[str, Any]:
    """Nested dicts as dotted keys, the way MLflow params and metrics want them."""
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in flat(f"{prefix}.{key}" if prefix else key, sub).items()}
    return {prefix: value}


def metric_numbers(metrics: Metrics) -> dict[str, float]:
    """Every number of the test/train/gap scores but the confusion matrix, under MLflow's names (`test_accuracy`,
    `test_per_class_positive_f1`, ...): the registration record, the run and the champion lookup share them."""
    return {
        k.replace(".", "_"): float(v)
        for k, v in flat("", metrics.model_dump(mode="json")).items()
        if isinstance(v, (int, float)) and "confusion" not in k
    }


def lineage_tags(commit: str, dirty: bool, manifest_sha: str | None, lock: dict[str, Any]) -> dict[str, str]:
    """Enough to find the exact data and model again: `git checkout <commit> && dvc pull`."""
    tags = {"git_commit": commit, "git_dirty": str(dirty)}
    if manifest_sha is not None:
        tags["data_manifest_sha256"] = manifest_sha
    for stage, entry in (lock.get("stages") or {}).items():
        outs = {o["path"]: o.get("md5") for o in entry.get("outs", [])}
        tags[f"dvc.{stage}.outs"] = json.dumps(outs, sort_keys=True)
    return tags


def workspace_lineage(manifest_path: Path, lock_path: Path) -> dict[str, str]:
    """lineage_tags of this workspace: its git commit, data manifest and dvc.lock."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else "unknown"

    manifest_sha = sha256_file(manifest_path) if manifest_path.is_file() else None
    lock = (yaml.safe_load(lock_path.read_text()) or {}) if lock_path.is_file() else {}
    return lineage_tags(git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "-uno")), manifest_sha, lock)


def log_model(model_dir: Path, name: str) -> Any:
    """Log the candidate as an MLflow transformers model and register it as a new version of `name`."""
    import mlflow

    model, tokenizer = load_trained(str(model_dir))
    return mlflow.transformers.log_model(
        transformers_model={"model": model, "tokenizer": tokenizer},
        name="model",
        task="text-classification",
        registered_model_name=name,
        pip_requirements=pip_requirements(),
        save_pretrained=True,
    )


def set_alias(register: RegisterParams, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri(register)).set_registered_model_alias(register.model_name, register.alias, version)
