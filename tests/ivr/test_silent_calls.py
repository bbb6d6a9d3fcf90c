"""Calls whose provider's end-of-call report was lost: the silence sweep asks Twilio (a fake
server here) after the calls nothing has been heard about for ``ivr_silence_s``, and ends on
record those that are over; the sweep runs with an injected clock, the database's hour moved
on by the silence."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import unit_of_work
from app.ivr import silence
from app.ivr.advance import Context
from app.ivr.models import Provider
from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually
from tests.ivr import live
from tests.ivr.conftest import Clock
from tests.ivr.live import (
    STRANGER,
    accept,
    call_of,
    complaints_agent,
    menus_to,
    results,
    timers_of,
)
from tests.ivr.telephony import HOTLINE, JsonProvider, TwilioCall, centre, upload
from tests.ivr.twilio_api import FakeTwilio

# The live-call app (the fake Twilio API) for every test here.
app, settings, twilio_api = live.app, live.settings, live.twilio_api


@pytest.fixture
async def ready(api: Api) -> None:
    await centre(api)
    await upload(api, "complaint_hotline_95561")


@dataclass
class Line:
    """The app with the fake Twilio API, and the sweep run as the timer worker runs it."""

    app: FastAPI
    api: Api
    client: AsyncClient
    twilio: FakeTwilio

    @property
    def engine(self) -> AsyncEngine:
        return self.app.state.engine  # type: ignore[no-any-return]

    @property
    def silent(self) -> timedelta:
        """A second longer than the silence after which a call is asked after."""
        return timedelta(seconds=self.app.state.settings.ivr_silence_s + 1)

    async def heard_at(self, sid: str) -> datetime:
        async with self.engine.connect() as conn:
            found = await conn.scalar(
                text("SELECT heard_at FROM ivr_calls WHERE call_ref = :sid"), {"sid": sid}
            )
        assert isinstance(found, datetime)
        return found

    async def sweep(self, at: datetime) -> int:
        """The silence sweep, with ``at`` for the database's now; how many calls ended."""
        app = self.app
        async with unit_of_work(app.state.sessionmaker) as session:
            return await silence.silent_calls(
                session, at, settings=app.state.settings, desk=app.state.complaint_desk
            )

    async def sweep_once_silent(self, sid: str) -> int:
        """The sweep once the call ``sid`` has been silent for longer than the silence."""
        return await self.sweep(await self.heard_at(sid) + self.silent)

    async def call(self, sid: str) -> dict[str, Any]:
        return await call_of(self.api, sid)

    async def answer_handled(self) -> None:
        """Wait until the timers of the agents' answers have fired: their handler holds the
        call's row while it runs, and the sweep skips a row another transaction holds."""

        async def none_pending() -> bool:
            return await timers_of(self.engine, "contact.phone_answered") == 0

        await eventually(none_pending, what="the answer's timer to fire")

    async def in_the_menus(self) -> TwilioCall:
        phone = TwilioCall(self.client, STRANGER, HOTLINE)
        await phone.start()
        assert phone.gathering(), phone.last
        return phone

    async def queued(self) -> tuple[TwilioCall, int]:
        phone = TwilioCall(self.client, STRANGER, HOTLINE)
        await menus_to(phone, "0")
        assert phone.waiting(), phone.last
        return phone, int((await self.call(phone.sid))["contact_id"])


@pytest.fixture
def line(app: FastAPI, api: Api, client: AsyncClient, twilio_api: FakeTwilio) -> Line:
    return Line(app, api, client, twilio_api)


async def ended_events(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT data FROM events WHERE type = 'ivr.call_ended' ORDER BY id")
        )
        return [d for (d,) in rows.all()]


