"""Presence follows the console: an agent whose last console is gone for the grace is away.

Real consoles: websocket clients against uvicorn servers, in this process or (for an instance
that is killed) in a subprocess. Settings are short (a grace of seconds, heartbeats of a tenth
of a second) where a grace or a lapse must pass by itself; where a console must still count
as open when the timer fires, the grace and the lease are long and the test fires the timer.
Every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.agents import consoles
from app.agents.consoles import CONSOLE_GONE
from app.config import Settings
from app.db import unit_of_work
from app.timers import service as timers
from tests.conftest import make_settings
from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually
from tests.realtime.test_ws import Client, client, serving, token_of
from tests.routing.acd import available_agent, contact, instance, offer_for, queue, value, via

ROOT = Path(__file__).resolve().parents[2]
GRACE_S = 2.5
SHORT = {
    "console_grace_s": GRACE_S,
    "console_heartbeat_s": 0.1,
    "console_stale_s": 0.5,
}
# Where the test fires the timer itself: no grace or lapse happens by itself meanwhile.
LONG = {
    "console_grace_s": 600.0,
    "console_heartbeat_s": 0.1,
    "console_stale_s": 60.0,
}
WITHIN_S = 30.0


@pytest.fixture
def settings(db: str) -> Settings:
    return make_settings(db, **SHORT)


@pytest.fixture
async def url(app: FastAPI) -> AsyncIterator[str]:
    async with serving(app) as base:
        yield base


@asynccontextmanager
async def console_of(base: str, agent: Api) -> AsyncIterator[Client]:
    """The agent's console, past its snapshot (by then the server has recorded it)."""
    async with client(base, "/ws/agent", token_of(agent)) as ws:
        snapshot = await ws.next()
        assert snapshot["type"] == "snapshot", snapshot
        yield ws


async def me(agent: Api) -> dict[str, Any]:
    return expect(await agent.get("/api/v1/agents/me"), 200)  # type: ignore[no-any-return]


async def disconnected(agent: Api) -> dict[str, Any] | None:
    """The agent's record once it is away because its consoles are gone."""
    record = await me(agent)
    if record["status"] == "away" and record["status_reason"] == "disconnected":
        return record
    return None


async def rescinded(api: Api, contact_id: int) -> dict[str, Any] | None:
    """The contact once it is back in the queue with its offer taken back."""
    seen = expect(await api.get(f"/api/v1/contacts/{contact_id}"), 200)
    offers = [o["status"] for o in seen["offers"]]
    return seen if seen["status"] == "queued" and offers == ["rescinded"] else None


async def console_gone_timers(engine: AsyncEngine, agent_id: int) -> int:
    return int(
        await value(
            engine,
            "SELECT count(*) FROM timers WHERE kind = :kind AND subject = :subject",
            kind=CONSOLE_GONE,
            subject=str(agent_id),
        )
    )


async def fire_the_timer(app: FastAPI, agent_id: int) -> None:
    """Wait for the agent's console_gone timer to be set, make it due now, wait for it to fire."""
    engine: AsyncEngine = app.state.engine
    await eventually(
        lambda: _is(console_gone_timers(engine, agent_id), 1),
        within=WITHIN_S,
        what="the console_gone timer",
    )
    async with unit_of_work(app.state.sessionmaker) as session:
        now = await value(engine, "SELECT now()")
        await timers.schedule(session, kind=CONSOLE_GONE, subject=agent_id, due_at=now)
    await eventually(
        lambda: _is(console_gone_timers(engine, agent_id), 0),
        within=WITHIN_S,
        what="the console_gone timer to fire",
    )


async def ringing(api: Api, agent: Api, **queue_settings: Any) -> dict[str, Any]:
    """A contact offered to ``agent``, ringing for a minute; the offer."""
    q = await queue(api, ring_timeout_s=60, **queue_settings)
    waiting = await contact(api, q["name"])
    return await offer_for(agent, waiting["id"], within=WITHIN_S)


