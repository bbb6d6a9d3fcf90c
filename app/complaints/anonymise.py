"""Retention: archived complaints kept long enough lose their personal data.

Theory of operation
-------------------

The retention sweep (``retention_sweep``, a periodic sweep of the timer worker registered by
``app.complaints.archive.register``) takes the archived complaints whose ``archived_at`` is
``retention_years`` (3) or more years back, not yet anonymised and not under a legal hold,
oldest archive first, a batch at a time, locked ``FOR UPDATE SKIP LOCKED``; and anonymises
each (``anonymise``) as ``app.complaints.retention`` says:

- the complaint's personal columns become the marker, the customer and the contact are
  unlinked (the customer's tier is kept in ``customer_tier`` first), the personal text of
  its facts becomes the marker, each linked registration keeps only when, by whom, the
  channel and the branch, and the words it is found by are emptied;
- every note's text and every survey comment become the marker;
- every attachment's content is removed and its name becomes the marker (its type, size
  and digest stay: the audit trail holds the digest anyway);
- every approval request's reason and decision reason become the marker;
- every notice the outbox holds about it loses its recipient, subject line and text
  (``outbox.forget``; one not yet sent is given up);
- ``anonymised_at`` is set, and the content (the reason and the data: a move's facts and
  reasons in clear, a hold's reason, the customer's id) of every audit entry but the SLA
  alerts is removed, its digest kept (``service.redact_audit``, ``chain.redact``); the
  alerts' data (a clock, a run, an alert, a due time) concerns nobody, and the reports count
  breaches from it;
- an audit entry ``anonymised`` is appended (what was removed, how many notes, comments,
  files, approvals, notices and audit entries), which is what makes the redactions before it
  valid, and a ``complaint.anonymised`` event is recorded.

Categories, severity, branch, channel, tier, dates, clocks and the audit trail's entries
(who, what, when, from which status to which) stay, so the statistics still count the
complaint and its trail still verifies: each entry's hash covers its content through a
digest, which stays (``app.complaints.chain``).

A hold placed while the sweep runs waits for the complaint's lock and then finds it
anonymised (a 409); a sweep that reaches a held complaint passes it over. The table
constraint ``held_kept`` refuses an anonymised complaint under a hold besides, whatever the
code does. A complaint that fails is logged and left to the next sweep (a savepoint each).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.complaints import chain, deadlines, search_terms, service
from app.complaints.approval_models import ComplaintApproval
from app.complaints.archive_events import RecordEventType, record_event
from app.complaints.attachments import ComplaintAttachment
from app.complaints.events import SUBJECT
from app.complaints.lifecycle import ComplaintStatus
from app.complaints.models import Complaint
from app.complaints.notes import ComplaintFeedback, ComplaintNote
from app.complaints.retention import (
    MARKER,
    PERSONAL_COLUMNS,
    UNLINKED,
    anonymised_facts,
    anonymised_linked,
    retention_cutoff,
)
from app.customers.models import Customer
from app.db import database_unavailable
from app.notifications import outbox

log = logging.getLogger(__name__)

ACTOR: Final = "system"
ACTION: Final = chain.REDACTING_ACTION  # the audit trail's action
KEPT_ENTRIES: Final = frozenset(deadlines.ALERT_ACTIONS)
"""The audit entries whose content anonymisation keeps: it concerns nobody."""


async def due_for_retention(
    session: AsyncSession, now: datetime, *, retention_years: int, limit: int
) -> Sequence[Complaint]:
    """Archived complaints kept long enough, not held, not anonymised: locked, oldest
    archive first; those another holds are skipped."""
    stmt = (
        select(Complaint)
        .where(
            Complaint.status == ComplaintStatus.archived.value,
            Complaint.anonymised_at.is_(None),
            ~Complaint.legal_hold,
            Complaint.archived_at <= retention_cutoff(now, retention_years),
        )
        .order_by(Complaint.archived_at, Complaint.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(stmt)).all()


async def _customer_tier(session: AsyncSession, complaint: Complaint) -> str | None:
    if complaint.customer_id is None:
        return complaint.customer_tier
    stmt = select(Customer.tier).where(Customer.id == complaint.customer_id)
    return await session.scalar(stmt) or complaint.customer_tier


def _clear_row(complaint: Complaint) -> None:
    for name in PERSONAL_COLUMNS:
        setattr(complaint, name, MARKER)
    for name in UNLINKED:
        setattr(complaint, name, None)
    complaint.facts = anonymised_facts(complaint.facts)
    complaint.linked = anonymised_linked(complaint.linked)
    complaint.search = search_terms.EMPTY


async def _clear_records(session: AsyncSession, complaint_id: int) -> dict[str, int]:
    """Notes' text, survey comments, attachments' content: how many of each were cleared."""
    notes = (
        update(ComplaintNote)
        .where(ComplaintNote.complaint_id == complaint_id)
        .values(text=MARKER)
        .returning(ComplaintNote.id)
    )
    comments = (
        update(ComplaintFeedback)
        .where(
            ComplaintFeedback.complaint_id == complaint_id, ComplaintFeedback.comment.is_not(None)
        )
        .values(comment=MARKER)
        .returning(ComplaintFeedback.id)
    )
    files = (
        update(ComplaintAttachment)
        .where(ComplaintAttachment.complaint_id == complaint_id)
        .values(content=None, name=MARKER)
        .returning(ComplaintAttachment.id)
    )
    decided = ComplaintApproval.decision_reason
    approvals = (
        update(ComplaintApproval)
        .where(ComplaintApproval.complaint_id == complaint_id)
        .values(reason=MARKER, decision_reason=case((decided.is_(None), None), else_=MARKER))
        .returning(ComplaintApproval.id)
    )
    counts: dict[str, int] = {}
    for name, stmt in (
        ("notes", notes),
        ("comments", comments),
        ("attachments", files),
        ("approvals", approvals),
    ):
        done = await session.execute(stmt.execution_options(synchronize_session=False))
        counts[name] = len(done.all())
    counts["notices"] = await outbox.forget(
        session, subject_type=SUBJECT, subject_id=complaint_id, marker=MARKER
    )
    return counts


async def anonymise(session: AsyncSession, complaint: Complaint, *, now: datetime) -> None:
    """Remove a locked, archived complaint's personal data; keep its figures and trail."""
    complaint.customer_tier = await _customer_tier(session, complaint)
    _clear_row(complaint)
    counts = await _clear_records(session, complaint.id)
    complaint.anonymised_at = now
    await session.flush()  # the trigger lets an entry be redacted once this is stored
    counts["audit_entries"] = await service.redact_audit(session, complaint.id, keep=KEPT_ENTRIES)
    data: dict[str, Any] = {"columns": [*PERSONAL_COLUMNS, *UNLINKED], **counts}
    step = service.Step(ACTION, complaint.status, complaint.status, data=data)
    service.write_audit(session, complaint, step, actor=ACTOR, at=now)
    record_event(session, RecordEventType.ANONYMISED, complaint, actor=ACTOR)
    await session.flush()


async def _anonymise_one(session: AsyncSession, complaint: Complaint, now: datetime) -> bool:
    complaint_id = complaint.id  # a rolled-back savepoint expires the object
    try:
        async with session.begin_nested():
            await anonymise(session, complaint, now=now)
    except Exception as exc:
        if database_unavailable(exc):
            raise
        log.exception("complaint %s not anonymised; the next sweep tries again", complaint_id)
        return False
    return True


async def retention_sweep(
    session: AsyncSession, now: datetime, *, retention_years: int, limit: int
) -> int:
    """Anonymise the archived complaints kept long enough; returns how many."""
    due = await due_for_retention(session, now, retention_years=retention_years, limit=limit)
    return len([c for c in due if await _anonymise_one(session, c, now)])
