"""The last-agent affinity as routing keeps it: for ``hold_s`` after each contact of the
customer queued, the contact is their preferred agent's, and waits for them while they are
signed in and available but busy; an agent who is away, offline, inactive or unqualified
holds nothing back.

The rounds are driven by hand on a connection of the test's own (the app's dispatcher off),
and decided at an injected ``now``, so the window's edges are exact.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError

from app.config import Settings
from app.db import connect_driver, unit_of_work
from app.routing import affinity
from app.routing.rounds import Plan, Rounds, decide, next_wake
from app.routing.scoring import Affinity
from tests.conftest import make_settings
from tests.fixtures.factories import ADMIN_PASSWORD, Api, expect
from tests.routing.acd import available_agent, contact, instance, pending_offers, queue, value

HOLD_S = 60.0


@pytest.fixture
def settings(db: str) -> Settings:
    return make_settings(db, dispatcher_enabled=False)


@pytest.fixture
async def centre(settings: Settings) -> AsyncIterator[tuple[FastAPI, Api]]:
    """A running app whose dispatcher is off, and its admin."""
    async with instance(settings) as (app, client):
        yield app, await Api.signed_in(client, "admin", ADMIN_PASSWORD)


@pytest.fixture
async def rounds(db: str, settings: Settings, centre: object) -> AsyncIterator[Rounds]:
    """Rounds run by the test, on a connection of their own."""
    conn = await connect_driver(db)
    try:
        yield Rounds(conn, settings)
    finally:
        await conn.close()


async def prefer(app: FastAPI, customer_id: int, agent_id: int, hold_s: float = HOLD_S) -> None:
    async with unit_of_work(app.state.sessionmaker) as session:
        await affinity.prefer_agent(
            session,
            customer_id=customer_id,
            agent_id=agent_id,
            hold_s=hold_s,
            source="complaint",
            ref="7",
            now=datetime.now(UTC),
        )


async def release(app: FastAPI, customer_id: int, ref: str) -> bool:
    async with unit_of_work(app.state.sessionmaker) as session:
        return await affinity.release(session, customer_id=customer_id, source="complaint", ref=ref)


def at(plan: Plan, now: datetime) -> Plan:
    """The plan as if read at ``now``."""
    return replace(plan, now=now)


async def two_agents_and_a_caller(api: Api) -> tuple[dict[str, Any], Api, Api, int]:
    """A queue, a veteran (idle longest: the strategy's choice), a preferred agent who became
    available after them, and a customer: (queue, veteran, preferred, customer id)."""
    q = await queue(api)
    veteran = await available_agent(api)
    preferred = await available_agent(api)
    customer = await api.customer(tier="standard")
    return q, veteran, preferred, int(customer["id"])


class TestTheRoundPrefersTheAgent:
    async def test_the_preferred_agent_is_offered_the_contact_over_a_longer_idle_one(
        self, centre: tuple[FastAPI, Api], rounds: Rounds, settings: Settings
    ) -> None:
        app, api = centre
        q, veteran, preferred, customer = await two_agents_and_a_caller(api)
        await prefer(app, customer, preferred.me["id"])
        created = await contact(api, q["name"], customer={"id": customer})

        plan = await rounds.read()
        [match] = decide(plan, settings)
        made = await rounds.write(plan, [match])

        assert (match.contact.id, match.agent_id) == (created["id"], preferred.me["id"])
        assert match.reason.affinity is Affinity.LAST_AGENT
        # Held for the preferred agent, the contact is theirs alone (nobody else ranked).
        assert (match.reason.runner_up_agent_id, match.reason.agents_ranked) == (None, 1)
        assert [m.agent_id for m in made] == [preferred.me["id"]]
        assert [o["contact_id"] for o in await pending_offers(preferred)] == [created["id"]]
        assert await pending_offers(veteran) == []

    async def test_the_window_is_hold_s_from_the_enqueue_time_and_then_the_rules_apply(
        self, centre: tuple[FastAPI, Api], rounds: Rounds, settings: Settings
    ) -> None:
        app, api = centre
        q, veteran, preferred, customer = await two_agents_and_a_caller(api)
        await prefer(app, customer, preferred.me["id"])
        await contact(api, q["name"], customer={"id": customer})

        plan = await rounds.read()
        [waiting] = plan.waiting
        until = waiting.view.enqueued_at + timedelta(seconds=HOLD_S)
        assert waiting.view.last_agent_id == preferred.me["id"]
        assert waiting.view.last_agent_until == until

        [inside] = decide(at(plan, until - timedelta(microseconds=1)), settings)
        [closed] = decide(at(plan, until), settings)

        assert inside.agent_id == preferred.me["id"]
        assert (closed.agent_id, closed.reason.affinity) == (veteran.me["id"], None)

    async def test_a_customer_without_a_preference_goes_by_the_rules(
        self, centre: tuple[FastAPI, Api], rounds: Rounds, settings: Settings
    ) -> None:
        app, api = centre
        q, veteran, preferred, customer = await two_agents_and_a_caller(api)
        other = int((await api.customer(tier="standard"))["id"])
        await prefer(app, other, preferred.me["id"])
        await contact(api, q["name"], customer={"id": customer})

        plan = await rounds.read()
        [match] = decide(plan, settings)

        assert plan.waiting[0].view.last_agent_id is None
        assert (match.agent_id, match.reason.affinity) == (veteran.me["id"], None)


async def leave(api: Api, agent: Api, how: str) -> None:
    """The agent goes away, offline, or is deactivated (by the admin)."""
    path = f"/api/v1/agents/{agent.me['id']}"
    if how == "deactivated":
        expect(await api.patch(path, {"active": False}), 200)
        return
    body = {"status": how, "reason": "break"} if how == "away" else {"status": how}
    expect(await agent.post(f"{path}/status", body), 200)


class TestAnUnavailableAgentHoldsNothingBack:
    @pytest.mark.parametrize("how", ["away", "offline", "deactivated"])
    async def test_the_contact_goes_to_another_agent_at_once(
        self, centre: tuple[FastAPI, Api], rounds: Rounds, settings: Settings, how: str
    ) -> None:
        app, api = centre
        q, veteran, preferred, customer = await two_agents_and_a_caller(api)
        await prefer(app, customer, preferred.me["id"])
        await leave(api, preferred, how)
        created = await contact(api, q["name"], customer={"id": customer})

        plan = await rounds.read()
        [waiting] = plan.waiting
        assert waiting.view.last_agent_until is not None
        assert plan.now < waiting.view.last_agent_until  # inside the window
        [match] = decide(plan, settings)

        assert (match.contact.id, match.agent_id) == (created["id"], veteran.me["id"])
        assert match.reason.affinity is None

    async def test_a_preferred_agent_without_the_steps_skill_holds_nothing_back(
        self, centre: tuple[FastAPI, Api], rounds: Rounds, settings: Settings
    ) -> None:
        app, api = centre
        skill = await api.skill()
        step = {"skills": [{"skill": skill["name"], "min_level": 3}]}
        q = await queue(api, steps=[step])
        preferred = await available_agent(api, skills=[{"skill": skill["name"], "level": 2}])
        skilled = await available_agent(api, skills=[{"skill": skill["name"], "level": 3}])
        customer = int((await api.customer(tier="standard"))["id"])
        await prefer(app, customer, preferred.me["id"])
        created = await contact(api, q["name"], customer={"id": customer})

        plan = await rounds.read()
        [match] = decide(plan, settings)

        assert (match.contact.id, match.agent_id) == (created["id"], skilled.me["id"])
        assert match.reason.affinity is None


LONG_HOLD_S = 3600.0  # the window outlasts the test; its end is reached by injecting ``now``


async def handler_busy_with_another_contact(
    app: FastAPI, api: Api, rounds: Rounds, settings: Settings
) -> tuple[dict[str, Any], Api, Api, dict[str, Any], dict[str, Any]]:
    """A queue with wrap-up, a handler (room for one chat) connected to a contact, an idle
    other agent, and the handler's customer calling again: (queue, handler, other, the
    handler's contact, the customer's new contact)."""
    q = await queue(api, wrap_up_s=30)
    handler = await available_agent(api, capacity={"chat": 1})  # idle longest: served first
    other = await available_agent(api, capacity={"chat": 1})
    customer = int((await api.customer(tier="standard"))["id"])
    busy = await contact(api, q["name"])
    plan = await rounds.read()
    await rounds.write(plan, decide(plan, settings))
    [offer] = await pending_offers(handler)
    assert offer["contact_id"] == busy["id"]
    expect(await handler.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
    await prefer(app, customer, handler.me["id"], hold_s=LONG_HOLD_S)
    created = await contact(api, q["name"], customer={"id": customer})
    return q, handler, other, busy, created


class TestABusyAgentHoldsTheContact:
    async def test_the_contact_waits_for_the_handler_and_is_theirs_once_they_have_room(
        self, centre: tuple[FastAPI, Api], rounds: Rounds, settings: Settings
    ) -> None:
        app, api = centre
        _, handler, other, busy, created = await handler_busy_with_another_contact(
            app, api, rounds, settings
        )
        # Connected, at capacity: the round passes the handler as present, ready for nothing.
        plan = await rounds.read()
        [waiting] = plan.waiting
        assert {a.id: a.ready for a in plan.agents} == {
            other.me["id"]: True,
            handler.me["id"]: False,
        }
        assert decide(plan, settings) == []
        assert next_wake(plan, []) == waiting.view.last_agent_until  # looks again at the end

        path = f"/api/v1/contacts/{busy['id']}/complete"
        expect(await handler.post(path, {"disposition": "resolved"}), 200)
        plan = await rounds.read()  # in wrap-up: still no room, still held
        assert decide(plan, settings) == []

        done = f"/api/v1/agents/{handler.me['id']}/wrap-up/done"
        expect(await handler.post(done), 200)
        plan = await rounds.read()
        [match] = decide(plan, settings)
        made = await rounds.write(plan, [match])

        assert (match.contact.id, match.agent_id) == (created["id"], handler.me["id"])
        assert match.reason.affinity is Affinity.LAST_AGENT
        assert [m.agent_id for m in made] == [handler.me["id"]]
        assert [o["contact_id"] for o in await pending_offers(handler)] == [created["id"]]
        assert await pending_offers(other) == []

    async def test_once_the_window_closes_the_idle_agent_takes_it(
        self, centre: tuple[FastAPI, Api], rounds: Rounds, settings: Settings
    ) -> None:
        app, api = centre
        _, handler, other, _, created = await handler_busy_with_another_contact(
            app, api, rounds, settings
        )
        plan = await rounds.read()
        [waiting] = plan.waiting
        # The hour-long window is cut at the contact's target plus the starvation bound: a
        # hold for a busy handler never makes a contact overdue.
        target = waiting.view.tier.sl_target_s + settings.starvation_bound_s
        assert target < LONG_HOLD_S
        until = waiting.view.enqueued_at + timedelta(seconds=target)
        assert waiting.view.last_agent_until == until

        assert decide(at(plan, until - timedelta(microseconds=1)), settings) == []
        [match] = decide(at(plan, until), settings)
        made = await rounds.write(plan, [match])

        assert (match.contact.id, match.agent_id) == (created["id"], other.me["id"])
        assert match.reason.affinity is None
        assert [m.agent_id for m in made] == [other.me["id"]]
        assert [o["contact_id"] for o in await pending_offers(other)] == [created["id"]]
        assert [o["contact_id"] for o in await pending_offers(handler)] == []


class TestTheService:
    async def test_a_later_preference_replaces_the_earlier_whoever_set_it(
        self, centre: tuple[FastAPI, Api]
    ) -> None:
        app, api = centre
        first, second = await api.agent(), await api.agent()
        customer = int((await api.customer())["id"])
        await prefer(app, customer, first["id"])
        await prefer(app, customer, second["id"], hold_s=5)

        async with unit_of_work(app.state.sessionmaker) as session:
            row = await affinity.preferred(session, customer)

        assert row is not None
        assert (row.agent_id, row.hold_s, row.source, row.source_ref) == (
            second["id"],
            5,
            "complaint",
            "7",
        )
        assert await value(app.state.engine, "SELECT count(*) FROM customer_affinities") == 1

    async def test_a_release_for_another_reference_changes_nothing(
        self, centre: tuple[FastAPI, Api]
    ) -> None:
        app, api = centre
        agent = await api.agent()
        customer = int((await api.customer())["id"])
        await prefer(app, customer, agent["id"])

        assert await release(app, customer, "8") is False
        assert await value(app.state.engine, "SELECT count(*) FROM customer_affinities") == 1
        assert await release(app, customer, "7") is True
        assert await value(app.state.engine, "SELECT count(*) FROM customer_affinities") == 0
        assert await release(app, customer, "7") is False

    @pytest.mark.parametrize("hold_s", [0.0, -1.0, math.inf, math.nan])
    async def test_a_hold_that_is_not_a_positive_finite_number_is_refused(
        self, centre: tuple[FastAPI, Api], hold_s: float
    ) -> None:
        app, api = centre
        agent = await api.agent()
        customer = int((await api.customer())["id"])
        with pytest.raises(ValueError, match="hold_s"):
            await prefer(app, customer, agent["id"], hold_s=hold_s)

    @pytest.mark.parametrize("hold_s", ["0", "'Infinity'", "'NaN'"])
    async def test_the_table_refuses_such_a_hold_too(
        self, centre: tuple[FastAPI, Api], hold_s: str
    ) -> None:
        app, api = centre
        agent = await api.agent()
        customer = int((await api.customer())["id"])
        with pytest.raises(IntegrityError, match="ck_customer_affinities_hold_s"):
            async with app.state.engine.begin() as conn:
                await conn.exec_driver_sql(
                    "INSERT INTO customer_affinities "
                    "(customer_id, agent_id, hold_s, source, source_ref, set_at) "
                    f"VALUES ({customer}, {agent['id']}, {hold_s}::float8, 'x', 'y', now())"
                )
