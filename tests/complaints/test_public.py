"""The customer's own lookup by reference and phone: what it shows, what it never shows,
that it gives no hint whether a reference exists, its limits, and its record."""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app import ratelimit
from app.complaints import public
from app.complaints.public_router import PublicLimits
from tests.complaints.test_notes import app, engine, notes_url
from tests.complaints.test_registration import START, clock, complaint_body, register
from tests.complaints.test_transitions import approved, move
from tests.fixtures.factories import Api, expect

__all__ = ["app", "clock", "engine"]  # fixtures shared with the notes tests

PUBLIC = "/api/v1/public/complaints"
PHONE = "+8613800138000"  # the complainant's contact in complaint_body()
UNKNOWN = "C-20261202-999999"


async def lookup(client: AsyncClient, reference: str, phone: str) -> Response:
    """The lookup as a customer makes it: no sign-in."""
    return await client.get(f"{PUBLIC}/{reference}", params={"phone": phone})


def tight(address: int = 100, reference: int = 100) -> PublicLimits:
    return PublicLimits(
        address=ratelimit.Limit("test.public.address", hits=address, window_s=600),
        reference=ratelimit.Limit("test.public.reference", hits=reference, window_s=600),
    )


async def access_rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT agent_id, role, site, outcome, subject_id, query FROM access_log "
                "WHERE kind = 'complaint.public_lookup' ORDER BY id"
            )
        )
        return [dict(row._mapping) for row in rows]


class TestWhatTheCustomerSees:
    async def test_status_deadlines_and_the_public_timeline(
        self, api: Api, client: AsyncClient
    ) -> None:
        done = await register(api, complaint_body())
        found = expect(await lookup(client, done["reference"], "138 0013 8000"), 200)
        assert (found["reference"], found["status"]) == (done["reference"], "registered")
        assert datetime.fromisoformat(found["due_at"]) == START + timedelta(days=3)
        deadlines = {d["clock"]: d for d in found["deadlines"]}
        assert deadlines["resolution"]["status"] == "running"
        assert datetime.fromisoformat(deadlines["resolution"]["due_at"]) == START + timedelta(
            days=3
        )
        assert [(e["event"], e["status"]) for e in found["timeline"]] == [
            ("registered", "registered")
        ]

    async def test_a_reference_with_a_nul_is_a_422_naming_it(self, client: AsyncClient) -> None:
        body = expect(await lookup(client, "C-20261202-%00", PHONE), 422)
        assert [f["field"] for f in body["fields"]] == ["reference"]

    async def test_never_internal_notes_names_assignees_or_internal_reasons(
        self, api: Api, client: AsyncClient
    ) -> None:
        agent = await api.agent(name="李经理")
        done = await register(api, complaint_body())
        cid = done["id"]
        await move(api, cid, "classify", {"categories": ["payment"], "severity": "high"})
        await move(api, cid, "assign", {"assignee": agent["id"]})
        await move(api, cid, "start")
        expect(await api.post(notes_url(cid), {"text": "内部备注 客户曾多次投诉"}), 201)
        expect(await api.post(notes_url(cid), {"text": "已联系清算中心", "internal": False}), 201)
        await move(api, cid, "escalate", {"target": "supervisor", "reason": "内部升级理由"})
        await move(api, cid, "pause", {"reason": "external_appraisal"})
        await move(api, cid, "resume")
        given = await approved(api, cid, {"kind": "extension", "days": 2})
        extension = {"reason": "需要外部鉴定 延长两天", "approval": given["id"], "days": 2}
        await move(api, cid, "extend", extension)

        found = expect(await lookup(client, done["reference"], PHONE), 200)
        lines = [(e["event"], e["status"]) for e in found["timeline"]]
        assert lines == [
            ("registered", "registered"),
            ("classify", "classified"),
            ("assign", "assigned"),
            ("start", "in_progress"),
            ("note", "in_progress"),
            ("pause", "paused"),
            ("resume", "in_progress"),
            ("extend", "in_progress"),
        ]
        note, extend = found["timeline"][4], found["timeline"][-1]
        assert note["text"] == "已联系清算中心"
        assert (extend["reason"], extend["days"]) == ("需要外部鉴定 延长两天", 2)
        assert datetime.fromisoformat(found["due_at"]) == START + timedelta(days=5)
        shown = json.dumps(found, ensure_ascii=False)
        for secret in (
            "内部备注",
            "内部升级理由",
            "external_appraisal",
            "李经理",
            "王芳",
            PHONE,
            "payment",
            "assignee",
            "escalation",
            "approver",
        ):
            assert secret not in shown, secret

    async def test_a_rejection_tells_its_reason(self, api: Api, client: AsyncClient) -> None:
        done = await register(api, complaint_body())
        await move(api, done["id"], "reject", {"reason": "属于咨询而非投诉"})
        found = expect(await lookup(client, done["reference"], PHONE), 200)
        last = found["timeline"][-1]
        assert (last["event"], last["status"], last["reason"]) == (
            "reject",
            "rejected",
            "属于咨询而非投诉",
        )

    async def test_the_customers_own_phone_proves_it_too(
        self, api: Api, client: AsyncClient
    ) -> None:
        customer = await api.customer(phone="+8613912345678")
        body = complaint_body(customer={"id": customer["id"]})
        body["complainant"]["contact"] = "wang@example.com"
        done = await register(api, body)
        expect(await lookup(client, done["reference"], "139-1234-5678"), 200)
        expect(await lookup(client, done["reference"].lower(), "+86 139 1234 5678"), 200)