class TestOneInstance:
    async def test_the_last_console_closing_makes_the_agent_away_after_the_grace(
        self, app: FastAPI, api: Api, url: str
    ) -> None:
        engine: AsyncEngine = app.state.engine
        agent = await available_agent(api)
        async with console_of(url, agent):
            offer = await ringing(api, agent)
            closed_after = await value(engine, "SELECT clock_timestamp()")
        await eventually(lambda: disconnected(agent), within=WITHIN_S, what="away")
        # Set by the system once the grace had passed since the socket closed.
        changed = await value(
            engine, "SELECT status_changed_at FROM agents WHERE id = :id", id=agent.me["id"]
        )
        assert changed >= closed_after + timedelta(seconds=GRACE_S)
        await eventually(
            lambda: rescinded(api, offer["contact_id"]), within=WITHIN_S, what="the rescind"
        )
        assert (await me(agent))["state"] == "idle"


class TestWithinTheGrace:
    """A console open when the timer fires keeps the agent available.

    The grace is long and the lease generous here, and the test fires the timer itself once
    the console it means is open: what is tested is what the handler decides, not whether
    this machine reopens a socket or beats the heart within a couple of seconds.
    """

    @pytest.fixture
    def settings(self, db: str) -> Settings:
        return make_settings(db, **LONG)

    async def test_a_console_reopened_within_the_grace_keeps_the_agent_available(
        self, app: FastAPI, api: Api, url: str
    ) -> None:
        engine: AsyncEngine = app.state.engine
        agent = await available_agent(api)
        async with console_of(url, agent):
            offer = await ringing(api, agent)
        async with console_of(url, agent):
            await fire_the_timer(app, agent.me["id"])
            record = await me(agent)
            assert (record["status"], record["status_reason"]) == ("available", None)
            still = expect(await api.get(f"/api/v1/contacts/{offer['contact_id']}"), 200)
            assert still["status"] == "offered"
            assert [o["status"] for o in still["offers"]] == ["pending"]
        await fire_the_timer(app, agent.me["id"])
        assert await disconnected(agent)
        assert await console_gone_timers(engine, agent.me["id"]) == 0

    async def test_an_agent_with_another_console_open_stays_available_until_it_closes(
        self, app: FastAPI, api: Api, url: str
    ) -> None:
        agent = await available_agent(api)
        async with console_of(url, agent):
            async with console_of(url, agent):
                pass
            await fire_the_timer(app, agent.me["id"])
            assert (await me(agent))["status"] == "available"
        await fire_the_timer(app, agent.me["id"])
        assert await disconnected(agent)


async def _is(check: Any, expected: object) -> bool:
    return bool(await check == expected)


class TestSeveralInstances:
    async def test_a_console_closed_on_one_instance_takes_back_the_offer_another_dispatched(
        self, db: str, api: Api, app: FastAPI
    ) -> None:
        # ``app`` decides; the console is on an instance that runs no dispatcher.
        assert app.state.dispatcher is not None
        console_settings = make_settings(db, dispatcher_enabled=False, **SHORT)
        async with instance(console_settings) as (other, other_client), serving(other) as base:
            assert other.state.dispatcher is None
            agent = via(await available_agent(api), other_client)
            async with console_of(base, agent):
                offer = await ringing(api, agent)
            await eventually(lambda: disconnected(agent), within=WITHIN_S, what="away")
            await eventually(
                lambda: rescinded(api, offer["contact_id"]), within=WITHIN_S, what="the rescind"
            )
            # The dispatcher saw the agent leave: the contact goes to someone else.
            colleague = await available_agent(api)
            again = await offer_for(colleague, offer["contact_id"], within=WITHIN_S)
            assert again["agent_id"] == colleague.me["id"] != agent.me["id"]

    async def test_a_killed_instance_s_consoles_are_closed_by_another_instance(
        self, db: str, api: Api, app: FastAPI
    ) -> None:
        agent = await available_agent(api)
        port = free_port()
        server = serve_process(db, port)
        try:
            await eventually(lambda: answers(port), within=60, what="the served instance")
            async with console_of(f"ws://127.0.0.1:{port}", agent) as ws:
                offer = await ringing(api, agent)
                server.send_signal(signal.SIGKILL)
                await asyncio.to_thread(server.wait, WITHIN_S)
                async with asyncio.timeout(WITHIN_S):
                    await ws.conn.wait_closed()
        finally:
            if server.poll() is None:
                server.kill()
                await asyncio.to_thread(server.wait, WITHIN_S)
        await eventually(lambda: disconnected(agent), within=WITHIN_S, what="away")
        await eventually(
            lambda: rescinded(api, offer["contact_id"]), within=WITHIN_S, what="the rescind"
        )


