"""What the customer is told about their complaint, through the notification outbox.

Theory of operation
-------------------

The desk's service calls ``after_link`` once a registration is linked to an open complaint,
and ``after_move`` after every lifecycle move, in the request's transaction and after the
step is on the audit trail; a new complaint's notice is composed by ``registered_notice``
and written by the registration's own statement (``app.complaints.registration_statement``)
with the complaint. Each gathers the facts the notice may show (``notice_texts.NoticeFacts``),
picks the recipient and the language, renders the text (``notice_texts.render``, pure) and
queues it (``outbox.enqueue``, or that statement): the notice exists if and only if the
change it tells of committed, and the outbox's sweep sends it later, so a request never
waits for a provider. A move the customer is not told of
(``notice_texts.NOTICE_OF_MOVE`` lacks it) queues nothing.

**One message per step.** The dedupe key is the complaint's audit sequence number of the
step told of: the hook run twice for one step queues one message, and two steps of the same
kind (two extensions, a second resolution after a reopen) queue one each. A retried
registration (same ``Idempotency-Key``) is answered from the first answer and a retried
move of the same verb is refused (409), so neither reaches the hook again.

**Who is told.** The complainant, on the contact they registered with
(``notice_texts.recipient_of``: an e-mail address, or a mobile number; the customer's own
phone on their customer record is not used, since an authorised agent may be the one
complaining). A linked registration is told on the contact it came with, else on the
complaint's. A contact nothing can be sent to queues nothing and fails nothing: the move
stands, a warning (the complaint and the notice, never the contact) is logged, and the
notifications route says the complaint has no reachable contact, so the desk tells the
customer another way.

**When it is due.** A notice is due at the transaction's time in the database (``enqueue``
without ``now``): the outbox's sweep runs on the database's clock, and the desk's clock
(``now``, injected) may be a test's or a host's that runs ahead of it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.complaints.clocks import ClockKind
from app.complaints.events import SUBJECT
from app.complaints.lifecycle import ComplaintEvent, ReviewOutcome
from app.complaints.models import Complaint, ComplaintClock
from app.complaints.notice_texts import (
    NOTICE_OF_MOVE,
    NoticeFacts,
    NoticeKind,
    Recipient,
    Via,
    language_for,
    recipient_of,
    render,
)
from app.customers.models import Customer
from app.notifications import outbox
from app.notifications.models import Channel, Notification

log = logging.getLogger(__name__)

# The clock whose due time a move's notice tells (else the complaint's resolution due time).
_CLOCK_OF_MOVE = {ComplaintEvent.REQUEST_REVIEW: ClockKind.REVIEW}


async def after_link(
    session: AsyncSession, complaint: Complaint, *, now: datetime, region: str
) -> None:
    """A registration was linked to ``complaint`` (its facts are the last of ``linked``);
    numbers written without a country code are read in ``region``."""
    latest: dict[str, Any] = complaint.linked[-1] if complaint.linked else {}
    facts = NoticeFacts(complaint.reference, due_at=complaint.due_at, channel=latest.get("channel"))
    contacts = [latest.get("complainant", {}).get("contact"), complaint.complainant_contact]
    await tell(session, complaint, NoticeKind.linked, facts, contacts, region=region)


async def after_move(
    session: AsyncSession,
    complaint: Complaint,
    event: ComplaintEvent,
    given: dict[str, Any],
    now: datetime,
    *,
    region: str,
) -> None:
    """A move was made and recorded (the complaint holds its new status); numbers written
    without a country code are read in ``region``."""
    kind = NOTICE_OF_MOVE.get(event)
    if kind is None:
        return
    facts = NoticeFacts(
        complaint.reference,
        due_at=await _due_of(session, complaint, event, given),
        reason=_text(given.get("reason")) if event in _TOLD_WHY else None,
        days=given.get("days"),
        resolution=_text(given.get("resolution")),
        remedy=_text(given.get("remedy")),
        compensation=_decimal(given.get("compensation")),
        outcome=_outcome(given.get("outcome")),
    )
    await tell(session, complaint, kind, facts, [complaint.complainant_contact], region=region)


# The moves whose reason is meant for the customer; a reopen's or a withdrawal's is the desk's.
_TOLD_WHY = frozenset(
    {ComplaintEvent.REJECT, ComplaintEvent.EXTEND, ComplaintEvent.CONCLUDE_REVIEW}
)


async def tell(
    session: AsyncSession,
    complaint: Complaint,
    kind: NoticeKind,
    facts: NoticeFacts,
    contacts: Sequence[str | None],
    *,
    region: str,
) -> None:
    """Queue ``kind`` for the first of ``contacts`` a notice can reach (none: log, go on)."""
    recipient = reach(complaint, kind, contacts, region=region)
    if recipient is None:
        return
    language = await _customer_language(session, complaint)
    notice = compose(complaint, kind, facts, recipient, language)
    await outbox.enqueue(
        session,
        channel=notice.channel,
        recipient=notice.recipient,
        kind=notice.kind,
        body=notice.body,
        subject=notice.subject,
        language=notice.language,
        subject_type=SUBJECT,
        subject_id=complaint.id,
        dedupe_key=notice.dedupe_key,
    )


@dataclass(frozen=True, slots=True)
class Notice:
    """A notice about a complaint, as the outbox queues it."""

    channel: Channel
    recipient: str
    kind: str
    body: str
    subject: str | None
    language: str
    dedupe_key: str


def reach(
    complaint: Complaint, kind: NoticeKind, contacts: Sequence[str | None], *, region: str
) -> Recipient | None:
    """The first of ``contacts`` a notice can reach, a number without its country code read
    in ``region``; None (and a warning logged) if none."""
    recipient = _first_reachable(contacts, region)
    if recipient is None:
        log.warning(
            "complaint %s: %s not queued: no e-mail address or mobile number to send it to",
            complaint.id,
            kind.value,
        )
    return recipient


def compose(
    complaint: Complaint,
    kind: NoticeKind,
    facts: NoticeFacts,
    recipient: Recipient,
    customer_language: str | None,
) -> Notice:
    """The notice of ``kind`` to ``recipient``, in the customer's language (pure)."""
    language = language_for(customer_language, recipient)
    text = render(kind, language, facts)
    return Notice(
        channel=Channel(recipient.via.value),
        recipient=recipient.address,
        kind=kind.value,
        body=text.body,
        subject=text.subject if recipient.via is Via.email else None,
        language=language.value,
        dedupe_key=str(complaint.audit_seq),
    )


