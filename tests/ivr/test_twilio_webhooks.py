"""Whole calls through the Twilio-compatible webhooks, driven exactly as Twilio drives them:
form posts to the URLs the TwiML names, signed by the ``twilio`` package for the public URL."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.ivr import prompts
from tests.fixtures.factories import Api, expect
from tests.ivr.telephony import (
    CARDS_NUMBER,
    HOTLINE,
    PUBLIC,
    TwilioCall,
    centre,
    post_twilio,
    said,
    sign,
    upload,
    verbs,
)
from tests.routing.acd import available_agent, offer_for, pending_offers

VOICE = f"{PUBLIC}/telephony/twilio/voice"
PLATINUM_PHONE = "+8613800000001"
STRANGER = "+8613912345678"  # no customer has this number
HUANG_MEI_ID = "11010519491231002X"


@pytest.fixture
async def people(api: Api) -> dict[str, Any]:
    made = await centre(api)
    await upload(api, "credit_card_centre")
    await upload(api, "complaint_hotline_95561")
    return made


async def call_of(api: Api, sid: str) -> dict[str, Any]:
    return expect(await api.get(f"/api/v1/ivr/calls/{sid}"), 200)  # type: ignore[no-any-return]


async def contact_of(api: Api, sid: str) -> dict[str, Any]:
    call = await call_of(api, sid)
    assert call["contact_id"] is not None, call
    return expect(await api.get(f"/api/v1/contacts/{call['contact_id']}"), 200)  # type: ignore[no-any-return]


def migration_module(name: str) -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "migrations" / "versions" / name
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def stored_state(engine: AsyncEngine, sid: str) -> str:
    """The call's state as the database holds it."""
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT state::text FROM ivr_calls WHERE call_ref = :sid"), {"sid": sid}
        )
        return str(found.scalar_one())


async def call_events(engine: AsyncEngine, sid: str) -> list[Any]:
    """The events written about the call ``sid``, in order: their type and data."""
    async with engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT e.type, e.data FROM events e JOIN ivr_calls c "
                "ON e.subject_type = 'ivr_call' AND e.subject_id = c.id::text "
                "WHERE c.call_ref = :sid ORDER BY e.id"
            ),
            {"sid": sid},
        )
        return list(result.all())


async def call_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM ivr_calls"))).scalar_one())


async def unidentified_to_id_entry(phone: TwilioCall) -> None:
    """An unknown caller: the language menu, then card services, which ask for the ID."""
    await phone.start()
    await phone.press("1")  # 普通话
    await phone.press("1")  # card services: the resident ID first


