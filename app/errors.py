"""One error hierarchy, rendered as ``{"error": <Name>, "detail": <text>, ...}``.

Services raise ``AppError`` subclasses and never HTTP exceptions; the handlers here turn
them, request validation errors and database integrity errors into 4xx responses.

A database that cannot be reached, or a session lost under a request (a restart, a
terminated backend, a connection that died in the pool), is the service being unavailable,
not a bug: it answers 503 with ``Retry-After``, whether SQLAlchemy or the driver (the hot
paths' pool) raised it (``app.db.database_unavailable`` decides). A request that failed this
way wrote nothing it acknowledged; a client may retry it (creates accept an
``Idempotency-Key``, so a retry never makes a second contact).

Malformed input is a 422 that names what is wrong, never a 400 or a 500: JSON the parser
refuses names the line and column (field ``body``), and so does a body that is not UTF-8 or
nests too deeply for the parser (FastAPI reports those two as a bare 400). A number no
BIGINT holds is refused by the schemas (``app/schemas.py``, the id path types); should one
still reach the database, a path or query parameter holding it is named.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.db import database_unavailable
from app.schemas import MAX_BIGINT, MIN_BIGINT, NUL_MESSAGE

log = logging.getLogger(__name__)


class AppError(Exception):
    """Base of every error a client may see."""

    status_code: ClassVar[int] = 400

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    @property
    def name(self) -> str:
        return type(self).__name__

    def body(self) -> dict[str, Any]:
        return {"error": self.name, "detail": self.detail, **self.extra}

    def headers(self) -> dict[str, str] | None:
        """Response headers the error carries (``Retry-After`` on a 429 or 503)."""
        return None


class BadRequest(AppError):
    status_code = 400


class Unauthorized(AppError):
    status_code = 401

    def headers(self) -> dict[str, str] | None:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(AppError):
    status_code = 403


class NotFound(AppError):
    status_code = 404


class Conflict(AppError):
    status_code = 409


class InvalidInput(AppError):
    """A payload that parses but names something impossible (an unknown skill, a bad ID).

    With ``field=`` the body also carries ``fields`` shaped like a validation error's, so
    clients read every 422 the same way.
    """

    status_code = 422

    def body(self) -> dict[str, Any]:
        body = super().body()
        field = self.extra.get("field")
        if field is not None:
            body.setdefault("fields", [{"field": field, "message": self.detail}])
        return body


class IllegalTransition(Conflict):
    """The subject's current status does not allow the requested change."""


class ServiceUnavailable(AppError):
    """The database cannot be reached just now (or the service is too busy to answer);
    the request may be retried after ``retry_after_s``."""

    status_code = 503

    def __init__(self, detail: str, *, retry_after_s: int | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after_s = RETRY_AFTER_S if retry_after_s is None else retry_after_s

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after_s)}


# Seconds a client should wait before retrying after a 503: a restarted server or a pool's
# fresh connections are usually there by then.
RETRY_AFTER_S = 1


# Constraint name -> message. Domains register theirs at import time.
CONSTRAINT_MESSAGES: dict[str, str] = {}


def register_constraint(name: str, message: str) -> None:
    """Give an integrity error on constraint ``name`` a human message."""
    CONSTRAINT_MESSAGES[name] = message


def _constraint_name(exc: DBAPIError) -> str | None:
    orig = getattr(exc, "orig", None)
    cause = getattr(orig, "__cause__", None)
    for candidate in (cause, orig):
        name = getattr(candidate, "constraint_name", None)
        if name:
            return str(name)
    return None


def integrity_error_body(exc: IntegrityError) -> dict[str, Any]:
    """A 409 body for an integrity error, by the violated constraint's name."""
    name = _constraint_name(exc)
    detail = CONSTRAINT_MESSAGES.get(name or "", f"conflicts with existing data ({name})")
    return {"error": "Conflict", "detail": detail, "constraint": name}


def _refused_value(exc: BaseException) -> str | None:
    """The driver's message if the database refused a value (SQLSTATE class 22), else None.

    Schemas should catch bad values first; this is the net for what they miss (a NUL
    character in text, a number past BIGINT), so it yields a 422 and not a 500. ``exc`` is
    SQLAlchemy's error, or the driver's own where a statement ran on the driver directly.
    """
    error: BaseException | None = exc.orig if isinstance(exc, DBAPIError) else exc
    while error is not None:
        sqlstate = getattr(error, "sqlstate", None)
        # asyncpg refuses some values before sending them: an InterfaceError and a ValueError.
        client_side = isinstance(error, asyncpg.InterfaceError) and isinstance(error, ValueError)
        if client_side or (isinstance(sqlstate, str) and sqlstate.startswith("22")):
            return str(error)
        error = error.__cause__
    return None


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or ".".join(str(p) for p in loc)


def json_error_message(document: object, position: int, reason: str) -> str:
    """Where and why a body is not JSON, as a person counts (line and column from 1)."""
    if not isinstance(document, str):
        return f"invalid JSON at character {position + 1}: {reason}"
    line = document.count("\n", 0, position) + 1
    column = position - document.rfind("\n", 0, position)
    return f"invalid JSON at line {line} column {column}: {reason}"


