"""Acting on the console's socket, with real clients against a real server.

Every action is checked against its REST twin: the ``ack`` carries the body the route gives
(read back through REST), a refusal carries the route's status and error body, and a refused
action changes nothing. A ``request_id`` sent twice (one socket, two sockets at once, another
instance) acts once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import unit_of_work
from app.events.log import LoggedEvent
from app.realtime import actions as actions_module
from app.realtime.hub import EventHub, concerned_agents
from app.realtime.ws import MAX_MESSAGE_CHARS
from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually
from tests.realtime.test_ws import (
    WITHIN_S,
    Client,
    client,
    emit,
    following,
    named,
    serving,
    token_of,
)
from tests.routing.acd import available_agent, contact, instance, offer_for, queue, value, via

Message = dict[str, Any]


@pytest.fixture
async def url(app: FastAPI) -> AsyncIterator[str]:
    async with serving(app) as base:
        yield base


@asynccontextmanager
async def console_of(url: str, agent: Api) -> AsyncIterator[Client]:
    """The agent's console socket, past its snapshot."""
    async with following(url, "/ws/agent", token_of(agent)) as (ws, _):
        yield ws


async def answer(ws: Client, request_id: str | None) -> tuple[Message, list[Message]]:
    """The answer to ``request_id`` and the events that came before it."""
    before: list[Message] = []
    while (message := await ws.next())["type"] == "event":
        before.append(message)
    assert message["type"] in ("ack", "error"), message
    assert message["request_id"] == request_id, message
    return message, before


async def act(ws: Client, kind: str, request_id: str, **fields: Any) -> Message:
    await ws.send({"type": kind, "request_id": request_id, **fields})
    return (await answer(ws, request_id))[0]


async def ringing(api: Api, **queue_overrides: Any) -> tuple[Api, Message]:
    """An available agent with an offer ringing: the agent's client and the offer."""
    q = await queue(api, **queue_overrides)
    agent = await available_agent(api)
    waiting = await contact(api, q["name"])
    return agent, await offer_for(agent, waiting["id"])


def refused_as(frame: Message, response: Any) -> None:
    """``frame`` is the error the REST ``response`` gave: same status, name and body."""
    assert frame["type"] == "error", frame
    assert frame["status"] == response.status_code
    assert frame["code"] == response.json()["error"]
    assert frame["body"] == response.json()
    assert frame["detail"] == response.json()["detail"]


async def offer_status(agent: Api, offer_id: int) -> str:
    for status in ("pending", "accepted", "rejected", "expired", "rescinded"):
        page = expect(await agent.get(f"/api/v1/offers?agent=me&status={status}"), 200)
        if any(o["id"] == offer_id for o in page["items"]):
            return status
    raise AssertionError(f"offer {offer_id} not found")


async def contact_status(api: Api, contact_id: int) -> str:
    return str(expect(await api.get(f"/api/v1/contacts/{contact_id}"), 200)["status"])


async def logged(app: FastAPI, type_: str, subject_id: int) -> int:
    """How many events of ``type_`` about ``subject_id`` the log holds."""
    sql = "SELECT count(*) FROM events WHERE type = :type AND subject_id = :id"
    return int(await value(app.state.engine, sql, type=type_, id=str(subject_id)))


# --- each action ---------------------------------------------------------------------------


