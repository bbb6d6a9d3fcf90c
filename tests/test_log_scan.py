"""The log scan: a scripted session through the real server writes no personal data.

The app is served by uvicorn on a real socket, with logging set up as in production (uvicorn's
own handlers and formats for its loggers, a root handler for everything else, then
``configure_logging`` as ``create_app`` runs it), every handler writing into one buffer, at
INFO and again at DEBUG (where SQLAlchemy logs every statement and row, and the websocket
library every frame). The session signs in with passwords in forms and JSON, creates
customers with phone and ID numbers, looks them up by phone typed every way people type it,
creates a contact, opens websockets with ``?token=``, sends tokens as ``access_token=`` and
percent-encoded, and meets a database fault mid-request: a trigger refuses a customer with
an error quoting the customer's phone and ID number, so the server logs a traceback holding
them. Afterwards, none of the exact strings used may appear anywhere in the buffer.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import date
from typing import Any
from urllib.parse import quote, quote_plus

import asyncpg
import pytest
import uvicorn
from fastapi import FastAPI
from httpx import AsyncClient
from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import AccessFormatter, DefaultFormatter
from websockets.asyncio.client import connect

from app.config import Settings
from app.customers.identity import validate_resident_id
from app.db import plain_url
from app.logging import DEFAULT_FORMAT
from app.main import create_app
from tests.fixtures.factories import ADMIN_PASSWORD, Api, expect
from tests.fixtures.polling import eventually
from tests.realtime.test_ws import HANDSHAKE_S
from tests.routing.acd import queue

WITHIN_S = 10.0

MOBILE = "13912345678"
# The mobile number as people type it: each is also looked up as such.
MOBILE_TYPED = [
    "139 1234 5678",
    "(139) 1234-5678",
    "139-1234-5678",
    "+86 139 1234 5678",
    "0086 139 1234 5678",
    "139.1234.5678",
    "+86-139-1234-5678",
]
LANDLINE_TYPED = "010-6552-8888"
FAULT_PHONE_TYPED = "+86 137 0000 1111"
AGENT_PASSWORD = "agent-secret-pass-42"
FAULT_NAME = "Refused By Trigger"


def resident_id(first17: str) -> str:
    """The valid resident ID number with these first 17 digits."""
    for check in "0123456789X":
        try:
            return validate_resident_id(first17 + check, today=date(2026, 1, 1))
        except ValueError:
            continue
    raise AssertionError(f"no check character for {first17}")


ID_NUMBERS = [resident_id("11010519491231002"), resident_id("31011519800101123")]
FAULT_ID_NUMBER = resident_id("44030419900307456")


def encodings(text: str) -> list[str]:
    """``text`` and the forms it takes in a URL."""
    return [text, quote(text, safe=""), quote(text), quote_plus(text)]


def personal_strings() -> list[str]:
    """Every phone and ID number the session uses, in every form it was written."""
    phones = [
        MOBILE,
        "+86" + MOBILE,
        *MOBILE_TYPED,
        LANDLINE_TYPED,
        "01065528888",
        "+861065528888",
        FAULT_PHONE_TYPED,
        "13700001111",
        "+8613700001111",
    ]
    numbers = [*phones, *ID_NUMBERS, FAULT_ID_NUMBER]
    return sorted({form for number in numbers for form in encodings(number)})


# --- logging as in production, into one buffer -----------------------------------------------

_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy", "sqlalchemy.engine")


def _stream_handler(stream: io.StringIO, formatter: logging.Formatter) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    return handler


@contextmanager
def production_logging(level: str) -> Iterator[io.StringIO]:
    """Handlers and formats as uvicorn's default configuration and ``configure_logging``'s
    root handler give them, writing to one buffer; the loggers are put back afterwards."""
    saved = {name: logging.getLogger(name) for name in _LOGGERS}
    state = {name: (list(x.handlers), x.propagate, x.level) for name, x in saved.items()}
    formats = LOGGING_CONFIG["formatters"]
    stream = io.StringIO()
    own = {
        "": _stream_handler(stream, logging.Formatter(DEFAULT_FORMAT)),
        "uvicorn": _stream_handler(
            stream, DefaultFormatter(formats["default"]["fmt"], use_colors=False)
        ),
        "uvicorn.access": _stream_handler(
            stream, AccessFormatter(formats["access"]["fmt"], use_colors=False)
        ),
    }
    for name, logger in saved.items():
        logger.handlers[:] = [own[name]] if name in own else []
        logger.propagate = name not in ("uvicorn", "uvicorn.access")
        logger.setLevel(level if name in ("", "uvicorn", "uvicorn.error", "uvicorn.access") else 0)
    try:
        yield stream
    finally:
        for name, (handlers, propagate, old_level) in state.items():
            logger = saved[name]
            logger.handlers[:] = handlers
            logger.propagate, logger.level = propagate, old_level


@asynccontextmanager
async def serving(app: FastAPI, level: str) -> AsyncIterator[str]:
    """Serve ``app`` (lifespan entered) with uvicorn on a free port, logging at ``level``;
    its http:// URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", log_level=level.lower(), log_config=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="log-scan-uvicorn")

    async def started() -> bool:
        if task.done():
            task.result()
        return server.started

    try:
        await eventually(started, what="the server to start")
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(WITHIN_S):
            await task


# --- the database fault ----------------------------------------------------------------------

