"""Database plumbing: the declarative base, the engine, and the unit of work.

A request gets one ``AsyncSession`` through the ``Session`` dependency, which commits after
the endpoint returns and before the response is sent, so a client never sees an acknowledgement
for something that is not durable; any error rolls the whole request back. Work that must
follow the commit (waking the event hub and the dispatcher) is queued with ``after_commit``.
Background loops use ``unit_of_work`` for the same discipline.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, cast

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import DateTime, MetaData, Table, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SATimeoutError
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


def url_on(server: str, name: str) -> str:
    """The URL of database ``name`` on the server that ``server`` (any database's URL) is on."""
    return make_url(server).set(database=name).render_as_string(hide_password=False)


async def recreate_database(server: str, name: str) -> str:
    """Database ``name`` on the server ``server`` is on, dropped if it was there (its sessions
    ended) and made again, empty: for tests, checks and benchmarks. Its URL."""
    conn = await asyncpg.connect(plain_url(server))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url_on(server, name)


async def drop_database(server: str, name: str) -> None:
    """Drop database ``name`` on the server ``server`` is on, if it is there."""
    conn = await asyncpg.connect(plain_url(server))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# The server drops a session whose client machine vanished (a half-open TCP connection: a
# crash, a cut network) within about half a minute instead of the operating system's two
# hours, so the session's locks (the dispatcher's leader lock) and its connection slot come
# free. Keepalives probe an idle connection; the user timeout bounds how long data sent may
# stay unacknowledged. A client that stops talking while its machine still answers (a hung
# process behind a proxy) is not seen this way: the dispatcher checks its leader's activity
# itself (``app/routing/dispatcher.py``). Over a Unix socket the server ignores them.
KEEPALIVES = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "30000",
}


