"""Complaint clocks fired in batches: the same effects as one timer at a time, each alert
once when two runs fire the same clocks at once, a complaint held elsewhere left for later,
and two instances' workers firing in batches.

Time is the desk's injected clock in 2030, as in ``test_deadlines``: the running timer
worker (real time) never finds these timers due, and the tests claim and fire them at an
injected moment as the worker does (claim with ``SKIP LOCKED``, delete, run the handler).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.complaints import clock_batch, handlers, service
from app.complaints.deadlines import KIND
from app.complaints.router import router as complaints_router
from app.complaints.schemas import ComplaintCreate
from app.config import Settings
from app.db import create_engine, create_sessionmaker, unit_of_work
from app.main import create_app
from app.timers import service as timers
from app.timers.models import Timer
from app.timers.worker import BatchSpec, DueTimer, TimerRegistry
from tests.complaints.test_registration import COMPLAINTS, Clock, complaint_body, register
from tests.conftest import make_settings
from tests.fixtures.desk_clock import freeze_desk
from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually

START = datetime(2030, 3, 4, 1, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
HALF, DUE = START + 36 * HOUR, START + 72 * HOUR
SLA_EVENTS = "('complaint.sla_warning', 'complaint.sla_breached')"


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
async def app(settings: Settings, clock: Clock) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    if not any(getattr(r, "path", None) == COMPLAINTS for r in application.routes):
        application.include_router(complaints_router)
    freeze_desk(application, clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


@pytest.fixture
def sessionmaker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    return app.state.sessionmaker  # type: ignore[no-any-return]


def registry(settings: Settings, size: int = clock_batch.BATCH_SIZE) -> TimerRegistry:
    found = TimerRegistry()
    handlers.register(found, settings, batch_size=size)
    return found


def batch_of(settings: Settings) -> BatchSpec:
    [spec] = registry(settings).batches
    return spec


async def claim(session: AsyncSession, clock_ids: Sequence[int], at: datetime) -> list[Timer]:
    """Claim and delete the clocks' timers due by ``at``, as the worker does."""
    due = list(
        await session.scalars(
            select(Timer)
            .where(
                Timer.kind == KIND,
                Timer.due_at <= at,
                Timer.subject.in_([str(i) for i in clock_ids]),
            )
            .order_by(Timer.due_at, Timer.id)
            .with_for_update(skip_locked=True)
        )
    )
    await session.execute(delete(Timer).where(Timer.id.in_([t.id for t in due])))
    return due


def as_due(timers: Sequence[Timer]) -> list[DueTimer]:
    """Claimed timers as the worker hands them to a batch handler."""
    return [DueTimer(t.id, t.kind, t.subject, t.due_at, t.payload) for t in timers]


async def fire_one_by_one(app: FastAPI, clock_ids: Sequence[int], at: datetime) -> int:
    single = registry(app.state.settings).get(KIND)
    assert single is not None
    async with unit_of_work(app.state.sessionmaker) as session:
        due = await claim(session, clock_ids, at)
        for timer in due:
            async with session.begin_nested():
                await single(session, timer, at)
    return len(due)


async def fire_batched(app: FastAPI, clock_ids: Sequence[int], at: datetime) -> int:
    spec = batch_of(app.state.settings)
    async with unit_of_work(app.state.sessionmaker) as session:
        due = await claim(session, clock_ids, at)
        await spec.run(session, as_due(due), at)
    return len(due)


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def clock_of(engine: AsyncEngine, complaint_id: int) -> int:
    [(found,)] = await rows(
        engine,
        "SELECT id FROM complaint_clocks WHERE complaint_id = :c AND kind = 'resolution'",
        c=complaint_id,
    )
    return int(found)


async def move(api: Api, complaint_id: int, verb: str, body: Any = None) -> Any:
    return expect(await api.post(f"{COMPLAINTS}/{complaint_id}/{verb}", body), 200)


async def effects(api: Api, engine: AsyncEngine, complaint_id: int) -> dict[str, Any]:
    """What firing did to a complaint, without what differs between two complaints."""
    events = await rows(
        engine,
        f"SELECT type, data FROM events WHERE type IN {SLA_EVENTS} AND subject_id = :s ORDER BY id",
        s=str(complaint_id),
    )
    plain = [
        (t, {k: v for k, v in d.items() if k not in ("complaint_id", "reference")})
        for t, d in events
    ]
    audit = expect(await api.get(f"{COMPLAINTS}/{complaint_id}/audit"), 200)
    alerts = [
        {k: e[k] for k in ("seq", "at", "actor", "action", "before", "after", "reason", "data")}
        for e in audit["entries"]
        if e["action"].startswith("sla_")
    ]
    timer = await rows(
        engine,
        "SELECT due_at, payload FROM timers WHERE kind = :k AND subject = :s",
        k=KIND,
        s=str(await clock_of(engine, complaint_id)),
    )
    detail = expect(await api.get(f"{COMPLAINTS}/{complaint_id}"), 200)
    return {
        "events": plain,
        "alerts": alerts,
        "verified": audit["verified"],
        "level": detail["escalation_level"],
        "timer": [tuple(t) for t in timer],
    }


