"""HTTP serving of registered models: OpenAI's API (GET /v1/models, POST /v1/completions, POST /v1/chat/completions;
tuneops/serve/openai/) for every registered version, and POST /predict, GET /health for the default model.

    tuneops serve --port 8000

The default model is the register.alias (champion) of params.yaml's register.model_name, or a pinned
--model-version. Versions load from the MLflow registry on first use into a bounded LRU cache, and an alias is
followed: at most every --refresh-seconds the server asks the registry where it points and swaps in a moved
alias's version once loaded (tuneops/registry/catalog.py). Every /predict answer names the version that gave it
(`"model"` in the body, `X-Model-Version` in the headers).

Concurrent requests are batched (tuneops/inference/batching.py): one worker thread owns the models and runs one
forward pass for what arrived within serve.batch_window_ms, up to serve.max_batch_size rows.

Binds 127.0.0.1 by default. Any other address needs an API key in TUNEOPS_API_KEY, and then every route but
/health needs `Authorization: Bearer <key>`. A body over serve.max_body_bytes is refused with a 413 before it is
read in full; too many texts or a text too long get a 413 saying which limit; a text that is not valid Unicode a
400 naming it. No error repeats the input. Errors on /v1 routes have OpenAI's shape (tuneops/serve/errors.py).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import math
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tuneops.config.errors import UserError
from tuneops.inference.batching import Batcher, Classified, Failed, Finished, InferenceRequest
from tuneops.registry.catalog import Catalog, ModelHolder, ModelInfo, ModelNotFound, Served
from tuneops.serve.errors import APIError, install_error_handlers, is_api_path
from tuneops.serve.finetuning.routes import router as finetune_router
from tuneops.serve.openai.common import NOTHING_REGISTERED, VERSION_HEADER
from tuneops.serve.openai.routes import router as openai_router

if TYPE_CHECKING:
    from tuneops.config.params import RegisterParams

__all__ = ["ModelHolder", "ModelInfo", "Served", "create_app", "serve"]

log = logging.getLogger("tuneops.serve")

API_KEY_ENV = "TUNEOPS_API_KEY"
OPEN_PATHS = frozenset({"/health"})  # what a load balancer probes without a key
MAX_ERRORS_SHOWN = 10  # a 1 MiB list of numbers is 500k validation errors; a few say what is wrong


class PredictRequest(BaseModel):
    texts: list[str] = Field(description="texts to classify", min_length=1)


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float]


class PredictResponse(BaseModel):
    model: ModelInfo
    predictions: list[Prediction]


class HealthResponse(BaseModel):
    status: str
    model: ModelInfo | None
    labels: list[str]


class Limits(BaseModel):
    """What one request may ask (params.yaml `serve:` and the command line)."""

    max_texts: int = Field(default=256, gt=0)
    max_chars: int = Field(default=2000, gt=0)
    max_body_bytes: int = Field(default=1 << 20, gt=0)
    max_upload_bytes: int = Field(default=512 << 20, gt=0)  # POST /v1/files: training files run larger
    max_tokens_limit: int = Field(default=512, gt=0)


class Batching(BaseModel):
    window_ms: float = Field(default=50.0, ge=0)
    max_batch_size: int = Field(default=32, gt=0)


def refuse(
    scope: Scope, status: int, message: str, code: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """A refusal before the app runs: OpenAI's error shape on /v1 routes, `{"detail": ...}` elsewhere."""
    if is_api_path(scope["path"]):
        return APIError(status, message, code=code).response(headers)
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


UPLOAD_PATH = "/v1/files"


