"""The console's connection in a real browser: a cut socket resumes from its cursor without
losing an offer; the socket client's resume rule and the console's model, fed by hand."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from playwright.async_api import WebSocketRoute, expect

from app.events.log import Cursor
from app.realtime.hub import EventHub
from tests.fixtures.factories import Api
from tests.fixtures.polling import eventually
from tests.routing.acd import contact, offer_for, queue
from tests.web.conftest import NewPage, open_signed_in
from tests.web.test_console import go_available, offer_item


@dataclass
class Cable:
    """The console's socket, through a switch the test holds (Playwright routes it)."""

    up: bool = True
    live: list[WebSocketRoute] = field(default_factory=list)
    sent: list[list[dict[str, Any]]] = field(default_factory=list)  # per connection

    async def connect(self, ws: WebSocketRoute) -> None:
        if not self.up:
            await ws.close(code=4000, reason="the network is down")
            return
        server = ws.connect_to_server()
        frames: list[dict[str, Any]] = []
        self.sent.append(frames)

        def from_page(message: str | bytes) -> None:
            frames.append(json.loads(message))
            server.send(message)

        ws.on_message(from_page)
        self.live.append(ws)

    async def cut(self) -> None:
        self.up = False
        for ws in self.live:
            await ws.close(code=4000, reason="the network is down")
        self.live.clear()


async def offer_read_by_hub(app: FastAPI, after: Cursor, offer_id: int) -> None:
    """Wait until the hub has read the offer's ``offer.created`` (it was at ``after``): a
    socket opened from then on has it before its snapshot's cursor."""
    hub: EventHub = app.state.hub

    async def read() -> bool:
        events = hub.since(after, 100_000) or []
        return any(e.type == "offer.created" and e.data["offer_id"] == offer_id for e in events)

    await eventually(read, what=f"the hub to read the offer {offer_id}")


class TestConnection:
    async def test_a_cut_socket_resumes_from_its_cursor_without_losing_an_offer(
        self, api: Api, app: FastAPI, new_page: NewPage
    ) -> None:
        agent = await api.agent()
        cards = await queue(api)
        cable = Cable()
        page = await new_page()
        await page.clock.install()
        await page.route_web_socket("**/ws/agent", cable.connect)
        await open_signed_in(page, "/console", agent["username"])
        await expect(page.locator("#state-now")).to_have_text("Idle")
        await go_available(page)
        banner = page.locator("#connection")
        await cable.cut()
        await expect(banner).to_have_text("Connection lost — reconnecting…")
        # Read once the socket is down: frames still on the way before the cut (the agent's
        # own status change) may move the cursor up to that moment, none after it.
        last = await page.evaluate("window.hotlineConsole.socket.cursor")
        before = app.state.hub.cursor
        made = await contact(api, cards["name"], subject="While the line was down")
        offer = await offer_for(await api.signed_in_as(agent), made["id"])
        await offer_read_by_hub(app, before, offer["id"])  # so only a replay can bring it
        cable.up = True
        await page.clock.fast_forward("00:16")  # past the longest wait between attempts
        await expect(offer_item(page, offer["id"])).to_contain_text("While the line was down")
        await expect(banner).to_have_text("")
        resumed = [f for f in cable.sent[-1] if f["type"] == "resume"]
        assert resumed == [{"type": "resume", "cursor": last}]


# The socket client fed frames by hand (no network): what it applies, in which order.
FEED = """async (frames) => {
    const { LiveSocket } = await import("/static/js/socket.js");
    const applied = [], snapshots = [], sent = [];
    const socket = new LiveSocket("/ws/agent", {
        onSnapshot: (data) => snapshots.push(data),
        onEvent: (event) => applied.push(event.id),
        onState: () => {},
    });
    socket.ws = {readyState: WebSocket.OPEN, send: (t) => sent.push(JSON.parse(t)), close() {}};
    for (const frame of frames) socket.receive({data: JSON.stringify(frame)});
    clearInterval(socket.pingTimer);
    return {applied, snapshots, sent, cursor: socket.cursor};
}"""


def snapshot(cursor: str, n: int) -> dict[str, Any]:
    return {"type": "snapshot", "cursor": cursor, "data": {"n": n}}


def event(tx: int, id_: int) -> dict[str, Any]:
    return {"type": "event", "cursor": f"{tx}-{id_}", "event": {"id": id_, "type": "test"}}


PONG: dict[str, Any] = {"type": "pong"}


