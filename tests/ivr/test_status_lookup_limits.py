"""The IVR's complaint-status lookups: limited per caller number and per reference, with no
hint in the answer that a limit was reached, a found lookup's hit given back, and every
attempt on record without the caller's number.

Calls go through the Twilio-compatible webhooks to the complaint hotline (95561): an unknown
caller chooses Mandarin, presses 3 and keys a reference; a reference not found sends them
back to the main menu, so one call can try several."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app import ratelimit
from app.complaints.service import DESK
from app.ivr import lookups
from app.ivr.vocabulary import ComplaintNotFound, Lookup, LookupKind
from tests.fixtures.factories import Api, expect
from tests.ivr.conftest import START
from tests.ivr.telephony import HOTLINE, TwilioCall, centre, said, upload

COMPLAINANT = "+8613800138000"  # no customer has this number
STRANGERS = [f"+861390000000{n}" for n in range(10)]
UNKNOWN = "C-20261202-999999"  # no complaint has this reference
# said in each language, each in its own voice: the caller has no language yet
LANGUAGE_MENU = [
    "欢迎致电投诉热线。普通话服务请按1。",
    "Welcome to the complaint hotline. For English, press 2.",
]


def tight(number: int = 100, reference: int = 100) -> lookups.StatusLimits:
    return lookups.StatusLimits(
        number=ratelimit.Limit("test.ivr.number", hits=number, window_s=600),
        reference=ratelimit.Limit("test.ivr.reference", hits=reference, window_s=600),
    )


SetLimits = Callable[..., None]


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> SetLimits:
    """Sets the limits the test's steps run with: the module's defaults, which a step whose
    context names no limits reads at each lookup."""

    def chosen(*, number: int = 100, reference: int = 100) -> None:
        monkeypatch.setattr(lookups, "DEFAULT_LIMITS", tight(number, reference))

    return chosen


@pytest.fixture
async def hotline(api: Api) -> None:
    await centre(api)
    await upload(api, "complaint_hotline_95561")


async def register(api: Api, contact: str = COMPLAINANT) -> dict[str, Any]:
    """A complaint registered by phone, whose contact is ``contact``."""
    body = {
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
    return expect(await api.post("/api/v1/complaints", body), 201)  # type: ignore[no-any-return]


def keys(reference: str) -> str:
    """A reference as a caller keys it: its digits."""
    return reference.replace("C-", "").replace("-", "")


async def dial(client: AsyncClient, caller: str) -> TwilioCall:
    """A call from ``caller`` to the hotline, at its main menu."""
    phone = TwilioCall(client, caller, HOTLINE)
    await phone.start()
    assert said(phone.last) == LANGUAGE_MENU, phone.last  # the caller is nobody known
    await phone.press("1")
    return phone


async def ask(phone: TwilioCall, reference: str) -> list[str]:
    """Press 3 and key ``reference``: what the caller hears."""
    await phone.press("3")
    await phone.press(keys(reference))
    return said(phone.last)


async def read_back(phone: TwilioCall, reference: str) -> bool:
    """Was ``reference`` read back to the caller (a complaint found)?"""
    heard = await ask(phone, reference)
    return keys(reference) in "".join(heard).replace(" ", "").replace("-", "") and phone.hung_up()


async def access_rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT agent_id, role, site, kind, outcome, subject_id, query, at "
                "FROM access_log ORDER BY id"
            )
        )
        return [dict(row._mapping) for row in rows]


async def outcomes(engine: AsyncEngine) -> list[str]:
    return [row["outcome"] for row in await access_rows(engine)]


@pytest.mark.usefixtures("hotline")
class TestPerNumberLimit:
    async def test_a_caller_over_the_limit_hears_not_found_even_for_their_own_complaint(
        self, api: Api, client: AsyncClient, engine: AsyncEngine, limits: SetLimits
    ) -> None:
        limits(number=3)
        made = await register(api)
        phone = await dial(client, COMPLAINANT)
        unknown = [await ask(phone, f"C-20261202-00010{n}") for n in range(3)]
        limited = await ask(phone, made["reference"])
        assert limited == unknown[0] == unknown[-1]  # the unknown reference's answer
        assert phone.gathering(), phone.last  # back at the main menu, as for any not found
        assert await outcomes(engine) == ["not_found"] * 3 + ["limited"]

    async def test_other_callers_are_not_limited_by_one_callers_sweep(
        self, api: Api, client: AsyncClient, engine: AsyncEngine, limits: SetLimits
    ) -> None:
        limits(number=2)
        made = await register(api)
        sweeper = await dial(client, STRANGERS[0])
        for n in range(3):
            await ask(sweeper, f"C-20261202-00010{n}")
        assert await read_back(await dial(client, COMPLAINANT), made["reference"])
        assert await outcomes(engine) == ["not_found", "not_found", "limited", "found"]


@pytest.mark.usefixtures("hotline")
class TestPerReferenceLimit:
    async def test_one_reference_tried_from_many_numbers_is_limited_for_everyone(
        self, api: Api, client: AsyncClient, engine: AsyncEngine, limits: SetLimits
    ) -> None:
        limits(reference=3)
        made = await register(api)
        wrong = [
            await ask(await dial(client, number), made["reference"]) for number in STRANGERS[:3]
        ]
        owner = await dial(client, COMPLAINANT)
        assert await ask(owner, made["reference"]) == wrong[0]  # not read back: not found
        assert owner.gathering(), owner.last
        assert await outcomes(engine) == ["not_found"] * 3 + ["limited"]

    async def test_an_unknown_reference_is_limited_alike(
        self, client: AsyncClient, engine: AsyncEngine, limits: SetLimits
    ) -> None:
        limits(reference=2)
        heard = [await ask(await dial(client, number), UNKNOWN) for number in STRANGERS[:3]]
        assert heard[0] == heard[1] == heard[2]
        assert await outcomes(engine) == ["not_found", "not_found", "limited"]


@pytest.mark.usefixtures("hotline")
class TestGivingBack:
    async def test_checking_ones_own_complaint_often_is_never_limited_by_the_reference(
        self, api: Api, client: AsyncClient, engine: AsyncEngine, limits: SetLimits
    ) -> None:
        limits(reference=2)
        made = await register(api)
        for _ in range(4):
            assert await read_back(await dial(client, COMPLAINANT), made["reference"])
        # The found lookups gave their hits back: a wrong number is the reference's first.
        await ask(await dial(client, STRANGERS[0]), made["reference"])
        assert await outcomes(engine) == ["found"] * 4 + ["not_found"]


@pytest.mark.usefixtures("hotline")
class TestOnRecord:
    async def test_every_attempt_is_one_row_with_its_outcome_and_never_the_number(
        self, api: Api, client: AsyncClient, engine: AsyncEngine, limits: SetLimits
    ) -> None:
        limits(reference=2)
        made = await register(api)
        reference = made["reference"]
        assert await read_back(await dial(client, COMPLAINANT), reference)
        await ask(await dial(client, STRANGERS[0]), reference)  # not the complaint's number
        await ask(await dial(client, "anonymous"), reference)  # a withheld number
        await ask(await dial(client, STRANGERS[1]), reference)  # the third wrong try
        rows = await access_rows(engine)
        assert [(r["outcome"], r["subject_id"]) for r in rows] == [
            ("found", made["id"]),
            ("not_found", None),
            ("not_found", None),
            ("limited", None),
        ]
        assert all(
            (r["agent_id"], r["role"], r["site"], r["kind"], r["query"])
            == (None, "ivr", None, "complaint.public_lookup", reference)
            for r in rows
        )
        assert all(r["at"] == START for r in rows)  # the IVR's clock
        for number in (COMPLAINANT, *STRANGERS[:2]):
            assert number[3:] not in str(rows)

    async def test_a_withheld_number_leaves_no_trace_of_the_caller_either(
        self, client: AsyncClient, engine: AsyncEngine, limits: SetLimits
    ) -> None:
        limits()
        await ask(await dial(client, "anonymous"), UNKNOWN)
        assert [(r["outcome"], r["query"]) for r in await access_rows(engine)] == [
            ("not_found", UNKNOWN)
        ]


class TestCountedOnTheirOwn:
    async def test_a_hit_counts_even_when_the_steps_transaction_rolls_back(
        self, app: FastAPI, engine: AsyncEngine
    ) -> None:
        chosen = tight(number=1)
        lookup = Lookup(LookupKind.COMPLAINT_STATUS, UNKNOWN)
        for _ in range(2):
            async with app.state.sessionmaker() as session:
                answered = await lookups.answer(
                    session,
                    lookup,
                    caller=COMPLAINANT,
                    languages=["zh-CN"],
                    region="CN",
                    desk=DESK,
                    now=START + timedelta(minutes=1),
                    limits=chosen,
                )
                assert answered == ComplaintNotFound()
                await session.rollback()  # the step failed after its lookup
        with pytest.raises(ratelimit.RateLimited):
            async with engine.begin() as conn:
                await ratelimit.check(conn, chosen.number, COMPLAINANT)
