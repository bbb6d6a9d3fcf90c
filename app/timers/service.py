"""Scheduling and cancelling durable timers (in the caller's transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import after_commit, table_of
from app.timers.models import Timer

WAKE_CALLBACK_KEY = "timers_wake"
WAKE_HORIZON = timedelta(seconds=1)


def _replacing(stmt: Insert) -> Insert:
    """The insert, replacing the pending timer of the same kind and subject (fresh retries)."""
    return stmt.on_conflict_do_update(
        constraint="uq_timers_kind_subject",
        set_={
            "due_at": stmt.excluded.due_at,
            "payload": stmt.excluded.payload,
            "attempts": 0,
            "last_error": None,
            "failed_at": None,
        },
    )


async def schedule(
    session: AsyncSession,
    *,
    kind: str,
    subject: str | int,
    due_at: datetime,
    payload: dict[str, Any] | None = None,
) -> None:
    """Set the (kind, subject) timer to ``due_at``, replacing any pending one."""
    await session.execute(
        _replacing(
            insert(Timer).values(
                kind=kind, subject=str(subject), due_at=due_at, payload=payload or {}
            )
        )
    )
    wake = session.info.get(WAKE_CALLBACK_KEY)
    # The worker looks again at least every poll interval; wake it only for a timer due
    # before then (a ring timeout 20 s away need not cost a round trip now).
    if wake is not None and due_at <= datetime.now(UTC) + WAKE_HORIZON:
        after_commit(session, wake)


def wake_worker_after_commit(session: AsyncSession) -> None:
    """A timer written by a statement of its own is due soon: wake the worker after commit."""
    wake = session.info.get(WAKE_CALLBACK_KEY)
    if wake is not None:
        after_commit(session, wake)


async def schedule_many(
    session: AsyncSession,
    *,
    kind: str,
    due: Sequence[tuple[str | int, datetime]],
    payloads: Sequence[dict[str, Any]] | None = None,
) -> None:
    """``schedule`` for several subjects of one kind in one statement; ``payloads``, if
    given, pairs with ``due`` (else none)."""
    if not due:
        return
    given = payloads if payloads is not None else [{}] * len(due)
    await session.execute(
        _replacing(insert(table_of(Timer))),
        [
            {"kind": kind, "subject": str(s), "due_at": d, "payload": p}
            for (s, d), p in zip(due, given, strict=True)
        ],
    )
    wake = session.info.get(WAKE_CALLBACK_KEY)
    if wake is not None and min(d for _, d in due) <= datetime.now(UTC) + WAKE_HORIZON:
        after_commit(session, wake)


async def cancel(session: AsyncSession, *, kind: str, subject: str | int) -> bool:
    """Remove a pending timer; True if there was one."""
    result = await session.execute(
        delete(Timer).where(Timer.kind == kind, Timer.subject == str(subject)).returning(Timer.id)
    )
    return result.first() is not None


async def get(session: AsyncSession, *, kind: str, subject: str | int) -> Timer | None:
    return await session.scalar(
        select(Timer).where(Timer.kind == kind, Timer.subject == str(subject))
    )


async def lock(
    session: AsyncSession, *, kind: str, subject: str | int, nowait: bool = False
) -> bool:
    """Lock the pending (kind, subject) timer, as a worker firing it holds it; True if any.

    With ``nowait`` a timer being fired right now raises (SQLSTATE 55P03) instead of waiting.
    """
    found = await session.scalar(
        select(Timer.id)
        .where(Timer.kind == kind, Timer.subject == str(subject))
        .with_for_update(nowait=nowait)
    )
    return found is not None
