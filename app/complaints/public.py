"""What a customer may learn of their own complaint: status, deadlines, the public timeline.

Theory of operation
-------------------

``public_status(session, reference, phone, now)`` is the one service behind the customer's
self-service lookup (``GET /api/v1/public/complaints/{reference}``) and the IVR's status
node. The customer proves the complaint is theirs with the phone number it was registered
with: the complainant's contact, or the phone of the customer it is about.

**No oracle.** The answer is ``None`` both for a reference that does not exist and for a
phone number that is not the complaint's, and the work done to reach it is the same: one
query (the complaint's contact and its customer's phone, by reference), then the number
given is compared with exactly two candidates, the complaint's two or two decoys when there
is no complaint, each normalised with ``app.customers.identity.normalise_phone`` (so
``138 0013 8000`` and ``+86 138-0013-8000`` are one number) and compared as SHA-256 digests
with ``hmac.compare_digest``, all of them, without stopping at a match. A number that is not
a phone number at all (``InvalidPhone``) is refused before anything is looked up, so that
refusal says nothing about the reference either.

**Nothing internal.** The timeline is built from the audit trail and the notes, keeping only
what is meant for the customer: each change of status with its time (registration
included), the reason of a rejection (the customer is told why), the notice of an approved
extension (its days and reason), and the notes written for the customer (``internal``
false). Never internal notes, assignees, escalation levels, pause reasons, categories or
any personal data. The deadlines are each clock's due time and state, read as the desk
reads them (``app.complaints.clocks.state``).

Limits and the access log belong to the route (``app.complaints.public_router``): the IVR
has its own.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, PrivateAttr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.complaints import service
from app.complaints.calendar import WorkCalendar
from app.complaints.clocks import ClockKind, state
from app.complaints.lifecycle import ComplaintEvent, ComplaintStatus
from app.complaints.models import Complaint, ComplaintAudit, ComplaintClock, history_of, policy_of
from app.complaints.notes import NOTE_ACTION, ComplaintNote, public_notes
from app.customers import identity
from app.customers.models import Customer

# Compared when no complaint has the reference, so that an unknown reference costs what a
# wrong phone number does: well-formed numbers, read as a real one is. A match with a decoy
# finds nothing, since there is no complaint to return.
DECOYS: Final = ("+86 138 0000 0000", "+86 10 6552 0000")
# Moves whose reason the customer is told.
PUBLIC_REASONS: Final = frozenset({ComplaintEvent.REJECT.value, ComplaintEvent.EXTEND.value})


class PublicDeadline(BaseModel):
    """One clock as the customer sees it."""

    clock: str
    due_at: datetime
    status: str


class PublicEvent(BaseModel):
    """One line of the public timeline."""

    at: datetime
    event: str  # "registered", a lifecycle verb, or "note"
    status: str
    reason: str | None = None  # a rejection's reason, an extension's notice
    days: int | None = None  # the days an extension adds
    text: str | None = None  # a note written for the customer


class PublicStatus(BaseModel):
    """What the customer may learn of their complaint."""

    reference: str
    status: ComplaintStatus
    registered_at: datetime
    due_at: datetime | None
    deadlines: list[PublicDeadline]
    timeline: list[PublicEvent]
    _complaint_id: int = PrivateAttr(default=0)

    @property
    def complaint_id(self) -> int:
        """The complaint's id: for the caller's records, never shown to the customer."""
        return self._complaint_id


def normalised_reference(reference: str) -> str:
    """The reference as stored, however the customer typed its letters and spaces."""
    return reference.strip().upper()


# --- proving the complaint is theirs ---------------------------------------------------------


def _digest(phone: str, region: str) -> bytes:
    try:
        value = identity.normalise_phone(phone, region=region)
    except identity.InvalidPhone:
        value = ""  # a contact that is no phone number (an e-mail address) matches nothing
    return hashlib.sha256(value.encode()).digest()


def phone_matches(given: str, candidates: Sequence[str], region: str) -> bool:
    """Is the normalised ``given`` one of ``candidates``? Every candidate is compared."""
    wanted = hashlib.sha256(given.encode()).digest()
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(wanted, _digest(candidate, region))
    return found


async def _claimed(session: AsyncSession, reference: str) -> tuple[int | None, list[str]]:
    stmt = (
        select(Complaint.id, Complaint.complainant_contact, Customer.phone)
        .outerjoin(Customer, Customer.id == Complaint.customer_id)
        .where(Complaint.reference == reference)
    )
    row = (await session.execute(stmt)).first()
    if row is None:
        return None, list(DECOYS)
    return row.id, [row.complainant_contact, row.phone or ""]


async def find_claimed(
    session: AsyncSession, reference: str, phone: str, *, region: str
) -> int | None:
    """The id of the complaint ``reference`` names if ``phone`` is its; else None.

    ``phone`` is normalised here: ``InvalidPhone`` if it is not a phone number.
    """
    given = identity.normalise_phone(phone, region=region)
    complaint_id, candidates = await _claimed(session, normalised_reference(reference))
    matched = phone_matches(given, candidates, region)
    return complaint_id if matched else None


# --- what they may see -----------------------------------------------------------------------


def deadline(row: ComplaintClock, calendar: WorkCalendar, now: datetime) -> PublicDeadline:
    read = state(policy_of(row), history_of(row), calendar, max(now, row.started_at))
    return PublicDeadline(clock=row.kind, due_at=read.due_at, status=read.status.value)


def public_step(entry: ComplaintAudit, notes: Mapping[int, ComplaintNote]) -> PublicEvent | None:
    """The line an audit entry gives the public timeline, if any; ``notes`` are those
    meant for the customer, by id."""
    if entry.action == NOTE_ACTION:
        return _note_line(entry, notes)
    if entry.action in PUBLIC_REASONS:
        return _with_reason(entry)
    if entry.after is None or entry.before == entry.after:
        return None  # not a change of status: internal work
    return PublicEvent(at=entry.at, event=entry.action, status=entry.after)


def _with_reason(entry: ComplaintAudit) -> PublicEvent:
    facts: dict[str, Any] = entry.data.get("facts", {})
    days = facts.get("days") if entry.action == ComplaintEvent.EXTEND.value else None
    return PublicEvent(
        at=entry.at,
        event=entry.action,
        status=entry.after or "",
        reason=entry.reason,
        days=None if days is None else int(days),
    )


def _note_line(entry: ComplaintAudit, notes: Mapping[int, ComplaintNote]) -> PublicEvent | None:
    note = notes.get(entry.data.get("note_id", 0))
    if note is None:
        return None  # an internal note
    return PublicEvent(at=note.at, event=NOTE_ACTION, status=entry.after or "", text=note.text)


def timeline(
    entries: Sequence[ComplaintAudit], notes: Sequence[ComplaintNote]
) -> list[PublicEvent]:
    """The public lines of the trail, in its order, with the notes meant for the customer
    where the trail records them."""
    shown = {note.id: note for note in notes}
    lines = (public_step(entry, shown) for entry in entries)
    return [line for line in lines if line is not None]


async def status_of(
    session: AsyncSession, complaint: Complaint, calendar: WorkCalendar, now: datetime
) -> PublicStatus:
    """The public view of ``complaint``."""
    clocks = await service.clocks_of(session, complaint.id)
    entries = await service.audit_entries(session, complaint.id)
    notes = await public_notes(session, complaint.id)
    deadlines = [deadline(row, calendar, now) for row in clocks]
    # The resolution clock's deadline as read now: a paused one's moves on with its pause.
    due = next((d.due_at for d in deadlines if d.clock == ClockKind.RESOLUTION.value), None)
    found = PublicStatus(
        reference=complaint.reference,
        status=ComplaintStatus(complaint.status),
        registered_at=complaint.registered_at,
        due_at=complaint.due_at if due is None else due,
        deadlines=deadlines,
        timeline=timeline(entries, notes),
    )
    found._complaint_id = complaint.id
    return found


async def public_status(
    session: AsyncSession,
    reference: str,
    phone: str,
    now: datetime,
    *,
    region: str = identity.DEFAULT_PHONE_REGION,
    desk: service.Desk = service.DESK,
) -> PublicStatus | None:
    """The public view of the complaint ``reference`` names, if ``phone`` proves it is the
    caller's; None alike for an unknown reference and a wrong number. ``InvalidPhone`` if
    ``phone`` is not a phone number."""
    complaint_id = await find_claimed(session, reference, phone, region=region)
    if complaint_id is None:
        return None
    complaint = await service.get_or_raise(session, complaint_id)
    return await status_of(session, complaint, desk.work_calendar(), now)