class TestWholeCalls:
    async def test_a_platinum_caller_known_by_number_reaches_the_card_queue_as_platinum(
        self, api: Api, client: AsyncClient, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, PLATINUM_PHONE, CARDS_NUMBER)
        first = await phone.start()
        assert phone.gathering(), first  # identified at once: straight to the members' menu
        gather = next(v for v in verbs(first) if v.name == "Gather")
        assert gather.attributes["actionOnEmptyResult"] == "true"
        assert gather.attributes["input"] == "dtmf speech"
        assert gather.attributes["action"] == f"{VOICE}?step=1"
        await phone.press("1")
        assert phone.waiting(), phone.last
        contact = await contact_of(api, phone.sid)
        assert contact["queue"] == "credit-cards"
        assert contact["tier"] == "platinum"
        assert contact["customer_id"] == people["platinum"]["id"]
        assert contact["channel"] == "voice"
        assert contact["status"] == "queued"
        call = await call_of(api, phone.sid)
        assert (call["status"], call["outcome"]) == ("queued", "enqueued")
        assert [step["node"] for step in call["path"]][:2] == ["identify_caller", "identify_caller"]

    async def test_a_caller_identified_by_an_id_ending_in_x_confirmed_with_8_is_platinum(
        self, api: Api, client: AsyncClient, engine: AsyncEngine, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, STRANGER, CARDS_NUMBER)
        await unidentified_to_id_entry(phone)
        await phone.press(HUANG_MEI_ID.replace("X", "*"))  # the ID contains 8s; * for X
        await phone.press("8")  # confirm
        assert phone.waiting(), phone.last
        contact = await contact_of(api, phone.sid)
        assert (contact["queue"], contact["tier"]) == ("credit-cards", "platinum")
        path = (await call_of(api, phone.sid))["path"]
        assert HUANG_MEI_ID not in str(path)  # the ID is masked on record
        assert HUANG_MEI_ID not in await stored_state(engine, phone.sid)  # and not kept

    async def test_the_migration_clears_what_calls_stored_before_it_kept(
        self, client: AsyncClient, engine: AsyncEngine, people: dict[str, Any]
    ) -> None:
        left = TwilioCall(client, STRANGER, CARDS_NUMBER)
        await unidentified_to_id_entry(left)
        await left.press(HUANG_MEI_ID.replace("X", "*"))
        await left.press("8")  # queued: the call has left the IVR
        waiting = TwilioCall(client, "+8613912345679", CARDS_NUMBER)
        await unidentified_to_id_entry(waiting)
        await waiting.press(HUANG_MEI_ID.replace("X", "*"))  # still in the IVR
        async with engine.begin() as conn:  # as the IVR stored a call before the migration
            await conn.execute(
                text(
                    "UPDATE ivr_calls SET state = state || jsonb_build_object("
                    "'collected', jsonb_build_object('resident_id', CAST(:id AS text))) "
                    "WHERE call_ref = :sid"
                ),
                {"id": HUANG_MEI_ID, "sid": left.sid},
            )
        assert HUANG_MEI_ID in await stored_state(engine, left.sid)
        migration = migration_module("20261204_0025_ivr_forget_collected.py")
        async with engine.begin() as conn:
            assert await conn.run_sync(migration.forget) == 1
        assert HUANG_MEI_ID not in await stored_state(engine, left.sid)
        assert HUANG_MEI_ID in await stored_state(engine, waiting.sid)  # still needed

    async def test_an_id_entered_then_hung_up_on_is_not_kept(
        self, client: AsyncClient, engine: AsyncEngine, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, STRANGER, CARDS_NUMBER)
        await unidentified_to_id_entry(phone)
        await phone.press(HUANG_MEI_ID.replace("X", "*"))  # waits for its confirm key
        assert HUANG_MEI_ID in await stored_state(engine, phone.sid)  # needed until then
        await phone.status("completed")
        assert HUANG_MEI_ID not in await stored_state(engine, phone.sid)

    async def test_an_id_with_a_wrong_check_digit_is_asked_again_then_goes_to_an_agent(
        self, api: Api, client: AsyncClient, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, STRANGER, CARDS_NUMBER)
        await unidentified_to_id_entry(phone)
        wrong = "110105194912310021"  # the check digit should be X
        asked = 0
        while phone.gathering() and asked < 10:
            await phone.press(wrong)
            asked += 1
        assert 2 <= asked <= 4, asked  # re-asked, then the tries ran out
        assert phone.waiting(), phone.last
        contact = await contact_of(api, phone.sid)
        assert (contact["queue"], contact["tier"]) == ("credit-cards", "standard")
        results = [step["result"] for step in (await call_of(api, phone.sid))["path"]]
        assert results.count("invalid") >= 1

    async def test_silence_three_times_ends_the_call_politely(
        self, api: Api, client: AsyncClient, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, PLATINUM_PHONE, CARDS_NUMBER)
        await phone.start()
        silences = 0
        while phone.gathering() and silences < 10:
            await phone.silence()
            silences += 1
        assert silences == 3
        assert phone.hung_up(), phone.last
        kinds = [v.name for v in verbs(phone.last)]
        assert kinds[-1] == "Hangup"
        assert "Say" in kinds  # a goodbye first
        call = await call_of(api, phone.sid)
        assert (call["status"], call["outcome"], call["contact_id"]) == ("ended", "ended", None)

    async def test_the_complaint_hotline_press_0_reaches_the_complaints_queue(
        self, api: Api, client: AsyncClient, people: dict[str, Any]
    ) -> None:
        """The contact carries the path's skills, and only an agent holding them is offered
        it: the queue's own routing steps are cleared, so the path's skills alone decide."""
        expect(await api.patch("/api/v1/queues/complaints", {"steps": []}), 200)
        # Idle the longest, so first by the queue's strategy, but without the path's skill.
        without = await available_agent(api, capacity={"voice": 1})
        holder = await available_agent(
            api, capacity={"voice": 1}, skills=[{"skill": "complaints", "level": 5}]
        )
        phone = TwilioCall(client, STRANGER, HOTLINE)
        await phone.start()
        while phone.gathering() and not phone.waiting():
            await phone.press("0")
            if len(phone.posted) > 6:
                break
        assert phone.waiting(), phone.last
        contact = await contact_of(api, phone.sid)
        assert contact["queue"] == "complaints"
        assert contact["skills"] == [{"skill": "complaints", "min_level": 5}]
        assert contact["subject"] == "IVR complaint_hotline_95561"
        offer = await offer_for(holder, contact["id"])
        assert offer["reason"]["rule"].endswith("; contact requires complaints>=5")
        assert await pending_offers(without) == []


