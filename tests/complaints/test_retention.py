"""Retention: an archived complaint kept for its retention is anonymised (every personal
field gone, from the complaint, its records, its approvals, its notices and its audit
trail's content; the figures and the verifying trail kept) unless a legal hold keeps it;
only an admin places or lifts a hold. An anonymised trail still names any entry altered,
deleted or re-filled behind the append-only trigger's back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI
from pydantic import TypeAdapter
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.complaints import anonymise
from app.complaints.archive_events import PAYLOADS
from app.complaints.models import Complaint
from app.complaints.retention import MARKER
from app.db import unit_of_work
from tests.complaints.test_archive import (
    PDF,
    RESOLVED,
    START,
    app,
    archive_sweep,
    audit,
    clock,
    engine,
    finished,
    handled,
    no_failed_complaint,
    retention_sweep,
    row,
    tables,
)
from tests.complaints.test_audit_chain import behind_the_trigger, superuser
from tests.complaints.test_registration import COMPLAINTS, Clock, complaint_body, register
from tests.complaints.test_transitions import approvals_url, move
from tests.fixtures.factories import Api, expect

# fixtures of the archive tests, and the audit tests' superuser
__all__ = ["app", "clock", "engine", "no_failed_complaint", "superuser"]

PERSONAL = ("王芳", "李雷", "lilei", "13800138000", "浦东", "扣款", "身份证", "诉讼")
"""Text of the complaints built here that only a person's data holds."""
TRAILS = {
    "audit": "SELECT string_agg(a::text, '|') FROM complaint_audit a WHERE complaint_id = :id",
    "approvals": "SELECT string_agg(p::text, '|') FROM complaint_approvals p"
    " WHERE complaint_id = :id",
    "notices": "SELECT string_agg(n::text, '|') FROM notifications n"
    " WHERE subject_type = 'complaint' AND subject_id = CAST(CAST(:id AS bigint) AS text)",
}
NONE_LEFT: dict[str, list[str]] = {name: [] for name in TRAILS}


async def upload(api: Api, cid: int, content: bytes, name: str) -> Any:
    files = {"file": (name, content, "application/octet-stream")}
    return await api.client.post(
        f"{COMPLAINTS}/{cid}/attachments", files=files, headers=api.headers
    )


async def rich(api: Api, clock: Clock) -> int:
    """A closed complaint with everything that can hold personal data: a customer, a
    registration linked to it, notes, a survey comment, a file, facts with free text."""
    customer = await api.customer(tier="gold")
    body = complaint_body(customer={"id": customer["id"]})
    cid = int((await handled(api, body))["id"])
    again = complaint_body(channel="web", customer={"id": customer["id"]})
    again["complainant"] = {"name": "李雷", "contact": "lilei@example.com", "relation": "self"}
    await move(api, cid, "reopen", {"reason": "王芳来电补充"})
    assert (await register(api, again, status=200))["id"] == cid
    approval = await compensation_approved(api, cid)
    await move(api, cid, "resolve", {**RESOLVED, "compensation": "800.00", "approval": approval})
    for note in ({"text": "王芳身份证已核实"}, {"text": "已致电王芳", "internal": False}):
        expect(await api.post(f"{COMPLAINTS}/{cid}/notes", note), 201)
    survey = {"csat": 2, "comment": "王芳, 处理太慢"}
    expect(await api.post(f"{COMPLAINTS}/{cid}/feedback", survey), 201)
    expect(await upload(api, cid, PDF, "王芳-身份证.pdf"), 201)
    await move(api, cid, "close")
    return cid


async def compensation_approved(api: Api, cid: int) -> int:
    """Two compensation requests with personal reasons: one declined, one approved."""
    boss = await api.signed_in_as(await api.supervisor())
    terms = {"kind": "compensation", "amount": "800.00", "reason": "王芳的利息损失"}
    ids = [expect(await api.post(approvals_url(cid), terms), 201)["id"] for _ in range(2)]
    decline = {"reason": "王芳未附扣款凭证"}
    expect(await boss.post(f"{approvals_url(cid)}/{ids[0]}/decline", decline), 200)
    expect(await boss.post(f"{approvals_url(cid)}/{ids[1]}/approve"), 200)
    return int(ids[1])


