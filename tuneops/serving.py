"""HTTP serving of the champion: POST /predict (a JSON list of texts), GET /health.

    tuneops serve --port 8000

Serving the alias, the server asks the registry at most every --refresh-seconds which version the alias points
at and swaps in a new one once it has loaded; a pinned --model-version never moves. Every answer names the version
that gave it (`"model"` in the body, `X-Model-Version` in the headers).

Binds 127.0.0.1 by default. Any other address needs an API key in TUNEOPS_API_KEY, and then every route but
/health needs `Authorization: Bearer <key>`. A body over --max-body-bytes is refused with a 413 before it is
read in full; too many texts or a text too long get a 413 saying which limit; a text that is not valid Unicode a
400 naming it. No error repeats the input.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tuneops.errors import UserError
from tuneops.modeling import predict_texts
from tuneops.params import RegisterParams
from tuneops.runner import redact

log = logging.getLogger("tuneops.serve")

API_KEY_ENV = "TUNEOPS_API_KEY"
VERSION_HEADER = "X-Model-Version"
OPEN_PATHS = frozenset({"/health"})  # what a load balancer probes without a key
MAX_ERRORS_SHOWN = 10  # a 1 MiB list of numbers is 500k validation errors; a few say what is wrong


class ModelInfo(BaseModel):
    """The registered version that answered a request."""

    name: str
    version: str
    alias: str | None = Field(description="the alias followed, or null for a pinned --model-version")
    model_uri: str = Field(description="the exact version, models:/<name>/<version>")


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
    model: ModelInfo
    labels: list[str]


class Limits(BaseModel):
    max_texts: int = Field(default=256, gt=0)
    max_chars: int = Field(default=2000, gt=0)
    max_body_bytes: int = Field(default=1 << 20, gt=0)


@dataclass(frozen=True)
class Served:
    """A loaded version: what predicts and what it is. Requests take one and use it throughout, so a swap
    mid-request never mixes one version's model with another's name."""

    model: Any
    tokenizer: Any
    info: ModelInfo

    @property
    def labels(self) -> list[str]:
        return [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]


VersionLookup = Callable[[], str | None]  # the version the alias points at now, None when it points nowhere
VersionLoader = Callable[[str], Served]


class ModelHolder:
    """The version that answers. Following an alias, one request at a time checks it (at most every
    `refresh_seconds`) and loads a moved alias's version; the others keep answering with the current one
    meanwhile, and a failed lookup or load keeps it too."""

    def __init__(
        self,
        served: Served,
        lookup: VersionLookup | None = None,
        load: VersionLoader | None = None,
        refresh_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (lookup is None) != (load is None):
            raise ValueError("following an alias needs both a version lookup and a loader")
        if refresh_seconds < 0:
            raise ValueError(f"refresh_seconds must be >= 0, not {refresh_seconds}")
        self._served, self._lookup, self._load = served, lookup, load
        self._refresh_seconds, self._clock = refresh_seconds, clock
        self._lock = threading.Lock()
        self._checking = False
        self._checked_at = clock()

    @property
    def served(self) -> Served:
        """The version answering now, without checking the alias."""
        return self._served

    def current(self) -> Served:
        """The version to answer this request with, after the alias check when one is due."""
        if self._lookup is None or not self._claim_check():
            return self._served
        try:
            self._check()
        finally:
            with self._lock:
                self._checking = False
        return self._served

    def _claim_check(self) -> bool:
        """True for the one request that does a due check; a lookup per request would hammer the registry."""
        with self._lock:
            now = self._clock()
            if self._checking or now - self._checked_at < self._refresh_seconds:
                return False
            self._checking, self._checked_at = True, now
            return True

    def _check(self) -> None:
        old = self._served.info
        try:
            version = self._lookup()
        except Exception as exc:  # the registry being down must not take serving down with it
            log.warning("keeping version %s: looking up alias %s failed: %s", old.version, old.alias, _why(exc))
            return
        if version is None:
            log.warning("keeping version %s: alias %s points at no version", old.version, old.alias)
            return
        if version == old.version:
            return
        log.info("alias %s moved from version %s to %s: loading it", old.alias, old.version, version)
        try:
            new = self._load(version)  # no lock held: other requests keep answering with the old version
        except Exception as exc:
            log.warning("keeping version %s: loading version %s failed: %s", old.version, version, _why(exc))
            return
        self._served = new  # one reference swap: a request sees the old version or the new one, never a mix
        log.info("now serving %s", new.info.model_uri)


def _why(exc: BaseException) -> str:
    """An exception as one log line, with any credentials in a tracking URI masked."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return redact(f"{type(exc).__name__}: {first}")


