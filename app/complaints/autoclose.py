"""The close sweep: a resolved complaint the customer never answers is closed after a while.

Theory of operation
-------------------

A ``resolved`` complaint waits for the customer: ``confirm`` if they accept the resolution,
``reopen`` if they do not. A customer who never answers would leave it resolved for ever, so
never finished and never archived. ``close_after_days`` (``ArchiveConfig``, 7 by default)
after the move that resolved it, the close sweep (``close_due``, a periodic sweep of the
timer worker beside the archive's) closes it through the lifecycle: ``service.transition``
with the ``close`` move, made by the desk itself (``archive.SYSTEM``, named ``system``) with
a reason that says the customer did not answer within that many days. The audit entry, the
``complaint.status_changed`` event and the customer's notice are those of any close; from
then on the archive counts its days from that close.

When the complaint was resolved is read from the audit trail as the archive reads when one
finished (``archive.finished_at``: the latest entry that changed the status; a note or a
survey after the resolution does not postpone the close). A complaint reopened and resolved
again counts from its last resolution.

The sweep follows the archive's discipline: a small batch of due complaints, oldest id
first, locked ``FOR UPDATE SKIP LOCKED``; each closed in a savepoint of its own, one that
fails is logged and left to the next sweep while the rest go on. A complaint confirmed,
reopened or closed by someone else after the sweep read it is no longer ``resolved`` when
it is locked (PostgreSQL checks the condition again on the row's latest version) and is
passed over; one reopened and resolved again meanwhile is read again once locked
(``still_due``, a statement of its own that sees the latest resolution), so it waits for
its new silence period. Two instances sweeping at once never wait for each other and
never close a complaint twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.complaints import service
from app.complaints.archive import ArchiveConfig, default_config, finished_at, sweep_move
from app.complaints.lifecycle import ComplaintEvent, ComplaintStatus
from app.complaints.models import Complaint
from app.complaints.schemas import TransitionFacts

CLOSE_SWEEP: Final = "complaints.close"


def close_reason(days: int) -> str:
    """The reason the sweep's close carries: the customer's silence, and how long."""
    unit = "day" if days == 1 else "days"
    return f"closed by the desk: the customer did not answer the resolution within {days} {unit}"


def close_cutoff(now: datetime, close_after_days: int) -> datetime:
    """Complaints resolved at or before this moment are due to be closed."""
    return now - timedelta(days=close_after_days)


def _due(cutoff: datetime) -> list[ColumnElement[bool]]:
    return [Complaint.status == ComplaintStatus.resolved.value, finished_at() <= cutoff]


async def due_for_close(
    session: AsyncSession, now: datetime, *, close_after_days: int, limit: int
) -> Sequence[Complaint]:
    """Resolved complaints whose silence period is over, locked; those another holds are
    skipped."""
    cutoff = close_cutoff(now, close_after_days)
    stmt = (
        select(Complaint)
        .where(*_due(cutoff))
        .order_by(Complaint.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    locked = (await session.scalars(stmt)).all()
    if not locked:
        return locked
    due = await still_due(session, [c.id for c in locked], cutoff)
    return [c for c in locked if c.id in due]


async def still_due(session: AsyncSession, ids: list[int], cutoff: datetime) -> set[int]:
    """Of complaints this transaction has locked, those still due as the trail reads now:
    a statement of its own sees a resolution committed after the locking one started."""
    stmt = select(Complaint.id).where(Complaint.id.in_(ids), *_due(cutoff))
    return set((await session.scalars(stmt)).all())


async def close_one(
    session: AsyncSession, complaint: Complaint, now: datetime, *, days: int, desk: service.Desk
) -> bool:
    """Close a locked, resolved complaint in a savepoint; False (logged) if it failed."""
    facts = TransitionFacts(reason=close_reason(days))
    return await sweep_move(session, complaint, ComplaintEvent.CLOSE, facts, now=now, desk=desk)


async def close_due(
    session: AsyncSession,
    now: datetime,
    *,
    config: ArchiveConfig | None = None,
    desk: service.Desk = service.DESK,
) -> int:
    """The close sweep: close the resolved complaints the customer left unanswered for
    ``close_after_days``; returns how many it closed."""
    config = config or default_config()
    days = config.close_after_days
    due = await due_for_close(session, now, close_after_days=days, limit=config.sweep_batch)
    return len([c for c in due if await close_one(session, c, now, days=days, desk=desk)])
