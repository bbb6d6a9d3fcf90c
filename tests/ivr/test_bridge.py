"""Bridging a queued caller to the agent who accepts them: the live call is redirected through
Twilio's REST API (a fake server here) within a second of the answer; the wait loop bridges
the caller itself when the redirect failed."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.config import Settings
from app.ivr.bridge import BRIDGE_RETRY
from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually
from tests.ivr import live
from tests.ivr.conftest import Clock
from tests.ivr.live import (
    ENDPOINT,
    STRANGER,
    call_of,
    complaints_agent,
    live_settings,
    menus_to,
    results,
    timers_of,
)
from tests.ivr.telephony import (
    ACCOUNT,
    HOTLINE,
    JsonProvider,
    TwilioCall,
    centre,
    said,
    upload,
    verbs,
)
from tests.ivr.twilio_api import FakeTwilio
from tests.routing import acd
from tests.routing.acd import offer_for

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


class JsonCall:
    """A call of the generic JSON protocol, each event signed a second after the last (a
    provider signs with its own clock; the same body signed twice would be a replay)."""

    def __init__(self, client: AsyncClient, clock: Clock, call_id: str) -> None:
        self.provider = JsonProvider(client, clock.now)
        self.call_id, self.clock = call_id, clock
        self.seconds = itertools.count(1)

    async def send(self, event: dict[str, Any], status: int = 200) -> dict[str, Any]:
        at = self.clock.now + timedelta(seconds=next(self.seconds))
        return expect(await self.provider.send(self.call_id, event, at=at), status)  # type: ignore[no-any-return]

    async def queued(self) -> int:
        """An unknown caller: Mandarin, then 0 for an agent; the contact queued."""
        answer = await self.send({"event": "incoming", "from": STRANGER, "to": HOTLINE})
        answer = await self.send({"event": "digits", "digits": "1", "step": answer["step"]})
        answer = await self.send({"event": "digits", "digits": "0", "step": answer["step"]})
        assert answer["status"] == "queued", answer
        return int(answer["actions"][-1]["enqueue"]["contact_id"])


@pytest.mark.usefixtures("ready")
class TestTheJsonProviderWaits:
    """A provider of the JSON protocol holds its queued caller itself: Hotline cannot redirect
    the call, so the provider's ``wait`` events hear where the caller stands, and the agent
    who answered."""

    async def test_a_wait_tells_the_place_then_dials_the_agent_who_answered(
        self,
        api: Api,
        client: AsyncClient,
        clock: Clock,
        engine: AsyncEngine,
        twilio_api: FakeTwilio,
    ) -> None:
        call = JsonCall(client, clock, "json-1")
        contact_id = await call.queued()
        held = await call.send({"event": "wait"})
        assert held["waiting"] == {"standing": "waiting", "position": 1, "estimated_wait_s": None}
        assert [next(iter(a)) for a in held["actions"]] == ["say", "play"]
        assert held["actions"][0] == {"say": "您现在排在第一位。", "language": "zh-CN"}
        assert (held["status"], held["step"]) == ("queued", 3)

        agent_id, console = await complaints_agent(api)
        offer = await offer_for(console, contact_id)
        expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)

        async def answered_handled() -> bool:
            return await timers_of(engine, "contact.phone_answered") == 0

        await eventually(answered_handled, what="the answer's timer to fire")
        assert twilio_api.requests == []  # Twilio is not asked about a call it does not hold
        put = await call.send({"event": "wait"})
        offered = "正在为您接通客服代表，请稍候。"  # noqa: RUF001
        assert put["actions"] == [
            {"say": offered, "language": "zh-CN"},
            {"dial": {"agent": agent_id, "endpoint": ENDPOINT}},
        ]
        assert (put["status"], put["waiting"]["standing"]) == ("bridged", "connected")
        again = await call.send({"event": "wait"})  # asked again: the same agent
        assert again["actions"] == put["actions"]
        path = (await call_of(api, "json-1"))["path"]
        assert [s.get("via") for s in path if s["result"] == "bridged"] == ["wait_loop"]

    async def test_a_wait_for_a_call_not_queued_is_refused_naming_it(
        self, client: AsyncClient, clock: Clock
    ) -> None:
        call = JsonCall(client, clock, "json-2")
        await call.send({"event": "incoming", "from": STRANGER, "to": HOTLINE})
        in_menus = await call.send({"event": "wait"}, 409)
        assert "in_ivr" in in_menus["detail"]
        unknown = JsonCall(client, clock, "json-never")
        await unknown.send({"event": "wait"}, 404)

    async def test_a_wait_after_the_contact_ended_says_goodbye(
        self, api: Api, client: AsyncClient, clock: Clock
    ) -> None:
        call = JsonCall(client, clock, "json-3")
        contact_id = await call.queued()
        expect(await api.post(f"/api/v1/contacts/{contact_id}/cancel", {}), 200)
        answer = await call.send({"event": "wait"})
        assert [next(iter(a)) for a in answer["actions"]] == ["say", "hangup"]
        assert answer["waiting"]["standing"] == "gone"

    async def test_a_hangup_after_the_answer_before_the_dial_frees_the_agent(
        self, api: Api, client: AsyncClient, clock: Clock
    ) -> None:
        call = JsonCall(client, clock, "json-4")
        contact_id = await call.queued()
        agent_id, console = await complaints_agent(api)
        offer = await offer_for(console, contact_id)
        expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
        await call.send({"event": "hangup"})
        contact = expect(await api.get(f"/api/v1/contacts/{contact_id}"), 200)
        assert (contact["status"], contact["disposition"]) == ("completed", "caller_hung_up")
        agent = expect(await api.get(f"/api/v1/agents/{agent_id}"), 200)
        assert agent["status"] == "available"


@asynccontextmanager
async def redirect_held(
    api: Api, client: AsyncClient, twilio_api: FakeTwilio
) -> AsyncIterator[tuple[TwilioCall, int]]:
    """A queued caller whose contact an agent accepts while Twilio holds the redirect
    unanswered; Twilio answers when the block ends, however it ends."""
    _, console = await complaints_agent(api)
    phone, contact_id = await queued_caller(api, client)
    twilio_api.answering.clear()
    try:
        offer = await offer_for(console, contact_id)
        expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
        await twilio_api.received(1, within=10)  # the redirect, not answered yet
        yield phone, contact_id
    finally:
        twilio_api.answering.set()


async def run_out_lease(engine: AsyncEngine, phone: TwilioCall, contact_id: int) -> None:
    """The redirect's lease runs out unanswered (its instance died, say): the lease ended a
    second ago, and its backstop is due now."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE ivr_calls SET redirecting_until = now() - interval '1 second'"
                " WHERE call_ref = :sid"
            ),
            {"sid": phone.sid},
        )
        await backstop_due_now(conn, contact_id)