class BodyTooLarge(HTTPException):
    """Starlette's HTTPException: FastAPI re-raises that from its body parsing (anything else there becomes a 400),
    and the app's handler renders it as a plain 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body over {max_bytes} bytes; send smaller batches")


class BodyLimit:
    """Refuses a body over its cap with 413 before the app reads it in full: at once when Content-Length says
    so, and as soon as the count passes the cap when the body streams in chunks. Uploads to UPLOAD_PATH (training
    files) have a cap of their own."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_upload_bytes: int | None = None) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.max_upload_bytes = max_upload_bytes or max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.max_upload_bytes if scope["path"].rstrip("/") == UPLOAD_PATH else self.max_bytes
        refusal = self._refusal(_header(scope, b"content-length"), cap)
        if refusal is not None:
            await refuse(scope, refusal.status_code, refusal.detail)(scope, receive, send)
            return
        await self.app(scope, self._counting(receive, cap), send)

    def _refusal(self, declared: str | None, cap: int) -> HTTPException | None:
        if declared is not None and not declared.isdigit():
            return HTTPException(400, "Content-Length is not a number")
        if declared is not None and int(declared) > cap:
            return BodyTooLarge(cap)
        return None

    def _counting(self, receive: Receive, cap: int) -> Receive:
        """`receive`, raising once the body so far passes the cap (a chunked body declares no length)."""
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > cap:
                raise BodyTooLarge(cap)
            return message

        return counted


class BearerAuth:
    """Every route but OPEN_PATHS needs `Authorization: Bearer <key>`; checked before any body is read."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app, self._key = app, api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        detail = f"missing or wrong API key: send Authorization: Bearer <the key in {API_KEY_ENV}>"
        response = refuse(scope, 401, detail, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        scheme, _, token = (_header(scope, b"authorization") or "").partition(" ")
        # compare_digest: the time taken must not tell an attacker how much of a guess was right
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._key)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


def short_errors(errors: Sequence[Mapping[str, object]]) -> dict[str, object]:
    """Where and what, never the input: FastAPI's default 422 repeats it, twice for a union body."""
    shown = [
        {
            "loc": [part if isinstance(part, int) else str(part)[:100] for part in _location(e)],
            "msg": str(e.get("msg", ""))[:200],
        }
        for e in errors[:MAX_ERRORS_SHOWN]
    ]
    more = len(errors) - len(shown)
    return {"detail": shown, **({"more_errors": more} if more > 0 else {})}


def _location(error: Mapping[str, object]) -> tuple[object, ...]:
    loc = error.get("loc", ())
    return tuple(loc) if isinstance(loc, (tuple, list)) else ()


def check_texts(texts: list[str], limits: Limits) -> None:
    """The request's texts within the limits, each encodable as UTF-8: an HTTPException saying which otherwise."""
    if not texts:
        raise HTTPException(422, "no texts: send a non-empty JSON list of strings")
    if len(texts) > limits.max_texts:
        raise HTTPException(413, f"too many texts: {len(texts)} > {limits.max_texts}; send smaller batches")
    longest = max(range(len(texts)), key=lambda i: len(texts[i]))
    if len(texts[longest]) > limits.max_chars:
        raise HTTPException(413, f"text {longest} is too long: {len(texts[longest])} characters > {limits.max_chars}")
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # JSON allows "\ud800"; the tokenizer cannot encode it
            raise HTTPException(
                400, f"text {i} is not valid Unicode: a lone surrogate at character {exc.start}"
            ) from None


