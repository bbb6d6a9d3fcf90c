"""Request body size limits: a body past its limit is refused with 413 before it is read.

Theory of operation
-------------------

Every path has a limit: the longest configured path prefix that matches it
(``max_body_bytes_by_path``, for webhooks or uploads that need more), else
``max_body_bytes``. ``BodyLimitMiddleware`` sits outside the app and enforces it twice:

- A ``Content-Length`` above the limit is answered at once, before the app runs: nothing
  of the body is read, and the client may stop sending.
- Otherwise (a chunked body, or a length that lies) the bytes are counted as the app
  receives them, and the message that crosses the limit is never handed on: the receive
  raises ``BodyTooLarge`` instead, and the app's body parser gives up there. The app holds
  at most the limit plus one message, never the whole body.

``BodyTooLarge`` is an ``HTTPException`` so that FastAPI's body parsing lets it through
(it turns any other error into a 400) and the app's handler renders the usual
``{"error", "detail"}`` body; the middleware renders the same body itself when the
exception reaches it (the limit crossed outside a route). Websockets are not HTTP bodies
and pass untouched (the server bounds their message size).
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings


def _matches(path: str, prefix: str) -> bool:
    """Whether ``path`` starts with ``prefix``, where a ``*`` segment matches any one segment."""
    if "*" not in prefix:
        return path.startswith(prefix)
    wanted, given = prefix.split("/"), path.split("/")
    return len(given) >= len(wanted) and all(
        w in ("*", g) for w, g in zip(wanted, given, strict=False)
    )


def limit_for(path: str, default: int, by_prefix: Mapping[str, int]) -> int:
    """The body limit of ``path``: its longest matching prefix's, else ``default``."""
    matching = [prefix for prefix in by_prefix if _matches(path, prefix)]
    return by_prefix[max(matching, key=len)] if matching else default


def declared_length(headers: Headers) -> int | None:
    """The ``Content-Length`` a request declares; None if it declares none we can read."""
    value = headers.get("content-length", "")
    return int(value) if value.isascii() and value.isdigit() else None


def too_large_detail(limit: int) -> str:
    return f"the request body is larger than the {limit} bytes accepted here"


class BodyTooLarge(HTTPException):
    """A request body crossed its limit while it was being read."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=too_large_detail(limit), headers=CLOSE)


# The rest of the body is never read, so the connection cannot carry another request.
CLOSE = {"Connection": "close"}


def too_large_response(limit: int) -> JSONResponse:
    body = {"error": "ContentTooLarge", "detail": too_large_detail(limit)}
    return JSONResponse(body, status_code=413, headers=CLOSE)


class BodyLimitMiddleware:
    """Pure ASGI: refuses bodies past their path's limit, by header or as they stream."""

    def __init__(
        self, app: ASGIApp, *, default: int, by_prefix: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.default = default
        self.by_prefix = dict(by_prefix or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["path"], self.default, self.by_prefix)
        length = declared_length(Headers(scope=scope))
        if length is not None and length > limit:
            await too_large_response(limit)(scope, receive, send)
            return
        await self._counted(scope, receive, send, limit)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def noting_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, noting_send)
        except BodyTooLarge:
            if started:
                raise
            await too_large_response(limit)(scope, receive, send)


def install_body_limit(app: FastAPI, settings: Settings) -> None:
    """Limit every request body as ``settings`` say."""
    app.add_middleware(
        BodyLimitMiddleware,
        default=settings.max_body_bytes,
        by_prefix=settings.max_body_bytes_by_path,
    )
