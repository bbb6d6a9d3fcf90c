"""Open websockets and long polls end when the sign-in they started with ends.

Real clients against a real server: each scenario opens a socket, changes its agent through
the API (or the row by hand, or waits for the token's expiry) and waits, with a deadline, for
the server to close the socket with 4401.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Collection, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from websockets.exceptions import ConnectionClosed

from app.agents.dependencies import DISABLED, REVOKED
from app.agents.security import TokenClaims, issue_token
from app.agents.service import Identity, get_identities
from app.events.log import ORIGIN, Cursor, LoggedEvent
from app.realtime import revocation
from app.realtime.hub import EventHub
from app.realtime.revocation import (
    EXPIRED,
    NOT_WALLBOARD,
    RevocationWatch,
    SignIn,
    refusal,
    revoking_agent,
)
from tests.conftest import make_settings
from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually
from tests.realtime.test_ws import WITHIN_S, Client, client, emit, following, serving, token_of
from tests.routing.acd import instance, via


@pytest.fixture
async def url(app: FastAPI) -> AsyncIterator[str]:
    async with serving(app) as base:
        yield base


async def closing(ws: Client) -> tuple[int | None, str | None, list[dict[str, Any]]]:
    """What the server sends until it closes the socket (within the deadline), its close
    code and its close reason."""
    received: list[dict[str, Any]] = []
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(WITHIN_S):
            while True:
                received.append(json.loads(await ws.conn.recv()))
    return ws.conn.close_code, ws.conn.close_reason, received


async def still_open(ws: Client) -> None:
    await ws.send({"type": "ping"})
    assert await ws.reply() == {"type": "pong"}


async def cursor_after_creation(api: Api, agent: dict[str, Any]) -> str:
    """A cursor past the agent's creation, which the feed may show a little late."""
    cursor = str(ORIGIN)
    while True:
        params = {"cursor": cursor, "wait_s": WITHIN_S}
        page = expect(await api.get("/api/v1/events", params=params), 200)
        cursor = page["next_cursor"]
        if any(item["event"]["subject"]["id"] == str(agent["id"]) for item in page["items"]):
            return str(cursor)


async def change(api: Api, agent: dict[str, Any], body: dict[str, Any]) -> None:
    expect(await api.patch(f"/api/v1/agents/{agent['id']}", body), 200)


# --- agent changes close the agent's sockets ---------------------------------------------


class TestDeactivation:
    async def test_deactivated_agents_console_closes_with_4401(self, url: str, api: Api) -> None:
        agent = await api.agent()
        console = await api.signed_in_as(agent)
        async with following(url, "/ws/agent", token_of(console)) as (ws, _):
            await change(api, agent, {"active": False})
            code, reason, _ = await closing(ws)
        assert (code, reason) == (4401, DISABLED)

    async def test_deactivated_supervisors_wallboard_closes_with_4401(
        self, url: str, api: Api
    ) -> None:
        supervisor = await api.supervisor()
        board = await api.signed_in_as(supervisor)
        async with following(url, "/ws/wallboard", token_of(board)) as (ws, _):
            await change(api, supervisor, {"active": False})
            code, reason, _ = await closing(ws)
        assert (code, reason) == (4401, DISABLED)

    async def test_reactivated_agents_old_token_is_refused_on_http_and_websocket(
        self, url: str, api: Api
    ) -> None:
        agent = await api.agent()
        console = await api.signed_in_as(agent)
        await change(api, agent, {"active": False})
        await change(api, agent, {"active": True})

        body = expect(await console.get("/api/v1/agents/me"), 401)
        assert body["detail"] == REVOKED
        async with client(url, "/ws/agent", token_of(console)) as ws:
            code, reason, received = await closing(ws)
        assert (code, reason, received) == (4401, REVOKED, [])
        fresh = await api.signed_in_as(agent)
        async with following(url, "/ws/agent", token_of(fresh)) as (ws, _):
            await still_open(ws)


