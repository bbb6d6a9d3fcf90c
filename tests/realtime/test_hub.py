"""Hubs on one database see each other's events: NOTIFY wakes them, polling backs it up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app import db as db_module
from app.db import create_engine
from app.events.log import ORIGIN, LoggedEvent, read_after, record
from app.realtime import hub as hub_module
from app.realtime.hub import EventHub
from tests.fixtures.net import closed_port, true
from tests.fixtures.polling import eventually


@pytest.fixture
async def engine(db: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db, pool_size=5)
    yield engine
    await engine.dispose()


async def started(engine: AsyncEngine, url: str, poll: float) -> EventHub:
    hub = EventHub(engine, url, poll_interval_s=poll)
    await hub.start()
    return hub


async def readable(engine: AsyncEngine, name: str) -> None:
    """Wait until the event is readable (another transaction on the server may hold it back)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        async with engine.connect() as conn:
            if any(e.subject_id == name for e in await read_after(conn, ORIGIN)):
                return
    raise AssertionError(f"event {name} never became readable")


async def commit_event(engine: AsyncEngine, name: str, hub: EventHub | None) -> None:
    async with AsyncSession(engine) as session:
        record(session, type="test.hub", subject_type="test", subject_id=name)
        await session.commit()
    if hub is not None:
        hub.poke()  # what the unit of work does after a commit


async def notified(hub: EventHub) -> None:
    """Wait until ``hub`` has counted a NOTIFY sent. The server delivers a NOTIFY to the
    listeners at commit, before the sender's connection has read the commit's reply: a
    listener on the same event loop may hear it before the sender has counted it."""

    async def counted() -> bool:
        return hub.notified >= 1

    await eventually(counted, what="the hub to count its NOTIFY")


