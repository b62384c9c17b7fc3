"""What the OpenAI route families (models, completions, chat) share: finding the model a request names, the
checks every completion request gets, handing the request to the batcher and reading its events back, usage
counts, and the server-sent events a streamed answer is made of.

The routes read what they share from `request.app.state`: `catalog` (registry.catalog.Catalog), `engine`
(inference.engine.Engine: the built-in batcher, or vLLM) and `limits` (serve.app.Limits).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse, format_sse_event
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from tuneops.inference.admission import Overloaded
from tuneops.inference.batching import Classified, Event, Failed, InferenceRequest, PromptTooLong, Results, TextDelta
from tuneops.inference.engine import EngineUnavailable
from tuneops.inference.generation import Completion as Generated
from tuneops.registry.catalog import ModelNotFound
from tuneops.registry.served import Served
from tuneops.serve.errors import APIError
from tuneops.serve.openai.protocol import Sampled, Usage

log = logging.getLogger("tuneops.serve")

VERSION_HEADER = "X-Model-Version"  # the registered version that answered, as on /predict
NOTHING_REGISTERED = (
    "no model is registered in this server's tracking store yet: run `dvc repro` (or `tuneops demo` for the "
    "offline sample) to register one"
)
DONE = format_sse_event(data_str="[DONE]")  # OpenAI's end of a stream, `data: [DONE]` and a blank line
LOGPROB_FLOOR = -9999.0  # JSON has no -inf: a token the model rules out is given this, as vLLM does
_ignored_logged: set[str] = set()  # the ignored parameters already logged by this process (each name once)


def not_found(exc: ModelNotFound) -> APIError:
    if exc.nothing_registered:
        return APIError(404, NOTHING_REGISTERED, param="model", code="model_not_found")
    message = f"The model `{exc.model_id}` does not exist: GET /v1/models lists the ids this server answers to."
    return APIError(404, message, param="model", code="model_not_found")


async def resolve(request: Request, model_id: str) -> Served:
    try:
        return await run_in_threadpool(request.app.state.catalog.get, model_id)
    except ModelNotFound as exc:
        raise not_found(exc) from None


def check_sampled(body: Sampled, limit: int) -> None:
    """The parameters every completion request shares, against what tuneops does and the server's limits."""
    if (refused := body.refused()) is not None:
        raise APIError(400, refused.message, param=refused.param, code=refused.code)
    log_ignored(body.ignored())
    budget = body.token_budget()
    if budget is not None and budget > limit:
        param = "max_completion_tokens" if getattr(body, "max_completion_tokens", None) else "max_tokens"
        raise APIError(
            400, f"{param} is {budget}, over this server's limit of {limit}", param=param, code="invalid_value"
        )


def log_ignored(names: Iterable[str]) -> None:
    """Say once per process (per name, never its value) that a parameter was accepted and changes nothing here:
    a client that counts on one learns it from the log without every request repeating it."""
    for name in names:
        if name not in _ignored_logged:
            _ignored_logged.add(name)
            log.info("OpenAI parameter `%s` accepted and ignored: it changes nothing tuneops answers", name)


def json_logprob(logprob: float) -> float:
    """A log-probability JSON can carry: -inf (a token the model rules out) becomes LOGPROB_FLOOR."""
    return max(logprob, LOGPROB_FLOOR)


def check_text(texts: Iterable[str], param: str) -> None:
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # JSON allows "\ud800"; no tokenizer encodes it
            where = f"{param}[{i}]" if param == "prompt" else param
            message = f"{where} is not valid Unicode: a lone surrogate at character {exc.start}"
            raise APIError(400, message, param=param, code="invalid_value") from None


def request_error(exc: Exception, param: str) -> APIError:
    """A failed inference request as the client sees it: its own mistake is a 400, the model's failure a 500."""
    if isinstance(exc, PromptTooLong):
        return APIError(400, str(exc), param=param, code="context_length_exceeded")
    if isinstance(exc, ValueError):
        return APIError(400, str(exc), param=param, code="invalid_value")
    if isinstance(exc, EngineUnavailable):  # a vLLM process died mid-answer or did not answer in time
        return APIError(503, str(exc))
    return APIError(500, f"the model failed: {type(exc).__name__}")


class Busy(APIError):
    """OpenAI's 429 with `retry-after` (its client waits that long before it retries): the queue is full."""

    def __init__(self, exc: Overloaded) -> None:
        super().__init__(429, str(exc), code="rate_limit_exceeded", kind="tokens")
        self.retry_after_s = exc.retry_after_s

    def response(self, headers: Mapping[str, str] | None = None) -> JSONResponse:
        return super().response({"retry-after": str(self.retry_after_s), **(headers or {})})


async def submit(request: Request, inference: InferenceRequest, param: str) -> Event:
    """Queue the request (tokenized in a worker thread, not on the event loop) and wait for its first event; a full
    queue is a 429, a failure is raised before any answer starts."""
    try:
        await run_in_threadpool(request.app.state.engine.submit, inference, True)
    except Overloaded as exc:
        raise Busy(exc) from None
    event = await inference.events.get()
    if isinstance(event, Failed):
        raise request_error(event.error, param)
    return event


async def results(inference: InferenceRequest, first: Event, param: str) -> Results:
    """The request's results, skipping streamed text (a non-streaming request gets none)."""
    event = first
    while isinstance(event, TextDelta):
        event = await inference.events.get()
    if isinstance(event, Failed):
        raise request_error(event.error, param)
    return event.results


async def events(inference: InferenceRequest, first: Event) -> AsyncIterator[Event]:
    """Every event of the request, `first` included, up to the one that ends it."""
    event = first
    while True:
        yield event
        if not isinstance(event, TextDelta):
            return
        event = await inference.events.get()


def generated(rows: Results) -> list[Generated]:
    """The rows of a generation model's answer (chat has no other kind)."""
    return [row for row in rows if isinstance(row, Generated)]


def unsent(text: str, sent: str) -> str:
    """What a stream still owes of a row's final text: the part after what its deltas sent (all of it where the
    final text no longer starts with them, e.g. a classifier's echoed label)."""
    return text[len(sent) :] if text.startswith(sent) else text


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage(
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens
    )


def tally(rows: Results, n: int) -> Usage:
    """Each prompt counted once (a prompt asked n times is read once), every completion counted."""
    prompt = sum(r.prompt_tokens for r in rows[::n])
    completion = sum(1 if isinstance(r, Classified) else r.completion_tokens for r in rows)
    return usage(prompt, completion)


@dataclass(frozen=True)
class Reply:
    """What every chunk of one answer repeats."""

    id: str
    created: int
    model: str


def sse_event(message: BaseModel) -> bytes:
    """One server-sent event, FastAPI's framing: `data: <JSON>` and a blank line (compact JSON: one line)."""
    return format_sse_event(data_str=message.model_dump_json())


def error_event(exc: Exception, param: str) -> bytes:
    """A failure after the stream began (the status is sent by then): the error's body as one more event."""
    return sse_event(request_error(exc, param).payload())


def event_stream(chunks: AsyncIterator[bytes], served: Served, inference: InferenceRequest) -> EventSourceResponse:
    headers = {"Cache-Control": "no-cache", VERSION_HEADER: served.info.version}
    return EventSourceResponse(cancelling(chunks, inference), headers=headers)


async def cancelling(chunks: AsyncIterator[bytes], inference: InferenceRequest) -> AsyncIterator[bytes]:
    """The chunks; a stream that ends early (its client went away: Starlette cancels it, or a send fails) cancels
    the request, so its rows leave their call at the next decoding step (a no-op once the request finished)."""
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        inference.cancel()
