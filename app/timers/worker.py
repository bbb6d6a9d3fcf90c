"""The timer worker that runs in every instance.

Theory of operation: the worker claims due timers with ``FOR UPDATE SKIP LOCKED`` (so two
instances never run the same timer) and fires each in a savepoint of the claiming
transaction: the savepoint first deletes the row, then runs the handler. A handler that
schedules its own (kind, subject) again therefore inserts a fresh row that outlives the
firing, whatever else it does. A crash before commit releases the row lock and the timer
fires again elsewhere, which is why handlers must be idempotent. A handler that raises rolls
its savepoint back, the delete with it, and the row is retried with backoff and, after
``max_attempts``, marked failed (kept for inspection, never claimed again) with a
``timer.failed`` event. Kinds this instance has no handler for are left for instances that do.

Sweeps are the backstop for what a single row cannot guarantee: a periodic function, run by
every instance every ``every_s`` in a unit of work of its own, that finds work overdue for
whatever reason (its timer deleted or failed, an instance that died mid-fire) and does it. A
sweep must be safe to run on several instances at once: it locks without waiting and leaves
a locked row to the next sweep.

While the database cannot be reached the worker logs one line when it goes away and one when
it comes back, not a traceback per poll; any other error is logged with its traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import OutageLog, database_unavailable, unit_of_work
from app.events.log import record
from app.timers.models import Timer
from app.waiting import wait_for_wake

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, Timer, datetime], Awaitable[None]]
Sweep = Callable[[AsyncSession, datetime], Awaitable[int]]
"""A periodic sweep: given a session and the database's ``now``, returns how much it did."""


@dataclass(frozen=True, slots=True)
class SweepSpec:
    name: str
    run: Sweep
    every_s: float


class TimerRegistry:
    """Timer kinds and the handlers that run them; periodic sweeps."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._sweeps: dict[str, SweepSpec] = {}

    def register(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    def register_sweep(self, name: str, sweep: Sweep, every_s: float) -> None:
        """Run ``sweep`` every ``every_s`` seconds on every instance (a name registers once)."""
        if every_s <= 0:
            raise ValueError(f"sweep {name!r}: every_s must be positive")
        self._sweeps[name] = SweepSpec(name, sweep, every_s)

    def get(self, kind: str) -> Handler | None:
        return self._handlers.get(kind)

    @property
    def kinds(self) -> list[str]:
        return sorted(self._handlers)

    @property
    def sweeps(self) -> list[SweepSpec]:
        return [self._sweeps[name] for name in sorted(self._sweeps)]


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
    ) -> None:
        self._sessionmaker = sessionmaker
        self._registry = registry
        self._poll_interval_s = poll_interval_s
        self._batch_size = batch_size
        self._max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sweep_at: dict[str, float] = {}  # loop time each sweep runs next
        self._outage = OutageLog(log, "timers")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="timer-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def poke(self) -> None:
        """A timer was scheduled here: look again now."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                delay = await self._once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._outage.failed(exc, "timer worker failed; retrying")
                delay = self._poll_interval_s
            else:
                self._outage.ok()
            if delay > 0:
                await wait_for_wake(self._wake, delay)
            self._wake.clear()

    async def _once(self) -> float:
        """Fire due timers and due sweeps; returns how long to wait before looking again."""
        fired = await self.run_due()
        await self.run_sweeps()
        delay = 0.0 if fired >= self._batch_size else await self._next_delay()
        if fired == 0 and delay == 0:
            delay = self._poll_interval_s  # due but held by another instance
        return min(delay, self._until_next_sweep())

    async def _next_delay(self) -> float:
        async with self._sessionmaker() as session:
            wait = await session.scalar(
                select(func.extract("epoch", func.min(Timer.due_at) - func.now())).where(
                    Timer.kind.in_(self._registry.kinds), Timer.failed_at.is_(None)
                )
            )
        if wait is None:
            return self._poll_interval_s
        return min(max(float(wait), 0.0), self._poll_interval_s)

    def _until_next_sweep(self) -> float:
        if not self._sweep_at:
            return self._poll_interval_s
        loop_now = asyncio.get_running_loop().time()
        return max(min(self._sweep_at.values()) - loop_now, 0.0)

    async def run_sweeps(self) -> dict[str, int]:
        """Run the sweeps that are due (each registered sweep at once the first time).

        Returns what each sweep that ran did. A sweep that fails is logged and runs again at
        its next turn; a lost connection is raised for the loop to report.
        """
        loop_now = asyncio.get_running_loop().time()
        done: dict[str, int] = {}
        for sweep in self._registry.sweeps:
            if self._sweep_at.get(sweep.name, loop_now) > loop_now:
                continue
            # Counted from the start, so a slow or failing sweep does not run back to back.
            self._sweep_at[sweep.name] = loop_now + sweep.every_s
            try:
                done[sweep.name] = await self._sweep(sweep)
            except Exception as exc:
                if database_unavailable(exc):
                    raise
                log.exception("sweep %s failed; it runs again in %ss", sweep.name, sweep.every_s)
        return done

    async def _sweep(self, sweep: SweepSpec) -> int:
        async with unit_of_work(self._sessionmaker) as session:
            now = await session.scalar(select(func.now()))
            assert now is not None
            count = await sweep.run(session, now)
        if count:
            log.info("sweep %s reconciled %d item(s)", sweep.name, count)
        return count

    async def run_due(self) -> int:
        """Fire one batch of due timers; returns how many were claimed."""
        kinds = self._registry.kinds
        if not kinds:
            return 0
        async with unit_of_work(self._sessionmaker) as session:
            now = await session.scalar(select(func.now()))
            assert now is not None
            timers = (
                await session.scalars(
                    select(Timer)
                    .where(Timer.due_at <= now, Timer.kind.in_(kinds), Timer.failed_at.is_(None))
                    .order_by(Timer.due_at, Timer.id)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for timer in timers:
                await self._fire(session, timer, now)
        return len(timers)

    async def _fire(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        handler = self._registry.get(timer.kind)
        assert handler is not None
        try:
            async with session.begin_nested():
                # Deleted before the handler runs, so a handler that schedules its own kind
                # and subject again inserts a new row instead of updating this one away.
                await session.execute(delete(Timer).where(Timer.id == timer.id))
                await handler(session, timer, now)
        except Exception as exc:
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
