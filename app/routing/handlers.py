"""Durable timer handlers of the ACD (ring timeout, wrap-up end, max wait, rescind).

The timer worker fires a batch of timers in one transaction, so a handler that waited for
a contact or agent row would wait while holding the rows of the handlers before it in the
batch, and deadlock against a request that locks contact then agent. Handlers therefore
lock with ``NOWAIT``; one that finds a row locked undoes its own work and fires again a
moment later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.routing import endings, lifecycle, work
from app.timers import service as timers
from app.timers.models import Timer
from app.timers.worker import Handler, TimerRegistry

LOCK_NOT_AVAILABLE = "55P03"
RETRY_AFTER = timedelta(milliseconds=50)


def _lock_not_available(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE


def _without_waiting(handle: Callable[[AsyncSession, int, datetime], Awaitable[object]]) -> Handler:
    async def run(session: AsyncSession, timer: Timer, now: datetime) -> None:
        session.info[work.NOWAIT_KEY] = True
        try:
            async with session.begin_nested():
                await handle(session, int(timer.subject), now)
        except DBAPIError as exc:
            if not _lock_not_available(exc):
                raise
            await _again_soon(session, timer)
        finally:
            session.info.pop(work.NOWAIT_KEY, None)

    return run


async def _again_soon(session: AsyncSession, timer: Timer) -> None:
    """Replace the timer by a new one due shortly (the worker deletes the fired row by id)."""
    clock: datetime | None = await session.scalar(select(func.clock_timestamp()))
    assert clock is not None
    await timers.cancel(session, kind=timer.kind, subject=timer.subject)
    await timers.schedule(
        session,
        kind=timer.kind,
        subject=timer.subject,
        due_at=clock + RETRY_AFTER,
        payload=timer.payload,
    )


async def _offer_expired(session: AsyncSession, subject: int, now: datetime) -> None:
    await lifecycle.expire_offer(session, offer_id=subject, now=now)


async def _wrap_up_ended(session: AsyncSession, subject: int, now: datetime) -> None:
    await endings.end_wrap_up(session, contact_id=subject, now=now)


async def _max_wait(session: AsyncSession, subject: int, now: datetime) -> None:
    await endings.time_out(session, contact_id=subject, now=now)


async def _rescind(session: AsyncSession, subject: int, now: datetime) -> None:
    await lifecycle.rescind_offers_of(session, agent_id=subject, now=now)


def register(registry: TimerRegistry) -> None:
    registry.register(lifecycle.OFFER_EXPIRE, _without_waiting(_offer_expired))
    registry.register(lifecycle.WRAP_UP_END, _without_waiting(_wrap_up_ended))
    registry.register(lifecycle.MAX_WAIT, _without_waiting(_max_wait))
    registry.register(lifecycle.RESCIND, _without_waiting(_rescind))
