"""The dispatcher in a process of its own: API processes without it, `hotline dispatch`."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db import create_engine
from app.routing.dispatcher import LEADER_LOCK
from app.runtime import Runtime, timer_registry
from tests.conftest import make_settings
from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually
from tests.routing.acd import available_agent, contact, offer_for, queue, value

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(db: str) -> Settings:
    """This module's apps are API processes that leave dispatching to another process."""
    return make_settings(db, dispatcher_enabled=False)


@pytest.fixture
async def engine(db: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db, pool_size=2)
    yield engine
    await engine.dispose()


async def leader_held(engine: AsyncEngine) -> bool:
    held = await value(
        engine,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND ((classid::bigint << 32) | objid::bigint) = :key",
        key=LEADER_LOCK,
    )
    return bool(held)


class TestDispatcherElsewhere:
    async def test_api_without_dispatcher_leaves_offers_to_a_dispatcher_runtime(
        self, app: FastAPI, api: Api, settings: Settings
    ) -> None:
        assert app.state.dispatcher is None
        q = await queue(api)
        console = await available_agent(api)
        waiting = await contact(api, q["name"])
        assert waiting["status"] == "queued"
        seen = expect(await api.get(f"/api/v1/contacts/{waiting['id']}"), 200)
        assert seen["status"] == "queued"  # nobody here decides
        elsewhere = Runtime(settings, timer_registry(settings), dispatcher=True, pool_size=2)
        await elsewhere.start()
        try:
            offer = await offer_for(console, waiting["id"])
        finally:
            await elsewhere.stop()
        assert offer["agent_id"] == console.me["id"]

    async def test_capacity_freed_through_the_api_wakes_the_other_process_dispatcher(
        self, api: Api, db: str
    ) -> None:
        # The dispatcher's own tick is a minute: only the API's events can wake it in time.
        # Ending one of two chats leaves the agent busy, so no state change announces it.
        slow_tick = make_settings(db, dispatch_tick_s=60)
        elsewhere = Runtime(slow_tick, timer_registry(slow_tick), dispatcher=True, pool_size=2)
        await elsewhere.start()
        try:
            q = await queue(api, wrap_up_s=0)
            console = await available_agent(api, capacity={"chat": 2})
            first, second = await contact(api, q["name"]), await contact(api, q["name"])
            for held in (first, second):
                offer = await offer_for(console, held["id"])
                expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
            third = await contact(api, q["name"])
            ended = f"/api/v1/contacts/{first['id']}/complete"
            expect(await console.post(ended, {"disposition": "resolved"}), 200)
            assert expect(await console.get("/api/v1/agents/me"), 200)["state"] == "busy"
            await offer_for(console, third["id"], within=5)
        finally:
            await elsewhere.stop()


def dispatch_process(db: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "dispatch"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": db, "HOTLINE_LOG_LEVEL": "WARNING", **env},
    )


def stand_in_server() -> subprocess.Popen[bytes]:
    """A process to play the server that started the dispatcher."""
    return subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])


async def exit_code(process: subprocess.Popen[bytes]) -> int:
    try:
        return await asyncio.to_thread(process.wait, 60)
    finally:
        await reaped(process)


async def reaped(process: subprocess.Popen[bytes]) -> None:
    """Kill ``process`` if it still runs, and wait for it: a test that fails midway leaves
    no process behind."""
    if process.poll() is None:
        process.kill()
    await asyncio.to_thread(process.wait)


# A process starting on a busy machine may take a while just to import the service.
STARTED_WITHIN_S = 60


class TestDispatchCommand:
    async def test_dispatch_takes_the_lead_and_stops_cleanly_on_sigterm(
        self, db: str, engine: AsyncEngine
    ) -> None:
        process = dispatch_process(db)
        try:
            await eventually(
                lambda: leader_held(engine), within=STARTED_WITHIN_S, what="the dispatcher lock"
            )
        except BaseException:
            await reaped(process)
            raise
        process.send_signal(signal.SIGTERM)
        assert await exit_code(process) == 0
        assert not await leader_held(engine)

    async def test_dispatch_started_by_a_server_ends_when_the_server_is_gone(
        self, db: str, engine: AsyncEngine
    ) -> None:
        server = stand_in_server()
        process = dispatch_process(db, HOTLINE_PARENT_PID=str(server.pid))
        try:
            await eventually(
                lambda: leader_held(engine), within=STARTED_WITHIN_S, what="the dispatcher lock"
            )
        except BaseException:
            await reaped(process)
            raise
        finally:
            await reaped(server)
        assert await exit_code(process) == 0
        assert not await leader_held(engine)


def serve_process(db: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--dispatcher-process"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": db, "HOTLINE_LOG_LEVEL": "WARNING"},
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def children_of(pid: int) -> set[int]:
    """Live child processes of ``pid`` (Linux: /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def gone(pid: int) -> bool:
    """The process has exited (it may linger as a zombie until its new parent reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


class TestServeWithDispatcherProcess:
    async def test_dispatcher_child_is_started_again_and_stops_with_the_server(
        self, db: str, engine: AsyncEngine
    ) -> None:
        server = serve_process(db, free_port())
        try:
            first = await eventually(
                lambda: asyncio.to_thread(children_of, server.pid),
                within=STARTED_WITHIN_S,
                what="the child",
            )
            await eventually(
                lambda: leader_held(engine), within=STARTED_WITHIN_S, what="the dispatcher lock"
            )
            (child,) = first
            os.kill(child, signal.SIGKILL)

            async def replaced() -> set[int]:
                now = await asyncio.to_thread(children_of, server.pid)
                return now if now and child not in now else set()

            (second,) = await eventually(
                replaced, within=STARTED_WITHIN_S, what="a new dispatcher child"
            )
            await eventually(
                lambda: leader_held(engine), within=STARTED_WITHIN_S, what="the lock again"
            )
            server.send_signal(signal.SIGTERM)
            assert await exit_code(server) == 128 + signal.SIGTERM
            await eventually(
                lambda: asyncio.to_thread(gone, second), within=30, what="the child to stop"
            )
            await eventually(lambda: _not(leader_held(engine)), within=30, what="the lock released")
        finally:
            await reaped(server)


async def _not(check: Awaitable[bool]) -> bool:
    return not await check
