"""Callbacks (virtual hold): the caller keeps their place and hangs up; when an agent accepts
the callback, Hotline places the call through Twilio's REST API (a fake server here) and
bridges it to the agent; unanswered attempts are retried, then the callback ends on record."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text

from app.config import Settings
from app.db import unit_of_work
from app.ivr import callbacks
from app.timers.worker import collect_outside, run_outside
from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually
from tests.ivr import live
from tests.ivr.live import (
    STRANGER,
    call_of,
    complaints_agent,
    menus_to,
    results,
)
from tests.ivr.telephony import (
    ACCOUNT,
    HOTLINE,
    PUBLIC,
    TwilioCall,
    centre,
    post_twilio,
    upload,
    verbs,
)
from tests.ivr.twilio_api import FakeTwilio, Received
from tests.routing import acd
from tests.routing.acd import offer_for

AGENT_ENDPOINT = "client:agent7"

# The live-call app (IVR handlers registered, the fake Twilio API) for every test here.
app, settings, twilio_api = live.app, live.settings, live.twilio_api


@pytest.fixture
async def ready(api: Api) -> None:
    await centre(api)
    await upload(api, "complaint_hotline_95561")


async def callback_requested(api: Api, client: AsyncClient) -> tuple[TwilioCall, int]:
    """A caller presses 9: told, hung up, a callback contact left in the queue."""
    phone = TwilioCall(client, STRANGER, HOTLINE)
    await menus_to(phone, "9")
    assert phone.hung_up() or phone.next_url == "", phone.last
    call = await call_of(api, phone.sid)
    assert (call["status"], call["outcome"]) == ("ended", "callback")
    return phone, int(call["contact_id"])


async def report(client: AsyncClient, placed: Received, sid: str, status: str) -> None:
    """Twilio's status callback for a call it placed, to the URL given with it."""
    params = {
        "AccountSid": ACCOUNT,
        "CallSid": sid,
        "CallStatus": status,
        "Direction": "outbound-api",
        "From": placed.form["From"],
        "To": placed.form["To"],
    }
    response = await post_twilio(client, placed.form["StatusCallback"], params)
    assert response.status_code == 200, response.text


def attempt_of(placed: Received) -> int:
    query = parse_qs(urlsplit(placed.form["StatusCallback"]).query)
    return int(query["attempt"][0])


def placed_attempts(call: dict[str, Any]) -> list[str]:
    return [e["attempt"] for e in call["path"] if e["result"] == "callback_placed"]


async def on_record(api: Api, sid: str, count: int = 1) -> list[str]:
    """The attempts the call's path shows placed, once it shows ``count`` of them."""

    async def placed() -> list[str]:
        found = placed_attempts(await call_of(api, sid))
        return found if len(found) >= count else []

    return await eventually(placed, what=f"{count} attempt(s) on record")  # type: ignore[no-any-return]


async def answered_by_agent(api: Api, console: Api, contact_id: int) -> None:
    offer = await offer_for(console, contact_id)
    expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)


