"""The relationship-manager window through the API and the running dispatcher: a contact
waits for the customer's manager while the manager is present (busy or in wrap-up
included), and goes to another agent at once when the manager is away, offline or
deactivated, including when they leave while the contact waits.

The platinum window and the dispatcher's safety tick here are ten minutes each, while
every wait below gives up after half a minute: a contact offered to another agent was not
released by the window closing, nor found by a tick, but by the rule and by the wake-up of
the manager's leaving.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.config import Settings, default_tiers
from tests.conftest import make_settings
from tests.fixtures.factories import ADMIN_PASSWORD, Api, expect
from tests.fixtures.polling import eventually
from tests.routing.acd import (
    NotedRound,
    available_agent,
    contact,
    instance,
    note_rounds,
    offer_for,
    pending_offers,
    queue,
)
from tests.routing.test_affinity import leave

WINDOW_S = 600.0
TICK_S = 600.0
WITHIN_S = 30.0  # every wait: far inside the window and the tick


@pytest.fixture
def settings(db: str) -> Settings:
    tiers = {name: tier.model_dump() for name, tier in default_tiers().items()}
    tiers["platinum"]["rm_affinity_s"] = WINDOW_S
    return make_settings(db, tiers=tiers, dispatch_tick_s=TICK_S)


@pytest.fixture
def noted(monkeypatch: pytest.MonkeyPatch) -> list[NotedRound]:
    """The dispatcher's rounds, in order."""
    return note_rounds(monkeypatch)


@pytest.fixture
async def api(settings: Settings, noted: list[NotedRound]) -> AsyncIterator[Api]:
    """The admin of a running centre (its dispatcher on, its rounds noted from the first)
    with the long window."""
    assert settings.tiers["platinum"].rm_affinity_s == WINDOW_S
    async with instance(settings) as (_, client):
        yield await Api.signed_in(client, "admin", ADMIN_PASSWORD)


async def managed_customer(api: Api, manager: Api) -> int:
    customer = await api.customer(tier="platinum", relationship_manager_id=manager.me["id"])
    return int(customer["id"])


async def status_of(api: Api, contact_id: int) -> str:
    return str(expect(await api.get(f"/api/v1/contacts/{contact_id}"), 200)["status"])


LEAVING = ["away", "offline", "deactivated"]


class TestAnAbsentManagerHoldsNothing:
    @pytest.mark.parametrize("how", LEAVING)
    async def test_the_contact_is_offered_to_another_agent_long_before_the_window_closes(
        self, api: Api, how: str
    ) -> None:
        q = await queue(api)
        manager = await available_agent(api)
        customer = await managed_customer(api, manager)
        await leave(api, manager, how)
        other = await available_agent(api)

        created = await contact(api, q["name"], customer={"id": customer})
        offer = await offer_for(other, created["id"], within=WITHIN_S)

        assert created["tier"] == "platinum"
        assert (offer["reason"]["agent_id"], offer["reason"]["affinity"]) == (
            other.me["id"],
            None,
        )


async def manager_busy(api: Api, q: dict[str, Any], *, wrap_up: bool) -> tuple[Api, dict[str, Any]]:
    """An available manager with room for one chat, connected to a contact (at capacity),
    or done with it and in wrap-up: present, but to be offered nothing now. Returns (the
    manager, their contact)."""
    manager = await available_agent(api, capacity={"chat": 1})
    first = await contact(api, q["name"])
    offer = await offer_for(manager, first["id"], within=WITHIN_S)
    expect(await manager.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
    if wrap_up:
        path = f"/api/v1/contacts/{first['id']}/complete"
        expect(await manager.post(path, {"disposition": "resolved"}), 200)
    return manager, first


async def held_while_others_are_served(
    api: Api, q: dict[str, Any], manager: Api, noted: list[NotedRound]
) -> tuple[Api, dict[str, Any]]:
    """Another agent with room for two chats; the manager's customer calls, then a caller
    without a manager (a later deadline). The other agent is offered the second caller only:
    the round that offered it saw the first, ahead of it in order, and held it for the
    manager. Returns, once a later round has made no offer (the dispatcher then waits to
    be woken), the other agent and the held contact."""
    other = await available_agent(api, capacity={"chat": 2})
    customer = await managed_customer(api, manager)
    held = await contact(api, q["name"], customer={"id": customer})
    witness = await contact(api, q["name"])

    offer = await offer_for(other, witness["id"], within=WITHIN_S)

    assert [o["contact_id"] for o in await pending_offers(other)] == [witness["id"]]
    assert await status_of(api, held["id"]) == "queued"

    async def settled() -> bool:
        made = next((k for k, r in enumerate(noted) if offer["id"] in r.offer_ids), None)
        return made is not None and any(not r.offer_ids for r in noted[made + 1 :])

    await eventually(settled, within=WITHIN_S, what="a round after the offer that made none")
    assert await status_of(api, held["id"]) == "queued"
    return other, held


class TestAManagerWhoLeavesReleasesTheContact:
    @pytest.mark.parametrize("how", LEAVING)
    async def test_a_contact_held_for_a_busy_manager_goes_to_another_agent_when_they_leave(
        self, api: Api, noted: list[NotedRound], how: str
    ) -> None:
        q = await queue(api)
        manager, _ = await manager_busy(api, q, wrap_up=False)
        other, held = await held_while_others_are_served(api, q, manager, noted)

        await leave(api, manager, how)
        offer = await offer_for(other, held["id"], within=WITHIN_S)

        assert (offer["reason"]["agent_id"], offer["reason"]["affinity"]) == (
            other.me["id"],
            None,
        )

    async def test_a_manager_in_wrap_up_holds_the_contact_until_they_go_offline(
        self, api: Api, noted: list[NotedRound]
    ) -> None:
        q = await queue(api, wrap_up_s=int(WINDOW_S))
        manager, _ = await manager_busy(api, q, wrap_up=True)
        other, held = await held_while_others_are_served(api, q, manager, noted)

        await leave(api, manager, "offline")
        offer = await offer_for(other, held["id"], within=WITHIN_S)

        assert offer["reason"]["affinity"] is None

    async def test_a_busy_manager_who_stays_is_offered_the_contact_once_they_have_room(
        self, api: Api, noted: list[NotedRound]
    ) -> None:
        q = await queue(api)
        manager, connected = await manager_busy(api, q, wrap_up=False)
        other, held = await held_while_others_are_served(api, q, manager, noted)

        path = f"/api/v1/contacts/{connected['id']}/complete"
        expect(await manager.post(path, {"disposition": "resolved"}), 200)
        offer = await offer_for(manager, held["id"], within=WITHIN_S)

        assert offer["reason"]["affinity"] == "relationship_manager"
        assert held["id"] not in [o["contact_id"] for o in await pending_offers(other)]
