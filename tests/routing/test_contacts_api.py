"""Contacts through the API: bad input is a clear 4xx that changes nothing; queue limits.

Every refusal is checked twice: the status and the field or state it names, and that the
contact, its offers, the agents' work and the event log are exactly as before.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually
from tests.routing.acd import (
    available_agent,
    contact,
    event_count,
    offer_for,
    pending_offers,
    queue,
    rows,
    stored_overflow,
    value,
)


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


async def snapshot(engine: AsyncEngine) -> dict[str, Any]:
    """What a refused request must leave untouched."""
    return {
        "contacts": [
            tuple(r) for r in await rows(engine, "SELECT id, status FROM contacts ORDER BY id")
        ],
        "offers": [
            tuple(r) for r in await rows(engine, "SELECT id, status FROM offers ORDER BY id")
        ],
        "agents": [
            tuple(r)
            for r in await rows(
                engine,
                "SELECT a.id, a.state, a.work_offers, a.work_contacts, a.work_wrap_ups, "
                "coalesce(sum(c.load), 0) FROM agents a "
                "LEFT JOIN agent_channels c ON c.agent_id = a.id GROUP BY a.id ORDER BY a.id",
            )
        ],
        "events": await event_count(engine),
        "queues": await value(engine, "SELECT count(*) FROM queues"),
    }


async def refused(
    engine: AsyncEngine, before: dict[str, Any], response: Any, status: int
) -> dict[str, Any]:
    """The error body, after checking the status and that nothing changed."""
    body = expect(response, status)
    assert await snapshot(engine) == before
    return body  # type: ignore[no-any-return]


async def accepted_contact(api: Api, q: dict[str, Any], console: Api) -> dict[str, Any]:
    created = await contact(api, q["name"])
    offer = await offer_for(console, created["id"])
    expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
    return created


class TestCreateContactRefusals:
    async def test_unknown_queue_is_422_naming_queue(self, api: Api, engine: AsyncEngine) -> None:
        await queue(api)
        before = await snapshot(engine)

        response = await api.post("/api/v1/contacts", {"channel": "chat", "queue": "no-such"})

        body = await refused(engine, before, response, 422)
        assert body["field"] == "queue"
        assert "no-such" in body["detail"]

    async def test_channel_the_queue_does_not_take_is_422_naming_channel(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api, channels=["chat"])
        before = await snapshot(engine)

        response = await api.post("/api/v1/contacts", {"channel": "voice", "queue": q["name"]})

        body = await refused(engine, before, response, 422)
        assert body["field"] == "channel"
        assert "voice" in body["detail"]

    @pytest.mark.parametrize("language", ["zh-CN", "en", "en-US", "yue-HK", "zh-Hans-CN"])
    async def test_a_language_tag_is_taken(self, api: Api, language: str) -> None:
        q = await queue(api)

        created = await contact(api, q["name"], language=language)

        assert created["language"] == language

    @pytest.mark.parametrize(
        "language",
        ["!!!", "zh CN", "", "zh_CN", "ZH-CN", "chinese", "zh-Hans-CN-abcdef"],
        ids=["punctuation", "space", "empty", "underscore", "upper-case", "word", "17-long"],
    )
    async def test_a_language_that_is_no_tag_is_422_naming_language(
        self, api: Api, engine: AsyncEngine, language: str
    ) -> None:
        q = await queue(api)
        before = await snapshot(engine)

        response = await api.post(
            "/api/v1/contacts", {"channel": "chat", "queue": q["name"], "language": language}
        )

        body = await refused(engine, before, response, 422)
        assert [f["field"] for f in body["fields"]] == ["language"]

    async def test_retry_with_the_same_idempotency_key_returns_the_same_contact_once(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)
        body = {"channel": "chat", "queue": q["name"], "subject": "card stolen"}
        headers = {"Idempotency-Key": "contact-retry-1"}

        first = expect(await api.post("/api/v1/contacts", body, headers=headers), 201)
        again = expect(await api.post("/api/v1/contacts", body, headers=headers), 201)

        assert again["id"] == first["id"]
        assert await value(engine, "SELECT count(*) FROM contacts") == 1
        queued = "SELECT count(*) FROM events WHERE type = 'contact.queued'"
        assert await value(engine, queued) == 1

    async def test_same_idempotency_key_with_another_body_is_refused(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)
        headers = {"Idempotency-Key": "contact-retry-2"}
        body = {"channel": "chat", "queue": q["name"]}
        expect(await api.post("/api/v1/contacts", body, headers=headers), 201)
        before = await snapshot(engine)

        response = await api.post(
            "/api/v1/contacts", {**body, "subject": "something else"}, headers=headers
        )

        await refused(engine, before, response, 409)


class TestQueueRefusals:
    async def test_unknown_skill_in_routing_steps_is_422(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        before = await snapshot(engine)

        response = await api.post(
            "/api/v1/queues",
            {
                "name": "ghostly",
                "channels": ["chat"],
                "steps": [{"skills": [{"skill": "ghost_skill", "min_level": 3}]}],
            },
        )

        body = await refused(engine, before, response, 422)
        assert "ghost_skill" in body["detail"]
        expect(await api.get("/api/v1/queues/ghostly"), 404)

    @pytest.mark.parametrize(
        "field",
        [
            "channels",
            "strategy",
            "steps",
            "service_level",
            "ring_timeout_s",
            "wrap_up_s",
            "reject_delay_s",
            "no_answer_delay_s",
            "max_no_answer",
        ],
    )
    async def test_clearing_a_rule_a_queue_cannot_lack_is_422_naming_it(
        self, api: Api, engine: AsyncEngine, field: str
    ) -> None:
        q = await queue(api)
        before = await snapshot(engine)

        response = await api.patch(f"/api/v1/queues/{q['id']}", {field: None})

        body = await refused(engine, before, response, 422)
        assert [f["field"] for f in body["fields"]] == [field]
        assert expect(await api.get(f"/api/v1/queues/{q['id']}"), 200) == q

    async def test_clearing_what_a_queue_may_lack_is_taken(self, api: Api) -> None:
        spill = await queue(api)
        q = await queue(
            api, description="x", max_wait_s=60, max_length=5, overflow_queue=spill["name"]
        )
        cleared = {"description": None, "max_wait_s": None, "max_length": None}

        changed = expect(
            await api.patch(f"/api/v1/queues/{q['id']}", {**cleared, "overflow_queue": None}),
            200,
        )

        assert {k: changed[k] for k in cleared} == cleared
        assert changed["overflow_queue"] is None

    @pytest.mark.parametrize("method", ["post", "patch"])
    async def test_a_channel_listed_twice_is_422_naming_channels(
        self, api: Api, engine: AsyncEngine, method: str
    ) -> None:
        q = await queue(api)
        before = await snapshot(engine)
        twice = {"channels": ["chat", "voice", "chat"]}

        if method == "post":
            response = await api.post("/api/v1/queues", {"name": "twice", **twice})
        else:
            response = await api.patch(f"/api/v1/queues/{q['id']}", twice)

        body = await refused(engine, before, response, 422)
        assert [f["field"] for f in body["fields"]] == ["channels"]
        assert "more than once" in body["detail"]
        assert expect(await api.get(f"/api/v1/queues/{q['id']}"), 200)["channels"] == [
            "chat",
            "voice",
        ]


class TestQueueChanges:
    async def test_steps_changed_with_defaults_left_out_are_stored_whole_and_route(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        skill = await api.skill()
        q = await queue(api)
        first = {"skills": [{"skill": skill["name"]}], "expires_after_s": 30}
        last = {"skills": [{"skill": skill["name"], "min_level": 2}]}

        changed = expect(
            await api.patch(f"/api/v1/queues/{q['id']}", {"steps": [first, last]}), 200
        )

        whole = [
            {"skills": [{"skill": skill["name"], "min_level": 1}], "expires_after_s": 30.0},
            {"skills": [{"skill": skill["name"], "min_level": 2}], "expires_after_s": None},
        ]
        assert changed["steps"] == whole
        stored = await value(engine, "SELECT steps FROM queues WHERE id = :id", id=q["id"])
        assert stored == whole
        console = await available_agent(api, skills=[{"skill": skill["name"], "level": 1}])
        created = await contact(api, q["name"])
        offer = await offer_for(console, created["id"])
        assert offer["reason"]["rule"] == f"steps[0] requires {skill['name']}>=1"

    async def test_a_step_stored_without_its_levels_routes_at_the_lowest_level(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        skill = await api.skill()
        q = await queue(api)
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE queues SET steps = CAST(:steps AS jsonb) WHERE id = :id"),
                {"steps": json.dumps([{"skills": [{"skill": skill["name"]}]}]), "id": q["id"]},
            )
        expect(await api.patch(f"/api/v1/queues/{q['id']}", {"description": "reread"}), 200)
        console = await available_agent(api, skills=[{"skill": skill["name"], "level": 1}])

        created = await contact(api, q["name"])

        offer = await offer_for(console, created["id"])
        assert offer["reason"]["rule"] == f"steps[0] requires {skill['name']}>=1"
        shown = expect(await api.get(f"/api/v1/queues/{q['id']}"), 200)
        assert shown["unserved_channels"] == []


class TestOfferRefusals:
    async def test_accepting_someone_elses_offer_is_403(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)
        owner = await available_agent(api)
        created = await contact(api, q["name"])
        offer = await offer_for(owner, created["id"])
        intruder = await available_agent(api)
        before = await snapshot(engine)

        response = await intruder.post(f"/api/v1/offers/{offer['id']}/accept")

        await refused(engine, before, response, 403)

    async def test_accepting_an_expired_offer_is_409(self, api: Api, engine: AsyncEngine) -> None:
        q = await queue(api, ring_timeout_s=0.3, no_answer_delay_s=600)
        console = await available_agent(api)
        created = await contact(api, q["name"])
        offer = await offer_for(console, created["id"])

        async def expired() -> bool:
            shown = expect(await api.get(f"/api/v1/contacts/{created['id']}"), 200)
            return bool(shown["offers"][0]["status"] == "expired")

        await eventually(expired, what="the ring timeout")
        before = await snapshot(engine)

        response = await console.post(f"/api/v1/offers/{offer['id']}/accept")

        body = await refused(engine, before, response, 409)
        assert body["status"] == "expired"

    @pytest.mark.parametrize("answer", ["accept", "reject"])
    async def test_answering_an_offer_past_its_ring_timeout_before_its_timer_is_409(
        self, api: Api, engine: AsyncEngine, answer: str
    ) -> None:
        q = await queue(api, ring_timeout_s=600)
        console = await available_agent(api)
        created = await contact(api, q["name"])
        offer = await offer_for(console, created["id"])
        # The ring timeout has passed, and its timer is late (the lease sweep's grace).
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE offers SET expires_at = now() - interval '1 second' WHERE id = :id"),
                {"id": offer["id"]},
            )
        before = await snapshot(engine)

        response = await console.post(f"/api/v1/offers/{offer['id']}/{answer}")

        body = await refused(engine, before, response, 409)
        assert body["status"] == "expired"

    async def test_accepting_twice_is_409(self, api: Api, engine: AsyncEngine) -> None:
        q = await queue(api)
        console = await available_agent(api)
        created = await contact(api, q["name"])
        offer = await offer_for(console, created["id"])
        expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
        before = await snapshot(engine)

        response = await console.post(f"/api/v1/offers/{offer['id']}/accept")

        body = await refused(engine, before, response, 409)
        assert body["status"] == "accepted"


class TestCompleteRefusals:
    async def test_completing_a_contact_that_is_not_yours_is_403(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)
        owner = await available_agent(api)
        created = await accepted_contact(api, q, owner)
        other = await available_agent(api)
        before = await snapshot(engine)

        response = await other.post(f"/api/v1/contacts/{created['id']}/complete", {})

        await refused(engine, before, response, 403)

    async def test_completing_a_contact_that_is_not_connected_is_409(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)
        console = await available_agent(api)
        created = await contact(api, q["name"])
        await offer_for(console, created["id"])  # ringing at this agent, not answered
        before = await snapshot(engine)

        response = await console.post(f"/api/v1/contacts/{created['id']}/complete", {})

        body = await refused(engine, before, response, 409)
        assert body["status"] == "offered"


class TestEndedContacts:
    """Invariant 1 through the API: an ended contact is never ended, moved or completed
    again; the lifecycle table's refusal is a 409 naming the status and the action."""

    @pytest.mark.parametrize("action", ["abandon", "cancel", "transfer", "complete"])
    async def test_an_abandoned_contact_refuses_every_other_ending_with_409(
        self, api: Api, engine: AsyncEngine, action: str
    ) -> None:
        q, other = await queue(api), await queue(api)
        created = await contact(api, q["name"])
        expect(await api.post(f"/api/v1/contacts/{created['id']}/abandon"), 200)
        before = await snapshot(engine)

        body = {"queue": other["name"]} if action == "transfer" else {}
        response = await api.post(f"/api/v1/contacts/{created['id']}/{action}", body)

        refusal = await refused(engine, before, response, 409)
        assert refusal["status"] == "abandoned"
        assert refusal["detail"] == f"contact {created['id']} is abandoned; cannot {action} it"