def server_settings(
    idle_tx_timeout_ms: int, *, hot: bool = False, application_name: str = "hotline"
) -> dict[str, str]:
    """Session settings of every connection Hotline opens: named, in UTC, never left idle
    inside a transaction for long (an open transaction holds the event log back), and
    dropped by the server soon after the client's machine is gone (``KEEPALIVES``).

    ``hot``: for the driver connections, which run only Hotline's own hot statements, each
    written for an index. They plan each prepared statement once (``plan_cache_mode``):
    PostgreSQL otherwise plans a statement with many parameters afresh on every execution
    whenever it guesses that a custom plan beats the generic one, and for the one-statement
    contact intake that planning cost more than running it. And they never plan a
    sequential scan where an index serves (``enable_seqscan``): a plan made once, while a
    table was small or its statistics stale (a new deployment, a bulk load), would
    otherwise keep scanning the whole table as it grows.
    """
    settings = {"application_name": application_name, "timezone": "UTC", **KEEPALIVES}
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

    Statement parameters are never shown (``hide_parameters``): neither in the statements it
    logs at ``INFO`` and below, nor in the text of the errors it raises, which a traceback
    would otherwise carry into the log with every customer's phone and ID number in them.
    """
    return create_async_engine(
        async_url(url),
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        connect_args={"server_settings": server_settings(idle_tx_timeout_ms)},
    )


async def json_codecs(conn: asyncpg.Connection) -> None:
    """JSON and JSONB as Python values on a driver connection (as SQLAlchemy has them)."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect_driver(
    url: str,
    *,
    idle_tx_timeout_ms: int = 10_000,
    application_name: str = "hotline",
    timeout_s: float | None = None,
) -> asyncpg.Connection:
    """One driver connection of Hotline's own (the dispatcher's, the event hub's).

    ``timeout_s``: how long connecting, and then every statement, may take before the
    driver gives up on it (a cancellation is sent too): without it, a connection whose peer
    stopped answering waits for as long as the operating system keeps the TCP connection.
    """
    settings = server_settings(idle_tx_timeout_ms, hot=True, application_name=application_name)
    conn = await asyncpg.connect(
        plain_url(url),
        server_settings=settings,
        timeout=60 if timeout_s is None else timeout_s,
        command_timeout=timeout_s,
    )
    await json_codecs(conn)
    return conn


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to undo: pooled driver connections run single statements and never LISTEN,
    SET or take session locks (the driver still rolls back a transaction left open)."""


def _reusable_after(error: BaseException) -> bool:
    """Whether a driver connection is fit for the next request after ``error``: only when
    the server refused the statement (and said it was ready again) or the driver refused a
    value before sending anything."""
    if isinstance(error, asyncpg.PostgresError):
        return not database_unavailable(error)
    return isinstance(error, asyncpg.InterfaceError) and isinstance(error, ValueError)


def _close(conn: Any) -> None:
    """Close a pooled connection now (the pool opens a fresh one in its place), unless the
    driver has already done so and taken it back."""
    with contextlib.suppress(asyncpg.InterfaceError):  # released: closed already
        conn.terminate()


@contextlib.asynccontextmanager
async def _begun(conn: asyncpg.Connection, begin: str) -> AsyncIterator[None]:
    """A transaction begun by ``begin`` (which starts with ``BEGIN``): committed when the
    block ends, rolled back when the server refused one of its statements."""
    if not begin.lstrip().upper().startswith("BEGIN"):
        raise ValueError("a transaction's first message starts with BEGIN")
    await conn.execute(begin)
    try:
        yield
    except BaseException as error:
        if _reusable_after(error):
            # The server refused a statement: the connection goes back to the pool, so its
            # transaction ends here. Any other error closes the connection (``in_transaction``),
            # which ends the transaction on the server; so does a failed rollback, and the
            # error raised is the block's.
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


class DriverPool(asyncpg.Pool):  # type: ignore[misc]  # asyncpg has no type information
    """A driver pool that never hands out, or takes back, a connection in an unknown state.

    A statement that fails other than by the server refusing it (the session lost, the
    request cancelled mid-statement, a timeout) closes its connection rather than release
    it: released, the connection could go to the next request with its protocol still
    mid-operation, and that request would fail on it ("cannot switch to state 12; another
    operation is in progress"). Requests failing because the database went away answer 503
    (``app.errors``), and the pool opens fresh connections in place of the closed ones.
    """

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._run("execute", query, args, kwargs)

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetch", query, args, kwargs)

    async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetchval", query, args, kwargs)

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetchrow", query, args, kwargs)

    @contextlib.asynccontextmanager
    async def in_transaction(self, begin: str | None = None) -> AsyncIterator[asyncpg.Connection]:
        """A connection in a transaction of its own, closed rather than released when the
        transaction ends in a way that leaves the connection's state unknown.

        ``begin``: the transaction's first message, sent in one round trip as the simple
        protocol sends it (no parameters): ``BEGIN`` and what must run first, such as taking
        a lock, so that the next statement reads after it."""
        async with self.acquire() as conn:
            try:
                if begin is None:
                    async with conn.transaction():
                        yield conn
                else:
                    async with _begun(conn, begin):
                        yield conn
            except BaseException as error:
                if not _reusable_after(error) or conn.is_in_transaction():
                    _close(conn)
                raise

    async def _run(
        self, method: str, query: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        async with self.acquire() as conn:
            try:
                return await getattr(conn, method)(query, *args, **kwargs)
            except BaseException as error:
                if not _reusable_after(error):
                    _close(conn)
                raise


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
    request, and there is nothing for it to undo (see ``_keep_session``); a connection
    whose statement failed in any way that leaves its state unknown is closed instead
    (``DriverPool``).
    """

    async def init(conn: asyncpg.Connection) -> None:
        await json_codecs(conn)
        if warm is not None:
            await warm(conn)

    # ``create_pool`` with its defaults, but for the class.
    pool = DriverPool(
        plain_url(url),
        min_size=size,
        max_size=size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        server_settings=server_settings(idle_tx_timeout_ms, hot=True),
        init=init,
        reset=_keep_session,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
    )
    await pool
    return pool


# What the server says when it ends or refuses sessions: class 08 (connection exceptions)
# and these, by SQLSTATE: shutting down or terminated by an administrator (57P01), crashed
# (57P02), starting up or shutting down (57P03), out of connection slots (53300, 53400).
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300", "53400"})


def _is_loss(error: BaseException) -> bool:
    if isinstance(error, ConnectionError | TimeoutError | asyncpg.ConnectionDoesNotExistError):
        return True
    if isinstance(error, asyncpg.InterfaceError):
        return "connection is closed" in str(error)
    if isinstance(error, asyncpg.InternalClientError):
        # The driver read an error it did not ask for: the server's farewell as it ended
        # the session, before the driver saw the connection close.
        return str(error).startswith("cannot switch to state")
    sqlstate = getattr(error, "sqlstate", None)
    return isinstance(sqlstate, str) and (
        sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_STATES
    )


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error, what SQLAlchemy wraps (``orig``), and what caused each, once each."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        todo += [current.__cause__, current.__context__]
        if isinstance(orig, BaseException):
            todo.append(orig)


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database could not be reached or the session was lost
    (a restart, a terminated backend, a dead connection, no connection free in time), as
    opposed to a statement the database refused: the request may be tried again."""
    if isinstance(error, SATimeoutError):  # no pooled connection came free in time
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return any(_is_loss(cause) for cause in _causes(error))


class OutageLog:
    """Logs a background loop's lost database once when it goes and once when it is back,
    not on every attempt (a traceback a poll would bury everything else); other errors keep
    their traceback."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._log, self._what, self.down = logger, what, False

    def failed(self, error: BaseException, message: str) -> None:
        """``error`` ended an attempt; ``message`` says what failed when it is not a loss."""
        if not database_unavailable(error):
            self._log.error(message, exc_info=error)
        elif not self.down:
            self.down = True
            self._log.warning(
                "database unreachable; %s wait until it is back (%s: %s)",
                self._what,
                type(error).__name__,
                error,
            )

    def ok(self) -> None:
        """An attempt worked."""
        if self.down:
            self.down = False
            self._log.warning("database reachable again; %s resume", self._what)


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


async def commit_and_go_on(session: AsyncSession) -> None:
    """Commit the work done so far in ``session`` and run its after-commit work, as
    ``unit_of_work`` does at its end; what follows runs in a new transaction. For work done a
    piece to a transaction within one unit of work, each piece holding its rows only while
    it runs."""
    await session.commit()
    run_after_commit(session)


async def db_now(session: AsyncSession) -> datetime:
    """The database's clock (``now()``: the start of the session's transaction), the one every
    stored time and lease is set and judged by."""
    now: datetime | None = await session.scalar(select(func.now()))
    assert now is not None
    return now


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The driver's connection under ``session``, in its transaction, for statements that skip
    the ORM; the session's pending changes are flushed first, so the statements sent on it
    keep the order the changes were made in.

    SQLAlchemy's asyncpg adapter sends ``BEGIN`` only before its own first statement: until
    then the driver's connection is outside any transaction, and a statement sent on it
    directly would commit on its own (a lock it takes would end with it). So the adapter's
    transaction is begun here when it has not been, as the adapter begins it, and the
    session's commit or rollback ends it.

    A hot path asks for it several times a request: the connection found is kept with the
    session's transaction, and asked again within it, costs no more than the flush of what
    is pending."""
    if session.new or session.dirty or session.deleted:
        await session.flush()
    transaction = session.get_transaction()
    held = session.info.get(_DRIVER_KEY)
    if held is not None and transaction is not None and held[0] is transaction:
        return held[1]
    connection = await session.connection()
    fairy = await connection.get_raw_connection()
    adapter: Any = fairy.dbapi_connection  # the adapter's transaction: see the docstring
    if adapter._transaction is None:
        async with adapter._execute_mutex:
            if adapter._transaction is None:
                await adapter._start_transaction()
    raw: asyncpg.Connection = fairy.driver_connection
    session.info[_DRIVER_KEY] = (session.get_transaction(), raw)
    return raw


@asynccontextmanager
async def planned_once(conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """Inside the block, statements on a session's driver connection are planned as the
    driver pool's are (``server_settings``, ``hot``): once per connection, not afresh on
    each execution. PostgreSQL plans a statement with many parameters again every time it
    guesses that a custom plan beats the generic one; for the admission statement that
    planning costs several times its running. The setting is the transaction's own
    (``SET LOCAL``) and the block's end restores it, so the session's other statements keep
    PostgreSQL's choice; a statement that fails ends the transaction, and the setting
    with it."""
    await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
    yield conn
    await conn.execute("SET LOCAL plan_cache_mode = DEFAULT")


_DRIVER_KEY = "driver_connection"


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with unit_of_work(request.app.state.sessionmaker) as session:
        yield session


Session = Annotated[AsyncSession, Depends(_request_session, scope="function")]