@pytest.mark.usefixtures("ready")
class TestCallback:
    async def test_a_callback_is_placed_and_bridged_after_an_agent_accepts(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio
    ) -> None:
        _, console = await complaints_agent(api, endpoint=AGENT_ENDPOINT)
        phone, contact_id = await callback_requested(api, client)
        assert twilio_api.requests == []  # nothing is placed before an agent answers
        await answered_by_agent(api, console, contact_id)
        [placed] = await twilio_api.received(1, within=5)
        assert placed.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
        assert (placed.form["To"], placed.form["From"]) == (STRANGER, HOTLINE)
        dial = [v for v in verbs(placed.form["Twiml"]) if v.name == "Dial"]
        assert [(n.name, n.text) for n in dial[0].children] == [("Client", "agent7")]
        assert attempt_of(placed) == 1
        sid = "CA" + "f" * 32
        for status in ("ringing", "in-progress", "in-progress", "completed"):
            await report(client, placed, sid, status)
        path = results(await call_of(api, phone.sid))
        assert path.count("callback_placed") == 1
        assert path.count("callback_answered") == 1
        assert len(twilio_api.requests) == 1  # answered: never placed again
        contact = expect(await api.get(f"/api/v1/contacts/{contact_id}"), 200)
        assert contact["status"] == "connected"  # the agent's conversation now

    async def test_an_unanswered_callback_is_retried_then_ends_unreachable(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio
    ) -> None:
        agent_id, console = await complaints_agent(api, endpoint=AGENT_ENDPOINT)
        phone, contact_id = await callback_requested(api, client)
        await answered_by_agent(api, console, contact_id)
        [first] = await twilio_api.received(1, within=5)
        await report(client, first, "CA" + "1" * 32, "no-answer")
        await report(client, first, "CA" + "1" * 32, "no-answer")  # delivered twice
        [_, second] = await twilio_api.received(2, within=5)
        assert attempt_of(second) == 2
        await report(client, first, "CA" + "1" * 32, "busy")  # a late report of attempt 1
        await report(client, second, "CA" + "2" * 32, "busy")
        [*_, third] = await twilio_api.received(3, within=5)
        assert attempt_of(third) == 3
        await report(client, third, "CA" + "3" * 32, "no-answer")

        async def completed() -> dict[str, Any] | None:
            found = expect(await api.get(f"/api/v1/contacts/{contact_id}"), 200)
            return found if found["status"] == "completed" else None

        contact = await eventually(completed, what="the callback contact to complete")
        assert contact["disposition"] == "callback_unreachable"
        assert len(twilio_api.requests) == 3  # callback_attempts, not one more
        path = results(await call_of(api, phone.sid))
        assert path.count("callback_placed") == 3
        assert path.count("callback_unanswered") == 3
        assert path.count("callback_unreachable") == 1
        agent = expect(await api.get(f"/api/v1/agents/{agent_id}"), 200)
        assert agent["status"] == "available"  # free for the next contact

    async def test_a_provider_refusing_to_place_the_call_counts_as_an_attempt(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio
    ) -> None:
        _, console = await complaints_agent(api, endpoint=AGENT_ENDPOINT)
        phone, contact_id = await callback_requested(api, client)
        twilio_api.fail_next(500, 500, 500)
        await answered_by_agent(api, console, contact_id)

        async def unreachable() -> bool:
            return "callback_unreachable" in results(await call_of(api, phone.sid))

        await eventually(unreachable, within=20, what="the callback given up")
        path = results(await call_of(api, phone.sid))
        assert path.count("callback_failed") == 3
        contact = expect(await api.get(f"/api/v1/contacts/{contact_id}"), 200)
        assert (contact["status"], contact["disposition"]) == ("completed", "callback_unreachable")
        # Each refused (on a loaded machine one may time out before it reaches the fake
        # provider, which fails it the same), none placed beyond the attempts.
        assert 0 < len(twilio_api.requests) <= 3
        assert "callback_placed" not in path


@dataclass
class Unreported:
    """A callback whose first attempt was placed through Twilio and never reported; the
    check run as the timer worker runs it, at a moment of the test's choosing."""

    app: FastAPI
    api: Api
    twilio: FakeTwilio
    sid: str  # the caller's call
    contact_id: int
    console: Api  # the agent who accepted the callback

    async def _one(self, sql: str, **params: Any) -> Any:
        async with self.app.state.engine.connect() as conn:
            return await conn.scalar(text(sql), params)

    async def call_id(self) -> int:
        return int(await self._one("SELECT id FROM ivr_calls WHERE call_ref = :sid", sid=self.sid))

    async def due(self, kind: str) -> datetime | None:
        """When the call's timer of ``kind`` is due, if one is set."""
        found = await self._one(
            "SELECT due_at FROM timers WHERE kind = :kind AND subject = :subject",
            kind=kind,
            subject=str(await self.call_id()),
        )
        return found if isinstance(found, datetime) else None

    async def check_due(self) -> datetime | None:
        return await self.due(callbacks.CALLBACK_CHECK)

    async def placed(self, attempt: int) -> str:
        """The sid Twilio gave the call placed for ``attempt``."""
        for entry in (await call_of(self.api, self.sid))["path"]:
            if entry["result"] == "callback_placed" and entry["attempt"] == str(attempt):
                return str(entry["call_ref"])
        raise AssertionError(f"attempt {attempt} was not placed")

    async def check(self, at: datetime) -> None:
        """The check fired at ``at``: its transaction, then its asking after the commit."""
        sessionmaker = self.app.state.sessionmaker
        async with unit_of_work(sessionmaker) as session:
            outside = collect_outside(session)
            call_id = await self.call_id()
            settings = self.app.state.settings
            await callbacks.check(session, call_id=call_id, settings=settings, now=at)
        await run_outside(sessionmaker, outside, "the check")

    async def path(self) -> list[dict[str, Any]]:
        return list((await call_of(self.api, self.sid))["path"])


