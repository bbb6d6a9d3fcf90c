"""The generic JSON adapter: signed events in, actions out (API.md), replays refused."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.factories import Api, expect
from tests.ivr.conftest import Clock
from tests.ivr.telephony import CARDS_NUMBER, HOTLINE, JsonProvider, centre, json_signature, upload

PLATINUM_PHONE = "+8613800000001"
STRANGER = "+8613912345678"


@pytest.fixture
async def provider(api: Api, client: AsyncClient, clock: Clock) -> JsonProvider:
    await centre(api)
    await upload(api, "credit_card_centre")
    await upload(api, "complaint_hotline_95561")
    return JsonProvider(client, clock.now)


def incoming(caller: str = PLATINUM_PHONE, called: str = CARDS_NUMBER) -> dict[str, Any]:
    return {"event": "incoming", "from": caller, "to": called}


def verbs_of(answer: dict[str, Any]) -> list[str]:
    return [next(iter(action)) for action in answer["actions"]]


async def calls(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM ivr_calls"))).scalar_one())


class TestACall:
    async def test_a_known_caller_is_asked_the_menu_then_enqueued_with_a_position(
        self, api: Api, provider: JsonProvider
    ) -> None:
        first = expect(await provider.send("call-1", incoming()), 200)
        assert (first["call_id"], first["step"], first["status"]) == ("call-1", 1, "in_ivr")
        assert verbs_of(first) == ["say", "say", "gather"]  # the menu, the language key's offer
        gather = first["actions"][2]["gather"]
        assert (gather["num_digits"], gather["speech"], gather["language"]) == (1, True, "zh-CN")
        assert [a["language"] for a in first["actions"][:2]] == ["zh-CN", "en-US"]
        second = expect(
            await provider.send("call-1", {"event": "digits", "digits": "1", "step": 1}), 200
        )
        assert verbs_of(second) == ["say", "enqueue"]
        queued = second["actions"][1]["enqueue"]
        assert (queued["queue"], queued["position"]) == ("credit-cards", 1)
        contact = expect(await api.get(f"/api/v1/contacts/{queued['contact_id']}"), 200)
        assert (contact["tier"], contact["channel"]) == ("platinum", "voice")
        assert second["status"] == "queued"

    async def test_a_caller_behind_another_is_told_routings_position(
        self, api: Api, provider: JsonProvider
    ) -> None:
        ahead = {"channel": "voice", "queue": "credit-cards", "customer": {"phone": PLATINUM_PHONE}}
        for _ in range(2):
            expect(await api.post("/api/v1/contacts", ahead), 201)
        expect(await provider.send("call-5", incoming()), 200)
        second = expect(await provider.send("call-5", {"event": "digits", "digits": "1"}), 200)
        queued = second["actions"][1]["enqueue"]
        contact = expect(await api.get(f"/api/v1/contacts/{queued['contact_id']}"), 200)
        assert queued["position"] == contact["position"] == 3

    async def test_a_hangup_while_queued_abandons_the_contact(
        self, api: Api, provider: JsonProvider
    ) -> None:
        expect(await provider.send("call-2", incoming()), 200)
        queued = expect(await provider.send("call-2", {"event": "digits", "digits": "1"}), 200)
        contact_id = queued["actions"][1]["enqueue"]["contact_id"]
        ended = expect(await provider.send("call-2", {"event": "hangup"}), 200)
        assert (ended["status"], ended["actions"]) == ("ended", [])
        assert expect(await api.get(f"/api/v1/contacts/{contact_id}"), 200)["status"] == "abandoned"

    async def test_silence_is_no_input_and_ends_politely_after_the_tries(
        self, provider: JsonProvider
    ) -> None:
        answer = expect(await provider.send("call-3", incoming()), 200)
        for _ in range(10):
            if "gather" not in verbs_of(answer):
                break
            event = {"event": "no_input", "step": answer["step"]}
            answer = expect(await provider.send("call-3", event), 200)
        assert verbs_of(answer)[-2:] == ["say", "hangup"]
        assert answer["status"] == "ended"

    async def test_the_same_step_again_gets_the_same_answer(self, provider: JsonProvider) -> None:
        expect(await provider.send("call-4", incoming(STRANGER)), 200)
        event = {"event": "digits", "digits": "1", "step": 1}
        first = await provider.send("call-4", event)
        # signed afresh a second later: a retry, not a replay
        provider.now += timedelta(seconds=1)
        again = await provider.send("call-4", event)
        assert again.status_code == 200
        assert again.json() == first.json()
        assert first.json()["step"] == 2

    async def test_the_same_idempotency_key_is_the_same_event(self, provider: JsonProvider) -> None:
        expect(await provider.send("call-5", incoming(STRANGER)), 200)
        event = {"event": "digits", "digits": "1"}
        first = await provider.send("call-5", event, headers={"Idempotency-Key": "k-1"})
        provider.now += timedelta(seconds=1)
        again = await provider.send("call-5", event, headers={"Idempotency-Key": "k-1"})
        assert again.json() == first.json()


class TestRefusals:
    async def test_a_replayed_request_is_refused(
        self, client: AsyncClient, provider: JsonProvider, engine: AsyncEngine
    ) -> None:
        body = json.dumps(incoming()).encode()
        headers = provider.headers(body)
        url = "/telephony/calls/call-9/events"
        assert (await client.post(url, content=body, headers=headers)).status_code == 200
        replayed = await client.post(url, content=body, headers=headers)
        assert replayed.status_code == 403
        assert "used before" in replayed.json()["detail"]

    async def test_two_calls_sending_the_same_event_in_the_same_second_are_both_taken(
        self, api: Api, provider: JsonProvider
    ) -> None:
        """The signature covers the body, which need not name the call: the same signature
        for another call is another request, not a replay."""
        expect(await provider.send("call-14", incoming()), 200)
        expect(await provider.send("call-15", incoming(caller=STRANGER)), 200)
        press = {"event": "digits", "digits": "1", "step": 1}
        for call_id in ("call-14", "call-15"):
            pressed = expect(await provider.send(call_id, press), 200)
            assert pressed["step"] == 2, pressed  # taken, not refused as a replay
        for call_id in ("call-14", "call-15"):
            expect(await provider.send(call_id, {"event": "hangup"}), 200)
            call = expect(await api.get(f"/api/v1/ivr/calls/{call_id}"), 200)
            assert call["status"] == "ended"

    async def test_a_body_naming_another_call_than_the_url_is_refused(
        self, provider: JsonProvider, engine: AsyncEngine
    ) -> None:
        """A provider that names the call in the body has the signature cover it: a request
        captured for one call cannot be sent for another."""
        meant = {**incoming(), "call": "call-16"}
        elsewhere = await provider.send("call-17", meant)
        assert elsewhere.status_code == 422, elsewhere.text
        assert [f["field"] for f in elsewhere.json()["fields"]] == ["call"]
        assert await calls(engine) == 0
        expect(await provider.send("call-16", meant), 200)

    async def test_a_request_signed_more_than_five_minutes_ago_is_refused(
        self, provider: JsonProvider, engine: AsyncEngine, clock: Clock
    ) -> None:
        stale = await provider.send("call-10", incoming(), at=clock.now - timedelta(seconds=301))
        assert stale.status_code == 403, stale.text
        assert await calls(engine) == 0
        fresh = await provider.send("call-10", incoming(), at=clock.now - timedelta(seconds=299))
        assert fresh.status_code == 200

    async def test_a_wrong_or_missing_signature_is_refused(
        self, client: AsyncClient, provider: JsonProvider, engine: AsyncEngine
    ) -> None:
        body = json.dumps(incoming()).encode()
        headers = provider.headers(body)
        url = "/telephony/calls/call-11/events"
        tampered = json.dumps(incoming(caller=STRANGER)).encode()
        assert (await client.post(url, content=tampered, headers=headers)).status_code == 403
        wrong = {
            **headers,
            "X-Hotline-Signature": json_signature(headers["X-Hotline-Timestamp"], body, "other"),
        }
        assert (await client.post(url, content=body, headers=wrong)).status_code == 403
        bare = {"Content-Type": "application/json"}
        assert (await client.post(url, content=body, headers=bare)).status_code == 403
        assert await calls(engine) == 0

    async def test_a_signed_body_that_does_not_parse_is_a_422_naming_the_field(
        self, provider: JsonProvider
    ) -> None:
        answer = await provider.send("call-12", {"event": "ring", "from": PLATINUM_PHONE})
        assert answer.status_code == 422, answer.text
        assert [f["field"] for f in answer.json()["fields"]] == ["event"]
        missing = await provider.send("call-12", {"event": "incoming", "from": PLATINUM_PHONE})
        assert missing.status_code == 422
        assert [f["field"] for f in missing.json()["fields"]] == ["to"]

    async def test_an_unknown_call_is_a_404_and_an_ended_call_a_409(
        self, provider: JsonProvider
    ) -> None:
        unknown = await provider.send("nobody", {"event": "digits", "digits": "1"})
        assert unknown.status_code == 404
        expect(await provider.send("call-13", incoming()), 200)
        expect(await provider.send("call-13", {"event": "hangup"}), 200)
        late = await provider.send("call-13", {"event": "digits", "digits": "1"})
        assert late.status_code == 409
        assert "ended" in late.json()["detail"]

    async def test_a_step_the_call_has_not_reached_is_a_409(self, provider: JsonProvider) -> None:
        expect(await provider.send("call-14", incoming()), 200)
        ahead = await provider.send("call-14", {"event": "digits", "digits": "1", "step": 5})
        assert ahead.status_code == 409
        assert "step 1" in ahead.json()["detail"]

    async def test_a_number_no_flow_answers_is_a_422(self, provider: JsonProvider) -> None:
        answer = await provider.send("call-15", incoming(called="+862155550000"))
        assert answer.status_code == 422
        assert answer.json()["fields"][0]["field"] == "to"

    async def test_the_hotline_short_number_is_answered(self, provider: JsonProvider) -> None:
        answer = expect(await provider.send("call-16", incoming(STRANGER, "+86" + HOTLINE)), 200)
        assert "gather" in verbs_of(answer)
