"""Every event in the log is declared: its name in a domain's enum, its payload of the type
the domain declares for it (``app.routing.events``, ``app.agents.events``), the payloads
built in SQL (the admission's ``contact.queued``, the round's ``offer.created`` and
``agent.state_changed``) as much as those built in Python.

One scenario makes every declared event happen through the API; then each logged payload is
validated against its type (no key missing, none extra, every value of its type).
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.agents import api_keys
from app.agents import events as agent_events
from app.complaints import events as complaint_events
from app.routing import events as routing_events
from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually
from tests.routing.acd import available_agent, contact, offer_for, queue, rows

DECLARED: dict[str, type[Any]] = {
    **routing_events.PAYLOADS,
    **agent_events.PAYLOADS,
    **api_keys.PAYLOADS,
}
ADAPTERS = {name: TypeAdapter(payload) for name, payload in DECLARED.items()}
# The complaint desk's approval events, made to happen by a scenario of their own.
APPROVAL_EVENTS = {
    name: TypeAdapter(payload)
    for name, payload in complaint_events.PAYLOADS.items()
    if name.startswith("complaint.approval_")
}


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


async def logged(engine: AsyncEngine) -> list[tuple[int, str, dict[str, Any]]]:
    found = await rows(engine, "SELECT id, type, data FROM events ORDER BY id")
    return [(int(i), str(t), dict(d)) for i, t, d in found]


def undeclared(events: list[tuple[int, str, dict[str, Any]]]) -> list[str]:
    """Each event whose name or payload the domains do not declare, with the reason."""
    problems = []
    for event_id, type_, data in events:
        adapter = ADAPTERS.get(type_)
        if adapter is None:
            problems.append(f"{event_id} {type_}: not declared")
            continue
        try:
            adapter.validate_python(data)
        except ValidationError as exc:
            problems.append(f"{event_id} {type_}: {exc.errors()}")
    return problems


async def every_event_happens(api: Api, engine: AsyncEngine) -> None:
    """Make each declared event happen at least once."""
    q = await queue(api, wrap_up_s=30)
    console = await available_agent(api)
    me = console.me["id"]

    # offered, rejected and requeued; offered again, accepted, wrap-up, completed.
    handled = await contact(api, q["name"])
    offer = await offer_for(console, handled["id"])
    expect(await console.post(f"/api/v1/offers/{offer['id']}/reject"), 200)
    offer = await offer_for(console, handled["id"])
    expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
    done = {"disposition": "resolved", "notes": "ok"}
    expect(await console.post(f"/api/v1/contacts/{handled['id']}/complete", done), 200)
    expect(await console.post(f"/api/v1/agents/{me}/wrap-up/done"), 200)

    # rescinded: the agent goes away while a contact rings at it.
    ringing = await contact(api, q["name"])
    await offer_for(console, ringing["id"])
    expect(
        await console.post(f"/api/v1/agents/{me}/status", {"status": "away", "reason": "break"}),
        200,
    )

    # expired: nobody answers within the ring timeout.
    quick = await queue(api, ring_timeout_s=0.2)
    other = await available_agent(api)
    unanswered = await contact(api, quick["name"])
    await offer_for(other, unanswered["id"])
    await eventually(lambda: _seen(engine, "offer.expired"), what="an offer expiring")
    expect(
        await other.post(
            f"/api/v1/agents/{other.me['id']}/status", {"status": "away", "reason": "break"}
        ),
        200,
    )

    # transferred (a successor queued with its parent), abandoned, canceled, timed out.
    idle = await queue(api)
    moved = await contact(api, idle["name"])
    expect(await api.post(f"/api/v1/contacts/{moved['id']}/transfer", {"queue": q["name"]}), 200)
    expect(await api.post(f"/api/v1/contacts/{ringing['id']}/abandon"), 200)
    withdrawn = await contact(api, idle["name"])
    expect(await api.post(f"/api/v1/contacts/{withdrawn['id']}/cancel"), 200)
    expect(await api.patch(f"/api/v1/queues/{idle['id']}", {"max_wait_s": 0.2}), 200)
    await contact(api, idle["name"])
    await eventually(lambda: _seen(engine, "contact.timed_out"), what="a max wait")

    expect(await api.patch(f"/api/v1/agents/{me}", {"team": "night"}), 200)

    key = expect(await api.post("/api/v1/api-keys", {"name": "web"}), 201)
    expect(await api.post(f"/api/v1/api-keys/{key['id']}/revoke"), 200)


async def approval_events_happen(api: Api) -> None:
    """Ask for three approvals on a complaint: one approved, one declined, one withdrawn."""
    boss = await api.signed_in_as(await api.supervisor())
    complaint = {
        "channel": "web",
        "complainant": {"name": "Li Hua", "contact": "li@example.com", "relation": "self"},
        "matter": {
            "occurred_at": "2026-11-30T08:00:00Z",
            "location": "online",
            "branch": "web",
            "description": "charged twice",
        },
        "grounds": "one order, two charges",
        "request": "refund the second charge",
    }
    made = expect(await api.post("/api/v1/complaints", complaint), 201)
    url = f"/api/v1/complaints/{made['id']}/approvals"
    terms = {"kind": "compensation", "amount": "800.00", "reason": "interest lost"}
    for verb, decider in (("approve", boss), ("decline", boss), ("withdraw", api)):
        asked = expect(await api.post(url, terms), 201)
        expect(await decider.post(f"{url}/{asked['id']}/{verb}", {"reason": "checked"}), 200)


async def _seen(engine: AsyncEngine, event_type: str) -> bool:
    return any(type_ == event_type for _, type_, _ in await logged(engine))


class TestDeclaredEvents:
    async def test_every_logged_event_is_declared_and_every_declared_event_is_logged(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        await every_event_happens(api, engine)

        events = await logged(engine)

        assert undeclared(events) == []
        assert set(DECLARED) - {type_ for _, type_, _ in events} == set()

    async def test_every_complaint_approval_event_is_declared_and_logged(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        await approval_events_happen(api)

        events = [(t, d) for _, t, d in await logged(engine) if t.startswith("complaint.approval")]

        for type_, data in events:
            APPROVAL_EVENTS[type_].validate_python(data)
        assert {type_ for type_, _ in events} == set(APPROVAL_EVENTS)

    def test_a_payload_with_a_key_missing_extra_or_mistyped_is_refused(self) -> None:
        queued = {
            "contact_id": 1,
            "queue_id": 2,
            "channel": "chat",
            "tier": "gold",
            "agent_id": None,
            "wait_s": 0.0,
            "customer_id": None,
            "parent_id": None,
            "skills": [{"skill": "billing", "min_level": 3}],
        }
        assert undeclared([(1, "contact.queued", queued)]) == []
        missing = {k: v for k, v in queued.items() if k != "parent_id"}
        extra = {**queued, "position": 3}
        mistyped = {**queued, "queue_id": "two"}
        skill_extra = {**queued, "skills": [{"skill": "billing", "min_level": 3, "x": 1}]}
        for bad in (missing, extra, mistyped, skill_extra):
            assert len(undeclared([(1, "contact.queued", bad)])) == 1
        assert undeclared([(1, "contact.vanished", {})]) == ["1 contact.vanished: not declared"]
