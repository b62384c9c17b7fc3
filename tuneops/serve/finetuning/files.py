"""OpenAI's files routes: POST /v1/files, GET /v1/files, GET /v1/files/{id}, GET /v1/files/{id}/content,
DELETE /v1/files/{id}. Each upload is a file of its own in the project's data/files/, its bytes stored once
(tuneops.jobs.file_store); an expired one (`expires_after`) is a 404 like any unknown id."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from tuneops.jobs.file_store import MAX_EXPIRY_S, MIN_EXPIRY_S, ExpiresAfter, FileObject
from tuneops.serve.errors import API_PREFIX, APIError
from tuneops.serve.finetuning.protocol import FileDeleted, FileList, ends
from tuneops.serve.finetuning.shared import fine_tuning, not_found, paged

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
    content = await file.read()
    ft = fine_tuning(request)
    return await run_in_threadpool(ft.store.add, content, file.filename or "upload.jsonl", SERVED, expires_after)


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