class TestNotifications:
    async def test_lone_hub_sends_no_notification_until_another_hub_connects(
        self, engine: AsyncEngine, db: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(hub_module, "PEERS_CHECK_S", 0.0)  # look at every commit
        writer = await started(engine, db, 0.05)
        try:
            await commit_event(engine, "alone", writer)

            async def skipped() -> bool:
                return writer.unheard >= 1

            await eventually(skipped, what="the lone hub to let its notification go")
            assert writer.notified == 0
            # The reader starts past "alone" only once the log's horizon has passed it (another
            # database's transaction on a shared server may hold it back a while).
            await readable(engine, "alone")
            # The reader's poll is far longer than the wait: only NOTIFY can wake it in time.
            reader = await started(engine, db, 3600)
            try:
                sub = reader.subscribe(maxsize=10)
                await commit_event(engine, "heard", writer)
                event = await asyncio.wait_for(sub.queue.get(), 30)
                assert event.subject_id == "heard"
                await notified(writer)
            finally:
                await reader.stop()
        finally:
            await writer.stop()

    async def test_a_notification_heard_from_another_hub_makes_this_one_notify_it(
        self, engine: AsyncEngine, db: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A hub that found itself alone does not look again for an hour here, yet once it
        hears another hub's NOTIFY it notifies that hub, whose peer listeners hear it at
        once."""
        monkeypatch.setattr(hub_module, "PEERS_CHECK_S", 3600.0)
        first = await started(engine, db, 3600)
        try:
            await commit_event(engine, "alone", first)

            async def alone() -> bool:
                return first.unheard >= 1

            await eventually(alone, what="the first hub to find itself alone")
            second = await started(engine, db, 3600)
            try:
                heard_by_second = asyncio.Event()
                second.add_peer_listener(heard_by_second.set)
                await commit_event(engine, "from-second", second)

                async def learned() -> bool:
                    return first.peers

                await eventually(learned, what="the first hub to hear the second")
                await commit_event(engine, "from-first", first)
                await asyncio.wait_for(heard_by_second.wait(), 30)
                await notified(first)
            finally:
                await second.stop()
        finally:
            await first.stop()


class TestEventHub:
    async def test_event_written_through_one_hub_is_read_by_the_other(
        self, engine: AsyncEngine, db: str
    ) -> None:
        # The reader's poll is far longer than the wait: only NOTIFY can wake it in time.
        writer, reader = await started(engine, db, 0.05), await started(engine, db, 3600)
        try:
            sub = reader.subscribe(maxsize=10)
            await commit_event(engine, "cross-instance", writer)
            # Far below the reader's poll: only NOTIFY wakes it this soon. Not tighter: on a
            # shared server another database's transaction holds the log's horizon back a while.
            event = await asyncio.wait_for(sub.queue.get(), 30)
            assert event.subject_id == "cross-instance"
        finally:
            await writer.stop()
            await reader.stop()

    async def test_poll_finds_events_when_no_notification_comes(
        self, engine: AsyncEngine, db: str
    ) -> None:
        reader = await started(engine, db, 0.05)
        try:
            sub = reader.subscribe(maxsize=10)
            await commit_event(engine, "silent", hub=None)
            event = await asyncio.wait_for(sub.queue.get(), 10)
            assert event.subject_id == "silent"
        finally:
            await reader.stop()

    async def test_listeners_get_batches_in_log_order(self, engine: AsyncEngine, db: str) -> None:
        hub = await started(engine, db, 0.05)
        seen: list[str] = []
        done = asyncio.Event()

        def listener(batch: object) -> None:
            assert isinstance(batch, list)
            seen.extend(e.subject_id for e in batch if isinstance(e, LoggedEvent))
            if len(seen) >= 3:
                done.set()

        hub.add_listener(listener)
        try:
            for name in ("one", "two", "three"):
                await commit_event(engine, name, hub)
            await asyncio.wait_for(done.wait(), 10)
            assert seen == ["one", "two", "three"]
        finally:
            await hub.stop()

    async def test_slow_subscriber_is_marked_overflowed_without_blocking_others(
        self, engine: AsyncEngine, db: str
    ) -> None:
        hub = await started(engine, db, 0.05)
        try:
            slow, fast = hub.subscribe(maxsize=1), hub.subscribe(maxsize=100)
            for n in range(3):
                await commit_event(engine, str(n), hub)
            received = [await asyncio.wait_for(fast.queue.get(), 10) for _ in range(3)]
            assert [e.subject_id for e in received] == ["0", "1", "2"]
            await asyncio.wait_for(slow.overflowed.wait(), 10)
            assert slow.queue.qsize() == 1
        finally:
            await hub.stop()

    async def test_hub_starts_at_head_and_does_not_replay_old_events(
        self, engine: AsyncEngine, db: str
    ) -> None:
        await commit_event(engine, "before", hub=None)
        await readable(engine, "before")  # otherwise it is, rightly, new to a starting hub
        hub = await started(engine, db, 0.05)
        try:
            sub = hub.subscribe(maxsize=10)
            await commit_event(engine, "after", hub)
            event = await asyncio.wait_for(sub.queue.get(), 10)
            assert event.subject_id == "after"
        finally:
            await hub.stop()

    async def test_recent_events_are_served_from_memory_after_any_cursor_it_covers(
        self, engine: AsyncEngine, db: str
    ) -> None:
        await commit_event(engine, "older", hub=None)
        await readable(engine, "older")
        hub = await started(engine, db, 0.05)
        try:
            start = hub.cursor
            sub = hub.subscribe(maxsize=10)
            for n in range(3):
                await commit_event(engine, f"m{n}", hub)
            read = [await asyncio.wait_for(sub.queue.get(), 10) for _ in range(3)]
            assert [e.subject_id for e in hub.since(start, 10) or []] == ["m0", "m1", "m2"]
            assert [e.subject_id for e in hub.since(read[0].cursor, 10) or []] == ["m1", "m2"]
            assert [e.subject_id for e in hub.since(start, 2) or []] == ["m0", "m1"]
            assert hub.since(read[2].cursor, 10) == []  # nothing newer read yet
            assert hub.since(ORIGIN, 10) is None  # before the hub started: read the log
        finally:
            await hub.stop()

    async def test_memory_keeps_the_newest_half_when_full(
        self, engine: AsyncEngine, db: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(hub_module, "RECENT_MAX", 4)
        hub = await started(engine, db, 0.05)
        try:
            start = hub.cursor
            sub = hub.subscribe(maxsize=10)
            for n in range(5):
                await commit_event(engine, f"t{n}", hub)
            read = [await asyncio.wait_for(sub.queue.get(), 10) for _ in range(5)]
            assert hub.since(start, 10) is None
            kept = hub.since(read[2].cursor, 10)
            assert [e.subject_id for e in kept or []] == ["t3", "t4"]
            assert hub.since(read[1].cursor, 10) is None  # t2 itself is no longer held
        finally:
            await hub.stop()

    async def test_a_watcher_is_woken_by_every_read_not_only_the_first(
        self, engine: AsyncEngine, db: str
    ) -> None:
        hub = await started(engine, db, 0.05)
        try:
            more = hub.watch()
            for name in ("w1", "w2"):
                more.clear()
                await commit_event(engine, name, hub)
                await asyncio.wait_for(more.wait(), 10)
            hub.unwatch(more)
            more.clear()
            sub = hub.subscribe(maxsize=10)
            await commit_event(engine, "w3", hub)
            assert (await asyncio.wait_for(sub.queue.get(), 10)).subject_id in {"w1", "w2", "w3"}
            assert not more.is_set()
        finally:
            await hub.stop()


class TestOutage:
    async def test_a_lost_database_is_logged_once_when_it_goes_and_once_when_it_is_back(
        self,
        engine: AsyncEngine,
        db: str,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        closed, server_up, attempts = closed_port(), asyncio.Event(), 0
        connect = db_module.connect_driver

        async def flaky(url: str, **options: Any) -> asyncpg.Connection:
            nonlocal attempts
            attempts += 1
            if server_up.is_set():
                return await connect(url, **options)
            return await connect(f"postgresql://postgres@127.0.0.1:{closed}/postgres", **options)

        monkeypatch.setattr(hub_module, "connect_driver", flaky)
        caplog.set_level(logging.INFO, logger="app.realtime.hub")
        hub = await started(engine, db, poll=0.02)
        try:
            await eventually(lambda: true(attempts >= 5), what="five attempts to connect")
            down = [r.getMessage().split(";")[0] for r in caplog.records]
            server_up.set()
            await commit_event(engine, "outage.over", None)
            await eventually(
                lambda: true(any("reachable again" in r.getMessage() for r in caplog.records)),
                what="the hub to say the database is back",
            )
        finally:
            await hub.stop()
        assert down == ["database unreachable"]
        lines = [r.getMessage().split(";")[0] for r in caplog.records]
        assert lines == ["database unreachable", "database reachable again"]
        assert all(r.exc_info is None for r in caplog.records), "no traceback for an outage"