class TestSelfServiceAndEndings:
    async def test_the_status_node_reads_a_complaint_through_the_desks_public_lookup(
        self, api: Api, client: AsyncClient, people: dict[str, Any]
    ) -> None:
        complainant = "+8613800138000"
        made = expect(await api.post("/api/v1/complaints", complaint(complainant)), 201)
        reference = made["reference"]  # C-YYYYMMDD-NNNNNN, keyed as its 14 digits
        phone = TwilioCall(client, complainant, CARDS_NUMBER)
        await phone.start()
        await phone.press("1")  # 普通话
        await phone.press("3")  # a complaint's status
        keyed = reference.replace("C-", "").replace("-", "")
        await phone.press(keyed)
        assert phone.hung_up(), phone.last
        read_back = "".join(said(phone.last)).replace(" ", "").replace("-", "")
        assert keyed in read_back, phone.last  # spoken character by character
        call = await call_of(api, phone.sid)
        assert (call["outcome"], call["contact_id"]) == ("served", None)

    async def test_a_complaint_of_another_number_is_not_read_back(
        self, api: Api, client: AsyncClient, people: dict[str, Any]
    ) -> None:
        made = expect(await api.post("/api/v1/complaints", complaint("+8613800138000")), 201)
        phone = TwilioCall(client, STRANGER, CARDS_NUMBER)
        await phone.start()
        await phone.press("1")
        await phone.press("3")
        keyed = made["reference"].replace("C-", "").replace("-", "")
        await phone.press(keyed)
        assert keyed not in "".join(said(phone.last)).replace(" ", "").replace("-", "")
        assert phone.waiting(), phone.last  # not found: put through to an agent

    async def test_a_call_back_leaves_a_callback_contact_and_ends_the_call(
        self, api: Api, client: AsyncClient, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, PLATINUM_PHONE, CARDS_NUMBER)
        await phone.start()
        await phone.press("9")
        assert phone.hung_up(), phone.last
        contact = await contact_of(api, phone.sid)
        assert (contact["channel"], contact["queue"], contact["tier"]) == (
            "callback",
            "credit-cards",
            "platinum",
        )
        call = await call_of(api, phone.sid)
        assert (call["status"], call["outcome"]) == ("ended", "callback")

    @pytest.mark.parametrize("withheld", ["anonymous", "+266696687", ""])
    async def test_a_withheld_caller_choosing_a_call_back_is_told_so_and_holds(
        self, api: Api, client: AsyncClient, people: dict[str, Any], withheld: str
    ) -> None:
        phone = TwilioCall(client, withheld, HOTLINE)
        await phone.start()
        await phone.press("1")  # 普通话
        await phone.press("9")  # a call back: impossible without a number
        assert phone.waiting(), phone.last
        assert prompts.NO_CALLBACK["zh-CN"] in said(phone.last)
        contact = await contact_of(api, phone.sid)
        assert contact["channel"] == "voice"
        call = await call_of(api, phone.sid)
        assert (call["status"], call["outcome"]) == ("queued", "enqueued")

    async def test_a_full_queue_tells_the_caller_agents_are_busy_and_ends_politely(
        self, api: Api, client: AsyncClient, engine: AsyncEngine, people: dict[str, Any]
    ) -> None:
        expect(await api.patch("/api/v1/queues/credit-cards", {"max_length": 1}), 200)
        body = {"channel": "voice", "queue": "credit-cards"}
        expect(await api.post("/api/v1/contacts", body), 201)
        phone = TwilioCall(client, PLATINUM_PHONE, CARDS_NUMBER)
        await phone.start()
        await phone.press("1")
        assert [v.name for v in verbs(phone.last)][-2:] == ["Say", "Hangup"]
        assert "忙" in said(phone.last)[-1]
        call = await call_of(api, phone.sid)
        assert (call["status"], call["outcome"], call["contact_id"]) == ("ended", "ended", None)
        assert call["path"][-1]["result"] == "queue_refused"
        async with engine.connect() as conn:
            contacts = (await conn.execute(text("SELECT count(*) FROM contacts"))).scalar_one()
        assert contacts == 1  # nothing of the refused admission was written

    async def test_the_wait_loop_says_goodbye_once_the_contact_has_ended(
        self, api: Api, client: AsyncClient, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, PLATINUM_PHONE, CARDS_NUMBER)
        await phone.start()
        await phone.press("1")
        contact = await contact_of(api, phone.sid)
        expect(await api.post(f"/api/v1/contacts/{contact['id']}/cancel"), 200)
        document = await phone.redirect()
        assert [v.name for v in verbs(document)] == ["Say", "Hangup"]


