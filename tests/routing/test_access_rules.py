"""Regression tests of the access rules on contacts, offers and wrap-up (issue 10).

Finding 4: an agent could read any contact by its id, the subject unmasked and every offer
with its reasons. Finding 7: a supervisor of another site could end an agent's wrap-up,
complete or transfer the agent's contacts and list the agent's offers. Every refusal is
checked to change nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.factories import Api, expect
from tests.routing.acd import available_agent, contact, offer_for, queue
from tests.routing.test_contacts_api import refused, snapshot

SUBJECT = "my card 6222 is lost, call me on 139 1234 5678, ID 110105199001011234"


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


async def held(api: Api, **agent: Any) -> tuple[dict[str, Any], Api, dict[str, Any]]:
    """A contact connected to a new available shanghai agent, with its queue."""
    q = await queue(api, channels=["chat"], wrap_up_s=300)
    console = await available_agent(api, site="shanghai", **agent)
    created = await contact(api, q["name"], subject=SUBJECT)
    offer = await offer_for(console, created["id"])
    expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
    return created, console, q


class TestReadingAContact:
    async def test_agent_never_offered_the_contact_gets_the_404_of_a_missing_one(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        created, _, _ = await held(api)
        stranger = await api.signed_in_as(await api.agent(site="shanghai"))
        missing = await stranger.get("/api/v1/contacts/999999")
        before = await snapshot(engine)

        response = await stranger.get(f"/api/v1/contacts/{created['id']}")

        body = await refused(engine, before, response, 404)
        assert body == {**expect(missing, 404), "detail": f"contact {created['id']} does not exist"}

    async def test_holding_agent_sees_the_subject_masked_and_only_their_offers(
        self, api: Api
    ) -> None:
        created, console, _ = await held(api)

        shown = expect(await console.get(f"/api/v1/contacts/{created['id']}"), 200)

        assert "1234 5678" not in shown["subject"]
        assert "199001011234" not in shown["subject"]
        assert "139" in shown["subject"]
        assert "110105" in shown["subject"]
        assert {o["agent_id"] for o in shown["offers"]} == {console.me["id"]}

    async def test_supervisor_of_the_site_sees_the_subject_in_full(self, api: Api) -> None:
        created, _, _ = await held(api)
        supervisor = await api.signed_in_as(await api.supervisor(site="shanghai"))

        shown = expect(await supervisor.get(f"/api/v1/contacts/{created['id']}"), 200)

        assert shown["subject"] == SUBJECT

    async def test_supervisor_of_another_site_gets_a_404(self, api: Api) -> None:
        created, _, _ = await held(api)
        supervisor = await api.signed_in_as(await api.supervisor(site="beijing"))

        expect(await supervisor.get(f"/api/v1/contacts/{created['id']}"), 404)

    async def test_contact_never_offered_is_seen_by_a_supervisor_of_any_site(
        self, api: Api
    ) -> None:
        q = await queue(api, channels=["chat"])
        created = await contact(api, q["name"])
        supervisor = await api.signed_in_as(await api.supervisor(site="beijing"))

        shown = expect(await supervisor.get(f"/api/v1/contacts/{created['id']}"), 200)

        assert shown["status"] == "queued"


class TestSupervisorOfAnotherSite:
    @pytest.fixture
    async def beijing(self, api: Api) -> Api:
        return await api.signed_in_as(await api.supervisor(site="beijing"))

    async def test_cannot_complete_the_agents_contact(
        self, api: Api, beijing: Api, engine: AsyncEngine
    ) -> None:
        created, _, _ = await held(api)
        before = await snapshot(engine)

        response = await beijing.post(f"/api/v1/contacts/{created['id']}/complete", {})

        await refused(engine, before, response, 403)

    async def test_cannot_transfer_the_agents_contact(
        self, api: Api, beijing: Api, engine: AsyncEngine
    ) -> None:
        created, _, _ = await held(api)
        other = await queue(api, channels=["chat"])
        before = await snapshot(engine)

        response = await beijing.post(
            f"/api/v1/contacts/{created['id']}/transfer", {"queue": other["name"]}
        )

        await refused(engine, before, response, 403)

    async def test_cannot_end_the_agents_wrap_up(
        self, api: Api, beijing: Api, engine: AsyncEngine
    ) -> None:
        created, console, _ = await held(api)
        expect(await console.post(f"/api/v1/contacts/{created['id']}/complete", {}), 200)
        before = await snapshot(engine)

        response = await beijing.post(f"/api/v1/agents/{console.me['id']}/wrap-up/done")

        await refused(engine, before, response, 403)

    async def test_cannot_list_the_agents_offers(self, api: Api, beijing: Api) -> None:
        _, console, _ = await held(api)

        response = await beijing.get("/api/v1/offers", params={"agent": console.me["id"]})

        expect(response, 403)


class TestSupervisorOfTheSite:
    async def test_ends_the_agents_wrap_up_and_lists_the_agents_offers(self, api: Api) -> None:
        created, console, _ = await held(api)
        shanghai = await api.signed_in_as(await api.supervisor(site="shanghai"))
        expect(await shanghai.post(f"/api/v1/contacts/{created['id']}/complete", {}), 200)

        done = await shanghai.post(f"/api/v1/agents/{console.me['id']}/wrap-up/done")
        offers = await shanghai.get(
            "/api/v1/offers", params={"agent": console.me["id"], "status": "accepted"}
        )

        assert expect(done, 200) == {"completed": 1}
        assert [o["contact_id"] for o in expect(offers, 200)["items"]] == [created["id"]]


class TestContactCreatedByPhoneIsNoLookup:
    """An agent's contact created with a phone number must not say whether the number is a
    customer's (that is the rate-limited, recorded ``GET /customers?phone=``)."""

    async def test_the_answer_hides_the_match_from_an_agent_and_shows_it_to_a_supervisor(
        self, api: Api
    ) -> None:
        q = await queue(api, channels=["chat"])
        vip = expect(
            await api.post(
                "/api/v1/customers", {"name": "VIP", "phone": "13912345678", "tier": "platinum"}
            ),
            201,
        )
        agent = await api.signed_in_as(await api.agent())
        supervisor = await api.signed_in_as(await api.supervisor())
        body = {"channel": "chat", "queue": q["name"], "customer": {"phone": "139 1234 5678"}}
        key = {"Idempotency-Key": "by-phone-1"}

        shown = expect(await agent.post("/api/v1/contacts", body, headers=key), 201)
        again = expect(await agent.post("/api/v1/contacts", body, headers=key), 201)
        seen = expect(await supervisor.post("/api/v1/contacts", body), 201)

        assert (shown["customer_id"], shown["tier"]) == (None, None)
        assert (again["customer_id"], again["tier"]) == (None, None)
        assert (seen["customer_id"], seen["tier"]) == (vip["id"], "platinum")
