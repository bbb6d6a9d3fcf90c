"""Websockets: an agent's console (``/ws/agent``) and the wallboard (``/ws/wallboard``).

Theory of operation
-------------------

A socket is accepted first (a close code can only be given on an open socket), then
authenticated by ``?token=`` or by a first message ``{"type": "auth", "token": ...}``: a
missing or bad token closes it with 4401. Who may open which socket is the access table's
answer (``app/agents/access.py``): the console needs ``events list`` (an agent's own events), the
wallboard ``events stream`` (every event); a signed-in user the table refuses is closed with
4403. A channel's API key opens neither: an unknown or revoked key is a 4401, a live one a
4403 (its principal is no person the revocation watch could follow). The token's
claims are registered with the revocation watch (``app/realtime/revocation.py``) before the
agent's row is read, and stay registered while the socket is open: once the watch revokes
the sign-in (the token expired; the agent deactivated, gone, or with a new password, role or
site), the socket closes with 4401 and the reason.

The socket then subscribes to the hub (to the events that concern the signed-in user, or to
every event) and reads the hub's cursor S in the same step: with no ``await`` between the
two, every event after S reaches the subscription's queue. The snapshot is read only after
that, so nothing falls between it and the stream; events after S may already show in it,
and clients de-duplicate them by id.

Two tasks then serve the socket until either ends, or until the queue overflows or the
sign-in is revoked (each calls back to end the stream, so no task waits for them): the
writer sends queued events and the reader answers the client's messages.
Every send holds one lock, under which the writer also moves ``sent`` (the cursor of the
last event sent, S before any). A resume replays, under that lock, the events after its
cursor up to ``sent`` (from the hub's memory, or from the log when memory does not reach
back) and the writer then carries on after ``sent``: the client's stream has no gap and no
event out of order. An overflow means a client too slow to keep up: the hub has already
dropped its subscription, and the server sends ``resync`` if the socket still takes it and
closes with 1013. However the socket ends, the tasks are cancelled and the subscription
removed.

A signed-in ``/ws/agent`` socket is an open console of its agent (``app/agents/consoles.py``):
it is recorded before the snapshot is sent and closed however the socket ends, which starts
the grace after which an agent with no console left becomes away.

An agent acts on its console's socket (accept, reject, set_status, complete, wrap_up_done):
the reader hands such a message to ``app/realtime/actions.py``, which runs the REST routes' own
action in a transaction of its own, once per ``request_id``, and answers ``ack`` or ``error``.
The action runs as a task of its own, shielded: a socket that closes meanwhile does not cut its
transaction short (the client learns the answer by sending the ``request_id`` again). Just
before the action commits, the writer is held (``_settled``) until the ``ack`` is sent: what
the action caused can only reach the queue after the commit, so its ``ack`` always comes
before its events. The wallboard takes no actions.

A wallboard opened with ``?figures=1`` also gets the live figures (``queue.stats`` and
``complaints.counts`` frames, see ``app/realtime/figures_feed.py``): computed once per
instance for every wallboard, and sent beside the stream through the same lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.agents import api_keys, consoles
from app.agents import service as agents_service
from app.agents.access import Action, Resource, allows, refusal, rule_for
from app.agents.dependencies import UNKNOWN_KEY, check_identity
from app.agents.permissions import Principal
from app.agents.schemas import AgentCounts, AgentLive
from app.agents.security import TokenClaims, TokenError
from app.db import unit_of_work
from app.errors import InvalidInput, Unauthorized
from app.events.log import Cursor, LoggedEvent, read_after
from app.realtime import actions, figures_feed
from app.realtime.hub import EventHub, Subscription
from app.realtime.lean import Flag
from app.realtime.revocation import NOT_WALLBOARD, SignIn, revocation_watch
from app.routing import service as routing_service
from app.routing.schemas import OfferOut, QueueLive

log = logging.getLogger(__name__)
router = APIRouter(tags=["websockets"])

UNAUTHORIZED, FORBIDDEN, TRY_AGAIN_LATER = 4401, 4403, 1013
AUTH_TIMEOUT_S = 10.0  # for the first message, when the URL carries no token
GOODBYE_TIMEOUT_S = 5.0  # for a slow client's resync and close frames
REPLAY_PAGE = 500
# A console's resume filters the log for one agent: past this many log events read, the
# client is told to resync (its snapshot is cheaper than reading on).
REPLAY_SCAN_MAX = 50_000
# A client message longer than this is refused unread (a console's longest, a completion
# with 10,000 characters of notes, is well below it even with every character escaped).
MAX_MESSAGE_CHARS = 128 * 1024
PONG = json.dumps({"type": "pong"})
RESYNC = json.dumps({"type": "resync"})


# --- snapshots ---------------------------------------------------------------------------


class AgentSnapshot(BaseModel):
    agent: AgentLive
    offers: list[OfferOut] = Field(description="the agent's pending offers, oldest first")


class WallboardSnapshot(BaseModel):
    queues: list[QueueLive]
    agents: AgentCounts = Field(
        description="active accounts with capacity on a channel (those that take contacts)"
    )


async def agent_snapshot(conn: AsyncConnection, agent_id: int) -> AgentSnapshot | None:
    """The agent and its pending offers; None if the agent is gone."""
    agent = await agents_service.live_agent(conn, agent_id)
    if agent is None:
        return None
    return AgentSnapshot(agent=agent, offers=await routing_service.pending_offers(conn, agent_id))


async def wallboard_snapshot(conn: AsyncConnection) -> WallboardSnapshot:
    """Every queue's waiting contacts, and the agents counted by status and by state."""
    return WallboardSnapshot(
        queues=await routing_service.waiting_by_queue(conn),
        agents=await agents_service.live_counts(conn),
    )