class TestNoHint:
    async def test_a_wrong_phone_and_an_unknown_reference_answer_alike(
        self, api: Api, client: AsyncClient
    ) -> None:
        done = await register(api, complaint_body())
        wrong = await lookup(client, done["reference"], "+8613900000000")
        unknown = await lookup(client, UNKNOWN, PHONE)
        assert wrong.status_code == unknown.status_code == 404
        assert wrong.json() == unknown.json()
        assert wrong.json()["detail"] == "no complaint with this reference and phone number"

    async def test_a_malformed_phone_is_refused_before_any_lookup(
        self, api: Api, client: AsyncClient
    ) -> None:
        done = await register(api, complaint_body())
        known = await lookup(client, done["reference"], "not-a-phone")
        unknown = await lookup(client, UNKNOWN, "not-a-phone")
        assert known.status_code == unknown.status_code == 422
        assert known.json() == unknown.json()
        assert [f["field"] for f in known.json()["fields"]] == ["phone"]

    async def test_the_same_phone_comparisons_either_way(
        self, api: Api, app: FastAPI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        done = await register(api, complaint_body())
        normalised: list[str] = []
        real = public._digest

        def spy(phone: str, region: str) -> bytes:
            normalised.append(phone)
            return real(phone, region)

        monkeypatch.setattr(public, "_digest", spy)
        counts = []
        for reference, phone in (
            (done["reference"], PHONE),
            (done["reference"], "+8613900000000"),
            (UNKNOWN, PHONE),
        ):
            normalised.clear()
            async with app.state.sessionmaker() as session:
                await public.find_claimed(session, reference, phone, region="CN")
            counts.append(len(normalised))
        assert counts == [2, 2, 2]

    def test_every_candidate_is_compared_even_after_a_match(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        compared: list[bytes] = []
        real = hmac.compare_digest

        def spy(a: bytes, b: bytes) -> bool:
            compared.append(b)
            return real(a, b)

        monkeypatch.setattr(hmac, "compare_digest", spy)
        assert public.phone_matches(PHONE, [PHONE, "+8613900000000"], "CN")
        assert len(compared) == 2


@pytest.fixture
def limits(app: FastAPI) -> Iterator[PublicLimits]:
    chosen = tight(reference=2)
    app.state.public_lookup_limits = chosen
    yield chosen
    del app.state.public_lookup_limits


class TestLimits:
    @pytest.mark.usefixtures("limits")
    async def test_guessing_one_references_phone_is_limited_whether_it_exists_or_not(
        self, api: Api, client: AsyncClient
    ) -> None:
        done = await register(api, complaint_body())
        for reference in (done["reference"], UNKNOWN):
            answers = [await lookup(client, reference, f"+861390000000{n}") for n in range(3)]
            assert [a.status_code for a in answers] == [404, 404, 429]
            assert int(answers[-1].headers["Retry-After"]) > 0
        # blocked: even the right number is refused now
        expect(await lookup(client, done["reference"], PHONE), 429)

    @pytest.mark.usefixtures("limits")
    async def test_a_customer_checking_often_is_not_locked_out(
        self, api: Api, client: AsyncClient
    ) -> None:
        done = await register(api, complaint_body())
        for _ in range(5):
            expect(await lookup(client, done["reference"], PHONE), 200)

    async def test_sweeping_references_from_one_address_is_limited(
        self, app: FastAPI, client: AsyncClient
    ) -> None:
        app.state.public_lookup_limits = tight(address=3)
        answers = [await lookup(client, f"C-20261202-00000{n}", PHONE) for n in range(4)]
        assert [a.status_code for a in answers] == [404, 404, 404, 429]
        assert answers[-1].json()["error"] == "RateLimited"


class TestOnRecord:
    @pytest.mark.usefixtures("limits")
    async def test_every_attempt_is_in_the_access_log_without_the_phone(
        self, api: Api, client: AsyncClient, engine: AsyncEngine
    ) -> None:
        done = await register(api, complaint_body())
        ref = done["reference"]
        expect(await lookup(client, ref, PHONE), 200)
        expect(await lookup(client, ref, "+8613900000000"), 404)
        expect(await lookup(client, ref, "nonsense"), 422)
        expect(await lookup(client, ref, "+8613900000001"), 429)
        rows = await access_rows(engine)
        assert [(r["outcome"], r["subject_id"]) for r in rows] == [
            ("found", done["id"]),
            ("not_found", None),
            ("not_found", None),
            ("limited", None),
        ]
        assert all(
            (r["agent_id"], r["role"], r["site"], r["query"]) == (None, "public", None, ref)
            for r in rows
        )
        assert "13900000000" not in str(rows)
        assert "138" not in str(rows)

    async def test_the_service_answers_none_alike_for_the_ivr(self, api: Api, app: FastAPI) -> None:
        done = await register(api, complaint_body())
        session: AsyncSession
        async with app.state.sessionmaker() as session:
            now = START + timedelta(hours=1)
            found = await public.public_status(session, done["reference"], PHONE, now)
            assert found is not None
            assert found.complaint_id == done["id"]
            assert (
                await public.public_status(session, done["reference"], "13900000000", now) is None
            )
            assert await public.public_status(session, UNKNOWN, PHONE, now) is None
