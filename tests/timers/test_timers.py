"""Durable timers: they survive restarts, fire once across workers, and retry on failure;
sweeps run periodically; an outage is logged once, not on every poll."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

import asyncpg
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.config import Settings
from app.db import create_sessionmaker, db_now, plain_url, unit_of_work
from app.events.log import record
from app.events.models import Event
from app.main import create_app
from app.timers import service as timers
from app.timers.models import Timer
from app.timers.worker import RETRY_HELD_S, TimerRegistry, TimerWorker, TryAgainSoon
from tests.fixtures.net import closed_port, true
from tests.fixtures.polling import eventually

ALONE_KEY = 4242  # an advisory lock the test's handlers take


async def mark(session: AsyncSession, timer: Timer, now: datetime) -> None:
    """A handler that leaves a trace in the log, in the claiming transaction."""
    record(session, type="test.fired", subject_type="timer", subject_id=timer.subject)


async def fired(session: AsyncSession) -> list[str]:
    rows = await session.scalars(select(Event.subject_id).where(Event.type == "test.fired"))
    return list(rows)


def worker(
    sessionmaker: async_sessionmaker[AsyncSession],
    registry: TimerRegistry,
    attempts: int = 3,
    *,
    poll_interval_s: float = 0.05,
    retry_held_s: float = RETRY_HELD_S,
) -> TimerWorker:
    return TimerWorker(
        sessionmaker,
        registry,
        poll_interval_s=poll_interval_s,
        batch_size=10,
        max_attempts=attempts,
        retry_held_s=retry_held_s,
    )


def registry_with(kind: str, handler: object) -> TimerRegistry:
    registry = TimerRegistry()
    registry.register(kind, handler)  # type: ignore[arg-type]
    return registry


async def schedule_in(
    sessionmaker: async_sessionmaker[AsyncSession], kind: str, subject: str, seconds: float
) -> None:
    async with unit_of_work(sessionmaker) as session:
        due = await db_now(session) + timedelta(seconds=seconds)
        await timers.schedule(session, kind=kind, subject=subject, due_at=due)


class TestDurability:
    async def test_timer_set_before_a_restart_fires_after_it(self, settings: Settings) -> None:
        fired_in: list[str] = []
        done = asyncio.Event()

        async def handler(session: AsyncSession, timer: Timer, now: datetime) -> None:
            fired_in.append(timer.payload["set_by"])
            done.set()

        first = create_app(settings)
        first.state.timer_registry.register("test.restart", handler)
        async with (
            first.router.lifespan_context(first),
            unit_of_work(first.state.sessionmaker) as session,
        ):
            due = await db_now(session) + timedelta(seconds=1)
            await timers.schedule(
                session, kind="test.restart", subject="r1", due_at=due, payload={"set_by": "first"}
            )
        assert fired_in == [], "the first instance stopped before the timer was due"

        second = create_app(settings)
        second.state.timer_registry.register("test.restart", handler)
        async with second.router.lifespan_context(second):
            await asyncio.wait_for(done.wait(), 15)
            # The handler runs before its transaction commits; the row goes with the commit.
            loop = asyncio.get_running_loop()
            deadline, left = loop.time() + 10, -1
            while left != 0 and loop.time() < deadline:
                async with second.state.sessionmaker() as session:
                    left = await session.scalar(select(func.count()).select_from(Timer)) or 0
        assert fired_in == ["first"]
        assert left == 0


class TestClaiming:
    async def test_two_workers_fire_each_timer_exactly_once(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with unit_of_work(sessionmaker) as session:
            now = await db_now(session)
            for n in range(60):
                await timers.schedule(session, kind="test.once", subject=str(n), due_at=now)
        registry = registry_with("test.once", mark)
        a, b = worker(sessionmaker, registry), worker(sessionmaker, registry)
        while True:
            claimed = await asyncio.gather(a.run_due(), b.run_due())
            if sum(claimed) == 0:
                break
        async with sessionmaker() as session:
            subjects = await fired(session)
        assert sorted(subjects, key=int) == [str(n) for n in range(60)]

    async def test_each_timer_holds_what_its_handler_locked_for_itself_alone(
        self, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """What one timer's handler locked is free again before the next timer's handler
        runs. Fired many to one transaction, it stayed locked until the last handler of the
        claim had run: under load, seconds in which requests waited for those rows."""
        free: list[bool] = []

        async def take(session: AsyncSession, timer: Timer, now: datetime) -> None:
            async with engine.connect() as other:  # as a request would, meanwhile
                try_it = text("SELECT pg_try_advisory_xact_lock(:key)")
                free.append(bool(await other.scalar(try_it, {"key": ALONE_KEY})))
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ALONE_KEY})

        async with unit_of_work(sessionmaker) as session:
            now = await db_now(session)
            for n in range(3):
                due = now - timedelta(seconds=3 - n)
                await timers.schedule(session, kind="test.alone", subject=str(n), due_at=due)
        assert await worker(sessionmaker, registry_with("test.alone", take)).run_due() == 3
        assert free == [True, True, True]

    async def test_timer_not_yet_due_is_left_alone(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await schedule_in(sessionmaker, "test.once", "later", 3600)
        assert await worker(sessionmaker, registry_with("test.once", mark)).run_due() == 0

    async def test_kinds_without_a_handler_here_are_left_for_other_instances(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await schedule_in(sessionmaker, "test.elsewhere", "x", 0)
        assert await worker(sessionmaker, registry_with("test.once", mark)).run_due() == 0
        async with sessionmaker() as session:
            assert await timers.get(session, kind="test.elsewhere", subject="x") is not None

    async def test_running_worker_fires_a_timer_scheduled_after_it_started(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        done = asyncio.Event()

        async def handler(session: AsyncSession, timer: Timer, now: datetime) -> None:
            done.set()

        running = worker(sessionmaker, registry_with("test.live", handler))
        running.start()
        try:
            await schedule_in(sessionmaker, "test.live", "1", 0.1)
            await asyncio.wait_for(done.wait(), 10)
        finally:
            await running.stop()


class TestScheduling:
    async def test_scheduling_again_replaces_the_pending_timer(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await schedule_in(sessionmaker, "test.once", "s", 3600)
        await schedule_in(sessionmaker, "test.once", "s", 0)
        async with sessionmaker() as session:
            count = await session.scalar(select(func.count()).select_from(Timer))
        assert count == 1
        assert await worker(sessionmaker, registry_with("test.once", mark)).run_due() == 1

    async def test_cancelled_timer_never_fires(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await schedule_in(sessionmaker, "test.once", "c", 0)
        async with unit_of_work(sessionmaker) as session:
            assert await timers.cancel(session, kind="test.once", subject="c") is True
            assert await timers.cancel(session, kind="test.once", subject="c") is False
        assert await worker(sessionmaker, registry_with("test.once", mark)).run_due() == 0


class TestFailures:
    async def test_failing_handler_is_retried_then_parked_with_an_event(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        calls = 0

        async def broken(session: AsyncSession, timer: Timer, now: datetime) -> None:
            nonlocal calls
            calls += 1
            record(session, type="test.partial", subject_type="timer", subject_id="b")
            raise RuntimeError("handler broke")

        failing = worker(sessionmaker, registry_with("test.broken", broken), attempts=2)
        await schedule_in(sessionmaker, "test.broken", "b", 0)
        assert await failing.run_due() == 1
        async with unit_of_work(sessionmaker) as session:
            timer = await timers.get(session, kind="test.broken", subject="b")
            assert timer is not None
            assert timer.attempts == 1
            assert timer.last_error == "RuntimeError: handler broke"
            assert timer.due_at > await db_now(session), "retried later, with backoff"
            await session.execute(update(Timer).values(due_at=func.now()))
        assert await failing.run_due() == 1
        async with sessionmaker() as session:
            timer = await timers.get(session, kind="test.broken", subject="b")
            types = list(await session.scalars(select(Event.type).order_by(Event.id)))
        assert calls == 2
        assert timer is not None
        assert timer.failed_at is not None, "kept, marked failed"
        assert await failing.run_due() == 0, "a failed timer is never claimed again"
        assert types == ["timer.failed"], "the failed handler's own writes were rolled back"


class TestRescheduling:
    async def test_handler_that_schedules_its_own_timer_again_leaves_it_pending(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async def again_later(session: AsyncSession, timer: Timer, now: datetime) -> None:
            await timers.schedule(
                session,
                kind=timer.kind,
                subject=timer.subject,
                due_at=now + timedelta(hours=1),
                payload={"round": timer.payload.get("round", 0) + 1},
            )

        await schedule_in(sessionmaker, "test.again", "a", 0)
        assert await worker(sessionmaker, registry_with("test.again", again_later)).run_due() == 1
        async with sessionmaker() as session:
            timer = await timers.get(session, kind="test.again", subject="a")
            now = await db_now(session)
        assert timer is not None, "the timer the handler scheduled was deleted with the fired one"
        assert timer.due_at > now + timedelta(minutes=59)
        assert timer.payload == {"round": 1}
        assert timer.attempts == 0

    async def test_handler_that_schedules_itself_then_fails_is_retried_as_it_was(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async def again_then_broken(session: AsyncSession, timer: Timer, now: datetime) -> None:
            await timers.schedule(
                session, kind=timer.kind, subject=timer.subject, due_at=now + timedelta(hours=1)
            )
            raise RuntimeError("broke after rescheduling")

        await schedule_in(sessionmaker, "test.again", "b", 0)
        failing = worker(sessionmaker, registry_with("test.again", again_then_broken))
        assert await failing.run_due() == 1
        async with sessionmaker() as session:
            rows = (await session.scalars(select(Timer))).all()
            now = await db_now(session)
        assert [(t.subject, t.attempts) for t in rows] == [("b", 1)]
        assert rows[0].due_at < now + timedelta(minutes=2), "the retry, not the rescheduled one"


class TestRowsHeld:
    """A handler that finds its rows held raises ``TryAgainSoon``: the timer keeps its row
    and its due time, and is claimed again after a rest, ahead of the timers due after it."""

    @staticmethod
    async def backlog(sessionmaker: async_sessionmaker[AsyncSession]) -> datetime:
        """``held`` due 3 s ago, then ``b0``, ``b1`` and ``b2`` due after it but due now too;
        when ``held`` was due."""
        async with unit_of_work(sessionmaker) as session:
            now = await db_now(session)
            await timers.schedule(
                session, kind="test.held", subject="held", due_at=now - timedelta(seconds=3)
            )
            for n in range(3):
                due = now - timedelta(seconds=2 - n / 2)
                await timers.schedule(session, kind="test.held", subject=f"b{n}", due_at=due)
        return now - timedelta(seconds=3)

    async def test_a_timer_found_held_keeps_its_place_ahead_of_the_timers_due_after_it(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        order: list[str] = []

        async def handler(session: AsyncSession, timer: Timer, now: datetime) -> None:
            if timer.subject == "held" and "held (busy)" not in order:
                order.append("held (busy)")
                raise TryAgainSoon("held by a test")
            order.append(timer.subject)

        await self.backlog(sessionmaker)
        # Its rest is over at once: it is claimed again, first.
        at_once = worker(sessionmaker, registry_with("test.held", handler), retry_held_s=0)
        claimed = await at_once.run_due()
        assert order == ["held (busy)", "held", "b0", "b1", "b2"]
        assert claimed == 5

    async def test_a_timer_found_held_is_left_for_its_rest_unchanged_and_not_failed(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tried: list[str] = []

        async def handler(session: AsyncSession, timer: Timer, now: datetime) -> None:
            tried.append(timer.subject)
            if timer.subject == "held":
                raise TryAgainSoon("held by a test")

        was_due = await self.backlog(sessionmaker)
        resting = worker(sessionmaker, registry_with("test.held", handler), retry_held_s=3600)
        assert await resting.run_due() == 4
        assert tried == ["held", "b0", "b1", "b2"]
        assert await resting.run_due() == 0, "left alone while it rests"
        async with sessionmaker() as session:
            [row] = (await session.scalars(select(Timer))).all()
            failures = await session.scalar(
                select(func.count()).select_from(Event).where(Event.type == "timer.failed")
            )
        assert (row.subject, row.due_at, row.attempts, row.last_error) == (
            "held",
            was_due,
            0,
            None,
        )
        assert failures == 0
        # Another worker (another instance) has no rest to keep: it tries it now.
        assert await worker(sessionmaker, registry_with("test.held", handler)).run_due() == 1

    async def test_a_running_worker_fires_a_held_timer_once_its_rows_are_free(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        free, done = asyncio.Event(), asyncio.Event()
        tries = 0

        async def handler(session: AsyncSession, timer: Timer, now: datetime) -> None:
            nonlocal tries
            tries += 1
            if not free.is_set():
                if tries >= 2:  # tried again after its rest: let it through next time
                    free.set()
                raise TryAgainSoon("held by a test")
            done.set()

        # A poll far longer than the test: only the end of the rest wakes the worker.
        running = worker(sessionmaker, registry_with("test.held", handler), poll_interval_s=3600)
        await schedule_in(sessionmaker, "test.held", "held", 0)
        running.start()
        try:
            await asyncio.wait_for(done.wait(), 10)
        finally:
            await running.stop()
        assert tries == 3


class TestSweeps:
    async def test_running_worker_runs_each_sweep_again_and_again(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        runs: list[datetime] = []

        async def sweep(session: AsyncSession, now: datetime) -> int:
            runs.append(now)
            record(session, type="test.swept", subject_type="timer", subject_id=str(len(runs)))
            return 1

        registry = TimerRegistry()
        registry.register_sweep("test.sweep", sweep, every_s=0.05)

        async def three_committed() -> bool:
            async with sessionmaker() as session:
                swept = await session.scalar(
                    select(func.count()).select_from(Event).where(Event.type == "test.swept")
                )
            return (swept or 0) >= 3

        running = worker(sessionmaker, registry)
        running.start()
        try:
            # Each sweep's work is seen committed while the worker still runs: a worker that
            # held its sweeps in one transaction would never get there. (Counting the calls
            # instead would race with the last sweep's commit.)
            await eventually(three_committed, what="three committed sweeps")
        finally:
            await running.stop()
        assert runs == sorted(runs)
        assert len(runs) >= 3

    async def test_a_failing_sweep_is_logged_with_its_traceback_and_timers_still_fire(
        self, sessionmaker: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
    ) -> None:
        calls = 0
        done = asyncio.Event()

        async def broken(session: AsyncSession, now: datetime) -> int:
            nonlocal calls
            calls += 1
            raise RuntimeError("sweep broke")

        async def handler(session: AsyncSession, timer: Timer, now: datetime) -> None:
            done.set()

        registry = registry_with("test.live", handler)
        registry.register_sweep("test.broken", broken, every_s=0.05)
        running = worker(sessionmaker, registry)
        caplog.set_level(logging.INFO, logger="app.timers.worker")
        running.start()
        try:
            await eventually(lambda: true(calls >= 2), what="the sweep to run twice")
            await schedule_in(sessionmaker, "test.live", "1", 0)
            await asyncio.wait_for(done.wait(), 10)
        finally:
            await running.stop()
        failures = [r for r in caplog.records if "sweep test.broken failed" in r.getMessage()]
        assert len(failures) >= 2
        assert all(r.exc_info is not None for r in failures), "a bug keeps its traceback"


class TestOutage:
    async def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
        self,
        db: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        port, server_up, attempts = closed_port(), asyncio.Event(), 0

        async def connect() -> asyncpg.Connection:
            nonlocal attempts
            attempts += 1
            if not server_up.is_set():
                return await asyncpg.connect(host="127.0.0.1", port=port, user="postgres")
            return await asyncpg.connect(plain_url(db))

        flaky = create_async_engine("postgresql+asyncpg://", async_creator=connect)
        fired = asyncio.Event()

        async def handler(session: AsyncSession, timer: Timer, now: datetime) -> None:
            fired.set()

        running = worker(create_sessionmaker(flaky), registry_with("test.outage", handler))
        caplog.set_level(logging.INFO, logger="app.timers.worker")
        running.start()
        try:
            await eventually(lambda: true(attempts >= 5), what="five polls of a missing server")
            down = list(caplog.records)
            server_up.set()
            await schedule_in(sessionmaker, "test.outage", "1", 0)
            await asyncio.wait_for(fired.wait(), 10)
            await eventually(
                lambda: true(any("reachable again" in r.getMessage() for r in caplog.records)),
                what="the worker to say the database is back",
            )
        finally:
            await running.stop()
            await flaky.dispose()
        assert [r.getMessage().split(";")[0] for r in down] == ["database unreachable"]
        lines = [r.getMessage().split(";")[0] for r in caplog.records]
        assert lines == ["database unreachable", "database reachable again"]
        assert all(r.exc_info is None for r in caplog.records), "no traceback for an outage"