class TestHeartbeat:
    async def test_heartbeats_keep_this_instance_s_consoles_and_close_a_silent_one_s(
        self, app: FastAPI, api: Api
    ) -> None:
        engine: AsyncEngine = app.state.engine
        here, there = (await api.agent())["id"], (await api.agent())["id"]
        async with unit_of_work(app.state.sessionmaker) as session:
            mine = await consoles.open_console(session, here)
        # An instance that opened a console and then went silent (its own heartbeat never runs).
        silent = consoles.ConsoleRegistry(grace_s=GRACE_S, stale_s=SHORT["console_stale_s"])
        async with unit_of_work(app.state.sessionmaker) as session:
            session.info[consoles.REGISTRY_KEY] = silent
            theirs = await consoles.open_console(session, there)
        seen = await value(
            engine, "SELECT seen_at FROM console_connections WHERE id = :id", id=theirs
        )

        async def closed() -> bool:
            return (
                await value(
                    engine, "SELECT count(*) FROM console_connections WHERE id = :id", id=theirs
                )
                == 0
                and await console_gone_timers(engine, there) == 1
            )

        await eventually(closed, within=WITHIN_S, what="the silent instance's console closed")
        due = await value(
            engine,
            "SELECT due_at FROM timers WHERE kind = :kind AND subject = :subject",
            kind=CONSOLE_GONE,
            subject=str(there),
        )
        assert due == seen + timedelta(seconds=GRACE_S)
        # Opened before theirs, so lapsed by now unless this instance kept it.
        assert (
            await value(engine, "SELECT count(*) FROM console_connections WHERE id = :id", id=mine)
            == 1
        )
        assert await console_gone_timers(engine, here) == 0

        # Taken for lapsed by another instance while this one was held up: written back.
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM console_connections WHERE id = :id"), {"id": mine})

        async def back() -> bool:
            return bool(
                await value(
                    engine, "SELECT count(*) FROM console_connections WHERE id = :id", id=mine
                )
            )

        await eventually(back, within=WITHIN_S, what="the console written back")