@pytest.fixture
async def unreported(
    app: FastAPI, api: Api, client: AsyncClient, twilio_api: FakeTwilio
) -> Unreported:
    _, console = await complaints_agent(api, endpoint=AGENT_ENDPOINT)
    phone, contact_id = await callback_requested(api, client)
    await answered_by_agent(api, console, contact_id)
    await twilio_api.received(1, within=5)
    await on_record(api, phone.sid)
    return Unreported(app, api, twilio_api, phone.sid, contact_id, console)


@pytest.mark.usefixtures("ready")
class TestAReportThatNeverComes:
    async def test_an_attempt_is_asked_after_once_its_report_is_overdue(
        self, unreported: Unreported
    ) -> None:
        due = await unreported.check_due()
        assert due is not None
        [placed_at] = [e["at"] for e in await unreported.path() if e["result"] == "callback_placed"]
        assert due - datetime.fromisoformat(placed_at) == timedelta(
            seconds=callbacks.REPORT_WITHIN_S
        )
        sid = await unreported.placed(1)
        unreported.twilio.statuses[sid] = "no-answer"
        await unreported.check(due)
        assert unreported.twilio.fetched() == [sid]
        path = await unreported.path()
        asked = next(e for e in path if e["result"] == "callback_asked")
        assert (asked["attempt"], asked["status"]) == ("1", "no-answer")
        assert [e["result"] for e in path].count("callback_unanswered") == 1
        # Unanswered: the next attempt is due after the retry wait (none here).
        retry_s = unreported.app.state.settings.callback_retry_s
        assert await unreported.due(callbacks.CALLBACK_RETRY) == due + timedelta(seconds=retry_s)

    async def test_an_answered_attempt_found_by_asking_is_not_placed_again(
        self, unreported: Unreported
    ) -> None:
        sid = await unreported.placed(1)  # Twilio says in-progress: the customer answered
        due = await unreported.check_due()
        assert due is not None
        await unreported.check(due)
        assert "callback_answered" in [e["result"] for e in await unreported.path()]
        assert await unreported.check_due() is None  # nothing more to ask
        assert [r.path for r in unreported.twilio.requests if r.method == "POST"] == [
            f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
        ]
        assert unreported.twilio.fetched() == [sid]

    async def test_a_call_twilio_does_not_know_counts_as_failed(
        self, unreported: Unreported
    ) -> None:
        sid = await unreported.placed(1)
        unreported.twilio.statuses[sid] = None
        due = await unreported.check_due()
        assert due is not None
        await unreported.check(due)
        path = await unreported.path()
        asked = next(e for e in path if e["result"] == "callback_asked")
        assert asked["status"] == "not-found"
        unanswered = next(e for e in path if e["result"] == "callback_unanswered")
        assert unanswered["detail"] == "failed"

    async def test_a_call_still_ringing_or_twilio_unreachable_is_asked_after_again_later(
        self, unreported: Unreported
    ) -> None:
        sid = await unreported.placed(1)
        unreported.twilio.statuses[sid] = "ringing"
        first = await unreported.check_due()
        assert first is not None
        await unreported.check(first)
        assert await unreported.check_due() == first + timedelta(seconds=callbacks.REPORT_WITHIN_S)
        unreported.twilio.fail_next(503)
        await unreported.check(first + timedelta(seconds=callbacks.REPORT_WITHIN_S))
        statuses = [e["status"] for e in await unreported.path() if e["result"] == "callback_asked"]
        assert statuses == ["ringing", "unreachable"]
        assert "callback_unanswered" not in [e["result"] for e in await unreported.path()]
        assert await unreported.check_due() is not None

    async def test_a_reported_attempt_is_not_asked_after(
        self, unreported: Unreported, client: AsyncClient
    ) -> None:
        [placed] = unreported.twilio.requests
        await report(client, placed, await unreported.placed(1), "in-progress")
        assert await unreported.check_due() is None
        await unreported.check(datetime.now(UTC) + timedelta(hours=1))  # fired all the same
        assert unreported.twilio.fetched() == []
        assert "callback_asked" not in [e["result"] for e in await unreported.path()]

    async def test_checks_stop_once_the_agent_ends_the_contact(
        self, unreported: Unreported
    ) -> None:
        completed = f"/api/v1/contacts/{unreported.contact_id}/complete"
        expect(await unreported.console.post(completed, {}), 200)
        await unreported.check(datetime.now(UTC) + timedelta(hours=1))
        assert unreported.twilio.fetched() == []


