"""Timer kinds fired in batches: claimed up to the kind's size and handed over in one call,
in order; a failing batch fired one by one, only the bad timer retried; a kind registered
one by one afterwards fired one by one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db import unit_of_work
from app.timers import service as timers
from app.timers.models import Timer
from app.timers.worker import DueTimer, TimerRegistry, TimerWorker


async def rows(engine: AsyncEngine, sql: str) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql))).all())


def worker(sessionmaker: async_sessionmaker[AsyncSession], found: TimerRegistry) -> TimerWorker:
    return TimerWorker(sessionmaker, found, poll_interval_s=0.05, batch_size=10, max_attempts=3)


async def due_timers(sessionmaker: async_sessionmaker[AsyncSession], kind: str, count: int) -> None:
    async with unit_of_work(sessionmaker) as session:
        now = await session.scalar(select(func.now()))
        assert now is not None
        due = [(f"s{i:03d}", now - timedelta(seconds=count - i)) for i in range(count)]
        await timers.schedule_many(session, kind=kind, due=due)


class TestBatchedKinds:
    async def test_due_timers_are_claimed_up_to_the_size_and_fired_in_one_call_in_order(
        self, engine: AsyncEngine, sessionmaker: Any
    ) -> None:
        calls: list[list[str]] = []

        async def batch(session: AsyncSession, claimed: Sequence[DueTimer], now: datetime) -> None:
            left = await session.scalar(
                select(func.count(Timer.id)).where(Timer.id.in_([t.id for t in claimed]))
            )
            assert left == 0, "deleted before the handler runs"
            calls.append([t.subject for t in claimed])

        async def single(session: AsyncSession, timer: Timer, now: datetime) -> None:
            raise AssertionError("a batched kind is not fired one by one")

        found = TimerRegistry()
        found.register_batch("test.batch", batch, single=single, size=7)
        await due_timers(sessionmaker, "test.batch", 10)
        assert await worker(sessionmaker, found).run_due() == 7
        assert await worker(sessionmaker, found).run_due() == 3
        assert await worker(sessionmaker, found).run_due() == 0
        assert calls == [[f"s{i:03d}" for i in range(7)], [f"s{i:03d}" for i in range(7, 10)]]

    async def test_a_failing_batch_is_fired_one_by_one_and_only_the_bad_timer_retries(
        self, engine: AsyncEngine, sessionmaker: Any
    ) -> None:
        fired: list[str] = []

        async def batch(session: AsyncSession, claimed: Sequence[DueTimer], now: datetime) -> None:
            await timers.schedule(session, kind="test.other", subject="x", due_at=now)
            raise RuntimeError("one timer of the batch is bad")

        async def single(session: AsyncSession, timer: Timer, now: datetime) -> None:
            if timer.subject == "s002":
                raise RuntimeError("bad")
            fired.append(timer.subject)

        found = TimerRegistry()
        found.register_batch("test.batch", batch, single=single, size=10)
        await due_timers(sessionmaker, "test.batch", 4)
        assert await worker(sessionmaker, found).run_due() == 4
        assert fired == ["s000", "s001", "s003"]
        left = await rows(
            engine,
            "SELECT subject, attempts, kind FROM timers WHERE kind LIKE 'test.%' ORDER BY subject",
        )
        assert left == [("s002", 1, "test.batch")], "the batch's own writes were undone"

    async def test_registering_one_by_one_after_a_batch_fires_one_by_one(
        self, sessionmaker: Any
    ) -> None:
        fired: list[str] = []

        async def batch(session: AsyncSession, claimed: Sequence[DueTimer], now: datetime) -> None:
            raise AssertionError("replaced")

        async def single(session: AsyncSession, timer: Timer, now: datetime) -> None:
            fired.append(timer.subject)

        found = TimerRegistry()
        found.register_batch("test.batch", batch, single=single, size=10)
        found.register("test.batch", single)
        assert found.batches == []
        await due_timers(sessionmaker, "test.batch", 3)
        assert await worker(sessionmaker, found).run_due() == 3
        assert fired == ["s000", "s001", "s002"]


class TestUnregister:
    def test_an_unregistered_kind_is_fired_no_more_single_or_batched(self) -> None:
        async def single(session: AsyncSession, timer: Timer, now: datetime) -> None:
            return None

        async def batch(session: AsyncSession, due: Sequence[DueTimer], now: datetime) -> None:
            return None

        registry = TimerRegistry()
        registry.register("test.single", single)
        registry.register_batch("test.batched", batch, single=single, size=10)
        assert registry.kinds == ["test.batched", "test.single"]
        registry.unregister("test.single")
        registry.unregister("test.batched")
        registry.unregister("test.never")  # not registered: nothing to do
        assert registry.kinds == []
        assert registry.batches == []
        assert registry.get("test.single") is None
