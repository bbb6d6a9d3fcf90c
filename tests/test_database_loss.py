"""Losing the database's connections: a request answers 503 with ``Retry-After`` (or
succeeds on a fresh connection), never 500, and nothing it acknowledged is lost.

The service's sessions are ended on the server (``pg_terminate_backend``, as a restart or
an administrator would) again and again while clients create contacts, read queues and
contacts, and agents take and complete their offers, all through the API.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from asyncpg import exceptions as pg
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import (
    create_driver_pool,
    create_engine,
    create_sessionmaker,
    database_unavailable,
    driver_connection,
    plain_url,
    planned_once,
)
from app.main import create_app
from tests.conftest import make_settings
from tests.fixtures.factories import ADMIN_PASSWORD, Api
from tests.fixtures.polling import eventually
from tests.routing.acd import available_agent, queue
from tests.routing.test_dispatcher import proxy_to

# Every session of the test's database but the caller's: the app's requests, pools, event
# hub, timer worker and dispatcher.
END_SESSIONS = """
    SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
"""
KILLS = 8
RESPONSES_BETWEEN_KILLS = 40
EXPECTED = frozenset({200, 201, 409, 503})  # 409: an offer or contact moved on meanwhile


@dataclass
class Seen:
    """Every response of the load, by status, and the contacts acknowledged as created."""

    statuses: Counter[int] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    bad_503s: list[str] = field(default_factory=list)
    created: list[int] = field(default_factory=list)
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, response: Response) -> Response:
        self.statuses[response.status_code] += 1
        self.progress.set()
        request = f"{response.request.method} {response.request.url.path}"
        if response.status_code not in EXPECTED:
            self.unexpected.append(f"{request} -> {response.status_code}: {response.text[:300]}")
        elif response.status_code == 503 and not well_formed_503(response):
            self.bad_503s.append(f"{request}: {response.headers} {response.text[:300]}")
        return response

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


def well_formed_503(response: Response) -> bool:
    body = response.json()
    return (
        response.headers.get("Retry-After", "").isdigit()
        and isinstance(body.get("error"), str)
        and isinstance(body.get("detail"), str)
    )


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """A client that sees a 500 as a response (to count it), not as an exception."""
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


Worker = Callable[[], Awaitable[None]]


def caller(api: Api, queue_name: str, seen: Seen) -> Worker:
    """Creates contacts; remembers those answered 201."""

    async def step() -> None:
        response = seen.record(
            await api.post("/api/v1/contacts", {"channel": "chat", "queue": queue_name})
        )
        if response.status_code == 201:
            seen.created.append(response.json()["id"])

    return step


def reader(api: Api, seen: Seen) -> Worker:
    """Reads the queues and a contact created before."""

    async def step() -> None:
        seen.record(await api.get("/api/v1/queues"))
        if seen.created:
            seen.record(await api.get(f"/api/v1/contacts/{random.choice(seen.created)}"))

    return step


def agent(console: Api, seen: Seen) -> Worker:
    """Takes the offers it has and completes the contacts."""

    async def step() -> None:
        offers = seen.record(await console.get("/api/v1/offers?agent=me"))
        for offer in offers.json()["items"] if offers.status_code == 200 else []:
            accepted = seen.record(await console.post(f"/api/v1/offers/{offer['id']}/accept"))
            if accepted.status_code == 200:
                done = f"/api/v1/contacts/{offer['contact_id']}/complete"
                seen.record(await console.post(done, {"disposition": "resolved"}))

    return step


async def run_until(stop: asyncio.Event, step: Worker) -> None:
    while not stop.is_set():
        await step()


async def end_sessions_under_load(db: str, seen: Seen) -> int:
    """End every session of the service ``KILLS`` times, each once the load has had
    ``RESPONSES_BETWEEN_KILLS`` more answers; how many sessions were ended."""
    ended = 0
    killer = await asyncpg.connect(plain_url(db))
    try:
        for _ in range(KILLS):
            target = seen.total + RESPONSES_BETWEEN_KILLS

            async def answered(target: int = target) -> bool:
                return seen.total >= target

            await eventually(answered, within=60, what="the load to go on")
            ended += await killer.fetchval(END_SESSIONS)
    finally:
        await killer.close()
    return ended


class TestSessionsEndedUnderLoad:
    async def test_requests_never_answer_500_and_no_acknowledged_contact_is_lost(
        self, client: AsyncClient, db: str
    ) -> None:
        admin = await Api.signed_in(client, "admin", ADMIN_PASSWORD)
        q = await queue(admin, wrap_up_s=0, ring_timeout_s=5)
        consoles = [await available_agent(admin, capacity={"chat": 3}) for _ in range(3)]
        seen = Seen()
        stop = asyncio.Event()
        workers = [caller(admin, q["name"], seen) for _ in range(3)]
        workers += [reader(admin, seen) for _ in range(2)]
        workers += [agent(console, seen) for console in consoles]
        load = [asyncio.create_task(run_until(stop, w)) for w in workers]
        try:
            ended = await end_sessions_under_load(db, seen)
        finally:
            stop.set()
            await asyncio.gather(*load)

        assert ended >= KILLS, "each round ended at least one of the service's sessions"
        assert not seen.unexpected, "\n".join(seen.unexpected[:10])
        assert not seen.bad_503s, "\n".join(seen.bad_503s[:10])

        async def recovered() -> bool:
            return (await admin.get("/api/v1/queues")).status_code == 200

        await eventually(recovered, within=30, what="the service to answer again")
        conn = await asyncpg.connect(plain_url(db))
        try:
            stored = await conn.fetchval(
                "SELECT count(*) FROM contacts WHERE id = ANY($1::bigint[])", seen.created
            )
        finally:
            await conn.close()
        assert seen.created, "the load created contacts"
        assert stored == len(set(seen.created)), "a contact answered 201 was lost"


@asynccontextmanager
async def app_client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=transport, base_url="http://test") as http,
    ):
        yield http


def make_app(database_url: str) -> FastAPI:
    return create_app(make_settings(database_url))


class TestDatabaseUnreachable:
    async def test_requests_answer_503_with_retry_after_and_an_error_body(self, db: str) -> None:
        async with proxy_to(db) as proxy, app_client(make_app(proxy.url)) as client:
            admin = await Api.signed_in(client, "admin", ADMIN_PASSWORD)
            q = await queue(admin)
            await proxy.close()  # every connection cut, and no new one accepted
            asked = [
                await admin.get("/api/v1/queues"),
                await admin.get(f"/api/v1/queues/{q['id']}"),
                await admin.post("/api/v1/contacts", {"channel": "chat", "queue": q["name"]}),
            ]
        assert [r.status_code for r in asked] == [503, 503, 503]
        for response in asked:
            assert well_formed_503(response), response.text
            assert response.json()["error"] == "ServiceUnavailable"


async def sleeping(watcher: asyncpg.Connection, pid: int) -> bool:
    """Whether the backend ``pid`` is running its ``pg_sleep``."""
    return bool(
        await watcher.fetchval(
            "SELECT state = 'active' AND query LIKE '%pg_sleep%' "
            "FROM pg_stat_activity WHERE pid = $1",
            pid,
        )
    )


class TestDriverPool:
    async def test_a_connection_whose_statement_was_cancelled_is_closed_not_reused(
        self, db: str
    ) -> None:
        pool = await create_driver_pool(db, size=1)
        watcher = await asyncpg.connect(plain_url(db))
        try:
            first = await pool.fetchval("SELECT pg_backend_pid()")
            slow = asyncio.create_task(pool.fetchval("SELECT pg_sleep(60)"))

            await eventually(lambda: sleeping(watcher, first), what="the slow statement to run")
            slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await slow
            assert await pool.fetchval("SELECT pg_backend_pid()") != first
        finally:
            await watcher.close()
            await pool.close()


class TestTransactionBegunWithALock:
    """``in_transaction(begin)``: the first message takes what must come first (a lock) in
    the same round trip as BEGIN; the ending is the same as a transaction of the driver's."""

    @pytest.fixture
    async def pool(self, db: str) -> AsyncIterator[Any]:
        pool = await create_driver_pool(db, size=1)
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS begun_probe (n int)")
            await conn.execute("TRUNCATE begun_probe")
        yield pool
        await pool.close()

    BEGIN = "BEGIN; SELECT pg_advisory_xact_lock(4242)"

    async def test_the_lock_is_held_through_the_block_and_the_writes_commit(
        self, db: str, pool: Any
    ) -> None:
        watcher = await asyncpg.connect(plain_url(db))
        try:
            async with pool.in_transaction(self.BEGIN) as conn:
                held = await watcher.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND objid = 4242 AND pid = $1 AND granted",
                    await conn.fetchval("SELECT pg_backend_pid()"),
                )
                await conn.execute("INSERT INTO begun_probe VALUES (1)")
                assert await watcher.fetchval("SELECT count(*) FROM begun_probe") == 0
            assert held == 1
            assert await watcher.fetchval("SELECT count(*) FROM begun_probe") == 1
            assert (
                await watcher.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242"
                )
                == 0
            )
        finally:
            await watcher.close()

    async def test_a_refused_statement_rolls_back_and_the_connection_is_used_again(
        self, pool: Any
    ) -> None:
        first = await pool.fetchval("SELECT pg_backend_pid()")

        async def refused() -> None:
            async with pool.in_transaction(self.BEGIN) as conn:
                await conn.execute("INSERT INTO begun_probe VALUES (1)")
                await conn.execute("SELECT 1 / 0")

        with pytest.raises(pg.DivisionByZeroError):
            await refused()
        assert await pool.fetchval("SELECT count(*) FROM begun_probe") == 0
        assert await pool.fetchval("SELECT pg_backend_pid()") == first

    async def test_an_error_of_the_code_closes_the_connection_and_writes_nothing(
        self, pool: Any
    ) -> None:
        first = await pool.fetchval("SELECT pg_backend_pid()")

        async def failing() -> None:
            async with pool.in_transaction(self.BEGIN) as conn:
                await conn.execute("INSERT INTO begun_probe VALUES (1)")
                raise LookupError("refused by the code")

        with pytest.raises(LookupError):
            await failing()
        assert await pool.fetchval("SELECT count(*) FROM begun_probe") == 0
        assert await pool.fetchval("SELECT pg_backend_pid()") != first

    async def test_a_statement_cancelled_midway_closes_the_connection(
        self, db: str, pool: Any
    ) -> None:
        first = await pool.fetchval("SELECT pg_backend_pid()")
        watcher = await asyncpg.connect(plain_url(db))
        try:

            async def slow() -> None:
                async with pool.in_transaction(self.BEGIN) as conn:
                    await conn.execute("INSERT INTO begun_probe VALUES (1)")
                    await conn.execute("SELECT pg_sleep(60)")

            task = asyncio.create_task(slow())

            await eventually(lambda: sleeping(watcher, first), what="the slow statement to run")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await pool.fetchval("SELECT pg_backend_pid()") != first
            assert await pool.fetchval("SELECT count(*) FROM begun_probe") == 0
        finally:
            # The server may run the cut-off statement on until it notices the socket is
            # gone, holding the probe table's lock that the next test's TRUNCATE needs.
            await watcher.execute("SELECT pg_terminate_backend($1)", first)
            await watcher.close()

    async def test_a_first_message_that_does_not_begin_is_refused(self, pool: Any) -> None:
        with pytest.raises(ValueError, match="starts with BEGIN"):
            async with pool.in_transaction("SELECT pg_advisory_xact_lock(1)"):
                pass


