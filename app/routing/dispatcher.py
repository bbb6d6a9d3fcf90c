"""The dispatcher: one decider per deployment matches waiting contacts with free agents.

Theory of operation: every instance runs a ``Dispatcher``, but only the one holding a
session-level advisory lock (on a connection of its own) decides; when it dies its connection
closes, the lock is released and another instance takes over within ``leader_retry_s``. The
leader is woken after commits that change demand or supply (a contact queued or requeued,
an agent freed or made available): on this instance directly at commit; on other instances
by their hub's NOTIFY, and through the event log; and by a short tick. It also sleeps no
longer than the next routing-step expiry or agent delay it knows of. Its rounds
(``rounds.Rounds``) run on the connection that holds the lock.

The direct wake-ups are not an optimisation: the event log is readable only as far as the
oldest transaction still open on the server, in any database (transaction ids are
cluster-wide), so a wake-up that waited for the log would wait for every long transaction
on the server. A round reads the rows themselves, which the log's reader does not gate.

A leader can also hang without its connection closing: its process stops (or its network
stops carrying data) while the operating systems still keep the TCP connection, so the
server keeps its session, and the lock, for hours. Three things bound that:

- the leader runs a statement at least every ``leader_stale_s / 4``: its rounds, or, while
  it sleeps, a ping;
- a standby that cannot take the lock looks at the holder's session: one that has been
  idle (or blocked sending to its client) for ``leader_stale_s`` is a hung leader, and the
  standby ends it (``pg_terminate_backend``), which releases the lock, and takes the lock;
- every statement of a dispatcher times out after ``leader_stale_s``: a hung leader that
  comes back finds its statement failed, drops its connection and stands by.

Ending the holder's session is safe whatever the leader was doing: its rounds write on that
session, so once it is gone no write of the old leader can land. A legitimately slow round
is not taken for a hung one: a statement still running is never ended, and between its
statements a round spends only its decision and building the board in Python, tens of
milliseconds for the largest centre (the board is built in slices that yield to the event
loop), far below ``leader_stale_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg

from app.agents import presence
from app.agents.events import AgentEventType
from app.config import Settings
from app.db import connect_driver, database_unavailable
from app.events.log import LoggedEvent
from app.routing.events import (
    AgentWorkEventType,
    ContactEventType,
    OfferEventType,
    QueueEventType,
    StateChanged,
)
from app.routing.rounds import Made, Round, Rounds
from app.timers.service import WAKE_HORIZON
from app.waiting import wait_for_wake

log = logging.getLogger(__name__)

LEADER_LOCK = 0x484C4449  # "HLDI": the dispatcher's advisory lock key
# Ends the session holding the leader lock in this database if it has said nothing for $2
# seconds: idle (between statements, or inside a transaction) or blocked sending to a client
# that no longer reads, since its last change of state. A running statement is left alone.
# Waits up to a second for the session to end, so the lock is free when it returns true.
_END_HUNG_LEADER = """
    SELECT pg_terminate_backend(a.pid, 1000)
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND ((l.classid::bigint << 32) | l.objid::bigint) = $1
      AND a.pid <> pg_backend_pid()
      AND (a.state <> 'active' OR a.wait_event_type = 'Client')
      AND a.state_change < clock_timestamp() - make_interval(secs => $2)
