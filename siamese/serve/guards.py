"""What every request passes before a route: BodyLimit (413 for a body over the limit, 408 for one
that stalls, both while it streams in) and RequestGuard (loopback Host names, no POST from another
site's page, the bearer token). Plain ASGI middleware: no per-request framework cost."""

from __future__ import annotations

import asyncio
import hmac
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse

from .errors import Unauthorized

OPEN_PATHS = ("/", "/health", "/docs", "/openapi.json")  # and /static/*, /docs-assets/*: no token needed
BODY_TIMEOUT_SECONDS = 30  # a request body that stalls longer is answered 408 (a stalled client holds a socket)


class _BodyTooLarge(Exception):
    pass


class _BodyTooSlow(Exception):
    pass


class BodyLimit:
    """Answer 413 to a request body over `max_bytes`, by its Content-Length or while it streams in: a
    large upload is never read whole."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = f"the request body is larger than this server's limit of {self.max_bytes / 2**20:g} MB " \
                "(--max-upload-mb)"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            refusal = (413, limit) if declared.isdigit() else (400, "invalid Content-Length")
            return await error_response(*refusal)(scope, receive, send)
        received, started = 0, False

        async def counted_receive():
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), BODY_TIMEOUT_SECONDS)
            except asyncio.TimeoutError:
                raise _BodyTooSlow from None
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _BodyTooLarge
            return message

        async def watched_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except _BodyTooLarge:
            if not started:
                await error_response(413, limit)(scope, receive, send)
        except _BodyTooSlow:
            if not started:
                slow = f"the request body did not arrive within {BODY_TIMEOUT_SECONDS} s; send it whole"
                await error_response(408, slow)(scope, receive, send)


class RequestGuard:
    """Before any route: a loopback server answers only requests addressed to a loopback name (no
    DNS rebinding); a POST another site's page sends is refused (browsers say so in Origin /
    Sec-Fetch-Site); with a token, everything but the page, its assets, /health and the API
    description needs `Authorization: Bearer TOKEN` (compared in constant time). Every answer says
    `X-Content-Type-Options: nosniff`."""

    def __init__(self, app, token: bytes | None, hosts: tuple[str, ...] | None) -> None:
        self.app, self.token, self.hosts = app, token, hosts

    def _refusal(self, scope) -> JSONResponse | None:
        headers = dict(scope["headers"])
        if self.hosts is not None:
            host = urlsplit("//" + headers.get(b"host", b"").decode("latin-1")).hostname or ""
            if host not in self.hosts:
                return error_response(400, "this server answers requests addressed to 127.0.0.1 or localhost only; "
                                      "open http://127.0.0.1:PORT/ (start it with --host to listen elsewhere)")
        if scope["method"] == "POST":
            origin = urlsplit(headers.get(b"origin", b"").decode("latin-1"))
            cross = headers.get(b"sec-fetch-site", b"") == b"cross-site" or (
                origin.netloc and origin.netloc != headers.get(b"host", b"").decode("latin-1"))
            if cross:
                return error_response(403, "requests from another site's page are refused; call the API directly or "
                                      "use this server's own page")
        path = scope["path"]
        if self.token is None or path in OPEN_PATHS or path.startswith(("/static/", "/docs-assets/")):
            return None
        given = headers.get(b"authorization")
        scheme, _, value = (given or b"").partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self.token):
            return None
        message = ("this server needs a token: send the header `Authorization: Bearer TOKEN` (the --token the "
                   "server was started with)") if given is None else \
            "the token is wrong: send `Authorization: Bearer TOKEN` with the --token the server was started with"
        return error_response(Unauthorized.status, message, {"WWW-Authenticate": "Bearer"})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self._refusal(scope)
        if refusal is not None:
            return await refusal(scope, receive, send)

        async def nosniff(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]
            await send(message)

        await self.app(scope, receive, nosniff)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status_code=status, headers=headers)