def wrapped(error: Exception) -> Exception:
    """``error`` as SQLAlchemy raises it."""
    return DBAPIError.instance("SELECT 1", {}, error, Exception)


def caused(error: Exception, cause: BaseException) -> Exception:
    error.__cause__ = cause
    return error


class TestTheSessionsDriverConnection:
    """``driver_connection``: statements sent on the driver's connection under a session run
    in the session's transaction, even when the session has run nothing of its own yet."""

    @pytest.fixture
    async def sessions(self, db: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
        engine = create_engine(db, pool_size=1)
        async with engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS session_probe (n int)")
            await conn.exec_driver_sql("TRUNCATE session_probe")
        yield create_sessionmaker(engine)
        await engine.dispose()

    async def test_a_lock_taken_first_is_held_until_the_session_commits(
        self, db: str, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        watcher = await asyncpg.connect(plain_url(db))
        try:
            async with sessions() as session:
                conn = await driver_connection(session)
                await conn.execute("SELECT pg_advisory_xact_lock(4343)")
                await conn.execute("INSERT INTO session_probe VALUES (1)")
                held = await watcher.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4343"
                )
                seen = await watcher.fetchval("SELECT count(*) FROM session_probe")
                await session.commit()
            assert (held, seen) == (1, 0)
            assert await watcher.fetchval("SELECT count(*) FROM session_probe") == 1
        finally:
            await watcher.close()

    async def test_what_it_wrote_is_undone_by_the_sessions_rollback(
        self, db: str, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessions() as session:
            conn = await driver_connection(session)
            await conn.execute("INSERT INTO session_probe VALUES (1)")
            await session.rollback()
        watcher = await asyncpg.connect(plain_url(db))
        try:
            assert await watcher.fetchval("SELECT count(*) FROM session_probe") == 0
        finally:
            await watcher.close()

    async def test_the_sessions_next_transaction_is_begun_again(
        self, db: str, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessions() as session:
            first = await driver_connection(session)
            assert await driver_connection(session) is first  # kept within the transaction
            await first.execute("INSERT INTO session_probe VALUES (1)")
            await session.commit()
            conn = await driver_connection(session)
            await conn.execute("INSERT INTO session_probe VALUES (2)")
            await session.rollback()
        watcher = await asyncpg.connect(plain_url(db))
        try:
            assert await watcher.fetchval("SELECT array_agg(n) FROM session_probe") == [1]
        finally:
            await watcher.close()

    async def test_planned_once_plans_once_inside_its_block_only(
        self, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        # A parameter that a custom plan could read, so PostgreSQL is tempted to plan afresh.
        probe = "SELECT count(*) FROM session_probe WHERE n = $1 OR $1 IS NULL"
        async with sessions() as session:
            async with planned_once(await driver_connection(session)) as conn:
                inside = await conn.fetchval("SHOW plan_cache_mode")
                for n in range(6):
                    await conn.fetchval(probe, n)
            after = await conn.fetchval("SHOW plan_cache_mode")
            plans = await conn.fetchrow(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement = $1",
                probe,
            )
            await session.rollback()
        assert (inside, after) == ("force_generic_plan", "auto")
        assert tuple(plans) == (6, 0)


class TestDatabaseUnavailable:
    @pytest.mark.parametrize(
        ("error", "unavailable"),
        [
            (ConnectionRefusedError(), True),
            (ConnectionResetError(), True),
            (TimeoutError(), True),
            (pg.ConnectionDoesNotExistError("closed in the middle of operation"), True),
            (pg.AdminShutdownError("terminating connection"), True),
            (pg.CannotConnectNowError("the database system is starting up"), True),
            (pg.TooManyConnectionsError("too many clients"), True),
            (pg.InterfaceError("cannot perform operation: connection is closed"), True),
            (pg.InternalClientError("cannot switch to state 12; another operation"), True),
            (wrapped(pg.ConnectionDoesNotExistError("closed")), True),
            (wrapped(caused(RuntimeError("adapted"), pg.AdminShutdownError("x"))), True),
            (PoolTimeout("QueuePool limit reached"), True),
            (pg.UniqueViolationError("duplicate key"), False),
            (pg.QueryCanceledError("canceling statement due to statement timeout"), False),
            (
                pg.InterfaceError("cannot perform operation: another operation is in progress"),
                False,
            ),
            (pg.InternalClientError("unexpected error while performing authentication"), False),
            (wrapped(pg.UniqueViolationError("duplicate key")), False),
            (FileNotFoundError(), False),
            (ValueError("bad"), False),
        ],
        ids=lambda x: type(x).__name__ if isinstance(x, BaseException) else str(x),
    )
    def test_only_a_lost_or_unreachable_database_counts(
        self, error: Exception, unavailable: bool
    ) -> None:
        assert database_unavailable(error) is unavailable
