"""A fine-tuning job inside the retrain flow: its files checked, its own workspace, its result file and model id.

The retrain flow runs a job when it is given one (`job`, a flow parameter the API sets): it checks the job's
files (task `validate-files`: the job's status is `validating_files` meanwhile), makes jobs/<job id>/ the way
`tuneops demo` makes its workspace (a copy of the pipeline, params.yaml with the job's overrides, the job's files
as data/raw/job/, its own DVC repository pushing to the project's remote), runs the pipeline there, and after a
registration tags the version with its `ft:` id and stores the result CSV as a `fine-tune-results` file.
The user's checkout is never touched; the MLflow registry is the project's own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Failed

from tuneops.config.errors import UserError
from tuneops.config.params import load_params, parse_params, tracking_uri
from tuneops.config.paths import DVC_YAML_PATH, PARAMS_PATH, REGISTERED_PATH, job_workspace
from tuneops.config.records import Registration
from tuneops.io.files import read_json, write_text
from tuneops.jobs.file_store import FileStore
from tuneops.jobs.orchestration import restarts
from tuneops.jobs.results import RESULTS_CSV, final_log_history, results_csv
from tuneops.jobs.spec import (
    FT_MODEL_TAG,
    JOB_DATA_DIR,
    JobSpec,
    apply_overrides,
    fine_tuned_model,
    job_alias,
    job_id,
)
from tuneops.jobs.states import FILE_CHECK_TASK, restart_refusal

PIPELINE = (DVC_YAML_PATH, Path("tasks"), Path("tuneops"))  # params.yaml is written, not copied


def file_problem(store: FileStore, param: str, id_: str) -> str | None:
    """Why this job file cannot be trained on, or None."""
    found = store.get(id_)
    if found is None:
        return f"{param} {id_}: no such file (upload it with POST /v1/files)"
    if found.purpose != "fine-tune":
        return f"{param} {id_}: purpose is {found.purpose!r}, not 'fine-tune'"
    if found.status == "error":
        return f"{param} {id_} ({found.filename}): {found.status_details}"
    if not store.content_path(id_).is_file():
        return (
            f"{param} {id_}: its content is not on this machine ({store.content_path(id_)}); data/files is "
            "DVC-tracked: `dvc pull data/files.dvc` here, or share the folder with the API server"
        )
    return None


@task(name=FILE_CHECK_TASK, task_run_name=FILE_CHECK_TASK, cache_policy=NO_CACHE, persist_result=False)
def check_files(spec: JobSpec, root: str) -> None:
    store = FileStore(Path(root), track=False)
    named = [("training_file", spec.training_file), ("validation_file", spec.validation_file)]
    problems = [p for param, id_ in named if id_ and (p := file_problem(store, param, id_))]
    if problems:
        raise UserError("; ".join(problems))
    get_run_logger().info("files checked: %s", ", ".join(id_ for _, id_ in named if id_))


def project_remote(root: Path) -> str | None:
    """The project's default DVC remote as an absolute URL (a relative one is relative to the project's .dvc)."""
    from dvc.repo import Repo

    config = Repo(str(root)).config
    name = config["core"].get("remote")
    return config["remote"][name]["url"] if name and name in config["remote"] else None


def make_workspace(root: Path, workspace: Path, spec: JobSpec) -> None:
    """jobs/<id>/: the pipeline's code, params.yaml with the job's overrides, the job's files, DVC of its own."""
    staging = workspace.with_name(workspace.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for rel in PIPELINE:
        if (root / rel).is_dir():
            shutil.copytree(root / rel, staging / rel, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(root / rel, staging / rel)
    store = FileStore(root, track=False)
    data = staging / JOB_DATA_DIR
    data.mkdir(parents=True)
    shutil.copy2(store.content_path(spec.training_file), data / "train.jsonl")  # every row trains (OpenAI's way)
    if spec.validation_file:  # OpenAI's validation metrics, and the held-out rows the gate scores (the job says so)
        for split in ("validation", "test"):
            shutil.copy2(store.content_path(spec.validation_file), data / f"{split}.jsonl")
    overrides = spec.overrides | {"register.alias": job_alias(workspace.name)} | continued_from(root, spec)
    raw = apply_overrides(yaml.safe_load((root / PARAMS_PATH).read_text()), overrides)
    parse_params(raw, f"{PARAMS_PATH} with the job's overrides")  # refuse before anything runs
    write_text(staging / PARAMS_PATH, yaml.safe_dump(raw, sort_keys=False))
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=staging, check=True, capture_output=True)
    remote = project_remote(root)
    if remote:  # the job's data and model go where the project's do
        subprocess.run([*dvc, "remote", "add", "-d", "project", remote], cwd=staging, check=True, capture_output=True)
    staging.rename(workspace)


def continued_from(root: Path, spec: JobSpec) -> dict[str, str]:
    """Continued fine-tuning: an `ft:` model (a registered version or a job's checkpoint) as the job's model is
    exported in Hub format here, and the job trains from it (model.name; its gate's base is that model too)."""
    if not spec.model.startswith("ft:"):
        return {}
    from tuneops.registry.export import export_for_training  # start-up: mlflow, only for a continued job

    params = load_params(root / PARAMS_PATH)
    register = params.register_.model_copy(update={"tracking_uri": spec.overrides["register.tracking_uri"]})
    return {"model.name": str(export_for_training(spec.model, root, register, params.generation))}


@contextlib.contextmanager
def inside(path: Path) -> Iterator[None]:
    """The pipeline's paths are relative to its workspace: run with it as the working directory. The worker runs
    each flow run in a process of its own, so this changes no other run's directory."""
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_job(spec: JobSpec, pipeline: Callable[[str], Any]) -> Any:
    """The job's whole flow run: check files, make its workspace, run `pipeline` there, tag and store results."""
    log = get_run_logger()
    root = Path.cwd().resolve()
    job = job_id(flow_run.get_id())
    workspace = job_workspace(root, job)
    restarted = restarts(uuid.UUID(flow_run.get_id()))
    if restarted:  # its process died (Prefect's heartbeat automation put it back on the pool): resume, or give up
        refusal = restart_refusal(len(restarted), restarted[-1][1])
        if refusal:
            return Failed(message=refusal)
        log.warning(
            "job %s: restart %d (%s); resuming from its last complete checkpoint", job, len(restarted), restarted[-1][1]
        )
    try:
        check_files(spec, str(root))
    except UserError as exc:
        return Failed(message=str(exc))
    if not workspace.is_dir():
        try:
            make_workspace(root, workspace, spec)
        except UserError as exc:
            return Failed(message=str(exc))
    log.info("job %s: workspace %s", job, workspace)
    with inside(workspace):
        state = pipeline(str(PARAMS_PATH))
    finish(root, workspace, job, spec, log)
    return state


def finish(root: Path, workspace: Path, job: str, spec: JobSpec, log: logging.Logger) -> None:
    """The registered version tagged with its ft: id; the result CSV stored as a file (when training logged)."""
    history = final_log_history(workspace)
    if history:
        csv_text = results_csv(history)
        write_text(workspace / RESULTS_CSV, csv_text)
        stored = FileStore(root).add(csv_text.encode(), f"{job}-step_metrics.csv", "fine-tune-results")
        log.info("result file %s (%d steps)", stored.id, csv_text.count("\n") - 1)
    registered = workspace / REGISTERED_PATH
    if registered.is_file():
        from mlflow import MlflowClient  # start-up: mlflow costs seconds, and only a registered job needs it

        record = read_json(registered, Registration)
        ft = fine_tuned_model(spec.model, spec.suffix, record.version)
        client = MlflowClient(tracking_uri(load_params(workspace / PARAMS_PATH).register_))
        client.set_model_version_tag(record.name, record.version, FT_MODEL_TAG, ft)
        client.set_model_version_tag(record.name, record.version, "tuneops.fine_tuning_job", job)
        log.info("fine-tuned model %s (%s version %s)", ft, record.name, record.version)