class TestResumeRule:
    async def feed(self, new_page: NewPage, frames: list[dict[str, Any]]) -> dict[str, Any]:
        page = await new_page()
        await page.goto("/status")
        return await page.evaluate(FEED, frames)  # type: ignore[no-any-return]

    async def test_events_before_the_replay_are_dropped_and_the_replay_applied_in_order(
        self, new_page: NewPage
    ) -> None:
        fed = await self.feed(
            new_page,
            [
                snapshot("9-1", 1),
                event(11, 2),
                snapshot("99-5", 2),  # a new connection
                event(100, 6),  # live, sent before the resume was read: in the replay too
                *[event(12, 3), event(13, 4), event(99, 5), event(100, 6)],  # the replay
                PONG,
                event(101, 7),
            ],
        )
        assert fed["applied"] == [2, 3, 4, 5, 6, 7]
        assert fed["snapshots"] == [{"n": 1}]  # the second snapshot leaves the state alone
        assert fed["sent"][:2] == [{"type": "resume", "cursor": "11-2"}, {"type": "ping"}]
        assert fed["cursor"] == "101-7"

    async def test_with_nothing_to_replay_the_events_held_are_new(self, new_page: NewPage) -> None:
        fed = await self.feed(
            new_page, [snapshot("9-1", 1), event(10, 2), snapshot("10-2", 2), event(11, 3), PONG]
        )
        assert fed["applied"] == [2, 3]

    async def test_resync_rebuilds_from_the_next_snapshot(self, new_page: NewPage) -> None:
        fed = await self.feed(
            new_page,
            [
                snapshot("9-1", 1),
                event(10, 2),
                snapshot("20-1", 2),
                {"type": "resync"},
                snapshot("21-1", 3),
                event(22, 4),
            ],
        )
        assert fed["snapshots"] == [{"n": 1}, {"n": 3}]
        assert fed["applied"] == [2, 4]


# A request on the socket client across a reconnect, fed by hand.
REQUEST = """async () => {
    const { LiveSocket } = await import("/static/js/socket.js");
    const sent = [];
    const socket = new LiveSocket("/ws/agent", {onSnapshot() {}, onEvent() {}, onState() {}});
    const feed = (frame) => socket.receive({data: JSON.stringify(frame)});
    socket.ws = {readyState: WebSocket.CLOSED, send() {}, close() {}};  // the line is down
    feed({type: "snapshot", cursor: "1-1", data: {}});
    const answers = [];
    const asked = socket.request({type: "accept", offer_id: 5}).then((r) => answers.push(r));
    socket.ws = {readyState: WebSocket.OPEN, send: (t) => sent.push(JSON.parse(t)), close() {}};
    feed({type: "snapshot", cursor: "2-1", data: {}});  // back: sent again
    feed({type: "snapshot", cursor: "3-1", data: {}});  // and again on the next one
    const id = sent.find((f) => f.type === "accept").request_id;
    feed({type: "ack", request_id: id, result: {id: 5, status: "accepted"}});
    feed({type: "ack", request_id: id, result: {id: 5, status: "accepted"}});
    await asked;
    clearInterval(socket.pingTimer);
    return {accepts: sent.filter((f) => f.type === "accept"), answers};
}"""


class TestRequests:
    async def test_an_unanswered_request_is_sent_again_with_its_id_and_answered_once(
        self, new_page: NewPage
    ) -> None:
        page = await new_page()
        await page.goto("/status")
        found = await page.evaluate(REQUEST)
        ids = {frame["request_id"] for frame in found["accepts"]}
        assert len(found["accepts"]) == 2
        assert len(ids) == 1
        assert re.fullmatch(r"[0-9a-f]{32}", ids.pop())
        assert found["answers"] == [{"id": 5, "status": "accepted"}]


# The console's model fed events by hand: an ending is never undone by an older event.
MODEL = """async (events) => {
    const { ConsoleModel } = await import("/static/console/model.js");
    const model = new ConsoleModel();
    model.reset({agent: {id: 7, status: "available", state: "idle"}, offers: []});
    for (const event of events) model.apply(event);
    return {offers: [...model.offers.keys()], contacts: [...model.contacts.keys()],
            state: model.agent.state};
}"""


def logged(type_: str, **data: Any) -> dict[str, Any]:
    return {"type": type_, "at": "2026-12-01T08:00:00+00:00", "data": {"agent_id": 7, **data}}


class TestConsoleModel:
    async def test_an_offer_closed_or_a_contact_ended_never_comes_back(
        self, new_page: NewPage
    ) -> None:
        page = await new_page()
        await page.goto("/status")
        offer = {"offer_id": 5, "contact_id": 50, "queue_id": 1, "channel": "chat"}
        found = await page.evaluate(
            MODEL,
            [
                logged("offer.created", **offer, expires_at="2026-12-01T08:00:30+00:00"),
                logged("offer.rejected", **offer),
                logged("offer.created", **offer, expires_at="2026-12-01T08:00:30+00:00"),
                logged("contact.completed", contact_id=60, queue_id=1, channel="chat"),
                logged("contact.wrap_up", contact_id=60, until="2026-12-01T08:01:00+00:00"),
                logged("offer.created", **{**offer, "offer_id": 6, "agent_id": 8}),
                logged("agent.state_changed", state="busy", previous="idle", contact_id=61),
            ],
        )
        assert found == {"offers": [], "contacts": [], "state": "busy"}