async def backstop_due_now(conn: AsyncConnection, contact_id: int) -> None:
    await conn.execute(
        text("UPDATE timers SET due_at = now() WHERE kind = :k AND subject = :s"),
        {"k": BRIDGE_RETRY, "s": str(contact_id)},
    )


@pytest.mark.usefixtures("ready")
class TestASlowProvider:
    @pytest.fixture
    def settings(self, db: str, twilio_api: FakeTwilio) -> Settings:
        # Twilio may take its time: a redirect waits for it far longer than the test does.
        return live_settings(db, twilio_api, twilio_api_timeout_s=50.0)

    async def test_a_redirect_twilio_is_slow_to_answer_holds_up_no_ring_timeout(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio, engine: AsyncEngine
    ) -> None:
        chats = await acd.queue(api, channels=["chat"], ring_timeout_s=1)
        chat_console = await acd.available_agent(api, capacity={"chat": 1})
        async with redirect_held(api, client, twilio_api) as (phone, _):
            chat = await acd.contact(api, chats["name"])
            await offer_for(chat_console, int(chat["id"]))

            async def rang_out() -> bool:
                async with engine.connect() as conn:
                    found = await conn.scalar(
                        text("SELECT count(*) FROM offers WHERE contact_id = :c AND status = :s"),
                        {"c": chat["id"], "s": "expired"},
                    )
                return bool(found)

            # The chat's offer rings a second and nobody answers: it ends on time, while the
            # redirect still waits for Twilio.
            await eventually(rang_out, within=20, what="the chat's offer to ring out")
            assert (await call_of(api, phone.sid))["status"] == "queued"
        await call_status(api, phone.sid, "bridged")
        assert len(twilio_api.requests) == 1

    async def test_the_calls_record_shows_a_redirect_in_flight_until_twilio_answers(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio
    ) -> None:
        async with redirect_held(api, client, twilio_api) as (phone, _):
            shown = (await call_of(api, phone.sid))["in_flight"]
            assert (shown["request"], shown["attempt"]) == ("redirect", None)
        await call_status(api, phone.sid, "bridged")
        assert (await call_of(api, phone.sid))["in_flight"] is None

    async def test_a_redirect_whose_lease_ran_out_is_not_shown_in_flight(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio, engine: AsyncEngine
    ) -> None:
        async with redirect_held(api, client, twilio_api) as (phone, _):
            async with engine.begin() as conn:  # as the row stays when its instance died
                await conn.execute(
                    text(
                        "UPDATE ivr_calls SET redirecting_until = now() - interval '1 second'"
                        " WHERE call_ref = :sid"
                    ),
                    {"sid": phone.sid},
                )
            assert (await call_of(api, phone.sid))["in_flight"] is None

    async def test_the_event_feed_moves_on_while_twilio_is_slow_to_answer_a_redirect(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio
    ) -> None:
        """No transaction stays open while Twilio answers: one would hold back every reader
        of the event feed (consoles, wallboards), as it waits for the oldest open one."""
        chats = await acd.queue(api, channels=["chat"])
        async with redirect_held(api, client, twilio_api) as (phone, _):
            await live.feed_moves_on(api, chats["name"])
            assert (await call_of(api, phone.sid))["status"] == "queued"
        await call_status(api, phone.sid, "bridged")

    async def test_a_wait_loop_turn_while_a_redirect_is_in_flight_keeps_the_caller_holding(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio, engine: AsyncEngine
    ) -> None:
        """The redirect puts the caller through: a turn of the wait loop meanwhile does not
        dial the agent a second time (the redirect would cut that dial short)."""
        async with redirect_held(api, client, twilio_api) as (phone, contact_id):
            answer = await asyncio.wait_for(phone.redirect(), 10)
            assert dialled(answer) == [], answer
            assert phone.waiting(), answer
        call = await call_status(api, phone.sid, "bridged")
        assert results(call).count("bridged") == 1
        assert call["path"][-1]["via"] == "redirect"
        assert len(twilio_api.requests) == 1
        assert await timers_of(engine, BRIDGE_RETRY, contact_id) == 0, (
            "the redirect's backstop was left"
        )

    async def test_a_wait_loop_turn_after_a_redirects_lease_ran_out_bridges_the_caller(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio, engine: AsyncEngine
    ) -> None:
        """A redirect whose lease ran out unanswered no longer holds the caller: the next turn
        of the wait loop puts them through (the backstop, not woken here, would too)."""
        async with redirect_held(api, client, twilio_api) as (phone, contact_id):
            await run_out_lease(engine, phone, contact_id)
            answer = await asyncio.wait_for(phone.redirect(), 10)
            assert dialled(answer) == [("Sip", ENDPOINT)], answer
        call = await call_status(api, phone.sid, "bridged")
        assert results(call).count("bridged") == 1
        assert call["path"][-1]["via"] == "wait_loop"

    async def test_the_redirects_backstop_does_not_redirect_again_while_one_is_in_flight(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio, engine: AsyncEngine, app: Any
    ) -> None:
        """The ``ivr.bridge`` timer stands behind a redirect in flight (for a process that
        dies with one): fired before the lease ends, it leaves the redirect to Twilio and
        stands again at the lease's end; once the redirect is recorded, it is gone."""
        async with redirect_held(api, client, twilio_api) as (phone, contact_id):
            assert await timers_of(engine, BRIDGE_RETRY, contact_id) == 1
            async with engine.begin() as conn:
                await backstop_due_now(conn, contact_id)
            app.state.timer_worker.poke()

            async def fired_and_standing_again() -> bool:
                later = await timers_of(engine, BRIDGE_RETRY, contact_id, due_later=True)
                return later == 1

            await eventually(fired_and_standing_again, what="the backstop fired early")
            assert len(twilio_api.requests) == 1, "redirected again while one was in flight"
        await call_status(api, phone.sid, "bridged")
        assert await timers_of(engine, BRIDGE_RETRY, contact_id) == 0
        assert len(twilio_api.requests) == 1

    async def test_a_redirect_answered_after_its_lease_ran_out_is_left_to_the_one_after_it(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio, engine: AsyncEngine, app: Any
    ) -> None:
        """A redirect still unanswered when its lease runs out is taken over by the backstop,
        which redirects again; the first one's answer, when it comes (a failure here), is not
        recorded over the second's."""
        async with redirect_held(api, client, twilio_api) as (phone, contact_id):
            await run_out_lease(engine, phone, contact_id)
            app.state.timer_worker.poke()
            await twilio_api.received(2, within=10)  # the backstop's redirect
            twilio_api.fail_next(500)  # Twilio answers the first one first: a failure
        call = await call_status(api, phone.sid, "bridged")
        assert "bridge_failed" not in results(call), results(call)
        assert results(call).count("bridged") == 1
        assert await timers_of(engine, BRIDGE_RETRY, contact_id) == 0