class BodyTooLarge(HTTPException):
    """Starlette's HTTPException: FastAPI re-raises that from its body parsing (anything else there becomes a 400),
    and the app's handler renders it as a plain 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body over {max_bytes} bytes; send smaller batches")


class BodyLimit:
    """Refuses a body over `max_bytes` with 413 before the app reads it in full: at once when Content-Length says
    so, and as soon as the count passes the cap when the body streams in chunks."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(_header(scope, b"content-length"))
        if refusal is not None:
            await JSONResponse({"detail": refusal.detail}, status_code=refusal.status_code)(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _refusal(self, declared: str | None) -> HTTPException | None:
        if declared is not None and not declared.isdigit():
            return HTTPException(400, "Content-Length is not a number")
        if declared is not None and int(declared) > self.max_bytes:
            return BodyTooLarge(self.max_bytes)
        return None

    def _counting(self, receive: Receive) -> Receive:
        """`receive`, raising once the body so far passes the cap (a chunked body declares no length)."""
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)
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
        response = JSONResponse({"detail": detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
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


def short_errors(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """Where and what, never the input: FastAPI's default 422 repeats it, twice for a union body."""
    shown = [
        {
            "loc": [part if isinstance(part, int) else str(part)[:100] for part in e.get("loc", ())],
            "msg": str(e.get("msg", ""))[:200],
        }
        for e in errors[:MAX_ERRORS_SHOWN]
    ]
    more = len(errors) - len(shown)
    return {"detail": shown, **({"more_errors": more} if more > 0 else {})}


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
    served: Served,
    limits: Limits | None = None,
    *,
    lookup: VersionLookup | None = None,
    load: VersionLoader | None = None,
    refresh_seconds: float = 30.0,
    api_key: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The app answering with `served`; with `lookup` and `load`, following the alias they read."""
    limits = limits or Limits()
    models = ModelHolder(served, lookup, load, refresh_seconds, clock)
    app = FastAPI(title="tuneops", description="Sentiment of texts, from the registered champion.")
    app.state.models = models
    app.state.secured = api_key is not None
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    if api_key is not None:
        app.add_middleware(BearerAuth, api_key=api_key)  # added last, so outermost: no key, nothing read

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(short_errors(list(exc.errors())), status_code=422)

    @app.get("/health")
    def health(response: Response) -> HealthResponse:
        now = models.current()
        response.headers[VERSION_HEADER] = now.info.version
        return HealthResponse(status="ok", model=now.info, labels=now.labels)

    @app.post("/predict")
    def predict(request: PredictRequest | list[str], response: Response) -> PredictResponse:
        """A JSON list of texts, or {"texts": [...]}: a label and class probabilities for each."""
        texts = request.texts if isinstance(request, PredictRequest) else request
        check_texts(texts, limits)
        now = models.current()
        response.headers[VERSION_HEADER] = now.info.version
        results = predict_texts(now.model, now.tokenizer, texts, now.tokenizer.model_max_length)
        return PredictResponse(model=now.info, predictions=[Prediction(**r) for r in results])

    return app


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


def registry_loader(register: RegisterParams, alias: str | None) -> VersionLoader:
    """Loads a version by number, so what is reported is exactly what was loaded even if the alias moves again."""
    from tuneops.registry import load_registered, model_uri

    def load(version: str) -> Served:
        model, tokenizer = load_registered(register, int(version))
        uri = model_uri(register, int(version))
        return Served(
            model, tokenizer, ModelInfo(name=register.model_name, version=version, alias=alias, model_uri=uri)
        )

    return load


def alias_lookup(register: RegisterParams) -> VersionLookup:
    """The version the alias points at, in one registry call (`champion` would fetch its run's metrics too).
    A registry that does not answer raises (TransientError): the caller keeps what it serves."""
    from mlflow import MlflowClient

    from tuneops.params import tracking_uri
    from tuneops.registry import alias_version

    client = MlflowClient(tracking_uri(register))

    def lookup() -> str | None:
        version = alias_version(register, client)
        return None if version is None else str(version.version)

    return lookup


def registry_source(
    register: RegisterParams, version: int | None
) -> tuple[Served, VersionLookup | None, VersionLoader | None]:
    """The version to start with and, serving the alias, how to follow it; a pinned version never moves."""
    from tuneops.registry import model_uri

    if version is not None:
        return registry_loader(register, None)(str(version)), None, None
    lookup = alias_lookup(register)
    current = lookup()
    if current is None:
        raise UserError(f"{model_uri(register)}: no version has that alias (run `dvc repro` to register a model)")
    load = registry_loader(register, register.alias)
    return load(current), lookup, load


def serve(app: FastAPI, host: str, port: int, refresh_seconds: float) -> None:
    import uvicorn

    info = app.state.models.served.info
    following = f"following alias {info.alias}, checked every {refresh_seconds:g} s" if info.alias else "pinned"
    access = "API key required except on /health" if app.state.secured else "no API key (loopback only)"
    log.info("serving %s (%s) on http://%s:%d; %s", info.model_uri, following, host, port, access)
    uvicorn.run(app, host=host, port=port, log_level="info")
