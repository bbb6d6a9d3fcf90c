"""The caller's way through the IVR, shown with their contact (``GET /contacts/{id}/ivr``): the
agent who takes the call sees what the caller chose, as whoever may read the contact may."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient

from app.customers.identity import mask_phone
from tests.fixtures.factories import Api, expect
from tests.ivr import live
from tests.ivr.live import STRANGER, accept, call_of, complaints_agent
from tests.ivr.telephony import HOTLINE, TwilioCall, centre, upload

app, settings, twilio_api = live.app, live.settings, live.twilio_api


@pytest.fixture
async def ready(api: Api) -> None:
    await centre(api)
    await upload(api, "complaint_hotline_95561")


async def queued(client: AsyncClient, api: Api, *, english_by_voice: bool = False) -> int:
    """An unknown caller who chooses a language and asks for an agent: their contact."""
    phone = TwilioCall(client, STRANGER, HOTLINE)
    await phone.start()
    await (phone.say("English please") if english_by_voice else phone.press("1"))
    await phone.press("0")
    assert phone.waiting(), phone.last
    return int((await call_of(api, phone.sid))["contact_id"])


def path_of(api_answer: dict[str, Any]) -> list[tuple[str | None, str, dict[str, str] | None]]:
    return [(s["node"], s["result"], s["choice"]) for s in api_answer["path"]]


@pytest.mark.usefixtures("ready")
class TestTheAgentSeesHowTheCallerCame:
    async def test_the_agent_who_took_the_call_sees_the_choices_and_a_masked_number(
        self, api: Api, client: AsyncClient
    ) -> None:
        _, console = await complaints_agent(api)
        contact_id = await queued(client, api)
        await accept(console, contact_id)

        seen = expect(await console.get(f"/api/v1/contacts/{contact_id}/ivr"), 200)

        assert seen["flow"] == "complaint_hotline_95561"
        assert seen["language"] == "zh-CN"
        assert seen["contact_id"] == contact_id
        assert seen["caller"] == mask_phone(STRANGER) != STRANGER
        steps = path_of(seen)
        assert ("language", "option", {"zh-CN": "中文", "en-US": "chinese"}) in steps
        assert ("main", "operator", None) in steps  # 0 is the operator key, not an option
        assert seen["outcome"] == "enqueued"

    async def test_a_spoken_choice_is_named_too(self, api: Api, client: AsyncClient) -> None:
        contact_id = await queued(client, api, english_by_voice=True)

        seen = expect(await api.get(f"/api/v1/contacts/{contact_id}/ivr"), 200)

        assert ("language", "option", {"zh-CN": "英文", "en-US": "english"}) in path_of(seen)
        assert seen["language"] == "en-US"

    async def test_a_supervisor_sees_the_number_in_full(
        self, api: Api, client: AsyncClient
    ) -> None:
        contact_id = await queued(client, api)

        seen = expect(await api.get(f"/api/v1/contacts/{contact_id}/ivr"), 200)

        assert seen["caller"] == STRANGER

    async def test_an_agent_the_contact_never_reached_gets_the_contacts_404(
        self, api: Api, client: AsyncClient
    ) -> None:
        contact_id = await queued(client, api)
        stranger = await api.signed_in_as(await api.agent())

        refused = expect(await stranger.get(f"/api/v1/contacts/{contact_id}/ivr"), 404)
        read = expect(await stranger.get(f"/api/v1/contacts/{contact_id}"), 404)

        assert refused["detail"] == read["detail"] == f"contact {contact_id} does not exist"

    async def test_a_transferred_contact_shows_the_call_that_queued_the_first(
        self, api: Api, client: AsyncClient
    ) -> None:
        contact_id = await queued(client, api)
        moved = expect(
            await api.post(f"/api/v1/contacts/{contact_id}/transfer", {"queue": "general"}), 200
        )
        assert moved["id"] != contact_id

        seen = expect(await api.get(f"/api/v1/contacts/{moved['id']}/ivr"), 200)

        assert seen["contact_id"] == contact_id
        assert ("language", "option", {"zh-CN": "中文", "en-US": "chinese"}) in path_of(seen)


@pytest.mark.usefixtures("ready")
class TestContactsWithoutAPath:
    async def test_a_chat_has_no_path_and_the_404_says_so(self, api: Api) -> None:
        chat = expect(
            await api.post("/api/v1/contacts", {"queue": "general", "channel": "chat"}), 201
        )

        refused = expect(await api.get(f"/api/v1/contacts/{chat['id']}/ivr"), 404)

        assert "did not come through the IVR" in refused["detail"]

    async def test_a_contact_that_does_not_exist_is_the_contacts_404(self, api: Api) -> None:
        refused = expect(await api.get("/api/v1/contacts/987654321/ivr"), 404)

        assert refused["detail"] == "contact 987654321 does not exist"

    async def test_an_id_that_is_no_contact_id_is_a_422(self, api: Api) -> None:
        expect(await api.get("/api/v1/contacts/0/ivr"), 422)