class TestSameEffectsAsOneByOne:
    async def test_events_levels_audit_and_next_timers_match_the_single_handler(
        self, api: Api, app: FastAPI, engine: AsyncEngine, clock: Clock
    ) -> None:
        agent = await api.agent()

        async def build() -> list[int]:
            """A complaint left registered, one started, one paused, one resolved."""
            made = []
            for index in range(4):
                body = complaint_body()
                body["matter"]["branch"] = f"branch-{index}"
                made.append(int((await register(api, body))["id"]))
            _, started, paused, resolved = made
            for cid in (started, paused, resolved):
                await move(api, cid, "classify", {"categories": ["payment"], "severity": "high"})
                await move(api, cid, "assign", {"assignee": agent["id"]})
                await move(api, cid, "start")
            await move(api, paused, "pause", {"reason": "waiting_for_customer"})
            resolution = {
                "resolution": "已退款",
                "root_cause": "重复提交",
                "corrective_action": "增加校验",
                "remedy": "退款",
            }
            await move(api, resolved, "resolve", resolution)
            return made

        singly, batched = await build(), await build()
        for cids in (singly, batched):
            # A stale timer for the paused and the resolved clock: both must do nothing.
            for cid in cids[2:]:
                async with unit_of_work(app.state.sessionmaker) as session:
                    subject = await clock_of(engine, cid)
                    await timers.schedule(session, kind=KIND, subject=subject, due_at=HALF)

        single_clocks = [await clock_of(engine, c) for c in singly]
        batch_clocks = [await clock_of(engine, c) for c in batched]
        for at, claimed in ((HALF, 4), (DUE + HOUR, 2)):
            assert await fire_one_by_one(app, single_clocks, at) == claimed
            assert await fire_batched(app, batch_clocks, at) == claimed

        for one, other in zip(singly, batched, strict=True):
            assert await effects(api, engine, one) == await effects(api, engine, other)
        registered = await effects(api, engine, batched[0])
        assert [d["level"] for _, d in registered["events"]] == [0.5, 0.8, None]
        assert registered["level"] == "head_office"
        assert registered["verified"] is True
        assert [a["seq"] for a in registered["alerts"]] == [2, 3, 4]
        paused = await effects(api, engine, batched[2])
        assert (paused["events"], paused["level"], paused["timer"]) == ([], "agent", [])


async def register_many(
    sessionmaker: async_sessionmaker[AsyncSession], count: int, at: datetime
) -> list[int]:
    """``count`` complaints registered at ``at`` (no customer: none links to another)."""
    made = []
    async with unit_of_work(sessionmaker) as session:
        for index in range(count):
            body = complaint_body()
            body["matter"]["branch"] = f"branch-{index}"
            done = await service.register(
                session, data=ComplaintCreate.model_validate(body), actor="system", now=at
            )
            made.append(done.complaint.id)
    return made


async def clocks_of(engine: AsyncEngine, complaint_ids: Sequence[int]) -> list[int]:
    found = await rows(
        engine,
        "SELECT id FROM complaint_clocks WHERE complaint_id = ANY(:ids) AND kind = 'resolution' "
        "ORDER BY id",
        ids=list(complaint_ids),
    )
    return [int(r[0]) for r in found]


async def per_alert(engine: AsyncEngine) -> Counter[tuple[str, float | None]]:
    logged = await rows(engine, f"SELECT subject_id, data FROM events WHERE type IN {SLA_EVENTS}")
    return Counter((s, d["level"]) for s, d in logged)


async def verified(sessionmaker: async_sessionmaker[AsyncSession], ids: Sequence[int]) -> bool:
    """Every complaint's audit chain verifies (to its recorded head)."""
    async with sessionmaker() as session:
        for cid in ids:
            _, bad = await service.audit_trail(session, await service.get_or_raise(session, cid))
            if bad is not None:
                return False
    return True


@pytest.fixture
async def quiet(db: str) -> AsyncIterator[tuple[AsyncEngine, async_sessionmaker[AsyncSession]]]:
    """An engine and sessions on the test database with no timer worker running."""
    engine = create_engine(db, pool_size=4)
    yield engine, create_sessionmaker(engine)
    await engine.dispose()


async def fire_in_batch(
    sessionmaker: async_sessionmaker[AsyncSession], clock_ids: Sequence[int], at: datetime
) -> int:
    async with unit_of_work(sessionmaker) as session:
        due = await claim(session, clock_ids, at)
        return await clock_batch.fire_batch(session, as_due(due), at)


