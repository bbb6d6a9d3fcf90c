"""Moving complaints through the lifecycle over the API: the facts each move needs, the 409
for an illegal move, pauses and extensions on the clocks, who may act, and the events."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.complaints.events import PAYLOADS
from tests.complaints.test_registration import (
    COMPLAINTS,
    START,
    Clock,
    app,
    clock,
    complaint_body,
    engine,
    register,
    scalar,
)
from tests.fixtures.factories import Api, expect

__all__ = ["app", "clock", "engine"]  # fixtures shared with the registration tests

RESOLUTION = {
    "resolution": "重复扣款已退回",
    "root_cause": "清算系统重复提交",
    "corrective_action": "修复重复提交的校验",
    "remedy": "退款并致歉",
    "compensation": "50.00",
}


async def move(api: Api, complaint_id: int, verb: str, body: Any = None, status: int = 200) -> Any:
    return expect(await api.post(f"{COMPLAINTS}/{complaint_id}/{verb}", body), status)


async def snapshot(api: Api, complaint_id: int) -> dict[str, Any]:
    return expect(await api.get(f"{COMPLAINTS}/{complaint_id}"), 200)  # type: ignore[no-any-return]


def approvals_url(complaint_id: int) -> str:
    return f"{COMPLAINTS}/{complaint_id}/approvals"


async def approved(api: Api, complaint_id: int, terms: dict[str, Any]) -> dict[str, Any]:
    """An approval of ``terms`` asked for by ``api`` and given by a fresh supervisor."""
    boss = await api.signed_in_as(await api.supervisor())
    asked = expect(
        await api.post(approvals_url(complaint_id), {"reason": "需要外部鉴定", **terms}), 201
    )
    url = f"{approvals_url(complaint_id)}/{asked['id']}/approve"
    return expect(await boss.post(url), 200)  # type: ignore[no-any-return]


def resolution_due(complaint: dict[str, Any]) -> datetime:
    [clock] = [c for c in complaint["clocks"] if c["kind"] == "resolution"]
    return datetime.fromisoformat(clock["due_at"])


@pytest.fixture
async def assigned(api: Api) -> dict[str, Any]:
    """A complaint classified, assigned to a fresh agent and started."""
    agent = await api.agent()
    done = await register(api, complaint_body())
    await move(api, done["id"], "classify", {"categories": ["payment"], "severity": "high"})
    await move(api, done["id"], "assign", {"assignee": agent["id"]})
    return await move(api, done["id"], "start")  # type: ignore[no-any-return]


class TestHappyPath:
    async def test_registered_to_archived_with_a_pause_that_moves_the_deadline(
        self, api: Api, clock: Clock
    ) -> None:
        agent = await api.agent()
        done = await register(api, complaint_body())
        cid = done["id"]
        classified = await move(
            api, cid, "classify", {"categories": ["payment", "credit_card"], "severity": "high"}
        )
        assert (classified["status"], classified["categories"]) == (
            "classified",
            ["payment", "credit_card"],
        )
        assert (await move(api, cid, "assign", {"assignee": agent["id"]}))["assignee_id"] == agent[
            "id"
        ]
        assert (await move(api, cid, "start"))["status"] == "in_progress"

        clock.advance(timedelta(hours=5))
        paused = await move(api, cid, "pause", {"reason": "waiting_for_customer"})
        assert paused["status"] == "paused"
        [resolution] = [c for c in paused["clocks"] if c["kind"] == "resolution"]
        assert (resolution["status"], resolution["paused_for"]) == (
            "paused",
            "waiting_for_customer",
        )
        clock.advance(timedelta(hours=7, minutes=30))
        resumed = await move(api, cid, "resume")
        assert resumed["status"] == "in_progress"
        pause = timedelta(hours=7, minutes=30)
        assert resolution_due(resumed) == START + timedelta(days=3) + pause
        assert datetime.fromisoformat(resumed["due_at"]) == START + timedelta(days=3) + pause

        resolved = await move(api, cid, "resolve", RESOLUTION)
        assert resolved["status"] == "resolved"
        assert resolved["facts"]["resolve"]["remedy"] == "退款并致歉"
        assert {c["kind"]: c["status"] for c in resolved["clocks"]}["resolution"] == "stopped"
        assert (await move(api, cid, "confirm"))["status"] == "confirmed"
        archived = await move(api, cid, "archive")
        assert archived["status"] == "archived"
        actions = [e["action"] for e in archived["timeline"]]
        assert actions == [
            "registered",
            "classify",
            "assign",
            "start",
            "pause",
            "resume",
            "resolve",
            "confirm",
            "archive",
        ]
        audit = expect(await api.get(f"{COMPLAINTS}/{cid}/audit"), 200)
        assert (audit["verified"], audit["first_bad_seq"]) == (True, None)
        assert [e["seq"] for e in audit["entries"]] == list(range(1, 10))

    async def test_every_logged_complaint_event_is_declared(
        self, api: Api, engine: AsyncEngine, assigned: dict[str, Any]
    ) -> None:
        customer = await api.customer()
        await register(api, complaint_body(customer={"id": customer["id"]}))
        await register(api, complaint_body(channel="web", customer={"id": customer["id"]}), 200)
        await move(api, assigned["id"], "escalate", {"target": "supervisor"})
        async with engine.connect() as conn:
            logged = (
                await conn.execute(
                    text("SELECT type, data FROM events WHERE type LIKE 'complaint.%' ORDER BY id")
                )
            ).all()
        types = {t for t, _ in logged}
        assert types == {"complaint.registered", "complaint.linked", "complaint.status_changed"}
        for type_, data in logged:
            TypeAdapter(PAYLOADS[type_]).validate_python(data)


class TestRefusals:
    async def test_an_illegal_move_is_a_409_naming_the_status_and_changes_nothing(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        done = await register(api, complaint_body())
        before = await snapshot(api, done["id"])
        body = await move(api, done["id"], "resolve", RESOLUTION, status=409)
        assert body["status"] == "registered"
        assert "registered" in body["detail"]
        after = await snapshot(api, done["id"])
        assert after["status"] == "registered"
        assert after["timeline"] == before["timeline"]
        assert after["facts"] == {}

    async def test_an_archived_complaint_refuses_every_move(
        self, api: Api, assigned: dict[str, Any]
    ) -> None:
        for verb, facts in (("resolve", RESOLUTION), ("confirm", None), ("archive", None)):
            await move(api, assigned["id"], verb, facts)
        body = await move(
            api, assigned["id"], "classify", {"categories": ["x"], "severity": "low"}, 409
        )
        assert body["status"] == "archived"
        expect(await api.post(f"{COMPLAINTS}/{assigned['id']}/reopen", {"reason": "again"}), 409)

    async def test_a_move_lacking_facts_names_each_of_them(
        self, api: Api, assigned: dict[str, Any]
    ) -> None:
        body = await move(api, assigned["id"], "resolve", {"remedy": "退款"}, status=422)
        assert sorted(f["field"] for f in body["fields"]) == [
            "corrective_action",
            "resolution",
            "root_cause",
        ]
        assert (await snapshot(api, assigned["id"]))["status"] == "in_progress"

    async def test_facts_the_move_does_not_take_are_named_and_nothing_changes(
        self, api: Api
    ) -> None:
        done = await register(api, complaint_body())
        before = await snapshot(api, done["id"])
        facts = {"categories": ["fees"], "severity": "low", "compensation": "100", "days": 3}
        body = await move(api, done["id"], "classify", facts, status=422)
        assert [(f["field"], f["message"]) for f in body["fields"]] == [
            ("compensation", "classify does not take this fact"),
            ("days", "classify does not take this fact"),
        ]
        after = await snapshot(api, done["id"])
        assert (after["status"], after["facts"], after["timeline"]) == (
            "registered",
            {},
            before["timeline"],
        )

    async def test_a_reason_may_come_with_any_move(self, api: Api) -> None:
        done = await register(api, complaint_body())
        facts = {"categories": ["fees"], "severity": "low", "reason": "the customer's words"}
        after = await move(api, done["id"], "classify", facts)
        assert after["facts"]["classify"]["reason"] == "the customer's words"

    @pytest.mark.parametrize("reason", [None, "lunch break"])
    async def test_a_pause_without_a_listed_reason_is_a_422(
        self, api: Api, assigned: dict[str, Any], reason: str | None
    ) -> None:
        body = await move(api, assigned["id"], "pause", {"reason": reason}, status=422)
        assert [f["field"] for f in body["fields"]] == ["reason"]
        after = await snapshot(api, assigned["id"])
        assert after["status"] == "in_progress"
        assert all(c["paused_for"] is None for c in after["clocks"])
        assert len(after["timeline"]) == len(assigned["timeline"])


class TestExtensions:
    async def test_an_extension_without_an_approval_is_a_422(
        self, api: Api, assigned: dict[str, Any]
    ) -> None:
        body = await move(api, assigned["id"], "extend", {"reason": "late", "days": 2}, status=422)
        assert [f["field"] for f in body["fields"]] == ["approval"]
        after = await snapshot(api, assigned["id"])
        assert resolution_due(after) == START + timedelta(days=3)
        assert len(after["timeline"]) == len(assigned["timeline"])

    async def test_an_approver_named_instead_of_an_approval_is_refused(
        self, api: Api, assigned: dict[str, Any]
    ) -> None:
        boss = await api.supervisor()
        facts = {"reason": "需要外部鉴定", "approver": boss["id"], "days": 2}
        body = await move(api, assigned["id"], "extend", facts, status=422)
        assert "approver" in {f["field"] for f in body["fields"]}
        assert resolution_due(await snapshot(api, assigned["id"])) == START + timedelta(days=3)

    async def test_an_approved_extension_moves_the_deadline_by_its_days(
        self, api: Api, assigned: dict[str, Any]
    ) -> None:
        given = await approved(api, assigned["id"], {"kind": "extension", "days": 2})
        facts = {"reason": "需要外部鉴定", "approval": given["id"], "days": 2}
        extended = await move(api, assigned["id"], "extend", facts)
        assert extended["status"] == "in_progress"
        assert resolution_due(extended) == START + timedelta(days=5)
        assert datetime.fromisoformat(extended["due_at"]) == START + timedelta(days=5)
        entry = extended["timeline"][-1]
        assert (entry["action"], entry["data"]["facts"]["approval"]) == ("extend", given["id"])
        assert entry["data"]["approved_by_id"] == given["decided_by_id"]


class TestWhoMayAct:
    async def test_an_agent_acts_only_on_complaints_assigned_to_them(self, api: Api) -> None:
        agent_row = await api.agent()
        agent = await api.signed_in_as(agent_row)
        done = await register(agent, complaint_body())
        body = await move(
            agent, done["id"], "classify", {"categories": ["p"], "severity": "low"}, 403
        )
        assert body["error"] == "Forbidden"
        assert body["detail"] == "an agent may act on complaints only for their own work"
        await move(api, done["id"], "assign", {"assignee": agent_row["id"]})
        assert (await move(agent, done["id"], "start"))["status"] == "in_progress"

    async def test_a_supervisor_of_another_site_does_not_see_it(self, api: Api) -> None:
        here = await api.agent(site="shanghai")
        done = await register(api, complaint_body())
        await move(api, done["id"], "assign", {"assignee": here["id"]})
        there = await api.signed_in_as(await api.supervisor(site="beijing"))
        expect(await there.post(f"{COMPLAINTS}/{done['id']}/start"), 404)
        local = await api.signed_in_as(await api.supervisor(site="shanghai"))
        assert (await move(local, done["id"], "start"))["status"] == "in_progress"

    async def test_an_unknown_complaint_is_a_404(self, api: Api, engine: AsyncEngine) -> None:
        expect(await api.post(f"{COMPLAINTS}/424242/start"), 404)
        assert await scalar(engine, "SELECT count(*) FROM complaint_audit") == 0
