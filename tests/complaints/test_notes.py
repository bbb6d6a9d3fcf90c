"""Notes on a complaint and the customer's satisfaction survey, over the API: who may write
and read them, what reaches the audit chain and the log, when a survey is taken and that it
is taken once per closure.

Also the app the public-lookup tests share: the desk's routes with these mounted in front of
the lifecycle's ``POST /complaints/{id}/{verb}`` (whose path shape they share).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from pydantic import TypeAdapter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.complaints.events import PAYLOADS
from app.complaints.notes_router import router as notes_router
from app.complaints.public_router import router as public_router
from app.complaints.router import router as complaints_router
from app.config import Settings
from app.main import create_app
from tests.complaints.test_registration import (
    COMPLAINTS,
    Clock,
    clock,
    complaint_body,
    register,
    scalar,
)
from tests.complaints.test_transitions import RESOLUTION, move
from tests.fixtures.desk_clock import freeze_desk
from tests.fixtures.factories import Api, expect

__all__ = ["clock"]  # a fixture shared with the registration tests


def mount_first(application: FastAPI, router: APIRouter) -> None:
    """Mount ``router`` ahead of every route, unless the app mounts it already."""
    paths = {getattr(r, "path", None) for r in router.routes}
    if any(getattr(r, "path", None) in paths for r in application.router.routes):
        return
    before = len(application.router.routes)
    application.include_router(router)
    added = application.router.routes[before:]
    del application.router.routes[before:]
    application.router.routes[:0] = added


@pytest.fixture
async def app(settings: Settings, clock: Clock) -> AsyncIterator[FastAPI]:
    """The app with the desk's routes, the notes, feedback and public routes, and the clock."""
    application = create_app(settings)
    if not any(getattr(r, "path", None) == COMPLAINTS for r in application.routes):
        application.include_router(complaints_router)
    mount_first(application, notes_router)
    mount_first(application, public_router)
    freeze_desk(application, clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


def notes_url(complaint_id: int) -> str:
    return f"{COMPLAINTS}/{complaint_id}/notes"


def feedback_url(complaint_id: int) -> str:
    return f"{COMPLAINTS}/{complaint_id}/feedback"


async def audit(api: Api, complaint_id: int) -> dict[str, Any]:
    return expect(await api.get(f"{COMPLAINTS}/{complaint_id}/audit"), 200)  # type: ignore[no-any-return]


async def logged(engine: AsyncEngine, event_type: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT data FROM events WHERE type = :type ORDER BY id"), {"type": event_type}
        )
        return [row.data for row in rows]


async def resolved(api: Api) -> dict[str, Any]:
    """A complaint assigned to a fresh agent, started and resolved."""
    agent = await api.agent()
    done = await register(api, complaint_body())
    await move(api, done["id"], "assign", {"assignee": agent["id"]})
    await move(api, done["id"], "start")
    return await move(api, done["id"], "resolve", RESOLUTION)  # type: ignore[no-any-return]


class TestNotes:
    async def test_a_note_is_internal_unless_said_and_notes_list_oldest_first(
        self, api: Api
    ) -> None:
        done = await register(api, complaint_body())
        first = expect(await api.post(notes_url(done["id"]), {"text": "客户情绪激动"}), 201)
        second = expect(
            await api.post(notes_url(done["id"]), {"text": "已致电说明进展", "internal": False}),
            201,
        )
        assert (first["internal"], second["internal"]) == (True, False)
        assert first["author_id"] == api.me["id"]
        page = expect(await api.get(notes_url(done["id"])), 200)
        assert [n["text"] for n in page["items"]] == ["客户情绪激动", "已致电说明进展"]

    async def test_a_note_is_chained_into_the_audit_trail_without_its_text(self, api: Api) -> None:
        done = await register(api, complaint_body())
        expect(await api.post(notes_url(done["id"]), {"text": "客户身份证号码已核实"}), 201)
        trail = await audit(api, done["id"])
        assert (trail["verified"], [e["action"] for e in trail["entries"]]) == (
            True,
            ["registered", "note"],
        )
        entry = trail["entries"][-1]
        assert (entry["before"], entry["after"]) == ("registered", "registered")
        assert set(entry["data"]) == {"note_id", "internal", "text_sha256"}
        assert "身份证" not in str(trail)

    async def test_a_note_writes_a_declared_event(self, api: Api, engine: AsyncEngine) -> None:
        done = await register(api, complaint_body())
        note = expect(await api.post(notes_url(done["id"]), {"text": "x", "internal": False}), 201)
        [payload] = await logged(engine, "complaint.note_added")
        TypeAdapter(PAYLOADS["complaint.note_added"]).validate_python(payload)
        assert (payload["note_id"], payload["internal"]) == (note["id"], False)

    async def test_whoever_may_read_reads_notes_and_only_whoever_may_act_writes(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        registrar = await api.signed_in_as(await api.agent())
        stranger = await api.signed_in_as(await api.agent())
        done = await register(registrar, complaint_body())
        expect(await api.post(notes_url(done["id"]), {"text": "内部"}), 201)
        # the agent who registered it reads it, but acts only once it is assigned to them
        assert len(expect(await registrar.get(notes_url(done["id"])), 200)["items"]) == 1
        expect(await registrar.post(notes_url(done["id"]), {"text": "mine"}), 403)
        # an agent it is nothing to does not learn it exists
        expect(await stranger.get(notes_url(done["id"])), 404)
        expect(await stranger.post(notes_url(done["id"]), {"text": "theirs"}), 404)
        assert await scalar(engine, "SELECT count(*) FROM complaint_notes") == 1
        await move(api, done["id"], "assign", {"assignee": registrar.me["id"]})
        expect(await registrar.post(notes_url(done["id"]), {"text": "mine"}), 201)

    async def test_reading_notes_is_on_the_access_log(self, api: Api, engine: AsyncEngine) -> None:
        done = await register(api, complaint_body())
        expect(await api.get(notes_url(done["id"])), 200)
        expect(await api.get(notes_url(424242)), 404)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("SELECT outcome, subject_id FROM access_log WHERE kind = 'complaint.read'")
                )
            ).all()
        assert sorted(map(tuple, rows), key=str) == sorted(
            [("found", done["id"]), ("not_found", None)], key=str
        )

    async def test_an_archived_complaint_takes_no_note(self, api: Api, engine: AsyncEngine) -> None:
        done = await resolved(api)
        await move(api, done["id"], "confirm")
        await move(api, done["id"], "archive")
        body = expect(await api.post(notes_url(done["id"]), {"text": "too late"}), 409)
        assert "archived" in body["detail"]
        assert await scalar(engine, "SELECT count(*) FROM complaint_notes") == 0

    async def test_a_blank_note_is_a_422(self, api: Api) -> None:
        done = await register(api, complaint_body())
        body = expect(await api.post(notes_url(done["id"]), {"text": "   "}), 422)
        assert [f["field"] for f in body["fields"]] == ["text"]