def complaint(contact: str) -> dict[str, Any]:
    return {
        "channel": "phone",
        "complainant": {"name": "王芳", "contact": contact, "relation": "self"},
        "matter": {
            "occurred_at": "2026-11-28T10:00:00+08:00",
            "location": "浦东支行营业厅",
            "branch": "Pudong",
            "description": "我的信用卡被重复扣款两次而柜台拒绝处理",
        },
        "grounds": "同一笔消费被扣款两次",
        "request": "退还重复扣除的款项",
    }


class TestHangingUp:
    async def test_a_caller_hanging_up_while_queued_becomes_an_abandoned_contact(
        self, api: Api, client: AsyncClient, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, PLATINUM_PHONE, CARDS_NUMBER)
        await phone.start()
        await phone.press("1")
        await phone.redirect()  # one turn of the wait loop
        expect_empty(await phone.status("completed"))
        contact = await contact_of(api, phone.sid)
        assert contact["status"] == "abandoned"
        call = await call_of(api, phone.sid)
        assert (call["status"], call["outcome"]) == ("ended", "enqueued")
        assert call["path"][-1]["result"] == "hung_up_in_queue"

    async def test_a_late_answer_after_the_end_is_told_goodbye_in_the_calls_language(
        self, client: AsyncClient, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, STRANGER, CARDS_NUMBER)
        await phone.start()
        await phone.press("2")  # English
        gather_url = phone.next_url
        expect_empty(await phone.status("completed"))
        await phone.post(gather_url, phone.fields(Digits="1"))
        assert phone.hung_up(), phone.last
        assert said(phone.last) == [prompts.GOODBYE["en-US"]]

    async def test_the_calls_events_are_written_once_each_in_order_with_their_facts(
        self, api: Api, client: AsyncClient, engine: AsyncEngine, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, PLATINUM_PHONE, CARDS_NUMBER)
        await phone.start()
        await phone.press("1")
        expect_empty(await phone.status("completed"))
        contact_id = (await call_of(api, phone.sid))["contact_id"]
        async with engine.connect() as conn:
            call_id = (
                await conn.execute(
                    text("SELECT id FROM ivr_calls WHERE call_ref = :sid"), {"sid": phone.sid}
                )
            ).scalar_one()
            rows = (
                await conn.execute(
                    text(
                        "SELECT type, data, actor FROM events WHERE "
                        "(subject_type = 'ivr_call' AND subject_id = :call) "
                        "OR (subject_type = 'contact' AND subject_id = :contact) ORDER BY id"
                    ),
                    {"call": str(call_id), "contact": str(contact_id)},
                )
            ).all()
        types = [row.type for row in rows]
        assert types == [
            "ivr.call_started",
            "contact.queued",
            "ivr.call_left",
            "contact.abandoned",
            "ivr.call_ended",
        ], types
        started, _, left, _, ended = (row.data for row in rows)
        assert started == {
            "call_id": call_id,
            "provider": "twilio",
            "flow_id": started["flow_id"],
            "called": started["called"],
        }
        assert isinstance(started["flow_id"], int)
        assert started["called"] == CARDS_NUMBER  # as the call stores it, normalised
        assert (left["outcome"], left["contact_id"]) == ("enqueued", contact_id)
        assert left["ivr_s"] >= 0
        assert ended == {
            "call_id": call_id,
            "provider_status": "completed",
            "status_before": "queued",
            "contact_id": contact_id,
        }
        assert {rows[i].actor for i in (0, 2, 4)} == {"ivr"}

    async def test_hanging_up_in_the_menus_writes_the_call_leaving_then_ending(
        self, client: AsyncClient, engine: AsyncEngine, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, STRANGER, CARDS_NUMBER)
        await phone.start()
        expect_empty(await phone.status("completed"))
        rows = await call_events(engine, phone.sid)
        assert [row.type for row in rows] == [
            "ivr.call_started",
            "ivr.call_left",
            "ivr.call_ended",
        ]
        assert (rows[1].data["outcome"], rows[2].data["status_before"]) == ("hung_up", "in_ivr")

    async def test_status_callbacks_twice_and_out_of_order_change_nothing_more(
        self, api: Api, client: AsyncClient, engine: AsyncEngine, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, PLATINUM_PHONE, CARDS_NUMBER)
        await phone.start()
        await phone.press("1")
        expect_empty(await phone.status("completed"))
        before = await call_of(api, phone.sid)
        assert before["provider_status"] == "completed"
        expect_empty(await phone.status("completed"))
        expect_empty(await phone.status("ringing"))  # late, after the end
        expect_empty(await phone.status("in-progress"))
        assert await call_of(api, phone.sid) == before
        assert (await contact_of(api, phone.sid))["status"] == "abandoned"
        async with engine.connect() as conn:
            ended = await conn.execute(
                text("SELECT count(*) FROM events WHERE type = 'ivr.call_ended'")
            )
            abandoned = await conn.execute(
                text("SELECT count(*) FROM events WHERE type = 'contact.abandoned'")
            )
        assert (ended.scalar_one(), abandoned.scalar_one()) == (1, 1)

    async def test_a_status_that_is_no_end_is_noted_on_a_live_call_and_changes_nothing_else(
        self, api: Api, client: AsyncClient, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, PLATINUM_PHONE, CARDS_NUMBER)
        await phone.start()
        await phone.press("1")
        before = await call_of(api, phone.sid)
        expect_empty(await phone.status("in-progress"))
        after = await call_of(api, phone.sid)
        assert after["provider_status"] == "in-progress"
        assert {**after, "provider_status": before["provider_status"]} == before
        assert (await contact_of(api, phone.sid))["status"] == "queued"

    async def test_hanging_up_in_the_menus_records_the_node_the_caller_left(
        self, api: Api, client: AsyncClient, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, STRANGER, CARDS_NUMBER)
        await phone.start()
        expect_empty(await phone.status("completed"))
        call = await call_of(api, phone.sid)
        assert (call["status"], call["outcome"], call["drop_node"]) == (
            "ended",
            "hung_up",
            "language",
        )
        report = expect(
            await api.get(
                "/api/v1/ivr/reports/outcomes",
                params={"from": "2026-12-01T00:00:00Z", "to": "2026-12-03T00:00:00Z"},
            ),
            200,
        )
        assert report["drop_off"] == [{"node": "language", "calls": 1}]
        assert {"outcome": "hung_up", "calls": 1} in report["outcomes"]