class TestRaces:
    @pytest.fixture
    def settings(self, db: str) -> Settings:
        # The tests fire the timers and write the consoles themselves: a long lease, so no
        # console lapses by itself while a busy machine is slow to beat its heart (a lease
        # of half a second once lapsed between the commit and the handler's second try).
        return make_settings(db, **LONG)

    async def test_a_console_opening_as_the_grace_ends_keeps_the_agent_available(
        self, app: FastAPI, api: Api
    ) -> None:
        # The timer fires while a console's row is written but not committed: the handler
        # must wait for it (it tries again later) rather than miss it and set the agent away.
        engine: AsyncEngine = app.state.engine
        agent = await available_agent(api)
        agent_id = agent.me["id"]
        async with app.state.sessionmaker() as opening, opening.begin():
            await consoles.open_console(opening, agent_id)
            worker = app.state.timer_worker
            held_before = worker.found_held[CONSOLE_GONE]
            async with unit_of_work(app.state.sessionmaker) as session:
                now = await value(engine, "SELECT now()")
                await timers.schedule(session, kind=CONSOLE_GONE, subject=agent_id, due_at=now)

            async def fired_once() -> bool:
                status = await value(
                    engine, "SELECT status FROM agents WHERE id = :id", id=agent_id
                )
                return bool(status != "available" or worker.found_held[CONSOLE_GONE] > held_before)

            await eventually(fired_once, within=WITHIN_S, what="the handler to have run")
        await eventually(
            lambda: _is(console_gone_timers(engine, agent_id), 0),
            within=WITHIN_S,
            what="the console_gone timer to fire",
        )
        record = await me(agent)
        assert (record["status"], record["status_reason"]) == ("available", None)

    async def test_a_console_closed_while_a_heartbeat_is_in_flight_stays_closed(
        self, app: FastAPI, api: Api
    ) -> None:
        # The heartbeat reads the registry before its statement runs. A socket that ends in
        # between has its row deleted by the close, and the statement would write it back
        # with the heartbeat's (earlier) time: a phantom console that keeps the agent present
        # for a lease and then sets the away timer before "closed + grace".
        engine: AsyncEngine = app.state.engine
        agent_id = (await api.agent())["id"]
        # A registry of its own, with a long lease, so the running instance's heartbeats
        # neither keep nor lapse this console while the test looks.
        registry = consoles.ConsoleRegistry(grace_s=GRACE_S, stale_s=600)
        async with unit_of_work(app.state.sessionmaker) as session:
            session.info[consoles.REGISTRY_KEY] = registry
            connection = await consoles.open_console(session, agent_id)
        read_before_the_close = registry.held()
        async with unit_of_work(app.state.sessionmaker) as session:
            session.info[consoles.REGISTRY_KEY] = registry
            await consoles.close_console(session, connection, agent_id)
        due = await value(
            engine,
            "SELECT due_at FROM timers WHERE kind = :kind AND subject = :subject",
            kind=CONSOLE_GONE,
            subject=str(agent_id),
        )

        registry.held = lambda: read_before_the_close  # type: ignore[method-assign]
        async with unit_of_work(app.state.sessionmaker) as session:
            session.info[consoles.REGISTRY_KEY] = registry
            await consoles.heartbeat(session)

        assert (
            await value(
                engine, "SELECT count(*) FROM console_connections WHERE id = :id", id=connection
            )
            == 0
        )
        assert await has_open(engine, agent_id) is False
        assert (
            await value(
                engine,
                "SELECT due_at FROM timers WHERE kind = :kind AND subject = :subject",
                kind=CONSOLE_GONE,
                subject=str(agent_id),
            )
            == due
        )


async def has_open(engine: AsyncEngine, agent_id: int) -> bool:
    async with engine.connect() as conn:
        found = await conn.scalar(
            text(
                "SELECT EXISTS (SELECT 1 FROM console_connections "
                "WHERE agent_id = :id AND live_until > now())"
            ),
            {"id": agent_id},
        )
    return bool(found)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_process(db: str, port: int) -> subprocess.Popen[bytes]:
    """``hotline serve`` on ``port``: an instance that holds consoles and decides nothing."""
    settings = make_settings(db)
    assert settings.jwt_secret is not None
    env = {
        **os.environ,
        "DATABASE_URL": db,
        "HOTLINE_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "HOTLINE_DISPATCHER_ENABLED": "false",
        "HOTLINE_ARGON2_TIME_COST": "1",
        "HOTLINE_ARGON2_MEMORY_KIB": "64",
        "HOTLINE_ARGON2_PARALLELISM": "1",
        "HOTLINE_LOG_LEVEL": "WARNING",
        **{f"HOTLINE_{name.upper()}": str(setting) for name, setting in SHORT.items()},
    }
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=ROOT, env=env
    )


async def answers(port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            response = await http.get(f"http://127.0.0.1:{port}/health/live")
    except httpx.TransportError:
        return False
    return response.status_code == 200
