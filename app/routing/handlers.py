"""Durable timer handlers of the ACD (ring timeout, wrap-up end, max wait, rescind)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.routing import endings, lifecycle
from app.timers.models import Timer
from app.timers.worker import TimerRegistry


async def _offer_expired(session: AsyncSession, timer: Timer, now: datetime) -> None:
    await lifecycle.expire_offer(session, offer_id=int(timer.subject), now=now)


async def _wrap_up_ended(session: AsyncSession, timer: Timer, now: datetime) -> None:
    await endings.end_wrap_up(session, contact_id=int(timer.subject), now=now)


async def _max_wait(session: AsyncSession, timer: Timer, now: datetime) -> None:
    await endings.time_out(session, contact_id=int(timer.subject), now=now)


async def _rescind(session: AsyncSession, timer: Timer, now: datetime) -> None:
    await lifecycle.rescind_offers_of(session, agent_id=int(timer.subject), now=now)


def register(registry: TimerRegistry) -> None:
    registry.register(lifecycle.OFFER_EXPIRE, _offer_expired)
    registry.register(lifecycle.WRAP_UP_END, _wrap_up_ended)
    registry.register(lifecycle.MAX_WAIT, _max_wait)
    registry.register(lifecycle.RESCIND, _rescind)
