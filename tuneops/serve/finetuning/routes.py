"""OpenAI's files and fine-tuning jobs routes, so code written for OpenAI's fine-tuning API runs against tuneops.

    POST /v1/files   GET /v1/files   GET /v1/files/{id}   GET /v1/files/{id}/content   DELETE /v1/files/{id}
    POST /v1/fine_tuning/jobs   GET /v1/fine_tuning/jobs   GET /v1/fine_tuning/jobs/{id}
    POST /v1/fine_tuning/jobs/{id}/cancel   GET /v1/fine_tuning/jobs/{id}/events   GET .../{id}/checkpoints

Files live in the project's data/files/ (tuneops.file_store). A job is a flow run of the retrain flow on the
Prefect work pool (flows/deploy.py), run by a worker in jobs/<job id>/ (flows/job.py); its object is read back
from the flow run and that workspace every time it is asked for (tuneops.jobs), nothing else stores it.

The routes share the app's OpenAI error handlers (tuneops.openai_api.APIError). The project is the server's
working directory; the work pool is TUNEOPS_WORK_POOL (default `tuneops`).
"""

from __future__ import annotations

import os
import re
import uuid
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from tuneops.config.errors import UserError
from tuneops.config.params import load_params, tracking_uri
from tuneops.config.paths import PARAMS_PATH
from tuneops.config.records import GateVerdict, Registration
from tuneops.jobs.file_store import FileObject, FileStore, file_id
from tuneops.jobs.finetuning import (
    FILE_CHECK_TASK,
    RESULTS_CSV,
    Checkpoint,
    Event,
    JobError,
    JobRequest,
    Resolved,
    StageRun,
    absolute_tracking_uri,
    fine_tuned_model,
    flow_run_id,
    job_checkpoints,
    job_error,
    job_events,
    job_id,
    job_overrides,
    job_status,
    job_workspace,
    page,
    read_job_files,
    resolve,
    trained_tokens,
)
from tuneops.serve.openai.routes import API_PREFIX, APIError

POOL_ENV = "TUNEOPS_WORK_POOL"
TASK_EXCEPTION = re.compile(r"^Task run encountered an exception \w+: ")  # Prefect's words around our message
MAX_LIMIT = 100

router = APIRouter(prefix=API_PREFIX, tags=["OpenAI fine-tuning"])


class FineTuning:
    """What the routes share: the project root, its file store and the jobs deployment on the work pool."""

    def __init__(self, root: Path, pool: str) -> None:
        self.root, self.pool = root.resolve(), pool
        self.store = FileStore(self.root)

    @cached_property
    def deployment(self) -> Any:
        from tuneops.jobs.orchestration import JobDeployment

        return JobDeployment(self.root, self.pool)


def fine_tuning(request: Request) -> FineTuning:
    state = request.app.state
    if getattr(state, "fine_tuning", None) is None:
        state.fine_tuning = FineTuning(Path.cwd(), os.environ.get(POOL_ENV, "tuneops"))
    return state.fine_tuning


# ------------------------------------------------------------------------------------------------- objects


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


class FineTuningJob(BaseModel):
    """OpenAI's `fine_tuning.job`."""

    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None
    fine_tuned_model: str | None
    finished_at: int | None
    hyperparameters: Resolved
    method: dict[str, Any]
    model: str
    organization_id: str = "tuneops"
    result_files: list[str]
    seed: int
    status: str
    trained_tokens: int | None
    training_file: str
    validation_file: str | None
    estimated_finish: int | None = None
    integrations: list[Any] | None = None
    metadata: dict[str, str] | None = None
    user_provided_suffix: str | None = None


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJob]
    has_more: bool


class EventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Event]
    has_more: bool


class CheckpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Checkpoint]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


# --------------------------------------------------------------------------------------------------- files


def not_found(kind: str, id_: str, param: str) -> APIError:
    return APIError(404, f"No such {kind}: {id_}", param=param, code=f"{kind}_not_found")


@router.post("/files")
async def create_file(request: Request, file: UploadFile = File(...), purpose: str = Form(...)) -> FileObject:
    """Multipart `file` and `purpose` (`fine-tune`): stored by content, checked, tracked by DVC."""
    if purpose != "fine-tune":
        raise APIError(400, f"purpose {purpose!r} is not supported here: only 'fine-tune'", param="purpose")
    content = await file.read()
    ft = fine_tuning(request)
    return await run_in_threadpool(ft.store.add, content, file.filename or "upload.jsonl", "fine-tune")


@router.get("/files")
def list_files(
    request: Request,
    purpose: str | None = None,
    after: str | None = None,
    limit: int = Query(default=10000, ge=1, le=10000),
    order: Literal["asc", "desc"] = "desc",
) -> FileList:
    found = fine_tuning(request).store.list(purpose)
    found = found if order == "desc" else found[::-1]
    chunk, more = paged(found, after)(limit)
    return FileList(data=chunk, has_more=more, first_id=ids(chunk)[0], last_id=ids(chunk)[1])


