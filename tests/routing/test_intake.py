"""Taking contacts in (``POST /api/v1/contacts``): the one statement's facts and refusals.

The statement checks the sign-in, the idempotency key, the queue, the customer and the
queue's length itself, so each is proved here through the API: what it answers, and that a
refusal wrote nothing.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI
from httpx import Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db import plain_url
from app.routing.admission import QUEUE_LOCKS
from tests.conftest import make_settings
from tests.fixtures.factories import Api, expect, unique
from tests.fixtures.polling import eventually
from tests.routing.acd import (
    available_agent,
    contact,
    offer_for,
    queue,
    rows,
    stored_overflow,
    value,
)
from tests.routing.test_contacts_api import refused, snapshot


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


def waited_for(created: dict[str, Any]) -> float:
    """Seconds between the contact's enqueue time and its deadline (its tier's target)."""
    enqueued = datetime.fromisoformat(created["enqueued_at"])
    return (datetime.fromisoformat(created["deadline_at"]) - enqueued).total_seconds()


class TestSignIn:
    async def test_deactivated_agents_token_takes_nothing_in(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)
        agent = await api.agent()
        console = await api.signed_in_as(agent)
        expect(await api.patch(f"/api/v1/agents/{agent['id']}", {"active": False}), 200)
        before = await snapshot(engine)

        response = await console.post("/api/v1/contacts", {"channel": "chat", "queue": q["name"]})

        body = await refused(engine, before, response, 401)
        assert "disabled" in body["detail"]

    async def test_token_from_before_a_password_change_takes_nothing_in(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)
        agent = await api.agent()
        console = await api.signed_in_as(agent)
        url = f"/api/v1/agents/{agent['id']}"
        expect(await api.patch(url, {"password": "another-password-2"}), 200)
        before = await snapshot(engine)

        response = await console.post("/api/v1/contacts", {"channel": "chat", "queue": q["name"]})

        body = await refused(engine, before, response, 401)
        assert "revoked" in body["detail"]

    async def test_no_token_is_401_before_the_body_is_looked_at(self, api: Api) -> None:
        response = await api.client.post("/api/v1/contacts", json={"channel": "chat"})

        assert expect(response, 401)["error"] == "Unauthorized"

    async def test_an_agent_may_take_a_contact_in(self, api: Api) -> None:
        q = await queue(api)
        console = await api.signed_in_as(await api.agent())

        created = await contact(console, q["name"])

        assert created["status"] == "queued"
        assert created["queue"] == q["name"]


class TestQueueById:
    async def test_a_queue_may_be_named_by_id(self, api: Api) -> None:
        q = await queue(api)

        created = expect(
            await api.post("/api/v1/contacts", {"channel": "chat", "queue": q["id"]}), 201
        )

        assert created["queue_id"] == q["id"]
        assert created["queue"] == q["name"]

    async def test_unknown_queue_id_is_422_naming_queue(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        before = await snapshot(engine)

        response = await api.post("/api/v1/contacts", {"channel": "chat", "queue": 987654})

        body = await refused(engine, before, response, 422)
        assert body["field"] == "queue"
        assert "987654" in body["detail"]


class TestCustomer:
    async def test_customer_by_id_gives_its_tier_target_and_phone(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)
        gold = await api.customer(tier="gold", language="en")

        created = await contact(api, q["name"], customer={"id": gold["id"]})

        assert created["tier"] == "gold"
        assert created["customer_id"] == gold["id"]
        assert created["language"] == "en"
        assert waited_for(created) == pytest.approx(20)  # gold's default target
        caller = "SELECT caller FROM contacts WHERE id = :id"
        assert await value(engine, caller, id=created["id"]) == gold["phone"]

    async def test_language_asked_for_beats_the_customers(self, api: Api) -> None:
        q = await queue(api)
        customer = await api.customer(language="en")

        created = await contact(api, q["name"], customer={"id": customer["id"]}, language="zh")

        assert created["language"] == "zh"

    async def test_customer_by_phone_in_another_format_is_found(self, api: Api) -> None:
        q = await queue(api)
        platinum = await api.customer(tier="platinum", phone="+8613912345678")

        created = await contact(api, q["name"], customer={"phone": "139 1234 5678"})

        assert created["customer_id"] == platinum["id"]
        assert created["tier"] == "platinum"
        assert waited_for(created) == pytest.approx(10)

    async def test_unknown_phone_is_routed_as_the_default_tier(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)

        created = await contact(api, q["name"], customer={"phone": "+8613700000001"})

        assert created["customer_id"] is None
        assert created["tier"] == "standard"
        assert waited_for(created) == pytest.approx(60)
        caller = "SELECT caller FROM contacts WHERE id = :id"
        assert await value(engine, caller, id=created["id"]) == "+8613700000001"

    async def test_unknown_customer_id_is_422_naming_customer(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)
        before = await snapshot(engine)

        response = await api.post(
            "/api/v1/contacts", {"channel": "chat", "queue": q["name"], "customer": {"id": 4242}}
        )

        body = await refused(engine, before, response, 422)
        assert body["field"] == "customer"
        assert "4242" in body["detail"]

    async def test_malformed_phone_is_422_naming_phone(self, api: Api, engine: AsyncEngine) -> None:
        q = await queue(api)
        before = await snapshot(engine)

        response = await api.post(
            "/api/v1/contacts",
            {"channel": "chat", "queue": q["name"], "customer": {"phone": "not a phone"}},
        )

        body = await refused(engine, before, response, 422)
        assert "phone" in body["detail"]


class TestAdmission:
    async def test_overflow_chain_is_followed_past_a_full_overflow(self, api: Api) -> None:
        last = await queue(api)
        middle = await queue(api, max_length=1, overflow_queue=last["name"])
        first = await queue(api, max_length=1, overflow_queue=middle["name"])
        await contact(api, first["name"])
        await contact(api, middle["name"])

        created = await contact(api, first["name"])

        assert created["queue"] == last["name"]

    async def test_overflow_loop_of_full_queues_is_409_naming_the_last_one_tried(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        a = await queue(api, max_length=1)
        b = await queue(api, max_length=1, overflow_queue=a["name"])
        await stored_overflow(engine, a, b)  # a loop stored before loops were refused
        await contact(api, a["name"])
        await contact(api, b["name"])
        before = await snapshot(engine)

        response = await api.post("/api/v1/contacts", {"channel": "chat", "queue": a["name"]})

        body = await refused(engine, before, response, 409)
        assert b["name"] in body["detail"]
        assert "full" in body["detail"]

    async def test_overflow_that_does_not_take_the_channel_is_409(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        voice_only = await queue(api, channels=["voice"])
        q = await queue(api, max_length=1, overflow_queue=voice_only["name"])
        await contact(api, q["name"])
        before = await snapshot(engine)

        response = await api.post("/api/v1/contacts", {"channel": "chat", "queue": q["name"]})

        await refused(engine, before, response, 409)

    async def test_a_queue_with_room_again_takes_contacts(self, api: Api) -> None:
        spill = await queue(api)
        q = await queue(api, max_length=1, overflow_queue=spill["name"])
        first = await contact(api, q["name"])
        expect(await api.post(f"/api/v1/contacts/{first['id']}/abandon"), 200)

        again = await contact(api, q["name"])

        assert again["queue"] == q["name"]


BURST = 10  # requests sent at once


async def held_back(
    api: Api, db: str, queue_ids: list[int], body: dict[str, Any], headers: dict[str, str]
) -> list[Response]:
    """``BURST`` concurrent POSTs of ``body``, each held until all of them have read the queues.

    A new contact's foreign key check waits for the queue's row, so while this function holds
    the rows of ``queue_ids`` locked, every request that counted a queue and inserted into it
    waits before it can commit, and one that waits for another admission (its lock) waits
    too. Once all ``BURST`` wait, the rows are released: an intake that counts on a snapshot
    taken before the others committed admits them all, reliably, not just when the timing
    happens to interleave them.
    """
    conn = await asyncpg.connect(plain_url(db))
    try:
        async with conn.transaction():
            await conn.execute(
                "SELECT FROM queues WHERE id = ANY($1::bigint[]) FOR UPDATE", queue_ids
            )
            posts = [
                asyncio.ensure_future(api.post("/api/v1/contacts", body, headers=headers))
                for _ in range(BURST)
            ]

            async def all_waiting() -> bool:
                waiting = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                return bool(waiting >= BURST)

            await eventually(all_waiting, what=f"{BURST} intakes waiting on a lock")
        return await asyncio.gather(*posts)
    finally:
        await conn.close()


async def admitted(engine: AsyncEngine) -> dict[int, int]:
    """Contacts per queue."""
    sql = "SELECT queue_id, count(*) FROM contacts GROUP BY queue_id"
    return {int(queue_id): int(n) for queue_id, n in await rows(engine, sql)}


class TestMaxLengthUnderConcurrency:
    @pytest.fixture
    def settings(self, db: str) -> Settings:
        # A driver connection for every request, so that their statements really overlap.
        return make_settings(db, driver_pool_size=BURST + 2)

    async def test_concurrent_contacts_into_a_queue_of_one_admit_exactly_one(
        self, api: Api, engine: AsyncEngine, db: str
    ) -> None:
        q = await queue(api, max_length=1)
        body = {"channel": "chat", "queue": q["name"]}

        responses = await held_back(api, db, [q["id"]], body, {})

        assert sorted(r.status_code for r in responses) == [201] + [409] * (BURST - 1)
        assert await admitted(engine) == {q["id"]: 1}

    async def test_concurrent_contacts_along_an_overflow_chain_fill_each_queue_to_its_length(
        self, api: Api, engine: AsyncEngine, db: str
    ) -> None:
        c = await queue(api, max_length=2)
        b = await queue(api, max_length=1, overflow_queue=c["name"])
        a = await queue(api, max_length=1, overflow_queue=b["name"])
        body = {"channel": "chat", "queue": a["name"]}

        responses = await held_back(api, db, [a["id"], b["id"], c["id"]], body, {})

        assert sorted(r.status_code for r in responses) == [201] * 4 + [409] * (BURST - 4)
        assert await admitted(engine) == {a["id"]: 1, b["id"]: 1, c["id"]: 2}
        refusals = [r.json()["detail"] for r in responses if r.status_code == 409]
        assert all(c["name"] in detail for detail in refusals)

    async def test_concurrent_retries_into_a_full_queue_all_get_the_one_contact(
        self, api: Api, engine: AsyncEngine, db: str
    ) -> None:
        q = await queue(api, max_length=1)
        body = {"channel": "chat", "queue": q["name"]}
        headers = {"Idempotency-Key": unique("full-retry-")}

        responses = await held_back(api, db, [q["id"]], body, headers)

        assert len({expect(r, 201)["id"] for r in responses}) == 1
        assert await admitted(engine) == {q["id"]: 1}

    async def test_overflow_set_while_an_admission_waits_for_its_lock_is_followed(
        self, api: Api, engine: AsyncEngine, db: str
    ) -> None:
        full = await queue(api, max_length=1)
        await contact(api, full["name"])
        spill = await queue(api, max_length=1)
        conn = await asyncpg.connect(plain_url(db))
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", QUEUE_LOCKS, full["id"])
                body = {"channel": "chat", "queue": full["name"]}
                post = asyncio.ensure_future(api.post("/api/v1/contacts", body))

                async def waiting() -> bool:
                    sql = (
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event = 'advisory'"
                    )
                    return bool(await conn.fetchval(sql))

                await eventually(waiting, what="the admission waiting for its queue's lock")
                patch = {"overflow_queue": spill["name"]}
                expect(await api.patch(f"/api/v1/queues/{full['id']}", patch), 200)
            created = expect(await post, 201)
        finally:
            await conn.close()

        assert created["queue"] == spill["name"]
        assert await admitted(engine) == {full["id"]: 1, spill["id"]: 1}


class TestPosition:
    async def test_position_counts_the_queued_contacts_ahead(self, api: Api) -> None:
        q = await queue(api)
        standard = [await contact(api, q["name"]) for _ in range(3)]
        vip = await api.customer(tier="platinum")

        platinum = await contact(api, q["name"], customer={"id": vip["id"]})

        assert [c["position"] for c in standard] == [1, 2, 3]
        assert platinum["position"] == 1  # its deadline is the earliest
        assert platinum["estimated_wait_s"] is None
        assert platinum["estimate_basis"] == "unknown"

    async def test_positions_follow_the_order_contacts_are_served_in_and_never_repeat(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        """The dispatcher serves a queue by deadline, then id; a position counts the
        contacts it serves first. Arrival times that disagree with the ids (a contact
        transferred in keeps its first arrival) must not give two contacts one place."""
        q = await queue(api)
        made = [(await contact(api, q["name"]))["id"] for _ in range(3)]
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE contacts SET deadline_at = now() + interval '1 hour',"
                    " enqueued_at = now() - make_interval(secs => id - :first),"
                    " announced_position = NULL WHERE id = ANY(:ids)"
                ),
                {"first": made[0], "ids": made},
            )
        seen = [expect(await api.get(f"/api/v1/contacts/{c}"), 200)["position"] for c in made]
        assert seen == [1, 2, 3]


class TestRetries:
    async def test_retry_is_shown_the_contact_as_it_stands_now(self, api: Api) -> None:
        q = await queue(api)
        headers = {"Idempotency-Key": unique("retry-")}
        body = {"channel": "chat", "queue": q["name"]}
        first = expect(await api.post("/api/v1/contacts", body, headers=headers), 201)
        console = await available_agent(api)
        await offer_for(console, first["id"])

        again = expect(await api.post("/api/v1/contacts", body, headers=headers), 201)

        assert first["status"] == "queued"
        assert again["id"] == first["id"]
        assert again["status"] == "offered"
        assert again["position"] == 0
        assert [o["agent_id"] for o in again["offers"]] == [console.me["id"]]

    async def test_concurrent_retries_take_one_contact_in(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)
        headers = {"Idempotency-Key": unique("burst-")}
        body = {"channel": "chat", "queue": q["name"], "subject": "one call, many retries"}

        responses = await asyncio.gather(
            *(api.post("/api/v1/contacts", body, headers=headers) for _ in range(8))
        )

        ids = {expect(r, 201)["id"] for r in responses}
        assert len(ids) == 1
        assert await value(engine, "SELECT count(*) FROM contacts") == 1
        queued = "SELECT count(*) FROM events WHERE type = 'contact.queued'"
        assert await value(engine, queued) == 1

    async def test_same_key_from_another_agent_is_another_contact(self, api: Api) -> None:
        q = await queue(api)
        other = await api.signed_in_as(await api.agent())
        headers = {"Idempotency-Key": "shared-key"}
        body = {"channel": "chat", "queue": q["name"]}

        mine = expect(await api.post("/api/v1/contacts", body, headers=headers), 201)
        theirs = expect(await other.post("/api/v1/contacts", body, headers=headers), 201)

        assert mine["id"] != theirs["id"]

    async def test_refused_request_does_not_use_up_its_key(self, api: Api) -> None:
        q = await queue(api, channels=["voice"])
        headers = {"Idempotency-Key": unique("fix-and-retry-")}
        refused_body = {"channel": "chat", "queue": q["name"]}
        expect(await api.post("/api/v1/contacts", refused_body, headers=headers), 422)
        fixed = {"channel": "voice", "queue": q["name"]}

        created = expect(await api.post("/api/v1/contacts", fixed, headers=headers), 201)

        assert created["channel"] == "voice"

    @pytest.mark.parametrize("key", ["", "k" * 201], ids=["empty", "too-long"])
    async def test_unusable_key_is_422(self, api: Api, engine: AsyncEngine, key: str) -> None:
        q = await queue(api)
        before = await snapshot(engine)

        response = await api.post(
            "/api/v1/contacts",
            {"channel": "chat", "queue": q["name"]},
            headers={"Idempotency-Key": key},
        )

        body = await refused(engine, before, response, 422)
        assert "Idempotency-Key" in body["detail"]
