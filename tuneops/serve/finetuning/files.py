"""OpenAI's files routes: POST /v1/files, GET /v1/files, GET /v1/files/{id}, GET /v1/files/{id}/content,
DELETE /v1/files/{id}. Uploads are stored content-addressed in the project's data/files/ (tuneops.jobs.file_store)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from tuneops.jobs.file_store import FileObject
from tuneops.serve.errors import API_PREFIX, APIError
from tuneops.serve.finetuning.protocol import FileDeleted, FileList, ends
from tuneops.serve.finetuning.shared import fine_tuning, not_found, paged

router = APIRouter(prefix=API_PREFIX, tags=["OpenAI files"])


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
