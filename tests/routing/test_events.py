"""Every state change of a contact, an offer or an agent writes its event, in order.

Each test takes the head of the log (``GET /api/v1/events``) before acting, acts through
the API, and reads back what happened after that cursor, as a supervisor's wallboard would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.fixtures.factories import Api, expect
from tests.routing.acd import available_agent, contact, offer_for, queue

Events = list[dict[str, Any]]


def life_of(events: Events, contact_id: int) -> list[str]:
    """The contact's and its offers' events, in log order."""
    return [
        e["type"]
        for e in events
        if e["subject"]["type"] in ("contact", "offer") and e["data"]["contact_id"] == contact_id
    ]


def states_of(events: Events, agent_id: int) -> list[str]:
    return [
        e["data"]["state"]
        for e in events
        if e["type"] == "agent.state_changed" and e["subject"]["id"] == str(agent_id)
    ]


def seen(event_type: str, contact_id: int) -> Callable[[Events], bool]:
    def done(events: Events) -> bool:
        return any(
            e["type"] == event_type and e["data"].get("contact_id") == contact_id for e in events
        )

    return done


def the(events: Events, event_type: str, contact_id: int) -> dict[str, Any]:
    return next(
        e for e in events if e["type"] == event_type and e["data"].get("contact_id") == contact_id
    )


class TestContactEvents:
    async def test_answered_contact_writes_each_step_from_queued_to_completed(
        self, api: Api
    ) -> None:
        q = await queue(api, wrap_up_s=30)
        console = await available_agent(api)
        agent_id = console.me["id"]
        cursor = await api.event_cursor()

        created = await contact(api, q["name"])
        offer = await offer_for(console, created["id"])
        expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
        body = {"disposition": "resolved"}
        expect(await console.post(f"/api/v1/contacts/{created['id']}/complete", body), 200)
        expect(await console.post(f"/api/v1/agents/{agent_id}/wrap-up/done"), 200)

        events = await api.events_until(cursor, seen("contact.completed", created["id"]))
        assert life_of(events, created["id"]) == [
            "contact.queued",
            "offer.created",
            "offer.accepted",
            "contact.connected",
            "contact.wrap_up",
            "contact.completed",
        ]
        assert states_of(events, agent_id) == ["offered", "busy", "wrap_up", "idle"]
        made = the(events, "offer.created", created["id"])
        assert made["data"]["offer_id"] == offer["id"]
        assert made["data"]["agent_id"] == agent_id
        assert made["data"]["reason"]["strategy"] == "longest_idle"
        assert the(events, "contact.queued", created["id"])["data"]["queue_id"] == q["id"]
        assert the(events, "contact.completed", created["id"])["data"]["disposition"] == "resolved"
        by_agent = f"agent:{agent_id}"
        for done_by_the_agent in ("offer.accepted", "contact.connected", "contact.wrap_up"):
            assert the(events, done_by_the_agent, created["id"])["actor"] == by_agent
        assert the(events, "contact.completed", created["id"])["actor"] == by_agent
        assert made["actor"] == "system", "the dispatcher made the offer"

    async def test_rejected_offer_writes_offer_rejected_and_the_contact_goes_back(
        self, api: Api
    ) -> None:
        q = await queue(api, reject_delay_s=600)
        first = await available_agent(api)
        cursor = await api.event_cursor()
        created = await contact(api, q["name"])
        offer = await offer_for(first, created["id"])
        second = await available_agent(api)

        expect(await first.post(f"/api/v1/offers/{offer['id']}/reject"), 200)
        again = await offer_for(second, created["id"])

        events = await api.events_until(
            cursor, lambda evs: life_of(evs, created["id"]).count("offer.created") == 2
        )
        assert life_of(events, created["id"]) == [
            "contact.queued",
            "offer.created",
            "offer.rejected",
            "contact.requeued",
            "offer.created",
        ]
        assert the(events, "offer.rejected", created["id"])["data"]["offer_id"] == offer["id"]
        assert the(events, "contact.requeued", created["id"])["data"]["cause"] == "rejected"
        by_first = f"agent:{first.me['id']}"
        assert the(events, "offer.rejected", created["id"])["actor"] == by_first
        assert the(events, "contact.requeued", created["id"])["actor"] == by_first
        assert states_of(events, first.me["id"]) == ["offered", "idle"]
        assert states_of(events, second.me["id"]) == ["offered"]
        assert again["id"] != offer["id"]

    async def test_unanswered_offer_writes_offer_expired(self, api: Api) -> None:
        q = await queue(api, ring_timeout_s=0.3, no_answer_delay_s=600)
        console = await available_agent(api)
        cursor = await api.event_cursor()
        created = await contact(api, q["name"])
        offer = await offer_for(console, created["id"])

        events = await api.events_until(cursor, seen("contact.requeued", created["id"]))

        assert life_of(events, created["id"]) == [
            "contact.queued",
            "offer.created",
            "offer.expired",
            "contact.requeued",
        ]
        assert the(events, "offer.expired", created["id"])["data"]["offer_id"] == offer["id"]
        assert the(events, "contact.requeued", created["id"])["data"]["cause"] == "no_answer"
        assert states_of(events, console.me["id"]) == ["offered", "idle"]

    async def test_contact_abandoned_while_ringing_writes_rescind_and_abandon(
        self, api: Api
    ) -> None:
        q = await queue(api)
        console = await available_agent(api)
        cursor = await api.event_cursor()
        created = await contact(api, q["name"])
        await offer_for(console, created["id"])

        expect(await api.post(f"/api/v1/contacts/{created['id']}/abandon"), 200)

        events = await api.events_until(cursor, seen("contact.abandoned", created["id"]))
        assert life_of(events, created["id"]) == [
            "contact.queued",
            "offer.created",
            "offer.rescinded",
            "contact.abandoned",
        ]
        assert the(events, "contact.abandoned", created["id"])["data"]["short"] is True
        assert states_of(events, console.me["id"]) == ["offered", "idle"]

    async def test_transfer_writes_contact_transferred_and_queues_its_successor(
        self, api: Api
    ) -> None:
        q, other = await queue(api), await queue(api)
        console = await available_agent(api)
        cursor = await api.event_cursor()
        created = await contact(api, q["name"])
        offer = await offer_for(console, created["id"])
        expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)

        url = f"/api/v1/contacts/{created['id']}/transfer"
        successor = expect(await console.post(url, {"queue": other["name"]}), 200)

        events = await api.events_until(cursor, seen("offer.created", successor["id"]))
        assert life_of(events, created["id"]) == [
            "contact.queued",
            "offer.created",
            "offer.accepted",
            "contact.connected",
            "contact.transferred",
        ]
        moved = the(events, "contact.transferred", created["id"])["data"]
        assert moved["to_contact_id"] == successor["id"]
        assert moved["to_queue_id"] == other["id"]
        assert life_of(events, successor["id"])[:2] == ["contact.queued", "offer.created"]
        assert the(events, "contact.queued", successor["id"])["data"]["queue_id"] == other["id"]
        assert states_of(events, console.me["id"])[:3] == ["offered", "busy", "idle"]
        # A new contact's event is written in SQL with the contact, a successor's in Python:
        # clients see one shape.
        fresh = the(events, "contact.queued", created["id"])
        moved_on = the(events, "contact.queued", successor["id"])
        assert sorted(fresh["data"]) == sorted(moved_on["data"])
        assert fresh["data"]["wait_s"] == 0.0

    async def test_max_wait_writes_contact_timed_out(self, api: Api) -> None:
        q = await queue(api, max_wait_s=0.3)
        cursor = await api.event_cursor()
        created = await contact(api, q["name"])

        events = await api.events_until(cursor, seen("contact.timed_out", created["id"]))

        assert life_of(events, created["id"]) == ["contact.queued", "contact.timed_out"]
        ended = the(events, "contact.timed_out", created["id"])["data"]
        assert ended["overflow_contact_id"] is None


class TestAgentEvents:
    async def test_going_away_writes_agent_status_changed(self, api: Api) -> None:
        console = await available_agent(api)
        agent_id = console.me["id"]
        cursor = await api.event_cursor()

        body = {"status": "away", "reason": "lunch"}
        expect(await console.post(f"/api/v1/agents/{agent_id}/status", body), 200)

        # The cursor may come before the agent's own "available" change (the feed's head
        # waits for older open transactions), so look for the move away itself.
        def went_away(event: dict[str, Any]) -> bool:
            return (event["type"], event["data"].get("status")) == ("agent.status_changed", "away")

        events = await api.events_until(cursor, lambda events: any(map(went_away, events)))
        change = next(e for e in events if went_away(e))
        assert change["subject"] == {"type": "agent", "id": str(agent_id)}
        assert change["data"]["reason"] == "lunch"
        assert change["data"]["previous"] == "available"
