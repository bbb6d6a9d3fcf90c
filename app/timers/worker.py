"""The timer worker that runs in every instance.

Theory of operation: the worker claims each due timer with ``FOR UPDATE SKIP LOCKED`` (so
two instances never run the same timer) and fires it in a savepoint of the claiming
transaction, one timer to a transaction: the savepoint first deletes the row, then runs the
handler. A handler that schedules its own (kind, subject) again therefore inserts a fresh
row that outlives the firing, whatever else it does. A crash before commit releases the row
lock and the timer fires again elsewhere, which is why handlers must be idempotent.

**One timer to a transaction.** The rows a handler locks (an offer, its contact, its agent)
stay locked until its transaction ends. Fired many to one transaction, every timer of the
claim would keep its rows, and its own row, locked until the last handler of the claim had
run: under load that is seconds, during which the requests that need those rows wait, a
handler that finds a row locked (routing's, which never wait) is retried only after the
whole claim, and the lease sweep, which leaves an offer whose timer row is locked to that
timer, cannot step in. So each timer of the single kinds costs a ``BEGIN`` and a
``COMMIT`` of its own, and holds its rows only for its own handler. A handler that raises rolls
its savepoint back, the delete with it, and the row is retried with backoff and, after
``max_attempts``, marked failed (kept for inspection, never claimed again) with a
``timer.failed`` event. Kinds this instance has no handler for are left for instances that do.

**A handler that finds its rows held** by another transaction (a request, another
instance's handler) raises ``TryAgainSoon`` instead of waiting for them: its savepoint is
rolled back, the delete with it, so the timer keeps its row as it was, due when it was, with
no attempt counted, and this worker leaves it for ``retry_held_s`` (50 ms) before it claims
it again (another instance may sooner). Rescheduled for later instead, it would go behind
every timer already due: under a backlog, one unlucky retry would wait out the whole backlog
(a ring timeout seconds late); kept at its due time it is claimed first again once its rest
is over.

**Kinds fired in batches** (``register_batch``): where many timers of one kind fall due
together (every complaint clock warning at the same moment), firing them one at a time
costs a round trip per statement per timer. Such a kind is claimed apart, after the single
kinds, the batched kinds together in one transaction: up to its ``size`` due timers
(``SKIP LOCKED`` as above), all deleted in one statement and handed to its batch handler at once (as
``DueTimer`` values, not ORM objects), in one savepoint, which does set-wise what the kind's
single handler does one by one. If the batch handler raises, its savepoint is rolled back
and the same timers are fired one by one with the single handler, each in its own savepoint
with the usual retries, so one bad timer delays its batch but never blocks it. A kind is
fired one way only: ``register`` after ``register_batch`` (a test's stand-in handler) fires
it singly again.

Sweeps are the backstop for what a single row cannot guarantee: a periodic function, run by
every instance every ``every_s`` in a unit of work of its own, that finds work overdue for
whatever reason (its timer deleted or failed, an instance that died mid-fire) and does it. A
sweep must be safe to run on several instances at once: it locks without waiting and leaves
a locked row to the next sweep.

**Sweeps run apart from the timers and from each other**: each due sweep runs in a task of
its own (a sweep still running when it falls due again is not started twice), so a sweep
that waits on the outside (the IVR's asking after silent calls, the notification outbox's
sending) holds up neither a timer nor another sweep.

**Kinds that call out** (``register(..., calls_out=True)``): a handler that waits on
something outside the database (a telephony provider's API) would hold up, in the worker's
claiming loop, every timer due after it: a slow provider would leave offers ringing past
their timeout and contacts past their max wait. Such kinds are claimed apart, by
``CALLING_OUT_AT_ONCE`` slots that each claim one due timer at a time and fire it in a
transaction of its own (``SKIP LOCKED`` as above, the same savepoint, retries and parking),
so a slow provider holds up one slot and the timer it fires, nothing else.

**Outside the transaction.** Even a transaction of its own holds something back while it
waits: it has a transaction id, and the event feed's readers wait for every transaction
older than what they read (``docs/architecture.md``), so consoles would see nothing new
while a provider answers. A handler of a calling-out kind may therefore do the waiting after
its transaction: it records in the database that the work is in flight (and schedules its
own backstop, a timer for when the work should have ended), hands the work to
``then_outside(session, work)``, and returns. Once the firing has committed, the slot runs
``work(sessionmaker)`` with no transaction open; the work opens its own to record the
outcome, checking that the work it records is still the one in flight. If it fails or the
worker stops, the backstop fires later, as for a crash.

While the database cannot be reached the worker logs one line when it goes away and one when
it comes back, not a traceback per poll; any other error is logged with its traceback.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from sqlalchemy import BigInteger, Select, any_, bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import OutageLog, database_unavailable, db_now, table_of, unit_of_work
from app.events.log import record
from app.timers.models import Timer
from app.waiting import wait_for_wake

log = logging.getLogger(__name__)
T = TypeVar("T")

Handler = Callable[[AsyncSession, Timer, datetime], Awaitable[None]]
Outside = Callable[[async_sessionmaker[AsyncSession]], Awaitable[None]]
"""Work a calling-out handler leaves for after its commit (``then_outside``)."""
_OUTSIDE: Final = "timers.then_outside"
# Timers of the kinds that call out fired at once by one worker (each holds a connection for
# as long as the outside takes to answer).
CALLING_OUT_AT_ONCE: Final = 4
# How long a worker leaves a timer whose handler found its rows held before claiming it again.
RETRY_HELD_S: Final = 0.05
RESTED_S: Final = 0.001  # how soon the loops look again once a rest is over


class TryAgainSoon(Exception):
    """Raised by a handler that finds a row it needs held by another transaction: its work
    is undone, and the timer is fired again shortly, keeping its place (see the module)."""


@dataclass(frozen=True, slots=True)
class DueTimer:
    """A claimed timer as a batch handler gets it (its row already deleted)."""

    id: int
    kind: str
    subject: str
    due_at: datetime
    payload: dict[str, Any]


BatchHandler = Callable[[AsyncSession, Sequence[DueTimer], datetime], Awaitable[None]]
"""Fires several due timers of one kind at once, given in the claim's order."""
Sweep = Callable[[AsyncSession, datetime], Awaitable[int]]
"""A periodic sweep: given a session and the database's ``now``, returns how much it did."""


