"""Offers are leases: whatever happens to their timers or their agent, they end.

Through the API with a real dispatcher and timer worker; the lease sweep runs every 0.2 s
with a 0.1 s grace, so "within the bound" is ring timeout + 0.3 s (polled with a deadline).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db import db_now
from app.routing import handlers
from app.routing.handlers import LEASE_SWEEP
from app.routing.offers import OFFER_EXPIRE
from tests.conftest import make_settings
from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually
from tests.routing.acd import (
    assert_invariants,
    available_agent,
    contact,
    offer_for,
    queue,
    rows,
    value,
)

SWEEP_S, GRACE_S = 0.2, 0.1


@pytest.fixture
def settings(db: str) -> Settings:
    return make_settings(db, lease_sweep_s=SWEEP_S, lease_grace_s=GRACE_S)


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    engine: AsyncEngine = app.state.engine
    return engine


async def change(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    """Run a data-changing statement and commit it; the rows it returns."""
    async with engine.begin() as conn:
        result = await conn.execute(text(sql), params)
        return list(result.all()) if result.returns_rows else []


async def contact_in(api: Api, contact_id: int, *statuses: str) -> dict[str, Any] | None:
    shown: dict[str, Any] = expect(await api.get(f"/api/v1/contacts/{contact_id}"), 200)
    return shown if shown["status"] in statuses else None


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def scraped(api: Api, counter: str, label: str, value: str) -> float:
    """The counter's value for ``label="value"`` on /metrics, as operators read it (0 while
    it has no sample: nothing counted yet)."""
    lines = (await api.client.get("/metrics")).text.splitlines()
    found = [line for line in lines if line.startswith(f'{counter}{{{label}="{value}"}}')]
    assert len(found) <= 1, found
    return float(found[0].split()[-1]) if found else 0.0


class TestMaxWaitWhileRinging:
    async def test_max_wait_falling_while_the_contact_rings_still_overflows_it_after_the_offer(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        spill = await queue(api)
        q = await queue(
            api,
            ring_timeout_s=2,
            no_answer_delay_s=600,
            max_wait_s=600,
            overflow_queue=spill["name"],
        )
        console = await available_agent(api)
        created = await contact(api, q["name"])
        await offer_for(console, created["id"])
        # The max wait falls now, while the offer rings.
        [(fell_at,)] = await change(
            engine,
            "UPDATE timers SET due_at = now() WHERE kind = 'contact.max_wait' "
            "AND subject = :id RETURNING due_at",
            id=str(created["id"]),
        )

        async def fired() -> bool:
            left = await value(
                engine,
                "SELECT count(*) FROM timers WHERE kind = 'contact.max_wait' "
                "AND subject = :id AND due_at <= :fell_at",
                id=str(created["id"]),
                fell_at=fell_at,
            )
            return int(left) == 0

        await eventually(fired, what="the max-wait timer to fire")
        assert await contact_in(api, created["id"], "offered"), "it fell while the offer rang"

        # Nobody answers; the contact is back in the queue and must still overflow.
        ended = await eventually(
            lambda: contact_in(api, created["id"], "timed_out"),
            within=15,
            what="the contact to time out after the missed offer",
        )
        assert [o["status"] for o in ended["offers"]] == ["expired"]
        successor = expect(await api.get(f"/api/v1/contacts/{ended['transferred_to']}"), 200)
        assert successor["queue"] == spill["name"]
        await assert_invariants(engine)


class TestDeactivation:
    async def test_deactivating_an_agent_whose_offer_rings_takes_the_offer_back(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api, ring_timeout_s=600, max_no_answer=1)
        console = await available_agent(api)
        created = await contact(api, q["name"])
        offer = await offer_for(console, created["id"])

        changed = expect(
            await api.patch(f"/api/v1/agents/{console.me['id']}", {"active": False}), 200
        )
        assert changed["active"] is False
        assert changed["status"] == "offline", "a deactivated agent is out of routing"

        back = await eventually(
            lambda: contact_in(api, created["id"], "queued"),
            what="the ringing offer to be taken back",
        )
        assert [(o["id"], o["status"]) for o in back["offers"]] == [(offer["id"], "rescinded")]
        agent = expect(await api.get(f"/api/v1/agents/{console.me['id']}"), 200)
        assert (agent["status"], agent["state"]) == ("offline", "idle")
        await assert_invariants(engine)

        # The contact goes to someone who may take it.
        other = await available_agent(api)
        await offer_for(other, created["id"])

    async def test_offer_of_an_agent_deactivated_in_the_database_still_expires(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        # Rows deactivated before deactivation took agents offline: inactive yet available.
        q = await queue(api, ring_timeout_s=0.5, no_answer_delay_s=600, max_no_answer=1)
        console = await available_agent(api)
        created = await contact(api, q["name"])
        offer = await offer_for(console, created["id"])
        await change(engine, "UPDATE agents SET active = false WHERE id = :id", id=console.me["id"])

        back = await eventually(
            lambda: contact_in(api, created["id"], "queued"),
            what="the offer to expire at its ring timeout",
        )
        assert [(o["id"], o["status"]) for o in back["offers"]] == [(offer["id"], "expired")]
        failed = await value(engine, "SELECT count(*) FROM timers WHERE failed_at IS NOT NULL")
        assert failed == 0
        await assert_invariants(engine)


class TestLeaseSweep:
    @pytest.mark.parametrize("lost", ["deleted", "failed"])
    async def test_offer_whose_ring_timer_is_lost_is_expired_by_the_sweep(
        self, api: Api, engine: AsyncEngine, lost: str
    ) -> None:
        q = await queue(api, ring_timeout_s=1, no_answer_delay_s=600)
        console = await available_agent(api)
        created = await contact(api, q["name"])
        offer = await offer_for(console, created["id"])
        lose = {
            "deleted": "DELETE FROM timers",
            "failed": "UPDATE timers SET failed_at = now(), attempts = 5",
        }[lost]
        touched = await change(
            engine,
            f"{lose} WHERE kind = 'offer.expire' AND subject = :id RETURNING id",
            id=str(offer["id"]),
        )
        assert len(touched) == 1, "the timer had not fired yet"

        back = await eventually(
            lambda: contact_in(api, created["id"], "queued"),
            within=1 + GRACE_S + SWEEP_S + 10,
            what="the sweep to expire the lease",
        )
        [expired] = back["offers"]
        assert expired["status"] == "expired"
        late = (at(expired["decided_at"]) - at(expired["expires_at"])).total_seconds()
        assert late >= GRACE_S, "the sweep leaves a lease its grace before acting"

        # What the backstop did shows on /metrics (counted once its commit has returned).
        async def reconciled() -> float:
            return await scraped(api, "hotline_sweeps_reconciled_total", "sweep", LEASE_SWEEP)

        assert await eventually(reconciled, what="the sweep's work on /metrics") == 1
        me = expect(await console.get("/api/v1/agents/me"), 200)
        assert me["state"] == "idle"
        await assert_invariants(engine)


class TestConcurrentSweeps:
    @pytest.fixture
    def settings(self, db: str) -> Settings:
        # The instance's own sweep runs once at start and then keeps out of the way.
        return make_settings(db, lease_sweep_s=3600, lease_grace_s=GRACE_S)

    async def test_a_sweep_leaves_a_lease_another_sweep_holds_without_waiting(
        self, api: Api, app: FastAPI, engine: AsyncEngine
    ) -> None:
        q = await queue(api, ring_timeout_s=0.2, no_answer_delay_s=600)
        console = await available_agent(api)
        created = await contact(api, q["name"])
        offer = await offer_for(console, created["id"])
        lost = await change(
            engine,
            "DELETE FROM timers WHERE kind = 'offer.expire' AND subject = :id RETURNING id",
            id=str(offer["id"]),
        )
        assert len(lost) == 1, "the timer had not fired yet"
        await eventually(
            lambda: value(
                engine,
                "SELECT now() > expires_at + make_interval(secs => :grace) FROM offers "
                "WHERE id = :id",
                id=offer["id"],
                grace=GRACE_S,
            ),
            what="the lease to be overdue",
        )
        sweep = handlers.lease_sweep(timedelta(seconds=GRACE_S))
        sessionmaker = app.state.sessionmaker
        async with sessionmaker() as first, sessionmaker() as second:
            assert await sweep(first, await db_now(first)) == 1
            # The first sweep holds the rows until it commits: the second leaves them.
            assert await asyncio.wait_for(sweep(second, await db_now(second)), 10) == 0
            await second.rollback()
            await first.commit()
            assert await sweep(second, await db_now(second)) == 0, "expired once"
            await second.commit()
        shown = expect(await api.get(f"/api/v1/contacts/{created['id']}"), 200)
        assert [o["status"] for o in shown["offers"]] == ["expired"]
        assert shown["status"] == "queued"
        await assert_invariants(engine)

    async def test_a_sweep_commits_each_expiry_before_it_locks_the_next(
        self, api: Api, app: FastAPI, engine: AsyncEngine
    ) -> None:
        q = await queue(api, ring_timeout_s=0.2, no_answer_delay_s=600)
        console = await available_agent(api)  # two chat contacts at once
        made = [await contact(api, q["name"]) for _ in range(2)]
        offers = [await offer_for(console, c["id"]) for c in made]
        ids = [o["id"] for o in offers]
        lost = await change(
            engine,
            "DELETE FROM timers WHERE kind = 'offer.expire' AND subject = ANY(:ids) RETURNING id",
            ids=[str(i) for i in ids],
        )
        assert len(lost) == 2, "the timers had not fired yet"
        await eventually(
            lambda: value(
                engine,
                "SELECT bool_and(now() > expires_at + make_interval(secs => :grace))"
                " FROM offers WHERE id = ANY(:ids)",
                ids=ids,
                grace=GRACE_S,
            ),
            what="both leases to be overdue",
        )
        first, last = sorted(
            ids, key=lambda i: next((o["expires_at"], i) for o in offers if o["id"] == i)
        )
        sweep = handlers.lease_sweep(timedelta(seconds=GRACE_S))
        async with app.state.sessionmaker() as session:
            assert await sweep(session, await db_now(session)) == 2
            # Before the sweep's own unit of work commits, the first expiry stands for
            # everyone else; only the last is still the sweep's.
            seen = dict(
                await rows(engine, "SELECT id, status FROM offers WHERE id = ANY(:ids)", ids=ids)
            )
            assert seen == {first: "expired", last: "pending"}
            await session.commit()
        seen = dict(
            await rows(engine, "SELECT id, status FROM offers WHERE id = ANY(:ids)", ids=ids)
        )
        assert seen == {first: "expired", last: "expired"}
        await assert_invariants(engine)


class TestHeldRows:
    async def test_a_ring_timeout_whose_contact_is_held_keeps_its_due_time_and_ends_once_free(
        self, api: Api, app: FastAPI, engine: AsyncEngine
    ) -> None:
        """The handler finds the contact held (a request on it, say) and leaves it without
        waiting; the timer is not set again for later (behind every timer due meanwhile)
        but keeps its due time, and the offer ends as soon as the contact is free."""
        q = await queue(api, ring_timeout_s=0.3, no_answer_delay_s=600)
        console = await available_agent(api)
        created = await contact(api, q["name"])
        offer = await offer_for(console, created["id"])
        timer = "SELECT due_at FROM timers WHERE kind = 'offer.expire' AND subject = :id"
        due = await value(engine, timer, id=str(offer["id"]))
        assert due is not None, "the timer had not fired yet"
        worker = app.state.timer_worker
        held_before = worker.found_held[OFFER_EXPIRE]

        async def tried_twice() -> bool:
            return bool(worker.found_held[OFFER_EXPIRE] >= held_before + 2)

        async with engine.connect() as holder:
            await holder.execute(
                text("SELECT id FROM contacts WHERE id = :id FOR UPDATE"), {"id": created["id"]}
            )
            await eventually(
                tried_twice, what="the ring timeout to be tried twice and find the contact held"
            )
            assert await value(engine, timer, id=str(offer["id"])) == due
            shown = expect(await api.get(f"/api/v1/contacts/{created['id']}"), 200)
            assert [o["status"] for o in shown["offers"]] == ["pending"]
            # Operators see it too: the count, by kind, on /metrics.
            found = await scraped(api, "hotline_timers_found_held_total", "kind", OFFER_EXPIRE)
            assert found >= held_before + 2
            await holder.rollback()
        await eventually(
            lambda: contact_in(api, created["id"], "queued"),
            what="the offer to end once the contact is free",
        )
        await assert_invariants(engine)


class TestGoingAway:
    async def test_going_away_while_an_offer_rings_takes_the_offer_back(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api, ring_timeout_s=600)
        console = await available_agent(api)
        created = await contact(api, q["name"])
        offer = await offer_for(console, created["id"])

        away = {"status": "away", "reason": "break"}
        expect(await console.post(f"/api/v1/agents/{console.me['id']}/status", away), 200)

        back = await eventually(
            lambda: contact_in(api, created["id"], "queued"),
            what="the ringing offer to be taken back",
        )
        assert [(o["id"], o["status"]) for o in back["offers"]] == [(offer["id"], "rescinded")]
        await assert_invariants(engine)

    async def test_agent_set_away_for_a_missed_offer_has_its_other_ringing_offer_taken_back(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        slow = await queue(api, ring_timeout_s=600)
        quick = await queue(api, ring_timeout_s=2, no_answer_delay_s=600, max_no_answer=1)
        console = await available_agent(api)  # two chat contacts at once
        kept = await contact(api, slow["name"])
        kept_offer = await offer_for(console, kept["id"])
        missed = await contact(api, quick["name"])
        await offer_for(console, missed["id"])

        back = await eventually(
            lambda: contact_in(api, kept["id"], "queued"),
            what="the other ringing offer to be taken back",
        )
        assert [(o["id"], o["status"]) for o in back["offers"]] == [(kept_offer["id"], "rescinded")]
        me = expect(await console.get("/api/v1/agents/me"), 200)
        assert (me["status"], me["status_reason"]) == ("away", "no_answer")
        await assert_invariants(engine)
