"""What the tests of live calls share: the fake Twilio API, an app whose timer worker runs the
IVR's handlers and talks to it, and the centre's complaints agent.

The timer worker's poll interval is long (30 s) here: what reaches the provider within a
second of an agent's answer got there because the answer's commit woke the worker, not
because the worker happened to look.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.ivr import bridge
from app.main import create_app
from tests.conftest import make_settings
from tests.fixtures.desk_clock import freeze_desk
from tests.fixtures.factories import Api, expect
from tests.ivr.conftest import Clock
from tests.ivr.telephony import ACCOUNT, HOTLINE, PUBLIC, TWILIO_TOKEN, WEBHOOK_SECRET, TwilioCall
from tests.ivr.twilio_api import FakeTwilio, serving
from tests.routing import acd
from tests.routing.acd import offer_for

STRANGER = "+8613912345678"  # no customer has this number
ENDPOINT = "sip:1001@pbx.example.com"


@pytest.fixture
async def twilio_api() -> AsyncIterator[FakeTwilio]:
    async with serving() as fake:
        yield fake


def live_settings(db: str, fake: FakeTwilio, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "public_base_url": PUBLIC,
        "twilio_auth_token": SecretStr(TWILIO_TOKEN),
        "twilio_account_sid": ACCOUNT,
        "webhook_secret": SecretStr(WEBHOOK_SECRET),
        "twilio_api_base_url": fake.url,
        "twilio_api_timeout_s": 20.0,  # (a loaded machine can stall a connect for seconds)
        "timer_poll_interval_s": 30.0,
        "callback_attempts": 3,
        "callback_retry_s": 0.0,
    }
    return make_settings(db, **{**values, **overrides})


@pytest.fixture
def settings(db: str, twilio_api: FakeTwilio) -> Settings:
    return live_settings(db, twilio_api)


@pytest.fixture
async def app(settings: Settings, clock: Clock) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    bridge.register(application.state.timer_registry, settings)
    application.state.ivr_clock = clock
    freeze_desk(application, clock)
    async with application.router.lifespan_context(application):
        yield application


async def complaints_agent(api: Api, *, endpoint: str | None = ENDPOINT) -> tuple[int, Api]:
    """An available agent who may take the complaints queue's voice and callback contacts."""
    agent = await api.agent(
        skills=[{"skill": "complaints", "level": 5}],
        capacity={"voice": 1, "callback": 1},
        endpoint=endpoint,
    )
    console = await api.signed_in_as(agent)
    expect(await console.set_status(agent["id"], "available"), 200)
    return int(agent["id"]), console


async def menus_to(phone: TwilioCall, key: str) -> None:
    """An unknown caller on the complaint hotline: Mandarin, then ``key`` at the main menu."""
    assert phone.called == HOTLINE
    await phone.start()
    await phone.press("1")
    await phone.press(key)


async def accept(console: Api, contact_id: int) -> dict[str, Any]:
    offer = await offer_for(console, contact_id)
    return expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)  # type: ignore[no-any-return]


async def call_of(api: Api, sid: str) -> dict[str, Any]:
    return expect(await api.get(f"/api/v1/ivr/calls/{sid}"), 200)  # type: ignore[no-any-return]


def results(call: dict[str, Any]) -> list[str]:
    return [step["result"] for step in call["path"]]


async def timers_of(
    engine: AsyncEngine, kind: str, subject: int | None = None, *, due_later: bool = False
) -> int:
    """How many timers of ``kind`` are pending (of ``subject`` only, if given; only those not
    due yet by the database's clock, with ``due_later``)."""
    sql = "SELECT count(*) FROM timers WHERE kind = :kind"
    if subject is not None:
        sql += " AND subject = :subject"
    if due_later:
        sql += " AND due_at > now()"
    async with engine.connect() as conn:
        found = await conn.scalar(text(sql), {"kind": kind, "subject": str(subject)})
    return int(found or 0)


async def feed_moves_on(api: Api, queue_name: str) -> None:
    """A chat contact taken in now reaches the event feed: no transaction holds the feed's
    readers back (they wait for every older open transaction)."""
    cursor = await api.event_cursor()
    chat = await acd.contact(api, queue_name)

    def chat_queued(events: list[dict[str, Any]]) -> bool:
        return any(
            e["type"] == "contact.queued" and e["subject"]["id"] == str(chat["id"]) for e in events
        )

    events = await api.events_until(cursor, chat_queued, timeout_s=20)
    assert chat_queued(events), "the feed waited for the provider's answer"
