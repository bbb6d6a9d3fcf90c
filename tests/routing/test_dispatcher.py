"""The dispatcher: its pure decisions (when to sleep, which events wake it), and failover
from a leader whose connection hangs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from app.config import Settings
from app.db import plain_url
from app.events.log import Cursor, LoggedEvent
from app.routing.dispatcher import (
    LEADER_LOCK,
    SKIPPED_RETRY_S,
    Dispatcher,
    sleep_after,
    wakes,
)
from app.routing.rounds import Round
from tests.conftest import make_settings
from tests.fixtures.polling import eventually

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
TICK = 0.5


def result(offers: int = 0, skipped: int = 0, next_wake_in_s: float | None = None) -> Round:
    wake = None if next_wake_in_s is None else NOW + timedelta(seconds=next_wake_in_s)
    return Round(offers=offers, next_wake_at=wake, now=NOW, skipped=skipped)


class TestSleepAfter:
    @pytest.mark.parametrize(
        ("round_", "retried", "sleep", "retry"),
        [
            pytest.param(result(offers=3), 0.0, 0.0, 0.0, id="offers-made-go-again"),
            pytest.param(result(offers=1, skipped=2), 0.16, 0.0, 0.0, id="offers-end-retries"),
            pytest.param(result(), 0.0, TICK, 0.0, id="nothing-to-do-tick"),
            pytest.param(result(next_wake_in_s=0.2), 0.0, 0.2, 0.0, id="step-expiry-first"),
            pytest.param(result(next_wake_in_s=9), 0.0, TICK, 0.0, id="tick-before-late-wake"),
            pytest.param(result(next_wake_in_s=-1), 0.0, 0.001, 0.0, id="overdue-wake-at-once"),
            pytest.param(result(skipped=1), 0.0, SKIPPED_RETRY_S, SKIPPED_RETRY_S, id="first-skip"),
            pytest.param(
                result(skipped=1),
                SKIPPED_RETRY_S,
                2 * SKIPPED_RETRY_S,
                2 * SKIPPED_RETRY_S,
                id="skipped-again-doubles",
            ),
            pytest.param(result(skipped=1), 0.4, TICK, TICK, id="retry-capped-at-tick"),
            pytest.param(
                result(skipped=1, next_wake_in_s=0.005),
                0.0,
                0.005,
                SKIPPED_RETRY_S,
                id="earlier-wake-wins",
            ),
            pytest.param(result(), 0.32, TICK, 0.0, id="no-skip-ends-retries"),
        ],
    )
    def test_sleep_and_retry(
        self, round_: Round, retried: float, sleep: float, retry: float
    ) -> None:
        assert sleep_after(round_, TICK, retried) == pytest.approx((sleep, retry))


def event(type_: str, subject_type: str = "contact", **data: Any) -> LoggedEvent:
    return LoggedEvent(
        id=1,
        cursor=Cursor(1, 1),
        type=type_,
        subject_type=subject_type,
        subject_id="1",
        data=data,
        actor="system",
        at=NOW,
    )


class TestWakes:
    @pytest.mark.parametrize(
        ("happened", "woken"),
        [
            (event("contact.queued"), True),
            (event("contact.completed", agent_id=4), True),
            (event("offer.rejected", "offer", agent_id=4), True),
            (event("agent.status_changed", "agent", status="available"), True),
            (event("agent.state_changed", "agent", state="idle"), True),
            (event("agent.state_changed", "agent", state="offered"), False),
            (event("agent.state_changed", "agent", state="busy"), False),
            (event("offer.created", "offer", agent_id=4), False),
            (event("offer.accepted", "offer", agent_id=4), False),
            (event("contact.connected", agent_id=4), False),
        ],
        ids=lambda x: (
            x.type + (f"-{x.data['state']}" if "state" in x.data else "")
            if isinstance(x, LoggedEvent)
            else str(x)
        ),
    )
    def test_only_changes_that_may_free_an_agent_or_add_work_wake(
        self, happened: LoggedEvent, woken: bool
    ) -> None:
        assert wakes(happened) is woken


# --- failover from a hung leader ------------------------------------------------------------

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def opener_of(url: str) -> Opener:
    """How to reach the server ``url`` names: its Unix socket, or TCP."""
    parsed = make_url(url)
    port = parsed.port or 5432
    folder = parsed.query.get("host")
    if isinstance(folder, str) and folder.startswith("/"):
        return lambda: asyncio.open_unix_connection(f"{folder}/.s.PGSQL.{port}")
    return lambda: asyncio.open_connection(parsed.host or "127.0.0.1", port)


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of the database that can stop carrying bytes, both
    ways, without closing anything: to the client and the server the connection still looks
    alive (the proxy's kernel acknowledges everything), as with a hung process or a network
    that silently stops delivering."""

    def __init__(self, database_url: str) -> None:
        self._target = database_url
        self._open_upstream = opener_of(database_url)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._pumps: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """The database's URL, through the proxy."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        parsed = make_url(self._target)
        query = {k: v for k, v in parsed.query.items() if k != "host"}
        return parsed.set(host="127.0.0.1", port=port, query=query).render_as_string(
            hide_password=False
        )

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    def freeze(self) -> None:
        self._flowing.clear()

    async def close(self) -> None:
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await self._open_upstream()
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            self._pumps.add(asyncio.create_task(self._pump(source, sink)))

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while True:
            await self._flowing.wait()
            data = await source.read(65536)
            await self._flowing.wait()  # bytes read just before the freeze stay here too
            if not data:
                sink.close()
                return
            sink.write(data)
            await sink.drain()


@asynccontextmanager
async def proxy_to(database_url: str) -> AsyncIterator[Proxy]:
    proxy = Proxy(database_url)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


@asynccontextmanager
async def running(url: str, settings: Settings) -> AsyncIterator[Dispatcher]:
    dispatcher = Dispatcher(url, settings)
    dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.stop()


async def lock_holder(conn: asyncpg.Connection) -> int | None:
    """The server process id of the session holding the dispatcher lock in this database."""
    pid = await conn.fetchval(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND ((classid::bigint << 32) | objid::bigint) = $1",
        LEADER_LOCK,
    )
    return None if pid is None else int(pid)


def leading(dispatcher: Dispatcher, *, yes: bool = True) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return dispatcher.is_leader is yes

    return check


class TestHungLeader:
    async def test_a_standby_takes_over_from_a_leader_whose_connection_hangs(self, db: str) -> None:
        settings = make_settings(db, leader_stale_s=2, leader_retry_s=0.1)
        async with proxy_to(db) as proxy, running(proxy.url, settings) as hung:
            await eventually(leading(hung), within=20, what="the first dispatcher to lead")
            async with running(db, settings) as standby:
                proxy.freeze()
                await eventually(leading(standby), within=20, what="the standby to take over")
                await eventually(
                    leading(hung, yes=False), within=20, what="the hung leader to stand by"
                )
                watcher = await asyncpg.connect(plain_url(db))
                try:
                    assert await lock_holder(watcher) == standby.backend_pid
                finally:
                    await watcher.close()

    async def test_a_standby_leaves_an_idle_but_live_leader_alone(self, db: str) -> None:
        # No rounds but on a wake or a minute's tick: only the leader's pings keep it known
        # to be alive, across many times the silence a standby tolerates. Two seconds of it:
        # a suite's loaded machine can hold a process back for most of a second.
        settings = make_settings(db, leader_stale_s=2, leader_retry_s=0.05, dispatch_tick_s=60)
        watcher = await asyncpg.connect(plain_url(db))
        try:
            async with running(db, settings) as leader:
                await eventually(leading(leader), within=20, what="the first dispatcher to lead")
                async with running(db, settings) as standby:
                    seen: set[object] = set()

                    async def pinged_often_or_taken_over() -> bool:
                        seen.add(
                            await watcher.fetchval(
                                "SELECT state_change FROM pg_stat_activity WHERE pid = $1",
                                leader.backend_pid,
                            )
                        )
                        return standby.is_leader or len(seen) > 12  # about 3 x leader_stale_s

                    await eventually(pinged_often_or_taken_over, within=30, what="pings")
                    assert not standby.is_leader
                    assert leader.is_leader
                    assert await lock_holder(watcher) == leader.backend_pid
        finally:
            await watcher.close()


class TestNudge:
    async def test_a_nudge_runs_a_round_on_the_leader_and_leaves_a_standby_alone(
        self, db: str
    ) -> None:
        """Another instance's commit nudges every dispatcher: the leader runs a round at once
        (its tick is a minute here); a standby is not woken to try the lock again."""
        settings = make_settings(db, dispatch_tick_s=60, leader_retry_s=60)
        async with running(db, settings) as leader:
            await eventually(leading(leader), within=20, what="the first dispatcher to lead")
            async with running(db, settings) as standby:

                async def first_round_done() -> bool:
                    return leader.rounds >= 1

                await eventually(first_round_done, within=5, what="the leader's first round")
                rounds = leader.rounds
                leader.nudge()

                async def ran() -> bool:
                    return leader.rounds > rounds

                await eventually(ran, within=5, what="a round after the nudge")
                standby.nudge()
                assert not standby._wake.is_set()
                assert not standby.is_leader
