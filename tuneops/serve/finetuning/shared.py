"""What the files and jobs routes share: the project they serve (its file store and the jobs deployment on the
Prefect work pool), OpenAI's not-found error, paging errors, and Prefect calls that answer 503 when no server is up.

The project is the server's working directory; the work pool is TUNEOPS_WORK_POOL (default `tuneops`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TypeVar

import httpx
from fastapi import Request

from tuneops.config.errors import UserError
from tuneops.jobs.file_store import FileStore
from tuneops.jobs.orchestration import JobDeployment, require_api
from tuneops.serve.errors import APIError
from tuneops.serve.finetuning.protocol import Item, page
from tuneops.serve.finetuning.retry import NO_API

POOL_ENV = "TUNEOPS_WORK_POOL"
Result = TypeVar("Result")


class FineTuning:
    """What the routes share: the project root, its file store and the jobs deployment on the work pool."""

    def __init__(self, root: Path, pool: str) -> None:
        self.root, self.pool = root.resolve(), pool
        self.store = FileStore(self.root)

    @cached_property
    def deployment(self) -> JobDeployment:
        return JobDeployment(self.root, self.pool)


def fine_tuning(request: Request) -> FineTuning:
    state = request.app.state
    if getattr(state, "fine_tuning", None) is None:
        state.fine_tuning = FineTuning(Path.cwd(), os.environ.get(POOL_ENV, "tuneops"))
    return state.fine_tuning


def not_found(kind: str, id_: str, param: str) -> APIError:
    return APIError(404, f"No such {kind}: {id_}", param=param, code=f"{kind}_not_found")


def paged(items: list[Item], after: str | None, limit: int) -> tuple[list[Item], bool]:
    """A page of `items`; an `after` that names none of them is the client's 400."""
    try:
        return page(items, after, limit)
    except KeyError:
        raise APIError(400, f"after: no object with id {after!r} in this list", param="after") from None


def prefect_call(fn: Callable[..., Result], *args: object) -> Result:
    """A Prefect API call; no server is a 503 that says how to start one."""
    try:
        require_api()
        return fn(*args)
    except UserError as exc:
        raise APIError(503, str(exc), code=NO_API) from None
    except (OSError, RuntimeError, httpx.TransportError) as exc:  # a refused, cut or timed-out connection
        raise APIError(503, f"the Prefect API did not answer: {type(exc).__name__}: {exc}"[:400]) from None