async def trails_of(engine: AsyncEngine, cid: int) -> dict[str, str]:
    """The complaint's audit, approval and notice rows, each table's rows as one text."""
    async with engine.connect() as conn:
        return {
            name: await conn.scalar(text(sql), {"id": cid}) or "" for name, sql in TRAILS.items()
        }


def personal_in(texts: dict[str, str]) -> dict[str, list[str]]:
    """Which personal text each of ``texts`` holds."""
    return {name: [p for p in PERSONAL if p in found] for name, found in texts.items()}


async def records_of(engine: AsyncEngine, cid: int) -> dict[str, Any]:
    queries = {
        "notes": "SELECT text FROM complaint_notes WHERE complaint_id = :id ORDER BY id",
        "comments": "SELECT comment FROM complaint_feedback WHERE complaint_id = :id",
        "files": "SELECT name, content IS NULL AS removed, size, sha256 "
        "FROM complaint_attachments WHERE complaint_id = :id",
        "clocks": "SELECT * FROM complaint_clocks WHERE complaint_id = :id ORDER BY id",
    }
    async with engine.connect() as conn:
        return {
            name: [tuple(r) for r in await conn.execute(text(sql), {"id": cid})]
            for name, sql in queries.items()
        }


class TestRetention:
    async def test_anonymises_every_personal_field_and_keeps_the_figures_and_the_trail(
        self, api: Api, app: FastAPI, clock: Clock, engine: AsyncEngine
    ) -> None:
        cid = await rich(api, clock)
        archived = START + timedelta(days=30)
        assert await archive_sweep(app, archived) == 1
        before, kept = await row(engine, cid), await records_of(engine, cid)
        trail = await audit(api, cid)
        assert all(personal_in(await trails_of(engine, cid)).values())
        assert await retention_sweep(app, archived + timedelta(days=3 * 365)) == 0
        now = archived.replace(year=archived.year + 3)
        assert await retention_sweep(app, now) == 1
        after, records = await row(engine, cid), await records_of(engine, cid)
        for name in ("complainant_name", "complainant_contact", "location", "description"):
            assert after[name] == MARKER, name
        assert (after["grounds"], after["request"], after["search"]) == (MARKER, MARKER, "")
        assert (after["customer_id"], after["contact_id"], after["customer_tier"]) == (
            None,
            None,
            "gold",
        )
        assert after["anonymised_at"] == now
        resolved = {**dict.fromkeys(RESOLVED, MARKER), "compensation": "800.00"}
        assert {k: after["facts"]["resolve"][k] for k in resolved} == resolved
        assert after["facts"]["reopen"] == {"reason": MARKER}
        assert after["facts"]["classify"] == {"categories": ["payment"], "severity": "high"}
        [linked] = after["linked"]
        assert set(linked) == {"at", "by", "channel", "matter"}
        assert linked["matter"] == {
            "branch": "Pudong",
            "occurred_at": before["linked"][0]["matter"]["occurred_at"],
        }
        assert records["notes"] == [(MARKER,), (MARKER,)]
        assert records["comments"] == [(MARKER,)]
        assert records["files"] == [(MARKER, True, len(PDF), kept["files"][0][3])]
        assert records["clocks"] == kept["clocks"]
        for name in (
            "reference",
            "status",
            "channel",
            "branch",
            "categories",
            "severity",
            "complainant_relation",
            "registered_at",
            "occurred_at",
            "due_at",
            "archived_at",
            "assignee_id",
        ):
            assert after[name] == before[name], name
        for personal in ("王芳", "李雷", "lilei", "13800138000", "浦东", "扣款", "身份证"):
            assert personal not in str(after) + str(records), personal
        assert personal_in(await trails_of(engine, cid)) == NONE_LEFT
        verified = await audit(api, cid)
        assert verified["verified"] is True
        sealed = ("seq", "at", "actor", "action", "before", "after", "prev_hash", "hash")
        for now_, then in zip(verified["entries"][:-1], trail["entries"], strict=True):
            assert {k: now_[k] for k in sealed} == {k: then[k] for k in sealed}
            assert (now_["reason"], now_["data"]) == (None, {})
        last = verified["entries"][-1]
        assert (last["action"], last["actor"]) == ("anonymised", "system")
        assert {k: last["data"][k] for k in ("notes", "approvals", "audit_entries")} == {
            "notes": 2,
            "approvals": 2,
            "audit_entries": len(trail["entries"]),
        }
        assert last["data"]["notices"] >= 2
        detail = expect(await api.get(f"{COMPLAINTS}/{cid}"), 200)
        assert detail["complainant"]["name"] == MARKER

    async def test_anonymisation_is_logged_as_a_declared_event(
        self, api: Api, app: FastAPI, engine: AsyncEngine
    ) -> None:
        cid = await finished(api)
        await archive_sweep(app, START + timedelta(days=30))
        await retention_sweep(app, START + timedelta(days=30 + 4 * 365))
        async with engine.connect() as conn:
            [data] = (
                await conn.execute(
                    text("SELECT data FROM events WHERE type = 'complaint.anonymised'")
                )
            ).scalars()
        TypeAdapter(PAYLOADS["complaint.anonymised"]).validate_python(data)
        assert (data["complaint_id"], data["status"]) == (cid, "archived")

    async def test_a_legal_hold_keeps_it_until_lifted(
        self, api: Api, app: FastAPI, engine: AsyncEngine
    ) -> None:
        cid = await finished(api)
        await archive_sweep(app, START + timedelta(days=30))
        url = f"{COMPLAINTS}/{cid}/legal-hold"
        held = expect(await api.post(url, {"reason": "诉讼 (2031) 沪0115民初123号"}), 200)
        assert (held["legal_hold"], held["placed_by"]) == (True, f"agent:{api.me['id']}")
        later = START + timedelta(days=30 + 5 * 365)
        texts = await trails_of(engine, cid)
        assert await retention_sweep(app, later) == 0
        assert (await row(engine, cid))["complainant_name"] != MARKER
        assert await trails_of(engine, cid) == texts
        for kept in ("王芳的重复扣款已退回", "诉讼 (2031) 沪0115民初123号"):
            assert kept in texts["audit"], kept
        lifted = expect(await api.client.delete(url, headers=api.headers), 200)
        assert (lifted["legal_hold"], lifted["reason"]) == (False, None)
        assert await retention_sweep(app, later) == 1
        assert (await row(engine, cid))["complainant_name"] == MARKER
        trail = await audit(api, cid)
        actions = [e["action"] for e in trail["entries"]][-3:]
        assert (trail["verified"], actions) == (
            True,
            ["legal_hold_placed", "legal_hold_lifted", "anonymised"],
        )
        assert trail["entries"][-3]["reason"] is None
        assert personal_in(await trails_of(engine, cid)) == NONE_LEFT

    async def test_the_table_refuses_an_anonymised_complaint_under_a_hold(
        self, api: Api, app: FastAPI
    ) -> None:
        cid = await finished(api)
        await archive_sweep(app, START + timedelta(days=30))
        expect(await api.post(f"{COMPLAINTS}/{cid}/legal-hold", {"reason": "case 7"}), 200)
        with pytest.raises(IntegrityError, match="ck_complaints_held_kept"):
            await anonymise_held(app, cid)


