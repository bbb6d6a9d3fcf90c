"""Notes on a complaint and the customer's satisfaction survey: tables and service.

Theory of operation
-------------------

**Notes** (``complaint_notes``) are what the people handling a complaint write down as they
go. A note is internal unless its author says otherwise: an internal note is for the desk
only, a note with ``internal`` false is a message meant for the customer, and only those
appear in the public timeline (``app.complaints.public``). Notes are appended, never
edited; an archived complaint is read-only, so it takes none (409 naming its status).

**Feedback** (``complaint_feedback``) is the survey a customer answers once the desk has
given its answer: a CSAT score from 1 to 5 and an optional comment. It is taken only while
the complaint is ``resolved``, ``confirmed`` or ``closed`` (409 otherwise), and once per
closure: a complaint reopened and resolved again may be rated again. The closure a survey
belongs to is the number of ``reopen`` steps in the complaint's audit trail before it
(``closure``), and ``(complaint_id, closure)`` is unique, so a second survey for the same
closure is a 409 even when two arrive at once.

Both run on a complaint the caller has locked (``service.get_or_raise(..., for_update=True)``)
because each writes an entry to the complaint's hash-chained audit trail through
``service.write_audit`` and moves its head. The trail holds no personal data: a note's text
and a survey's comment enter it as digests (``text_sha256``, ``comment_sha256``). Each also
records a declared event (``complaint.note_added``, ``complaint.feedback_recorded``).
Nothing here commits: the request's unit of work does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.agents.permissions import Principal
from app.complaints import service
from app.complaints.events import ComplaintEventType, complaint_event
from app.complaints.lifecycle import ComplaintEvent, ComplaintStatus
from app.complaints.models import Complaint, ComplaintAudit
from app.db import Base
from app.errors import Conflict, register_constraint

FEEDBACK_STATUSES: Final = frozenset(
    {ComplaintStatus.resolved, ComplaintStatus.confirmed, ComplaintStatus.closed}
)
READ_ONLY_STATUSES: Final = frozenset({ComplaintStatus.archived})
FEEDBACK_UNIQUE = "uq_complaint_feedback_complaint_id_closure"
NOTE_ACTION: Final = "note"  # the audit trail's action for a note
FEEDBACK_ACTION: Final = "feedback"  # and for a survey


class ComplaintNote(Base):
    """One note written on a complaint."""

    __tablename__ = "complaint_notes"
    __table_args__ = (Index("ix_complaint_notes_complaint_id_id", "complaint_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id"), nullable=False)
    # No cascade: the author of a note on record cannot be deleted out of it.
    author_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    internal: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=true(), comment="false: meant for the customer"
    )


class ComplaintFeedback(Base):
    """The customer's survey answer for one closure of a complaint."""

    __tablename__ = "complaint_feedback"
    __table_args__ = (
        CheckConstraint("csat BETWEEN 1 AND 5", name="csat"),
        UniqueConstraint("complaint_id", "closure"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id"), nullable=False)
    closure: Mapped[int] = mapped_column(
        Integer, nullable=False, comment="reopen steps before it: 0 for the first closure"
    )
    csat: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    comment: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    recorded_by: Mapped[str] = mapped_column(
        String(64), nullable=False, comment="the actor who recorded it: agent:<id>, ..."
    )


class ComplaintReadOnly(Conflict):
    """An archived complaint takes no notes."""

    def __init__(self, status: str) -> None:
        super().__init__(f"a complaint that is {status} is read-only", status=status)


class FeedbackNotOpen(Conflict):
    """The survey is taken only once the desk has answered."""

    def __init__(self, status: str) -> None:
        open_ = ", ".join(sorted(FEEDBACK_STATUSES))
        super().__init__(
            f"feedback is recorded on a complaint that is {open_}, not {status}", status=status
        )


class FeedbackGiven(Conflict):
    """This closure of the complaint has its survey already."""

    def __init__(self, closure: int) -> None:
        super().__init__(
            "feedback for this resolution of the complaint is already recorded", closure=closure
        )


register_constraint(FEEDBACK_UNIQUE, "feedback for this resolution is already recorded")

# --- notes -----------------------------------------------------------------------------------


async def add_note(
    session: AsyncSession,
    complaint: Complaint,
    *,
    text: str,
    internal: bool,
    principal: Principal,
    now: datetime,
) -> ComplaintNote:
    """Append a note to a complaint the caller has locked, with its audit entry and event."""
    if ComplaintStatus(complaint.status) in READ_ONLY_STATUSES:
        raise ComplaintReadOnly(complaint.status)
    note = ComplaintNote(
        complaint_id=complaint.id, author_id=principal.id, at=now, text=text, internal=internal
    )
    session.add(note)
    await session.flush()
    data = {"note_id": note.id, "internal": internal, "text_sha256": service.digest(text)}
    _audit(session, complaint, NOTE_ACTION, data, principal=principal, now=now)
    extra = {"note_id": note.id, "internal": internal}
    _log(session, complaint, ComplaintEventType.NOTE_ADDED, extra, principal=principal)
    await session.flush()
    return note


async def list_notes(
    session: AsyncSession, complaint_id: int, *, after_id: int = 0, limit: int = 100
) -> Sequence[ComplaintNote]:
    """A page of a complaint's notes, oldest first, after ``after_id``."""
    stmt = (
        select(ComplaintNote)
        .where(ComplaintNote.complaint_id == complaint_id, ComplaintNote.id > after_id)
        .order_by(ComplaintNote.id)
        .limit(limit)
    )
    return (await session.scalars(stmt)).all()


async def public_notes(session: AsyncSession, complaint_id: int) -> Sequence[ComplaintNote]:
    """The notes meant for the customer, oldest first."""
    stmt = select(ComplaintNote).where(
        ComplaintNote.complaint_id == complaint_id, ComplaintNote.internal.is_(False)
    )
    return (await session.scalars(stmt.order_by(ComplaintNote.id))).all()


# --- feedback --------------------------------------------------------------------------------


async def closure_of(session: AsyncSession, complaint_id: int) -> int:
    """Which closure the complaint is in: how many times it was reopened."""
    stmt = select(func.count()).where(
        ComplaintAudit.complaint_id == complaint_id,
        ComplaintAudit.action == ComplaintEvent.REOPEN.value,
    )
    return int(await session.scalar(stmt) or 0)


async def _given(session: AsyncSession, complaint_id: int, closure: int) -> bool:
    stmt = select(ComplaintFeedback.id).where(
        ComplaintFeedback.complaint_id == complaint_id, ComplaintFeedback.closure == closure
    )
    return await session.scalar(stmt) is not None


async def record_feedback(
    session: AsyncSession,
    complaint: Complaint,
    *,
    csat: int,
    comment: str | None,
    principal: Principal,
    now: datetime,
) -> ComplaintFeedback:
    """Record the survey of a complaint the caller has locked: once per closure, only
    once the desk has answered."""
    if ComplaintStatus(complaint.status) not in FEEDBACK_STATUSES:
        raise FeedbackNotOpen(complaint.status)
    closure = await closure_of(session, complaint.id)
    if await _given(session, complaint.id, closure):
        raise FeedbackGiven(closure)
    feedback = ComplaintFeedback(
        complaint_id=complaint.id,
        closure=closure,
        csat=csat,
        comment=comment,
        at=now,
        recorded_by=principal.actor,
    )
    session.add(feedback)
    await session.flush()
    data: dict[str, Any] = {"csat": csat, "closure": closure}
    if comment is not None:
        data["comment_sha256"] = service.digest(comment)
    _audit(session, complaint, FEEDBACK_ACTION, data, principal=principal, now=now)
    extra = {"csat": csat, "closure": closure}
    _log(session, complaint, ComplaintEventType.FEEDBACK_RECORDED, extra, principal=principal)
    await session.flush()
    return feedback


# --- the trail and the log -------------------------------------------------------------------


def _audit(
    session: AsyncSession,
    complaint: Complaint,
    action: str,
    data: dict[str, Any],
    *,
    principal: Principal,
    now: datetime,
) -> None:
    step = service.Step(action, complaint.status, complaint.status, data=data)
    service.write_audit(session, complaint, step, actor=principal.actor, at=now)


def _log(
    session: AsyncSession,
    complaint: Complaint,
    type_: ComplaintEventType,
    extra: dict[str, Any],
    *,
    principal: Principal,
) -> None:
    payload = {
        "complaint_id": complaint.id,
        "reference": complaint.reference,
        "status": complaint.status,
        **extra,
    }
    complaint_event(
        session, type_, complaint.id, payload, actor=principal.actor, agent_id=complaint.assignee_id
    )