@dataclass(frozen=True, slots=True)
class SweepSpec:
    name: str
    run: Sweep
    every_s: float


@dataclass(frozen=True, slots=True)
class BatchSpec:
    kind: str
    run: BatchHandler
    size: int


@dataclass(frozen=True, slots=True)
class Claimed:
    """What one pass over the due timers did: timers claimed, and whether a claim was full
    (more may be due at once)."""

    count: int = 0
    full: bool = False

    def __add__(self, other: Claimed) -> Claimed:
        return Claimed(self.count + other.count, self.full or other.full)


class TimerRegistry:
    """Timer kinds and the handlers that run them; periodic sweeps."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._batches: dict[str, BatchSpec] = {}
        self._calling_out: set[str] = set()
        self._sweeps: dict[str, SweepSpec] = {}

    def register(self, kind: str, handler: Handler, *, calls_out: bool = False) -> None:
        """Fire ``kind`` one timer at a time with ``handler`` (also if it was batched);
        ``calls_out``: the handler waits on something outside the database, so each of its
        timers is fired apart, in a transaction of its own."""
        self._handlers[kind] = handler
        self._batches.pop(kind, None)
        if calls_out:
            self._calling_out.add(kind)
        else:
            self._calling_out.discard(kind)

    def register_batch(self, kind: str, batch: BatchHandler, *, single: Handler, size: int) -> None:
        """Fire ``kind`` up to ``size`` timers at a time with ``batch``; ``single`` fires one
        (when a batch fails, and for whoever asks ``get``)."""
        if size <= 0:
            raise ValueError(f"timer kind {kind!r}: size must be positive")
        self._handlers[kind] = single
        self._batches[kind] = BatchSpec(kind, batch, size)
        self._calling_out.discard(kind)

    def unregister(self, kind: str) -> None:
        """Stop firing ``kind`` (its timers stay, due, for whoever registers it again)."""
        self._handlers.pop(kind, None)
        self._batches.pop(kind, None)
        self._calling_out.discard(kind)

    def register_sweep(self, name: str, sweep: Sweep, every_s: float) -> None:
        """Run ``sweep`` every ``every_s`` seconds on every instance (a name registers once)."""
        if every_s <= 0:
            raise ValueError(f"sweep {name!r}: every_s must be positive")
        self._sweeps[name] = SweepSpec(name, sweep, every_s)

    def unregister_sweep(self, name: str) -> None:
        """Stop running the sweep ``name`` (on the next turn; one running now finishes)."""
        self._sweeps.pop(name, None)

    def get(self, kind: str) -> Handler | None:
        return self._handlers.get(kind)

    @property
    def kinds(self) -> list[str]:
        return sorted(self._handlers)

    @property
    def single_kinds(self) -> list[str]:
        """The kinds the claiming loop fires, each timer in a transaction of its own."""
        return sorted(self._handlers.keys() - self._batches.keys() - self._calling_out)

    @property
    def calling_out_kinds(self) -> list[str]:
        """The kinds whose handlers call out: each timer fired in a transaction of its own."""
        return sorted(self._calling_out)

    @property
    def claimed_kinds(self) -> list[str]:
        """The kinds the claiming loop fires: the single kinds and the batched."""
        return sorted(self._handlers.keys() - self._calling_out)

    @property
    def batches(self) -> list[BatchSpec]:
        return [self._batches[kind] for kind in sorted(self._batches)]

    @property
    def sweeps(self) -> list[SweepSpec]:
        return [self._sweeps[name] for name in sorted(self._sweeps)]


def then_outside(session: AsyncSession, work: Outside) -> None:
    """Run ``work`` once this firing has committed, with no transaction open (see the
    module). Only a handler of a calling-out kind may (the others' work stays inside)."""
    if _OUTSIDE not in session.info:
        raise RuntimeError("then_outside is for the handlers of kinds registered calls_out")
    session.info[_OUTSIDE].append(work)


def collect_outside(session: AsyncSession) -> list[Outside]:
    """Let what runs in ``session`` hand work to ``then_outside``: the list the work is
    gathered in, for ``run_outside`` once the session has committed (as the worker fires a
    calling-out timer; also for whoever runs such a handler itself)."""
    outside: list[Outside] = []
    session.info[_OUTSIDE] = outside
    return outside


async def run_outside(
    sessionmaker: async_sessionmaker[AsyncSession], outside: list[Outside], what: str
) -> None:
    """Run the work ``what`` left for after its commit, in turn, with no transaction open.
    Failing work is logged and the rest runs; a lost database is raised."""
    for work in outside:
        try:
            await work(sessionmaker)
        except Exception as exc:
            _stop_if_cancelled(exc)
            if database_unavailable(exc):
                raise
            log.exception("the work %s left for after its commit failed", what)


def _stop_if_cancelled(exc: Exception) -> None:
    """Raise ``CancelledError`` if this task is being cancelled. A cancel that lands in a
    handler or a database call can come out as another error (the driver's, on the
    connection the cancel broke; an HTTP client's): the worker must stop, not count a
    failure and go on."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


def _due(stmt: Select[T], kinds: list[str], now: datetime, resting: list[int]) -> Select[T]:
    """``stmt`` over the timers of ``kinds`` due by ``now`` (not failed, not ``resting``),
    earliest first."""
    stmt = stmt.where(Timer.due_at <= now, Timer.kind.in_(kinds), Timer.failed_at.is_(None))
    if resting:
        stmt = stmt.where(Timer.id.not_in(resting))
    return stmt.order_by(Timer.due_at, Timer.id)


class TimerWorker:
    """Claims and fires due timers, and runs the sweeps, until stopped."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        registry: TimerRegistry,
        *,
        poll_interval_s: float,
        batch_size: int,
        max_attempts: int,
        retry_held_s: float = RETRY_HELD_S,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._registry = registry
        self._poll_interval_s = poll_interval_s
        self._batch_size = batch_size
        self._max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._sweep_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._sweep_at: dict[str, float] = {}  # loop time each sweep runs next
        self._sweeping: dict[str, asyncio.Task[None]] = {}  # the sweeps running now, by name
        self._outage = OutageLog(log, "timers")
        # The calling-out slots: each its own wake-up; the timers they are firing now.
        self._slot_wakes = [asyncio.Event() for _ in range(CALLING_OUT_AT_ONCE)]
        self._firing: set[int] = set()
        # Timers whose handler found their rows held: the loop time this worker may claim
        # each again (``TryAgainSoon``).
        self._retry_held_s = retry_held_s
        self._resting: dict[int, float] = {}
        self.found_held: collections.Counter[str] = collections.Counter()
        """How many times, since it started, this worker fired a timer of each kind that
        found its rows held (``TryAgainSoon``): a measure of how often requests and timers
        meet on the same rows."""
        self.reconciled: collections.Counter[str] = collections.Counter()
        """How much each sweep has reconciled on this worker since it started: a sweep is a
        backstop, so anything here is work whose own path failed (a lease whose timer was
        lost, say)."""

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._keep_running(self._once, self._wake), name="timer-worker"),
            asyncio.create_task(
                self._keep_running(self._start_due_sweeps, self._sweep_wake),
                name="timer-worker-sweeps",
            ),
        ]
        self._tasks += [
            asyncio.create_task(
                self._keep_running(self._slot_once, wake), name=f"timer-worker-calling-out-{n}"
            )
            for n, wake in enumerate(self._slot_wakes)
        ]

    async def stop(self) -> None:
        """Cancel the worker's tasks (the sweeps running too) and wait for them to end.

        The wait can itself be cancelled (``asyncio.wait_for`` bounds it): it gives up
        waiting, and the tasks are kept for the next stop to cancel again (a handler may
        have swallowed the cancel). An error a task ended with is raised."""
        tasks = self._tasks + list(self._sweeping.values())
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        await asyncio.wait(tasks)  # (unlike a gather, given up on at once when cancelled)
        self._tasks, self._sweeping = [], {}
        for task in tasks:
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error

    def poke(self) -> None:
        """A timer was scheduled here: look again now."""
        self._wake.set()
        self._sweep_wake.set()  # a sweep registered since it last looked runs now
        for wake in self._slot_wakes:
            wake.set()

    async def _keep_running(
        self, step: Callable[[], Awaitable[float]], wake: asyncio.Event
    ) -> None:
        """Run ``step`` again and again until cancelled, waiting between turns for as long as
        it says or until ``wake`` is set. A step that fails is logged (once while the database
        is away) and tried again after the poll interval."""
        while True:
            try:
                delay = await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _stop_if_cancelled(exc)
                self._outage.failed(exc, "timer worker failed; retrying")
                delay = self._poll_interval_s
            if delay > 0:
                await wait_for_wake(wake, delay)
            wake.clear()

    async def _once(self) -> float:
        """Fire due timers; returns how long to wait before looking again."""
        claimed = await self._claim_and_fire()
        delay = 0.0 if claimed.full else await self._next_delay(self._registry.claimed_kinds)
        self._outage.ok()
        if claimed.count == 0 and delay == 0:
            delay = self._poll_interval_s  # due but held by another instance
        return delay

    async def _slot_once(self) -> float:
        """A calling-out slot's turn: fire one due timer of the calling-out kinds; how long to
        wait before looking again (at once after firing one: more may be due)."""
        kinds = self._registry.calling_out_kinds
        if not kinds:  # none registered (yet): nothing to look for, nothing to report
            return self._poll_interval_s
        fired = await self._fire_calling_out(kinds)
        delay = 0.0 if fired else await self._next_delay(kinds)
        self._outage.ok()
        if not fired and delay == 0:
            delay = self._poll_interval_s  # due but held by another instance
        return delay

    async def _start_due_sweeps(self) -> float:
        """Start each due sweep not running yet in a task of its own; how long until the next
        falls due."""
        for sweep in self._take_due():
            self._sweeping[sweep.name] = asyncio.create_task(
                self._sweep_apart(sweep), name=f"timer-worker-sweep-{sweep.name}"
            )
        return self._until_next_sweep()

    async def _sweep_apart(self, sweep: SweepSpec) -> None:
        """Run one sweep in its task: a lost database is reported as the loops report it, any
        other failure logged; it runs again at its next turn."""
        try:
            await self._sweep(sweep)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _stop_if_cancelled(exc)
            if database_unavailable(exc):
                self._outage.failed(exc, "timer worker failed; retrying")
            else:
                log.exception("sweep %s failed; it runs again in %ss", sweep.name, sweep.every_s)
        else:
            self._outage.ok()
        finally:
            self._sweeping.pop(sweep.name, None)
            self._sweep_wake.set()  # its next turn may be due already

    async def _fire_calling_out(self, kinds: list[str]) -> bool:
        """Claim one due timer of the calling-out ``kinds`` and fire it, in a transaction of
        its own, then the work it left for after its commit; whether there was one."""
        return await self._fire_one(kinds, calling_out=True)

    async def _fire_one(self, kinds: list[str], *, calling_out: bool = False) -> bool:
        """Claim one due timer of ``kinds`` and fire it, in a transaction of its own (and,
        ``calling_out``, the work it left for after its commit); whether there was one."""
        claimed: int | None = None
        outside: list[Outside] = []
        try:
            async with unit_of_work(self._sessionmaker) as session:
                now = await db_now(session)
                timer = (
                    await session.scalars(
                        _due(select(Timer), kinds, now, self._still_resting())
                        .limit(1)
                        .with_for_update(skip_locked=True)
                    )
                ).first()
                if timer is None:
                    return False
                claimed = timer.id
                self._firing.add(claimed)
                if calling_out:
                    outside = collect_outside(session)
                await self._fire(session, timer, now)
        finally:
            if claimed is not None:  # committed or rolled back: its row's lock is released
                self._firing.discard(claimed)
        await run_outside(self._sessionmaker, outside, f"timer {claimed}")
        return True

    async def _next_delay(self, kinds: list[str]) -> float:
        """How long until a timer of ``kinds`` falls due (not counting those this worker's
        slots are firing now) or a resting one's rest ends, at most the poll interval."""
        stmt = select(func.extract("epoch", func.min(Timer.due_at) - func.now())).where(
            Timer.kind.in_(kinds), Timer.failed_at.is_(None)
        )
        if left_alone := [*self._firing, *self._resting]:
            stmt = stmt.where(Timer.id.not_in(left_alone))
        async with self._sessionmaker() as session:
            wait = await session.scalar(stmt)
        delay = self._poll_interval_s if wait is None else max(float(wait), 0.0)
        if self._resting:
            # A rest over already is a moment away, not a timer due and held by another
            # instance (a zero, which the loops wait the poll interval out for).
            rested = min(self._resting.values()) - asyncio.get_running_loop().time()
            delay = min(delay, max(rested, RESTED_S))
        return min(delay, self._poll_interval_s)

    def _rest(self, timer_id: int) -> None:
        """Leave the timer ``timer_id`` alone for ``retry_held_s`` (its handler found its rows
        held); the loops look again when its rest ends (``_next_delay``)."""
        loop = asyncio.get_running_loop()
        self._resting[timer_id] = loop.time() + self._retry_held_s

    def _still_resting(self) -> list[int]:
        """The timers this worker leaves alone now (those whose rest is over forgotten)."""
        now = asyncio.get_running_loop().time()
        for timer_id, until in list(self._resting.items()):
            if until <= now:
                del self._resting[timer_id]
        return list(self._resting)

    def _until_next_sweep(self) -> float:
        """How long until a registered sweep not running now is due (one that never ran is
        due now), at most the poll interval. A sweep still running past its next turn is
        looked at again when it ends (it wakes the loop), not counted as due meanwhile."""
        loop_now = asyncio.get_running_loop().time()
        due = [
            self._sweep_at.get(sweep.name, loop_now)
            for sweep in self._registry.sweeps
            if sweep.name not in self._sweeping
        ]
        if not due:
            return self._poll_interval_s
        return min(max(min(due) - loop_now, 0.0), self._poll_interval_s)

    async def run_sweeps(self) -> dict[str, int]:
        """Run the sweeps that are due (each registered sweep at once the first time).

        Returns what each sweep that ran did. A sweep that fails is logged and runs again at
        its next turn; a lost connection is raised for the loop to report.
        """
        done: dict[str, int] = {}
        for sweep in self._take_due():
            try:
                done[sweep.name] = await self._sweep(sweep)
            except Exception as exc:
                if database_unavailable(exc):
                    raise
                log.exception("sweep %s failed; it runs again in %ss", sweep.name, sweep.every_s)
        return done

    def _take_due(self) -> list[SweepSpec]:
        """The registered sweeps due now and not running, each given its next turn, counted
        from now (its start: a slow or failing sweep does not run back to back)."""
        loop_now = asyncio.get_running_loop().time()
        due = [
            sweep
            for sweep in self._registry.sweeps
            if sweep.name not in self._sweeping
            and self._sweep_at.get(sweep.name, loop_now) <= loop_now
        ]
        for sweep in due:
            self._sweep_at[sweep.name] = loop_now + sweep.every_s
        return due

    async def _sweep(self, sweep: SweepSpec) -> int:
        async with unit_of_work(self._sessionmaker) as session:
            now = await db_now(session)
            count = await sweep.run(session, now)
        if count:
            self.reconciled[sweep.name] += count
            log.info("sweep %s reconciled %d item(s)", sweep.name, count)
        return count

    async def run_due(self) -> int:
        """Fire one round of due timers (up to the batch size of the single kinds, each in a
        transaction of its own, one batch of each batched kind, then up to the batch size of
        the calling-out kinds, each in a transaction of its own); returns how many were
        claimed."""
        count = (await self._claim_and_fire()).count
        kinds = self._registry.calling_out_kinds
        for _ in range(self._batch_size if kinds else 0):
            if not await self._fire_calling_out(kinds):
                break
            count += 1
        return count

    async def _claim_and_fire(self) -> Claimed:
        """Up to the batch size of due timers of the single kinds, each in a transaction of
        its own; then one transaction with a batch of each batched kind."""
        kinds, batches = self._registry.single_kinds, self._registry.batches
        claimed = Claimed()
        for _ in range(self._batch_size if kinds else 0):
            if not await self._fire_one(kinds):
                break
            claimed += Claimed(1)
        claimed = Claimed(claimed.count, claimed.count >= self._batch_size)
        if not batches:
            return claimed
        async with unit_of_work(self._sessionmaker) as session:
            now = await db_now(session)
            for spec in batches:
                claimed += await self._run_batch(session, spec, now)
        return claimed

    async def _run_batch(self, session: AsyncSession, spec: BatchSpec, now: datetime) -> Claimed:
        # Only the ids are claimed (locked), and the rows read back by the delete: no ORM
        # objects for a thousand timers, unless the batch fails.
        ids = (
            await session.scalars(
                _due(select(Timer.id), [spec.kind], now, self._still_resting())
                .limit(spec.size)
                .with_for_update(skip_locked=True)
            )
        ).all()
        if ids:
            await self._fire_batch(session, spec, ids, now)
        return Claimed(len(ids), len(ids) >= spec.size)

    async def _fire_batch(
        self, session: AsyncSession, spec: BatchSpec, ids: Sequence[int], now: datetime
    ) -> None:
        claimed = bindparam("ids", list(ids), type_=ARRAY(BigInteger))
        try:
            async with session.begin_nested():
                table = table_of(Timer)
                found = await session.execute(
                    delete(table)
                    .where(table.c.id == any_(claimed))
                    .returning(
                        table.c.id, table.c.kind, table.c.subject, table.c.due_at, table.c.payload
                    )
                )
                due = sorted((DueTimer(*row) for row in found), key=lambda t: (t.due_at, t.id))
                await spec.run(session, due, now)
        except Exception as exc:
            if database_unavailable(exc):
                raise
            log.exception(
                "a batch of %d %s timers failed; firing them one by one", len(ids), spec.kind
            )
            timers = await session.scalars(
                select(Timer).where(Timer.id == any_(claimed)).order_by(Timer.due_at, Timer.id)
            )
            for timer in timers.all():
                await self._fire(session, timer, now)

    async def _fire(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        handler = self._registry.get(timer.kind)
        assert handler is not None
        timer_id, kind = timer.id, timer.kind
        outside: list[Outside] | None = session.info.get(_OUTSIDE)
        try:
            async with session.begin_nested():
                # Deleted before the handler runs, so a handler that schedules its own kind
                # and subject again inserts a new row instead of updating this one away.
                await session.execute(delete(Timer).where(Timer.id == timer_id))
                await handler(session, timer, now)
        except Exception as exc:
            if outside:
                outside.clear()  # rolled back: what it recorded as in flight is not
            if isinstance(exc, TryAgainSoon):
                # The delete rolled back too: the row stands as it was, due when it was.
                self.found_held[kind] += 1
                self._rest(timer_id)
                return
            _stop_if_cancelled(exc)  # stopped mid-handler: not the handler's failure
            if database_unavailable(exc):
                raise  # not the handler's fault: the transaction is gone, the row stays due
            self._failed(session, timer, now, exc)  # the savepoint's rollback restored the row

    def _failed(self, session: AsyncSession, timer: Timer, now: datetime, exc: Exception) -> None:
        log.exception("timer %s/%s failed", timer.kind, timer.subject, exc_info=exc)
        timer.attempts += 1
        timer.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        if timer.attempts >= self._max_attempts:
            record(
                session,
                type="timer.failed",
                subject_type="timer",
                subject_id=timer.id,
                data={"kind": timer.kind, "subject": timer.subject, "error": timer.last_error},
                actor="system",
            )
            timer.failed_at = now  # kept for inspection; never claimed again
            return
        timer.due_at = now + timedelta(seconds=min(2**timer.attempts, 60))
