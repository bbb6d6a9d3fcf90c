"""Two-person approvals over the API: asking, deciding, withdrawing, and the ``resolve`` and
``extend`` moves that use them. Every refusal is a 4xx that changes nothing (the complaint
row, its clocks, the approvals, its audit trail, the approval and move events); of ten
approvers at once exactly one decides; the audit chain verifies afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import Response
from pydantic import TypeAdapter
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.complaints import approval_models
from app.complaints.approval_models import ApprovalAction, ApprovalStatus
from app.complaints.approvals_router import router as approvals_router
from app.complaints.events import PAYLOADS
from app.complaints.router import router as complaints_router
from app.complaints.service import Desk
from app.config import Settings
from app.main import create_app
from tests.complaints.test_notes import mount_first
from tests.complaints.test_registration import COMPLAINTS, START, Clock, clock, complaint_body
from tests.complaints.test_registration import register as register_complaint
from tests.complaints.test_transitions import RESOLUTION, approvals_url, move, resolution_due
from tests.fixtures.desk_clock import freeze_desk
from tests.fixtures.factories import Api, expect

__all__ = ["clock"]  # a fixture shared with the registration tests

COMPENSATION = {"kind": "compensation", "amount": "800.00", "reason": "重复扣款造成利息损失"}
EXTENSION = {"kind": "extension", "days": 2, "reason": "需要外部鉴定"}
FOOTPRINT = (
    "SELECT md5(c::text) FROM complaints c WHERE id = :id",
    "SELECT md5(coalesce(string_agg(k::text, '|' ORDER BY k.id), '')) FROM complaint_clocks k",
    "SELECT md5(coalesce(string_agg(a::text, '|' ORDER BY a.id), '')) FROM complaint_approvals a",
    "SELECT count(*) FROM complaint_audit WHERE complaint_id = :id",
    "SELECT count(*) FROM events WHERE type LIKE 'complaint.approval_%'"
    " OR type = 'complaint.status_changed'",
)


@pytest.fixture
async def app(settings: Settings, clock: Clock) -> AsyncIterator[FastAPI]:
    """The app with the desk's routes, the approval routes in front of them, and the clock."""
    application = create_app(settings)
    if not any(getattr(r, "path", None) == COMPLAINTS for r in application.routes):
        application.include_router(complaints_router)
    mount_first(application, approvals_router)
    freeze_desk(application, clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


@dataclass
class Case:
    """A complaint in progress, handled by ``handler``; ``boss`` supervises their site."""

    admin: Api
    handler: Api
    boss: Api
    id: int

    def url(self, approval_id: int | None = None, verb: str | None = None) -> str:
        parts = [approvals_url(self.id), *([str(approval_id)] if approval_id else [])]
        return "/".join([*parts, *([verb] if verb else [])])


async def new_case(api: Api) -> Case:
    handler_row = await api.agent(site="shanghai")
    handler = await api.signed_in_as(handler_row)
    boss = await api.signed_in_as(await api.supervisor(site="shanghai"))
    done = await register_complaint(api, complaint_body())
    await move(api, done["id"], "assign", {"assignee": handler_row["id"]})
    await move(handler, done["id"], "start")
    return Case(api, handler, boss, done["id"])


@pytest.fixture
async def case(api: Api) -> Case:
    return await new_case(api)


async def ask(case: Case, terms: dict[str, Any], by: Api | None = None) -> dict[str, Any]:
    return expect(await (by or case.handler).post(case.url(), terms), 201)  # type: ignore[no-any-return]


async def given(case: Case, terms: dict[str, Any]) -> dict[str, Any]:
    """An approval the handler asked for and the site's supervisor gave."""
    asked = await ask(case, terms)
    return expect(await case.boss.post(case.url(asked["id"], "approve")), 200)  # type: ignore[no-any-return]


def resolving(compensation: str, approval: int | None = None) -> dict[str, Any]:
    facts = {**RESOLUTION, "compensation": compensation}
    return facts if approval is None else {**facts, "approval": approval}


def extending(approval: int | None, days: int = 2, **more: Any) -> dict[str, Any]:
    facts = {"reason": "需要外部鉴定 延长两天", "days": days, **more}
    return facts if approval is None else {**facts, "approval": approval}


async def footprint(engine: AsyncEngine, complaint_id: int) -> list[Any]:
    async with engine.connect() as conn:
        return [await conn.scalar(text(sql), {"id": complaint_id}) for sql in FOOTPRINT]


async def refused(
    engine: AsyncEngine, case: Case, call: Awaitable[Response], status: int
) -> dict[str, Any]:
    """The body of a refusal, after checking that it changed nothing."""
    before = await footprint(engine, case.id)
    body = expect(await call, status)
    assert await footprint(engine, case.id) == before
    return body  # type: ignore[no-any-return]


async def verified(api: Api, complaint_id: int) -> list[str]:
    trail = expect(await api.get(f"{COMPLAINTS}/{complaint_id}/audit"), 200)
    assert (trail["verified"], trail["first_bad_seq"]) == (True, None)
    return [e["action"] for e in trail["entries"]]


async def logged(engine: AsyncEngine) -> list[tuple[str, dict[str, Any]]]:
    sql = "SELECT type, data FROM events WHERE type LIKE 'complaint.approval_%' ORDER BY id"
    async with engine.connect() as conn:
        return [(t, d) for t, d in (await conn.execute(text(sql))).all()]


class TestTheStatusTable:
    @pytest.mark.parametrize("status", list(ApprovalStatus))
    @pytest.mark.parametrize("action", list(ApprovalAction))
    def test_only_a_pending_request_is_decided_and_only_an_approval_is_used(
        self, status: ApprovalStatus, action: ApprovalAction
    ) -> None:
        allowed = {
            (ApprovalStatus.pending, ApprovalAction.approve): ApprovalStatus.approved,
            (ApprovalStatus.pending, ApprovalAction.decline): ApprovalStatus.declined,
            (ApprovalStatus.pending, ApprovalAction.withdraw): ApprovalStatus.withdrawn,
            (ApprovalStatus.approved, ApprovalAction.use): ApprovalStatus.used,
        }
        assert approval_models.moves() == allowed
        if (status, action) in allowed:
            assert approval_models.apply(status, action) is allowed[status, action]
        else:
            with pytest.raises(approval_models.IllegalApprovalMove, match=status.value):
                approval_models.apply(status, action)


class TestAsking:
    async def test_the_handler_asks_and_the_trail_and_the_log_say_so(
        self, case: Case, engine: AsyncEngine
    ) -> None:
        asked = await ask(case, COMPENSATION)
        assert (asked["status"], asked["amount"], asked["currency"]) == ("pending", "800.00", "CNY")
        assert asked["requested_by_id"] == case.handler.me["id"]
        assert (await verified(case.admin, case.id))[-1] == "approval_requested"
        [(type_, data)] = await logged(engine)
        TypeAdapter(PAYLOADS[type_]).validate_python(data)
        assert (type_, data["approval_id"], data["amount"]) == (
            "complaint.approval_requested",
            asked["id"],
            "800.00",
        )
        page = expect(await case.admin.get(case.url(), params={"status": "pending"}), 200)
        assert [a["id"] for a in page["items"]] == [asked["id"]]

    @pytest.mark.parametrize(
        ("terms", "field"),
        [
            ({"kind": "compensation", "reason": "r"}, "amount"),
            ({**COMPENSATION, "days": 2}, "days"),
            ({**COMPENSATION, "amount": "0.00"}, "amount"),
            ({**COMPENSATION, "amount": "1.005"}, "amount"),
            ({**COMPENSATION, "currency": "USD"}, "currency"),
            ({"kind": "extension", "reason": "r"}, "days"),
            ({**EXTENSION, "amount": "10.00"}, "amount"),
            ({**EXTENSION, "clock": "refund"}, "clock"),
            ({**EXTENSION, "clock": "acknowledgement"}, "days"),
            ({**EXTENSION, "reason": "  "}, "reason"),
        ],
    )
    async def test_missing_extra_or_impossible_terms_are_a_422_naming_the_field(
        self, case: Case, engine: AsyncEngine, terms: dict[str, Any], field: str
    ) -> None:
        body = await refused(engine, case, case.handler.post(case.url(), terms), 422)
        assert field in {f["field"] for f in body["fields"]}

    async def test_a_finished_complaint_takes_no_request(
        self, case: Case, engine: AsyncEngine
    ) -> None:
        await move(case.admin, case.id, "withdraw", {"reason": "客户撤回"})
        body = await refused(engine, case, case.handler.post(case.url(), COMPENSATION), 409)
        assert body["status"] == "withdrawn"

    async def test_a_retried_request_asks_once(self, case: Case, engine: AsyncEngine) -> None:
        key = {"Idempotency-Key": "ask-800"}
        first = expect(await case.handler.post(case.url(), COMPENSATION, headers=key), 201)
        again = expect(await case.handler.post(case.url(), COMPENSATION, headers=key), 201)
        assert first == again
        page = expect(await case.admin.get(case.url()), 200)
        assert len(page["items"]) == 1


class TestDeciding:
    async def test_the_sites_supervisor_approves_and_a_decline_says_why(
        self, case: Case, engine: AsyncEngine
    ) -> None:
        approved = await given(case, COMPENSATION)
        assert (approved["status"], approved["decided_by_id"]) == ("approved", case.boss.me["id"])
        other = await ask(case, EXTENSION)
        body = await refused(engine, case, case.boss.post(case.url(other["id"], "decline")), 422)
        assert [f["field"] for f in body["fields"]] == ["reason"]
        why = {"reason": "鉴定可在期限内完成"}
        declined = expect(await case.boss.post(case.url(other["id"], "decline"), why), 200)
        assert (declined["status"], declined["decision_reason"]) == ("declined", why["reason"])
        actions = await verified(case.admin, case.id)
        assert actions[-4:] == [
            "approval_requested",
            "approval_approved",
            "approval_requested",
            "approval_declined",
        ]
        assert "鉴定可在期限内完成" not in str(actions)
        for type_, data in await logged(engine):
            TypeAdapter(PAYLOADS[type_]).validate_python(data)

    async def test_the_requester_never_approves_their_own_request(
        self, case: Case, engine: AsyncEngine
    ) -> None:
        asked = await ask(case, COMPENSATION, by=case.boss)
        call = case.boss.post(case.url(asked["id"], "approve"))
        body = await refused(engine, case, call, 403)
        assert body["detail"] == "an approval is never given by the person who asked for it"

    async def test_an_agent_never_approves(self, case: Case, engine: AsyncEngine) -> None:
        asked = await ask(case, COMPENSATION, by=case.boss)
        body = await refused(engine, case, case.handler.post(case.url(asked["id"], "approve")), 403)
        assert "supervisor or an admin" in body["detail"]

    async def test_a_supervisor_of_another_site_does_not_see_it(
        self, case: Case, engine: AsyncEngine
    ) -> None:
        asked = await ask(case, COMPENSATION)
        there = await case.admin.signed_in_as(await case.admin.supervisor(site="beijing"))
        await refused(engine, case, there.post(case.url(asked["id"], "approve")), 404)

    async def test_deciding_twice_is_a_409_naming_the_status(
        self, case: Case, engine: AsyncEngine
    ) -> None:
        approved = await given(case, COMPENSATION)
        for verb in ("approve", "decline", "withdraw"):
            call = case.admin.post(case.url(approved["id"], verb), {"reason": "again"})
            body = await refused(engine, case, call, 409)
            assert (body["approval_status"], body["detail"]) == (
                "approved",
                f"approval {approved['id']} is approved, not pending",
            )

    async def test_another_complaints_approval_is_not_found_here(
        self, case: Case, engine: AsyncEngine
    ) -> None:
        other = await new_case(case.admin)
        asked = await ask(other, COMPENSATION)
        await refused(engine, case, case.boss.post(case.url(asked["id"], "approve")), 404)

    async def test_a_withdrawn_request_is_no_longer_decided(
        self, case: Case, engine: AsyncEngine
    ) -> None:
        asked = await ask(case, COMPENSATION)
        gone = expect(await case.handler.post(case.url(asked["id"], "withdraw")), 200)
        assert (gone["status"], gone["decided_by_id"]) == ("withdrawn", case.handler.me["id"])
        body = await refused(engine, case, case.boss.post(case.url(asked["id"], "approve")), 409)
        assert body["approval_status"] == "withdrawn"

    async def test_of_ten_approvers_at_once_exactly_one_decides(
        self, case: Case, engine: AsyncEngine
    ) -> None:
        asked = await ask(case, COMPENSATION)
        bosses = [
            await case.admin.signed_in_as(await case.admin.supervisor(site="shanghai"))
            for _ in range(10)
        ]
        url = case.url(asked["id"], "approve")
        answers = await asyncio.gather(*(boss.post(url) for boss in bosses))
        codes = sorted(a.status_code for a in answers)
        assert codes == [200] + [409] * 9, [a.text for a in answers]
        [winner] = [b for b, a in zip(bosses, answers, strict=True) if a.status_code == 200]
        losers = [a.json() for a in answers if a.status_code == 409]
        assert {(b.get("approval_status"), b.get("approval_id")) for b in losers} == {
            ("approved", asked["id"])
        }, losers
        page = expect(await case.admin.get(case.url()), 200)
        assert page["items"][0]["decided_by_id"] == winner.me["id"]
        assert (await verified(case.admin, case.id)).count("approval_approved") == 1

    async def test_the_database_refuses_a_one_person_approval(
        self, case: Case, engine: AsyncEngine
    ) -> None:
        asked = await ask(case, COMPENSATION)
        sql = (
            "UPDATE complaint_approvals SET status = 'approved', decided_by_id = requested_by_id,"
            " decided_at = now() WHERE id = :id"
        )
        with pytest.raises(IntegrityError, match="ck_complaint_approvals_two_people"):
            async with engine.begin() as conn:
                await conn.execute(text(sql), {"id": asked["id"]})


class TestCompensation:
    async def test_at_or_below_the_threshold_no_approval_is_needed(self, case: Case) -> None:
        resolved = await move(case.handler, case.id, "resolve", resolving("500.00"))
        assert resolved["status"] == "resolved"

    async def test_above_it_without_an_approval_is_a_422_naming_approval(
        self, case: Case, engine: AsyncEngine
    ) -> None:
        call = case.handler.post(f"{COMPLAINTS}/{case.id}/resolve", resolving("800.00"))
        body = await refused(engine, case, call, 422)
        assert body["fields"] == [
            {
                "field": "approval",
                "message": "approval: compensation of 800.00 needs a second person's approval "
                "above 500.00",
            }
        ]

    async def test_an_amount_however_written_is_answered_and_kept_with_two_decimals(
        self, case: Case
    ) -> None:
        asked = await ask(case, {**COMPENSATION, "amount": 8e2})
        [listed] = expect(await case.admin.get(case.url()), 200)["items"]
        assert asked["amount"] == listed["amount"] == "800.00"
        approved = expect(await case.boss.post(case.url(asked["id"], "approve")), 200)
        resolved = await move(case.handler, case.id, "resolve", resolving("7.5E+2", approved["id"]))
        assert resolved["facts"]["resolve"]["compensation"] == "750.00"
        assert resolved["timeline"][-1]["data"]["facts"]["compensation"] == "750.00"
        assert (await verified(case.admin, case.id))[-1] == "resolve"

    async def test_the_desk_sets_the_threshold(self, app: FastAPI, case: Case) -> None:
        app.state.complaint_desk = Desk(compensation_approval_above=Decimal("1000.00"))
        resolved = await move(case.handler, case.id, "resolve", resolving("800.00"))
        assert resolved["status"] == "resolved"

    async def test_an_approved_compensation_resolves_and_is_used_once(
        self, case: Case, engine: AsyncEngine
    ) -> None:
        approved = await given(case, COMPENSATION)
        facts = resolving("800.00", approved["id"])
        resolved = await move(case.handler, case.id, "resolve", facts)
        assert resolved["status"] == "resolved"
        entry = resolved["timeline"][-1]
        assert (entry["data"]["facts"]["approval"], entry["data"]["approved_by_id"]) == (
            approved["id"],
            case.boss.me["id"],
        )
        [used] = expect(await case.admin.get(case.url()), 200)["items"]
        assert (used["status"], used["used_by_id"]) == ("used", case.handler.me["id"])
        await move(case.handler, case.id, "reopen", {"reason": "客户不满意"})
        again = case.handler.post(f"{COMPLAINTS}/{case.id}/resolve", facts)
        body = await refused(engine, case, again, 409)
        assert body["approval_status"] == "used"
        await verified(case.admin, case.id)

    async def test_the_one_who_approved_never_pays_it_out(
        self, case: Case, engine: AsyncEngine
    ) -> None:
        approved = await given(case, COMPENSATION)
        call = case.boss.post(
            f"{COMPLAINTS}/{case.id}/resolve", resolving("800.00", approved["id"])
        )
        body = await refused(engine, case, call, 403)
        assert body["detail"] == "an approval is never used by the person who gave it"

    @pytest.mark.parametrize(
        ("make", "compensation", "status", "says"),
        [
            ("more", "800.01", 422, "more than approval"),
            ("pending", "800.00", 409, "is pending, not approved"),
            ("extension", "800.00", 422, "is for extension, not compensation"),
            ("elsewhere", "800.00", 422, "not one of this complaint's approvals"),
            ("no_money", None, 422, "grants none"),
        ],
    )
    async def test_an_approval_that_does_not_cover_the_compensation_is_refused(
        self,
        case: Case,
        engine: AsyncEngine,
        make: str,
        compensation: str | None,
        status: int,
        says: str,
    ) -> None:
        if make == "pending":
            approval = await ask(case, COMPENSATION)
        elif make == "extension":
            approval = await given(case, EXTENSION)
        elif make == "elsewhere":
            approval = await given(await new_case(case.admin), COMPENSATION)
        else:
            approval = await given(case, COMPENSATION)
        facts = {**RESOLUTION, "approval": approval["id"], "compensation": compensation}
        call = case.handler.post(f"{COMPLAINTS}/{case.id}/resolve", facts)
        body = await refused(engine, case, call, status)
        assert says in body["detail"]


class TestExtension:
    async def test_an_extension_without_an_approval_is_a_422(
        self, case: Case, engine: AsyncEngine
    ) -> None:
        call = case.handler.post(f"{COMPLAINTS}/{case.id}/extend", extending(None))
        body = await refused(engine, case, call, 422)
        assert [f["field"] for f in body["fields"]] == ["approval"]

    async def test_an_approved_extension_moves_the_deadline_once(
        self, case: Case, engine: AsyncEngine
    ) -> None:
        approved = await given(case, EXTENSION)
        extended = await move(case.handler, case.id, "extend", extending(approved["id"]))
        assert resolution_due(extended) == START + timedelta(days=5)
        async with engine.connect() as conn:
            sql = "SELECT extensions FROM complaint_clocks WHERE kind = 'resolution'"
            [extension] = await conn.scalar(text(sql))
        assert (extension["approval_id"], extension["approver_id"]) == (
            approved["id"],
            case.boss.me["id"],
        )
        again = case.handler.post(f"{COMPLAINTS}/{case.id}/extend", extending(approved["id"]))
        assert (await refused(engine, case, again, 409))["approval_status"] == "used"
        assert (await verified(case.admin, case.id))[-1] == "extend"

    @pytest.mark.parametrize(
        ("terms", "says"),
        [
            ({**EXTENSION, "days": 3}, "grants 3 days on the resolution clock, not 2"),
            (COMPENSATION, "is for compensation, not extension"),
        ],
    )
    async def test_an_approval_for_other_terms_is_refused(
        self, case: Case, engine: AsyncEngine, terms: dict[str, Any], says: str
    ) -> None:
        approved = await given(case, terms)
        call = case.handler.post(f"{COMPLAINTS}/{case.id}/extend", extending(approved["id"]))
        body = await refused(engine, case, call, 422)
        assert says in body["detail"]
        assert [f["field"] for f in body["fields"]] == ["approval"]