_FAULT_SQL = f"""
CREATE FUNCTION log_scan_fault() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.name = '{FAULT_NAME}' THEN
    RAISE EXCEPTION 'customer % with ID number % refused', NEW.phone, NEW.id_number
      USING DETAIL = format('Key (phone)=(%s) is refused; id %s', NEW.phone, NEW.id_number);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER log_scan_fault BEFORE INSERT OR UPDATE ON customers
  FOR EACH ROW EXECUTE FUNCTION log_scan_fault();
"""
_NO_FAULT_SQL = """
DROP TRIGGER IF EXISTS log_scan_fault ON customers;
DROP FUNCTION IF EXISTS log_scan_fault();
"""


@asynccontextmanager
async def database_fault(url: str) -> AsyncIterator[None]:
    """A trigger that fails any write of a customer named ``FAULT_NAME``, quoting its phone
    and ID number (removed afterwards: the database outlives the test)."""
    conn = await asyncpg.connect(plain_url(url))
    try:
        await conn.execute(_NO_FAULT_SQL + _FAULT_SQL)
        yield
    finally:
        await conn.execute(_NO_FAULT_SQL)
        await conn.close()


# --- the session -----------------------------------------------------------------------------


def token_of(api: Api) -> str:
    return api.headers["Authorization"].removeprefix("Bearer ")


async def customers_and_lookups(api: Api) -> None:
    expect(await api.post("/api/v1/customers", {"name": "Mobile", "phone": MOBILE_TYPED[0]}), 201)
    body = {"name": "Landline", "phone": LANDLINE_TYPED, "id_number": ID_NUMBERS[0]}
    expect(await api.post("/api/v1/customers", body), 201)
    body = {"name": "Identified", "id_number": ID_NUMBERS[1]}
    expect(await api.post("/api/v1/customers", body), 201)
    for typed in MOBILE_TYPED:
        page = expect(await api.get("/api/v1/customers", params={"phone": typed}), 200)
        assert len(page["items"]) == 1, typed


async def contact_for(api: Api) -> None:
    name = (await queue(api))["name"]
    body = {
        "channel": "chat",
        "queue": name,
        "customer": {"phone": MOBILE_TYPED[1]},
        "subject": f"call me back on {MOBILE_TYPED[2]}, ID {ID_NUMBERS[1]}",
    }
    expect(await api.post("/api/v1/contacts", body), 201)


async def websockets_with_tokens(base: str, tokens: dict[str, str]) -> None:
    ws_base = base.replace("http://", "ws://", 1)
    for path, token in (("/ws/agent", tokens["agent"]), ("/ws/wallboard", tokens["admin"])):
        async with connect(f"{ws_base}{path}?token={token}", open_timeout=HANDSHAKE_S) as conn:
            async with asyncio.timeout(WITHIN_S):
                assert '"snapshot"' in str(await conn.recv())


async def tokens_in_query_strings(http: AsyncClient, token: str) -> None:
    for query in (f"access_token={token}", f"%74oken={token}", f"token%3D{token}"):
        expect(await http.get(f"/api/v1/agents/me?{query}", headers={"X": "y"}), 401)


async def fault_mid_request(api: Api) -> None:
    body = {"name": FAULT_NAME, "phone": FAULT_PHONE_TYPED, "id_number": FAULT_ID_NUMBER}
    response = await api.post("/api/v1/customers", body)
    assert response.status_code == 500, response.text


async def scripted_session(http: AsyncClient, base: str) -> dict[str, str]:
    """Drive the session; the passwords and tokens it used, by name."""
    admin = await Api.signed_in(http, "admin", ADMIN_PASSWORD)
    agent = await admin.agent(password=AGENT_PASSWORD)
    console = await admin.signed_in_as(agent, AGENT_PASSWORD)
    tokens = {"admin": token_of(admin), "agent": token_of(console)}
    await customers_and_lookups(admin)
    await contact_for(admin)
    await websockets_with_tokens(base, tokens)
    await tokens_in_query_strings(http, tokens["agent"])
    await fault_mid_request(admin)
    return {"admin password": ADMIN_PASSWORD, "agent password": AGENT_PASSWORD, **tokens}


async def run_logged_session(
    settings: Settings, database_url: str, level: str
) -> tuple[str, dict[str, str]]:
    """The whole log of a scripted session at ``level``, and the secrets it used."""
    with production_logging(level) as stream:
        app = create_app(settings)  # configure_logging: after uvicorn's handlers, as in `serve`
        async with (
            app.router.lifespan_context(app),
            database_fault(database_url),
            serving(app, level) as base,
            AsyncClient(base_url=base) as http,
        ):
            secrets = await scripted_session(http, base)
    return stream.getvalue(), secrets


# --- the scan --------------------------------------------------------------------------------


def leaks(log: str, secrets: dict[str, Any]) -> list[str]:
    """What of the session's personal data and secrets the log holds, by what it is."""
    found = [f"personal number {s!r}" for s in personal_strings() if s in log]
    for name, secret in secrets.items():
        found += [f"{name} {form!r}" for form in encodings(secret) if form in log]
    return found


def lines_with(log: str, marker: str) -> list[str]:
    return [line for line in log.splitlines() if marker in line]


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
async def test_no_phone_id_number_password_or_token_reaches_the_log(
    settings: Settings, db: str, level: str
) -> None:
    log, secrets = await run_logged_session(settings, db, level)

    # What the scan looks at is there: the traceback of the fault with the database's error,
    # the request lines with their query strings, the sockets' URLs.
    assert "Exception in ASGI application" in log
    assert "Traceback (most recent call last)" in log
    assert "refused" in log
    assert len(lines_with(log, "/api/v1/customers?phone=")) >= len(MOBILE_TYPED)
    assert lines_with(log, "access_token=")
    assert lines_with(log, '"WebSocket /ws/agent?token=')
    if level == "DEBUG":
        assert lines_with(log, "sqlalchemy.engine")
    assert leaks(log, secrets) == []
