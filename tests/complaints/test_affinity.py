"""A caller with a complaint being handled reaches its handler first: the desk writes the
affinity onto the customer through routing's service, the dispatcher offers the customer's
next contact to the handler, and a finished complaint gives the customer back to the normal
rules, or to another complaint of theirs still being handled (the most recently assigned).
"""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.agents.models import Role
from app.agents.permissions import Principal
from app.complaints import affinity
from app.complaints.lifecycle import ComplaintEvent
from app.complaints.schemas import TransitionFacts
from app.complaints.service import Desk, get_or_raise, transition
from app.db import unit_of_work
from tests.complaints.test_assign import app, complaint, engine, settings
from tests.complaints.test_registration import COMPLAINTS, Clock, clock, complaint_body, register
from tests.fixtures.factories import Api, expect, unique
from tests.fixtures.polling import eventually
from tests.routing.acd import available_agent, contact, offer_for, pending_offers, queue, rows

__all__ = ["app", "clock", "engine", "settings"]  # fixtures shared with the assignment tests

RESOLUTION = {
    "resolution": "重复扣款已退回",
    "root_cause": "清算系统重复提交",
    "corrective_action": "修复重复提交的校验",
    "remedy": "退款并致歉",
}
# Matters unlike each other, so that one customer's complaints are not linked as one.
MATTERS = (
    "我的信用卡被重复扣款两次而柜台拒绝处理",
    "Loan officer would not explain the interest rate on the phone",
    "ATM 0x7F swallowed card; 3 visits, 0 answers",
)


async def move(api: Api, complaint_id: int, verb: str, body: Any = None) -> Any:
    return expect(await api.post(f"{COMPLAINTS}/{complaint_id}/{verb}", body or {}), 200)


async def assign_to(api: Api, complaint_id: int, agent_id: int) -> None:
    await move(api, complaint_id, "assign", {"assignee": agent_id})


async def resolve(api: Api, complaint_id: int) -> None:
    await move(api, complaint_id, "start")
    await move(api, complaint_id, "resolve", RESOLUTION)


async def of_customer(api: Api, customer_id: int, matter: int) -> int:
    """A complaint of the customer's, about one of ``MATTERS`` (at a branch of its own)."""
    about = {
        **complaint_body()["matter"],
        "branch": unique("branch-"),
        "description": MATTERS[matter],
    }
    body = complaint_body(matter=about, customer={"id": customer_id})
    done = await register(api, body)
    assert done["linked"] is False
    return int(done["id"])


async def waiting_for_a_lock(engine: AsyncEngine) -> bool:
    """Does a session of this database wait for a lock?"""
    found = await rows(
        engine,
        "SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE NOT l.granted AND a.datname = current_database()",
    )
    return bool(found)


async def stopped(task: asyncio.Task[None], engine: AsyncEngine) -> bool:
    """Has the task finished, or does it wait for a lock?"""
    return task.done() or await waiting_for_a_lock(engine)


async def preference(engine: AsyncEngine, customer_id: int) -> tuple[int, str, float] | None:
    """(agent, source reference, hold) of the customer's affinity row, if any."""
    found = await rows(
        engine,
        "SELECT agent_id, source_ref, hold_s FROM customer_affinities "
        "WHERE customer_id = :id AND source = 'complaint'",
        id=customer_id,
    )
    return None if not found else (found[0][0], found[0][1], found[0][2])


