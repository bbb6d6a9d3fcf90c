"""The event hub: follows the log and fans events out inside one instance.

Theory of operation: the hub keeps a cursor into the event log and reads forward in log
order. It is woken three ways: locally, right after a transaction of this instance commits
(``poke``); by ``NOTIFY hotline_events`` from another instance, received on the one LISTEN
connection this instance holds; and by a short poll that covers lost notifications and a
dropped LISTEN connection. NOTIFY is only ever sent after a commit, outside the writing
transaction, and coalesced so that a burst of commits costs one notification.

Every event read is passed to internal listeners (the dispatcher's wake-up, for instance)
and to subscribers, each with a bounded queue: a subscriber that falls behind is marked
overflowed and dropped, so one slow websocket never slows the others. A subscriber follows
either every event (a wallboard) or the events that concern one agent (a console); the
subscriptions are indexed by agent, so handing out an event costs the subscribers it concerns
and not every console open. The hub also keeps the most recent events in memory (``since``),
so readers that follow the log closely (long polls, websocket resumes) are answered without
reading it again, and encodes each event's websocket message once however many sockets send
it (``wire``).

The hub reads, listens and notifies on one connection of its own, outside the request pool
and outside any transaction: a read is one statement, whose own snapshot decides what is
readable. A notification the hub sent itself is ignored (it has just read).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import OutageLog, connect_driver
from app.events.log import READ_SQL, Cursor, LoggedEvent, head
from app.realtime.lean import Flag, Mailbox
from app.waiting import wait_for_wake

log = logging.getLogger(__name__)

CHANNEL = "hotline_events"
# The application name of every hub's connection: a hub notifies only while it sees another.
HUB_APPLICATION = "hotline-hub"
PEERS_CHECK_S = 1.0
_PEERS = """
    SELECT EXISTS (
        SELECT FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = $1
          AND pid <> pg_backend_pid()
    )
"""
RECENT_MAX = 20_000  # events kept in memory for ``since``; the older half goes when full
READ_LIMIT = 500
Listener = Callable[[Sequence[LoggedEvent]], Awaitable[None] | None]


# The keys of an event's data that name the agents it concerns: the one it is for, and the
# one it takes something away from (a complaint reassigned from them).
NAMING_KEYS: Final = ("agent_id", "previous_agent_id")


def concerned_agents(event: LoggedEvent) -> tuple[str, ...]:
    """The agents (ids as text) an event concerns: the agent it is about, and the agents its
    data names (``NAMING_KEYS``); the rule ``GET /api/v1/events`` applies to agents."""
    about = [event.subject_id] if event.subject_type == "agent" else []
    named = [str(event.data[key]) for key in NAMING_KEYS if event.data.get(key) is not None]
    return tuple(dict.fromkeys([*about, *named]))


def event_text(event: LoggedEvent) -> str:
    """An event's websocket message, as JSON text."""
    message = {"type": "event", "cursor": str(event.cursor), "event": event.as_message()}
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


class Subscription:
    """A bounded queue of events for one consumer: every event, or one agent's."""

    def __init__(self, hub: EventHub, maxsize: int, agent_id: int | None = None) -> None:
        self._hub = hub
        self.agent_key = None if agent_id is None else str(agent_id)
        self.queue: Mailbox[LoggedEvent] = Mailbox(maxsize)
        self.overflowed = Flag()
        # Called once, when the queue overflows (a socket's stream ends on it).
        self.on_overflow: Callable[[], None] | None = None

    def follows(self, event: LoggedEvent) -> bool:
        """Whether this subscription receives ``event``."""
        return self.agent_key is None or self.agent_key in concerned_agents(event)

    def offer(self, event: LoggedEvent) -> bool:
        """Queue ``event``; False once the queue has overflowed (nothing is queued after)."""
        if self.overflowed.is_set():
            return False
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed.set()
            if self.on_overflow is not None:
                self.on_overflow()
            return False
        return True

    def close(self) -> None:
        self._hub.unsubscribe(self)


