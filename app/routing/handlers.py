"""Durable timer handlers of the ACD (ring timeout, wrap-up end, max wait, rescind) and the
lease sweep.

A handler that waited for a contact or agent row would hold the worker's claiming loop,
and every timer due after it, for as long as a request keeps that row. Handlers therefore
lock with ``NOWAIT``; one that finds a row locked undoes its own work and raises
``TryAgainSoon``: the worker keeps the timer due when it was and fires it again a moment
later, first among the timers due (``app.timers.worker``).

The lease sweep is the backstop of the ring timeout: an offer is a lease, and a lease must
end even when its ``offer.expire`` row does not fire (deleted, marked failed after its
retries, lost with a bug). Every instance's timer worker runs the sweep every
``lease_sweep_s``; it expires each pending offer more than ``lease_grace_s`` past its expiry,
exactly as the timer would have. The grace leaves a healthy timer time to do it first, so
the sweep only acts on what went wrong. It locks like the handlers, also the offer's own
timer row, and leaves anything locked (a request, the timer, another instance's sweep) to
the next sweep. A ringing offer therefore ends within ring timeout + grace + sweep interval
(plus a sweep's own run time), whatever happened to its timer.

Each offer is expired in a transaction of its own, as the worker fires each timer in its
own: a sweep that finds hundreds overdue (a worker that stood still) holds one offer's rows
at a time, not every one's until the last is done, which would keep the requests that need
them waiting, and the rounds skipping them, meanwhile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents import service as agents
from app.config import Settings
from app.db import commit_and_go_on
from app.routing import contacts, endings, offers, work
from app.timers import service as timers
from app.timers.models import Timer
from app.timers.worker import Handler, Sweep, TimerRegistry, TryAgainSoon

LOCK_NOT_AVAILABLE = "55P03"
LEASE_SWEEP = "routing.leases"
LEASE_SWEEP_BATCH = 500  # overdue offers expired per sweep; the rest wait for the next

T = TypeVar("T")


def _lock_not_available(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE


async def _without_waiting_for_locks(
    session: AsyncSession, step: Callable[[], Awaitable[T]]
) -> T | None:
    """Run ``step`` in a savepoint, its row locks taken with ``NOWAIT``.

    Returns what ``step`` returned, or None when a row was locked (its work undone).
    """
    session.info[work.NOWAIT_KEY] = True
    try:
        async with session.begin_nested():
            return await step()
    except DBAPIError as exc:
        if not _lock_not_available(exc):
            raise
        return None
    finally:
        session.info.pop(work.NOWAIT_KEY, None)


def without_waiting(handle: Callable[[AsyncSession, int, datetime], Awaitable[object]]) -> Handler:
    async def run(session: AsyncSession, timer: Timer, now: datetime) -> None:
        async def step() -> bool:
            await handle(session, int(timer.subject), now)
            return True

        if await _without_waiting_for_locks(session, step) is None:
            raise TryAgainSoon(f"{timer.kind} {timer.subject}: a row it needs is held")

    return run


async def _offer_expired(session: AsyncSession, subject: int, now: datetime) -> None:
    await offers.expire_offer(session, offer_id=subject, now=now)


async def _wrap_up_ended(session: AsyncSession, subject: int, now: datetime) -> None:
    await endings.end_wrap_up(session, contact_id=subject, now=now)


def _max_wait(settings: Settings) -> Callable[[AsyncSession, int, datetime], Awaitable[None]]:
    async def max_wait(session: AsyncSession, subject: int, now: datetime) -> None:
        await endings.time_out(session, contact_id=subject, now=now, settings=settings)

    return max_wait


async def _rescind(session: AsyncSession, subject: int, now: datetime) -> None:
    await offers.rescind_offers_of(session, agent_id=subject, now=now)


def lease_sweep(grace: timedelta) -> Sweep:
    """The sweep that expires pending offers more than ``grace`` past their expiry."""

    async def sweep(session: AsyncSession, now: datetime) -> int:
        overdue = await offers.overdue_offers(
            session, expired_before=now - grace, limit=LEASE_SWEEP_BATCH
        )
        expired = 0
        for n, offer_id in enumerate(overdue):
            if n:  # the expiry before ends its transaction, and frees its rows, first
                await commit_and_go_on(session)
            done = await _without_waiting_for_locks(session, _expiry(session, offer_id, now))
            expired += bool(done)  # None: a row was locked; the next sweep looks again
        return expired

    return sweep


def _expiry(session: AsyncSession, offer_id: int, now: datetime) -> Callable[[], Awaitable[bool]]:
    async def expire() -> bool:
        # Its own timer may be firing on another instance at this moment: leave it to that.
        await timers.lock(session, kind=offers.OFFER_EXPIRE, subject=offer_id, nowait=True)
        return await offers.expire_offer(session, offer_id=offer_id, now=now)

    return expire


def register(registry: TimerRegistry, settings: Settings) -> None:
    registry.register(offers.OFFER_EXPIRE, without_waiting(_offer_expired))
    registry.register(contacts.WRAP_UP_END, without_waiting(_wrap_up_ended))
    registry.register(contacts.MAX_WAIT, without_waiting(_max_wait(settings)))
    registry.register(agents.RESCIND, without_waiting(_rescind))
    registry.register_sweep(
        LEASE_SWEEP,
        lease_sweep(timedelta(seconds=settings.lease_grace_s)),
        every_s=settings.lease_sweep_s,
    )