@pytest.mark.usefixtures("ready")
class TestTwilioIsAsked:
    async def test_a_caller_gone_in_the_menus_ends_hung_up_at_their_node(self, line: Line) -> None:
        phone = await line.in_the_menus()
        line.twilio.statuses[phone.sid] = "completed"
        node = (await line.call(phone.sid))["path"][-1]["node"]
        assert await line.sweep_once_silent(phone.sid) == 1
        assert line.twilio.fetched() == [phone.sid]
        call = await line.call(phone.sid)
        assert (call["status"], call["outcome"], call["drop_node"]) == ("ended", "hung_up", node)
        assert call["provider_status"] == "completed"
        noted = next(s for s in call["path"] if s["result"] == "ended_silent")
        assert noted["status"] == "completed"
        [ended] = await ended_events(line.engine)
        assert (ended["status_before"], ended["provider_status"]) == ("in_ivr", "completed")
        # The report the provider sends late after all changes nothing.
        assert (await phone.status("completed")).status_code == 200
        assert results(await line.call(phone.sid)) == results(call)

    async def test_a_queued_caller_gone_has_their_contact_abandoned(self, line: Line) -> None:
        phone, contact_id = await line.queued()
        line.twilio.statuses[phone.sid] = "completed"
        assert await line.sweep_once_silent(phone.sid) == 1
        contact = expect(await line.api.get(f"/api/v1/contacts/{contact_id}"), 200)
        assert contact["status"] == "abandoned"
        call = await line.call(phone.sid)
        assert call["status"] == "ended"
        assert results(call)[-2:] == ["ended_silent", "hung_up_in_queue"]

    async def test_an_answered_caller_gone_before_being_put_through_frees_the_agent(
        self, line: Line
    ) -> None:
        agent_id, console = await complaints_agent(line.api, endpoint=None)  # not to be dialled
        phone, contact_id = await line.queued()
        await accept(console, contact_id)
        await line.answer_handled()
        line.twilio.statuses[phone.sid] = "completed"
        assert await line.sweep_once_silent(phone.sid) == 1
        contact = expect(await line.api.get(f"/api/v1/contacts/{contact_id}"), 200)
        assert (contact["status"], contact["disposition"]) == ("completed", "caller_hung_up")
        agent = expect(await line.api.get(f"/api/v1/agents/{agent_id}"), 200)
        assert agent["status"] == "available"

    async def test_a_call_twilio_does_not_know_is_ended(self, line: Line) -> None:
        phone = await line.in_the_menus()
        line.twilio.statuses[phone.sid] = None
        assert await line.sweep_once_silent(phone.sid) == 1
        call = await line.call(phone.sid)
        assert (call["status"], call["provider_status"]) == ("ended", "not-found")

    async def test_a_live_call_is_left_and_asked_after_again_only_after_another_silence(
        self, line: Line
    ) -> None:
        phone = await line.in_the_menus()  # Twilio says in-progress
        first = await line.heard_at(phone.sid) + line.silent
        assert await line.sweep(first) == 0
        assert (await line.call(phone.sid))["status"] == "in_ivr"
        assert await line.heard_at(phone.sid) == first  # heard, as of the asking
        assert await line.sweep(first + line.silent - timedelta(seconds=1)) == 0
        assert line.twilio.fetched() == [phone.sid]
        line.twilio.statuses[phone.sid] = "completed"
        assert await line.sweep(first + line.silent) == 1
        assert line.twilio.fetched() == [phone.sid, phone.sid]

    async def test_an_unreachable_provider_leaves_the_call_to_be_asked_after_another_silence(
        self, line: Line
    ) -> None:
        phone = await line.in_the_menus()
        at = await line.heard_at(phone.sid) + line.silent
        line.twilio.statuses[phone.sid] = "completed"
        line.twilio.fail_next(503)
        assert await line.sweep(at) == 0
        assert (await line.call(phone.sid))["status"] == "in_ivr"
        # Claimed when it was asked after: the next sweeps (this instance's, or another's)
        # leave it until another silence has passed.
        assert await line.sweep(at) == 0
        assert line.twilio.fetched() == [phone.sid]
        assert await line.sweep(at + line.silent) == 1
        assert line.twilio.fetched() == [phone.sid, phone.sid]


