"""The wait loop: each turn tells the queued caller where they stand, plays the hold music
once and comes back; the position told never goes backwards, not even when the contact moves
to a queue where more callers wait ahead of it."""

# ruff: noqa: RUF001 (Chinese text uses full-width punctuation)

from __future__ import annotations

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text

from app.db import unit_of_work
from app.ivr import waiting
from app.ivr.models import Provider
from app.routing import service as routing
from app.routing.models import Contact
from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually
from tests.ivr import live
from tests.ivr.live import (
    STRANGER,
    call_of,
    complaints_agent,
    menus_to,
)
from tests.ivr.telephony import HOTLINE, TwilioCall, centre, said, upload, verbs
from tests.routing.acd import available_agent

PLATINUM = "+8613800000001"  # the centre's platinum customer

# The live-call app (IVR handlers registered, the fake Twilio API) for every test here.
app, settings, twilio_api = live.app, live.settings, live.twilio_api


@pytest.fixture
async def ready(api: Api) -> None:
    await centre(api)
    await upload(api, "complaint_hotline_95561")


async def queued(api: Api, client: AsyncClient, caller: str) -> tuple[TwilioCall, int]:
    phone = TwilioCall(client, caller, HOTLINE)
    await menus_to(phone, "0")
    assert phone.waiting(), phone.last
    return phone, int((await call_of(api, phone.sid))["contact_id"])


def shape(document: str) -> list[str]:
    return [verb.name for verb in verbs(document)]


@pytest.mark.usefixtures("ready")
class TestTheWaitLoop:
    async def test_each_turn_is_the_position_the_music_once_and_back(
        self, api: Api, client: AsyncClient
    ) -> None:
        first, _ = await queued(api, client, "+8613911110001")
        second, _ = await queued(api, client, "+8613911110002")
        turn = await second.redirect()
        assert said(turn)[0] == "您前面还有1位客户，您现在排在第2位。"
        assert shape(turn)[-2:] == ["Play", "Redirect"]
        assert shape(turn).count("Play") == 1  # a bounded turn: then back to Hotline
        assert (await first.status("completed")).status_code == 200  # the first hangs up
        turn = await second.redirect()
        assert said(turn) == ["您现在排在第一位。"]

    async def test_the_position_told_never_goes_back_when_the_contact_moves_queues(
        self, api: Api, client: AsyncClient
    ) -> None:
        for number in ("+8613922220001", "+8613922220002", "+8613922220003"):
            body = {"channel": "voice", "queue": "general", "customer": {"phone": number}}
            expect(await api.post("/api/v1/contacts", body), 201)  # earlier than the caller
        phone, contact_id = await queued(api, client, STRANGER)
        assert said(await phone.redirect()) == ["您现在排在第一位。"]
        moved = await api.post(f"/api/v1/contacts/{contact_id}/transfer", {"queue": "general"})
        assert expect(moved, 200)["queue"] == "general"
        # Three callers wait ahead in "general": the caller is still told the first place.
        turn = await phone.redirect()
        assert said(turn) == ["您现在排在第一位。"], said(turn)
        assert shape(turn) == ["Say", "Play", "Redirect"]
        # Hanging up now abandons the contact that continues the caller's, in "general".
        assert (await phone.status("completed")).status_code == 200
        successor = expect(await api.get(f"/api/v1/contacts/{moved.json()['id']}"), 200)
        assert successor["status"] == "abandoned"

    async def test_a_caller_being_offered_hears_an_agent_is_coming(
        self, api: Api, client: AsyncClient
    ) -> None:
        await complaints_agent(api)
        phone, contact_id = await queued(api, client, STRANGER)

        async def offered() -> bool:
            found = expect(await api.get(f"/api/v1/contacts/{contact_id}"), 200)
            return bool(found["status"] == "offered")

        await eventually(offered, what="the contact offered")
        assert said(await phone.redirect()) == ["正在为您接通客服代表，请稍候。"]