@router.get("/files/{file_id}")
def retrieve_file(request: Request, file_id: str) -> FileObject:
    found = fine_tuning(request).store.get(file_id)
    if found is None:
        raise not_found("file", file_id, "file_id")
    return found


@router.get("/files/{file_id}/content")
def file_content(request: Request, file_id: str) -> Response:
    store = fine_tuning(request).store
    found = store.get(file_id)
    if found is None or not store.content_path(file_id).is_file():
        raise not_found("file", file_id, "file_id")
    kind = "text/csv" if found.purpose == "fine-tune-results" else "application/jsonl"
    return Response(store.content_path(file_id).read_bytes(), media_type=kind)


@router.delete("/files/{file_id}")
def delete_file(request: Request, file_id: str) -> FileDeleted:
    if not fine_tuning(request).store.delete(file_id):
        raise not_found("file", file_id, "file_id")
    return FileDeleted(id=file_id, deleted=True)


def paged(items: list[Any], after: str | None) -> Any:
    def take(limit: int) -> tuple[list[Any], bool]:
        try:
            return page(items, after, limit)
        except KeyError:
            raise APIError(400, f"after: no object with id {after!r} in this list", param="after") from None

    return take


def ids(chunk: list[Any]) -> tuple[str | None, str | None]:
    return (chunk[0].id, chunk[-1].id) if chunk else (None, None)


# ---------------------------------------------------------------------------------------------------- jobs


def prefect_call(fn: Any, *args: Any) -> Any:
    """A Prefect API call; no server is a 503 that says how to start one."""
    from tuneops.jobs.orchestration import require_api

    try:
        require_api()
        return fn(*args)
    except UserError as exc:
        raise APIError(503, str(exc), code="orchestrator_unavailable") from None
    except (OSError, RuntimeError) as exc:  # httpx's connection errors are OSErrors; Prefect wraps some
        raise APIError(503, f"the Prefect API did not answer: {type(exc).__name__}: {exc}"[:400]) from None


def spec_of(run: Any) -> Any:
    from tuneops.jobs.finetuning import JobSpec

    return JobSpec.model_validate(run.parameters["job"])


def job_object(root: Path, run: Any) -> FineTuningJob:
    """The job as OpenAI shows it, from its flow run and its workspace."""
    job, spec = job_id(run.id), spec_of(run)
    workspace = job_workspace(root, job)
    files = read_job_files(workspace)
    registered = Registration.model_validate(files.registration.value) if files.registration else None
    state = run.state_type.value if run.state_type else None
    status = job_status(state, workspace.is_dir(), registered is not None)
    gate = GateVerdict.model_validate(files.gate.value) if files.gate else None
    failed_at = None if workspace.is_dir() else FILE_CHECK_TASK  # the workspace is made once the files passed
    error = job_error(status, run.state.message if run.state else None, gate, failed_at)
    results = workspace / RESULTS_CSV
    done = status in ("succeeded", "failed", "cancelled")
    supervised = {"type": "supervised", "supervised": {"hyperparameters": spec.hyperparameters.model_dump()}}
    return FineTuningJob(
        id=job,
        created_at=int(run.created.timestamp()),
        error=error,
        fine_tuned_model=fine_tuned_model(spec.model, spec.suffix, registered.version)
        if registered and status == "succeeded"
        else None,
        finished_at=int((run.end_time or run.state.timestamp).timestamp()) if done and run.state else None,
        hyperparameters=spec.hyperparameters,
        method=supervised,
        model=spec.model,
        result_files=[file_id(results.read_bytes())] if results.is_file() else [],
        seed=spec.seed,
        status=status,
        trained_tokens=trained_tokens(files.tokenization, spec.hyperparameters.n_epochs)
        if status == "succeeded"
        else None,
        training_file=spec.training_file,
        validation_file=spec.validation_file,
        metadata=spec.metadata,
        user_provided_suffix=spec.suffix,
    )


def read_job(ft: FineTuning, job: str) -> Any:
    from tuneops.jobs.orchestration import read_run

    run_id = flow_run_id(job)
    run = prefect_call(read_run, run_id) if run_id is not None else None
    if run is None:
        raise not_found("job", job, "fine_tuning_job_id")
    return run


def check_files_exist(ft: FineTuning, body: JobRequest) -> None:
    for param, id_ in (("training_file", body.training_file), ("validation_file", body.validation_file)):
        if id_ is not None and ft.store.get(id_) is None:
            raise APIError(
                400, f"{param}: no such file {id_!r} (upload it with POST /v1/files)", param=param, code="invalid_file"
            )


def build_spec(ft: FineTuning, body: JobRequest) -> dict[str, Any]:
    from tuneops.jobs.finetuning import JobSpec

    try:
        asked = body.requested()
    except UserError as exc:
        raise APIError(400, str(exc), param="hyperparameters") from None
    try:
        params = load_params(ft.root / PARAMS_PATH)
    except UserError as exc:  # the server's own params.yaml: not the client's mistake
        raise APIError(500, f"the server's {exc}") from None
    tracking = absolute_tracking_uri(tracking_uri(params.register_), ft.root)
    ensure_experiment(tracking, params.register_.experiment_name, ft.root)
    overrides = job_overrides(body, params, tracking)
    spec = JobSpec(
        model=body.model,
        training_file=body.training_file,
        validation_file=body.validation_file,
        hyperparameters=resolve(asked, params.train.args),
        suffix=body.suffix,
        seed=overrides["train.args.seed"],
        metadata=body.metadata,
        overrides=overrides,
    )
    return spec.model_dump(mode="json")