def registered_notice(
    complaint: Complaint, customer_language: str | None, *, region: str
) -> Notice | None:
    """The notice of a new complaint (what ``after_registration`` queues), composed for a
    registration that writes it in its own statement; None when it cannot be sent."""
    contacts = [complaint.complainant_contact]
    recipient = reach(complaint, NoticeKind.registered, contacts, region=region)
    if recipient is None:
        return None
    facts = NoticeFacts(complaint.reference, due_at=complaint.due_at)
    return compose(complaint, NoticeKind.registered, facts, recipient, customer_language)


def reachable(complaint: Complaint, *, region: str) -> Via | None:
    """How the complainant can be sent notices: by SMS, by e-mail, or not at all."""
    recipient = recipient_of(complaint.complainant_contact, region=region)
    return None if recipient is None else recipient.via


async def list_notices(
    session: AsyncSession, complaint_id: int, *, after_id: int = 0, limit: int = 100
) -> Sequence[Notification]:
    """A page of the notices queued about a complaint, oldest first."""
    stmt = (
        select(Notification)
        .where(
            Notification.subject_type == SUBJECT,
            Notification.subject_id == str(complaint_id),
            Notification.id > after_id,
        )
        .order_by(Notification.id)
        .limit(limit)
    )
    return (await session.scalars(stmt)).all()


# --- the facts -------------------------------------------------------------------------------


def _first_reachable(contacts: Sequence[str | None], region: str) -> Recipient | None:
    found = (recipient_of(c, region=region) for c in contacts if c)
    return next((r for r in found if r is not None), None)


async def _customer_language(session: AsyncSession, complaint: Complaint) -> str | None:
    if complaint.customer_id is None:
        return None
    return await session.scalar(
        select(Customer.language).where(Customer.id == complaint.customer_id)
    )


async def _due_of(
    session: AsyncSession, complaint: Complaint, event: ComplaintEvent, given: dict[str, Any]
) -> datetime | None:
    """The due time the notice of ``event`` tells: the extended clock's for an extension,
    the review's for a review asked for, else the complaint's (its resolution clock's)."""
    kind = _CLOCK_OF_MOVE.get(event)
    if event is ComplaintEvent.EXTEND:
        kind = ClockKind(given.get("clock", ClockKind.RESOLUTION.value))
    if kind is None:
        return complaint.due_at
    stmt = select(ComplaintClock.due_at).where(
        ComplaintClock.complaint_id == complaint.id, ComplaintClock.kind == kind.value
    )
    return await session.scalar(stmt)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _outcome(value: Any) -> ReviewOutcome | None:
    try:
        return None if value is None else ReviewOutcome(value)
    except ValueError:
        return None
