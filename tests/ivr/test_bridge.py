"""Bridging a queued caller to the agent who accepts them: the live call is redirected through
Twilio's REST API (a fake server here) within a second of the answer; the wait loop bridges
the caller itself when the redirect failed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.factories import Api, expect
from tests.ivr import live
from tests.ivr.live import (
    ENDPOINT,
    STRANGER,
    call_of,
    complaints_agent,
    menus_to,
    results,
)
from tests.ivr.telephony import ACCOUNT, HOTLINE, TwilioCall, centre, said, upload, verbs
from tests.ivr.twilio_api import FakeTwilio
from tests.routing.acd import eventually, offer_for

BOUND_S = 1.0  # the bound from the answer to the redirect

# The live-call app (IVR handlers registered, the fake Twilio API) for every test here.
app, settings, twilio_api = live.app, live.settings, live.twilio_api


@pytest.fixture
async def ready(api: Api) -> None:
    await centre(api)
    await upload(api, "complaint_hotline_95561")


def dialled(document: str) -> list[tuple[str, str]]:
    """What a TwiML document's ``<Dial>`` calls: (noun, address)."""
    dials = [v for v in verbs(document) if v.name == "Dial"]
    return [(noun.name, noun.text) for dial in dials for noun in dial.children]


async def queued_caller(api: Api, client: AsyncClient) -> tuple[TwilioCall, int]:
    phone = TwilioCall(client, STRANGER, HOTLINE)
    await menus_to(phone, "0")
    assert phone.waiting(), phone.last
    contact_id = (await call_of(api, phone.sid))["contact_id"]
    assert contact_id is not None
    return phone, int(contact_id)


