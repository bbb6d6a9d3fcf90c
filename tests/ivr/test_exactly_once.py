"""Each step of a call is taken once: a duplicated webhook gets the same TwiML and does not
advance the call, whether it comes after the first, with Twilio's idempotency token, or at
the same moment on another connection."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import plain_url
from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually
from tests.ivr.telephony import (
    CARDS_NUMBER,
    HOTLINE,
    TwilioCall,
    centre,
    expect_twiml,
    post_twilio,
    upload,
)

PLATINUM_PHONE = "+8613800000001"
STRANGER = "+8613912345678"


@pytest.fixture
async def flows(api: Api) -> None:
    await centre(api)
    await upload(api, "credit_card_centre")
    await upload(api, "complaint_hotline_95561")


async def count(engine: AsyncEngine, sql: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


async def call_of(api: Api, sid: str) -> dict[str, Any]:
    return expect(await api.get(f"/api/v1/ivr/calls/{sid}"), 200)  # type: ignore[no-any-return]


class TestDuplicateDeliveries:
    async def test_a_duplicated_gather_gets_the_same_twiml_and_advances_once(
        self, api: Api, client: AsyncClient, flows: None
    ) -> None:
        phone = TwilioCall(client, STRANGER, CARDS_NUMBER)
        await phone.start()
        url, params = phone.next_url, phone.fields(Digits="1")
        first = await phone.post(url, params)
        after_first = await call_of(api, phone.sid)
        again = await phone.post(url, params)  # Twilio delivers the same webhook again
        assert again == first
        assert await call_of(api, phone.sid) == after_first
        assert after_first["step"] == 2

    async def test_a_duplicate_incoming_call_is_one_call(
        self, api: Api, client: AsyncClient, engine: AsyncEngine, flows: None
    ) -> None:
        phone = TwilioCall(client, STRANGER, CARDS_NUMBER)
        first = await phone.start()
        phone.next_url = phone.posted[0][0]
        again = await phone.start()
        assert again == first
        assert await count(engine, "SELECT count(*) FROM ivr_calls") == 1
        assert (await call_of(api, phone.sid))["step"] == 1

    async def test_the_same_idempotency_token_is_the_same_delivery(
        self, api: Api, client: AsyncClient, flows: None
    ) -> None:
        phone = TwilioCall(client, STRANGER, CARDS_NUMBER)
        await phone.start()
        token = {"I-Twilio-Idempotency-Token": "a3b2c1-retry"}
        url, params = phone.next_url, phone.fields(Digits="1")
        first = await phone.post(url, params, headers=token)
        # A retry Twilio marks as the same delivery, whatever else it carries.
        again = await phone.post(url.replace("step=1", "step=2"), params, headers=token)
        assert again == first
        assert (await call_of(api, phone.sid))["step"] == 2

    async def test_a_duplicated_enqueue_makes_one_contact(
        self, api: Api, client: AsyncClient, engine: AsyncEngine, flows: None
    ) -> None:
        phone = TwilioCall(client, PLATINUM_PHONE, CARDS_NUMBER)
        await phone.start()
        url, params = phone.next_url, phone.fields(Digits="1")
        first = await phone.post(url, params)
        assert await phone.post(url, params) == first
        assert await count(engine, "SELECT count(*) FROM contacts") == 1

    async def test_a_stale_step_gets_its_own_answer_not_the_current_one(
        self, api: Api, client: AsyncClient, flows: None
    ) -> None:
        phone = TwilioCall(client, STRANGER, CARDS_NUMBER)
        await phone.start()
        step1_url, step1 = phone.next_url, phone.fields(Digits="1")
        answer1 = await phone.post(step1_url, step1)
        await phone.press("1")  # step 2: card services
        late = await phone.post(step1_url, step1)  # step 1 delivered again, late
        assert late == answer1
        assert (await call_of(api, phone.sid))["step"] == 3


class TestConcurrentDeliveries:
    async def test_two_identical_webhooks_at_once_admit_one_contact_and_answer_alike(
        self,
        api: Api,
        client: AsyncClient,
        engine: AsyncEngine,
        database_url: str,
        flows: None,
    ) -> None:
        """Both deliveries are held inside their transactions until both are in: a lock on
        ``ivr_steps`` stops whichever gets there first at its write, so the second is on its
        way (or waiting on the call's row) while the first has not committed."""
        phone = TwilioCall(client, STRANGER, HOTLINE)
        await phone.start()
        assert phone.gathering()  # the first menu: 0 is the operator from any menu
        url, params = phone.next_url, phone.fields(Digits="0")
        gate = await asyncpg.connect(plain_url(database_url))
        try:
            holding = gate.transaction()
            await holding.start()
            await gate.execute("LOCK TABLE ivr_steps IN SHARE ROW EXCLUSIVE MODE")
            both = [
                asyncio.create_task(post_twilio(client, url, params)),
                asyncio.create_task(post_twilio(client, url, params)),
            ]
            await eventually(lambda: _waiting(gate), what="both deliveries in flight")
            await holding.rollback()
            answers = [expect_twiml(r) for r in await asyncio.gather(*both)]
        finally:
            await gate.close()
        assert answers[0] == answers[1]
        assert await count(engine, "SELECT count(*) FROM contacts") == 1
        assert await count(engine, "SELECT count(*) FROM ivr_steps WHERE seq = 1") == 1
        assert (await call_of(api, phone.sid))["step"] == 2


async def _waiting(gate: asyncpg.Connection) -> bool:
    """Two other sessions of this database are waiting for a lock."""
    waiting = await gate.fetchval(
        """
        SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE NOT l.granted AND a.datname = current_database() AND l.pid <> pg_backend_pid()
        """
    )
    return int(waiting) >= 2
