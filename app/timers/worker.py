"""The timer worker that runs in every instance.

Theory of operation: the worker claims due timers with ``FOR UPDATE SKIP LOCKED`` (so two
instances never run the same timer), runs each handler in a savepoint of the claiming
transaction and deletes the row in that same transaction. A crash before commit releases the
row lock and the timer fires again elsewhere, which is why handlers must be idempotent. A
handler that raises is retried with backoff and, after ``max_attempts``, marked failed (kept
for inspection, never claimed again) with a ``timer.failed`` event. Kinds this instance has
no handler for are left for instances that do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import unit_of_work
from app.events.log import record
from app.timers.models import Timer
from app.waiting import wait_for_wake

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, Timer, datetime], Awaitable[None]]


class TimerRegistry:
    """Timer kinds and the handlers that run them."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    def get(self, kind: str) -> Handler | None:
        return self._handlers.get(kind)

    @property
    def kinds(self) -> list[str]:
        return sorted(self._handlers)


class TimerWorker:
    """Claims and fires due timers until stopped."""

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
                fired = await self.run_due()
                delay = 0.0 if fired >= self._batch_size else await self._next_delay()
                if fired == 0 and delay == 0:
                    delay = self._poll_interval_s  # due but held by another instance
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("timer worker failed; retrying")
                delay = self._poll_interval_s
            if delay > 0:
                await wait_for_wake(self._wake, delay)
            self._wake.clear()

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
                await handler(session, timer, now)
        except Exception as exc:
            self._failed(session, timer, now, exc)
            return
        await session.execute(delete(Timer).where(Timer.id == timer.id))

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
