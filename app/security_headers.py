"""Security headers on every HTTP response, and CORS closed unless origins are configured.

Theory of operation
-------------------

``SecurityHeaders`` is a pure ASGI middleware: it rewrites the headers of the
``http.response.start`` message and passes every body message on as it comes, so streamed
and long-polled responses are never buffered, and websocket scopes go by untouched.

Every response carries the headers that keep a browser from misreading or embedding it:

- ``X-Content-Type-Options: nosniff`` (a JSON body is never run as a script or a page);
- ``Referrer-Policy: no-referrer`` (no URL of ours, with its ids, leaks to another site);
- ``X-Frame-Options: DENY`` and CSP ``frame-ancestors 'none'`` (no page of ours is framed).

The Content-Security-Policy follows what the response is. A response that is not HTML (the
API's JSON, the metrics, a static asset) gets ``default-src 'none'; frame-ancestors
'none'``: should a browser ever render it as a document, it may load and run nothing. An HTML
response gets the pages' policy: scripts, styles, images and fetches from the service's own
origin only, and no inline code except the few inline blocks the docs pages are built with,
each allowed by its SHA-256 hash. The hashes come from the same generators that render
those pages (Swagger UI's page and OAuth2 redirect page as FastAPI renders them for this
app's URLs, and the markdown page of ``app.openapi``), so a page's own code runs and code
injected into it does not. ``html_policy`` takes further inline blocks for pages to come.

Every ``/api/v1`` response carries personal data or may, so it carries ``Cache-Control:
no-store``: no browser or proxy keeps a copy. ``Strict-Transport-Security`` is sent only
when the public base URL is https: over plain http a browser ignores it, and a deployment
still served over http must not be told it is https-only.

CORS: with no ``cors_origins`` configured (the default) no CORS middleware is installed and
no response carries an ``Access-Control-*`` header, whatever the ``Origin``: browsers then
keep other sites' scripts from reading the API. With origins configured, Starlette's
``CORSMiddleware`` answers for exactly those origins, with the API's methods and the
headers it reads (``Authorization``, ``Content-Type``, ``Idempotency-Key``). Credentials
are never allowed: the API authenticates with a bearer token, not a cookie.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.openapi import API_PREFIX, OAUTH2_REDIRECT_URL, markdown_page

JSON_POLICY = "default-src 'none'; frame-ancestors 'none'"
HSTS = "max-age=31536000"
CORS_METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]
CORS_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key"]
CORS_EXPOSED = ["Retry-After"]
CORS_MAX_AGE_S = 600

_INLINE = re.compile(r"<(script|style)(\s[^>]*)?>(.*?)</\1\s*>", re.DOTALL | re.IGNORECASE)
_SRC = re.compile(r"\ssrc\s*=", re.IGNORECASE)


def inline_blocks(page: str) -> tuple[list[str], list[str]]:
    """The inline scripts and the inline styles of an HTML page, as the browser hashes them."""
    scripts: list[str] = []
    styles: list[str] = []
    for tag, attributes, code in _INLINE.findall(page):
        if tag.lower() == "style":
            styles.append(code)
        elif not _SRC.search(attributes):
            scripts.append(code)
    return scripts, styles


def csp_hash(code: str) -> str:
    """The CSP source expression that allows exactly this inline block."""
    digest = hashlib.sha256(code.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def html_policy(scripts: Iterable[str] = (), styles: Iterable[str] = ()) -> str:
    """The pages' policy: own origin only, plus these inline blocks by hash."""
    script_src = " ".join(["'self'", *sorted({csp_hash(code) for code in scripts})])
    style_src = " ".join(["'self'", *sorted({csp_hash(code) for code in styles})])
    return (
        f"default-src 'none'; script-src {script_src}; style-src {style_src}; "
        "img-src 'self' data:; font-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def docs_pages(app: FastAPI) -> list[str]:
    """The HTML of the app's docs pages, rendered as ``app.openapi.install_docs`` renders them
    (only the URLs shape their inline code)."""
    swagger = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=app.title,
        oauth2_redirect_url=OAUTH2_REDIRECT_URL,
    )
    redirect = get_swagger_ui_oauth2_redirect_html()
    return [
        bytes(swagger.body).decode("utf-8"),
        bytes(redirect.body).decode("utf-8"),
        markdown_page(app.title, ""),
    ]


def pages_policy(pages: Iterable[str]) -> str:
    """The pages' policy allowing the inline code of these pages."""
    scripts: list[str] = []
    styles: list[str] = []
    for page in pages:
        page_scripts, page_styles = inline_blocks(page)
        scripts += page_scripts
        styles += page_styles
    return html_policy(scripts, styles)


def _is_html(headers: MutableHeaders) -> bool:
    return headers.get("content-type", "").lower().startswith("text/html")


class SecurityHeaders:
    """Pure ASGI middleware adding the security headers to every HTTP response."""

    def __init__(self, app: ASGIApp, *, html_csp: str, hsts: bool) -> None:
        self.app = app
        self.html_csp = html_csp
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_api = str(scope.get("path", "")).startswith(API_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._add(MutableHeaders(scope=message), is_api=is_api)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _add(self, headers: MutableHeaders, *, is_api: bool) -> None:
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        headers["X-Frame-Options"] = "DENY"
        headers["Content-Security-Policy"] = self.html_csp if _is_html(headers) else JSON_POLICY
        if is_api:
            headers["Cache-Control"] = "no-store"
        if self.hsts:
            headers["Strict-Transport-Security"] = HSTS


def install_cors(app: FastAPI, origins: list[str]) -> None:
    """Let browsers on these origins call the API; none configured, nothing is installed."""
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=CORS_METHODS,
        allow_headers=CORS_HEADERS,
        expose_headers=CORS_EXPOSED,
        allow_credentials=False,
        max_age=CORS_MAX_AGE_S,
    )


def install_security(app: FastAPI, settings: Settings) -> None:
    """CORS (if configured) and, outside it, the security headers: install last, after every
    other middleware, so the headers are on every answer, preflights and 413s included."""
    install_cors(app, settings.cors_origins)
    app.add_middleware(
        SecurityHeaders,
        html_csp=pages_policy(docs_pages(app)),
        hsts=settings.public_base_url.lower().startswith("https://"),
    )