class TestRevokedToken:
    async def test_password_change_closes_every_console_of_the_agent(
        self, url: str, api: Api
    ) -> None:
        agent = await api.agent()
        phone, laptop = await api.signed_in_as(agent), await api.signed_in_as(agent)
        async with (
            following(url, "/ws/agent", token_of(phone)) as (first, _),
            following(url, "/ws/agent", token_of(laptop)) as (second, _),
        ):
            await change(phone, agent, {"password": "a-brand-new-password"})
            assert (await closing(first))[:2] == (4401, REVOKED)
            assert (await closing(second))[:2] == (4401, REVOKED)

    async def test_supervisor_demoted_to_agent_loses_the_wallboard(
        self, url: str, api: Api
    ) -> None:
        supervisor = await api.supervisor()
        board = await api.signed_in_as(supervisor)
        async with following(url, "/ws/wallboard", token_of(board)) as (ws, _):
            await change(api, supervisor, {"role": "agent"})
            code, reason, _ = await closing(ws)
        assert (code, reason) == (4401, REVOKED)

    async def test_site_change_closes_the_console(self, url: str, api: Api) -> None:
        agent = await api.agent()
        console = await api.signed_in_as(agent)
        async with following(url, "/ws/agent", token_of(console)) as (ws, _):
            await change(api, agent, {"site": "beijing"})
            assert (await closing(ws))[:2] == (4401, REVOKED)

    async def test_change_through_another_instance_closes_the_socket(
        self, url: str, api: Api, db: str
    ) -> None:
        agent = await api.agent()
        console = await api.signed_in_as(agent)
        async with (
            following(url, "/ws/agent", token_of(console)) as (ws, _),
            instance(make_settings(db)) as (_, other),
        ):
            await change(via(api, other), agent, {"password": "changed-elsewhere-1"})
            assert (await closing(ws))[:2] == (4401, REVOKED)


class TestOtherSockets:
    async def test_change_to_another_agent_leaves_this_socket_open(
        self, url: str, api: Api, app: FastAPI
    ) -> None:
        mine, theirs = await api.agent(), await api.agent()
        console, other = await api.signed_in_as(mine), await api.signed_in_as(theirs)
        async with (
            following(url, "/ws/agent", token_of(console)) as (ws, _),
            following(url, "/ws/wallboard", token_of(api)) as (board, _),
            following(url, "/ws/agent", token_of(other)) as (gone, _),
        ):
            await change(api, theirs, {"password": "their-new-password"})
            assert (await closing(gone))[:2] == (4401, REVOKED)  # the change was acted on
            await still_open(ws)
            await still_open(board)
            await emit(app, "after", agent_id=mine["id"])
            message = await ws.event(lambda e: e["type"] == "test.ws")
        assert message["event"]["subject"]["id"] == "after"

    async def test_change_that_keeps_access_leaves_the_socket_open(
        self, url: str, api: Api
    ) -> None:
        mine, theirs = await api.agent(), await api.agent()
        console, other = await api.signed_in_as(mine), await api.signed_in_as(theirs)
        async with (
            following(url, "/ws/agent", token_of(console)) as (ws, _),
            following(url, "/ws/agent", token_of(other)) as (gone, _),
        ):
            # The same role and site as before, and a new team: nothing a token depends on.
            await change(api, mine, {"role": "agent", "site": "shanghai", "team": "night"})
            # Read after the change above, so acted on no earlier than it.
            await change(api, theirs, {"active": False})
            assert (await closing(gone))[:2] == (4401, DISABLED)
            await still_open(ws)
        expect(await console.get("/api/v1/agents/me"), 200)


# --- expiry and the periodic re-check ----------------------------------------------------


class TestExpiry:
    async def test_socket_closes_when_its_token_expires_with_no_event(
        self, url: str, api: Api, app: FastAPI
    ) -> None:
        agent = await api.agent()
        issued = issue_token(app.state.jwt_secret, agent_id=agent["id"], ttl_s=2)
        expires_at = app.state.tokens.read(issued.access_token).expires_at
        # On a busy machine the token may run out before the snapshot is sent: then the socket
        # closes without one, which is as right.
        async with client(url, "/ws/agent", issued.access_token) as ws:
            code, reason, received = await closing(ws)
        assert (code, reason) == (4401, EXPIRED)
        if received and received[0]["type"] == "snapshot":
            received = received[1:]
        # Only the agent's creation may come (late: the feed trails open transactions).
        assert {m["event"]["type"] for m in received} <= {"agent.created"}, received
        assert time.time() >= expires_at - 0.05  # closed at the expiry, not before

    async def test_sign_in_already_past_its_expiry_by_the_clock_is_revoked(self) -> None:
        async def nobody(agent_ids: Collection[int]) -> Mapping[int, Identity]:
            return {}

        watch = RevocationWatch(nobody, clock=lambda: 2_000.0)
        with watch.open(TokenClaims(1, 0, expires_at=1_000.0), wallboard=False) as sign_in:
            async with asyncio.timeout(WITHIN_S):
                await sign_in.revoked.wait()
        assert sign_in.reason == EXPIRED