async def read_snapshot(
    engine: AsyncEngine, agent_id: int | None
) -> AgentSnapshot | WallboardSnapshot | None:
    """An agent's snapshot (None if the agent is gone), or the wallboard's when no agent."""
    async with engine.connect() as conn:
        # One snapshot of the database for every statement: the figures agree with each other.
        consistent = await conn.execution_options(isolation_level="REPEATABLE READ")
        if agent_id is None:
            return await wallboard_snapshot(consistent)
        return await agent_snapshot(consistent, agent_id)


# --- messages ------------------------------------------------------------------------------


def parse_message(text: str | None) -> dict[str, Any]:
    """A client message: a JSON object; anything else is ``InvalidInput``.

    A message nested too deeply for the parser is malformed like any other: the client is
    told, and the socket stays open (the parser's ``RecursionError`` would end the reader).
    """
    if text is None:
        raise InvalidInput("messages are JSON text, not binary")
    if len(text) > MAX_MESSAGE_CHARS:
        raise InvalidInput(f"a message may hold at most {MAX_MESSAGE_CHARS} characters")
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"a message must be JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidInput("a message must be JSON: nested too deeply to parse") from exc
    if not isinstance(message, dict):
        raise InvalidInput('a message is a JSON object such as {"type": "ping"}')
    return message


def resume_cursor(message: dict[str, Any]) -> Cursor:
    """The cursor of a resume message."""
    value = message.get("cursor")
    if not isinstance(value, str):
        raise InvalidInput('resume needs a "cursor" string such as "<tx>-<id>"')
    return Cursor.parse(value)


def close_reason(detail: str) -> str:
    """``detail`` cut to the 123 bytes a close frame's reason may hold."""
    return detail.encode()[:123].decode(errors="ignore")


