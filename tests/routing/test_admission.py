"""One admission path: transfers, max-wait overflows and system callers are admitted by the
same statement and the same rules as ``POST /api/v1/contacts`` (tier and deadline, channel,
``max_length`` under concurrency, the overflow chain)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI
from httpx import Response
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db import create_engine, create_sessionmaker, driver_connection, plain_url
from app.routing import admission
from app.routing.admission import Admission, Queued, Retried, SystemCaller
from app.routing.admission_statement import STATEMENT
from tests.conftest import make_settings
from tests.fixtures.factories import Api, expect, unique
from tests.fixtures.polling import eventually
from tests.routing.acd import contact, queue, rows, stored_overflow, value
from tests.routing.test_contacts_api import refused, snapshot


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


async def status_of(api: Api, contact_id: int) -> dict[str, Any]:
    return expect(await api.get(f"/api/v1/contacts/{contact_id}"), 200)  # type: ignore[no-any-return]


async def timed_out(api: Api, contact_id: int) -> dict[str, Any]:
    async def ended() -> dict[str, Any] | None:
        shown = await status_of(api, contact_id)
        return shown if shown["status"] == "timed_out" else None

    return await eventually(ended, what=f"contact {contact_id} timing out")  # type: ignore[no-any-return]


async def in_queue(engine: AsyncEngine, queue_id: int) -> int:
    return int(await value(engine, "SELECT count(*) FROM contacts WHERE queue_id = :q", q=queue_id))


class TestTransfersAreAdmissions:
    async def test_a_transfer_into_a_full_queue_overflows_along_its_chain(self, api: Api) -> None:
        q, spill = await queue(api), await queue(api)
        target = await queue(api, max_length=1, overflow_queue=spill["name"])
        await contact(api, target["name"])
        created = await contact(api, q["name"])

        url = f"/api/v1/contacts/{created['id']}/transfer"
        successor = expect(await api.post(url, {"queue": target["name"]}), 200)

        assert successor["queue"] == spill["name"]
        assert successor["enqueued_at"] == created["enqueued_at"]
        assert successor["deadline_at"] == created["deadline_at"]

    async def test_a_transfer_into_a_full_queue_without_overflow_is_409_and_changes_nothing(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q, target = await queue(api), await queue(api, max_length=1)
        await contact(api, target["name"])
        created = await contact(api, q["name"])
        before = await snapshot(engine)

        response = await api.post(
            f"/api/v1/contacts/{created['id']}/transfer", {"queue": target["name"]}
        )

        body = await refused(engine, before, response, 409)
        assert target["name"] in body["detail"]
        assert "full" in body["detail"]
        assert (await status_of(api, created["id"]))["status"] == "queued"

    async def test_the_successor_keeps_tier_customer_and_names_its_parent(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q, other = await queue(api), await queue(api)
        customer = expect(
            await api.post("/api/v1/customers", {"name": "Wang", "tier": "gold"}), 201
        )
        created = await contact(api, q["name"], customer={"id": customer["id"]})

        url = f"/api/v1/contacts/{created['id']}/transfer"
        successor = expect(await api.post(url, {"queue": other["name"]}), 200)

        assert (successor["tier"], successor["customer_id"]) == ("gold", customer["id"])
        [(parent, data, actor)] = await rows(
            engine,
            "SELECT c.parent_id, e.data, e.actor FROM contacts c JOIN events e "
            "ON e.subject_id = c.id::text AND e.type = 'contact.queued' WHERE c.id = :id",
            id=successor["id"],
        )
        assert parent == created["id"]
        assert data["parent_id"] == created["id"]
        assert actor == f"agent:{api.me['id']}"


class TestOverflowsAreAdmissions:
    async def test_max_wait_into_a_full_overflow_follows_the_overflows_chain(
        self, api: Api
    ) -> None:
        last = await queue(api)
        full = await queue(api, max_length=1, overflow_queue=last["name"])
        await contact(api, full["name"])
        q = await queue(api, max_wait_s=0.2, overflow_queue=full["name"])
        created = await contact(api, q["name"])

        original = await timed_out(api, created["id"])

        successor = await status_of(api, original["transferred_to"])
        assert successor["queue"] == last["name"]
        assert successor["enqueued_at"] == created["enqueued_at"]

    async def test_max_wait_into_a_full_chain_ends_the_contact_without_a_successor(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        full = await queue(api, max_length=1)
        await contact(api, full["name"])
        q = await queue(api, max_wait_s=0.2, overflow_queue=full["name"])
        created = await contact(api, q["name"])

        original = await timed_out(api, created["id"])

        assert original["transferred_to"] is None
        assert await in_queue(engine, full["id"]) == 1

    async def test_an_overflow_never_leads_back_into_the_queue_it_left(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api, max_wait_s=0.2)
        spill = await queue(api, max_length=1, overflow_queue=q["name"])
        await stored_overflow(engine, q, spill)  # a loop stored before loops were refused
        await contact(api, spill["name"])
        created = await contact(api, q["name"])

        original = await timed_out(api, created["id"])

        assert original["transferred_to"] is None
        assert await in_queue(engine, q["id"]) == 1


BURST = 8


async def transfers_held_back(
    api: Api, db: str, target: dict[str, Any], contact_ids: list[int]
) -> list[Response]:
    """Transfers of ``contact_ids`` into ``target`` at once, each held until all of them have
    counted the target (its row is locked, so a successor's foreign key check waits)."""
    conn = await asyncpg.connect(plain_url(db))
    try:
        async with conn.transaction():
            await conn.execute("SELECT FROM queues WHERE id = $1 FOR UPDATE", target["id"])
            posts = [
                asyncio.ensure_future(
                    api.post(f"/api/v1/contacts/{i}/transfer", {"queue": target["name"]})
                )
                for i in contact_ids
            ]

            async def all_waiting() -> bool:
                # Statistics are read once per transaction unless the snapshot is cleared.
                await conn.execute("SELECT pg_stat_clear_snapshot()")
                waiting = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                return bool(waiting >= len(contact_ids))

            await eventually(all_waiting, what="the transfers waiting on a lock")
        return await asyncio.gather(*posts)
    finally:
        await conn.close()


class TestMaxLengthHoldsForTransfers:
    @pytest.fixture
    def settings(self, db: str) -> Settings:
        return make_settings(db, db_pool_size=BURST + 4)

    async def test_concurrent_transfers_into_a_queue_of_one_admit_exactly_one(
        self, api: Api, engine: AsyncEngine, db: str
    ) -> None:
        q, target = await queue(api), await queue(api, max_length=1)
        created = [await contact(api, q["name"]) for _ in range(BURST)]

        responses = await transfers_held_back(api, db, target, [c["id"] for c in created])

        assert sorted(r.status_code for r in responses) == [200] + [409] * (BURST - 1)
        live = await value(
            engine,
            "SELECT count(*) FROM contacts WHERE queue_id = :q AND status IN ('queued', 'offered')",
            q=target["id"],
        )
        assert live == 1


class TestSystemCallers:
    async def test_a_system_caller_admits_without_a_token_and_is_the_events_actor(
        self, app: FastAPI, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)
        ivr = SystemCaller("ivr")

        queued = await admission.admit(
            app.state.db_pool,
            caller=ivr,
            admission=Admission(channel="voice", queue=q["name"], phone="+8613912345678"),
            key=None,
            settings=app.state.settings,
        )

        assert isinstance(queued, Queued)
        [(caller, actor)] = await rows(
            engine,
            "SELECT c.caller, e.actor FROM contacts c JOIN events e ON e.subject_id = c.id::text "
            "WHERE c.id = :id AND e.type = 'contact.queued'",
            id=queued.contact["id"],
        )
        assert (caller, actor) == ("+8613912345678", "ivr")

    async def test_a_system_callers_keys_are_its_own(self, app: FastAPI, api: Api) -> None:
        q = await queue(api)
        key = unique("call-")
        request = Admission(channel="voice", queue=q["name"])

        async def admit(caller: str) -> Queued | Retried:
            return await admission.admit(
                app.state.db_pool,
                caller=SystemCaller(caller),
                admission=request,
                key=key,
                settings=app.state.settings,
            )

        first, retry, other = await admit("ivr"), await admit("ivr"), await admit("web")

        assert isinstance(first, Queued)
        assert isinstance(other, Queued)
        assert retry == Retried(first.contact["id"])
        assert other.contact["id"] != first.contact["id"]


class TestAdmissionInASession:
    """The statement is planned once per connection in a session's transaction too, as on
    the driver pool: PostgreSQL would otherwise plan it afresh at every admission, which
    costs more than running it."""

    async def test_repeated_admissions_reuse_one_plan_and_leave_the_sessions_planning_alone(
        self, app: FastAPI, api: Api, db: str
    ) -> None:
        q = await queue(api)
        engine = create_engine(db, pool_size=1)
        sessions = create_sessionmaker(engine)
        try:
            async with sessions() as session:
                for n in range(8):  # past the 5 custom plans PostgreSQL tries before choosing
                    await admission.queue_within(
                        session,
                        caller=SystemCaller("ivr"),
                        admission=Admission(channel="voice", queue=q["name"], subject=f"#{n}"),
                        settings=app.state.settings,
                    )
                conn = await driver_connection(session)
                mode = await conn.fetchval("SHOW plan_cache_mode")
                generic, custom = await conn.fetchrow(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                    " WHERE statement = $1",
                    STATEMENT,
                )
                await session.rollback()
        finally:
            await engine.dispose()

        assert (generic, custom) == (8, 0)
        assert mode == "auto"  # the session's other statements keep PostgreSQL's choice
