"""Database plumbing: the declarative base, the engine, and the unit of work.

A request gets one ``AsyncSession`` through the ``Session`` dependency, which commits after
the endpoint returns and before the response is sent, so a client never sees an acknowledgement
for something that is not durable; any error rolls the whole request back. Work that must
follow the commit (waking the event hub and the dispatcher) is queued with ``after_commit``.
Background loops use ``unit_of_work`` for the same discipline.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, cast

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import DateTime, MetaData, Table, func
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base for every table, with named constraints."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def table_of(model: type[Base]) -> Table:
    """A mapped class's table, for Core statements on hot paths (no ORM bookkeeping)."""
    return cast(Table, model.__table__)


class TimestampMixin:
    """``created_at`` and ``updated_at`` kept by the database."""

    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


def async_url(url: str) -> str:
    """Normalise a PostgreSQL URL to the asyncpg driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def plain_url(url: str) -> str:
    """The libpq form of a URL (for asyncpg.connect)."""
    return (
        make_url(async_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)
    )


def server_settings(
    idle_tx_timeout_ms: int, *, hot: bool = False, application_name: str = "hotline"
) -> dict[str, str]:
    """Session settings of every connection Hotline opens: named, in UTC, and never left
    idle inside a transaction for long (an open transaction holds the event log back).

    ``hot``: for the driver connections, which run only Hotline's own hot statements, each
    written for an index. They plan each prepared statement once (``plan_cache_mode``):
    PostgreSQL otherwise plans a statement with many parameters afresh on every execution
    whenever it guesses that a custom plan beats the generic one, and for the one-statement
    contact intake that planning cost more than running it. And they never plan a
    sequential scan where an index serves (``enable_seqscan``): a plan made once, while a
    table was small or its statistics stale (a new deployment, a bulk load), would
    otherwise keep scanning the whole table as it grows.
    """
    settings = {"application_name": application_name, "timezone": "UTC"}
    if idle_tx_timeout_ms:
        settings["idle_in_transaction_session_timeout"] = str(idle_tx_timeout_ms)
    if hot:
        settings["plan_cache_mode"] = "force_generic_plan"
        settings["enable_seqscan"] = "off"
    return settings


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int | None = None,
    idle_tx_timeout_ms: int = 10_000,
) -> AsyncEngine:
    """An engine whose sessions cannot hold the event log back for long.

    Connections are not pinged on checkout: that costs three round trips per request. A
    connection that died with its server fails its first statement instead, and SQLAlchemy
    then discards every pooled connection made before the failure, so one request sees the
    error and the next ones get fresh connections. ``max_overflow`` (default: as many again as
    ``pool_size``) of 0 makes requests wait for a pooled connection under load rather than
    open and close extra ones, which costs a connection set-up and every statement prepared
    again each time.
    """
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        connect_args={"server_settings": server_settings(idle_tx_timeout_ms)},
    )


async def json_codecs(conn: asyncpg.Connection) -> None:
    """JSON and JSONB as Python values on a driver connection (as SQLAlchemy has them)."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect_driver(
    url: str, *, idle_tx_timeout_ms: int = 10_000, application_name: str = "hotline"
) -> asyncpg.Connection:
    """One driver connection of Hotline's own (the dispatcher's, the event hub's)."""
    settings = server_settings(idle_tx_timeout_ms, hot=True, application_name=application_name)
    conn = await asyncpg.connect(plain_url(url), server_settings=settings)
    await json_codecs(conn)
    return conn


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to undo: pooled driver connections run single statements and never LISTEN,
    SET or take session locks (the driver still rolls back a transaction left open)."""


async def create_driver_pool(
    url: str,
    *,
    size: int,
    idle_tx_timeout_ms: int = 10_000,
    warm: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> asyncpg.Pool:
    """A pool of driver connections for the hottest statements (sign-in, taking contacts
    in): each runs as one statement on the driver, with none of the ORM's bookkeeping.

    The pool is opened whole at start, and ``warm`` runs on each new connection (preparing
    and planning the hot statements): a connection made under load would cost the request
    that waits for it a connection set-up and the planning of every statement it runs.
    Releasing a connection costs no round trip: the driver's default reset (``RESET ALL``,
    ``UNLISTEN *``, unlocking advisory locks) would double the cost of a one-statement
    request, and there is nothing for it to undo (see ``_keep_session``).
    """

    async def init(conn: asyncpg.Connection) -> None:
        await json_codecs(conn)
        if warm is not None:
            await warm(conn)

    pool: asyncpg.Pool = await asyncpg.create_pool(
        plain_url(url),
        min_size=size,
        max_size=size,
        server_settings=server_settings(idle_tx_timeout_ms, hot=True),
        init=init,
        reset=_keep_session,
    )
    return pool


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


AfterCommit = Callable[[], Any]


def after_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Run ``callback`` once this session's transaction has committed (never on rollback)."""
    session.info.setdefault("after_commit", []).append(callback)


def run_after_commit(session: AsyncSession) -> None:
    """Fire and clear the queued after-commit callbacks (deduplicated, in order)."""
    callbacks: list[AfterCommit] = session.info.pop("after_commit", [])
    seen: set[int] = set()
    for callback in callbacks:
        if id(callback) not in seen:
            seen.add(id(callback))
            callback()


def discard_after_commit(session: AsyncSession) -> None:
    session.info.pop("after_commit", None)


@asynccontextmanager
async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One transaction: commit on success and run after-commit work, roll back on error."""
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            discard_after_commit(session)
            raise
        run_after_commit(session)


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with unit_of_work(request.app.state.sessionmaker) as session:
        yield session


Session = Annotated[AsyncSession, Depends(_request_session, scope="function")]