async def receive_text(websocket: WebSocket) -> str | None:
    """The next client message's text (None for a binary one); raises on disconnect."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
    text: str | None = message.get("text")
    return text


# --- authentication ----------------------------------------------------------------------


async def authenticate(websocket: WebSocket, *, wallboard: bool) -> TokenClaims | None:
    """The claims of the socket's token, its signature and expiry checked (not yet its
    agent's row); None once the socket has been closed (4401, or 4403 for an API key)."""
    token = websocket.query_params.get("token") or await _token_message(websocket)
    if api_keys.is_api_key(token):
        await _refuse_key(websocket, token or "", wallboard=wallboard)
        return None
    try:
        if not token:
            raise TokenError('a token is required: ?token= or a first {"type": "auth"} message')
        claims: TokenClaims = websocket.app.state.tokens.read(token)
    except TokenError as exc:
        await websocket.close(UNAUTHORIZED, close_reason(str(exc)))
        return None
    return claims


async def _token_message(websocket: WebSocket) -> str | None:
    """The token of a first ``{"type": "auth", "token": ...}`` message; None for anything else."""
    try:
        async with asyncio.timeout(AUTH_TIMEOUT_S):
            text = await receive_text(websocket)
        message = parse_message(text)
    except (TimeoutError, InvalidInput):
        return None
    token = message.get("token")
    return token if message.get("type") == "auth" and isinstance(token, str) else None


async def _refuse_key(websocket: WebSocket, key: str, *, wallboard: bool) -> None:
    """Close a socket signed in with an API key: 4401 if the key is not live, else 4403."""
    now = datetime.now(UTC)
    principal = await api_keys.authenticate(websocket.app.state.db_pool, key, now=now)
    if principal is None:
        await websocket.close(UNAUTHORIZED, close_reason(UNKNOWN_KEY))
        return
    reason = socket_refusal(principal, wallboard=wallboard)
    await websocket.close(FORBIDDEN, reason or "a channel's API key opens no socket")


def socket_refusal(principal: Principal, *, wallboard: bool) -> str | None:
    """Why the access table refuses ``principal`` this socket; None if it lets them in."""
    if wallboard:
        return None if allows(principal, Resource.events, Action.stream) else NOT_WALLBOARD
    if allows(principal, Resource.events, Action.list, owner_ids=(principal.id,)):
        return None
    rule = rule_for(principal.role.value, Resource.events, Action.list)
    return close_reason(refusal(principal, Resource.events, Action.list, rule))


async def admit(websocket: WebSocket, sign_in: SignIn) -> Principal | None:
    """The user a watched sign-in names, as the database has it now; None once the socket
    has been closed (4401, or 4403 when the access table refuses the socket)."""
    claims = sign_in.claims
    identity = await agents_service.get_identity(websocket.app.state.db_pool, claims)
    try:
        principal = check_identity(claims, identity)
    except Unauthorized as exc:
        await websocket.close(UNAUTHORIZED, close_reason(exc.detail))
        return None
    refused = socket_refusal(principal, wallboard=sign_in.wallboard)
    if refused is not None:
        await websocket.close(FORBIDDEN, refused)
        return None
    return principal


# --- the stream --------------------------------------------------------------------------


