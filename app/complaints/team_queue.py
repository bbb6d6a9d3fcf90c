"""The team queue: the complaints nobody could take when they were auto-assigned.

Theory of operation
-------------------

When ``assign.auto_assign`` finds nobody who may take a complaint it records why (an audit
entry ``queued`` and a ``complaint.queued`` event) and ``mark`` puts the complaint in
``queued_complaints`` (one row per complaint: the queue's name and when it first waited).
The row is the queue: ``app.complaints.assign_queue`` drains it, earliest due first, as
agents get room.

A complaint leaves the queue when it is assigned (by the drain, by another auto-assignment
or by hand: any ``assign`` move) and when it can no longer be assigned (resolved,
withdrawn, rejected, ...). Both are moves, so ``after_move``, run after every move with the
complaint still locked, takes the row out; the row is only ever written under the
complaint's lock, so it never disagrees with the complaint for long enough to matter.

**Room.** An agent's load is their open complaints (``lifecycle.OPEN``; see
``app.complaints.assign``). A move frees room for the complaint's previous holder when it
hands the complaint to someone else, or takes it out of ``OPEN`` (confirmed, closed,
withdrawn, rejected). Such a move schedules the durable timer ``complaint.assign_queued``
(one row whatever the number of moves: the timer's kind and subject are fixed, so a burst of
moves sets the same row), due at once, in the move's transaction: it fires only if the move
committed, and fires even if the instance dies right after. Room that appears elsewhere (a
capacity raised, a skill added, a new agent) is found by the drain's periodic sweep.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import BigInteger, DateTime, ForeignKey, String, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.complaints import lifecycle
from app.complaints.lifecycle import ComplaintEvent, ComplaintStatus
from app.complaints.models import Complaint
from app.db import Base
from app.timers import service as timers

KIND: Final = "complaint.assign_queued"
SUBJECT: Final = "team"


class QueuedComplaint(Base):
    """A complaint waiting in the team queue for someone with the skills and room."""

    __tablename__ = "queued_complaints"

    complaint_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("complaints.id", ondelete="CASCADE"), primary_key=True
    )
    queue: Mapped[str] = mapped_column(String(64), nullable=False)
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


# The moves that can take a complaint out of ``OPEN``, so out of its holder's load: derived
# from the lifecycle table, so a new move is counted without anyone remembering to.
LEAVES_LOAD: Final = frozenset(
    event
    for (before, event), after in lifecycle.moves().items()
    if before in lifecycle.OPEN and after not in lifecycle.OPEN
)


def frees_room(complaint: Complaint, event: ComplaintEvent, previous_assignee: int | None) -> bool:
    """Did this move (already applied to ``complaint``) lower its previous holder's load?"""
    if previous_assignee is None:
        return False
    if event is ComplaintEvent.ASSIGN:
        return complaint.assignee_id != previous_assignee
    return event in LEAVES_LOAD and ComplaintStatus(complaint.status) not in lifecycle.OPEN


async def mark(session: AsyncSession, *, complaint_id: int, queue: str, now: datetime) -> None:
    """Put the complaint in the team queue (once: a complaint queued again keeps its place)."""
    stmt = insert(QueuedComplaint).values(complaint_id=complaint_id, queue=queue, queued_at=now)
    await session.execute(
        stmt.on_conflict_do_update(index_elements=["complaint_id"], set_={"queue": queue})
    )


async def unmark(session: AsyncSession, complaint_id: int) -> None:
    """Take the complaint out of the team queue, if it is there."""
    await session.execute(
        delete(QueuedComplaint).where(QueuedComplaint.complaint_id == complaint_id)
    )


async def nudge(session: AsyncSession) -> None:
    """Have the queue looked at as soon as this transaction commits."""
    at = await session.scalar(select(func.clock_timestamp()))
    assert at is not None
    await timers.schedule(session, kind=KIND, subject=SUBJECT, due_at=at)


async def after_move(
    session: AsyncSession,
    complaint: Complaint,
    event: ComplaintEvent,
    previous_assignee: int | None,
) -> None:
    """Keep the queue true after a move: out of it once assigned or unassignable; a look at
    it when the move gave someone room."""
    status = ComplaintStatus(complaint.status)
    if event is ComplaintEvent.ASSIGN or not lifecycle.allows(status, ComplaintEvent.ASSIGN):
        await unmark(session, complaint.id)
    if frees_room(complaint, event, previous_assignee):
        await nudge(session)
