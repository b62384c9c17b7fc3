"""Stage `register`: a candidate that passed the gate becomes a registered version and the champion.

    python -m tasks.register          (dvc.yaml runs it; reads register, and every param to log)

Gate failed: exits non-zero listing the failed checks; nothing is registered and the champion stays.
Gate passed: logs the model (transformers flavour, safetensors), params, metrics, gate.json, the data manifest
hash, the dvc.lock hashes and the git commit to MLflow, registers a new version of `register.model_name` and
moves the alias (`champion`) to it. Writes models/registered.json.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tasks.common import UserError, read_json, run_main, sha256_file, stage_parser, write_json
from tasks.config import Params, RegisterParams, load_params

log = logging.getLogger("tuneops.register")


def tracking_uri(register: RegisterParams) -> str:
    """A shared server's MLFLOW_TRACKING_URI wins over the local SQLite default in params.yaml."""
    return os.environ.get("MLFLOW_TRACKING_URI") or register.tracking_uri


def champion(register: RegisterParams) -> tuple[Any, dict[str, float]] | None:
    """The model version the alias points at and its run's metrics, or None before the first registration."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri(register))
    try:
        version = client.get_model_version_by_alias(register.model_name, register.alias)
    except MlflowException:
        return None
    return version, client.get_run(version.run_id).data.metrics


def pip_requirements() -> list[str]:
    """Pinned explicitly: MLflow's inference of them imports torchvision, which a CPU install lacks."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("torch", "transformers", "tokenizers", "safetensors", "numpy")]


def flat(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in flat(f"{prefix}.{key}" if prefix else key, sub).items()}
    return {prefix: value}


def lineage_tags(manifest_path: Path, lock_path: Path) -> dict[str, str]:
    """Enough to find the exact data and checkpoint again: `git checkout <commit> && dvc pull`."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else "unknown"

    tags = {"git_commit": git("rev-parse", "HEAD"), "git_dirty": str(bool(git("status", "--porcelain", "-uno")))}
    if manifest_path.is_file():
        tags["data_manifest_sha256"] = sha256_file(manifest_path)
    if lock_path.is_file():
        lock = yaml.safe_load(lock_path.read_text()) or {}
        for stage, entry in (lock.get("stages") or {}).items():
            outs = {o["path"]: o.get("md5") for o in entry.get("outs", [])}
            tags[f"dvc.{stage}.outs"] = json.dumps(outs, sort_keys=True)
    return tags


def refuse(gate: dict[str, Any], gate_path: Path) -> None:
    failed = [c for c in gate["checks"] if not c["passed"]]
    listed = "; ".join(f"{c['check']}: observed {c['observed']}, threshold {c['threshold']}" for c in failed)
    raise UserError(f"gate failed ({gate_path}), nothing registered, champion unchanged: {listed}")


def register(params: Params, model_dir: Path, reports_dir: Path, out_path: Path, manifest_path: Path,
             lock_path: Path) -> dict[str, Any]:  # fmt: skip
    import mlflow

    gate_path = reports_dir / "gate.json"
    gate, metrics = read_json(gate_path), read_json(reports_dir / "metrics.json")
    if gate["verdict"] != "passed":
        refuse(gate, gate_path)
    reg = params.register_
    mlflow.set_tracking_uri(tracking_uri(reg))
    mlflow.set_experiment(reg.experiment_name)
    scored = {"test": metrics["test"], "train": metrics["train"], "gap": metrics["gap"]}
    numbers = {k: v for k, v in flat("", scored).items() if isinstance(v, (int, float)) and "confusion" not in k}
    with mlflow.start_run(run_name=f"register-{reg.model_name}") as run:
        mlflow.log_params(flat("", params.model_dump(mode="json", include={"data", "model", "tokenize", "train"})))
        mlflow.log_metrics({k.replace(".", "_"): float(v) for k, v in numbers.items()})
        mlflow.log_artifact(str(gate_path))
        mlflow.set_tags(lineage_tags(manifest_path, lock_path))
        info = log_model(model_dir, reg.model_name)
    version = str(info.registered_model_version)
    mlflow.MlflowClient().set_registered_model_alias(reg.model_name, reg.alias, version)
    record = {"name": reg.model_name, "version": version, "alias": reg.alias, "run_id": run.info.run_id,
              "model_uri": f"models:/{reg.model_name}@{reg.alias}", "metrics": numbers}  # fmt: skip
    write_json(out_path, record)
    log.info("registered %s version %s and moved %r to it", reg.model_name, version, reg.alias)
    return record


def log_model(model_dir: Path, name: str) -> Any:
    import mlflow

    from tasks.modeling import load_trained

    model, tokenizer = load_trained(str(model_dir))
    return mlflow.transformers.log_model(
        transformers_model={"model": model, "tokenizer": tokenizer},
        name="model",
        task="text-classification",
        registered_model_name=name,
        pip_requirements=pip_requirements(),
        save_pretrained=True,
    )


def main() -> None:
    args = stage_parser(__doc__).parse_args()
    register(load_params(args.params), Path("models/candidate"), Path("reports"), Path("models/registered.json"),
             Path("data/interim/manifest.json"), Path("dvc.lock"))  # fmt: skip


if __name__ == "__main__":
    run_main(main)