class TestTheCallbackWebhookRefuses:
    async def test_an_unsigned_report_is_403_and_one_without_the_attempt_is_422(
        self, client: AsyncClient, twilio_api: FakeTwilio
    ) -> None:
        url = f"{PUBLIC}/telephony/twilio/callback?call=1&attempt=1"
        params = {"AccountSid": ACCOUNT, "CallSid": "CA" + "9" * 32, "CallStatus": "busy"}
        unsigned = await post_twilio(client, url, params, signature="not-a-signature")
        assert unsigned.status_code == 403
        bare = f"{PUBLIC}/telephony/twilio/callback?call=1"
        missing = await post_twilio(client, bare, params)
        assert missing.status_code == 422
        assert "attempt" in missing.text
        unknown = await post_twilio(client, url, params)  # signed, for no call Hotline placed
        assert unknown.status_code == 200
        assert twilio_api.requests == []


@asynccontextmanager
async def placing_held(
    api: Api, client: AsyncClient, twilio_api: FakeTwilio
) -> AsyncIterator[TwilioCall]:
    """A callback an agent accepts while Twilio holds the first attempt's placing
    unanswered; Twilio answers when the block ends, however it ends."""
    _, console = await complaints_agent(api, endpoint=AGENT_ENDPOINT)
    phone, contact_id = await callback_requested(api, client)
    twilio_api.answering.clear()
    try:
        await answered_by_agent(api, console, contact_id)
        await twilio_api.received(1, within=10)  # the attempt, not answered yet
        yield phone
    finally:
        twilio_api.answering.set()