"""
# What changes demand or supply. A contact's ending frees its agent's capacity even when the
# agent's state stays busy (other chats), so the endings wake the dispatcher too: another
# process's commits reach it only through these events. An agent's status change or update
# wakes it both ways: one made available may take a contact, and one who goes away or
# offline, or is deactivated, no longer holds the contacts waiting for them as their
# relationship manager or last agent (``scoring``), which others may then take at once. A
# state change wakes it only when the agent became idle (see ``wakes``): the offers it
# makes itself change states too.
WAKE_EVENTS: frozenset[str] = frozenset(
    {
        *(t for t in ContactEventType if t is not ContactEventType.CONNECTED),
        OfferEventType.REJECTED,
        OfferEventType.EXPIRED,
        OfferEventType.RESCINDED,
        AgentEventType.CREATED,
        AgentEventType.STATUS_CHANGED,
        AgentEventType.UPDATED,
        QueueEventType.UPDATED,
    }
)


def wakes(event: LoggedEvent) -> bool:
    """Whether this event may let a waiting contact be offered now."""
    return wakes_on(event.type, event.data)


def wakes_on(type_: str, data: Mapping[str, Any]) -> bool:
    """``wakes`` for an event of this type and data, as it is recorded."""
    if type_ == AgentWorkEventType.STATE_CHANGED:
        return cast(StateChanged, data).get("state") == presence.State.IDLE.value
    return type_ in WAKE_EVENTS


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

    @property
    def backend_pid(self) -> int | None:
        """The server process of this dispatcher's session, if it has one."""
        return None if self._conn is None else int(self._conn.get_server_pid())

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

    def nudge(self) -> None:
        """Another instance committed something: a leader runs a round now; a standby keeps
        to its retry interval (the lock is not freed by others' commits)."""
        if self._rounds is not None:
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
        if await self._take_lock():
            self._rounds = Rounds(self._conn, self._settings, on_commit=self._committed)
            log.info("this instance now runs the dispatcher")
        return self._rounds is not None

    async def _take_lock(self) -> bool:
        """The lock, if it is free or its holder is a hung leader."""
        if await self._try_lock():
            return True
        return await self._end_hung_leader() and await self._try_lock()

    async def _try_lock(self) -> bool:
        return bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK))

    async def _end_hung_leader(self) -> bool:
        """End the lock holder's session if it has been silent for ``leader_stale_s``."""
        ended = await self._conn.fetchval(
            _END_HUNG_LEADER, LEADER_LOCK, self._settings.leader_stale_s
        )
        if ended:
            log.warning("the dispatcher leader's session was silent; ended it to take over")
        return bool(ended)

    async def _connect(self) -> Any:
        try:
            return await connect_driver(
                self._url,
                idle_tx_timeout_ms=self._settings.idle_in_transaction_timeout_ms,
                timeout_s=self._settings.leader_stale_s,
            )
        except (OSError, asyncpg.PostgresError):
            log.warning("dispatcher cannot reach the database; retrying")
            return None

    async def _resign(self) -> None:
        conn, self._conn, self._rounds = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)

    def _drop(self) -> None:
        """Give up a connection that is lost or hung: closing it politely could wait on it."""
        conn, self._conn, self._rounds = self._conn, None, None
        if conn is not None:
            conn.terminate()

    def _failed(self, error: Exception) -> None:
        if database_unavailable(error):
            was_leading = self._rounds is not None
            self._drop()
            log.warning(
                "dispatcher lost its database connection (%s)%s",
                type(error).__name__,
                "; standing by" if was_leading else "",
            )
            return
        log.exception("dispatch round failed; retrying")
        if self._rounds is not None:
            self._rounds.board.clear()  # read everything again: trust nothing

    async def _run(self) -> None:
        while True:
            try:
                delay = self._settings.leader_retry_s
                if await self._try_lead():
                    delay = await self._lead_once()
                await self._rest(delay)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._failed(error)
                await wait_for_wake(self._wake, self._settings.leader_retry_s)
            self._wake.clear()

    async def _rest(self, delay: float) -> None:
        """Sleep ``delay`` seconds or until woken; a leader pings its session meanwhile, so
        that standbys never take a leader that is merely idle for a hung one."""
        loop = asyncio.get_running_loop()
        until = loop.time() + delay
        while (left := until - loop.time()) > 0:
            beat = self._settings.leader_stale_s / 4 if self._rounds is not None else left
            if await wait_for_wake(self._wake, min(left, beat)):
                return
            if self._rounds is not None and until > loop.time():
                await self._conn.execute("SELECT 1")

    async def _lead_once(self) -> float:
        """One round; returns how long to sleep before the next one (0: go again now)."""
        assert self._rounds is not None
        self._wake.clear()
        result = await self._rounds.round()
        self.rounds += 1
        self.skipped += result.skipped
        sleep, self._retry = sleep_after(result, self._settings.dispatch_tick_s, self._retry)
        return sleep
