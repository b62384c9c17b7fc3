"""OpenAI's fine-tuning jobs routes: POST /v1/fine_tuning/jobs, GET /v1/fine_tuning/jobs, GET .../{id},
POST .../{id}/cancel, GET .../{id}/events, GET .../{id}/checkpoints.

A job is a flow run of the retrain flow on the Prefect work pool (tuneops.jobs.orchestration), run by a worker in
jobs/<job id>/ (flows/job.py); its object is read back from the flow run and that workspace every time it is asked
for (tuneops.jobs), nothing else stores it.

Creating a job is idempotent under an `Idempotency-Key` header: the key decides the flow run (Prefect's idempotency
key), so a retry, even of a request answered 503 after Prefect made the run, returns that job. Errors a retry cannot
help say `x-should-retry: false`, which OpenAI's clients obey (they retry 408, 409, 429 and every 5xx otherwise).
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, Query, Request

from tuneops.config.errors import UserError
from tuneops.config.params import load_params, tracking_uri
from tuneops.config.paths import PARAMS_PATH, PAUSE_REQUEST_PATH, job_workspace
from tuneops.config.records import GateVerdict, Registration
from tuneops.io.files import remove, write_text
from tuneops.jobs.events import StageRun, job_events
from tuneops.jobs.file_store import file_id
from tuneops.jobs.orchestration import cancel_run, job_runs, read_run, restarts, resume_run, task_runs
from tuneops.jobs.results import RESULTS_CSV, job_checkpoints, read_job_files, trained_tokens
from tuneops.jobs.spec import (
    JobRequest,
    JobSpec,
    absolute_tracking_uri,
    draw_seed,
    fine_tuned_model,
    flow_run_id,
    job_id,
    job_overrides,
    resolve,
)
from tuneops.jobs.states import FILE_CHECK_TASK, job_error, job_status
from tuneops.serve.errors import API_PREFIX, APIError
from tuneops.serve.finetuning.protocol import CheckpointList, EventList, FineTuningJob, JobList, ends
from tuneops.serve.finetuning.retry import (
    SERVER_CONFIG,
    SaysWhenRetryIsFutile,
    idempotency_key,
    key_reused,
    request_tag,
    unsafe_to_retry,
)
from tuneops.serve.finetuning.shared import FineTuning, fine_tuning, not_found, paged, prefect_call

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

TASK_EXCEPTION = re.compile(r"^Task run encountered an exception \w+: ")  # Prefect's words around our message
MAX_LIMIT = 100
router = APIRouter(prefix=API_PREFIX, tags=["OpenAI fine-tuning"], route_class=SaysWhenRetryIsFutile)


def spec_of(run: FlowRun) -> JobSpec:
    return JobSpec.model_validate(run.parameters["job"])


def job_object(root: Path, run: FlowRun) -> FineTuningJob:
    """The job as OpenAI shows it, from its flow run and its workspace."""
    job, spec = job_id(run.id), spec_of(run)
    workspace = job_workspace(root, job)
    files = read_job_files(workspace)
    registered = Registration.model_validate(files.registration.value) if files.registration else None
    state = run.state_type.value if run.state_type else None
    status = job_status(state, workspace.is_dir(), registered is not None, run.state_name, run.run_count)
    gate = GateVerdict.model_validate(files.gate.value) if files.gate else None
    failed_at = None if workspace.is_dir() else FILE_CHECK_TASK  # the workspace is made once the files passed
    error = job_error(status, run.state.message if run.state else None, gate, failed_at)
    results = workspace / RESULTS_CSV
    done = status in ("succeeded", "failed", "cancelled")
    hyperparameters = spec.hyperparameters.model_dump(exclude_none=True)
    method = {"type": spec.method, spec.method: {"hyperparameters": hyperparameters}}
    return FineTuningJob(
        id=job,
        created_at=int(run.created.timestamp()),
        error=error,
        fine_tuned_model=fine_tuned_model(spec.model, spec.suffix, registered.version)
        if registered and status == "succeeded"
        else None,
        finished_at=int((run.end_time or run.state.timestamp).timestamp()) if done and run.state else None,
        hyperparameters=spec.hyperparameters,
        method=method,
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


def read_job(ft: FineTuning, job: str) -> FlowRun:
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


def check_continued_model(request: Request, model: str) -> None:
    """An `ft:` model to continue from must be one this server answers to (a registered version or a servable
    checkpoint): refused now, not when a worker fails to export it."""
    catalog = getattr(request.app.state, "catalog", None)
    if not model.startswith("ft:") or catalog is None:
        return
    if model not in {card.id for card in catalog.cards()}:
        raise APIError(
            400,
            f"model {model!r}: no fine-tuned model or checkpoint here answers to it (GET /v1/models lists them)",
            param="model",
            code="model_not_found",
        )


def build_spec(ft: FineTuning, body: JobRequest) -> dict[str, object]:
    if body.integrations:
        raise APIError(
            400,
            "integrations are not offered here: every job is tracked in the project's MLflow (its runs, metrics and "
            "registered model, under register.experiment_name in params.yaml); send integrations: [] or omit it",
            param="integrations",
            code="unsupported_parameter",
        )
    try:
        method = body.method_type()
    except UserError as exc:
        raise APIError(400, str(exc), param="method", code="unsupported_parameter") from None
    try:
        asked = body.requested()
    except UserError as exc:
        raise APIError(400, str(exc), param="hyperparameters") from None
    try:
        params = load_params(ft.root / PARAMS_PATH)
    except UserError as exc:  # the server's own params.yaml: not the client's mistake
        raise APIError(500, f"the server's {exc}", code=SERVER_CONFIG) from None
    tracking = absolute_tracking_uri(tracking_uri(params.register_), ft.root)
    ensure_experiment(tracking, params.register_.experiment_name, ft.root)
    seed = body.seed if body.seed is not None else draw_seed()
    overrides = job_overrides(body, params, tracking, seed)
    spec = JobSpec(
        model=body.model,
        training_file=body.training_file,
        validation_file=body.validation_file,
        hyperparameters=resolve(asked, params.train),
        method=method,
        suffix=body.suffix,
        seed=seed,
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
    key = idempotency_key(request)
    check_files_exist(ft, body)
    check_continued_model(request, body.model)
    prefect_call(lambda: None)  # no orchestrator, no job: said before the slower work below
    spec = build_spec(ft, body)
    try:
        # a key for every request: Prefect's client resends a create whose answer it lost, and only the key keeps
        # that resend from making a second run
        once = key or f"request-{uuid.uuid4()}"
        run = prefect_call(ft.deployment.submit, spec, once, request_tag(body))
    except APIError as exc:
        if key is None:  # Prefect may have made the run before the answer was lost: a retry could make a second
            raise unsafe_to_retry(exc) from None
        raise
    if key is not None and request_tag(body) not in run.tags:
        raise key_reused(key, job_id(run.id))
    return job_object(ft.root, run)


@router.get("/fine_tuning/jobs")
def list_jobs(
    request: Request,
    after: str | None = None,
    limit: int = Query(default=20, ge=1, le=MAX_LIMIT),
) -> JobList:
    ft = fine_tuning(request)
    wanted = metadata_filter(request)
    runs = [r for r in prefect_call(job_runs) if matches(spec_of(r).metadata, wanted)]
    keyed = [_Keyed(job_id(r.id), r) for r in runs]
    chunk, more = paged(keyed, after, limit)
    return JobList(data=[job_object(ft.root, k.run) for k in chunk], has_more=more)


def metadata_filter(request: Request) -> dict[str, str] | None:
    """OpenAI's `metadata[k]=v` query parameters (the client's `jobs.list(metadata={...})`); `metadata=null` asks for
    jobs without metadata ({})."""
    wanted = {
        key[len("metadata[") : -1]: value
        for key, value in request.query_params.multi_items()
        if key.startswith("metadata[") and key.endswith("]")
    }
    if request.query_params.get("metadata") == "null":
        return {}
    return wanted or None


def matches(metadata: dict[str, str] | None, wanted: dict[str, str] | None) -> bool:
    if wanted is None:
        return True
    if not wanted:
        return not metadata
    return all((metadata or {}).get(k) == v for k, v in wanted.items())


class _Keyed:
    """A flow run under its job id, for paging by job id."""

    def __init__(self, id_: str, run: FlowRun) -> None:
        self.id, self.run = id_, run


@router.get("/fine_tuning/jobs/{fine_tuning_job_id}")
def retrieve_job(request: Request, fine_tuning_job_id: str) -> FineTuningJob:
    ft = fine_tuning(request)
    return job_object(ft.root, read_job(ft, fine_tuning_job_id))


@router.post("/fine_tuning/jobs/{fine_tuning_job_id}/cancel")
def cancel_job(request: Request, fine_tuning_job_id: str) -> FineTuningJob:
    ft = fine_tuning(request)
    run = read_job(ft, fine_tuning_job_id)
    current = job_object(ft.root, run)
    if current.status in ("succeeded", "failed", "cancelled"):
        raise APIError(
            400, f"job {fine_tuning_job_id} already {current.status}: nothing to cancel", code="job_not_cancellable"
        )
    prefect_call(cancel_run, run.id)
    return job_object(ft.root, read_job(ft, fine_tuning_job_id))


PAUSE_WAIT_S = 20.0  # a pause takes effect at the end of the training step under way, then a checkpoint is saved


@router.post("/fine_tuning/jobs/{fine_tuning_job_id}/pause")
def pause_job(request: Request, fine_tuning_job_id: str) -> FineTuningJob:
    """Pause a running job: training saves a checkpoint at the end of its current step and stops; the run leaves its
    worker (status `paused`) until resumed. Answers once paused, or after PAUSE_WAIT_S with the status then."""
    ft = fine_tuning(request)
    current = job_object(ft.root, read_job(ft, fine_tuning_job_id))
    if current.status != "running":
        raise APIError(
            400,
            f"job {fine_tuning_job_id} is {current.status}: only a running job can be paused",
            code="job_not_pausable",
        )
    request_path = job_workspace(ft.root, current.id) / PAUSE_REQUEST_PATH
    request_path.parent.mkdir(parents=True, exist_ok=True)
    write_text(request_path, uuid.uuid4().hex)  # the suspend key: each pause of a job is a new one
    deadline = time.monotonic() + PAUSE_WAIT_S
    while (job := job_object(ft.root, read_job(ft, fine_tuning_job_id))).status == "running":
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return job


@router.post("/fine_tuning/jobs/{fine_tuning_job_id}/resume")
def resume_job(request: Request, fine_tuning_job_id: str) -> FineTuningJob:
    """Resume a paused job under the same id: a worker picks it up and training continues from its checkpoint."""
    ft = fine_tuning(request)
    run = read_job(ft, fine_tuning_job_id)
    current = job_object(ft.root, run)
    if current.status != "paused":
        raise APIError(
            400,
            f"job {fine_tuning_job_id} is {current.status}: only a paused job can be resumed",
            code="job_not_resumable",
        )
    remove(job_workspace(ft.root, current.id) / PAUSE_REQUEST_PATH)
    prefect_call(resume_run, run.id)
    return job_object(ft.root, read_job(ft, fine_tuning_job_id))


def stage_runs(run_id: uuid.UUID) -> list[StageRun]:
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
    restarted = prefect_call(restarts, run.id)
    spec = spec_of(run)
    asked = spec.overrides.get("data.max_train_samples")
    created = run.created.timestamp()
    events = job_events(
        job.id, created, runs, files, job.status, finished, ft_model, job.error, spec.validation_file, asked, restarted
    )
    chunk, more = paged(events, after, limit)
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
    chunk, more = paged(found, after, limit)
    first, last = ends(chunk)
    return CheckpointList(data=chunk, has_more=more, first_id=first, last_id=last)
