"""The websocket endpoints, with real clients against a real server in the test's event loop.

Events are made through the API where the scenario is a routing one (an offer), and written
straight into the log (``emit``) where only the stream's order and filtering matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.db import unit_of_work
from app.events.log import Cursor, LoggedEvent, read_after, record
from app.realtime import hub as hub_module
from app.realtime import ws as ws_module
from app.realtime.hub import EventHub, Fanout, Subscription, concerned_agents, event_text
from tests.conftest import make_settings
from tests.fixtures import net
from tests.fixtures.factories import ADMIN_PASSWORD, Api, expect
from tests.fixtures.polling import eventually
from tests.routing.acd import available_agent, contact, instance, offer_for, queue

WITHIN_S = 30.0  # deadline for any one message or handshake; the feed waits for the oldest
# open transaction, and on a busy two-core machine a worker may wait seconds for its turn
HANDSHAKE_S = WITHIN_S  # for other files' websockets: a liveness deadline, not a test


# --- server and clients ------------------------------------------------------------------


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` (lifespan already entered) with uvicorn on a free port; its ws:// URL."""
    async with net.serving(app, name="the app", stop_within_s=WITHIN_S) as url:
        yield "ws://" + url.removeprefix("http://")


@pytest.fixture
async def url(app: FastAPI) -> AsyncIterator[str]:
    async with serving(app) as base:
        yield base


def token_of(api: Api) -> str:
    return api.headers["Authorization"].removeprefix("Bearer ")


