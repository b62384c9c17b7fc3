"""Who may call the server: loopback by default; any other address needs an API key (TUNEOPS_API_KEY), checked
as `Authorization: Bearer <key>` on every route but /health."""

from __future__ import annotations

import hmac
import ipaddress
import os

from starlette.types import ASGIApp, Receive, Scope, Send

from tuneops.config.errors import UserError
from tuneops.serve.errors import header, refuse

API_KEY_ENV = "TUNEOPS_API_KEY"


OPEN_PATHS = frozenset({"/health"})  # what a load balancer probes without a key


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
        scheme, _, token = (header(scope, b"authorization") or "").partition(" ")
        # compare_digest: the time taken must not tell an attacker how much of a guess was right
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._key)


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
