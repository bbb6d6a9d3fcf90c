"""Complaint events reach the agents they concern, live, and no one else.

A complaint event names the complaint's assignee after it (``agent_id``) and, for a move, the
one before it (``previous_agent_id``). The agents' consoles (``/ws/agent``, real clients
against a served app) and the long poll (``GET /api/v1/events``) show an agent the complaint
events that name them, and nothing else about complaints; no event carries the complaint's
free text.

That an agent hears nothing is shown with a marker: a ``test.ws`` event about the agent,
committed after the complaint's events, reaches the agent's socket after anything the
complaint could have sent it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.complaints.test_registration import complaint_body, register
from tests.complaints.test_transitions import move
from tests.fixtures.factories import Api, expect
from tests.realtime.test_ws import Client, emit, following, named, serving, token_of
from tests.routing.acd import rows

WAIT_S = 10  # the long poll's wait for the next page
SECRET = "QX-7731"  # in every free-text field of the scenario's complaint


@pytest.fixture
async def url(app: FastAPI) -> AsyncIterator[str]:
    async with serving(app) as base:
        yield base


async def classified(api: Api, **overrides: Any) -> dict[str, Any]:
    """A complaint registered through the API and classified: ready to be assigned."""
    done: dict[str, Any] = await register(api, complaint_body(**overrides))
    await move(api, done["id"], "classify", {"categories": ["payment"], "severity": "medium"})
    return done


async def assign(api: Api, complaint_id: int, agent_id: int) -> None:
    await move(api, complaint_id, "assign", {"assignee": agent_id})


Matching = Callable[[dict[str, Any]], bool]


def about(complaint_id: int) -> Matching:
    return lambda event: bool(event["subject"] == {"type": "complaint", "id": str(complaint_id)})


def assigned_to(complaint_id: int, agent_id: int) -> Matching:
    def matching(event: dict[str, Any]) -> bool:
        data = event["data"]
        return (
            about(complaint_id)(event)
            and event["type"] == "complaint.status_changed"
            and (data["event"], data["agent_id"]) == ("assign", agent_id)
        )

    return matching


async def complaint_events_before_marker(app: FastAPI, ws: Client, agent_id: int) -> list[Any]:
    """The complaint events ``ws`` (the agent's console) receives before a marker committed
    now."""
    await emit(app, f"marker-{agent_id}", agent_id=agent_id)
    received = await ws.events_until(named(f"marker-{agent_id}"))
    return [m["event"] for m in received if m["event"]["subject"]["type"] == "complaint"]


async def head(agent: Api) -> str:
    page = expect(await agent.get("/api/v1/events"), 200)
    return str(page["next_cursor"])


async def polled(app: FastAPI, agent: Api, cursor: str) -> list[dict[str, Any]]:
    """The complaint events the long poll shows ``agent`` after ``cursor``: read, waiting,
    up to a marker about the agent committed now."""
    marker = f"marker-{agent.me['id']}"
    await emit(app, marker, agent_id=agent.me["id"])
    found: list[dict[str, Any]] = []
    while True:
        query = {"cursor": cursor, "wait_s": WAIT_S}
        page = expect(await agent.get("/api/v1/events", params=query), 200)
        events = [i["event"] for i in page["items"]]
        found += [e for e in events if e["subject"]["type"] == "complaint"]
        if any(e["type"] == "test.ws" and e["subject"]["id"] == marker for e in events):
            return found
        cursor = page["next_cursor"]


def moves(events: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
    """(verb, agent_id, previous_agent_id) of each move among ``events``."""
    return [
        (e["data"]["event"], e["data"]["agent_id"], e["data"]["previous_agent_id"])
        for e in events
        if e["type"] == "complaint.status_changed"
    ]


class TestTheConsoleSocket:
    async def test_a_complaint_assigned_to_an_agent_reaches_their_console_at_once(
        self, api: Api, url: str
    ) -> None:
        agent = await api.agent()
        console = await api.signed_in_as(agent)
        complaint = await classified(api)
        async with following(url, "/ws/agent", token_of(console)) as (ws, _):
            await assign(api, complaint["id"], agent["id"])
            event = (await ws.event(about(complaint["id"])))["event"]
        assert event["type"] == "complaint.status_changed"
        assert (event["data"]["event"], event["data"]["agent_id"]) == ("assign", agent["id"])
        assert event["data"]["reference"] == complaint["reference"]

    async def test_every_event_of_a_held_complaint_reaches_its_holder(
        self, app: FastAPI, api: Api, url: str
    ) -> None:
        agent = await api.agent()
        console = await api.signed_in_as(agent)
        complaint = await classified(api)
        async with following(url, "/ws/agent", token_of(console)) as (ws, _):
            await assign(api, complaint["id"], agent["id"])
            await ws.event(assigned_to(complaint["id"], agent["id"]))
            await move(api, complaint["id"], "start")
            note = {"text": "called the branch", "internal": True}
            expect(await api.post(f"/api/v1/complaints/{complaint['id']}/notes", note), 201)
            received = await complaint_events_before_marker(app, ws, agent["id"])
        assert [e["type"] for e in received] == [
            "complaint.status_changed",
            "complaint.note_added",
        ]
        assert {e["data"]["agent_id"] for e in received} == {agent["id"]}

    async def test_a_complaint_of_another_agent_never_reaches_a_console(
        self, app: FastAPI, api: Api, url: str
    ) -> None:
        agent, colleague = await api.agent(), await api.agent()
        console = await api.signed_in_as(agent)
        async with following(url, "/ws/agent", token_of(console)) as (ws, _):
            theirs = await classified(api)
            await assign(api, theirs["id"], colleague["id"])
            await move(api, theirs["id"], "start")
            received = await complaint_events_before_marker(app, ws, agent["id"])
        assert received == []

    async def test_a_reassignment_reaches_the_agent_it_takes_the_complaint_from(
        self, app: FastAPI, api: Api, url: str
    ) -> None:
        agent, colleague = await api.agent(), await api.agent()
        console = await api.signed_in_as(agent)
        complaint = await classified(api)
        async with following(url, "/ws/agent", token_of(console)) as (ws, _):
            await assign(api, complaint["id"], agent["id"])
            await ws.event(assigned_to(complaint["id"], agent["id"]))
            await assign(api, complaint["id"], colleague["id"])
            taken = (await ws.event(assigned_to(complaint["id"], colleague["id"])))["event"]
            await move(api, complaint["id"], "start")  # the colleague's now
            after = await complaint_events_before_marker(app, ws, agent["id"])
        assert taken["data"]["previous_agent_id"] == agent["id"]
        assert after == []


class TestTheLongPoll:
    async def test_an_agent_polls_the_events_that_name_them_and_no_other_complaints(
        self, app: FastAPI, api: Api
    ) -> None:
        first, second, bystander = await api.agent(), await api.agent(), await api.agent()
        polls = [await api.signed_in_as(a) for a in (first, second, bystander)]
        cursors = [await head(p) for p in polls]
        complaint = await classified(api)
        await assign(api, complaint["id"], first["id"])
        await assign(api, complaint["id"], second["id"])
        await move(api, complaint["id"], "start")

        seen = [await polled(app, p, c) for p, c in zip(polls, cursors, strict=True)]

        assert moves(seen[0]) == [
            ("assign", first["id"], None),
            ("assign", second["id"], first["id"]),
        ]
        assert moves(seen[1]) == [
            ("assign", second["id"], first["id"]),
            ("start", second["id"], second["id"]),
        ]
        assert seen[2] == []
        assert all(e["subject"]["id"] == str(complaint["id"]) for e in seen[0] + seen[1])

    async def test_an_agent_who_registered_a_complaint_hears_nothing_of_it_unless_they_hold_it(
        self, app: FastAPI, api: Api
    ) -> None:
        registrar, holder = await api.agent(), await api.agent()
        desk = await api.signed_in_as(registrar)
        cursor = await head(desk)
        complaint = expect(await desk.post("/api/v1/complaints", complaint_body()), 201)
        await move(api, complaint["id"], "classify", {"categories": ["payment"], "severity": "low"})
        await assign(api, complaint["id"], holder["id"])

        assert await polled(app, desk, cursor) == []

    async def test_a_supervisor_polls_every_complaint_event(self, app: FastAPI, api: Api) -> None:
        agent = await api.agent()
        boss = await api.signed_in_as(await api.supervisor())
        cursor = await head(boss)
        complaint = await classified(api)
        await assign(api, complaint["id"], agent["id"])

        seen = await polled(app, boss, cursor)
        assert [e["type"] for e in seen] == [
            "complaint.registered",
            "complaint.status_changed",
            "complaint.status_changed",
        ]


class TestPayloads:
    async def test_no_complaint_event_carries_the_complaints_free_text(
        self, api: Api, app: FastAPI
    ) -> None:
        agent = await api.agent()
        body = complaint_body(
            complainant={"name": f"{SECRET} name", "contact": f"{SECRET}@example.com"},
            grounds=f"{SECRET} grounds",
            request=f"{SECRET} request",
        )
        body["complainant"]["relation"] = "self"
        body["matter"] |= {"description": f"{SECRET} description", "location": f"{SECRET} st"}
        complaint = expect(await api.post("/api/v1/complaints", body), 201)
        cid = complaint["id"]
        await move(api, cid, "classify", {"categories": ["payment"], "severity": "medium"})
        await move(api, cid, "assign", {"assignee": agent["id"], "reason": f"{SECRET} reason"})
        await move(api, cid, "start")
        note = {"text": f"{SECRET} note", "internal": False}
        expect(await api.post(f"/api/v1/complaints/{cid}/notes", note), 201)
        engine: AsyncEngine = app.state.engine

        logged = await rows(engine, "SELECT type, data FROM events WHERE type LIKE 'complaint.%'")

        assert {t for t, _ in logged} >= {
            "complaint.registered",
            "complaint.status_changed",
            "complaint.note_added",
        }
        assert [t for t, data in logged if SECRET in json.dumps(data, ensure_ascii=False)] == []
