"""OpenAI's files routes: POST /v1/files, GET /v1/files, GET /v1/files/{id}, GET /v1/files/{id}/content,
DELETE /v1/files/{id}. Each upload is a file of its own in the project's data/files/, its bytes stored once
(tuneops.jobs.file_store); an expired one (`expires_after`) is a 404 like any unknown id.

An upload streams to disk (Starlette spools the multipart body past 1 MiB to a temporary file; the store copies it
a chunk at a time): the server's memory stays flat however large the file. No room on the disk is a 507 with
nothing stored. An id or filename with path parts is a 400 before any path is made from it. A file that a job not
yet finished (validating, queued, running, paused) trains on is not deleted: a 409 names the job."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from typing import Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from tuneops.jobs.file_store import MAX_EXPIRY_S, MIN_EXPIRY_S, ExpiresAfter, FileObject, path_parts, upload_filename
from tuneops.jobs.orchestration import job_runs
from tuneops.jobs.spec import JobSpec, job_id
from tuneops.jobs.states import Status, job_status
from tuneops.serve.errors import API_PREFIX, APIError
from tuneops.serve.finetuning.protocol import FileDeleted, FileList, ends
from tuneops.serve.finetuning.shared import fine_tuning, not_found, paged, prefect_call

router = APIRouter(prefix=API_PREFIX, tags=["OpenAI files"])

SERVED = "fine-tune"
OPENAI_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")  # openai FileCreateParams


@router.post("/files")
async def create_file(
    request: Request,
    file: UploadFile = File(...),
    purpose: str = Form(...),
    anchor: str | None = Form(None, alias="expires_after[anchor]"),  # OpenAI's multipart form of expires_after
    seconds: str | None = Form(None, alias="expires_after[seconds]"),
) -> FileObject:
    """Multipart `file`, `purpose` (`fine-tune`) and optionally `expires_after`: stored, checked, tracked by DVC."""
    check_purpose(purpose)
    expires_after = expiry(anchor, seconds)
    filename = file.filename or "upload.jsonl"
    try:
        upload_filename(filename)
    except ValueError as exc:
        raise APIError(400, str(exc), param="file", code="invalid_value") from None
    ft = fine_tuning(request)
    try:
        return await run_in_threadpool(ft.store.add_stream, file.file, filename, SERVED, expires_after)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        message = "no space left on this server's disk for the file: nothing was stored; upload it again later"
        raise APIError(507, message, param="file", code="insufficient_storage") from None


def checked_id(file_id: str) -> str:
    """The id as sent, refused (400) when it holds path parts: no path is ever made from it."""
    if (part := path_parts(file_id)) is not None:
        message = f"file id has path parts ({part!r}): ids look like file-<24 hex digits>"
        raise APIError(400, message, param="file_id", code="invalid_value")
    return file_id


def check_purpose(purpose: str) -> None:
    """Only fine-tuning files are served; OpenAI's other purposes are named as such, anything else as unknown."""
    if purpose == SERVED:
        return
    if purpose in OPENAI_PURPOSES:
        message = f"purpose {purpose!r} is not served here: tuneops serves only purpose 'fine-tune'"
    else:
        known = ", ".join(OPENAI_PURPOSES)
        message = f"purpose {purpose!r} is not one of OpenAI's ({known}); tuneops serves only purpose 'fine-tune'"
    raise APIError(400, message, param="purpose", code="invalid_value")


def expiry(anchor: str | None, seconds: str | None) -> ExpiresAfter | None:
    """OpenAI's `expires_after` from its form fields; both or neither."""
    if anchor is None and seconds is None:
        return None
    if anchor is None or seconds is None:
        missing = "anchor" if anchor is None else "seconds"
        raise APIError(
            400,
            f"Missing required parameter: 'expires_after.{missing}'.",
            param=f"expires_after.{missing}",
            code="missing_required_parameter",
        )
    try:
        return ExpiresAfter.model_validate({"anchor": anchor, "seconds": seconds})
    except ValidationError as exc:
        where = str(exc.errors()[0]["loc"][0])
        said = {
            "anchor": f"expires_after.anchor must be 'created_at', not {anchor!r}",
            "seconds": f"expires_after.seconds must be a whole number from {MIN_EXPIRY_S} (1 hour) to {MAX_EXPIRY_S} "
            f"(30 days), not {seconds!r}",
        }
        raise APIError(400, said[where], param=f"expires_after.{where}", code="invalid_value") from None


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
    chunk, more = paged(found, after, limit)
    first, last = ends(chunk)
    return FileList(data=chunk, has_more=more, first_id=first, last_id=last)


@router.get("/files/{file_id}")
def retrieve_file(request: Request, file_id: str) -> FileObject:
    found = fine_tuning(request).store.get(checked_id(file_id))
    if found is None:
        raise not_found("file", file_id, "file_id")
    return found


@router.get("/files/{file_id}/content")
def file_content(request: Request, file_id: str) -> Response:
    store = fine_tuning(request).store
    found = store.get(checked_id(file_id))
    if found is None or not store.content_path(file_id).is_file():
        raise not_found("file", file_id, "file_id")
    kind = "text/csv" if found.purpose == "fine-tune-results" else "application/jsonl"
    return FileResponse(store.content_path(file_id), media_type=kind)  # streamed from disk, a chunk at a time


@router.delete("/files/{file_id}")
def delete_file(request: Request, file_id: str) -> FileDeleted:
    ft = fine_tuning(request)
    if ft.store.get(checked_id(file_id)) is None:
        raise not_found("file", file_id, "file_id")
    if using := jobs_using(file_id, known_jobs()):
        named = ", ".join(using[:5]) + (f" and {len(using) - 5} more" if len(using) > 5 else "")
        message = f"file {file_id} is used by fine-tuning job {named}, not finished yet: cancel it or wait for it first"
        raise APIError(409, message, param="file_id", code="file_in_use")
    if not ft.store.delete(file_id):
        raise not_found("file", file_id, "file_id")
    return FileDeleted(id=file_id, deleted=True)


IN_USE: tuple[Status, ...] = ("validating_files", "queued", "running", "paused")  # a job that may read its files


def jobs_using(file_id: str, jobs: Iterable[tuple[str, Status, JobSpec]]) -> list[str]:
    """The jobs, of (id, status, spec), that are not finished and train or validate on the file."""
    return [
        job for job, status, spec in jobs if status in IN_USE and file_id in (spec.training_file, spec.validation_file)
    ]


def known_jobs() -> list[tuple[str, Status, JobSpec]]:
    """Every job's id, status and spec, read from Prefect (none when no Prefect server is configured: no job runs
    without one); a server that does not answer is a 503, as for the jobs routes."""
    if not os.environ.get("PREFECT_API_URL", "").strip():
        return []
    return [
        (
            job_id(run.id),
            job_status(run.state_type.value if run.state_type else None, True, False, run.state_name),
            JobSpec.model_validate(run.parameters["job"]),
        )
        for run in prefect_call(job_runs)
    ]