@pytest.mark.usefixtures("ready")
class TestTheTurnCountsAsRoutingCounts:
    """The wait turn reads the caller's place and the estimate's inputs in one statement of
    its own: they must be routing's figures (``routing.service.announce``) for the same
    contact, or the caller and the agents' pages would disagree."""

    async def test_position_and_estimate_are_routings(
        self, api: Api, client: AsyncClient, app: FastAPI
    ) -> None:
        ahead = [
            await api.post("/api/v1/contacts", {"channel": "voice", "queue": "complaints"})
            for _ in range(2)
        ]
        phone, contact_id = await queued(api, client, STRANGER)
        behind = await api.post("/api/v1/contacts", {"channel": "voice", "queue": "complaints"})
        done = [expect(r, 201)["id"] for r in (*ahead, behind)]
        # Answered earlier and completed: six within the last hour (the queue's recent
        # handle times), one hours ago, long, which the estimate must leave out.
        handled = {600: 60, 700: 90, 800: 120, 900: 150, 1000: 180, 1100: 240, 4 * 3600: 3000}
        extra = [
            expect(
                await api.post("/api/v1/contacts", {"channel": "voice", "queue": "complaints"}),
                201,
            )["id"]
            for _ in handled
        ]
        async with unit_of_work(app.state.sessionmaker) as session:
            for contact, (answered_ago, took) in zip(extra, handled.items(), strict=True):
                await session.execute(
                    text(
                        "UPDATE contacts SET status = 'completed', "
                        "answered_at = now() - make_interval(secs => :ago), "
                        "completed_at = now() - make_interval(secs => :ago - :took) "
                        "WHERE id = :id"
                    ),
                    {"id": contact, "ago": answered_ago, "took": took},
                )
            # One of the two ahead of the caller leaves: they move up to second place.
            await session.execute(
                text("UPDATE contacts SET status = 'abandoned' WHERE id = :id"), {"id": done[0]}
            )
        # Available on voice, without the queue's skill: staffed, never offered the caller.
        await available_agent(api, skills=[], capacity={"voice": 1})
        # The turn first: routing's own announcement lowers the position kept on the contact,
        # which would hide a turn that counted too many.
        async with unit_of_work(app.state.sessionmaker) as session:
            turn = await waiting.turn(session, Provider.twilio, phone.sid)
        async with unit_of_work(app.state.sessionmaker) as session:
            contact = await session.get(Contact, contact_id)
            assert contact is not None
            position, estimate = await routing.announce(session, contact)
        assert turn is not None
        assert estimate is not None
        assert position == 2
        assert (turn.standing, turn.position, turn.estimated_wait_s) == (
            waiting.Standing.WAITING,
            position,
            estimate.seconds,
        )
        # second place, one agent, the six recent handle times' mean (140 s)
        assert estimate.seconds == 2 * 140
        # A platinum customer joins ahead: routing counts the caller third now, but tells
        # (and estimates from) the second place it told before; so must the turn.
        vip = {"channel": "voice", "queue": "complaints", "customer": {"phone": PLATINUM}}
        expect(await api.post("/api/v1/contacts", vip), 201)
        async with unit_of_work(app.state.sessionmaker) as session:
            turn = await waiting.turn(session, Provider.twilio, phone.sid)
        assert turn is not None
        assert (turn.position, turn.estimated_wait_s) == (2, 2 * 140)

    async def test_the_place_is_the_order_the_caller_is_served_in(
        self, api: Api, client: AsyncClient, app: FastAPI
    ) -> None:
        """The dispatcher serves by deadline, then id: a contact of the same deadline that
        arrived later by the clock but came in first (a transfer keeps its first arrival)
        is still ahead, and the caller is not told the same place as it."""
        ahead = expect(
            await api.post("/api/v1/contacts", {"channel": "voice", "queue": "complaints"}), 201
        )["id"]
        phone, contact_id = await queued(api, client, STRANGER)
        async with unit_of_work(app.state.sessionmaker) as session:
            await session.execute(
                text(
                    "UPDATE contacts SET deadline_at = now() + interval '1 hour',"
                    " enqueued_at = now() - make_interval(secs => id - :ahead),"
                    " announced_position = NULL WHERE id = ANY(:ids)"
                ),
                {"ahead": ahead, "ids": [ahead, contact_id]},
            )
            await session.execute(text("UPDATE ivr_calls SET announced_position = NULL"))
        async with unit_of_work(app.state.sessionmaker) as session:
            turn = await waiting.turn(session, Provider.twilio, phone.sid)
        assert turn is not None
        assert (turn.standing, turn.position) == (waiting.Standing.WAITING, 2)