class Stream:
    """One authenticated socket following the hub from cursor ``sent``."""

    def __init__(
        self,
        websocket: WebSocket,
        hub: EventHub,
        engine: AsyncEngine,
        sub: Subscription,
        start: Cursor,
        sign_in: SignIn,
    ) -> None:
        self.websocket = websocket
        self.hub = hub
        self.engine = engine
        self.sub = sub
        self.sign_in = sign_in
        self.sent = start  # the last event sent (or the snapshot's cursor); moves under _lock
        self.replay_max = sub.queue.maxsize
        self._lock = asyncio.Lock()
        self._settled = Flag()  # cleared from an action's commit until its ack is sent
        self._settled.set()

    async def serve(self) -> None:
        """Write and read until either ends, or until the client falls behind or its sign-in
        is revoked; then close a revoked sign-in with 4401, or say goodbye to a slow client."""
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def end() -> None:
            if not ended.done():
                ended.set_result(None)

        # Callbacks rather than a task waiting on each: an idle socket holds no more tasks.
        self.sub.on_overflow = self.sign_in.on_revoke = end
        if self.sub.overflowed.is_set() or self.sign_in.revoked.is_set():
            end()
        tasks = [
            asyncio.create_task(self._write(), name="ws-write"),
            asyncio.create_task(self._read(), name="ws-read"),
        ]
        try:
            done, _ = await asyncio.wait([*tasks, ended], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.sub.on_overflow = self.sign_in.on_revoke = None
            ended.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if task not in done:
                continue
            error = None if task.cancelled() else task.exception()
            if error is not None and not isinstance(error, WebSocketDisconnect):
                raise error
        if self.sign_in.revoked.is_set():
            await close_revoked(self.websocket, self.sign_in)
        elif ended in done:
            await self._goodbye()

    async def _write(self) -> None:
        while True:
            event = await self.sub.queue.get()
            await self._settled.wait()  # an event the writer holds was queued before the commit
            async with self._lock:
                await self.websocket.send_text(self.hub.wire(event))
                self.sent = event.cursor

    async def _read(self) -> None:
        while True:
            await self._answer(await receive_text(self.websocket))

    async def _answer(self, text: str | None) -> None:
        request_id = None
        try:
            message = parse_message(text)
            request_id = actions.request_id_of(message)
            match message.get("type"):
                case "ping":
                    await self._send(PONG)
                case "resume":
                    await self._resume(resume_cursor(message))
                case kind if kind in actions.ACTIONS:
                    await self._act(message)
                case kind:
                    raise InvalidInput(f"unknown message type {kind!r}: {self._expected()}")
        except InvalidInput as exc:
            await self._send(actions.refusal_text(exc, request_id))

    def _expected(self) -> str:
        if self.sign_in.wallboard:
            return "expected ping or resume"
        return f"expected ping, resume or an action ({', '.join(sorted(actions.ACTIONS))})"

    async def _send(self, text: str) -> None:
        async with self._lock:
            await self.websocket.send_text(text)

    async def _act(self, message: dict[str, Any]) -> None:
        """Perform an action and send its answer before anything it caused."""
        if self.sign_in.wallboard:
            kind = message["type"]
            raise InvalidInput(f"{kind} is not on this socket: actions go to /ws/agent")
        state = self.websocket.app.state
        performed = asyncio.create_task(
            actions.perform(state, self.sign_in, message, committing=self._settled.clear),
            name="ws-action",
        )
        try:
            await self._send(await asyncio.shield(performed))
        finally:
            self._settled.set()

    async def _resume(self, after: Cursor) -> None:
        """Send what this socket sees after ``after`` up to ``sent``, or ``resync``."""
        async with self._lock:  # the writer waits: live events follow the replay
            events = await self._replay(after) if after <= self.sent else None
            if events is None:
                await self.websocket.send_text(RESYNC)
                return
            for event in events:
                await self.websocket.send_text(self.hub.wire(event))

    async def _replay(self, after: Cursor) -> list[LoggedEvent] | None:
        """The events this socket sees in (after, sent], in log order; None when there are
        more than its queue holds or the log is too long to filter."""
        found: list[LoggedEvent] = []
        scanned = 0
        while after < self.sent:
            page = await self._page(after)
            scanned += len(page)
            if not page or scanned > REPLAY_SCAN_MAX:
                return None
            found.extend(e for e in page if e.cursor <= self.sent and self.sub.follows(e))
            if len(found) > self.replay_max:
                return None
            after = page[-1].cursor
        return found

    async def _page(self, after: Cursor) -> Sequence[LoggedEvent]:
        page: Sequence[LoggedEvent] | None = self.hub.since(after, REPLAY_PAGE)
        if page is None:  # older than the hub remembers
            async with self.engine.connect() as conn:
                page = await read_after(conn, after, limit=REPLAY_PAGE)
        return page

    async def _goodbye(self) -> None:
        """Tell a client that fell behind to resync and close; give up on one that reads
        nothing at all (its frames could only wait behind the ones it does not read)."""
        with contextlib.suppress(TimeoutError, WebSocketDisconnect):
            async with asyncio.timeout(GOODBYE_TIMEOUT_S):
                await self.websocket.send_text(RESYNC)
                await self.websocket.close(TRY_AGAIN_LATER, "too slow: resync from a snapshot")


# --- routes --------------------------------------------------------------------------------


@router.websocket("/ws/agent")
async def agent_console(websocket: WebSocket) -> None:
    """An agent's console: the signed-in user and their pending offers, then their events."""
    await _serve(websocket, wallboard=False)


@router.websocket("/ws/wallboard")
async def wallboard(websocket: WebSocket) -> None:
    """The wallboard (supervisors, admins): queues and agent counts, then every event."""
    await _serve(websocket, wallboard=True)


async def _serve(websocket: WebSocket, *, wallboard: bool) -> None:
    await websocket.accept()
    with contextlib.suppress(WebSocketDisconnect):
        claims = await authenticate(websocket, wallboard=wallboard)
        if claims is None:
            return
        watch = revocation_watch(websocket.app.state)
        with watch.open(claims, wallboard=wallboard) as sign_in:  # before its row is read
            principal = await admit(websocket, sign_in)
            if principal is not None:
                await _stream(websocket, principal, sign_in)


async def _stream(websocket: WebSocket, principal: Principal, sign_in: SignIn) -> None:
    if sign_in.wallboard:
        asked = figures_feed.ask(websocket.query_params.get("figures"), principal)
        await _follow(websocket, None, sign_in, figures=asked)
        return
    async with _console(websocket, principal.id):
        await _follow(websocket, principal.id, sign_in)


async def close_revoked(websocket: WebSocket, sign_in: SignIn) -> None:
    """Close with 4401 and the reason the sign-in was revoked."""
    with contextlib.suppress(TimeoutError, WebSocketDisconnect):
        async with asyncio.timeout(GOODBYE_TIMEOUT_S):
            await websocket.close(UNAUTHORIZED, close_reason(sign_in.reason))


@contextlib.asynccontextmanager
async def _console(websocket: WebSocket, agent_id: int) -> AsyncIterator[None]:
    """The agent's console is open on this instance while the block runs."""
    sessionmaker = websocket.app.state.sessionmaker
    async with unit_of_work(sessionmaker) as session:
        connection = await consoles.open_console(session, agent_id)
    try:
        yield
    finally:
        try:
            async with unit_of_work(sessionmaker) as session:
                await consoles.close_console(session, connection, agent_id)
        except Exception:
            # Its lease is no longer moved forward: another heartbeat closes it soon.
            log.warning("console %s of agent %s left open", connection, agent_id, exc_info=True)


async def _follow(
    websocket: WebSocket,
    agent_id: int | None,
    sign_in: SignIn,
    *,
    figures: figures_feed.Ask | None = None,
) -> None:
    """Subscribe, send the snapshot, then stream until the socket ends (a wallboard's live
    figures beside the stream, when it asked for them)."""
    state = websocket.app.state
    hub: EventHub = state.hub
    sub = hub.subscribe(state.settings.ws_client_queue_size, agent_id=agent_id)
    start = hub.cursor  # read with no await since subscribing: every later event is queued
    try:
        snapshot = await read_snapshot(state.engine, agent_id)
        if snapshot is None:
            await websocket.close(UNAUTHORIZED, "this account no longer exists")
            return
        if sign_in.revoked.is_set():
            await close_revoked(websocket, sign_in)
            return
        data = snapshot.model_dump(mode="json")
        await websocket.send_text(
            json.dumps({"type": "snapshot", "cursor": str(start), "data": data})
        )
        stream = Stream(websocket, hub, state.engine, sub, start, sign_in)
        if figures is None:
            await stream.serve()
        else:
            await figures_feed.alongside(stream.serve, stream._send, state, figures)
    finally:
        sub.close()
