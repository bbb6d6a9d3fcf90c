"""The wait loop: each turn tells the queued caller where they stand, plays the hold music
once and comes back; the position told never goes backwards, not even when the contact moves
to a queue where more callers wait ahead of it."""

# ruff: noqa: RUF001 (Chinese text uses full-width punctuation)

from __future__ import annotations

import pytest
from httpx import AsyncClient

from tests.fixtures.factories import Api, expect
from tests.ivr import live
from tests.ivr.live import (
    STRANGER,
    call_of,
    complaints_agent,
    menus_to,
)
from tests.ivr.telephony import HOTLINE, TwilioCall, centre, said, upload, verbs
from tests.routing.acd import eventually

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