@pytest.mark.usefixtures("ready")
class TestSilence:
    async def test_each_step_and_each_turn_of_the_wait_loop_is_heard(self, line: Line) -> None:
        phone = TwilioCall(line.client, STRANGER, HOTLINE)
        await phone.start()
        started = await line.heard_at(phone.sid)
        await phone.press("1")
        await phone.press("0")
        assert phone.waiting(), phone.last
        stepped = await line.heard_at(phone.sid)
        assert stepped > started
        await phone.redirect()  # a turn of the wait loop
        turned = await line.heard_at(phone.sid)
        assert turned > stepped
        # Silent for exactly the silence: not asked after yet.
        assert await line.sweep(turned + line.silent - timedelta(seconds=1)) == 0
        assert line.twilio.fetched() == []

    async def test_a_turn_of_the_wait_loop_while_ringing_at_an_agent_is_heard(
        self, line: Line
    ) -> None:
        await complaints_agent(line.api)  # rings, and is not answered yet
        phone, contact_id = await line.queued()

        async def ringing() -> bool:
            contact = expect(await line.api.get(f"/api/v1/contacts/{contact_id}"), 200)
            return bool(contact["status"] == "offered")

        await eventually(ringing, what="the contact offered to the agent")
        stepped = await line.heard_at(phone.sid)
        await phone.redirect()
        assert await line.heard_at(phone.sid) > stepped

    async def test_a_bridged_call_is_asked_after_only_once_its_conversation_is_over(
        self, line: Line
    ) -> None:
        _, console = await complaints_agent(line.api)
        bridged, contact_id = await line.queued()
        await accept(console, contact_id)
        await line.twilio.received(1, within=10)  # the redirect to the agent

        async def is_bridged() -> bool:
            return bool((await line.call(bridged.sid))["status"] == "bridged")

        await eventually(is_bridged, what="the caller bridged")
        line.twilio.statuses[bridged.sid] = "completed"  # and its report lost
        much_later = await line.heard_at(bridged.sid) + 10 * line.silent
        assert await line.sweep(much_later) == 0  # the conversation goes on
        assert line.twilio.fetched() == []
        expect(await console.post(f"/api/v1/contacts/{contact_id}/complete", {}), 200)
        assert await line.sweep(much_later) == 1
        assert line.twilio.fetched() == [bridged.sid]
        call = await line.call(bridged.sid)
        assert (call["status"], call["provider_status"]) == ("ended", "completed")
        assert results(call)[-1] == "ended_silent"
        [ended] = await ended_events(line.engine)
        assert ended["status_before"] == "bridged"
        contact = expect(await line.api.get(f"/api/v1/contacts/{contact_id}"), 200)
        assert contact["status"] in ("wrap_up", "completed"), contact  # the agent's, untouched
        assert contact["disposition"] != "caller_hung_up"

    async def test_calls_ended_are_not_asked_after(self, line: Line) -> None:
        over = await line.in_the_menus()
        assert (await over.status("completed")).status_code == 200
        assert await line.sweep(await line.heard_at(over.sid) + 10 * line.silent) == 0
        assert line.twilio.fetched() == []


ANOTHER = "+8613912345679"


def incoming(caller: str) -> dict[str, str]:
    return {"event": "incoming", "from": caller, "to": HOTLINE}