class TestTheCallerReachesTheHandler:
    async def test_the_handler_is_offered_the_call_and_after_resolution_the_rules_decide(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)
        veteran = await available_agent(api)  # idle longest: the rules' choice
        handler = await available_agent(api)
        customer = int((await api.customer(tier="standard"))["id"])
        cid = await of_customer(api, customer, 0)
        await assign_to(api, cid, handler.me["id"])

        call = await contact(api, q["name"], customer={"id": customer})
        offer = await offer_for(handler, call["id"])

        assert offer["reason"]["affinity"] == "last_agent"
        # Held for the handler, the call is theirs alone: nobody else is ranked.
        assert offer["reason"]["runner_up_agent_id"] is None
        assert offer["reason"]["agents_ranked"] == 1
        assert await pending_offers(veteran) == []

        await resolve(api, cid)
        assert await preference(engine, customer) is None
        again = await contact(api, q["name"], customer={"id": customer})
        second = await offer_for(veteran, again["id"])

        assert second["reason"]["affinity"] is None
        assert [o["contact_id"] for o in await pending_offers(handler)] == [call["id"]]

    async def test_the_preference_names_the_complaint_and_the_desks_hold(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        handler = await api.agent()
        customer = int((await api.customer())["id"])
        cid = await of_customer(api, customer, 0)

        await assign_to(api, cid, handler["id"])

        assert await preference(engine, customer) == (handler["id"], str(cid), 60.0)

    async def test_a_complaint_without_a_known_customer_asks_nothing_of_routing(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        cid = await complaint(api)
        await assign_to(api, cid, (await api.agent())["id"])
        assert await rows(engine, "SELECT * FROM customer_affinities") == []


class TestTwoComplaintsOfOneCustomer:
    async def test_the_most_recently_assigned_wins_and_its_end_falls_back_to_the_other(
        self, api: Api, engine: AsyncEngine, clock: Clock
    ) -> None:
        first, second, third = [int((await api.agent())["id"]) for _ in range(3)]
        customer = int((await api.customer())["id"])
        older = await of_customer(api, customer, 0)
        newer = await of_customer(api, customer, 1)
        await assign_to(api, older, first)
        clock.advance(timedelta(minutes=5))
        await assign_to(api, newer, second)
        assert await preference(engine, customer) == (second, str(newer), 60.0)

        await resolve(api, newer)
        assert await preference(engine, customer) == (first, str(older), 60.0)

        clock.advance(timedelta(minutes=5))
        await assign_to(api, older, third)  # reassigned: the customer's handler is now third
        assert await preference(engine, customer) == (third, str(older), 60.0)

        await move(api, older, "withdraw")
        assert await preference(engine, customer) is None

    async def test_the_older_complaint_ending_leaves_the_newer_ones_handler(
        self, api: Api, engine: AsyncEngine, clock: Clock
    ) -> None:
        first, second = [int((await api.agent())["id"]) for _ in range(2)]
        customer = int((await api.customer())["id"])
        older = await of_customer(api, customer, 0)
        newer = await of_customer(api, customer, 2)
        await assign_to(api, older, first)
        clock.advance(timedelta(minutes=5))
        await assign_to(api, newer, second)

        await move(api, older, "reject", {"reason": "not a complaint"})

        assert await preference(engine, customer) == (second, str(newer), 60.0)


class TestTwoMovesAtOnce:
    async def test_a_move_made_while_another_is_in_flight_reads_it_once_committed(
        self, app: FastAPI, api: Api, engine: AsyncEngine, clock: Clock
    ) -> None:
        """The newer complaint is resolved (falling back to the older one) while the older
        is withdrawn in another transaction: the customer must end with no preference."""
        first, second = [int((await api.agent())["id"]) for _ in range(2)]
        customer = int((await api.customer())["id"])
        older = await of_customer(api, customer, 0)
        newer = await of_customer(api, customer, 1)
        await assign_to(api, older, first)
        clock.advance(timedelta(minutes=5))
        await assign_to(api, newer, second)
        await move(api, newer, "start")
        admin = Principal(id=api.me["id"], username="admin", role=Role.admin, site=None)

        async def moved(
            session: AsyncSession, cid: int, event: ComplaintEvent, **facts: Any
        ) -> None:
            held = await get_or_raise(session, cid, for_update=True)
            await transition(
                session,
                held,
                event=event,
                facts=TransitionFacts(**facts),
                principal=admin,
                now=clock(),
            )

        async with app.state.sessionmaker() as resolving, app.state.sessionmaker() as withdrawing:
            await moved(resolving, newer, ComplaintEvent.RESOLVE, **RESOLUTION)
            late = asyncio.create_task(moved(withdrawing, older, ComplaintEvent.WITHDRAW))
            await eventually(
                lambda: stopped(late, engine), what="the withdrawal to wait or to finish"
            )
            await resolving.commit()
            await asyncio.wait_for(late, 10)
            await withdrawing.commit()

        assert await preference(engine, customer) is None


class TestTheDesksSetting:
    async def test_the_hold_is_the_desks_and_zero_turns_the_affinity_off(
        self, app: FastAPI, api: Api, engine: AsyncEngine, clock: Clock
    ) -> None:
        handler = int((await api.agent())["id"])
        customer = int((await api.customer())["id"])
        cid = await of_customer(api, customer, 0)
        await assign_to(api, cid, handler)

        for hold_s, expected in ((5.0, (handler, str(cid), 5.0)), (0.0, None)):
            async with unit_of_work(app.state.sessionmaker) as session:
                held = await get_or_raise(session, cid, for_update=True)
                desk = Desk(complaint_affinity_s=hold_s)
                await affinity.after_move(
                    session, held, ComplaintEvent.ASSIGN, handler, clock(), desk
                )
            assert await preference(engine, customer) == expected

    @pytest.mark.parametrize("hold_s", [-1.0, math.inf, math.nan])
    def test_a_hold_that_is_not_a_finite_number_of_seconds_is_refused(self, hold_s: float) -> None:
        with pytest.raises(ValueError, match="complaint_affinity_s"):
            Desk(complaint_affinity_s=hold_s)


class TestWhichMovesMatter:
    def test_assignments_and_moves_into_or_out_of_handling_change_the_handler(self) -> None:
        e = ComplaintEvent
        assert {e.ASSIGN, e.RESOLVE, e.WITHDRAW, e.REJECT, e.REOPEN} <= affinity.CHANGES_HANDLER
        assert {e.REQUEST_REVIEW, e.CONCLUDE_REVIEW} <= affinity.CHANGES_HANDLER
        assert not {e.START, e.PAUSE, e.RESUME, e.ARCHIVE, e.CLOSE} & affinity.CHANGES_HANDLER
