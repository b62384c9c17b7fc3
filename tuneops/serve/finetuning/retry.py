"""Retries of the jobs routes made safe: an `Idempotency-Key` decides the job a create makes (one per key, however
often it is retried, even after a 503 answered once Prefect had made the run), and errors a retry cannot help say
`x-should-retry: false`, which OpenAI's clients obey (they retry 408, 409, 429 and every 5xx otherwise)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.responses import Response

from tuneops.serve.errors import APIError, validation_error

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY = 255  # Stripe's bound on a key's length
NO_API = "orchestrator_unavailable"  # no PREFECT_API_URL: a configuration, not a moment (shared.prefect_call)
SERVER_CONFIG = "server_misconfigured"  # the server's own params.yaml does not load
RETRY_UNSAFE = "retry_unsafe"  # a create that failed after it may have made the job, sent without a key


def retry_helps(status: int, code: str | None) -> bool:
    """Whether the same request again can succeed: OpenAI's clients' own rule (408, 409, 429, 5xx), less the
    answers that will not change (no orchestrator configured, the server's broken params.yaml) or that a retry
    would make worse (a second job)."""
    if code in (NO_API, SERVER_CONFIG, RETRY_UNSAFE):
        return False
    return status in (408, 409, 429) or status >= 500


class SaysWhenRetryIsFutile(APIRoute):
    """A route that answers an error a retry cannot help with `x-should-retry: false`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except APIError as exc:
                if retry_helps(exc.status, exc.code):
                    raise
                return exc.response({"x-should-retry": "false"})
            except RequestValidationError as exc:
                return validation_error(list(exc.errors())).response({"x-should-retry": "false"})

        return answer


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise APIError(400, f"{IDEMPOTENCY_HEADER}: 1 to {MAX_IDEMPOTENCY_KEY} characters", code="invalid_value")
    return key


def request_tag(body: BaseModel) -> str:
    """The request's digest, a tag on its run: the same key sent again with another body is refused, not answered
    with the first body's job."""
    return "tuneops:request:" + hashlib.sha256(body.model_dump_json().encode()).hexdigest()[:16]


def unsafe_to_retry(exc: APIError) -> APIError:
    """A create without a key that failed talking to Prefect: the run may exist all the same."""
    return APIError(
        exc.status,
        f"{exc.message}; the job may have been created all the same: list jobs before creating it again "
        f"(send an {IDEMPOTENCY_HEADER} header to make a retry safe)",
        code=RETRY_UNSAFE,
    )


def key_reused(key: str, job: str) -> APIError:
    return APIError(
        400,
        f"{IDEMPOTENCY_HEADER} {key!r} was sent before with another request body (job {job}): use a new key for a "
        "new job",
        code="idempotency_key_reused",
    )