class TestTransfer:
    async def test_transfer_to_a_queue_that_does_not_take_the_channel_is_422(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)
        phones_only = await queue(api, channels=["voice"])
        console = await available_agent(api)
        created = await accepted_contact(api, q, console)
        before = await snapshot(engine)

        response = await console.post(
            f"/api/v1/contacts/{created['id']}/transfer", {"queue": phones_only["name"]}
        )

        body = await refused(engine, before, response, 422)
        assert body["field"] == "channel"

    async def test_transfer_to_an_unknown_queue_is_422_naming_queue(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)
        console = await available_agent(api)
        created = await accepted_contact(api, q, console)
        before = await snapshot(engine)

        response = await console.post(
            f"/api/v1/contacts/{created['id']}/transfer", {"queue": "no-such"}
        )

        body = await refused(engine, before, response, 422)
        assert body["field"] == "queue"

    async def test_transfer_keeps_the_original_enqueue_time_and_deadline(self, api: Api) -> None:
        q, other = await queue(api), await queue(api)
        created = await contact(api, q["name"])

        url = f"/api/v1/contacts/{created['id']}/transfer"
        successor = expect(await api.post(url, {"queue": other["name"]}), 200)

        original = expect(await api.get(f"/api/v1/contacts/{created['id']}"), 200)
        assert successor["id"] != created["id"]
        assert successor["queue"] == other["name"]
        assert successor["status"] == "queued"
        assert successor["enqueued_at"] == original["enqueued_at"]
        assert successor["deadline_at"] == original["deadline_at"]
        assert successor["transferred_from"] == created["id"]
        assert original["status"] == "transferred"
        assert original["transferred_to"] == successor["id"]
        assert original["ended_at"] is not None

    async def test_a_contact_transferred_while_it_rings_names_no_agent(self, api: Api) -> None:
        q, other = await queue(api), await queue(api)
        console = await available_agent(api)
        created = await contact(api, q["name"])
        offer = await offer_for(console, created["id"])

        url = f"/api/v1/contacts/{created['id']}/transfer"
        expect(await api.post(url, {"queue": other["name"]}), 200)

        original = expect(await api.get(f"/api/v1/contacts/{created['id']}"), 200)
        assert original["status"] == "transferred"
        assert original["agent_id"] is None
        assert [(o["id"], o["status"]) for o in original["offers"]] == [(offer["id"], "rescinded")]

    async def test_a_transferred_contact_goes_to_someone_else_before_the_agent_who_sent_it(
        self, api: Api
    ) -> None:
        # most_skilled keeps the expert first: without the hand-over being remembered, the
        # contact would ring straight back at the agent who just transferred it.
        only_theirs, shared = (await api.skill())["name"], (await api.skill())["name"]
        first = await queue(api, steps=[{"skills": [{"skill": only_theirs, "min_level": 1}]}])
        other = await queue(
            api, strategy="most_skilled", steps=[{"skills": [{"skill": shared, "min_level": 1}]}]
        )
        expert = await available_agent(
            api, skills=[{"skill": only_theirs, "level": 5}, {"skill": shared, "level": 9}]
        )
        novice = await available_agent(api, skills=[{"skill": shared, "level": 2}])
        created = await contact(api, first["name"])
        offer = await offer_for(expert, created["id"])
        expect(await expert.post(f"/api/v1/offers/{offer['id']}/accept"), 200)

        url = f"/api/v1/contacts/{created['id']}/transfer"
        successor = expect(await expert.post(url, {"queue": other["name"]}), 200)

        again = await offer_for(novice, successor["id"])
        assert again["reason"]["tie_break"] == "declined"
        assert again["reason"]["runner_up_agent_id"] == expert.me["id"]
        assert [o["contact_id"] for o in await pending_offers(expert)] == []


