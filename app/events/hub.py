"""The event hub: follows the log and fans events out inside one instance.

Theory of operation: the hub keeps a cursor into the event log and reads forward in log
order. It is woken three ways: locally, right after a transaction of this instance commits
(``poke``); by ``NOTIFY hotline_events`` from another instance, received on the one LISTEN
connection this instance holds; and by a short poll that covers lost notifications and a
dropped LISTEN connection. NOTIFY is only ever sent after a commit, outside the writing
transaction, and coalesced so that a burst of commits costs one notification.

Every event read is passed to internal listeners (the dispatcher's wake-up, for instance)
and to subscribers, each with a bounded queue: a subscriber that falls behind is marked
overflowed and dropped, so one slow websocket never slows the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import plain_url
from app.events.log import Cursor, LoggedEvent, head, read_after
from app.waiting import wait_for_wake

log = logging.getLogger(__name__)

CHANNEL = "hotline_events"
Listener = Callable[[Sequence[LoggedEvent]], Awaitable[None] | None]


class Subscription:
    """A bounded queue of events for one consumer."""

    def __init__(self, hub: EventHub, maxsize: int) -> None:
        self._hub = hub
        self.queue: asyncio.Queue[LoggedEvent] = asyncio.Queue(maxsize=maxsize)
        self.overflowed = asyncio.Event()

    def offer(self, event: LoggedEvent) -> None:
        if self.overflowed.is_set():
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed.set()

    def close(self) -> None:
        self._hub.unsubscribe(self)


class EventHub:
    """Follows the event log for one instance."""

    def __init__(self, engine: AsyncEngine, database_url: str, *, poll_interval_s: float) -> None:
        self._engine = engine
        self._dsn = plain_url(database_url)
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._notify_wanted = asyncio.Event()
        self._subscribers: set[Subscription] = set()
        self._listeners: list[Listener] = []
        self._listen_conn: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self.cursor = Cursor(0, 0)
        self.started = False

    async def start(self) -> None:
        """Start at the head of the log and follow it."""
        async with self._engine.connect() as conn:
            self.cursor = await head(conn)
        await self._connect_listener()
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
        conn, self._listen_conn = self._listen_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)
        self.started = False

    def poke(self) -> None:
        """A local commit wrote events: read now, and tell the other instances."""
        self._wake.set()
        self._notify_wanted.set()

    def subscribe(self, maxsize: int) -> Subscription:
        sub = Subscription(self, maxsize)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every batch of new events, in log order."""
        self._listeners.append(listener)

    async def _connect_listener(self) -> None:
        try:
            conn = await asyncpg.connect(self._dsn)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("event hub cannot LISTEN (%s); polling only", exc)
            self._listen_conn = None
            return
        self._listen_conn = conn  # owned from here on: stop() closes it whatever happens
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("event hub cannot LISTEN (%s); polling only", exc)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _notifier(self) -> None:
        while True:
            await self._notify_wanted.wait()
            self._notify_wanted.clear()
            try:
                async with self._engine.connect() as conn:
                    await conn.exec_driver_sql(f"SELECT pg_notify('{CHANNEL}', '')")
                    await conn.commit()
            except Exception:
                log.exception("NOTIFY failed; other instances will see events on their poll")

    async def _follow(self) -> None:
        recheck = 0.0  # > 0: a wake-up found nothing yet; look again soon
        while True:
            woken = await wait_for_wake(self._wake, recheck or self._poll_interval_s)
            self._wake.clear()
            try:
                found = await self._drain()
                await self._keep_listening()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event hub read failed; retrying")
                found = 0
            recheck = _next_recheck(recheck, woken=woken, found=found)

    async def _drain(self) -> int:
        """Read and dispatch everything readable; returns how many events."""
        total = 0
        while True:
            async with self._engine.connect() as conn:
                batch = await read_after(conn, self.cursor)
            if not batch:
                return total
            total += len(batch)
            self.cursor = batch[-1].cursor
            await self._dispatch(batch)

    async def _keep_listening(self) -> None:
        if self._listen_conn is None or self._listen_conn.is_closed():
            await self._connect_listener()

    async def _dispatch(self, batch: Sequence[LoggedEvent]) -> None:
        for event in batch:
            for sub in list(self._subscribers):
                sub.offer(event)
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