def expect_empty(response: Any) -> None:
    assert response.status_code == 200, response.text
    assert verbs(response.text) == []


class TestTheWaitLoop:
    async def test_the_position_told_never_goes_back_when_a_higher_tier_joins_ahead(
        self, api: Api, client: AsyncClient, people: dict[str, Any]
    ) -> None:
        standard = TwilioCall(client, "+8613800000004", CARDS_NUMBER)  # Wu Tao, standard
        await standard.start()
        await standard.press("1")
        first = await standard.redirect()
        assert said(first) == ["您现在排在第一位。"]
        # A platinum contact joins: due first, it goes ahead of the standard caller.
        body = {"channel": "voice", "queue": "credit-cards", "customer": {"phone": PLATINUM_PHONE}}
        expect(await api.post("/api/v1/contacts", body), 201)
        again = await standard.redirect()
        assert said(again) == ["您现在排在第一位。"]  # never told a later place than before
        assert [v.name for v in verbs(again)] == ["Say", "Play", "Redirect"]


class TestRefusals:
    async def test_a_bad_signature_is_refused_and_no_call_is_made(
        self, client: AsyncClient, engine: AsyncEngine, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, PLATINUM_PHONE, CARDS_NUMBER)
        params = phone.fields()
        wrong = sign(VOICE, params, token="not-the-token")
        response = await post_twilio(client, VOICE, params, signature=wrong)
        assert response.status_code == 403, response.text
        assert response.json()["error"] == "SignatureRefused"
        missing = await client.post("/telephony/twilio/voice", data=params)
        assert missing.status_code == 403
        assert await call_rows(engine) == 0

    async def test_a_signature_for_the_url_seen_behind_the_proxy_is_refused(
        self, client: AsyncClient, engine: AsyncEngine, people: dict[str, Any]
    ) -> None:
        params = TwilioCall(client, PLATINUM_PHONE, CARDS_NUMBER).fields()
        seen = "http://test/telephony/twilio/voice"
        response = await post_twilio(client, VOICE, params, signature=sign(seen, params))
        assert response.status_code == 403
        assert await call_rows(engine) == 0

    async def test_a_tampered_field_breaks_the_signature(
        self, client: AsyncClient, engine: AsyncEngine, people: dict[str, Any]
    ) -> None:
        params = TwilioCall(client, PLATINUM_PHONE, CARDS_NUMBER).fields()
        signature = sign(VOICE, params)
        response = await post_twilio(
            client, VOICE, {**params, "From": STRANGER}, signature=signature
        )
        assert response.status_code == 403
        assert await call_rows(engine) == 0

    async def test_a_body_past_the_webhook_limit_is_a_413(
        self, client: AsyncClient, engine: AsyncEngine, people: dict[str, Any]
    ) -> None:
        params = {**TwilioCall(client, PLATINUM_PHONE, CARDS_NUMBER).fields(), "Pad": "x" * 70_000}
        response = await post_twilio(client, VOICE, params)
        assert response.status_code == 413, response.text
        assert await call_rows(engine) == 0

    async def test_a_form_without_a_call_sid_is_a_422_naming_it(
        self, client: AsyncClient, people: dict[str, Any]
    ) -> None:
        params = {"From": PLATINUM_PHONE, "To": CARDS_NUMBER}
        response = await post_twilio(client, VOICE, params)
        assert response.status_code == 422, response.text
        assert [f["field"] for f in response.json()["fields"]] == ["CallSid"]

    async def test_a_body_that_is_not_a_form_is_a_422(
        self, client: AsyncClient, people: dict[str, Any]
    ) -> None:
        signature = sign(VOICE, {})
        response = await client.post(
            "/telephony/twilio/voice",
            content=b"\xff\xfe not a form",
            headers={"X-Twilio-Signature": signature, "Content-Type": "application/json"},
        )
        assert response.status_code == 422, response.text

    async def test_a_gather_for_an_unknown_call_sid_is_a_polite_goodbye(
        self, client: AsyncClient, engine: AsyncEngine, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, PLATINUM_PHONE, CARDS_NUMBER)
        document = await phone.post(f"{VOICE}?step=3", phone.fields(Digits="1"))
        assert [v.name for v in verbs(document)] == ["Say", "Hangup"]
        assert await call_rows(engine) == 0

    async def test_digits_for_a_call_already_ended_are_a_polite_goodbye(
        self, api: Api, client: AsyncClient, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, PLATINUM_PHONE, CARDS_NUMBER)
        await phone.start()
        gather_url = phone.next_url
        expect_empty(await phone.status("completed"))
        before = await call_of(api, phone.sid)
        document = await phone.post(gather_url, phone.fields(Digits="1"))
        assert [v.name for v in verbs(document)] == ["Say", "Hangup"]
        assert await call_of(api, phone.sid) == before

    @pytest.mark.parametrize(
        "answer",
        [
            {"Digits": "1<script>"},
            {"Digits": "A"},
            {"Digits": "1" * 65},
            {"SpeechResult": "信用卡", "Confidence": "abc"},
            {"SpeechResult": "信用卡", "Confidence": ""},
        ],
        ids=["markup", "a-key-no-phone-has", "too-many-keys", "confidence-words", "no-confidence"],
    )
    async def test_an_answer_that_cannot_be_read_is_an_invalid_answer_asked_again(
        self, api: Api, client: AsyncClient, people: dict[str, Any], answer: dict[str, str]
    ) -> None:
        phone = TwilioCall(client, PLATINUM_PHONE, CARDS_NUMBER)
        await phone.start()
        await phone.post(phone.next_url, phone.fields(**answer))
        assert phone.gathering(), phone.last  # the menu again, not a goodbye
        call = await call_of(api, phone.sid)
        assert (call["status"], call["step"], call["path"][-1]["result"]) == (
            "in_ivr",
            2,
            "invalid",
        )

    async def test_other_fields_that_cannot_be_read_end_the_call_politely_on_record(
        self, api: Api, client: AsyncClient, engine: AsyncEngine, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, PLATINUM_PHONE, CARDS_NUMBER)
        await phone.start()
        document = await phone.post(phone.next_url, phone.fields(Digits="1", From="9" * 65))
        assert [v.name for v in verbs(document)] == ["Say", "Hangup"]
        expect_empty(await phone.status("completed"))  # after the goodbye
        call = await call_of(api, phone.sid)
        assert (call["status"], call["outcome"], call["step"]) == ("ended", "ended", 1)
        assert call["path"][-1]["result"] == "unreadable_webhook"
        rows = await call_events(engine, phone.sid)
        # Left once, where the caller was; the provider's completed is no second leaving.
        assert [row.type for row in rows] == ["ivr.call_started", "ivr.call_left"]
        left = rows[1].data
        # at the menu the caller was asked (a platinum caller known by number)
        assert (left["outcome"], left["node"]) == ("ended", "known_main")
        assert (left["contact_id"], left["ivr_s"]) == (None, call["ivr_s"])

    async def test_fields_that_cannot_be_read_for_a_queued_caller_keep_them_waiting(
        self, api: Api, client: AsyncClient, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, PLATINUM_PHONE, CARDS_NUMBER)
        first = await phone.start()
        gather_url = phone.next_url
        await phone.press("1")
        assert phone.waiting(), phone.last
        await phone.post(gather_url, phone.fields(Digits="1", From="9" * 65))
        assert phone.waiting(), phone.last
        assert first
        assert (await call_of(api, phone.sid))["status"] == "queued"

    async def test_a_number_no_flow_answers_is_told_it_is_not_in_service(
        self, client: AsyncClient, engine: AsyncEngine, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, PLATINUM_PHONE, "+862155550000")
        document = await phone.start()
        assert [v.name for v in verbs(document)] == ["Say", "Hangup"]
        assert await call_rows(engine) == 0