class TestAccept:
    async def test_accept_acks_with_the_offer_and_connects_the_contact(
        self, url: str, api: Api
    ) -> None:
        agent, offer = await ringing(api)
        async with console_of(url, agent) as ws:
            ack = await act(ws, "accept", "a-1", offer_id=offer["id"])
        assert ack["type"] == "ack"
        assert ack["result"]["id"] == offer["id"]
        assert ack["result"]["status"] == "accepted"
        accepted = expect(await agent.get("/api/v1/offers?agent=me&status=accepted"), 200)
        assert accepted["items"] == [ack["result"]]
        assert await contact_status(api, offer["contact_id"]) == "connected"

    async def test_ack_comes_before_the_events_the_action_caused(
        self, url: str, api: Api, app: FastAPI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        agent, offer = await ringing(api)
        hub: EventHub = app.state.hub
        agent_key = str(agent.me["id"])
        caused: list[LoggedEvent] = []  # the action's events that concern the agent
        waiting: list[int] = []  # what the agent's socket had queued when they were handed over
        read = asyncio.Event()

        def queued() -> int:
            return sum(sub.queue.qsize() for sub in hub._fanout._by_agent.get(agent_key, ()))

        def listen(batch: Sequence[LoggedEvent]) -> None:  # called as soon as it is handed over
            accepted = [e for e in batch if e.type == "offer.accepted"]
            if accepted:
                tx = accepted[0].cursor.tx
                caused.extend(
                    e for e in batch if e.cursor.tx == tx and agent_key in concerned_agents(e)
                )
                waiting.append(queued())
                read.set()

        @asynccontextmanager
        async def slow_commit(
            sessionmaker: async_sessionmaker[AsyncSession],
        ) -> AsyncIterator[AsyncSession]:
            # Once committed, the action's events reach the socket's queue and its writer takes
            # the first of them before the ack is sent: only the writer's hold keeps it behind.
            async with unit_of_work(sessionmaker) as session:
                yield session
            await asyncio.wait_for(read.wait(), WITHIN_S)
            await eventually(lambda: _true(queued() < waiting[0]), what="the writer to take one")

        hub.add_listener(listen)
        async with console_of(url, agent) as ws:
            # Everything logged so far has been sent: the action's events are next in line.
            await emit(app, "before", agent_id=agent.me["id"])
            await ws.event(named("before"))
            monkeypatch.setattr(actions_module, "unit_of_work", slow_commit)
            await ws.send({"type": "accept", "request_id": "first", "offer_id": offer["id"]})
            ack, before = await answer(ws, "first")
            assert ack["type"] == "ack"
            caused_at = {str(e.cursor) for e in caused}
            early = [m["event"]["type"] for m in before if m["cursor"] in caused_at]
            assert early == [], f"sent before the ack: {early}"
            after = await ws.events_until(lambda e: e["type"] == "offer.accepted")
        assert after[-1]["cursor"] in caused_at


async def _true(condition: bool) -> bool:
    return condition


class TestReject:
    async def test_reject_acks_with_the_offer_and_closes_it(self, url: str, api: Api) -> None:
        agent, offer = await ringing(api)
        async with console_of(url, agent) as ws:
            ack = await act(ws, "reject", "r-1", offer_id=offer["id"])
        assert ack["type"] == "ack"
        assert ack["result"]["status"] == "rejected"
        rejected = expect(await agent.get("/api/v1/offers?agent=me&status=rejected"), 200)
        assert rejected["items"] == [ack["result"]]


class TestSetStatus:
    async def test_set_status_acks_with_the_agent_as_rest_shows_it(
        self, url: str, api: Api
    ) -> None:
        agent = await available_agent(api)
        async with console_of(url, agent) as ws:
            ack = await act(ws, "set_status", "s-1", status="away", reason="lunch")
        assert ack["type"] == "ack"
        me = expect(await agent.get("/api/v1/agents/me"), 200)
        assert (me["status"], me["status_reason"]) == ("away", "lunch")
        assert ack["result"] == me


class TestComplete:
    async def test_complete_acks_with_the_contact_as_rest_shows_it(
        self, url: str, api: Api
    ) -> None:
        agent, offer = await ringing(api)
        async with console_of(url, agent) as ws:
            assert (await act(ws, "accept", "c-1", offer_id=offer["id"]))["type"] == "ack"
            ack = await act(
                ws,
                "complete",
                "c-2",
                contact_id=offer["contact_id"],
                disposition="resolved",
                notes="card replaced",
            )
        assert ack["type"] == "ack"
        shown = expect(await agent.get(f"/api/v1/contacts/{offer['contact_id']}"), 200)
        assert shown["status"] == "completed"
        assert (shown["disposition"], shown["notes"]) == ("resolved", "card replaced")
        assert ack["result"] == shown

    async def test_wrap_up_done_acks_with_the_contacts_completed(self, url: str, api: Api) -> None:
        agent, offer = await ringing(api, wrap_up_s=300)
        async with console_of(url, agent) as ws:
            await act(ws, "accept", "w-1", offer_id=offer["id"])
            completed = await act(ws, "complete", "w-2", contact_id=offer["contact_id"])
            assert completed["result"]["status"] == "wrap_up"
            ack = await act(ws, "wrap_up_done", "w-3")
        assert ack == {"type": "ack", "request_id": "w-3", "result": {"completed": 1}}
        assert await contact_status(api, offer["contact_id"]) == "completed"


# --- refusals mirror REST --------------------------------------------------------------------


class TestRefusals:
    async def test_another_agents_offer_is_refused_as_rest_refuses_it(
        self, url: str, api: Api
    ) -> None:
        _, offer = await ringing(api)
        other = await available_agent(api)
        async with console_of(url, other) as ws:
            accepted = await act(ws, "accept", "x-1", offer_id=offer["id"])
            rejected = await act(ws, "reject", "x-2", offer_id=offer["id"])
        refused_as(accepted, await other.post(f"/api/v1/offers/{offer['id']}/accept"))
        refused_as(rejected, await other.post(f"/api/v1/offers/{offer['id']}/reject"))
        assert accepted["status"] == 403
        assert await contact_status(api, offer["contact_id"]) == "offered"

    async def test_an_offer_that_does_not_exist_is_a_404_as_in_rest(
        self, url: str, api: Api
    ) -> None:
        agent = await available_agent(api)
        async with console_of(url, agent) as ws:
            frame = await act(ws, "accept", "x-3", offer_id=999_999)
        refused_as(frame, await agent.post("/api/v1/offers/999999/accept"))
        assert frame["status"] == 404

    async def test_an_offer_already_answered_is_a_409_naming_its_status(
        self, url: str, api: Api
    ) -> None:
        agent, offer = await ringing(api)
        async with console_of(url, agent) as ws:
            await act(ws, "accept", "x-4", offer_id=offer["id"])
            frame = await act(ws, "reject", "x-5", offer_id=offer["id"])
        refused_as(frame, await agent.post(f"/api/v1/offers/{offer['id']}/reject"))
        assert (frame["status"], frame["code"]) == (409, "OfferClosed")
        assert frame["body"]["status"] == "accepted"
        assert await contact_status(api, offer["contact_id"]) == "connected"

    async def test_another_agents_contact_is_refused_and_stays_connected(
        self, url: str, api: Api
    ) -> None:
        holder, offer = await ringing(api)
        expect(await holder.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
        other = await available_agent(api)
        async with console_of(url, other) as ws:
            frame = await act(ws, "complete", "x-6", contact_id=offer["contact_id"])
        rest = await other.post(f"/api/v1/contacts/{offer['contact_id']}/complete", {})
        refused_as(frame, rest)
        assert frame["status"] == 403
        assert await contact_status(api, offer["contact_id"]) == "connected"

    async def test_wrap_up_done_out_of_wrap_up_is_a_409(self, url: str, api: Api) -> None:
        agent = await available_agent(api)
        async with console_of(url, agent) as ws:
            frame = await act(ws, "wrap_up_done", "x-7")
        refused_as(frame, await agent.post(f"/api/v1/agents/{agent.me['id']}/wrap-up/done"))
        assert frame["status"] == 409

    async def test_away_without_a_reason_is_a_422_naming_reason(self, url: str, api: Api) -> None:
        agent = await available_agent(api)
        async with console_of(url, agent) as ws:
            frame = await act(ws, "set_status", "x-8", status="away")
        refused_as(frame, await agent.set_status(agent.me["id"], "away"))
        assert frame["body"]["fields"][0]["field"] == "reason"
        me = expect(await agent.get("/api/v1/agents/me"), 200)
        assert me["status"] == "available"

    async def test_an_unknown_status_is_refused_as_the_rest_body_is(
        self, url: str, api: Api
    ) -> None:
        agent = await available_agent(api)
        async with console_of(url, agent) as ws:
            frame = await act(ws, "set_status", "x-9", status="asleep")
        refused_as(frame, await agent.set_status(agent.me["id"], "asleep"))
        assert frame["status"] == 422

    async def test_a_refusal_is_the_answer_to_its_request_id_ever_after(
        self, url: str, api: Api
    ) -> None:
        agent, offer = await ringing(api)
        contact_id = offer["contact_id"]
        async with console_of(url, agent) as ws:
            first = await act(ws, "complete", "early", contact_id=contact_id)  # still ringing
            assert (first["status"], first["code"]) == (409, "ContactStateConflict")
            await act(ws, "accept", "then", offer_id=offer["id"])
            again = await act(ws, "complete", "early", contact_id=contact_id)
        assert again == first
        assert await contact_status(api, contact_id) == "connected"


# --- a request id acts once ------------------------------------------------------------------


class TestRequestId:
    async def test_the_same_request_id_answers_the_same_and_acts_once(
        self, url: str, api: Api, app: FastAPI
    ) -> None:
        agent, offer = await ringing(api)
        async with console_of(url, agent) as ws:
            first = await act(ws, "reject", "once", offer_id=offer["id"])
            again = await act(ws, "reject", "once", offer_id=offer["id"])
        assert first["type"] == "ack"
        assert again == first
        assert await logged(app, "offer.rejected", offer["id"]) == 1

    async def test_an_earlier_request_id_sent_again_does_not_undo_what_came_after(
        self, url: str, api: Api
    ) -> None:
        agent = await available_agent(api)
        async with console_of(url, agent) as ws:
            away = await act(ws, "set_status", "s-away", status="away", reason="lunch")
            await act(ws, "set_status", "s-back", status="available")
            again = await act(ws, "set_status", "s-away", status="away", reason="lunch")
        assert again == away
        me = expect(await agent.get("/api/v1/agents/me"), 200)
        assert me["status"] == "available"

    async def test_two_sockets_sending_one_request_id_at_once_act_once(
        self, url: str, api: Api, app: FastAPI
    ) -> None:
        agent, offer = await ringing(api)
        message = {"type": "accept", "request_id": "both", "offer_id": offer["id"]}
        async with console_of(url, agent) as one, console_of(url, agent) as two:
            await asyncio.gather(one.send(message), two.send(message))
            (first, _), (second, _) = await asyncio.gather(answer(one, "both"), answer(two, "both"))
        assert first["type"] == "ack"
        assert second == first
        assert await logged(app, "offer.accepted", offer["id"]) == 1

    async def test_a_request_id_holds_across_reconnects_and_instances(
        self, url: str, api: Api, settings: Settings
    ) -> None:
        agent = await available_agent(api)
        message = {"status": "away", "reason": "training"}
        async with console_of(url, agent) as ws:
            first = await act(ws, "set_status", "kept", **message)
        expect(await agent.set_status(agent.me["id"], "available"), 200)
        async with (
            instance(settings) as (other_app, http),
            serving(other_app) as other_url,
            console_of(other_url, via(agent, http)) as ws,
        ):
            again = await act(ws, "set_status", "kept", **message)
        assert again == first
        me = expect(await agent.get("/api/v1/agents/me"), 200)
        assert me["status"] == "available"

    async def test_a_request_id_used_for_another_message_is_refused_naming_it(
        self, url: str, api: Api
    ) -> None:
        agent, offer = await ringing(api)
        async with console_of(url, agent) as ws:
            await act(ws, "set_status", "reused", status="away", reason="lunch")
            frame = await act(ws, "accept", "reused", offer_id=offer["id"])
        assert (frame["status"], frame["code"]) == (409, "Conflict")
        assert frame["body"]["fields"][0]["field"] == "request_id"
        assert await offer_status(agent, offer["id"]) in ("pending", "rescinded")

    async def test_request_ids_are_each_agents_own(self, url: str, api: Api) -> None:
        first = await available_agent(api)
        second = await available_agent(api)
        async with console_of(url, first) as ws:
            mine = await act(ws, "set_status", "shared", status="away", reason="lunch")
        async with console_of(url, second) as ws:
            theirs = await act(ws, "set_status", "shared", status="away", reason="lunch")
        assert mine["result"]["id"] == first.me["id"]
        assert theirs["result"]["id"] == second.me["id"]


# --- bad input -------------------------------------------------------------------------------


class TestBadInput:
    @pytest.mark.parametrize(
        ("message", "named"),
        [
            ({"type": "accept", "offer_id": 1}, "request_id"),
            ({"type": "accept", "request_id": "", "offer_id": 1}, "request_id"),
            ({"type": "accept", "request_id": "a b", "offer_id": 1}, "request_id"),
            ({"type": "accept", "request_id": "x" * 65, "offer_id": 1}, "request_id"),
            ({"type": "accept", "request_id": 7, "offer_id": 1}, "request_id"),
            ({"type": "accept", "request_id": "m-1"}, "offer_id"),
            ({"type": "accept", "request_id": "m-2", "offer_id": "one"}, "offer_id"),
            ({"type": "accept", "request_id": "m-3", "offer_id": 2**63}, "offer_id"),
            ({"type": "reject", "request_id": "m-4", "offer_id": 1, "why": "no"}, "why"),
            ({"type": "complete", "request_id": "m-5", "contact_id": 1, "notes": 5}, "notes"),
            ({"type": "set_status", "request_id": "m-6"}, "status"),
            ({"type": "wrap_up_done", "request_id": "m-7", "contact_id": 1}, "contact_id"),
            ({"type": "dance", "request_id": "m-8"}, "dance"),
            ({"type": "resume", "cursor": "garbage"}, "garbage"),
        ],
        ids=[
            "no-request-id",
            "empty-request-id",
            "request-id-with-space",
            "long-request-id",
            "numeric-request-id",
            "missing-field",
            "field-of-wrong-type",
            "id-past-bigint",
            "unknown-field",
            "notes-not-text",
            "no-status",
            "wrap-up-done-takes-no-contact",
            "unknown-type",
            "garbage-cursor",
        ],
    )
    async def test_a_bad_message_is_an_error_naming_the_problem_and_the_socket_stays(
        self, url: str, api: Api, message: Message, named: str
    ) -> None:
        agent = await available_agent(api)
        async with console_of(url, agent) as ws:
            await ws.send(message)
            frame = await ws.reply()
            assert frame["type"] == "error", frame
            assert frame["status"] == 422
            assert named in frame["detail"]
            # A request_id is echoed only when it is a valid one.
            echoed = None if named == "request_id" else message.get("request_id")
            assert frame["request_id"] == echoed
            await ws.send({"type": "ping"})
            assert await ws.reply() == {"type": "pong"}

    @pytest.mark.parametrize(
        "raw",
        ["not json", "[1]", b"\x01binary", "[" * 100_000, " " * (MAX_MESSAGE_CHARS + 1)],
        ids=["not-json", "not-an-object", "binary", "nested-too-deep", "too-long"],
    )
    async def test_a_malformed_frame_is_an_error_and_the_socket_stays(
        self, url: str, api: Api, raw: str | bytes
    ) -> None:
        agent = await available_agent(api)
        async with console_of(url, agent) as ws:
            await ws.conn.send(raw)
            frame = await ws.reply()
            assert (frame["type"], frame["status"], frame["request_id"]) == ("error", 422, None)
            await ws.send({"type": "ping"})
            assert await ws.reply() == {"type": "pong"}

    async def test_a_frame_past_the_protocol_limit_closes_only_its_socket(
        self, url: str, api: Api
    ) -> None:
        agent = await available_agent(api)
        async with console_of(url, agent) as ws:
            await ws.conn.send(json.dumps({"type": "ping", "pad": "x" * (17 * 1024 * 1024)}))
            assert await ws.close_code() == 1009
        async with console_of(url, agent) as ws:
            await ws.send({"type": "ping"})
            assert await ws.reply() == {"type": "pong"}

    async def test_the_wallboard_takes_no_actions(self, url: str, api: Api) -> None:
        agent, offer = await ringing(api)
        async with client(url, "/ws/wallboard", token_of(api)) as ws:
            assert (await ws.next())["type"] == "snapshot"
            await ws.send({"type": "accept", "request_id": "w", "offer_id": offer["id"]})
            frame = await ws.reply()
            assert frame["type"] == "error"
            assert "not on this socket" in frame["detail"]
            assert frame["request_id"] == "w"
            await ws.send({"type": "ping"})
            assert await ws.reply() == {"type": "pong"}
        assert await offer_status(agent, offer["id"]) == "pending"
