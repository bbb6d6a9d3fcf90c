"""The dispatcher: one decider per deployment matches waiting contacts with free agents.

Theory of operation: every instance runs a ``Dispatcher``, but only the one holding a
session-level advisory lock (on a connection of its own) decides; when it dies its connection
closes, the lock is released and another instance takes over within ``leader_retry_s``. The
leader is woken after commits that change demand or supply (a contact queued or requeued,
an agent freed or made available) on this instance directly, on other instances through the
event log, and by a short tick; it also sleeps no longer than the next routing-step expiry or
agent delay it knows of. Its rounds (``rounds.Rounds``) run on the connection that holds the
lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from app.agents import presence
from app.config import Settings
from app.db import connect_driver
from app.events.log import LoggedEvent
from app.routing.rounds import Made, Round, Rounds
from app.timers.service import WAKE_HORIZON
from app.waiting import wait_for_wake

log = logging.getLogger(__name__)

LEADER_LOCK = 0x484C4449  # "HLDI": the dispatcher's advisory lock key
# What changes demand or supply. A contact's ending frees its agent's capacity even when the
# agent's state stays busy (other chats), so the endings wake the dispatcher too: another
# process's commits reach it only through these events. A state change wakes it only when
# the agent became idle (see ``wakes``): the offers it makes itself change states too.
WAKE_EVENTS = frozenset(
    {
        "contact.queued",
        "contact.requeued",
        "contact.wrap_up",
        "contact.completed",
        "contact.abandoned",
        "contact.transferred",
        "contact.timed_out",
        "contact.canceled",
        "offer.rejected",
        "offer.expired",
        "offer.rescinded",
        "agent.created",
        "agent.status_changed",
        "agent.updated",
        "queue.updated",
    }
)


def wakes(event: LoggedEvent) -> bool:
    """Whether this event may let a waiting contact be offered now."""
    if event.type == "agent.state_changed":
        return event.data.get("state") == presence.State.IDLE.value
    return event.type in WAKE_EVENTS


# A round that had to leave pairs because a request held their rows tries again this soon,
# then twice as late each time it must leave them again, up to the tick: the request may
# end without an event that wakes the dispatcher (an answered offer writes none).
SKIPPED_RETRY_S = 0.02


def sleep_after(result: Round, tick: float, retried: float) -> tuple[float, float]:
    """How long to sleep after a round (0: go again now), and the retry delay now in force
    (``retried``: the one in force before)."""
    if result.offers:
        return 0.0, 0.0
    retry = min(retried * 2 or SKIPPED_RETRY_S, tick) if result.skipped else 0.0
    sleep = tick
    if result.next_wake_at is not None:
        sleep = min(max((result.next_wake_at - result.now).total_seconds(), 0.001), tick)
    return (min(sleep, retry) if retry else sleep), retry


class Dispatcher:
    """Runs rounds while this instance holds the dispatcher lock."""

    def __init__(
        self,
        database_url: str,
        settings: Settings,
        *,
        wake_events: Callable[[], None] | None = None,
        wake_timers: Callable[[], None] | None = None,
    ) -> None:
        self._url = database_url
        self._settings = settings
        self._wake_events = wake_events
        self._wake_timers = wake_timers
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None  # holds the lock, and runs the rounds
        self._rounds: Rounds | None = None
        self._retry = 0.0
        self.rounds = 0
        self.skipped = 0

    @property
    def is_leader(self) -> bool:
        return self._rounds is not None and self._conn is not None and not self._conn.is_closed()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._resign()

    def poke(self) -> None:
        self._wake.set()

    def on_events(self, batch: Sequence[LoggedEvent]) -> None:
        """Hub listener: note what changed, and wake on events that change demand or
        supply."""
        if self._rounds is not None:
            self._rounds.on_events(batch)
        if any(wakes(event) for event in batch):
            self._wake.set()

    def _committed(self, made: Sequence[Made]) -> None:
        if self._wake_events is not None:
            self._wake_events()
        soon = datetime.now(UTC) + WAKE_HORIZON
        if self._wake_timers is not None and any(m.expires_at <= soon for m in made):
            self._wake_timers()

    async def _try_lead(self) -> bool:
        """Hold the dispatcher lock, on one dedicated connection kept between attempts."""
        if self._conn is not None and self._conn.is_closed():
            self._conn, self._rounds = None, None
        if self._rounds is not None:
            return True
        if self._conn is None:
            self._conn = await self._connect()
            if self._conn is None:
                return False
        if await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK):
            self._rounds = Rounds(self._conn, self._settings, on_commit=self._committed)
            log.info("this instance now runs the dispatcher")
        return self._rounds is not None

    async def _connect(self) -> Any:
        try:
            return await connect_driver(
                self._url, idle_tx_timeout_ms=self._settings.idle_in_transaction_timeout_ms
            )
        except (OSError, asyncpg.PostgresError):
            log.warning("dispatcher cannot reach the database; retrying")
            return None

    async def _resign(self) -> None:
        conn, self._conn, self._rounds = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)

    async def _run(self) -> None:
        while True:
            delay = self._settings.leader_retry_s
            try:
                if await self._try_lead():
                    delay = await self._lead_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch round failed; retrying")
                if self._rounds is not None:
                    self._rounds.board.clear()  # read everything again: trust nothing
            if delay > 0:
                await wait_for_wake(self._wake, delay)
            self._wake.clear()

    async def _lead_once(self) -> float:
        """One round; returns how long to sleep before the next one (0: go again now)."""
        assert self._rounds is not None
        self._wake.clear()
        result = await self._rounds.round()
        self.rounds += 1
        self.skipped += result.skipped
        sleep, self._retry = sleep_after(result, self._settings.dispatch_tick_s, self._retry)
        return sleep
