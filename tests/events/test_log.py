"""The event log reads gaplessly even when transactions commit out of order (invariant 6)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db import create_engine, unit_of_work
from app.errors import InvalidInput
from app.events.log import (
    ORIGIN,
    RECORD_WATCH_KEY,
    Cursor,
    LoggedEvent,
    head,
    read_after,
    record,
    record_many,
)


@pytest.fixture
async def engine(db: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db, pool_size=20)
    yield engine
    await engine.dispose()


async def read_all(engine: AsyncEngine, cursor: Cursor) -> tuple[list[LoggedEvent], Cursor]:
    async with engine.connect() as conn:
        batch = list(await read_after(conn, cursor))
    return batch, (batch[-1].cursor if batch else cursor)


async def read_settled(
    engine: AsyncEngine, cursor: Cursor, count: int
) -> tuple[list[LoggedEvent], Cursor]:
    """Read until ``count`` events arrived (or 10 s passed).

    Transaction ids are cluster-wide: a transaction open in another database on the same
    server (another test worker) may hold committed events back for a moment.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    seen: list[LoggedEvent] = []
    while len(seen) < count and loop.time() < deadline:
        batch, cursor = await read_all(engine, cursor)
        seen.extend(batch)
    return seen, cursor


def write(session: AsyncSession, name: str) -> None:
    record(session, type="test.written", subject_type="test", subject_id=name)


class TestReadAfter:
    async def test_event_of_a_later_commit_with_lower_id_is_not_skipped(
        self, engine: AsyncEngine
    ) -> None:
        async with AsyncSession(engine) as first, AsyncSession(engine) as second:
            write(first, "first")
            await first.flush()  # lower id, commits last
            write(second, "second")
            await second.commit()

            seen, cursor = await read_all(engine, ORIGIN)
            assert seen == [], "an event must not be readable while an older writer is open"

            await first.commit()
        seen, cursor = await read_settled(engine, cursor, 2)
        assert [e.subject_id for e in seen] == ["first", "second"]
        assert seen[0].id < seen[1].id

    async def test_order_follows_transactions_when_ids_run_the_other_way(
        self, engine: AsyncEngine
    ) -> None:
        async with AsyncSession(engine) as older, AsyncSession(engine) as younger:
            await older.execute(text("SELECT pg_current_xact_id()"))  # older takes its xid first
            write(younger, "younger")
            await younger.flush()
            write(older, "older")
            await older.flush()
            await younger.commit()
            assert (await read_all(engine, ORIGIN))[0] == []
            await older.commit()
        seen, _ = await read_settled(engine, ORIGIN, 2)
        assert [e.subject_id for e in seen] == ["older", "younger"]
        assert seen[0].id > seen[1].id, "ids run against commit-safe order in this scenario"

    async def test_concurrent_writers_committing_in_random_order_are_all_read_once(
        self, engine: AsyncEngine
    ) -> None:
        writers = 30
        rng = random.Random(6)
        order = list(range(writers))
        rng.shuffle(order)
        gates = [asyncio.Event() for _ in range(writers)]
        flushed = [asyncio.Event() for _ in range(writers)]

        async def writer(n: int) -> None:
            async with AsyncSession(engine) as session:
                write(session, str(n))
                await session.flush()
                flushed[n].set()
                await gates[n].wait()
                await session.commit()

        received: list[str] = []

        async def reader() -> None:
            cursor = ORIGIN
            while len(received) < writers:
                batch, cursor = await read_all(engine, cursor)
                received.extend(e.subject_id for e in batch)
                await asyncio.sleep(0)

        tasks = [asyncio.create_task(writer(n)) for n in range(writers)]
        await asyncio.gather(*(f.wait() for f in flushed))
        reading = asyncio.create_task(reader())
        for n in order:  # commit in an order unrelated to the ids
            gates[n].set()
            await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*tasks, reading), 30)
        assert sorted(received, key=int) == [str(n) for n in range(writers)]
        assert len(set(received)) == writers

    async def test_rolled_back_event_is_never_read(self, engine: AsyncEngine) -> None:
        async with AsyncSession(engine) as session:
            write(session, "lost")
            await session.flush()
            await session.rollback()
        async with AsyncSession(engine) as session:
            write(session, "kept")
            await session.commit()
        seen, _ = await read_settled(engine, ORIGIN, 1)
        assert [e.subject_id for e in seen] == ["kept"]


class TestHead:
    async def test_head_of_empty_log_is_origin(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            assert await head(conn) == ORIGIN

    async def test_head_is_after_last_committed_event(self, engine: AsyncEngine) -> None:
        async with AsyncSession(engine) as session:
            write(session, "a")
            write(session, "b")
            await session.commit()
        seen, _ = await read_settled(engine, ORIGIN, 2)
        assert len(seen) == 2
        async with engine.connect() as conn:
            assert await head(conn) == seen[-1].cursor


class TestCursor:
    def test_round_trips_through_text(self) -> None:
        assert Cursor.parse(str(Cursor(812, 1045))) == Cursor(812, 1045)

    @pytest.mark.parametrize("bad", ["", "12", "a-b", "1-", "-1", "1-2-3", "1.5-2"])
    def test_malformed_cursor_is_a_client_error(self, bad: str) -> None:
        with pytest.raises(InvalidInput, match="not a valid event cursor"):
            Cursor.parse(bad)


class TestRecordWatch:
    """What a session's watcher returns for an event runs once that event's transaction
    commits, and never when it rolls back."""

    @pytest.mark.parametrize("outcome", ["commit", "rollback"])
    async def test_the_watchers_callback_runs_at_commit_only(
        self, engine: AsyncEngine, outcome: str
    ) -> None:
        seen: list[tuple[str, dict[str, object]]] = []
        ran: list[str] = []

        def watch(type_: str, data: dict[str, object]) -> Callable[[], None] | None:
            seen.append((type_, data))
            return (lambda: ran.append(type_)) if type_ == "test.wakes" else None

        sessionmaker = async_sessionmaker(engine, info={RECORD_WATCH_KEY: watch})
        failed = RuntimeError("the request failed")
        with contextlib.suppress(RuntimeError):
            async with unit_of_work(sessionmaker) as session:
                record(session, type="test.quiet", subject_type="test", subject_id=1)
                await record_many(
                    session,
                    [
                        {
                            "type": "test.wakes",
                            "subject_type": "test",
                            "subject_id": 2,
                            "data": {"n": 2},
                        }
                    ],
                )
                assert ran == [], "nothing runs before the commit"
                if outcome == "rollback":
                    raise failed

        assert seen == [("test.quiet", {}), ("test.wakes", {"n": 2})]
        assert ran == (["test.wakes"] if outcome == "commit" else [])