class TestQueueLimits:
    async def test_full_queue_without_overflow_refuses_the_contact(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api, max_length=1)
        await contact(api, q["name"])
        before = await snapshot(engine)

        response = await api.post("/api/v1/contacts", {"channel": "chat", "queue": q["name"]})

        body = await refused(engine, before, response, 409)
        assert "full" in body["detail"]

    async def test_full_queues_overflowing_into_each_other_refuse_saying_so(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        second = await queue(api, max_length=1)
        first = await queue(api, max_length=1, overflow_queue=second["name"])
        await stored_overflow(engine, second, first)  # a loop stored before loops were refused
        await contact(api, first["name"])
        await contact(api, first["name"])  # into the second
        before = await snapshot(engine)

        response = await api.post("/api/v1/contacts", {"channel": "chat", "queue": first["name"]})

        body = await refused(engine, before, response, 409)
        assert body["detail"] == (
            f"queue {first['name']!r} is full, and so is every queue it overflows to "
            f"(the last, {second['name']!r}, has 1 waiting)"
        )

    async def test_full_queue_with_overflow_queues_the_contact_in_the_overflow(
        self, api: Api
    ) -> None:
        spill = await queue(api)
        q = await queue(api, max_length=1, overflow_queue=spill["name"])
        first = await contact(api, q["name"])

        second = await contact(api, q["name"])

        assert first["queue"] == q["name"]
        assert second["queue"] == spill["name"]
        assert second["status"] == "queued"

    async def test_max_wait_without_overflow_times_the_contact_out(self, api: Api) -> None:
        q = await queue(api, max_wait_s=0.3)
        created = await contact(api, q["name"])

        async def timed_out() -> dict[str, Any] | None:
            shown = expect(await api.get(f"/api/v1/contacts/{created['id']}"), 200)
            return shown if shown["status"] == "timed_out" else None

        ended = await eventually(timed_out, what="the max wait")
        assert ended["ended_at"] is not None
        assert ended["transferred_to"] is None

    async def test_max_wait_with_overflow_moves_the_contact_keeping_its_place(
        self, api: Api
    ) -> None:
        spill = await queue(api)
        q = await queue(api, max_wait_s=0.3, overflow_queue=spill["name"])
        created = await contact(api, q["name"])

        async def moved() -> dict[str, Any] | None:
            shown = expect(await api.get(f"/api/v1/contacts/{created['id']}"), 200)
            return shown if shown["status"] == "timed_out" else None

        original = await eventually(moved, what="the max wait")
        successor = expect(await api.get(f"/api/v1/contacts/{original['transferred_to']}"), 200)
        assert successor["queue"] == spill["name"]
        assert successor["status"] == "queued"
        assert successor["enqueued_at"] == original["enqueued_at"]
        assert successor["deadline_at"] == original["deadline_at"]
        assert successor["transferred_from"] == created["id"]

    @pytest.mark.parametrize("before", [None, 3600])
    async def test_a_max_wait_set_or_shortened_times_out_the_contacts_already_waiting(
        self, api: Api, before: float | None
    ) -> None:
        q = await queue(api, max_wait_s=before)
        waiting = await contact(api, q["name"])

        expect(await api.patch(f"/api/v1/queues/{q['id']}", {"max_wait_s": 0.3}), 200)

        async def timed_out() -> dict[str, Any] | None:
            shown = expect(await api.get(f"/api/v1/contacts/{waiting['id']}"), 200)
            return shown if shown["status"] == "timed_out" else None

        ended = await eventually(timed_out, what="the new max wait")
        assert ended["transferred_to"] is None

    async def test_a_max_wait_cleared_lets_the_contacts_already_waiting_wait(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api, max_wait_s=3600)
        waiting = await contact(api, q["name"])
        timers = "SELECT count(*) FROM timers WHERE kind = 'contact.max_wait' AND subject = :id"
        assert await value(engine, timers, id=str(waiting["id"])) == 1

        expect(await api.patch(f"/api/v1/queues/{q['id']}", {"max_wait_s": None}), 200)

        assert await value(engine, timers, id=str(waiting["id"])) == 0
        shown = expect(await api.get(f"/api/v1/contacts/{waiting['id']}"), 200)
        assert shown["status"] == "queued"


class TestCallerIdentification:
    @pytest.mark.parametrize(
        "caller", ["+86 10 6552 8888", "0086 10 6552 8888", "(010) 6552-8888", "861065528888"]
    )
    async def test_caller_number_typed_another_way_finds_the_customer(
        self, api: Api, engine: AsyncEngine, caller: str
    ) -> None:
        q = await queue(api)
        gold = await api.customer(tier="gold", phone="010-6552-8888")

        created = await contact(api, q["name"], customer={"phone": caller})

        assert (created["customer_id"], created["tier"]) == (gold["id"], "gold")
        stored = "SELECT caller FROM contacts WHERE id = :id"
        assert await value(engine, stored, id=created["id"]) == "+861065528888"

    async def test_service_number_as_caller_finds_the_customer(self, api: Api) -> None:
        q = await queue(api)
        customer = await api.customer(phone="95561")

        created = await contact(api, q["name"], customer={"phone": "955 61"})

        assert created["customer_id"] == customer["id"]

    @pytest.mark.parametrize("caller", ["12345678901", "6552 8888", "+86 95561", "call me"])
    async def test_invalid_caller_number_is_422_naming_customer_phone(
        self, api: Api, engine: AsyncEngine, caller: str
    ) -> None:
        q = await queue(api)
        before = await snapshot(engine)

        response = await api.post(
            "/api/v1/contacts",
            {"channel": "chat", "queue": q["name"], "customer": {"phone": caller}},
        )

        body = await refused(engine, before, response, 422)
        assert body["field"] == "customer.phone"
        assert body["detail"].startswith("customer.phone: phone number ")


LANDLINE, MASKED_LANDLINE = "+861065528888", "+86106***8888"
NOTES = "promised a call back about the card fee"


async def handled_contact(api: Api) -> tuple[dict[str, Any], dict[str, Any], Api]:
    """A contact of a known customer, answered and completed with notes by an agent: the
    contact as created, the customer and the agent's console."""
    q = await queue(api)
    customer = await api.customer(phone="010-6552-8888")
    console = await available_agent(api)
    created = await contact(api, q["name"], customer={"id": customer["id"]})
    offer = await offer_for(console, created["id"])
    expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
    url = f"/api/v1/contacts/{created['id']}/complete"
    expect(await console.post(url, {"disposition": "resolved", "notes": NOTES}), 200)
    return created, customer, console


async def viewer(api: Api, console: Api, role: str) -> Api:
    """The handling agent, a supervisor or the admin (another agent does not see the contact:
    ``tests/routing/test_access_rules.py``)."""
    if role == "handling-agent":
        return console
    if role == "admin":
        return api
    return await api.signed_in_as(await api.agent(role=role.removeprefix("other-")))


class TestContactDetail:
    @pytest.mark.parametrize(
        ("role", "caller"),
        [
            ("handling-agent", MASKED_LANDLINE),
            ("supervisor", LANDLINE),
            ("admin", LANDLINE),
        ],
    )
    async def test_callers_number_is_masked_per_role_as_the_customers_phone_is(
        self, api: Api, role: str, caller: str
    ) -> None:
        created, customer, console = await handled_contact(api)
        reader = await viewer(api, console, role)

        shown = expect(await reader.get(f"/api/v1/contacts/{created['id']}"), 200)

        as_customer = expect(await reader.get(f"/api/v1/customers/{customer['id']}"), 200)
        assert shown["caller"] == as_customer["phone"] == caller

    @pytest.mark.parametrize(
        ("role", "notes"),
        [
            ("handling-agent", NOTES),
            ("supervisor", NOTES),
            ("admin", NOTES),
        ],
    )
    async def test_notes_are_shown_to_the_handling_agent_supervisors_and_admins_only(
        self, api: Api, role: str, notes: str | None
    ) -> None:
        created, _, console = await handled_contact(api)
        reader = await viewer(api, console, role)

        shown = expect(await reader.get(f"/api/v1/contacts/{created['id']}"), 200)

        assert (shown["notes"], shown["disposition"]) == (notes, "resolved")

    async def test_unknown_callers_number_is_masked_for_an_agent(self, api: Api) -> None:
        q = await queue(api)
        agent = await available_agent(api)
        created = await contact(api, q["name"], customer={"phone": "138 1234 5678"})
        await offer_for(agent, created["id"])

        shown = expect(await agent.get(f"/api/v1/contacts/{created['id']}"), 200)

        assert shown["caller"] == "+86138****5678"
        assert shown["customer_id"] is None

    async def test_answer_to_creating_a_contact_never_shows_the_callers_number(
        self, api: Api
    ) -> None:
        q = await queue(api)
        customer = await api.customer(phone="010-6552-8888")
        agent = await api.signed_in_as(await api.agent())
        body = {"channel": "chat", "queue": q["name"], "customer": {"id": customer["id"]}}
        headers = {"Idempotency-Key": "detail-create-1"}

        created = expect(await agent.post("/api/v1/contacts", body, headers=headers), 201)
        retried = expect(await agent.post("/api/v1/contacts", body, headers=headers), 201)

        assert retried["id"] == created["id"]
        assert (created["caller"], retried["caller"]) == (None, None)
        assert (created["notes"], retried["notes"]) == (None, None)