@pytest.mark.usefixtures("ready")
class TestASlowProviderPlacing:
    """An attempt is placed, and an overdue one asked after, with no transaction open: one
    would hold back every reader of the event feed (consoles, wallboards) while Twilio
    answers, as the feed waits for the oldest open transaction."""

    @pytest.fixture
    def settings(self, db: str, twilio_api: FakeTwilio) -> Settings:
        # Twilio may take its time: an attempt waits for it far longer than the test does.
        return live.live_settings(db, twilio_api, twilio_api_timeout_s=50.0)

    async def test_the_event_feed_moves_on_while_twilio_is_slow_to_place_an_attempt(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio
    ) -> None:
        chats = await acd.queue(api, channels=["chat"])
        async with placing_held(api, client, twilio_api) as phone:
            await live.feed_moves_on(api, chats["name"])
            assert placed_attempts(await call_of(api, phone.sid)) == []
        assert await on_record(api, phone.sid) == ["1"]

    async def test_the_calls_record_shows_the_attempt_being_placed_until_it_is_recorded(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio
    ) -> None:
        async with placing_held(api, client, twilio_api) as phone:
            call = await call_of(api, phone.sid)
            shown = call["in_flight"]
            assert (shown["request"], shown["attempt"]) == ("callback", 1)
            # The lease: the provider's timeout (50 s here) and the margin, from its placing.
            assert datetime.fromisoformat(shown["until"]) > datetime.fromisoformat(
                call["started_at"]
            ) + timedelta(seconds=50)
        assert await on_record(api, phone.sid) == ["1"]
        assert (await call_of(api, phone.sid))["in_flight"] is None

    async def test_a_report_come_before_the_attempt_is_recorded_shows_it_placed(
        self, api: Api, client: AsyncClient, twilio_api: FakeTwilio
    ) -> None:
        """Twilio may report on the call it placed before its answer to the placing is
        recorded: the report is not taken for a late one and lost."""
        sid = "CA" + "b" * 32
        async with placing_held(api, client, twilio_api) as phone:
            [first] = twilio_api.requests
            await report(client, first, sid, "busy")
            call = await call_of(api, phone.sid)
            placed = [e for e in call["path"] if e["result"] == "callback_placed"]
            assert [(e["attempt"], e["call_ref"]) for e in placed] == [("1", sid)]
            assert "callback_unanswered" in results(call)
        # Unanswered: the second attempt follows; Twilio's late answer to the first changes
        # nothing.
        [_, second] = await twilio_api.received(2, within=10)
        assert attempt_of(second) == 2
        assert await on_record(api, phone.sid, 2) == ["1", "2"]

    async def test_an_attempt_that_outlived_its_lease_unrecorded_is_placed_again(
        self, app: FastAPI, api: Api, client: AsyncClient, twilio_api: FakeTwilio
    ) -> None:
        """Its instance died while Twilio answered, say: the backstop places the attempt
        again once the lease has run out, and the first answer, come late, is not recorded
        over the second's."""
        async with placing_held(api, client, twilio_api) as phone:
            async with app.state.engine.begin() as conn:
                await conn.execute(
                    text(
                        "UPDATE ivr_calls SET placing_until = now() - interval '1 second'"
                        " WHERE call_ref = :sid"
                    ),
                    {"sid": phone.sid},
                )
                await conn.execute(
                    text("UPDATE timers SET due_at = now() WHERE kind = :k"),
                    {"k": callbacks.CALLBACK_RETRY},
                )
            app.state.timer_worker.poke()
            [first, again] = await twilio_api.received(2, within=10)
            assert (attempt_of(first), attempt_of(again)) == (1, 1)
        assert await on_record(api, phone.sid) == ["1"]
        [entry] = [e for e in (await call_of(api, phone.sid))["path"] if "call_ref" in e]
        assert entry["call_ref"] == "CA" + f"{2:032x}", "the first answer was recorded"

    async def test_no_transaction_holds_the_call_while_twilio_is_asked_after_an_attempt(
        self, app: FastAPI, unreported: Unreported, twilio_api: FakeTwilio
    ) -> None:
        due = await unreported.check_due()
        assert due is not None
        twilio_api.answering.clear()
        checking = asyncio.create_task(unreported.check(due))
        try:
            await twilio_api.received(2, within=10)  # asked, not answered yet
            async with app.state.engine.begin() as conn:  # the call's row is free: no wait
                await conn.execute(text("SET LOCAL lock_timeout = '2s'"))
                await conn.execute(
                    text("SELECT id FROM ivr_calls WHERE call_ref = :sid FOR UPDATE"),
                    {"sid": unreported.sid},
                )
        finally:
            twilio_api.answering.set()
            await checking
        asked = [e for e in await unreported.path() if e["result"] == "callback_asked"]
        assert [(e["attempt"], e["status"]) for e in asked] == [("1", "in-progress")]
        assert "callback_answered" in [e["result"] for e in await unreported.path()]