@dataclass
class Client:
    """A websocket client that reads JSON messages within a deadline."""

    conn: ClientConnection

    async def next(self, within: float = WITHIN_S) -> dict[str, Any]:
        async with asyncio.timeout(within):
            message: dict[str, Any] = json.loads(await self.conn.recv())
        return message

    async def reply(self) -> dict[str, Any]:
        """The next message that is not an event: the answer to what the client sent (a
        wallboard's events may come before it at any time)."""
        while True:
            message = await self.next()
            if message["type"] != "event":
                return message

    async def send(self, message: object) -> None:
        await self.conn.send(json.dumps(message))

    async def event(self, matching: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The next event message whose event satisfies ``matching`` (others are skipped)."""
        return (await self.events_until(matching))[-1]

    async def events_until(self, last: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """Event messages up to and including the first whose event satisfies ``last``."""
        received: list[dict[str, Any]] = []
        while True:
            message = await self.next()
            assert message["type"] == "event", message
            received.append(message)
            if last(message["event"]):
                return received

    async def close_code(self) -> int | None:
        """Read (and drop) whatever comes until the server closes; its close code."""
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(WITHIN_S):
                while True:
                    await self.conn.recv()
        return self.conn.close_code


@asynccontextmanager
async def client(
    base: str, path: str, token: str | None = None, **kwargs: Any
) -> AsyncIterator[Client]:
    query = f"?token={token}" if token is not None else ""
    async with connect(f"{base}{path}{query}", open_timeout=WITHIN_S, **kwargs) as conn:
        yield Client(conn)


@asynccontextmanager
async def following(base: str, path: str, token: str) -> AsyncIterator[tuple[Client, Cursor]]:
    """A signed-in client past its snapshot, with the snapshot's cursor."""
    async with client(base, path, token) as ws:
        snapshot = await ws.next()
        assert snapshot["type"] == "snapshot", snapshot
        yield ws, Cursor.parse(snapshot["cursor"])


async def emit(app: FastAPI, *names: str, agent_id: int | None = None, pad: int = 0) -> None:
    """Commit one ``test.ws`` event per name, in one transaction (about ``agent_id`` if given)."""
    async with unit_of_work(app.state.sessionmaker) as session:
        for name in names:
            data: dict[str, Any] = {"pad": "x" * pad} if pad else {}
            if agent_id is not None:
                data["agent_id"] = agent_id
            record(session, type="test.ws", subject_type="test", subject_id=name, data=data)


def named(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event["type"] == "test.ws" and event["subject"]["id"] == name


async def resumed(ws: Client, cursor: str) -> list[dict[str, Any]]:
    """Resume from ``cursor``: the event messages replayed (a ping marks their end)."""
    await ws.send({"type": "resume", "cursor": cursor})
    await ws.send({"type": "ping"})
    replayed: list[dict[str, Any]] = []
    while (message := await ws.next())["type"] == "event":
        replayed.append(message)
    assert message == {"type": "pong"}, message
    return replayed


async def read_by_hub(app: FastAPI, name: str, after: Cursor) -> Cursor:
    """Wait until the hub has read the ``test.ws`` event ``name`` (emitted when the hub was at
    ``after``); its cursor."""
    hub: EventHub = app.state.hub

    async def cursor() -> Cursor | None:
        read = hub.since(after, 100_000) or []
        return next((e.cursor for e in read if e.type == "test.ws" and e.subject_id == name), None)

    found: Cursor = await eventually(cursor, what=f"the hub to read {name}")
    return found


def names_of(messages: list[dict[str, Any]]) -> list[str]:
    """The names of the ``test.ws`` events among event messages, in order."""
    return [m["event"]["subject"]["id"] for m in messages if m["event"]["type"] == "test.ws"]


def ws_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("ws-")]


# --- authentication ----------------------------------------------------------------------


class TestAuthentication:
    async def test_socket_without_a_token_is_closed_with_4401(self, url: str) -> None:
        async with client(url, "/ws/agent") as ws:
            await ws.send({"type": "ping"})  # not an auth message
            assert await ws.close_code() == 4401

    async def test_silent_socket_without_a_token_is_closed_with_4401(
        self, url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(ws_module, "AUTH_TIMEOUT_S", 0.2)
        async with client(url, "/ws/wallboard") as ws:
            assert await ws.close_code() == 4401

    async def test_bad_token_is_closed_with_4401(self, url: str) -> None:
        async with client(url, "/ws/agent", token="not-a-token") as ws:
            assert await ws.close_code() == 4401

    async def test_bad_token_in_the_first_message_is_closed_with_4401(self, url: str) -> None:
        async with client(url, "/ws/agent") as ws:
            await ws.send({"type": "auth", "token": "not-a-token"})
            assert await ws.close_code() == 4401

    async def test_token_in_the_first_message_signs_in(self, url: str, api: Api) -> None:
        agent = await api.agent()
        console = await api.signed_in_as(agent)
        async with client(url, "/ws/agent") as ws:
            await ws.send({"type": "auth", "token": token_of(console)})
            snapshot = await ws.next()
        assert snapshot["type"] == "snapshot"
        assert snapshot["data"]["agent"]["id"] == agent["id"]

    async def test_agent_on_the_wallboard_is_closed_with_4403(self, url: str, api: Api) -> None:
        console = await api.signed_in_as(await api.agent())
        async with client(url, "/ws/wallboard", token_of(console)) as ws:
            assert await ws.close_code() == 4403

    async def test_supervisor_gets_the_wallboard(self, url: str, api: Api) -> None:
        supervisor = await api.signed_in_as(await api.supervisor())
        async with client(url, "/ws/wallboard", token_of(supervisor)) as ws:
            assert (await ws.next())["type"] == "snapshot"


# --- snapshots ---------------------------------------------------------------------------


class TestSnapshot:
    async def test_console_snapshot_has_the_agent_and_its_pending_offers(
        self, url: str, api: Api
    ) -> None:
        q = await queue(api)
        console = await available_agent(api)
        waiting = await contact(api, q["name"])
        offer = await offer_for(console, waiting["id"])
        async with client(url, "/ws/agent", token_of(console)) as ws:
            snapshot = await ws.next()
        assert snapshot["type"] == "snapshot"
        Cursor.parse(snapshot["cursor"])
        me = console.me
        assert snapshot["data"]["agent"] == {
            "id": me["id"],
            "username": me["username"],
            "name": me["name"],
            "role": "agent",
            "status": "available",
            "status_reason": None,
            "state": "offered",
        }
        assert snapshot["data"]["offers"] == [offer]

    async def test_console_snapshot_leaves_out_offers_no_longer_ringing(
        self, url: str, api: Api
    ) -> None:
        q = await queue(api)
        console = await available_agent(api)  # two chat contacts at once
        answered = await offer_for(console, (await contact(api, q["name"]))["id"])
        expect(await console.post(f"/api/v1/offers/{answered['id']}/accept"), 200)
        ringing = await offer_for(console, (await contact(api, q["name"]))["id"])
        async with client(url, "/ws/agent", token_of(console)) as ws:
            snapshot = await ws.next()
        assert snapshot["data"]["offers"] == [ringing]

    async def test_wallboard_snapshot_leaves_out_deactivated_agents(
        self, url: str, api: Api
    ) -> None:
        gone = await api.agent()
        expect(await api.patch(f"/api/v1/agents/{gone['id']}", {"active": False}), 200)
        async with client(url, "/ws/wallboard", token_of(api)) as ws:
            snapshot = await ws.next()
        assert snapshot["data"]["agents"] == {
            "by_status": {"available": 0, "away": 0, "offline": 0},
            "by_state": {"idle": 0, "offered": 0, "busy": 0, "wrap_up": 0},
        }

    async def test_wallboard_snapshot_counts_waiting_contacts_and_agents(
        self, url: str, api: Api
    ) -> None:
        busy, idle = await queue(api), await queue(api)
        first = await contact(api, busy["name"])
        await contact(api, busy["name"])
        await api.agent()  # offline; the admin, with no capacity, is not counted
        away = await api.agent()
        assert (await api.set_status(away["id"], "away", "lunch")).status_code == 200
        async with client(url, "/ws/wallboard", token_of(api)) as ws:
            snapshot = await ws.next()
        queues = {q["name"]: q for q in snapshot["data"]["queues"]}
        assert queues[busy["name"]]["waiting"] == 2
        assert queues[busy["name"]]["oldest_enqueued_at"] == first["enqueued_at"]
        assert queues[idle["name"]] == {
            "id": idle["id"],
            "name": idle["name"],
            "waiting": 0,
            "oldest_enqueued_at": None,
        }
        assert snapshot["data"]["agents"] == {
            "by_status": {"available": 0, "away": 1, "offline": 1},
            "by_state": {"idle": 2, "offered": 0, "busy": 0, "wrap_up": 0},
        }


# --- streaming ---------------------------------------------------------------------------


class TestStreaming:
    async def test_console_gets_the_offer_made_to_its_agent_and_not_anothers(
        self, url: str, api: Api
    ) -> None:
        q = await queue(api)
        other = await api.signed_in_as(await api.agent())
        console = await available_agent(api)
        async with (
            following(url, "/ws/agent", token_of(console)) as (mine, _),
            following(url, "/ws/agent", token_of(other)) as (theirs, _),
        ):
            waiting = await contact(api, q["name"])
            offered = await mine.event(lambda e: e["type"] == "offer.created")
            assert offered["event"]["data"]["agent_id"] == console.me["id"]
            assert offered["event"]["data"]["contact_id"] == waiting["id"]
            # An event about the other agent, logged after the offer: had the offer reached
            # the other console, it would have come first.
            assert (await other.set_status(other.me["id"], "away", "lunch")).status_code == 200
            seen = await theirs.events_until(lambda e: e["type"] == "agent.status_changed")
        assert all(m["event"]["type"] != "offer.created" for m in seen)
        assert all(
            m["event"]["subject"]["id"] == str(other.me["id"])
            or m["event"]["data"].get("agent_id") == other.me["id"]
            for m in seen
        )

    async def test_wallboard_gets_every_event_in_log_order(
        self, url: str, api: Api, app: FastAPI
    ) -> None:
        async with following(url, "/ws/wallboard", token_of(api)) as (ws, start):
            await api.agent()  # an agent.created event, not about any test name
            for name in ("w1", "w2", "w3"):
                await emit(app, name)
            received = await ws.events_until(named("w3"))
        async with app.state.engine.connect() as conn:
            logged = await read_after(conn, start, limit=1000)
        last = Cursor.parse(received[-1]["cursor"])
        expected = [str(e.cursor) for e in logged if e.cursor <= last]
        assert [m["cursor"] for m in received] == expected
        assert {"agent.created", "test.ws"} <= {m["event"]["type"] for m in received}
        assert names_of(received) == ["w1", "w2", "w3"]

    async def test_event_message_carries_the_event_as_the_log_api_gives_it(
        self, url: str, api: Api, app: FastAPI
    ) -> None:
        async with following(url, "/ws/wallboard", token_of(api)) as (ws, start):
            await emit(app, "shape", agent_id=42)
            message = await ws.event(named("shape"))
        page = (await api.get("/api/v1/events", params={"cursor": str(start)})).json()
        assert {"cursor": message["cursor"], "event": message["event"]} in page["items"]


# --- client messages -----------------------------------------------------------------------


class TestMessages:
    async def test_ping_is_answered_with_pong(self, url: str, api: Api) -> None:
        async with following(url, "/ws/wallboard", token_of(api)) as (ws, _):
            await ws.send({"type": "ping"})
            assert await ws.reply() == {"type": "pong"}

    @pytest.mark.parametrize(
        "raw",
        ['{"type": "dance"}', '{"no": "type"}', "not json", "[1, 2]", b"\x00binary"],
        ids=["unknown-type", "no-type", "not-json", "not-an-object", "binary"],
    )
    async def test_unknown_or_malformed_message_is_an_error_and_the_socket_stays_open(
        self, url: str, api: Api, raw: str | bytes
    ) -> None:
        async with following(url, "/ws/wallboard", token_of(api)) as (ws, _):
            await ws.conn.send(raw)
            answer = await ws.reply()
            assert answer["type"] == "error"
            assert answer["detail"]
            await ws.send({"type": "ping"})
            assert await ws.reply() == {"type": "pong"}


# --- resume --------------------------------------------------------------------------------


class TestResume:
    async def test_resume_replays_after_the_cursor_then_carries_on_live(
        self, url: str, api: Api, app: FastAPI
    ) -> None:
        async with following(url, "/ws/wallboard", token_of(api)) as (ws, _):
            for name in ("r1", "r2", "r3", "r4"):
                await emit(app, name)
            live = await ws.events_until(named("r4"))
            second = next(m for m in live if named("r2")(m["event"]))
            replayed = await resumed(ws, second["cursor"])
            await emit(app, "r5")
            after = await ws.event(named("r5"))
        assert replayed == live[live.index(second) + 1 :]
        assert names_of(replayed) == ["r3", "r4"]
        assert Cursor.parse(after["cursor"]) > Cursor.parse(live[-1]["cursor"])

    async def test_reconnecting_console_resumes_without_a_gap(
        self, url: str, api: Api, app: FastAPI
    ) -> None:
        mine, theirs = await api.agent(), await api.agent()
        token = token_of(await api.signed_in_as(mine))
        async with following(url, "/ws/agent", token) as (ws, _):
            await emit(app, "a1", agent_id=mine["id"])
            last_seen = (await ws.event(named("a1")))["cursor"]
        before = app.state.hub.cursor
        await emit(app, "a2", agent_id=mine["id"])
        await emit(app, "b1", agent_id=theirs["id"])
        await emit(app, "a3", agent_id=mine["id"])
        await read_by_hub(app, "a3", before)  # so the new socket's snapshot comes after them all
        async with following(url, "/ws/agent", token) as (ws, _):
            replayed = await resumed(ws, last_seen)
            await emit(app, "a4", agent_id=mine["id"])
            live = await ws.event(named("a4"))
        assert names_of(replayed) == ["a2", "a3"]
        cursors = [Cursor.parse(m["cursor"]) for m in [*replayed, live]]
        assert cursors == sorted(set(cursors))

    async def test_resume_from_before_the_hubs_memory_reads_the_log(
        self, url: str, api: Api, app: FastAPI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(hub_module, "RECENT_MAX", 4)
        hub: EventHub = app.state.hub
        async with following(url, "/ws/wallboard", token_of(api)) as (ws, start):
            for n in range(8):
                await emit(app, f"m{n}")
            live = await ws.events_until(named("m7"))
            assert hub.since(start, 1) is None  # memory no longer reaches back to the start
            replayed = await resumed(ws, str(start))
        assert replayed == live

    async def test_malformed_resume_cursor_is_an_error_and_the_socket_stays_open(
        self, url: str, api: Api
    ) -> None:
        async with following(url, "/ws/wallboard", token_of(api)) as (ws, _):
            await ws.send({"type": "resume", "cursor": "yesterday"})
            answer = await ws.reply()
            assert answer["type"] == "error"
            assert "yesterday" in answer["detail"]
            await ws.send({"type": "ping"})
            assert await ws.reply() == {"type": "pong"}

    async def test_resume_from_after_what_was_sent_asks_for_resync(
        self, url: str, api: Api
    ) -> None:
        async with following(url, "/ws/wallboard", token_of(api)) as (ws, start):
            ahead = Cursor(start.tx + 1_000_000, start.id)
            await ws.send({"type": "resume", "cursor": str(ahead)})
            assert await ws.reply() == {"type": "resync"}
            await ws.send({"type": "resume", "cursor": str(start)})  # nothing to replay
            await ws.send({"type": "ping"})
            assert await ws.reply() == {"type": "pong"}

    async def test_replay_longer_than_the_queue_asks_for_resync(self, db: str) -> None:
        settings = make_settings(db, ws_client_queue_size=3)
        async with instance(settings) as (app, http), serving(app) as base:
            api = await Api.signed_in(http, "admin", ADMIN_PASSWORD)
            before = app.state.hub.cursor
            await emit(app, "o1", "o2", "o3", "o4")
            last = await read_by_hub(app, "o4", before)
            async with following(base, "/ws/wallboard", token_of(api)) as (ws, start):
                assert start >= last  # all four come before the snapshot
                await ws.send({"type": "resume", "cursor": str(before)})
                assert await ws.reply() == {"type": "resync"}
                await ws.send({"type": "ping"})
                assert await ws.reply() == {"type": "pong"}


# --- slow clients and clean-up -----------------------------------------------------------


class TestSlowClient:
    async def test_slow_client_is_closed_with_1013_while_others_keep_receiving(
        self, db: str
    ) -> None:
        settings = make_settings(db, ws_client_queue_size=4)
        async with instance(settings) as (app, http), serving(app) as base:
            api = await Api.signed_in(http, "admin", ADMIN_PASSWORD)
            hub: EventHub = app.state.hub
            # Uncompressed, so that the padding fills the buffers towards the slow client.
            slow_options: dict[str, Any] = {"compression": None, "max_queue": 1}
            async with (
                following(base, "/ws/wallboard", token_of(api)) as (fast, _),
                client(base, "/ws/wallboard", token_of(api), **slow_options) as slow,
            ):
                assert (await slow.next())["type"] == "snapshot"
                # The slow client reads nothing more: the buffers towards it fill, then its
                # queue. The fast one reads every event as it comes.
                sent = 0
                while hub.subscription_count > 1:
                    assert sent < 1000, "the slow client was never dropped"
                    await emit(app, f"s{sent}", pad=64_000)
                    await fast.event(named(f"s{sent}"))
                    sent += 1
                await emit(app, "after")
                await fast.event(named("after"))
                messages: list[dict[str, Any]] = []
                with contextlib.suppress(ConnectionClosed):
                    async with asyncio.timeout(WITHIN_S):
                        while True:
                            messages.append(json.loads(await slow.conn.recv()))
                assert slow.conn.close_code == 1013
                assert messages[-1] == {"type": "resync"}
                # Every event it was sent before it fell behind, in order, none skipped (other
                # events, such as the instance's own, may be among them).
                assert all(m["type"] == "event" for m in messages[:-1]), messages[:-1]
                names = names_of(messages[:-1])
                assert names == [f"s{n}" for n in range(len(names))]

                async def only_the_fast_one_left() -> bool:
                    return hub.subscription_count == 1 and len(ws_tasks()) == 2

                await eventually(only_the_fast_one_left, what="the slow socket's tasks to go")
                await emit(app, "still")
                await fast.event(named("still"))

    async def test_subscriptions_and_tasks_go_when_clients_disconnect(
        self, url: str, api: Api, app: FastAPI
    ) -> None:
        hub: EventHub = app.state.hub
        console = await api.signed_in_as(await api.agent())
        async with (
            following(url, "/ws/wallboard", token_of(api)),
            following(url, "/ws/agent", token_of(console)),
        ):
            assert hub.subscription_count == 2

            async def serving_both() -> bool:
                return len(ws_tasks()) == 4  # a writer and a reader for each

            await eventually(serving_both, what="both sockets to be served")
        await eventually(lambda: _none_left(hub), what="subscriptions and tasks to go")


async def _none_left(hub: EventHub) -> bool:
    return hub.subscription_count == 0 and not ws_tasks()


# --- the hub's fan-out (no database) -------------------------------------------------------


def logged(
    subject_type: str = "test", subject_id: str = "x", data: dict[str, Any] | None = None
) -> LoggedEvent:
    return LoggedEvent(
        id=1,
        cursor=Cursor(1, 1),
        type="test.ws",
        subject_type=subject_type,
        subject_id=subject_id,
        data=data or {},
        actor=None,
        at=datetime(2025, 1, 1, tzinfo=UTC),
    )


@pytest.fixture
async def idle_hub() -> AsyncIterator[EventHub]:
    """A hub that is never started: its fan-out needs no database."""
    url = "postgresql+asyncpg://127.0.0.1/never-connected"
    engine = create_async_engine(url)
    yield EventHub(engine, url, poll_interval_s=1)
    await engine.dispose()


class Counted(Subscription):
    """A subscription that counts the events offered to it."""

    offered = 0

    def offer(self, event: LoggedEvent) -> bool:
        self.offered += 1
        return super().offer(event)


class TestConcernedAgents:
    @pytest.mark.parametrize(
        ("subject_type", "subject_id", "data", "expected"),
        [
            ("agent", "7", {}, ("7",)),
            ("contact", "3", {"agent_id": 7}, ("7",)),
            ("agent", "7", {"agent_id": 7}, ("7",)),
            ("agent", "7", {"agent_id": 9}, ("7", "9")),
            ("contact", "3", {"agent_id": None}, ()),
            ("contact", "3", {}, ()),
            ("offer", "7", {"contact_id": 7}, ()),
            ("complaint", "3", {"agent_id": 9, "previous_agent_id": 7}, ("9", "7")),
            ("complaint", "3", {"agent_id": None, "previous_agent_id": 7}, ("7",)),
        ],
    )
    def test_agents_an_event_concerns(
        self, subject_type: str, subject_id: str, data: dict[str, Any], expected: tuple[str, ...]
    ) -> None:
        assert concerned_agents(logged(subject_type, subject_id, data)) == expected


class TestFanout:
    async def test_event_is_offered_only_to_the_subscriptions_it_concerns(
        self, idle_hub: EventHub
    ) -> None:
        fanout = Fanout()
        consoles = {n: Counted(idle_hub, 10, agent_id=n) for n in range(1, 1001)}
        boards = [Counted(idle_hub, 10) for _ in range(2)]
        for sub in [*consoles.values(), *boards]:
            fanout.add(sub)
        fanout.deliver([logged("agent", "7", {"agent_id": 9}), logged("contact", "1")])
        touched = {n for n, sub in consoles.items() if sub.offered}
        assert touched == {7, 9}
        assert consoles[7].queue.qsize() == consoles[9].queue.qsize() == 1
        assert [sub.offered for sub in boards] == [2, 2]

    async def test_overflowed_subscription_is_dropped_and_others_keep_receiving(
        self, idle_hub: EventHub
    ) -> None:
        fanout = Fanout()
        slow, fast = Subscription(idle_hub, 1, agent_id=7), Subscription(idle_hub, 10, agent_id=7)
        fanout.add(slow)
        fanout.add(fast)
        fanout.deliver([logged("agent", "7")] * 3)
        assert slow.overflowed.is_set()
        assert fast.queue.qsize() == 3
        assert len(fanout) == 1

    async def test_removing_the_last_subscription_of_an_agent_forgets_the_agent(
        self, idle_hub: EventHub
    ) -> None:
        fanout = Fanout()
        sub = Subscription(idle_hub, 10, agent_id=7)
        fanout.add(sub)
        fanout.remove(sub)
        fanout.remove(sub)  # twice is harmless
        assert len(fanout) == 0
        assert fanout._by_agent == {}


class TestWire:
    async def test_event_is_encoded_once_however_many_sockets_send_it(
        self, idle_hub: EventHub, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: list[LoggedEvent] = []

        def counting(event: LoggedEvent) -> str:
            calls.append(event)
            return event_text(event)

        monkeypatch.setattr(hub_module, "event_text", counting)
        event = logged("agent", "7", {"agent_id": 7})
        texts = {idle_hub.wire(event) for _ in range(100)}
        assert len(calls) == 1
        assert json.loads(texts.pop()) == {
            "type": "event",
            "cursor": "1-1",
            "event": event.as_message(),
        }
