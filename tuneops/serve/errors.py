"""The whole app's error answers: OpenAI's shape on the /v1 routes, FastAPI's `{"detail": ...}` elsewhere.

OpenAI's shape and status codes, `{"error": {"message", "type", "param", "code"}}`, let the official clients
raise their usual exceptions (openai.NotFoundError, openai.BadRequestError, ...). Every router under /v1 (the
OpenAI routes, files, fine-tuning jobs) raises APIError; the handlers `install_error_handlers` adds render it,
and turn validation errors, HTTPExceptions and crashes on /v1 paths into the same shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import Scope

from tuneops.serve.openai.protocol import ErrorDetail, ErrorResponse

API_PREFIX = "/v1"
ERROR_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 413: "invalid_request_error"}

ValidationFallback = Callable[[Request, RequestValidationError], Awaitable[JSONResponse]]


class APIError(Exception):
    """An error answered in OpenAI's shape: status, message, and which parameter (`param`) with what `code`."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None, kind: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.kind = kind or ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")

    def payload(self) -> ErrorResponse:
        return ErrorResponse(error=ErrorDetail(message=self.message, type=self.kind, param=self.param, code=self.code))

    def body(self) -> dict[str, object]:
        return self.payload().model_dump()

    def response(self, headers: Mapping[str, str] | None = None) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def is_api_path(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def validation_error(errors: Sequence[Mapping[str, object]]) -> APIError:
    """A request body that does not parse: 400 naming the first parameter at fault, as OpenAI does."""
    first: Mapping[str, object] = errors[0] if errors else {"loc": (), "msg": "invalid request body"}
    loc = [str(part) for part in _parts(first.get("loc")) if part != "body"]
    param = loc[0] if loc else None
    where = ".".join(loc)
    if first.get("type") == "extra_forbidden":
        return APIError(400, f"Unrecognized request argument supplied: {where}", param=param, code="unknown_parameter")
    if first.get("type") == "missing":
        return APIError(400, f"Missing required parameter: '{where}'.", param=param, code="missing_required_parameter")
    message = f"Invalid value for '{where}': {str(first.get('msg', ''))[:200]}" if where else "Invalid request body"
    return APIError(400, message, param=param, code="invalid_value")


def _parts(loc: object) -> tuple[object, ...]:
    """A validation error's location, ("body", "messages", 0, "content"); () when it has none."""
    return tuple(loc) if isinstance(loc, (tuple, list)) else ()


def install_error_handlers(app: FastAPI, fallback: ValidationFallback) -> None:
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
            return APIError(exc.status_code, str(exc.detail)).response(exc.headers)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        """A bug or a failing model: its type only (the message may hold paths or input), logged by the server."""
        message = f"the server failed: {type(exc).__name__}"
        if is_api_path(request.url.path):
            return APIError(500, message).response()
        return JSONResponse({"detail": message}, status_code=500)


def refuse(
    scope: Scope, status: int, message: str, code: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """A refusal before the app runs: OpenAI's error shape on /v1 routes, `{"detail": ...}` elsewhere."""
    if is_api_path(scope["path"]):
        return APIError(status, message, code=code).response(headers)
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def header(scope: Scope, name: bytes) -> str | None:
    """A request header from the raw ASGI scope (middleware runs before FastAPI parses anything)."""
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None
