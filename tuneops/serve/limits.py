"""What one request may cost: body size (uploads have their own cap), texts per request and their length, and
validation errors cut to the few that say what is wrong."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tuneops.serve.errors import header, refuse

MAX_ERRORS_SHOWN = 10  # a 1 MiB list of numbers is 500k validation errors; a few say what is wrong


class Limits(BaseModel):
    """What one request may ask (params.yaml `serve:` and the command line)."""

    max_texts: int = Field(default=256, gt=0)
    max_chars: int = Field(default=2000, gt=0)
    max_body_bytes: int = Field(default=1 << 20, gt=0)
    max_upload_bytes: int = Field(default=512 << 20, gt=0)  # POST /v1/files: training files run larger
    max_tokens_limit: int = Field(default=512, gt=0)
    max_queued_tokens: int | None = Field(default=None, gt=0)  # the batcher's queue (None: unbounded)


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
        refusal = self._refusal(header(scope, b"content-length"), cap)
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