def create_app(
    catalog: Catalog,
    default_model: str,
    limits: Limits | None = None,
    *,
    batching: Batching | None = None,
    api_key: str | None = None,
) -> FastAPI:
    """The app answering for every model of `catalog`; /predict and /health with `default_model` (an id)."""
    limits, batching = limits or Limits(), batching or Batching()
    batcher = Batcher(batching.window_ms / 1000, batching.max_batch_size)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        batcher.close()

    app = FastAPI(title="tuneops", description="Registered models, over OpenAI's API and /predict.", lifespan=lifespan)
    app.state.catalog, app.state.batcher, app.state.limits = catalog, batcher, limits
    app.state.default_model, app.state.secured = default_model, api_key is not None
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes, max_upload_bytes=limits.max_upload_bytes)
    if api_key is not None:
        app.add_middleware(BearerAuth, api_key=api_key)  # added last, so outermost: no key, nothing read

    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(short_errors(list(exc.errors())), status_code=422)

    install_error_handlers(app, validation_error)
    app.include_router(openai_router)
    app.include_router(finetune_router)  # files and fine-tuning jobs (tuneops.finetune_api)

    async def default() -> Served:
        try:
            return await run_in_threadpool(catalog.get, default_model)
        except ModelNotFound as exc:
            what = NOTHING_REGISTERED if exc.nothing_registered else f"no registered version answers to {default_model}"
            raise HTTPException(503 if exc.nothing_registered else 404, what) from None

    @app.get("/health")
    async def health(response: Response) -> HealthResponse:
        """The default model and its labels; no paths. 503 while nothing is registered."""
        now = await default()
        response.headers[VERSION_HEADER] = now.info.version
        return HealthResponse(status="ok", model=now.info, labels=now.labels)

    @app.post("/predict")
    async def predict(request: PredictRequest | list[str], response: Response) -> PredictResponse:
        """A JSON list of texts, or {"texts": [...]}: a label and class probabilities for each."""
        texts = request.texts if isinstance(request, PredictRequest) else request
        check_texts(texts, limits)
        now = await default()
        if now.generates:
            raise HTTPException(400, f"{default_model} generates text: use POST /v1/completions")
        response.headers[VERSION_HEADER] = now.info.version
        inference = InferenceRequest(now, texts, None, asyncio.get_running_loop(), truncate=True)
        batcher.submit(inference)
        event = await inference.events.get()
        if isinstance(event, Failed):
            raise event.error
        rows = event.results if isinstance(event, Finished) else []  # classification streams no text
        return PredictResponse(model=now.info, predictions=[prediction(r) for r in rows if isinstance(r, Classified)])

    return app


def prediction(row: Classified) -> Prediction:
    probabilities = {label: round(math.exp(lp), 6) for label, lp in row.logprobs.items()}
    return Prediction(label=row.label, probabilities=probabilities)


def is_loopback(host: str) -> bool:
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def api_key_from_env() -> str | None:
    return os.environ.get(API_KEY_ENV, "").strip() or None


def check_exposure(host: str, api_key: str | None) -> None:
    """Anything beyond loopback is reachable from other machines: only with an API key."""
    if api_key is None and not is_loopback(host):
        raise UserError(
            f"--host {host} is reachable from other machines: set {API_KEY_ENV} to an API key "
            "(clients then send `Authorization: Bearer <key>`), or bind 127.0.0.1"
        )


def default_model_id(register: RegisterParams, version: int | None) -> str:
    """/predict's model: a pinned version, or the alias (champion) of params.yaml's model."""
    return f"{register.model_name}:{version}" if version is not None else f"{register.model_name}@{register.alias}"


def warm_up(catalog: Catalog, default_model: str, pinned: bool) -> Served | None:
    """Load the default model before serving; a pinned version that does not exist stops here."""
    try:
        return catalog.get(default_model)
    except ModelNotFound as exc:
        if pinned:
            raise UserError(
                f"{default_model}: no such registered version (`tuneops status` shows the champion)"
            ) from None
        why = NOTHING_REGISTERED if exc.nothing_registered else f"{default_model} points at no version yet"
        log.warning("serving anyway: %s", why)
        return None


def serve(app: FastAPI, host: str, port: int, refresh_seconds: float) -> None:
    import uvicorn

    access = "API key required except on /health" if app.state.secured else "no API key (loopback only)"
    log.info(
        "serving every registered model (default %s; aliases checked every %g s) on http://%s:%d/v1; %s",
        app.state.default_model,
        refresh_seconds,
        host,
        port,
        access,
    )
    uvicorn.run(app, host=host, port=port, log_level="info")
