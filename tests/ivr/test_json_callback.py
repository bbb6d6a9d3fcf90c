"""Callbacks for the JSON adapter's callers: when an agent accepts the callback, Hotline asks
the caller's own provider (a fake server here) to place the call, signed as its webhooks are;
the provider reports each attempt as a ``callback`` event; Twilio is never asked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text

from app.config import Settings
from app.db import unit_of_work
from app.ivr import callbacks
from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually
from tests.ivr import live
from tests.ivr.conftest import Clock
from tests.ivr.json_provider_api import FakeJsonProvider, serving
from tests.ivr.live import STRANGER, accept, call_of, complaints_agent, results
from tests.ivr.telephony import HOTLINE, JsonProvider, centre, upload
from tests.ivr.twilio_api import FakeTwilio

AGENT_ENDPOINT = "client:agent7"

# The live-call app (IVR handlers registered, the fake Twilio API) for every test here.
app, twilio_api = live.app, live.twilio_api


@pytest.fixture
async def json_api() -> AsyncIterator[FakeJsonProvider]:
    async with serving() as fake:
        yield fake


@pytest.fixture
def settings(db: str, twilio_api: FakeTwilio, json_api: FakeJsonProvider) -> Settings:
    return live.live_settings(db, twilio_api, json_provider_url=json_api.url)


@pytest.fixture
async def provider(api: Api, client: AsyncClient, clock: Clock) -> JsonProvider:
    await centre(api)
    await upload(api, "complaint_hotline_95561")
    return JsonProvider(client, clock.now)


async def callback_requested(api: Api, provider: JsonProvider, call_id: str) -> int:
    """A JSON caller presses 9 at the main menu: a callback contact is left in the queue."""
    incoming = {"event": "incoming", "from": STRANGER, "to": HOTLINE}
    expect(await provider.send(call_id, incoming), 200)
    expect(await provider.send(call_id, {"event": "digits", "digits": "1", "step": 1}), 200)
    chose = expect(await provider.send(call_id, {"event": "digits", "digits": "9", "step": 2}), 200)
    assert "callback" in [next(iter(a)) for a in chose["actions"]], chose
    call = await call_of(api, call_id)
    assert (call["status"], call["outcome"]) == ("ended", "callback")
    return int(call["contact_id"])


async def first_placed(
    api: Api, provider: JsonProvider, json_api: FakeJsonProvider, call_id: str
) -> tuple[int, int]:
    """A callback asked for on ``call_id``, accepted by an agent, its first attempt placed:
    the agent and the contact."""
    agent_id, console = await complaints_agent(api, endpoint=AGENT_ENDPOINT)
    contact_id = await callback_requested(api, provider, call_id)
    await accept(console, contact_id)
    await json_api.received(1, within=5)
    return agent_id, contact_id


async def report(provider: JsonProvider, call_id: str, attempt: int, status: str) -> Any:
    event = {"event": "callback", "attempt": attempt, "status": status}
    return expect(await provider.send(call_id, event), 200)


async def placed_refs(api: Api, call_id: str) -> list[str]:
    """The provider's ids of the call's placed attempts, once each is on record."""

    async def named() -> list[str] | None:
        path = (await call_of(api, call_id))["path"]
        placed = [s.get("call_ref") for s in path if s["result"] == "callback_placed"]
        return placed if placed and all(placed) else None

    named_refs: list[str] = await eventually(named, what=f"the placed attempts of {call_id} named")
    return named_refs


async def answered_after_the_lease(app: FastAPI, call_ref: str, contact_id: int, ref: str) -> None:
    """The provider's answer naming ``ref`` for the first attempt of ``call_ref``, recorded
    by a placing whose lease has run out."""
    async with unit_of_work(app.state.sessionmaker) as session:
        now = await session.scalar(text("SELECT now()"))
        call_id = await session.scalar(
            text("SELECT id FROM ivr_calls WHERE call_ref = :ref"), {"ref": call_ref}
        )
        lease = now - timedelta(seconds=1)
        placing = callbacks.Placing(call_id, contact_id, 1, lease, lease - timedelta(seconds=10))
        await placing.record(session, ref, None, app.state.settings)


class TestTheProviderPlacesTheCall:
    async def test_the_callback_is_placed_by_the_callers_provider_and_answered(
        self,
        api: Api,
        provider: JsonProvider,
        json_api: FakeJsonProvider,
        twilio_api: FakeTwilio,
    ) -> None:
        agent_id, console = await complaints_agent(api, endpoint=AGENT_ENDPOINT)
        contact_id = await callback_requested(api, provider, "cb-1")
        assert json_api.requests == []  # nothing is placed before an agent answers
        await accept(console, contact_id)
        [placed] = await json_api.received(1, within=5)
        assert placed.signed
        document = placed.document
        assert (document["call_id"], document["attempt"]) == ("cb-1", 1)
        assert (document["to"], document["from"]) == (STRANGER, HOTLINE)
        assert document["actions"][-1] == {"dial": {"agent": agent_id, "endpoint": AGENT_ENDPOINT}}
        for status in ("ringing", "in-progress", "completed"):
            await report(provider, "cb-1", 1, status)
        call = await call_of(api, "cb-1")
        assert results(call).count("callback_answered") == 1
        # (The reports may have come before the provider's answer was recorded.)
        assert await placed_refs(api, "cb-1") == ["out-1"]
        contact = expect(await api.get(f"/api/v1/contacts/{contact_id}"), 200)
        assert contact["status"] == "connected"  # the agent's conversation now
        assert twilio_api.requests == []  # Twilio does not hold the JSON provider's callers
        assert len(json_api.requests) == 1

    async def test_a_report_come_before_the_providers_answer_is_named_by_the_answer(
        self, app: FastAPI, api: Api, provider: JsonProvider, json_api: FakeJsonProvider
    ) -> None:
        _, console = await complaints_agent(api, endpoint=AGENT_ENDPOINT)
        contact_id = await callback_requested(api, provider, "cb-4")
        json_api.answering.clear()  # the provider places the call, its answer on the way
        await accept(console, contact_id)
        await json_api.received(1, within=5)
        await report(provider, "cb-4", 1, "ringing")
        path = results(await call_of(api, "cb-4"))
        assert path.count("callback_placed") == 1  # the report shows it placed
        # An answer recorded only after its placing's lease ran out names nothing: by then
        # the attempt may have been placed again.
        await answered_after_the_lease(app, "cb-4", contact_id, "out-9")
        json_api.answering.set()
        assert await placed_refs(api, "cb-4") == ["out-1"]
        await report(provider, "cb-4", 1, "in-progress")
        path = results(await call_of(api, "cb-4"))
        assert (path.count("callback_placed"), path.count("callback_answered")) == (1, 1)
        contact = expect(await api.get(f"/api/v1/contacts/{contact_id}"), 200)
        assert contact["status"] == "connected"
        assert len(json_api.requests) == 1

    async def test_an_unanswered_callback_is_placed_again_then_ends_unreachable(
        self, api: Api, provider: JsonProvider, json_api: FakeJsonProvider
    ) -> None:
        agent_id, contact_id = await first_placed(api, provider, json_api, "cb-2")
        await report(provider, "cb-2", 1, "no-answer")
        await json_api.received(2, within=5)
        json_api.fail_next(503)  # the third attempt: the provider refuses it
        await report(provider, "cb-2", 2, "busy")
        placings = await json_api.received(3, within=5)
        assert [p.document["attempt"] for p in placings] == [1, 2, 3]

        async def given_up() -> bool:
            return "callback_unreachable" in results(await call_of(api, "cb-2"))

        await eventually(given_up, what="the callback given up")
        contact = expect(await api.get(f"/api/v1/contacts/{contact_id}"), 200)
        assert (contact["status"], contact["disposition"]) == ("completed", "callback_unreachable")
        agent = expect(await api.get(f"/api/v1/agents/{agent_id}"), 200)
        assert agent["status"] == "available"


class TestReports:
    async def test_late_and_repeated_reports_change_nothing(
        self, api: Api, provider: JsonProvider, json_api: FakeJsonProvider
    ) -> None:
        await first_placed(api, provider, json_api, "cb-3")
        await report(provider, "cb-3", 1, "answered")
        await report(provider, "cb-3", 1, "no-answer")  # late, after the answer
        await report(provider, "cb-3", 2, "no-answer")  # an attempt never placed
        path = results(await call_of(api, "cb-3"))
        assert (path.count("callback_answered"), path.count("callback_unanswered")) == (1, 0)
        assert len(json_api.requests) == 1

    async def test_a_report_without_its_attempt_or_for_a_call_without_a_callback_is_refused(
        self, api: Api, provider: JsonProvider
    ) -> None:
        await callback_requested(api, provider, "cb-4")
        bare = await provider.send("cb-4", {"event": "callback", "status": "busy"})
        assert bare.status_code == 422, bare.text
        assert [f["field"] for f in bare.json()["fields"]] == ["attempt"]
        odd = await provider.send("cb-4", {"event": "callback", "attempt": 1, "status": "lost"})
        assert odd.status_code == 422, odd.text
        incoming = {"event": "incoming", "from": STRANGER, "to": HOTLINE}
        expect(await provider.send("cb-5", incoming), 200)
        none = await provider.send("cb-5", {"event": "callback", "attempt": 1, "status": "busy"})
        assert none.status_code == 409, none.text
        unknown = await provider.send("cb-6", {"event": "callback", "attempt": 1, "status": "busy"})
        assert unknown.status_code == 404, unknown.text


class TestNoProviderApi:
    @pytest.fixture
    def settings(self, db: str, twilio_api: FakeTwilio) -> Settings:
        return live.live_settings(db, twilio_api)  # no json_provider_url

    async def test_without_the_providers_api_each_attempt_fails_on_record(
        self, api: Api, provider: JsonProvider, twilio_api: FakeTwilio
    ) -> None:
        _, console = await complaints_agent(api, endpoint=AGENT_ENDPOINT)
        contact_id = await callback_requested(api, provider, "cb-7")
        await accept(console, contact_id)

        async def given_up() -> dict[str, Any] | None:
            call = await call_of(api, "cb-7")
            return call if "callback_unreachable" in results(call) else None

        call = await eventually(given_up, what="the callback given up")
        failed = [s for s in call["path"] if s["result"] == "callback_failed"]
        assert len(failed) == 3
        assert "json_provider_url" in failed[0]["detail"]
        assert twilio_api.requests == []
