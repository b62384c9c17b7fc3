"""OpenAI's routes over the registered models: GET /v1/models, POST /v1/completions, POST /v1/chat/completions.

Errors have OpenAI's shape and status codes, `{"error": {"message", "type", "param", "code"}}`, so the official
clients raise their usual exceptions (openai.NotFoundError, openai.BadRequestError, ...). Other routers under /v1
(files, fine-tuning jobs) raise APIError and get the same shape from the handlers `install_error_handlers` adds.

The routes read what they share from `request.app.state`: `catalog` (catalog.Catalog), `batcher`
(batching.Batcher) and `limits` (serving.Limits).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from tuneops.inference.batching import Classified, Job, PromptTooLong, Sampling
from tuneops.registry.catalog import ModelNotFound, Served
from tuneops.serve.openai.protocol import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    ChoiceLogprobs,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionRequest,
    Delta,
    ErrorDetail,
    ErrorResponse,
    Logprobs,
    Model,
    ModelList,
    Sampled,
    TokenLogprob,
    TopLogprob,
    Usage,
)

API_PREFIX = "/v1"
VERSION_HEADER = "X-Model-Version"  # the registered version that answered, as on /predict
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for completions, for a version that states none of its own
DEFAULT_TEMPERATURE = 1.0  # OpenAI's default
ERROR_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 413: "invalid_request_error"}
NOTHING_REGISTERED = (
    "no model is registered in this server's tracking store yet: run `dvc repro` (or `tuneops demo` for the "
    "offline sample) to register one"
)

router = APIRouter(prefix=API_PREFIX, tags=["OpenAI-compatible"])


class APIError(Exception):
    """An error answered in OpenAI's shape: status, message, and which parameter (`param`) with what `code`."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None, kind: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.kind = kind or ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")

    def body(self) -> dict[str, Any]:
        detail = ErrorDetail(message=self.message, type=self.kind, param=self.param, code=self.code)
        return ErrorResponse(error=detail).model_dump()

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def is_api_path(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def validation_error(errors: list[dict[str, Any]]) -> APIError:
    """A request body that does not parse: 400 naming the first parameter at fault, as OpenAI does."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request body"}
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = loc[0] if loc else None
    where = ".".join(loc)
    if first.get("type") == "extra_forbidden":
        return APIError(400, f"Unrecognized request argument supplied: {where}", param=param, code="unknown_parameter")
    if first.get("type") == "missing":
        return APIError(400, f"Missing required parameter: '{where}'.", param=param, code="missing_required_parameter")
    message = f"Invalid value for '{where}': {str(first.get('msg', ''))[:200]}" if where else "Invalid request body"
    return APIError(400, message, param=param, code="invalid_value")


def install_error_handlers(app: FastAPI, fallback: Any) -> None:
    """OpenAI's error shape on /v1 routes; `fallback(request, exc)` answers validation errors elsewhere."""

    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if is_api_path(request.url.path):
            return validation_error(list(exc.errors())).response()
        return await fallback(request, exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if is_api_path(request.url.path):
            return APIError(exc.status_code, str(exc.detail)).response(getattr(exc, "headers", None))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        """A bug or a failing model: its type only (the message may hold paths or input), logged by the server."""
        message = f"the server failed: {type(exc).__name__}"
        if is_api_path(request.url.path):
            return APIError(500, message).response()
        return JSONResponse({"detail": message}, status_code=500)


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


@router.get("/models")
async def list_models(request: Request) -> ModelList:
    cards = await run_in_threadpool(request.app.state.catalog.cards)
    return ModelList(data=[Model(id=c.id, created=c.created) for c in cards])


@router.get("/models/{model_id:path}")
async def retrieve_model(request: Request, model_id: str) -> Model:
    cards = await run_in_threadpool(request.app.state.catalog.cards)
    for card in cards:
        if card.id == model_id:
            return Model(id=card.id, created=card.created)
    raise not_found(ModelNotFound(model_id, nothing_registered=not cards))


def check_sampled(body: Sampled, limit: int, budget: int | None) -> None:
    """The parameters every completion request shares, against what tuneops does and the server's limits."""
    if (refused := body.refused()) is not None:
        param, why = refused
        raise APIError(400, why, param=param, code="unsupported_parameter")
    if budget is not None and budget > limit:
        param = "max_completion_tokens" if getattr(body, "max_completion_tokens", None) else "max_tokens"
        raise APIError(
            400, f"{param} is {budget}, over this server's limit of {limit}", param=param, code="invalid_value"
        )


def check_text(texts: Iterable[str], param: str) -> None:
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # JSON allows "\ud800"; no tokenizer encodes it
            where = f"{param}[{i}]" if param == "prompt" else param
            message = f"{where} is not valid Unicode: a lone surrogate at character {exc.start}"
            raise APIError(400, message, param=param, code="invalid_value") from None


def sampling(
    body: Sampled, served: Served, budget: int | None, stop: list[str], logprobs: bool, echo: bool
) -> Sampling:
    settings = served.generation
    default = settings.max_new_tokens if settings is not None else DEFAULT_MAX_TOKENS
    return Sampling(
        max_tokens=budget or default,
        stop=tuple(dict.fromkeys(stop)),
        temperature=DEFAULT_TEMPERATURE if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        logprobs=logprobs,
        echo=echo,
    )


def job_error(exc: BaseException, param: str) -> APIError:
    if isinstance(exc, PromptTooLong):
        return APIError(400, str(exc), param=param, code="context_length_exceeded")
    if isinstance(exc, ValueError):
        return APIError(400, str(exc), param=param, code="invalid_value")
    return APIError(500, f"the model failed: {type(exc).__name__}")


async def first_event(request: Request, job: Job, param: str) -> tuple[Any, ...]:
    request.app.state.batcher.submit(job)
    event = await job.events.get()
    if event[0] == "error":
        raise job_error(event[1], param)
    return event


async def result(job: Job, first: tuple[Any, ...], param: str) -> list[Any]:
    """The job's results, skipping streamed text (a non-streaming job gets none)."""
    event = first
    while event[0] == "text":
        event = await job.events.get()
    if event[0] == "error":
        raise job_error(event[1], param)
    return event[1]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage(
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens
    )


def tally(rows: list[Any], n: int) -> Usage:
    """Each prompt counted once (a prompt asked n times is read once), every completion counted."""
    prompt = sum(r.prompt_tokens for r in rows[::n])
    completion = sum(1 if isinstance(r, Classified) else r.completion_tokens for r in rows)
    return usage(prompt, completion)


def classified_logprobs(row: Classified, k: int, offset: int) -> Logprobs:
    top = dict(sorted(row.logprobs.items(), key=lambda kv: -kv[1])[:k])
    return Logprobs(
        text_offset=[offset], token_logprobs=[row.logprobs[row.label]], tokens=[row.label], top_logprobs=[top]
    )


def generated_logprobs(row: Any, k: int) -> Logprobs:
    """Each generated token and its log-probability; top_logprobs holds the chosen token only (tuneops's
    generate keeps no alternatives)."""
    tokens, lps = list(row.tokens or []), list(row.token_logprobs or [])
    offsets, at = [], 0
    for token in tokens:
        offsets.append(at)
        at += len(token)
    top = [{t: lp} if k > 0 and lp is not None else None for t, lp in zip(tokens, lps, strict=False)]
    return Logprobs(text_offset=offsets, token_logprobs=lps, tokens=tokens, top_logprobs=top)


def completion_text(row: Any, prompt: str, echo: bool) -> str:
    if isinstance(row, Classified):
        return prompt + row.label if echo else row.label
    return row.text  # generate() put the prompt in front itself when asked to echo


def completion_choice(i: int, row: Any, prompt: str, body: CompletionRequest) -> CompletionChoice:
    logprobs = None
    if body.logprobs is not None:
        logprobs = (
            classified_logprobs(row, body.logprobs, len(prompt) if body.echo else 0)
            if isinstance(row, Classified)
            else generated_logprobs(row, body.logprobs)
        )
    finish = "stop" if isinstance(row, Classified) else row.finish_reason
    return CompletionChoice(
        index=i, text=completion_text(row, prompt, bool(body.echo)), logprobs=logprobs, finish_reason=finish
    )


@router.post("/completions", response_model=Completion)
async def completions(request: Request, body: CompletionRequest, response: Response) -> Any:
    """OpenAI's Completions: text for each prompt (a generation model) or its label (a classification model)."""
    limits = request.app.state.limits
    check_sampled(body, limits.max_tokens_limit, body.max_tokens)
    prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
    check_text(prompts, "prompt")
    n = body.n or 1
    if len(prompts) * n > limits.max_texts:
        raise APIError(
            400,
            f"{len(prompts)} prompts x n={n} is over this server's limit of {limits.max_texts} completions a request",
            param="prompt",
            code="invalid_value",
        )
    served = await resolve(request, body.model)
    plan = None
    if served.generates:
        default_stop = served.generation.stop if served.generation is not None else []
        stop = body.stops() if body.stop is not None else default_stop
        plan = sampling(body, served, body.max_tokens, stop, body.logprobs is not None, bool(body.echo))
    rows = [p for p in prompts for _ in range(n)]
    job = Job(served, rows, plan, asyncio.get_running_loop(), stream=bool(body.stream))
    first = await first_event(request, job, "prompt")
    response.headers[VERSION_HEADER] = served.info.version
    reply = Reply(new_id("cmpl"), int(time.time()), body.model)
    if body.stream:
        include = bool(body.stream_options and body.stream_options.include_usage)
        return sse(stream_completion(reply, job, first, rows, body, n, include), served)
    results = await result(job, first, "prompt")
    choices = [completion_choice(i, row, rows[i], body) for i, row in enumerate(results)]
    return Completion(id=reply.id, created=reply.created, model=reply.model, choices=choices, usage=tally(results, n))


class Reply:
    """What every chunk of one answer repeats."""

    def __init__(self, id: str, created: int, model: str) -> None:
        self.id, self.created, self.model = id, created, model


def sse(events: AsyncIterator[str], served: Served) -> StreamingResponse:
    headers = {"Cache-Control": "no-cache", VERSION_HEADER: served.info.version}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


def data(obj: Any) -> str:
    """One server-sent event: `data: <JSON>` and a blank line."""
    return f"data: {obj.model_dump_json()}\n\n"


async def stream_events(job: Job, first: tuple[Any, ...]) -> AsyncIterator[tuple[Any, ...]]:
    event = first
    while True:
        yield event
        if event[0] != "text":
            return
        event = await job.events.get()


async def stream_completion(
    reply: Reply, job: Job, first: tuple[Any, ...], rows: list[str], body: CompletionRequest, n: int, include: bool
) -> AsyncIterator[str]:
    sent = [""] * len(rows)

    def chunk(choices: list[CompletionChoice], use: Usage | None = None) -> str:
        return data(Completion(id=reply.id, created=reply.created, model=reply.model, choices=choices, usage=use))

    async for event in stream_events(job, first):
        if event[0] == "text":
            _, i, delta = event
            sent[i] += delta
            yield chunk([CompletionChoice(index=i, text=delta, finish_reason=None)])
        elif event[0] == "error":
            yield f"data: {_json(job_error(event[1], 'prompt').body())}\n\n"
        else:
            results = event[1]
            for i, row in enumerate(results):
                final = completion_choice(i, row, rows[i], body)
                rest = final.text[len(sent[i]) :] if final.text.startswith(sent[i]) else final.text
                yield chunk([final.model_copy(update={"text": rest})])
            if include:
                yield chunk([], tally(results, n))
    yield "data: [DONE]\n\n"


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def chat_messages(body: ChatCompletionRequest) -> list[dict[str, str]]:
    """OpenAI's messages as the chat template takes them (`developer` is the newer name for `system`)."""
    roles = {"developer": "system"}
    return [{"role": roles.get(m.role, m.role), "content": m.text()} for m in body.messages]


def chat_logprobs(row: Any, top: int) -> ChoiceLogprobs:
    content = [
        TokenLogprob(token=t, logprob=lp, top_logprobs=[TopLogprob(token=t, logprob=lp)] if top else [])
        for t, lp in zip(row.tokens or [], row.token_logprobs or [], strict=False)
        if lp is not None
    ]
    return ChoiceLogprobs(content=content)


@router.post("/chat/completions", response_model=ChatCompletion)
async def chat_completions(request: Request, body: ChatCompletionRequest, response: Response) -> Any:
    """OpenAI's Chat Completions for a generation model, its messages rendered with the version's chat template."""
    from tuneops.data.templates import chat_prompt

    limits = request.app.state.limits
    budget = body.token_budget()
    check_sampled(body, limits.max_tokens_limit, budget)
    check_text([m.text() for m in body.messages], "messages")
    served = await resolve(request, body.model)
    if not served.generates:
        message = f"`{body.model}` is a classification model, not a chat model: use POST /v1/completions"
        raise APIError(404, message, param="model", code="model_not_supported")
    if served.generation is None or served.generation.chat_template is None:
        raise APIError(400, f"`{body.model}` has no chat template", param="model", code="model_not_supported")
    try:
        prompt, turn_end = chat_prompt(chat_messages(body), served.generation.chat_template)
    except ValueError as exc:
        raise APIError(400, str(exc), param="messages", code="invalid_value") from None
    n = body.n or 1
    stop = turn_end + (body.stops() if body.stop is not None else list(served.generation.stop))
    plan = sampling(body, served, budget, stop, bool(body.logprobs), False)
    job = Job(served, [prompt] * n, plan, asyncio.get_running_loop(), stream=bool(body.stream))
    first = await first_event(request, job, "messages")
    response.headers[VERSION_HEADER] = served.info.version
    reply = Reply(new_id("chatcmpl"), int(time.time()), body.model)
    if body.stream:
        include = bool(body.stream_options and body.stream_options.include_usage)
        return sse(stream_chat(reply, job, first, n, include), served)
    results = await result(job, first, "messages")
    choices = [
        ChatChoice(
            index=i,
            message=ChatMessage(content=row.text),
            logprobs=chat_logprobs(row, body.top_logprobs or 0) if body.logprobs else None,
            finish_reason=row.finish_reason,
        )
        for i, row in enumerate(results)
    ]
    return ChatCompletion(
        id=reply.id, created=reply.created, model=reply.model, choices=choices, usage=tally(results, n)
    )


async def stream_chat(reply: Reply, job: Job, first: tuple[Any, ...], n: int, include: bool) -> AsyncIterator[str]:
    sent = [""] * n

    def chunk(choices: list[ChunkChoice], use: Usage | None = None) -> str:
        return data(
            ChatCompletionChunk(id=reply.id, created=reply.created, model=reply.model, choices=choices, usage=use)
        )

    yield chunk([ChunkChoice(index=i, delta=Delta(role="assistant", content="")) for i in range(n)])
    async for event in stream_events(job, first):
        if event[0] == "text":
            _, i, delta = event
            sent[i] += delta
            yield chunk([ChunkChoice(index=i, delta=Delta(content=delta))])
        elif event[0] == "error":
            yield f"data: {_json(job_error(event[1], 'messages').body())}\n\n"
        else:
            for i, row in enumerate(event[1]):
                rest = row.text[len(sent[i]) :] if row.text.startswith(sent[i]) else row.text
                if rest:
                    yield chunk([ChunkChoice(index=i, delta=Delta(content=rest))])
                yield chunk([ChunkChoice(index=i, delta=Delta(), finish_reason=row.finish_reason)])
            if include:
                yield chunk([], tally(event[1], n))
    yield "data: [DONE]\n\n"
