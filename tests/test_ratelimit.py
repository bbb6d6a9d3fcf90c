"""The PostgreSQL rate limiter: counts per window, blocks with growing back-off, counts that
outlive a rolled-back request, one limit shared by every engine, pruning."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app import ratelimit
from app.db import create_engine
from app.ratelimit import Limit, RateLimited, RateLimitRow

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
PLAIN = Limit("test.plain", hits=3, window_s=60)
BACKOFF = Limit("test.backoff", hits=2, window_s=60, backoff_s=10, backoff_max_s=35)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
async def engine(db: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db, pool_size=10)
    yield engine
    await engine.dispose()


async def refused_after(engine: AsyncEngine, limit: Limit, key: str, now: datetime) -> int | None:
    """The Retry-After of a hit at ``now``, or None if it was allowed."""
    try:
        await ratelimit.hit(engine, limit, key, now=now)
    except RateLimited as exc:
        return exc.retry_after_s
    return None


async def row(engine: AsyncEngine, limit: Limit, key: str) -> RateLimitRow | None:
    async with engine.connect() as conn:
        found = (
            await conn.execute(
                select(RateLimitRow.__table__).where(
                    RateLimitRow.name == limit.name, RateLimitRow.key == key
                )
            )
        ).first()
    return None if found is None else RateLimitRow(**found._mapping)


class TestHit:
    async def test_hits_up_to_the_limit_pass_and_the_next_is_refused_until_the_window_ends(
        self, engine: AsyncEngine
    ) -> None:
        allowed = [await refused_after(engine, PLAIN, "k", at(s)) for s in (0, 1, 2)]
        assert allowed == [None, None, None]
        assert await refused_after(engine, PLAIN, "k", at(10.5)) == 50  # 49.5 s, rounded up
        assert await refused_after(engine, PLAIN, "k", at(59)) == 1
        assert await refused_after(engine, PLAIN, "k", at(60)) is None

    async def test_keys_and_limits_are_counted_apart(self, engine: AsyncEngine) -> None:
        for _ in range(3):
            await ratelimit.hit(engine, PLAIN, "a", now=at(0))
        assert await refused_after(engine, PLAIN, "a", at(1)) is not None
        assert await refused_after(engine, PLAIN, "b", at(1)) is None
        assert await refused_after(engine, BACKOFF, "a", at(1)) is None

    async def test_the_block_doubles_each_time_it_is_tripped_again_up_to_the_maximum(
        self, engine: AsyncEngine
    ) -> None:
        await ratelimit.hit(engine, BACKOFF, "k", now=at(0))
        await ratelimit.hit(engine, BACKOFF, "k", now=at(0))
        assert await refused_after(engine, BACKOFF, "k", at(1)) == 10
        # Once a block ends one more hit is allowed; the next trips the limit again.
        assert await refused_after(engine, BACKOFF, "k", at(11)) is None
        assert await refused_after(engine, BACKOFF, "k", at(11)) == 20
        assert await refused_after(engine, BACKOFF, "k", at(31)) is None
        assert await refused_after(engine, BACKOFF, "k", at(31)) == 35  # 40, capped
        # A new window counts afresh, but the strikes are remembered.
        assert await refused_after(engine, BACKOFF, "k", at(66)) is None
        assert await refused_after(engine, BACKOFF, "k", at(66)) is None
        assert await refused_after(engine, BACKOFF, "k", at(66)) == 35

    async def test_hits_while_blocked_are_refused_without_being_counted(
        self, engine: AsyncEngine
    ) -> None:
        for s in (0, 0, 1):
            await refused_after(engine, BACKOFF, "k", at(s))
        before = await row(engine, BACKOFF, "k")
        assert await refused_after(engine, BACKOFF, "k", at(5)) == 6
        after = await row(engine, BACKOFF, "k")
        assert before is not None
        assert after is not None
        assert (after.hits, after.strikes, after.blocked_until) == (
            before.hits,
            before.strikes,
            before.blocked_until,
        )

    async def test_strikes_are_forgotten_a_window_after_the_last_block(
        self, engine: AsyncEngine
    ) -> None:
        for s in (0, 0):
            await ratelimit.hit(engine, BACKOFF, "k", now=at(s))
        assert await refused_after(engine, BACKOFF, "k", at(1)) == 10  # blocked until 11
        quiet = 11 + BACKOFF.window_s
        for _ in range(2):
            assert await refused_after(engine, BACKOFF, "k", at(quiet)) is None
        assert await refused_after(engine, BACKOFF, "k", at(quiet)) == 10

    async def test_a_refused_hit_through_an_engine_is_committed_before_it_raises(
        self, engine: AsyncEngine
    ) -> None:
        for s in (0, 0):
            await ratelimit.hit(engine, BACKOFF, "k", now=at(s))
        with pytest.raises(RateLimited) as refused:
            await ratelimit.hit(engine, BACKOFF, "k", now=at(1))
        assert refused.value.headers() == {"Retry-After": "10"}
        assert refused.value.body()["limit"] == "test.backoff"
        stored = await row(engine, BACKOFF, "k")
        assert stored is not None
        assert stored.blocked_until == at(11)

    async def test_a_hit_on_a_connection_belongs_to_its_transaction(
        self, engine: AsyncEngine
    ) -> None:
        async with engine.connect() as conn:
            await ratelimit.hit(conn, PLAIN, "k", now=at(0))
            await conn.rollback()
        assert await row(engine, PLAIN, "k") is None

    async def test_a_long_key_is_stored_as_its_digest(self, engine: AsyncEngine) -> None:
        key = "x" * 5000
        for _ in range(3):
            await ratelimit.hit(engine, PLAIN, key, now=at(0))
        assert await refused_after(engine, PLAIN, key, at(1)) is not None
        assert await row(engine, PLAIN, ratelimit.storage_key(key)) is not None

    async def test_hit_all_stops_at_the_first_refusal(self, engine: AsyncEngine) -> None:
        for _ in range(3):
            await ratelimit.hit(engine, PLAIN, "a", now=at(0))
        with pytest.raises(RateLimited):
            await ratelimit.hit_all(engine, [(PLAIN, "a"), (BACKOFF, "b")], now=at(1))
        assert await row(engine, BACKOFF, "b") is None

    async def test_the_database_clock_is_used_when_no_time_is_given(
        self, engine: AsyncEngine
    ) -> None:
        for _ in range(3):
            await ratelimit.hit(engine, PLAIN, "k")
        with pytest.raises(RateLimited) as refused:
            await ratelimit.hit(engine, PLAIN, "k")
        assert 59 <= refused.value.retry_after_s <= 60


class TestAcrossEngines:
    async def test_concurrent_hits_from_two_engines_let_exactly_the_limit_through(
        self, engine: AsyncEngine, db: str
    ) -> None:
        other = create_engine(db, pool_size=10)
        limit = Limit("test.shared", hits=7, window_s=60)
        try:
            results = await asyncio.gather(
                *(
                    refused_after(bind, limit, "k", at(0))
                    for bind in [engine, other] * 10  # 20 hits at once
                )
            )
        finally:
            await other.dispose()
        assert sum(r is None for r in results) == 7


class TestCheckClearForgive:
    async def test_check_refuses_a_blocked_key_and_counts_nothing(
        self, engine: AsyncEngine
    ) -> None:
        async with engine.begin() as conn:
            await ratelimit.check(conn, PLAIN, "k", now=at(0))
        assert await row(engine, PLAIN, "k") is None
        for _ in range(3):
            await ratelimit.hit(engine, PLAIN, "k", now=at(0))
        async with engine.begin() as conn:
            await ratelimit.check(conn, PLAIN, "k", now=at(1))  # at the limit, not over
        await refused_after(engine, PLAIN, "k", at(1))
        async with engine.begin() as conn:
            with pytest.raises(RateLimited) as refused:
                await ratelimit.check(conn, PLAIN, "k", now=at(30.2))
        assert refused.value.retry_after_s == 30

    async def test_clear_forgets_hits_and_strikes(self, engine: AsyncEngine) -> None:
        for s in (0, 0, 1):
            await refused_after(engine, BACKOFF, "k", at(s))
        async with engine.begin() as conn:
            await ratelimit.clear(conn, BACKOFF, "k")
        assert await refused_after(engine, BACKOFF, "k", at(2)) is None
        assert await refused_after(engine, BACKOFF, "k", at(2)) is None
        assert await refused_after(engine, BACKOFF, "k", at(2)) == 10

    async def test_forgive_takes_one_hit_back(self, engine: AsyncEngine) -> None:
        for _ in range(3):
            await ratelimit.hit(engine, PLAIN, "k", now=at(0))
        async with engine.begin() as conn:
            await ratelimit.forgive(conn, PLAIN, "k")
        assert await refused_after(engine, PLAIN, "k", at(1)) is None
        assert await refused_after(engine, PLAIN, "k", at(1)) is not None


class TestPrune:
    async def test_prune_deletes_only_rows_whose_window_and_block_are_over(
        self, engine: AsyncEngine
    ) -> None:
        await ratelimit.hit(engine, PLAIN, "old", now=at(0))
        for s in (0, 0, 1):
            await refused_after(engine, BACKOFF, "blocked", at(s))  # strike memory to 71
        await ratelimit.hit(engine, PLAIN, "new", now=at(50))
        async with engine.begin() as conn:
            assert await ratelimit.prune(conn, now=at(70)) == 1
        async with engine.begin() as conn:
            assert await ratelimit.prune(conn, now=at(110)) == 2
            left = await conn.scalar(select(func.count()).select_from(RateLimitRow))
        assert left == 0


class TestLimit:
    @pytest.mark.parametrize(
        "kwargs",
        [
            {"name": "", "hits": 1, "window_s": 1},
            {"name": "x", "hits": 0, "window_s": 1},
            {"name": "x", "hits": 1, "window_s": 0},
            {"name": "x", "hits": 1, "window_s": 1, "backoff_s": -1},
        ],
    )
    def test_impossible_limits_are_refused(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ValueError, match="limit"):
            Limit(**kwargs)  # type: ignore[arg-type]