class Fanout:
    """Subscriptions indexed by what they follow: every event, or one agent's events."""

    def __init__(self) -> None:
        self._everything: set[Subscription] = set()
        self._by_agent: dict[str, set[Subscription]] = {}

    def __len__(self) -> int:
        return len(self._everything) + sum(len(subs) for subs in self._by_agent.values())

    def add(self, sub: Subscription) -> None:
        if sub.agent_key is None:
            self._everything.add(sub)
        else:
            self._by_agent.setdefault(sub.agent_key, set()).add(sub)

    def remove(self, sub: Subscription) -> None:
        if sub.agent_key is None:
            self._everything.discard(sub)
            return
        subs = self._by_agent.get(sub.agent_key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_agent[sub.agent_key]

    def deliver(self, events: Iterable[LoggedEvent]) -> None:
        """Offer each event to the subscriptions it concerns; drop those that overflow."""
        dropped: list[Subscription] = []
        for event in events:
            for subs in self._concerned(event):
                for sub in subs:
                    if not sub.offer(event):
                        dropped.append(sub)  # removed after the loop, not while iterating
        for sub in dropped:
            self.remove(sub)

    def _concerned(self, event: LoggedEvent) -> list[set[Subscription]]:
        found = [self._everything]
        for key in concerned_agents(event):
            subs = self._by_agent.get(key)
            if subs is not None:
                found.append(subs)
        return found


class EventHub:
    """Follows the event log for one instance."""

    def __init__(
        self,
        engine: AsyncEngine,
        database_url: str,
        *,
        poll_interval_s: float,
        read_gap_s: float = 0.0,
    ) -> None:
        self._engine = engine
        self._url = database_url
        self._poll_interval_s = poll_interval_s
        self._read_gap_s = read_gap_s
        self._last_read = -read_gap_s
        self._wake = asyncio.Event()
        self._notify_wanted = asyncio.Event()
        self.peers = False  # another instance's hub was connected when last looked
        self.notified = 0  # NOTIFYs sent
        self.unheard = 0  # NOTIFYs not sent: nobody else was listening
        self._fanout = Fanout()
        self._watchers: set[asyncio.Event] = set()
        self._listeners: list[Listener] = []
        self._peer_listeners: list[Callable[[], None]] = []
        self._conn: Any = None  # reads, LISTEN and NOTIFY
        self._outage = OutageLog(log, "live events")
        self._conn_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.cursor = Cursor(0, 0)
        self._recent: list[LoggedEvent] = []
        self._recent_from = self.cursor  # every event after this one is in _recent
        self._wire: dict[Cursor, str] = {}  # event_text of remembered events, once asked for
        self.started = False

    async def start(self) -> None:
        """Start at the head of the log and follow it."""
        async with self._engine.connect() as conn:
            self.cursor = await head(conn)
        self._recent, self._recent_from, self._wire = [], self.cursor, {}
        await self._connect()
        self._tasks = [
            asyncio.create_task(self._follow(), name="hub-follow"),
            asyncio.create_task(self._notifier(), name="hub-notify"),
        ]
        self.started = True

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._close()
        self.started = False

    def poke(self) -> None:
        """A local commit wrote events: read now, and tell the other instances."""
        self._wake.set()
        self._notify_wanted.set()

    def subscribe(self, maxsize: int, *, agent_id: int | None = None) -> Subscription:
        """Queue every event read from now on (only those concerning ``agent_id`` if given).

        Nothing is read between this call and the next ``await``: ``cursor`` read right after
        is the position the subscription starts from.
        """
        sub = Subscription(self, maxsize, agent_id)
        self._fanout.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._fanout.remove(sub)

    @property
    def subscription_count(self) -> int:
        return len(self._fanout)

    def watch(self) -> asyncio.Event:
        """An event the hub sets whenever it has read more of the log (clear it, then look)."""
        watcher = asyncio.Event()
        self._watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: asyncio.Event) -> None:
        self._watchers.discard(watcher)

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every batch of new events, in log order."""
        self._listeners.append(listener)

    def add_peer_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` as soon as another instance's NOTIFY says it committed events,
        before those events are readable: reading them waits for every transaction still
        open on the server, and what reads the rows themselves need not."""
        self._peer_listeners.append(listener)

    def since(self, cursor: Cursor, limit: int) -> list[LoggedEvent] | None:
        """Up to ``limit`` events after ``cursor`` from memory, in log order; None when memory
        does not reach back to ``cursor`` (read the log instead). Empty: nothing read yet."""
        if cursor < self._recent_from:
            return None
        start = bisect.bisect_right(self._recent, cursor, key=lambda e: e.cursor)
        return self._recent[start : start + limit]

    def wire(self, event: LoggedEvent) -> str:
        """``event_text(event)``, encoded once for all sockets while the hub remembers it."""
        text = self._wire.get(event.cursor)
        if text is None:
            text = event_text(event)
            if event.cursor > self._recent_from:  # forgotten with the event (``_remember``)
                self._wire[event.cursor] = text
        return text

    def _remember(self, batch: Sequence[LoggedEvent]) -> None:
        self._recent.extend(batch)
        if len(self._recent) > RECENT_MAX:
            keep = RECENT_MAX // 2
            self._recent_from = self._recent[-keep - 1].cursor
            del self._recent[:-keep]
            self._wire = {c: t for c, t in self._wire.items() if c > self._recent_from}

    async def _connect(self) -> None:
        try:
            conn = await connect_driver(self._url, application_name=HUB_APPLICATION)
        except (OSError, asyncpg.PostgresError) as exc:
            self._outage.failed(exc, "event hub cannot connect; retrying")
            self._conn = None
            return
        self._conn = conn  # owned from here on: stop() closes it whatever happens
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("event hub cannot LISTEN (%s); retrying", exc)
            await self._close()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if pid != conn.get_server_pid():
            self._wake.set()
            self.peers = True  # another hub is there: notify it from now on, unasked
            for heard in self._peer_listeners:
                try:
                    heard()
                except Exception:
                    log.exception("peer commit listener failed")

    async def _notifier(self) -> None:
        """NOTIFY after local commits, while another instance's hub is there to hear it.

        Each NOTIFY is a transaction of its own that the server flushes to disk at commit; a
        lone instance (the usual deployment) would pay for it on every commit for nobody.
        Whether another hub is connected is checked at most every ``PEERS_CHECK_S``; a
        NOTIFY heard from another hub says so at once. A hub that starts meanwhile and has
        not notified yet sees the first events late by at most its poll interval.
        """
        loop = asyncio.get_running_loop()
        checked = -float("inf")
        while True:
            await self._notify_wanted.wait()
            self._notify_wanted.clear()
            try:
                async with self._conn_lock:
                    if self._conn is None:
                        continue
                    if loop.time() - checked >= PEERS_CHECK_S:
                        self.peers = bool(await self._conn.fetchval(_PEERS, HUB_APPLICATION))
                        checked = loop.time()
                    if self.peers:
                        await self._conn.execute(f"NOTIFY {CHANNEL}")
                        self.notified += 1
                    else:
                        self.unheard += 1
            except Exception:
                log.exception("NOTIFY failed; other instances will see events on their poll")

    async def _follow(self) -> None:
        recheck = 0.0  # > 0: a wake-up found nothing yet; look again soon
        loop = asyncio.get_running_loop()
        while True:
            woken = await wait_for_wake(self._wake, recheck or self._poll_interval_s)
            # A busy centre commits events every millisecond or two: reading at most once
            # per ``read_gap_s`` lets one read carry several of them, for a few milliseconds
            # of delay at most (and none when the log was quiet).
            wait = self._last_read + self._read_gap_s - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._wake.clear()
            self._last_read = loop.time()
            try:
                await self._keep_connected()
                found = await self._drain()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._outage.failed(exc, "event hub read failed; retrying")
                await self._close()
                found = 0
            else:
                if self._conn is not None:
                    self._outage.ok()
            recheck = _next_recheck(recheck, woken=woken, found=found)

    async def _drain(self) -> int:
        """Read and dispatch everything readable; returns how many events."""
        total = 0
        while self._conn is not None:
            async with self._conn_lock:
                rows = await self._conn.fetch(READ_SQL, self.cursor.tx, self.cursor.id, READ_LIMIT)
            batch = [
                LoggedEvent(
                    id=row["id"],
                    cursor=Cursor(row["tx"], row["id"]),
                    type=row["type"],
                    subject_type=row["subject_type"],
                    subject_id=row["subject_id"],
                    data=row["data"],
                    actor=row["actor"],
                    at=row["at"],
                )
                for row in rows
            ]
            if batch:
                total += len(batch)
                self.cursor = batch[-1].cursor
                self._remember(batch)
                await self._dispatch(batch)
            if len(batch) < READ_LIMIT:
                return total  # all that was readable; a later commit wakes us again
        return total

    async def _keep_connected(self) -> None:
        if self._conn is None or self._conn.is_closed():
            await self._close()
            await self._connect()

    async def _dispatch(self, batch: Sequence[LoggedEvent]) -> None:
        for watcher in self._watchers:
            watcher.set()
        self._fanout.deliver(batch)
        for listener in self._listeners:
            try:
                result = listener(batch)
                if result is not None:
                    await result
            except Exception:
                log.exception("event listener failed")


RECHECK_FIRST_S, RECHECK_LAST_S = 0.01, 1.0


def _next_recheck(current: float, *, woken: bool, found: int) -> float:
    """After a wake-up that read nothing, look again soon, backing off.

    A commit's events can be held back by any transaction still open on the server
    (transaction ids are cluster-wide): the notification arrives before the events are
    readable. Re-checking at 10 ms, 20 ms, ... up to a second delivers them without waiting
    for the poll.
    """
    if found:
        return 0.0
    if woken and not current:
        return RECHECK_FIRST_S
    if current and current * 2 <= RECHECK_LAST_S:
        return current * 2
    return 0.0