def _validation_field(err: dict[str, Any], document: object) -> dict[str, str]:
    loc = tuple(err.get("loc", ()))
    if err.get("type") == "json_invalid" and len(loc) == 2 and isinstance(loc[1], int):
        # The parser's error: its location is an offset into the text, not a field.
        reason = str(err.get("ctx", {}).get("error", "not JSON"))
        return {"field": "body", "message": json_error_message(document, loc[1], reason)}
    return {"field": _field_path(loc), "message": err.get("msg", "")}


def fields_body(fields: list[dict[str, str]]) -> dict[str, Any]:
    """The 422 body for these ``{"field", "message"}`` pairs."""
    detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return {"error": "ValidationError", "detail": detail, "fields": fields}


def validation_error_body(exc: RequestValidationError) -> dict[str, Any]:
    """A 422 body naming every offending field."""
    return fields_body([_validation_field(err, exc.body) for err in exc.errors()])


# Why a body could not be parsed at all, by what the parser raised. FastAPI turns these into
# a bare 400; they are malformed input like any other, so a 422 that names the body.
_UNPARSABLE: tuple[tuple[type[BaseException], str], ...] = (
    (UnicodeDecodeError, "not valid UTF-8"),
    (RecursionError, "JSON nested too deeply to parse"),
    # The one other ValueError of Python's parser: a number of thousands of digits.
    (ValueError, "invalid JSON: a number has too many digits"),
)


def unparsable_body(exc: BaseException) -> dict[str, Any] | None:
    """The 422 body for a body the parser failed on with ``exc``; None for other errors."""
    for kind, message in _UNPARSABLE:
        if isinstance(exc, kind):
            return fields_body([{"field": "body", "message": message}])
    return None


def out_of_range_parameters(request: Request) -> list[str]:
    """Path and query parameters holding a whole number no BIGINT column can store."""
    values = [*request.path_params.items(), *request.query_params.multi_items()]
    return [name for name, value in values if _is_out_of_range_integer(value)]


def nul_parameters(request: Request) -> list[str]:
    """Path and query parameters holding a NUL character, which no text column can store."""
    values = [*request.path_params.items(), *request.query_params.multi_items()]
    return list(dict.fromkeys(name for name, value in values if "\x00" in value))


def _is_out_of_range_integer(value: str) -> bool:
    digits = value.strip().removeprefix("-").removeprefix("+")
    if not (digits.isascii() and digits.isdigit()):
        return False
    # No BIGINT has more than 19 digits (and int() refuses thousands of them).
    return len(digits) > 19 or not MIN_BIGINT <= int(value.strip()) <= MAX_BIGINT


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers())


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(validation_error_body(exc), status_code=422)


async def _integrity_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IntegrityError)
    return JSONResponse(integrity_error_body(exc), status_code=409)


def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    # One line, no traceback: an outage would otherwise log one per request.
    log.warning(
        "database unavailable for %s %s: %s: %s",
        request.method,
        request.url.path,
        type(exc).__name__,
        str(exc).splitlines()[0] if str(exc) else "",
    )
    error = ServiceUnavailable("the database cannot be reached just now; try again shortly")
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers())


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """SQLAlchemy's database errors, the driver's own, socket errors and an empty pool: 503
    if the database was lost, a 422 if it refused a value, else what they always were (a
    500)."""
    if database_unavailable(exc):
        return _unavailable(request, exc)
    return _refused(request, exc)


def _refused(request: Request, exc: Exception) -> JSONResponse:
    """A 422 for a value the database refused; anything else is raised again (a 500)."""
    message = _refused_value(exc)
    if message is None:
        raise exc
    # Logged because a schema should have refused the value first.
    log.warning("the database refused a value: %s", message)
    named = out_of_range_parameters(request)
    if named:
        too_large = "Input should be a whole number that fits in 64 bits"
        return JSONResponse(fields_body([{"field": n, "message": too_large} for n in named]), 422)
    holding_nul = nul_parameters(request)
    if holding_nul:
        fields = [{"field": n, "message": NUL_MESSAGE} for n in holding_nul]
        return JSONResponse(fields_body(fields), 422)
    body = {
        "error": "InvalidInput",
        "detail": f"a value in the request cannot be stored: {message}",
    }
    return JSONResponse(body, status_code=422)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    unparsable = unparsable_body(exc.__cause__) if exc.__cause__ is not None else None
    if exc.status_code == 400 and unparsable is not None:
        return JSONResponse(unparsable, status_code=422)
    body = {"error": _HTTP_NAMES.get(exc.status_code, "HTTPError"), "detail": str(exc.detail)}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


_HTTP_NAMES = {
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "ContentTooLarge",
}


def install_error_handlers(app: FastAPI) -> None:
    """Route every error class to its renderer."""
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(DBAPIError, _database_error)
    driver = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
    for lost in (*driver, OSError, SATimeoutError):
        app.add_exception_handler(lost, _database_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
