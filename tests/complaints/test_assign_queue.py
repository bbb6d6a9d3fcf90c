"""The team queue drains as agents get room: a complaint nobody could take is assigned, once,
as soon as someone may take it (the nudge of a move that gave room, or the sweep for room
that no move announced), earliest due first, and capacity holds when two instances drain at
once. The timer's handler never waits on a lock a request holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.complaints import assign, assign_queue, team_queue
from app.complaints.clocks import DEFAULT_POLICIES, ClockKind, ClockPolicy, ClockUnit
from app.complaints.service import REVIEW_POLICY, Desk
from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.timers.worker import TimerRegistry, TimerWorker
from tests.complaints.test_assign import (
    app,
    auto,
    case_agent,
    complaint,
    engine,
    settings,
    skills,
)
from tests.complaints.test_registration import COMPLAINTS, clock
from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually
from tests.routing.acd import rows, value

__all__ = ["app", "clock", "engine", "settings"]  # fixtures shared with the assignment tests

RULES = assign.AssignRules()
RESOLUTION = {
    "resolution": "重复扣款已退回",
    "root_cause": "清算系统重复提交",
    "corrective_action": "修复重复提交的校验",
    "remedy": "退款并致歉",
}


@pytest.fixture(autouse=True)
async def timers_run_by_the_test(app: FastAPI) -> None:
    """The app's own timer worker stopped: each test fires the team queue's timer and sweep
    itself, when it means to."""
    await app.state.timer_worker.stop()


def worker(app: FastAPI, settings: Settings, desk: Desk | None = None) -> TimerWorker:
    """A timer worker that knows only the team queue's timer and sweep."""
    registry = TimerRegistry()
    assign_queue.register(registry, settings, rules=RULES, desk=desk)
    return TimerWorker(
        app.state.sessionmaker, registry, poll_interval_s=0.05, batch_size=20, max_attempts=5
    )


async def move(api: Api, complaint_id: int, verb: str, body: Any = None) -> Any:
    return expect(await api.post(f"{COMPLAINTS}/{complaint_id}/{verb}", body or {}), 200)


async def finish(api: Api, complaint_id: int) -> None:
    """Resolve and close: the complaint leaves its holder's load."""
    await move(api, complaint_id, "start")
    await move(api, complaint_id, "resolve", RESOLUTION)
    await move(api, complaint_id, "close")


async def queued(engine: AsyncEngine) -> list[int]:
    return [r[0] for r in await rows(engine, "SELECT complaint_id FROM queued_complaints")]


async def holder(api: Api, complaint_id: int) -> int | None:
    shown = expect(await api.get(f"{COMPLAINTS}/{complaint_id}"), 200)
    return shown["assignee_id"]  # type: ignore[no-any-return]


async def assignments(engine: AsyncEngine, complaint_id: int) -> list[tuple[str, int]]:
    """(actor, assignee) of each ``assign`` entry of the complaint."""
    found = await rows(
        engine,
        "SELECT actor, (data->'facts'->>'assignee')::bigint FROM complaint_audit "
        "WHERE complaint_id = :id AND action = 'assign' ORDER BY seq",
        id=complaint_id,
    )
    return [(r[0], r[1]) for r in found]


async def nudges(engine: AsyncEngine) -> int:
    return int(
        await value(engine, "SELECT count(*) FROM timers WHERE kind = :k", k=team_queue.KIND)
    )


async def full_agent_and_a_queued_complaint(api: Api) -> tuple[int, int, int]:
    """An agent whose one case is taken, and a complaint queued for want of room:
    (agent, the agent's complaint, the queued complaint)."""
    await skills(api, "payment")
    agent = await case_agent(api, "payment", capacity=1)
    held = await complaint(api, "payment")
    assert (await auto(api, held))["assignee_id"] == agent
    waiting = await complaint(api, "payment")
    assert (await auto(api, waiting))["queued"] is True
    return agent, held, waiting