@pytest.fixture
async def anonymised(api: Api, app: FastAPI) -> int:
    """A complaint closed, archived and anonymised: entries 1 to 7 redacted, 8 records it."""
    cid = await finished(api)
    await archive_sweep(app, START + timedelta(days=30))
    assert await retention_sweep(app, START + timedelta(days=30 + 4 * 365)) == 1
    trail = await audit(api, cid)
    assert [e["action"] for e in trail["entries"]][-2:] == ["archive", "anonymised"]
    assert len(trail["entries"]) == 8
    return cid


TAMPERING = {
    "the anonymisation entry's content": (8, "data = data || '{\"notes\": 9}'"),
    "a digest": (2, "content_sha256 = repeat('c', 64)"),
    "a reason put back": (5, "reason = '王芳'"),
    "facts put back": (5, 'data = \'{"facts": {"resolution": "王芳"}}\''),
    "an entry un-redacted": (3, "content_sha256 = NULL"),
    "an actor": (4, "actor = 'agent:999'"),
}


class TestAnAnonymisedTrail:
    @pytest.mark.parametrize("change", sorted(TAMPERING))
    async def test_altering_an_entry_fails_verification_naming_it(
        self, api: Api, anonymised: int, superuser: asyncpg.Connection, change: str
    ) -> None:
        seq, assignment = TAMPERING[change]
        sql = f"UPDATE complaint_audit SET {assignment} WHERE complaint_id = $1 AND seq = $2"
        await behind_the_trigger(superuser, sql, anonymised, seq)
        trail = await audit(api, anonymised)
        assert (trail["verified"], trail["first_bad_seq"]) == (False, seq)

    @pytest.mark.parametrize(("seq", "named"), [(3, 3), (7, 7), (8, 1)])
    async def test_deleting_an_entry_fails_verification_naming_it(
        self, api: Api, anonymised: int, superuser: asyncpg.Connection, seq: int, named: int
    ) -> None:
        # Without its anonymisation entry, the first redaction is the first break.
        sql = "DELETE FROM complaint_audit WHERE complaint_id = $1 AND seq = $2"
        await behind_the_trigger(superuser, sql, anonymised, seq)
        trail = await audit(api, anonymised)
        assert (trail["verified"], trail["first_bad_seq"]) == (False, named)

    async def test_the_trigger_refuses_changing_a_redacted_entry(
        self, api: Api, anonymised: int, superuser: asyncpg.Connection
    ) -> None:
        sql = "UPDATE complaint_audit SET reason = 'x' WHERE complaint_id = $1 AND seq = 2"
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await superuser.execute(sql, anonymised)
        assert (await audit(api, anonymised))["verified"] is True