class TestFeedback:
    async def test_refused_until_the_complaint_is_resolved(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        done = await register(api, complaint_body())
        body = expect(await api.post(feedback_url(done["id"]), {"csat": 5}), 409)
        assert "registered" in body["detail"]
        assert await scalar(engine, "SELECT count(*) FROM complaint_feedback") == 0
        assert len((await audit(api, done["id"]))["entries"]) == 1

    async def test_recorded_with_an_audit_entry_and_a_declared_event(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        done = await resolved(api)
        made = expect(
            await api.post(feedback_url(done["id"]), {"csat": 4, "comment": "处理及时"}), 201
        )
        assert (made["csat"], made["comment"], made["closure"]) == (4, "处理及时", 0)
        trail = await audit(api, done["id"])
        entry = trail["entries"][-1]
        assert (trail["verified"], entry["action"], entry["data"]["csat"]) == (
            True,
            "feedback",
            4,
        )
        assert "处理及时" not in str(trail)
        [payload] = await logged(engine, "complaint.feedback_recorded")
        TypeAdapter(PAYLOADS["complaint.feedback_recorded"]).validate_python(payload)
        assert (payload["csat"], payload["closure"]) == (4, 0)

    async def test_once_per_closure_and_again_after_a_reopen(self, api: Api) -> None:
        done = await resolved(api)
        expect(await api.post(feedback_url(done["id"]), {"csat": 2}), 201)
        again = expect(await api.post(feedback_url(done["id"]), {"csat": 5}), 409)
        assert again["error"] == "FeedbackGiven"
        await move(api, done["id"], "confirm")
        expect(await api.post(feedback_url(done["id"]), {"csat": 5}), 409)
        await move(api, done["id"], "reopen", {"reason": "问题再次出现"})
        expect(await api.post(feedback_url(done["id"]), {"csat": 5}), 409)  # in progress
        await move(api, done["id"], "resolve", RESOLUTION)
        second = expect(await api.post(feedback_url(done["id"]), {"csat": 5}), 201)
        assert second["closure"] == 1

    async def test_two_surveys_at_once_record_one(self, api: Api, engine: AsyncEngine) -> None:
        done = await resolved(api)
        answers = await asyncio.gather(
            *(api.post(feedback_url(done["id"]), {"csat": n}) for n in (1, 5))
        )
        assert sorted(a.status_code for a in answers) == [201, 409]
        assert await scalar(engine, "SELECT count(*) FROM complaint_feedback") == 1

    @pytest.mark.parametrize("csat", [0, 6, "good"])
    async def test_a_score_outside_one_to_five_is_a_422(self, api: Api, csat: object) -> None:
        done = await resolved(api)
        body = expect(await api.post(feedback_url(done["id"]), {"csat": csat}), 422)
        assert [f["field"] for f in body["fields"]] == ["csat"]

    async def test_only_whoever_may_act_records_it(self, api: Api) -> None:
        done = await resolved(api)
        stranger = await api.signed_in_as(await api.agent())
        expect(await stranger.post(feedback_url(done["id"]), {"csat": 3}), 404)


class TestRetries:
    """A create retried with its Idempotency-Key is answered as the first time, once."""

    async def test_a_note_retried_with_its_key_is_written_once(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        done = await register(api, complaint_body())
        key = {"Idempotency-Key": "note-retry-1"}
        body = {"text": "已致电客户"}
        first = expect(await api.post(notes_url(done["id"]), body, headers=key), 201)
        again = expect(await api.post(notes_url(done["id"]), body, headers=key), 201)
        assert again == first
        other = expect(await api.post(notes_url(done["id"]), {"text": "另一条"}, headers=key), 409)
        assert "Idempotency-Key" in other["detail"]
        assert await scalar(engine, "SELECT count(*) FROM complaint_notes") == 1

    async def test_feedback_retried_with_its_key_gets_the_first_answer(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        done = await resolved(api)
        key = {"Idempotency-Key": "feedback-retry-1"}
        body = {"csat": 4, "comment": "处理及时"}
        first = expect(await api.post(feedback_url(done["id"]), body, headers=key), 201)
        again = expect(await api.post(feedback_url(done["id"]), body, headers=key), 201)
        assert again == first
        # Without the key, a second survey is what it always was: refused.
        expect(await api.post(feedback_url(done["id"]), body), 409)
        assert await scalar(engine, "SELECT count(*) FROM complaint_feedback") == 1