def ensure_experiment(tracking: str, name: str, root: Path) -> None:
    """The MLflow experiment made from the project, not from a job: an experiment's artifacts go where its creator
    ran (./mlruns), and a job's workspace is scratch that may be deleted with the models under it."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking)
    if client.get_experiment_by_name(name) is None:
        client.create_experiment(name, artifact_location=(root / "mlruns").as_uri())


@router.post("/fine_tuning/jobs")
def create_job(request: Request, body: JobRequest) -> FineTuningJob:
    ft = fine_tuning(request)
    check_files_exist(ft, body)
    prefect_call(lambda: None)  # no orchestrator, no job: said before the slower work below
    spec = build_spec(ft, body)
    run = prefect_call(ft.deployment.submit, spec)
    return job_object(ft.root, run)


@router.get("/fine_tuning/jobs")
def list_jobs(
    request: Request,
    after: str | None = None,
    limit: int = Query(default=20, ge=1, le=MAX_LIMIT),
) -> JobList:
    from tuneops.jobs.orchestration import job_runs

    ft = fine_tuning(request)
    runs = prefect_call(job_runs)
    keyed = [_Keyed(job_id(r.id), r) for r in runs]
    chunk, more = paged(keyed, after)(limit)
    return JobList(data=[job_object(ft.root, k.value) for k in chunk], has_more=more)


class _Keyed:
    def __init__(self, id_: str, value: Any) -> None:
        self.id, self.value = id_, value


@router.get("/fine_tuning/jobs/{fine_tuning_job_id}")
def retrieve_job(request: Request, fine_tuning_job_id: str) -> FineTuningJob:
    ft = fine_tuning(request)
    return job_object(ft.root, read_job(ft, fine_tuning_job_id))


@router.post("/fine_tuning/jobs/{fine_tuning_job_id}/cancel")
def cancel_job(request: Request, fine_tuning_job_id: str) -> FineTuningJob:
    from tuneops.jobs.orchestration import cancel_run

    ft = fine_tuning(request)
    run = read_job(ft, fine_tuning_job_id)
    current = job_object(ft.root, run)
    if current.status in ("succeeded", "failed", "cancelled"):
        raise APIError(
            400, f"job {fine_tuning_job_id} already {current.status}: nothing to cancel", code="job_not_cancellable"
        )
    prefect_call(cancel_run, run.id)
    return job_object(ft.root, read_job(ft, fine_tuning_job_id))


def stage_runs(run_id: uuid.UUID) -> list[StageRun]:
    from tuneops.jobs.orchestration import task_runs

    out = []
    for t in prefect_call(task_runs, run_id):
        state = t.state_type.value if t.state_type else None
        message = TASK_EXCEPTION.sub("", t.state.message) if t.state and t.state.message else None
        started = t.start_time.timestamp() if t.start_time else None
        ended = t.end_time.timestamp() if t.end_time else None
        out.append(StageRun(t.name, started, ended, state, message))
    return sorted(out, key=lambda s: s.started or float("inf"))


@router.get("/fine_tuning/jobs/{fine_tuning_job_id}/events")
def list_events(
    request: Request,
    fine_tuning_job_id: str,
    after: str | None = None,
    limit: int = Query(default=20, ge=1, le=MAX_LIMIT * 10),
) -> EventList:
    ft = fine_tuning(request)
    run = read_job(ft, fine_tuning_job_id)
    job = job_object(ft.root, run)
    files = read_job_files(job_workspace(ft.root, job.id))
    ended = run.end_time or (run.state.timestamp if run.state else None)
    finished = ended.timestamp() if job.finished_at is not None and ended else None
    version = Registration.model_validate(files.registration.value).version if files.registration else None
    ft_model = fine_tuned_model(job.model, job.user_provided_suffix, version) if version else None  # before the end
    runs = stage_runs(run.id)
    events = job_events(job.id, run.created.timestamp(), runs, files, job.status, finished, ft_model, job.error)
    chunk, more = paged(events, after)(limit)
    return EventList(data=chunk, has_more=more)


@router.get("/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints")
def list_checkpoints(
    request: Request,
    fine_tuning_job_id: str,
    after: str | None = None,
    limit: int = Query(default=10, ge=1, le=MAX_LIMIT),
) -> CheckpointList:
    ft = fine_tuning(request)
    job = job_object(ft.root, read_job(ft, fine_tuning_job_id))
    files = read_job_files(job_workspace(ft.root, job.id))
    found = job_checkpoints(job.id, job.model, job.user_provided_suffix, files)
    chunk, more = paged(found, after)(limit)
    return CheckpointList(data=chunk, has_more=more, first_id=ids(chunk)[0], last_id=ids(chunk)[1])
