"""HTTP serving of registered models: OpenAI's API (GET and DELETE /v1/models, POST /v1/completions,
POST /v1/chat/completions; tuneops/serve/openai/) for every registered version and every checkpoint of the jobs that
registered one (the Catalog's `root`), and POST /predict, GET /health for the default model.

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
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from tuneops.config.errors import UserError
from tuneops.inference.batching import Batcher, Classified, Failed, Finished, InferenceRequest
from tuneops.inference.engine import BuiltinEngine, Engine
from tuneops.registry.catalog import Catalog, ModelNotFound
from tuneops.registry.holder import ModelHolder
from tuneops.registry.served import ModelInfo, Served
from tuneops.serve.auth import BearerAuth
from tuneops.serve.errors import install_error_handlers
from tuneops.serve.finetuning.routes import router as finetune_router
from tuneops.serve.limits import BodyLimit, Limits, check_texts, short_errors
from tuneops.serve.openai.common import NOTHING_REGISTERED, VERSION_HEADER
from tuneops.serve.openai.routes import router as openai_router
from tuneops.serve.predict import PredictRequest, PredictResponse, prediction

if TYPE_CHECKING:
    from tuneops.config.params import RegisterParams

__all__ = ["ModelHolder", "ModelInfo", "Served", "create_app", "serve"]

log = logging.getLogger("tuneops.serve")


class HealthResponse(BaseModel):
    status: str
    model: ModelInfo | None
    labels: list[str]


class Batching(BaseModel):
    window_ms: float = Field(default=50.0, ge=0)
    max_batch_size: int = Field(default=32, gt=0)


def create_app(
    catalog: Catalog,
    default_model: str,
    limits: Limits | None = None,
    *,
    batching: Batching | None = None,
    api_key: str | None = None,
    engine: Callable[[BuiltinEngine], Engine] | None = None,
) -> FastAPI:
    """The app answering for every model of `catalog`; /predict and /health with `default_model` (an id).
    `engine`: what the OpenAI routes hand requests to, made around the built-in engine (vLLM's: serve.engine)."""
    limits, batching = limits or Limits(), batching or Batching()
    batcher = Batcher(batching.window_ms / 1000, batching.max_batch_size, max_queued_tokens=limits.max_queued_tokens)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.engine.close()

    app = FastAPI(title="tuneops", description="Registered models, over OpenAI's API and /predict.", lifespan=lifespan)
    app.state.catalog, app.state.batcher, app.state.limits = catalog, batcher, limits
    app.state.engine = BuiltinEngine(batcher) if engine is None else engine(BuiltinEngine(batcher))
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