async def waiting_for_a_lock(engine: AsyncEngine, pid: int) -> bool:
    [(wait,)] = await rows(
        engine, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = :p", p=pid
    )
    return bool(wait == "Lock")


class TestExactlyOnce:
    async def test_two_runs_firing_the_same_clocks_at_once_write_each_alert_once(
        self, settings: Settings, quiet: Any
    ) -> None:
        engine, sessionmaker = quiet
        cids = await register_many(sessionmaker, 20, START)
        ids = await clocks_of(engine, cids)
        spec = batch_of(settings)
        # The first run claims the timers and fires them, and has not committed yet ...
        async with unit_of_work(sessionmaker) as first:
            due = await claim(first, ids, DUE)
            assert len(due) == 20
            await spec.run(first, as_due(due), DUE)
            # ... when the same clocks are fired again by a second run (a timer delivered
            # twice, another instance): it must not fire what the first is firing.
            copies = [DueTimer(0, KIND, t.subject, t.due_at, {}) for t in due]
            second = sessionmaker()
            pid = await second.scalar(select(func.pg_backend_pid()))
            assert pid is not None
            racing = asyncio.ensure_future(spec.run(second, copies, DUE))

            async def blocked_or_done() -> bool:
                return racing.done() or await waiting_for_a_lock(engine, pid)

            await eventually(blocked_or_done, what="the second run to meet the first's locks")
        await racing  # its errors, if any, fail the test here
        await second.commit()
        await second.close()
        counted = await per_alert(engine)
        assert len(counted) == 3 * 20
        assert set(counted.values()) == {1}
        assert await verified(sessionmaker, cids)

    async def test_a_complaint_held_by_a_request_fires_once_when_it_is_free(
        self, quiet: Any
    ) -> None:
        engine, sessionmaker = quiet
        cids = await register_many(sessionmaker, 5, START)
        ids = await clocks_of(engine, cids)
        held = cids[2]
        async with unit_of_work(sessionmaker) as request:
            await service.get_or_raise(request, held, for_update=True)
            assert await fire_in_batch(sessionmaker, ids, HALF) == 4
            counted = await per_alert(engine)
            assert {s for s, _ in counted} == {str(c) for c in cids if c != held}
            [(due_at,)] = await rows(
                engine, "SELECT due_at FROM timers WHERE subject = :s", s=str(ids[2])
            )
            assert due_at < HALF, "set again a moment from now (real time), not dropped"
        assert await fire_in_batch(sessionmaker, ids, HALF) == 1
        counted = await per_alert(engine)
        assert set(counted) == {(str(c), 0.5) for c in cids}
        assert set(counted.values()) == {1}
        assert await verified(sessionmaker, cids)

    async def test_a_timer_whose_clock_is_gone_is_dropped(self, quiet: Any) -> None:
        engine, sessionmaker = quiet
        ghost = DueTimer(0, KIND, "999999", HALF, {})
        async with unit_of_work(sessionmaker) as session:
            assert await clock_batch.fire_batch(session, [ghost], HALF) == 0
        assert await rows(engine, "SELECT id FROM timers WHERE subject = '999999'") == []


class TestTwoInstances:
    async def test_two_workers_firing_in_batches_write_each_alert_once(self, db: str) -> None:
        """Real timer workers of two apps, batches of 25, on clocks registered days ago."""
        settings = make_settings(db)
        engine = create_engine(db, pool_size=4)
        count = 120
        try:
            async with unit_of_work(create_sessionmaker(engine)) as session:
                past = await session.scalar(select(func.now()))
                assert past is not None
            cids = await register_many(create_sessionmaker(engine), count, past - 4 * 24 * HOUR)
            first, second = create_app(settings), create_app(settings)
            for instance in (first, second):
                handlers.register(instance.state.timer_registry, settings, batch_size=25)
            async with (
                first.router.lifespan_context(first),
                second.router.lifespan_context(second),
            ):

                async def all_fired() -> bool:
                    left = await rows(engine, f"SELECT count(*) FROM timers WHERE kind = '{KIND}'")
                    return sum((await per_alert(engine)).values()) >= 3 * count and not left[0][0]

                await eventually(all_fired, within=60, what="every alert to fire")
            counted = await per_alert(engine)
            assert len(counted) == 3 * count
            assert set(counted.values()) == {1}
            levels = await rows(engine, "SELECT DISTINCT escalation_level FROM complaints")
            assert levels == [("head_office",)]
            heads = await rows(
                engine,
                "SELECT count(*) FROM complaints WHERE audit_seq = 4 AND id = ANY(:i)",
                i=cids,
            )
            assert heads == [(count,)]
        finally:
            await engine.dispose()
