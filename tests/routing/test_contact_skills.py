"""A contact's own skills: admitted with it, shown, kept by transfers and overflows, and
honoured by the dispatcher (an agent must hold them as well as the routing step's)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually
from tests.routing.acd import available_agent, contact, offer_for, pending_offers, queue, rows
from tests.routing.test_contacts_api import refused, snapshot


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


async def needs(api: Api, *levels: int) -> list[dict[str, Any]]:
    """New skills, one per level, as a contact requires them."""
    return [{"skill": (await api.skill())["name"], "min_level": level} for level in levels]


async def shown(api: Api, contact_id: int) -> dict[str, Any]:
    return expect(await api.get(f"/api/v1/contacts/{contact_id}"), 200)  # type: ignore[no-any-return]


async def queued_payload(engine: AsyncEngine, contact_id: int) -> dict[str, Any]:
    [(data,)] = await rows(
        engine,
        "SELECT data FROM events WHERE type = 'contact.queued' AND subject_id = :id",
        id=str(contact_id),
    )
    return data  # type: ignore[no-any-return]


class TestAdmission:
    async def test_skills_are_stored_in_order_and_shown_with_the_contact(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)
        required = await needs(api, 7, 2)

        created = await contact(api, q["name"], skills=required)

        assert created["skills"] == required
        assert (await shown(api, created["id"]))["skills"] == required
        assert (await queued_payload(engine, created["id"]))["skills"] == required

    async def test_a_contact_without_skills_requires_none(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)

        created = await contact(api, q["name"])

        assert created["skills"] == []
        assert (await shown(api, created["id"]))["skills"] == []
        assert (await queued_payload(engine, created["id"]))["skills"] == []

    async def test_min_level_defaults_to_one(self, api: Api) -> None:
        q, skill = await queue(api), await api.skill()

        created = await contact(api, q["name"], skills=[{"skill": skill["name"]}])

        assert created["skills"] == [{"skill": skill["name"], "min_level": 1}]

    async def test_unknown_skill_is_422_naming_it_and_changes_nothing(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)
        known = await needs(api, 3)
        before = await snapshot(engine)

        response = await api.post(
            "/api/v1/contacts",
            {
                "channel": "chat",
                "queue": q["name"],
                "skills": [*known, {"skill": "ghost_skill", "min_level": 3}],
            },
        )

        body = await refused(engine, before, response, 422)
        assert body["field"] == "skills"
        assert "ghost_skill" in body["detail"]
        assert known[0]["skill"] not in body["detail"]

    @pytest.mark.parametrize(
        ("skills", "why"),
        [
            pytest.param([{"skill": "billing", "min_level": 0}], "min_level", id="level_below_1"),
            pytest.param([{"skill": "billing", "min_level": 11}], "min_level", id="level_above_10"),
            pytest.param(
                [{"skill": "billing", "min_level": 2}, {"skill": "billing", "min_level": 3}],
                "more than once",
                id="a_skill_twice",
            ),
            pytest.param(
                [{"skill": f"s{n}", "min_level": 1} for n in range(9)], "skills", id="nine_skills"
            ),
            pytest.param(
                [{"skill": "billing", "min_level": 2, "weight": 1}], "weight", id="unknown_field"
            ),
        ],
    )
    async def test_a_malformed_requirement_is_422_and_changes_nothing(
        self, api: Api, engine: AsyncEngine, skills: list[dict[str, Any]], why: str
    ) -> None:
        q = await queue(api)
        before = await snapshot(engine)

        response = await api.post(
            "/api/v1/contacts", {"channel": "chat", "queue": q["name"], "skills": skills}
        )

        body = await refused(engine, before, response, 422)
        assert why in str(body)

    async def test_eight_skills_are_accepted(self, api: Api) -> None:
        q = await queue(api)
        required = await needs(api, *range(1, 9))

        created = await contact(api, q["name"], skills=required)

        assert created["skills"] == required

    async def test_a_retry_with_other_skills_is_refused_as_another_request(self, api: Api) -> None:
        q = await queue(api)
        first, other = await needs(api, 3), await needs(api, 3)
        body = {"channel": "chat", "queue": q["name"], "skills": first}
        headers = {"Idempotency-Key": "skills-retry-0001"}
        expect(await api.post("/api/v1/contacts", body, headers=headers), 201)

        response = await api.post("/api/v1/contacts", {**body, "skills": other}, headers=headers)

        expect(response, 409)


class TestContinuations:
    async def test_a_transfer_keeps_the_contacts_skills(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q, other = await queue(api), await queue(api)
        required = await needs(api, 4)
        created = await contact(api, q["name"], skills=required)

        url = f"/api/v1/contacts/{created['id']}/transfer"
        successor = expect(await api.post(url, {"queue": other["name"]}), 200)

        assert successor["skills"] == required
        assert (await shown(api, successor["id"]))["skills"] == required
        assert (await queued_payload(engine, successor["id"]))["skills"] == required

    async def test_a_transfer_is_not_refused_for_a_skill_gone_since_the_admission(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        """The skills were checked when the contact was first admitted; a continuation is
        never refused for them, so a max wait can always move the contact on."""
        q, other = await queue(api), await queue(api)
        required = await needs(api, 4)
        created = await contact(api, q["name"], skills=required)
        async with engine.begin() as conn:
            await conn.execute(
                text("DELETE FROM skills WHERE name = :name"), {"name": required[0]["skill"]}
            )

        url = f"/api/v1/contacts/{created['id']}/transfer"
        successor = expect(await api.post(url, {"queue": other["name"]}), 200)

        assert successor["skills"] == required

    async def test_an_overflow_keeps_the_contacts_skills(self, api: Api) -> None:
        spill = await queue(api)
        q = await queue(api, max_wait_s=0.3, overflow_queue=spill["name"])
        required = await needs(api, 6)
        created = await contact(api, q["name"], skills=required)

        async def moved() -> dict[str, Any] | None:
            original = await shown(api, created["id"])
            return original if original["status"] == "timed_out" else None

        original = await eventually(moved, what="the max wait")
        successor = await shown(api, original["transferred_to"])
        assert successor["queue"] == spill["name"]
        assert successor["skills"] == required


class TestRouting:
    async def test_contact_is_offered_only_to_an_agent_holding_its_skills(self, api: Api) -> None:
        step_skill = await api.skill()
        [own] = await needs(api, 4)
        q = await queue(api, steps=[{"skills": [{"skill": step_skill["name"], "min_level": 2}]}])
        step_only = {"skill": step_skill["name"], "level": 9}
        # Idle longest, and holding the step's skill: first by the strategy, but lacking the
        # contact's own skill.
        without = await available_agent(api, capacity={"chat": 1}, skills=[step_only])
        holder = await available_agent(
            api, capacity={"chat": 1}, skills=[step_only, {"skill": own["skill"], "level": 4}]
        )

        created = await contact(api, q["name"], skills=[own])

        offer = await offer_for(holder, created["id"])
        assert offer["reason"]["rule"].endswith(f"; contact requires {own['skill']}>=4")
        assert await pending_offers(without) == []

    async def test_a_contact_whose_skills_nobody_holds_waits_and_its_max_wait_ends_it(
        self, api: Api
    ) -> None:
        q = await queue(api, max_wait_s=0.5)
        agent = await available_agent(api, capacity={"chat": 1})
        created = await contact(api, q["name"], skills=await needs(api, 1))
        served = await contact(api, q["name"])

        await offer_for(agent, served["id"])

        async def ended() -> dict[str, Any] | None:
            waiting = await shown(api, created["id"])
            return waiting if waiting["status"] == "timed_out" else None

        ended_contact = await eventually(ended, what="the max wait")
        assert ended_contact["agent_id"] is None
        assert ended_contact["offers"] == []

    async def test_a_waiting_contact_with_skills_counts_as_waiting_in_the_queues_stats(
        self, api: Api
    ) -> None:
        q = await queue(api)
        await contact(api, q["name"], skills=await needs(api, 1))
        await contact(api, q["name"])

        stats = expect(await api.get(f"/api/v1/queues/{q['id']}/stats"), 200)

        assert stats["live"]["waiting"] == 2