class TestPeriodicRecheck:
    async def test_row_changed_without_an_event_is_noticed(
        self, url: str, api: Api, app: FastAPI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(revocation, "REVALIDATE_S", 0.2)
        agent = await api.agent()
        console = await api.signed_in_as(agent)
        async with following(url, "/ws/agent", token_of(console)) as (ws, _):
            async with app.state.engine.begin() as conn:
                bump = "UPDATE agents SET token_version = token_version + 1 WHERE id = :id"
                await conn.execute(text(bump), {"id": agent["id"]})
            assert (await closing(ws))[:2] == (4401, REVOKED)

    async def test_every_open_sign_in_is_rechecked_in_one_statement(
        self, url: str, api: Api, app: FastAPI
    ) -> None:
        calls: list[set[int]] = []

        async def lookup(agent_ids: Collection[int]) -> Mapping[int, Identity]:
            calls.append(set(agent_ids))
            return await get_identities(app.state.db_pool, agent_ids)

        watch = RevocationWatch(lookup, revalidate_s=0.1)
        watch.follow(app.state.hub)
        app.state.revocation_watch = watch
        first, second = await api.agent(), await api.agent()
        tokens = [token_of(await api.signed_in_as(a)) for a in (first, second, first)]
        async with (
            following(url, "/ws/agent", tokens[0]),
            following(url, "/ws/agent", tokens[1]),
            following(url, "/ws/agent", tokens[2]),
        ):
            everyone = {first["id"], second["id"]}

            async def checked_together() -> bool:
                return everyone in calls

            await eventually(checked_together, what="one re-check of both agents")
            assert len(watch) == 3


# --- the long poll ---------------------------------------------------------------------------


class TestLongPoll:
    async def test_poll_revoked_while_waiting_answers_401_and_no_events(
        self, api: Api, app: FastAPI
    ) -> None:
        agent = await api.agent()
        console = await api.signed_in_as(agent)
        hub: EventHub = app.state.hub
        params = {"cursor": await cursor_after_creation(console, agent), "wait_s": WITHIN_S}
        poll = asyncio.create_task(console.get("/api/v1/events", params=params))

        async def waiting() -> bool:
            return hub.watcher_count > 0

        await eventually(waiting, what="the poll to wait")
        await change(api, agent, {"password": "changed-while-polling"})
        async with asyncio.timeout(WITHIN_S):
            response = await poll
        assert expect(response, 401)["detail"] == REVOKED

    async def test_poll_answers_events_while_the_token_stays_valid(
        self, api: Api, app: FastAPI
    ) -> None:
        agent = await api.agent()
        console = await api.signed_in_as(agent)
        hub: EventHub = app.state.hub
        params = {"cursor": await cursor_after_creation(console, agent), "wait_s": WITHIN_S}
        poll = asyncio.create_task(console.get("/api/v1/events", params=params))

        async def waiting() -> bool:
            return hub.watcher_count > 0

        await eventually(waiting, what="the poll to wait")
        await change(api, agent, {"team": "night"})
        async with asyncio.timeout(WITHIN_S):
            page = expect(await poll, 200)
        assert [item["event"]["type"] for item in page["items"]] == ["agent.updated"]


# --- the rules, without a server --------------------------------------------------------------


def updated(fields: object, subject_id: str = "7", kind: str = "agent.updated") -> LoggedEvent:
    return LoggedEvent(
        id=1,
        cursor=Cursor(1, 1),
        type=kind,
        subject_type="agent",
        subject_id=subject_id,
        data={"fields": fields},
        actor=None,
        at=datetime(2026, 1, 1, tzinfo=UTC),
    )


class TestRevokingAgent:
    @pytest.mark.parametrize("field", ["password", "active", "role", "site"])
    def test_change_of_a_revoking_field_names_the_agent(self, field: str) -> None:
        assert revoking_agent(updated(["name", field])) == 7

    @pytest.mark.parametrize(
        "event",
        [
            updated(["name", "team", "skills", "capacity", "endpoint"]),
            updated("password"),
            updated(["password"], subject_id=""),
            updated(["password"], subject_id="x"),
            updated(["password"], kind="agent.created"),
        ],
        ids=["other-fields", "not-a-list", "no-subject", "bad-subject", "other-type"],
    )
    def test_other_events_name_nobody(self, event: LoggedEvent) -> None:
        assert revoking_agent(event) is None


def identity(*, role: str = "agent", active: bool = True, version: int = 0) -> Identity:
    return Identity(id=7, username="u", role=role, site=None, active=active, token_version=version)


class TestRefusal:
    @pytest.mark.parametrize(
        ("wallboard", "row", "expected"),
        [
            (False, identity(), None),
            (True, identity(role="supervisor"), None),
            (True, identity(role="admin"), None),
            (False, None, DISABLED),
            (False, identity(active=False), DISABLED),
            (False, identity(version=1), REVOKED),
            (True, identity(role="agent"), NOT_WALLBOARD),
        ],
        ids=["agent", "supervisor", "admin", "gone", "inactive", "revoked", "demoted"],
    )
    def test_refusal(self, wallboard: bool, row: Identity | None, expected: str | None) -> None:
        sign_in = SignIn(TokenClaims(7, 0), wallboard=wallboard)
        assert refusal(sign_in, row) == expected
