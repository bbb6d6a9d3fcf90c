"""Every deadline watched: warnings at 50 % and 80 % then the breach, each once, each a level
up the ladder; a pause postpones them by exactly the pause; a stop cancels them; a stale timer
does nothing; a policy change recomputes open complaints; two instances fire each once.

Time is the desk's injected clock, in 2030, where the running timer worker (which compares
with the database's real time) never finds these timers due: ``fire_due`` claims and fires
them at an injected moment exactly as the worker does at its own (claim with ``SKIP
LOCKED``, delete, run the registered handler). The two-instance test uses the real worker of
two apps, on clocks registered days ago in real time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import TypeAdapter
from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.complaints import handlers, service
from app.complaints.clocks import DEFAULT_POLICIES, ClockKind, ClockPolicy, ClockUnit
from app.complaints.deadlines import KIND
from app.complaints.events import PAYLOADS
from app.complaints.router import router as complaints_router
from app.complaints.schemas import ComplaintCreate
from app.config import Settings
from app.db import create_engine, create_sessionmaker, db_now, unit_of_work
from app.main import create_app
from app.timers.models import Timer
from app.timers.worker import TimerRegistry
from tests.complaints.test_registration import COMPLAINTS, Clock, complaint_body, register
from tests.conftest import make_settings
from tests.fixtures.desk_clock import freeze_desk
from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually

START = datetime(2030, 3, 4, 1, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
TICK = timedelta(microseconds=1)
HALF, FOUR_FIFTHS, DUE = START + 36 * HOUR, START + timedelta(hours=57.6), START + 72 * HOUR
RECOMPUTE = f"{COMPLAINTS}/clocks/recompute"
SLA_EVENTS = "('complaint.sla_warning', 'complaint.sla_breached')"


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
async def app(settings: Settings, clock: Clock) -> AsyncIterator[FastAPI]:
    """The app with the complaint routes and the clocks' route (ahead of the complaint routes,
    whose ``/complaints/{id}/{verb}`` would take its path) mounted, and the injected clock."""
    application = create_app(settings)
    paths = {getattr(r, "path", None) for r in application.routes}
    if COMPLAINTS not in paths:
        application.include_router(complaints_router)
    if RECOMPUTE not in paths:
        before = len(application.router.routes)
        application.include_router(handlers.router)
        added = application.router.routes[before:]
        del application.router.routes[before:]
        application.router.routes[0:0] = added
    freeze_desk(application, clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


def alert_handler(settings: Settings) -> Any:
    registry = TimerRegistry()
    handlers.register(registry, settings)
    return registry.get(KIND)


async def fire_due(app: FastAPI, at: datetime) -> int:
    """Fire the clocks' timers due by ``at`` as the worker does; how many were claimed."""
    handler = alert_handler(app.state.settings)
    async with unit_of_work(app.state.sessionmaker) as session:
        due = (
            await session.scalars(
                select(Timer)
                .where(Timer.kind == KIND, Timer.due_at <= at)
                .order_by(Timer.due_at, Timer.id)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for timer in due:
            async with session.begin_nested():
                await session.execute(delete(Timer).where(Timer.id == timer.id))
                await handler(session, timer, at)
    return len(due)


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def alerts(engine: AsyncEngine) -> list[tuple[str, dict[str, Any]]]:
    found = await rows(
        engine, f"SELECT type, data FROM events WHERE type IN {SLA_EVENTS} ORDER BY id"
    )
    return [(t, d) for t, d in found]


async def clock_id(engine: AsyncEngine, complaint_id: int, kind: str = "resolution") -> int:
    [(found,)] = await rows(
        engine,
        "SELECT id FROM complaint_clocks WHERE complaint_id = :c AND kind = :k",
        c=complaint_id,
        k=kind,
    )
    return int(found)


async def timer_of(engine: AsyncEngine, clock: int) -> tuple[datetime, dict[str, Any]] | None:
    found = await rows(
        engine,
        "SELECT due_at, payload FROM timers WHERE kind = :k AND subject = :s",
        k=KIND,
        s=str(clock),
    )
    return None if not found else (found[0][0], found[0][1])


async def move(api: Api, complaint_id: int, verb: str, body: Any = None) -> Any:
    return expect(await api.post(f"{COMPLAINTS}/{complaint_id}/{verb}", body), 200)


async def level(api: Api, complaint_id: int) -> str:
    return str(expect(await api.get(f"{COMPLAINTS}/{complaint_id}"), 200)["escalation_level"])


@pytest.fixture
async def started(api: Api) -> int:
    """A complaint registered at START, classified, assigned and started."""
    agent = await api.agent()
    done = await register(api, complaint_body())
    cid = int(done["id"])
    await move(api, cid, "classify", {"categories": ["payment"], "severity": "high"})
    await move(api, cid, "assign", {"assignee": agent["id"]})
    await move(api, cid, "start")
    return cid


RESOLUTION = {
    "resolution": "重复扣款已退回",
    "root_cause": "清算系统重复提交",
    "corrective_action": "修复重复提交的校验",
    "remedy": "退款并致歉",
}


class TestAlerts:
    async def test_half_and_four_fifths_warn_then_the_breach_fires_each_once_a_level_up(
        self, api: Api, app: FastAPI, engine: AsyncEngine, started: int
    ) -> None:
        cid, clk = started, await clock_id(engine, started)
        assert await timer_of(engine, clk) == (HALF, {"clock": "resolution", "alert": "0.5"})
        assert await fire_due(app, HALF - TICK) == 0
        assert await alerts(engine) == []

        assert await fire_due(app, HALF) == 1
        assert await level(api, cid) == "supervisor"
        assert await timer_of(engine, clk) == (
            FOUR_FIFTHS,
            {"clock": "resolution", "alert": "0.8"},
        )
        # The same alert delivered again (a retry, another instance): nothing more.
        stale = Timer(kind=KIND, subject=str(clk), due_at=HALF, payload={"alert": "0.5"})
        async with unit_of_work(app.state.sessionmaker) as session:
            await alert_handler(app.state.settings)(session, stale, HALF + HOUR)
        assert len(await alerts(engine)) == 1

        assert await fire_due(app, FOUR_FIFTHS) == 1
        assert await level(api, cid) == "head_office"
        assert await fire_due(app, DUE) == 1
        assert await timer_of(engine, clk) is None
        assert await fire_due(app, DUE + 100 * HOUR) == 0

        logged = await alerts(engine)
        assert [(t, d["level"], d["escalation_level"]) for t, d in logged] == [
            ("complaint.sla_warning", 0.5, "supervisor"),
            ("complaint.sla_warning", 0.8, "head_office"),
            ("complaint.sla_breached", None, "head_office"),
        ]
        for type_, data in logged:
            TypeAdapter(PAYLOADS[type_]).validate_python(data)
            assert datetime.fromisoformat(data["due_at"]) == DUE
        audit = expect(await api.get(f"{COMPLAINTS}/{cid}/audit"), 200)
        assert audit["verified"] is True
        entries = [e for e in audit["entries"] if e["action"].startswith("sla_")]
        assert [(e["action"], e["data"]["escalation"]) for e in entries] == [
            ("sla_warning", {"before": "agent", "after": "supervisor"}),
            ("sla_warning", {"before": "supervisor", "after": "head_office"}),
            ("sla_breached", {"before": "head_office", "after": "head_office"}),
        ]

    async def test_alerts_that_fell_due_together_fire_together_in_order(
        self, api: Api, app: FastAPI, engine: AsyncEngine, started: int
    ) -> None:
        assert await fire_due(app, DUE + HOUR) == 1
        logged = await alerts(engine)
        assert [d["level"] for _, d in logged] == [0.5, 0.8, None]
        assert await level(api, started) == "head_office"
        assert await timer_of(engine, await clock_id(engine, started)) is None


class TestPausesAndStops:
    async def test_a_pause_postpones_every_alert_by_exactly_the_pause(
        self, api: Api, app: FastAPI, engine: AsyncEngine, clock: Clock, started: int
    ) -> None:
        clk = await clock_id(engine, started)
        clock.advance(10 * HOUR)
        await move(api, started, "pause", {"reason": "waiting_for_customer"})
        assert await timer_of(engine, clk) is None
        pause = timedelta(hours=5, minutes=17, seconds=3)
        clock.advance(pause)
        await move(api, started, "resume")
        assert await timer_of(engine, clk) == (
            HALF + pause,
            {"clock": "resolution", "alert": "0.5"},
        )
        assert await fire_due(app, HALF + pause - TICK) == 0
        assert await fire_due(app, HALF + pause) == 1
        assert [d["level"] for _, d in await alerts(engine)] == [0.5]
        assert (await timer_of(engine, clk) or (None,))[0] == FOUR_FIFTHS + pause
        await fire_due(app, DUE + pause - TICK)
        assert [d["level"] for _, d in await alerts(engine)] == [0.5, 0.8]
        await fire_due(app, DUE + pause)
        breach = (await alerts(engine))[-1][1]
        assert breach["level"] is None
        assert datetime.fromisoformat(breach["due_at"]) == DUE + pause

    @pytest.mark.parametrize(("verb", "facts"), [("resolve", RESOLUTION), ("withdraw", None)])
    async def test_a_stop_cancels_the_alerts(
        self,
        api: Api,
        app: FastAPI,
        engine: AsyncEngine,
        clock: Clock,
        started: int,
        verb: str,
        facts: Any,
    ) -> None:
        clk = await clock_id(engine, started)
        clock.advance(20 * HOUR)
        await move(api, started, verb, facts)
        assert await timer_of(engine, clk) is None
        assert await fire_due(app, DUE + 100 * HOUR) == 0
        assert await alerts(engine) == []
        assert await level(api, started) == "agent"

    async def test_a_stale_timer_after_a_resume_does_nothing(
        self, api: Api, app: FastAPI, engine: AsyncEngine, clock: Clock, started: int
    ) -> None:
        clk = await clock_id(engine, started)
        clock.advance(10 * HOUR)
        await move(api, started, "pause", {"reason": "external_appraisal"})
        clock.advance(5 * HOUR)
        await move(api, started, "resume")
        # The timer as it was set before the pause, fired at the time it named.
        stale = Timer(kind=KIND, subject=str(clk), due_at=HALF, payload={"alert": "0.5"})
        async with unit_of_work(app.state.sessionmaker) as session:
            await alert_handler(app.state.settings)(session, stale, HALF)
        assert await alerts(engine) == []
        assert await level(api, started) == "agent"
        assert (await timer_of(engine, clk) or (None,))[0] == HALF + 5 * HOUR

    async def test_a_reopened_clock_carries_on_without_warning_twice(
        self, api: Api, app: FastAPI, engine: AsyncEngine, clock: Clock, started: int
    ) -> None:
        clk = await clock_id(engine, started)
        await fire_due(app, HALF)
        clock.now = HALF + 4 * HOUR
        await move(api, started, "resolve", RESOLUTION)
        assert await timer_of(engine, clk) is None
        clock.advance(10 * HOUR)
        await move(api, started, "reopen", {"reason": "退款未到账"})
        assert await timer_of(engine, clk) == (
            FOUR_FIFTHS + 10 * HOUR,
            {"clock": "resolution", "alert": "0.8"},
        )
        await fire_due(app, FOUR_FIFTHS + 10 * HOUR)
        assert [d["level"] for _, d in await alerts(engine)] == [0.5, 0.8]


class TestPolicyChange:
    async def test_recompute_applies_a_shorter_target_and_fires_what_it_puts_in_the_past(
        self, api: Api, app: FastAPI, engine: AsyncEngine, clock: Clock, started: int
    ) -> None:
        clk = await clock_id(engine, started)
        ack, _ = DEFAULT_POLICIES
        two_days = ClockPolicy(ClockKind.RESOLUTION, 2, ClockUnit.CALENDAR_DAYS)
        app.state.complaint_desk = service.Desk(policies=(ack, two_days, service.REVIEW_POLICY))
        clock.advance(30 * HOUR)
        done = expect(await api.post(RECOMPUTE), 200)
        assert done == {"complaints": 1, "clocks": 1, "changed": 1}
        detail = expect(await api.get(f"{COMPLAINTS}/{started}"), 200)
        assert datetime.fromisoformat(detail["due_at"]) == START + 48 * HOUR
        # The new 50 % (24 h) has passed: due at once; then 80 % of two days.
        assert await timer_of(engine, clk) == (
            START + 24 * HOUR,
            {"clock": "resolution", "alert": "0.5"},
        )
        assert await fire_due(app, clock.now) == 1
        assert [d["level"] for _, d in await alerts(engine)] == [0.5]
        assert (await timer_of(engine, clk) or (None,))[0] == START + timedelta(hours=38.4)

        again = expect(await api.post(RECOMPUTE), 200)
        assert again["changed"] == 0
        assert [d["level"] for _, d in await alerts(engine)] == [0.5]
        audit = expect(await api.get(f"{COMPLAINTS}/{started}/audit"), 200)
        assert audit["verified"] is True
        [change] = [e for e in audit["entries"] if e["action"] == "clock_policy"]
        assert (change["data"]["previous"]["target"], change["data"]["policy"]["target"]) == (3, 2)

    async def test_only_an_admin_recomputes(self, api: Api, engine: AsyncEngine) -> None:
        supervisor = await api.signed_in_as(await api.supervisor())
        expect(await supervisor.post(RECOMPUTE), 403)


class TestInstances:
    async def test_two_instances_fire_each_alert_once(self, db: str) -> None:
        settings = make_settings(db, timer_batch_size=5)
        engine = create_engine(db, pool_size=4)
        count = 30
        try:
            async with unit_of_work(create_sessionmaker(engine)) as session:
                past = await db_now(session) - timedelta(days=4)
                for index in range(count):
                    body = complaint_body()
                    body["matter"]["branch"] = f"branch-{index}"
                    await service.register(
                        session,
                        data=ComplaintCreate.model_validate(body),
                        actor="system",
                        now=past,
                    )
            fired_by: Counter[str] = Counter()
            first, second = create_app(settings), create_app(settings)
            for name, instance in (("first", first), ("second", second)):
                instance.state.timer_registry.register(
                    KIND, counting(alert_handler(settings), fired_by, name)
                )
            async with (
                first.router.lifespan_context(first),
                second.router.lifespan_context(second),
            ):

                async def all_fired() -> bool:
                    logged = await count_of(engine, f"type IN {SLA_EVENTS}")
                    left = await count_of(engine, f"kind = '{KIND}'", table="timers")
                    return logged >= 3 * count and left == 0

                await eventually(all_fired, within=30, what="every alert to fire")
            logged = await rows(
                engine, f"SELECT subject_id, data FROM events WHERE type IN {SLA_EVENTS}"
            )
            per_alert = Counter((s, d["clock"], d["level"]) for s, d in logged)
            assert len(per_alert) == 3 * count
            assert set(per_alert.values()) == {1}
            assert sum(fired_by.values()) == count
            levels = await rows(engine, "SELECT DISTINCT escalation_level FROM complaints")
            assert levels == [("head_office",)]
        finally:
            await engine.dispose()


async def count_of(engine: AsyncEngine, where: str, table: str = "events") -> int:
    [(found,)] = await rows(engine, f"SELECT count(*) FROM {table} WHERE {where}")
    return int(found)


def counting(handler: Any, fired_by: Counter[str], name: str) -> Any:
    async def run(session: AsyncSession, timer: Timer, now: datetime) -> None:
        await handler(session, timer, now)
        fired_by[name] += 1

    return run
