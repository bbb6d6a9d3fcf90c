"""The published contract: documented error bodies, offline API docs, the websocket protocol.

Theory of operation
-------------------

Every error leaves the service as one body (``app/errors.py``): ``{"error", "detail"}``,
with ``fields`` on a 422. FastAPI's generated schema knows nothing of it: it documents 422 in
its own ``HTTPValidationError`` shape and no other error. ``install_openapi`` wraps the app's
``openapi()`` so that the schema, built once, is walked by ``document_errors``, a pure function
of the schema, which documents each ``/api/v1`` operation's errors by these rules:

- where FastAPI documented a 422, the ``ErrorBody`` shape replaces its own;
- an operation with a security requirement (the bearer token) can answer 401;
- a path with a parameter names a resource, so it can answer 404;
- every operation reads the database, so it can answer 503 (with ``Retry-After``);
- an operation that takes a body can be refused it for its size (413).

Those follow from the route's shape, so a new route is covered without a word. What only the
route's code knows (a role or an owner checked: 403; a conflict with the current state: 409;
a 401 without a token, on the login itself) the route declares with ``errors(...)`` in its
``responses``. Every documented error response points at the one ``ErrorBody`` component.

A JSON body sent as something else (no ``Content-Type``, or curl's default form type) would
fail validation with a message about dictionaries; ``require_json_body``, a dependency of the
API's routers, answers it with a 422 that names the header to send instead.

The docs pages load nothing from the internet (a call centre's network often has no way
out): Swagger UI's scripts and styles come from the ``swagger_ui_bundle`` package (Swagger UI
5.31, Apache-2.0) through a static mount, and the websocket protocol, which OpenAPI cannot
describe, is ``docs/websockets.md`` served as it is and as a plain HTML page.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, params
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from app.errors import InvalidInput, NotFound

API_PREFIX = "/api/v1"
DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
WEBSOCKETS_URL = "/docs/websockets"
# In a checkout the page is read from docs/; an installed wheel carries it inside the package
# (``tool.hatch.build.targets.wheel.force-include`` in pyproject.toml).
_PACKAGED_DOC = Path(__file__).resolve().parent / "_docs" / "websockets.md"
_CHECKOUT_DOC = Path(__file__).resolve().parent.parent / "docs" / "websockets.md"
WEBSOCKETS_DOC = _PACKAGED_DOC if _PACKAGED_DOC.is_file() else _CHECKOUT_DOC

SCHEMA_REF = "#/components/schemas/ErrorBody"
DESCRIPTIONS = {
    401: "No valid bearer token (missing, expired, revoked, or the account disabled)",
    403: "Signed in, but this role or this user may not do it",
    404: "The resource the path names does not exist",
    409: "Conflicts with the current state (a duplicate, an illegal transition, a closed offer)",
    413: "The request body is larger than the service accepts",
    422: "The request is malformed or names something that does not exist; `fields` says where",
    429: "Too many attempts (sign-ins, lookups); retry after `Retry-After` seconds",
    503: "The database cannot be reached, or the service is too busy, just now; retry after "
    "`Retry-After` seconds",
}
HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
    503: {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
}


class FieldError(BaseModel):
    field: str = Field(description="dotted path of the offending field, e.g. `customer.id`")
    message: str


class ErrorBody(BaseModel):
    """Every error the service answers, whatever its status."""

    # Some errors add a detail of their own (``constraint`` on a 409, for one).
    model_config = ConfigDict(extra="allow")

    error: str = Field(description="the error's name, e.g. `NotFound`, `ValidationError`")
    detail: str = Field(description="what went wrong, in words meant for a person")
    fields: list[FieldError] | None = Field(
        default=None, description="on a 422: each offending field and what is wrong with it"
    )


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses`` for the error statuses only its code knows it can answer."""
    return {code: {"model": ErrorBody, "description": DESCRIPTIONS[code]} for code in codes}


# --- what the API accepts ------------------------------------------------------------------


def json_body_problem(content_type: str | None, *, has_body: bool) -> str | None:
    """What is wrong with the content type of a JSON body, or None if nothing is."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        return None
    if not media_type and not has_body:
        return None  # no body at all: the validation error says which one is missing
    sent = media_type or "no Content-Type"
    return f"the body must be JSON sent with Content-Type: application/json, not {sent}"


async def require_json_body(request: Request) -> None:
    """Refuse a JSON route's body sent under another content type, saying what to send."""
    body_field = getattr(request.scope.get("route"), "body_field", None)
    if body_field is None or isinstance(body_field.field_info, params.Form):
        return
    headers = request.headers
    has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    problem = json_body_problem(headers.get("content-type"), has_body=has_body)
    if problem is not None:
        raise InvalidInput(problem, field="body")


# --- the schema ------------------------------------------------------------------------------


def error_response(code: int) -> dict[str, Any]:
    """The documented response for an error status."""
    response: dict[str, Any] = {
        "description": DESCRIPTIONS[code],
        "content": {"application/json": {"schema": {"$ref": SCHEMA_REF}}},
    }
    if code in HEADERS:
        response["headers"] = HEADERS[code]
    return response


def implied_errors(path: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses an API operation can answer by its shape alone."""
    implied = {503, 422} if "422" in operation.get("responses", {}) else {503}
    if operation.get("security"):
        implied.add(401)
    if "requestBody" in operation:
        implied.add(413)
    if "{" in path:
        implied.add(404)
    return implied


def _error_codes(path: str, operation: dict[str, Any]) -> set[int]:
    declared = {int(code) for code in operation.get("responses", {}) if int(code) >= 400}
    return declared | implied_errors(path, operation)


def _components(schema: dict[str, Any]) -> None:
    """ErrorBody and FieldError in, FastAPI's unused validation shapes out."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(body.pop("$defs", {}))
    schemas["ErrorBody"] = body
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every API operation's error responses in the shape the service sends.

    Operations outside the API (the health checks) keep the bodies they document.
    """
    for path, item in schema.get("paths", {}).items():
        if not path.startswith(API_PREFIX):
            continue
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            for code in sorted(_error_codes(path, operation)):
                responses[str(code)] = error_response(code)
    _components(schema)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and ``/openapi.json``) document the errors as they are sent."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# --- the docs pages ----------------------------------------------------------------------


@cache
def websockets_markdown() -> str:
    """The websocket protocol page; read once, the first time it is asked for."""
    if not WEBSOCKETS_DOC.is_file():
        raise NotFound("the websocket protocol page is not installed with this build")
    return WEBSOCKETS_DOC.read_text(encoding="utf-8")


def markdown_page(title: str, markdown: str) -> str:
    """A self-contained HTML page showing markdown as preformatted text."""
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{max-width:50rem;margin:2rem auto;padding:0 1rem}"
        "pre{white-space:pre-wrap;font:0.95rem/1.45 ui-monospace,monospace}</style>"
        f"</head><body><pre>{html.escape(markdown)}</pre></body></html>"
    )


def install_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` from local assets, and the websocket protocol beside it."""
    app.mount(ASSETS_URL, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(WEBSOCKETS_URL, include_in_schema=False)
    async def websockets_page() -> HTMLResponse:
        return HTMLResponse(markdown_page(f"{app.title}: websockets", websockets_markdown()))

    @app.get(f"{WEBSOCKETS_URL}.md", include_in_schema=False)
    async def websockets_source() -> Response:
        return Response(websockets_markdown(), media_type="text/markdown; charset=utf-8")