class TestTheNudge:
    async def test_a_closed_case_gives_its_holder_the_queued_complaint_once(
        self, app: FastAPI, api: Api, engine: AsyncEngine, settings: Settings
    ) -> None:
        agent, held, waiting = await full_agent_and_a_queued_complaint(api)
        assert await queued(engine) == [waiting]
        await move(api, held, "start")
        await move(api, held, "resolve", RESOLUTION)
        assert await nudges(engine) == 0  # a resolved case still counts until it is closed
        await move(api, held, "close")
        assert await nudges(engine) == 1
        timers = worker(app, settings)

        async def assigned() -> bool:
            await timers.run_due()
            return await holder(api, waiting) == agent

        await eventually(assigned, what="the queued complaint to be assigned")
        await eventually(lambda: _quiet(timers, engine), what="the nudges to stop")

        assert await assignments(engine, waiting) == [("system", agent)]
        assert await queued(engine) == []
        shown = expect(await api.get(f"{COMPLAINTS}/{waiting}"), 200)
        assert shown["status"] == "assigned"

    async def test_a_reassignment_gives_the_previous_holder_room(
        self, app: FastAPI, api: Api, engine: AsyncEngine, settings: Settings
    ) -> None:
        agent, held, waiting = await full_agent_and_a_queued_complaint(api)
        other = await case_agent(api, "payment", capacity=1)
        await move(api, held, "assign", {"assignee": other})
        assert await nudges(engine) == 1
        timers = worker(app, settings)

        async def assigned() -> bool:
            await timers.run_due()
            return await holder(api, waiting) == agent

        await eventually(assigned, what="the queued complaint to go to the freed agent")

    async def test_a_complaint_assigned_or_withdrawn_by_hand_leaves_the_queue(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        agent, _, waiting = await full_agent_and_a_queued_complaint(api)
        other = await complaint(api, "payment")
        assert (await auto(api, other))["queued"] is True
        assert sorted(await queued(engine)) == sorted([waiting, other])

        await move(api, waiting, "assign", {"assignee": agent})
        await move(api, other, "withdraw")

        assert await queued(engine) == []


async def _quiet(timers: TimerWorker, engine: AsyncEngine) -> bool:
    """Fire what is due; True once no team-queue timer is left."""
    await timers.run_due()
    return await nudges(engine) == 0


class TestTheSweep:
    async def test_room_no_move_announced_is_found_by_the_sweep(
        self, app: FastAPI, api: Api, engine: AsyncEngine, settings: Settings
    ) -> None:
        agent, _, waiting = await full_agent_and_a_queued_complaint(api)
        patch = {"capacity": {"case": 2}}
        expect(await api.patch(f"/api/v1/agents/{agent}", patch), 200)
        assert await nudges(engine) == 0

        done = await worker(app, settings).run_sweeps()

        assert done == {assign_queue.SWEEP: 1}
        assert await holder(api, waiting) == agent
        assert await queued(engine) == []

    async def test_nothing_is_written_for_a_complaint_nobody_may_take_yet(
        self, app: FastAPI, api: Api, engine: AsyncEngine, settings: Settings
    ) -> None:
        await skills(api, "loans")
        await case_agent(api, "loans")  # room, but not the skill
        _, _, waiting = await full_agent_and_a_queued_complaint(api)
        entries = await value(engine, "SELECT count(*) FROM complaint_audit")

        done = await worker(app, settings).run_sweeps()

        assert done == {assign_queue.SWEEP: 0}
        assert await value(engine, "SELECT count(*) FROM complaint_audit") == entries
        assert await queued(engine) == [waiting]


class TestOrder:
    async def test_the_complaint_due_first_is_assigned_first(
        self, app: FastAPI, api: Api, engine: AsyncEngine, settings: Settings
    ) -> None:
        """A web complaint gets one day, a phone complaint three: the later web complaint is
        due first and goes first."""
        one_day = ClockPolicy(ClockKind.RESOLUTION, 1, ClockUnit.CALENDAR_DAYS, channel="web")
        desk = Desk(policies=(*DEFAULT_POLICIES, one_day, REVIEW_POLICY))
        app.state.complaint_desk = desk
        agent, held, by_phone = await full_agent_and_a_queued_complaint(api)
        by_web = await complaint(api, "payment", channel="web")
        assert (await auto(api, by_web))["queued"] is True
        assert by_web > by_phone
        await finish(api, held)

        async with app.state.sessionmaker() as session:
            done = await assign_queue.drain(session, now=_now(), rules=RULES, desk=desk)

        assert done == 1
        assert (await holder(api, by_web), await holder(api, by_phone)) == (agent, None)
        assert await queued(engine) == [by_phone]


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def second_instance(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """Another instance's engine on the same database."""
    assert settings.database_url is not None
    other = create_engine(settings.database_url, pool_size=2)
    try:
        yield other
    finally:
        await other.dispose()


class TestCapacityUnderConcurrency:
    async def test_two_instances_draining_at_once_never_exceed_capacity(
        self, app: FastAPI, api: Api, engine: AsyncEngine, second_instance: AsyncEngine
    ) -> None:
        await skills(api, "payment")
        waiting = [await complaint(api, "payment") for _ in range(8)]
        for cid in waiting:
            assert (await auto(api, cid))["queued"] is True  # nobody has the skill yet
        agents = [await case_agent(api, "payment", capacity=1) for _ in range(3)]

        async def drain(maker: Any) -> int:
            async with maker() as session:
                return await assign_queue.drain(session, now=_now(), rules=RULES, desk=Desk())

        done = await asyncio.gather(
            drain(app.state.sessionmaker), drain(create_sessionmaker(second_instance))
        )

        assert sum(done) == 3
        held = await rows(
            engine,
            "SELECT assignee_id, count(*) FROM complaints WHERE assignee_id IS NOT NULL "
            "GROUP BY assignee_id",
        )
        assert {r[0]: r[1] for r in held} == dict.fromkeys(agents, 1)
        assert len(await queued(engine)) == 5
        for cid in waiting:
            assert len(await assignments(engine, cid)) <= 1


class TestTheHandlerNeverWaits:
    async def test_a_lock_held_by_a_request_sends_the_timer_back_instead_of_waiting(
        self, app: FastAPI, api: Api, engine: AsyncEngine, settings: Settings
    ) -> None:
        agent, held, waiting = await full_agent_and_a_queued_complaint(api)
        await finish(api, held)
        timers = worker(app, settings)
        async with app.state.sessionmaker() as request:  # an auto-assignment in flight
            await _hold_agent(request, agent)

            claimed = await asyncio.wait_for(timers.run_due(), 5)

            assert claimed == 1
            assert await holder(api, waiting) is None
            assert await nudges(engine) == 1  # fires again shortly
            await request.rollback()

        async def assigned() -> bool:
            await timers.run_due()
            return await holder(api, waiting) == agent

        await eventually(assigned, what="the timer to fire again once the lock is gone")


async def _hold_agent(session: AsyncSession, agent_id: int) -> None:
    await assign.lock_agents(session, [agent_id])
    held = await session.scalar(
        text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND pid = pg_backend_pid() AND granted"
        )
    )
    assert held == 1