async def call_status(api: Api, sid: str, status: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        call = await call_of(api, sid)
        return call if call["status"] == status else None

    return await eventually(check, what=f"call {sid} {status}")  # type: ignore[no-any-return]


async def ended_events(engine: AsyncEngine) -> list[tuple[str, int]]:
    """The ``ivr.call_ended`` events written: the status each call had, its contact."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT data FROM events WHERE type = 'ivr.call_ended' ORDER BY id")
        )
        return [(d["status_before"], d["contact_id"]) for (d,) in rows.all()]


@pytest.mark.usefixtures("ready")
class TestBridgeOnAccept:
    async def test_the_caller_is_redirected_to_the_agents_endpoint_within_a_second(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio
    ) -> None:
        agent_id, console = await complaints_agent(api)
        phone, contact_id = await queued_caller(api, client)
        offer = await offer_for(console, contact_id)
        assert twilio_api.requests == []  # nothing before the answer
        answered = asyncio.get_running_loop().time()
        expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
        [redirect] = await twilio_api.received(1, within=BOUND_S)
        assert redirect.at - answered < BOUND_S
        assert redirect.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{phone.sid}.json"
        assert redirect.user == ACCOUNT
        assert dialled(redirect.form["Twiml"]) == [("Sip", ENDPOINT)]
        call = await call_status(api, phone.sid, "bridged")
        bridged = next(s for s in call["path"] if s["result"] == "bridged")
        assert (bridged["agent"], bridged["via"]) == (str(agent_id), "redirect")
        assert len(twilio_api.requests) == 1

    async def test_a_failed_redirect_is_retried_and_the_wait_loop_bridges_the_caller(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio
    ) -> None:
        _, console = await complaints_agent(api)
        phone, contact_id = await queued_caller(api, client)
        twilio_api.fail_next(500, 503, 500)
        offer = await offer_for(console, contact_id)
        expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
        await twilio_api.received(3, within=10)  # the first try and two retries, all refused

        async def three_failures() -> bool:
            return results(await call_of(api, phone.sid)).count("bridge_failed") == 3

        await eventually(three_failures, what="three failures on the call's path")
        assert (await call_of(api, phone.sid))["status"] == "queued"
        turn = await phone.redirect()  # the next turn of the wait loop
        assert dialled(turn) == [("Sip", ENDPOINT)], turn
        call = await call_of(api, phone.sid)
        assert call["status"] == "bridged"
        assert next(s for s in call["path"] if s["result"] == "bridged")["via"] == "wait_loop"
        assert len(twilio_api.requests) == 3  # given up after the bound: no fourth try

    async def test_an_agent_without_an_endpoint_is_noted_and_the_provider_not_called(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio
    ) -> None:
        _, console = await complaints_agent(api, endpoint=None)
        phone, contact_id = await queued_caller(api, client)
        offer = await offer_for(console, contact_id)
        expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)

        async def noted() -> bool:
            return "no_endpoint" in results(await call_of(api, phone.sid))

        await eventually(noted, what="no_endpoint on the call's path")
        turn = await phone.redirect()
        assert said(turn) == ["请稍候。"]  # held, never dropped
        assert twilio_api.requests == []

    async def test_a_caller_who_hangs_up_once_bridged_leaves_the_contact_with_the_agent(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio
    ) -> None:
        _, console = await complaints_agent(api)
        phone, contact_id = await queued_caller(api, client)
        offer = await offer_for(console, contact_id)
        expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
        await twilio_api.received(1, within=BOUND_S)
        await call_status(api, phone.sid, "bridged")
        for status in ("completed", "completed", "in-progress"):
            assert (await phone.status(status)).status_code == 200
        contact = expect(await api.get(f"/api/v1/contacts/{contact_id}"), 200)
        assert contact["status"] == "connected"  # the agent's to complete, not abandoned
        assert (await call_of(api, phone.sid))["status"] == "ended"

    async def test_a_caller_who_hangs_up_before_being_put_through_frees_the_agent(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio
    ) -> None:
        # An agent without an endpoint: answered, and the caller never put through.
        agent_id, console = await complaints_agent(api, endpoint=None)
        phone, contact_id = await queued_caller(api, client)
        offer = await offer_for(console, contact_id)
        expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
        for status in ("completed", "completed", "in-progress"):  # twice, and late
            assert (await phone.status(status)).status_code == 200
        contact = expect(await api.get(f"/api/v1/contacts/{contact_id}"), 200)
        assert (contact["status"], contact["disposition"]) == ("completed", "caller_hung_up")
        agent = expect(await api.get(f"/api/v1/agents/{agent_id}"), 200)
        assert agent["status"] == "available"  # no after-contact work for nobody
        call = await call_of(api, phone.sid)
        assert call["status"] == "ended"
        assert results(call).count("hung_up_in_queue") == 1
        assert results(call).count("caller_hung_up") == 1

    async def test_a_redirect_refused_as_the_call_is_over_ends_it_and_frees_the_agent(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio, engine: AsyncEngine
    ) -> None:
        # The caller hung up and Twilio's `completed` was lost: the redirect says so.
        agent_id, console = await complaints_agent(api)
        phone, contact_id = await queued_caller(api, client)
        twilio_api.refuse_next(400, 21220)
        offer = await offer_for(console, contact_id)
        expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
        await twilio_api.received(1, within=5)
        ended = await call_status(api, phone.sid, "ended")
        assert results(ended).count("bridge_failed") == 1
        assert results(ended).count("caller_hung_up") == 1
        contact = expect(await api.get(f"/api/v1/contacts/{contact_id}"), 200)
        assert (contact["status"], contact["disposition"]) == ("completed", "caller_hung_up")
        agent = expect(await api.get(f"/api/v1/agents/{agent_id}"), 200)
        assert agent["status"] == "available"
        assert await ended_events(engine) == [("queued", contact_id)]
        assert (await phone.status("completed")).status_code == 200  # late: changes nothing
        assert results(await call_of(api, phone.sid)) == results(ended)
        assert len(twilio_api.requests) == 1  # not retried: nobody is left to put through

    async def test_a_caller_whose_contact_moved_queues_is_bridged_all_the_same(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio
    ) -> None:
        phone, contact_id = await queued_caller(api, client)
        moved = await api.post(f"/api/v1/contacts/{contact_id}/transfer", {"queue": "general"})
        successor = expect(moved, 200)["id"]
        assert successor != contact_id
        _, console = await complaints_agent(api)
        offer = await offer_for(console, successor)
        expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
        [redirect] = await twilio_api.received(1, within=BOUND_S)
        assert redirect.path.endswith(f"/Calls/{phone.sid}.json")
        await call_status(api, phone.sid, "bridged")