class TestTheJsonProvider:
    @pytest.fixture
    async def provider(self, line: Line, clock: Clock) -> JsonProvider:
        await centre(line.api)
        await upload(line.api, "complaint_hotline_95561")
        return JsonProvider(line.client, clock.now)

    async def test_a_call_silent_in_its_menus_ends_and_a_queued_one_never_waited_is_left(
        self, line: Line, provider: JsonProvider
    ) -> None:
        expect(await provider.send("menus", incoming(STRANGER)), 200)
        expect(await provider.send("queue", incoming(ANOTHER)), 200)
        expect(await provider.send("queue", {"event": "digits", "digits": "1", "step": 1}), 200)
        waits = expect(
            await provider.send("queue", {"event": "digits", "digits": "0", "step": 2}), 200
        )
        assert waits["status"] == "queued", waits
        later = max([await line.heard_at("menus"), await line.heard_at("queue")])
        assert await line.sweep(later + line.silent) == 1
        assert line.twilio.fetched() == []  # a JSON provider's call is not Twilio's to answer
        menus = await line.call("menus")
        assert (menus["status"], menus["outcome"]) == ("ended", "hung_up")
        assert menus["provider_status"] == "silent"
        assert (await line.call("queue"))["status"] == "queued"

    async def test_a_queued_caller_whose_provider_keeps_the_wait_loop_is_held_to_the_silence(
        self, line: Line, provider: JsonProvider
    ) -> None:
        expect(await provider.send("queue", incoming(STRANGER)), 200)
        expect(await provider.send("queue", {"event": "digits", "digits": "1", "step": 1}), 200)
        expect(await provider.send("queue", {"event": "digits", "digits": "0", "step": 2}), 200)
        call = await line.call("queue")
        assert call["status"] == "queued", call
        turn = expect(await provider.send("queue", {"event": "wait"}), 200)
        assert turn["waiting"]["standing"] == "waiting", turn
        waited = await line.heard_at("queue")
        # Heard from for all but a second of the silence: left.
        assert await line.sweep(waited + line.silent - timedelta(seconds=1)) == 0
        assert (await line.call("queue"))["status"] == "queued"
        assert await line.sweep(waited + line.silent) == 1
        call = await line.call("queue")
        assert (call["status"], call["provider_status"]) == ("ended", "silent")
        assert results(call)[-2:] == ["ended_silent", "hung_up_in_queue"]
        contact = expect(await line.api.get(f"/api/v1/contacts/{call['contact_id']}"), 200)
        assert contact["status"] == "abandoned"

    async def test_a_bridged_call_ends_once_its_conversation_is_over(
        self, line: Line, provider: JsonProvider, clock: Clock
    ) -> None:
        expect(await provider.send("talk", incoming(STRANGER)), 200)
        expect(await provider.send("talk", {"event": "digits", "digits": "1", "step": 1}), 200)
        expect(await provider.send("talk", {"event": "digits", "digits": "0", "step": 2}), 200)
        contact_id = (await line.call("talk"))["contact_id"]
        _, console = await complaints_agent(line.api)
        await accept(console, contact_id)
        await line.answer_handled()
        turns = itertools.count(1)

        async def put_through() -> bool:  # each wait a second later: a signature of its own
            at = clock.now + timedelta(seconds=next(turns))
            answer = expect(await provider.send("talk", {"event": "wait"}, at=at), 200)
            return bool(answer["status"] == "bridged")

        await eventually(put_through, what="the caller put through to the agent")
        much_later = await line.heard_at("talk") + 10 * line.silent
        assert await line.sweep(much_later) == 0  # the conversation goes on
        expect(await console.post(f"/api/v1/contacts/{contact_id}/complete", {}), 200)
        assert await line.sweep(much_later) == 1
        call = await line.call("talk")
        assert (call["status"], call["provider_status"]) == ("ended", "silent")
        contact = expect(await line.api.get(f"/api/v1/contacts/{contact_id}"), 200)
        assert contact["status"] in ("wrap_up", "completed"), contact

    async def test_a_call_heard_again_before_it_is_ended_is_left(
        self, line: Line, provider: JsonProvider
    ) -> None:
        expect(await provider.send("menus", incoming(STRANGER)), 200)
        heard = await line.heard_at("menus")
        answer = silence.Answer(0, Provider.json, "menus", "silent")
        app, desk = line.app, line.app.state.complaint_desk

        async def settle(claimed: datetime) -> int:
            ctx = Context(claimed, app.state.settings, desk, desk.work_calendar())
            async with unit_of_work(app.state.sessionmaker) as session:
                return await silence._settle(session, answer, "silent", ctx)

        # Claimed earlier, then heard (its heard_at is no longer the claim's): left.
        assert await settle(heard - timedelta(seconds=1)) == 0
        assert (await line.call("menus"))["status"] == "in_ivr"
        # Nothing heard since the claim: ended.
        assert await settle(heard) == 1
        assert (await line.call("menus"))["status"] == "ended"