async def anonymise_held(app: FastAPI, cid: int) -> None:
    """Anonymise the complaint whatever the sweep would say (a hold included)."""
    async with unit_of_work(app.state.sessionmaker) as session:
        found = await session.get(Complaint, cid)
        assert found is not None
        await anonymise.anonymise(session, found, now=START + timedelta(days=2000))


class TestLegalHoldRoutes:
    async def test_only_an_admin_places_or_lifts_a_hold_and_refusals_change_nothing(
        self, api: Api, app: FastAPI, engine: AsyncEngine
    ) -> None:
        cid = await finished(api)
        url = f"{COMPLAINTS}/{cid}/legal-hold"
        supervisor = await api.signed_in_as(await api.supervisor())
        before = await tables(engine)
        expect(await supervisor.post(url, {"reason": "case"}), 403)
        expect(await api.post(url, {"reason": "  "}), 422)
        expect(await api.client.delete(url, headers=api.headers), 409)
        assert await tables(engine) == before
        expect(await api.post(url, {"reason": "case"}), 200)
        again = expect(await api.post(url, {"reason": "case"}), 409)
        assert "already under a legal hold" in again["detail"]
        expect(await supervisor.client.delete(url, headers=supervisor.headers), 403)
        expect(await api.post(f"{COMPLAINTS}/424242/legal-hold", {"reason": "case"}), 404)

    async def test_an_anonymised_complaint_takes_no_hold(self, api: Api, app: FastAPI) -> None:
        cid = await finished(api)
        await archive_sweep(app, START + timedelta(days=30))
        await retention_sweep(app, START + timedelta(days=30 + 4 * 365))
        body = expect(await api.post(f"{COMPLAINTS}/{cid}/legal-hold", {"reason": "late"}), 409)
        assert "anonymised" in body["detail"]