class TestVoices:
    async def test_chinese_is_said_in_a_mandarin_voice_and_english_in_twilios_default(
        self, client: AsyncClient, people: dict[str, Any]
    ) -> None:
        phone = TwilioCall(client, STRANGER, CARDS_NUMBER)
        first = await phone.start()
        says = [v for gather in verbs(first) for v in [gather, *gather.children] if v.name == "Say"]
        # the language menu: each choice in its own language, Chinese first
        assert [v.attributes["language"] for v in says] == ["zh-CN", "en-US"]
        chinese = [v.attributes.get("voice") for v in says if v.attributes["language"] == "zh-CN"]
        assert chinese
        assert set(chinese) == {"Polly.Zhiyu"}
        await phone.press("2")  # English
        said_in = [v for gather in verbs(phone.last) for v in [gather, *gather.children]]
        english = [v for v in said_in if v.name == "Say" and v.attributes["language"] == "en-US"]
        assert english
        assert all("voice" not in v.attributes for v in english)


class TestValidationSwitchedOff:
    @pytest.fixture
    def settings(self, settings: Any) -> Any:
        return settings.model_copy(update={"twilio_validate": False})

    async def test_each_unchecked_request_logs_a_warning(
        self, client: AsyncClient, people: dict[str, Any], caplog: pytest.LogCaptureFixture
    ) -> None:
        phone = TwilioCall(client, PLATINUM_PHONE, CARDS_NUMBER)
        with caplog.at_level(logging.WARNING, logger="app.ivr.signatures"):
            await phone.post(VOICE, phone.fields(CallStatus="ringing"), signature="")
            await phone.post(phone.next_url, phone.fields(Digits="1"), signature="forged")
        warnings = [r for r in caplog.records if "WITHOUT a signature check" in r.getMessage()]
        assert len(warnings) == 2
        assert phone.waiting()
