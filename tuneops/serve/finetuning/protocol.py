"""OpenAI's file and fine-tuning list objects as the routes answer them (openai-python's `types/file_object.py`,
`types/fine_tuning/*.py`), and its cursor paging (`after`, `limit`, `has_more`)."""

from __future__ import annotations

from typing import Literal, Protocol, TypeVar

from pydantic import BaseModel

from tuneops.jobs.events import Event
from tuneops.jobs.file_store import FileObject
from tuneops.jobs.results import Checkpoint
from tuneops.jobs.spec import Resolved
from tuneops.jobs.states import JobError


class HasId(Protocol):
    @property
    def id(self) -> str: ...


Item = TypeVar("Item", bound=HasId)


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
    method: dict[str, object]
    model: str
    organization_id: str = "tuneops"
    result_files: list[str]
    seed: int
    status: str
    trained_tokens: int | None
    training_file: str
    validation_file: str | None
    estimated_finish: int | None = None
    integrations: list[dict[str, object]] | None = None
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


def page(items: list[Item], after: str | None, limit: int) -> tuple[list[Item], bool]:
    """OpenAI's cursor pages: the `limit` items following the one whose id is `after`, and whether more follow."""
    start = 0
    if after is not None:
        ids = [item.id for item in items]
        if after not in ids:
            raise KeyError(after)
        start = ids.index(after) + 1
    chunk = items[start : start + limit]
    return chunk, start + limit < len(items)


def ends(chunk: list[Item]) -> tuple[str | None, str | None]:
    """A page's first_id and last_id."""
    return (chunk[0].id, chunk[-1].id) if chunk else (None, None)
