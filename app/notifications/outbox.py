"""The outbox: enqueue a notice with the change it tells of; send it once, later, reliably.

Theory of operation
-------------------

**Enqueue.** ``enqueue`` inserts the message in the caller's transaction and never sends:
a notice exists if and only if the change that caused it committed, and a request never
waits for a provider. The insert does nothing when the same (subject, kind, dedupe key) is
already there, and answers with the existing row instead, so a retried request or a
repeated transition enqueues (and so sends) one message.

**Deliver.** ``deliver_due`` runs in three steps, so no transaction stays open while a
provider is called (an idle transaction holds the event log back, and is ended by the
server after ``idle_in_transaction_timeout_ms``):

1. *Claim*: lock a batch of due rows with ``FOR UPDATE SKIP LOCKED`` (rows another
   instance is claiming are skipped, not waited for), mark each ``sending``, count the
   attempt and set ``next_attempt_at`` to the end of the claim's lease; commit. Another
   instance now passes these rows by until the lease is over.
2. *Send* each claimed message through its channel's adapter, all at once, each bounded by
   the send timeout.
3. *Record* each outcome, fenced by the attempt number: a row whose lease ran out and that
   another sender claimed again is left to that sender. Sent: the provider's id and
   ``sent_at``. A retryable failure: ``queued`` again after a back-off that doubles with
   each attempt (capped), or ``dead`` once ``max_attempts`` sends failed. A permanent
   failure: ``failed``, never retried.

A sender that dies between its send and its record leaves the row ``sending``; when the
lease is over it is claimed and sent again (the gateway sees the same ``Idempotency-Key``),
or marked ``dead`` if that was its last attempt. Delivery is therefore at least once, and
exactly once whenever senders finish what they start; the lease must exceed the send
timeout, which ``DeliveryPolicy`` enforces.

**Forget.** ``forget`` removes the copies of a customer's contact details (and the text
told them) from every notice about a subject whose personal data is being removed, such as
an anonymised complaint: the rows stay, so the counts of what was sent do too, and a notice
not yet sent never will be.

**Run.** Every instance's timer worker runs ``deliver_due`` as a periodic sweep
(``register``), with the database's ``now`` as the clock; tests pass their own ``now``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.notifications.adapters import (
    Message,
    NotificationSettings,
    Senders,
    SendFailed,
    SendResult,
    senders_from_settings,
)
from app.notifications.models import PENDING, Channel, Notification, Status
from app.timers.worker import Sweep, TimerRegistry

DELIVERY_SWEEP = "notifications.deliver"
LEASE_MARGIN = timedelta(seconds=30)
ERROR_LIMIT = 500
FORGOTTEN = "not sent: its recipient's data was removed"
MAX_DOUBLINGS = 20  # the cap is reached long before; keeps the product a timedelta


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How hard the outbox tries: attempts, back-off, the claim's lease, the batch."""

    max_attempts: int = 8
    backoff: timedelta = timedelta(seconds=30)
    backoff_max: timedelta = timedelta(hours=1)
    send_timeout: timedelta = timedelta(seconds=10)
    batch_size: int = 20

    @property
    def lease(self) -> timedelta:
        """How long a claim keeps other senders away: longer than any send may take."""
        return self.send_timeout + LEASE_MARGIN

    def retry_after(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed send."""
        doublings = min(max(attempts - 1, 0), MAX_DOUBLINGS)
        return min(self.backoff * (1 << doublings), self.backoff_max)

    @classmethod
    def from_settings(cls, settings: NotificationSettings) -> DeliveryPolicy:
        return cls(
            max_attempts=settings.notification_max_attempts,
            backoff=timedelta(seconds=settings.notification_backoff_s),
            backoff_max=timedelta(seconds=settings.notification_backoff_max_s),
            send_timeout=timedelta(seconds=settings.notification_timeout_s),
            batch_size=settings.notification_batch,
        )


@dataclass(frozen=True, slots=True)
class Enqueued:
    """The outbox row of a notice; ``created`` is False when it was there already."""

    id: int
    created: bool


@dataclass(frozen=True, slots=True)
class Claim:
    """A message claimed for one send: ``attempt`` fences the outcome's record."""

    message: Message
    attempt: int


Outcome = SendResult | SendFailed


async def enqueue(
    session: AsyncSession,
    *,
    channel: Channel,
    recipient: str,
    kind: str,
    body: str,
    language: str,
    subject_type: str,
    subject_id: str | int,
    subject: str | None = None,
    dedupe_key: str = "",
    now: datetime | None = None,
) -> Enqueued:
    """Queue a message in the caller's transaction (due at ``now``, default the
    transaction's time); the same (subject, kind, dedupe key) is queued once."""
    created = await session.scalar(
        insert(Notification)
        .values(
            channel=channel.value,
            recipient=recipient,
            kind=kind,
            subject=subject,
            body=body,
            language=language,
            subject_type=subject_type,
            subject_id=str(subject_id),
            dedupe_key=dedupe_key,
            status=Status.queued.value,
            next_attempt_at=func.now() if now is None else now,
        )
        .on_conflict_do_nothing(
            constraint="uq_notifications_subject_type_subject_id_kind_dedupe_key"
        )
        .returning(Notification.id)
    )
    if created is not None:
        return Enqueued(id=created, created=True)
    return Enqueued(
        id=await _existing(session, subject_type, subject_id, kind, dedupe_key), created=False
    )


async def _existing(
    session: AsyncSession, subject_type: str, subject_id: str | int, kind: str, dedupe_key: str
) -> int:
    found = await session.scalar(
        select(Notification.id).where(
            Notification.subject_type == subject_type,
            Notification.subject_id == str(subject_id),
            Notification.kind == kind,
            Notification.dedupe_key == dedupe_key,
        )
    )
    assert found is not None  # the insert met it, and rows are never deleted
    return found


async def list_for(
    session: AsyncSession, *, subject_type: str, subject_id: str | int
) -> Sequence[Notification]:
    """The notices about one subject, oldest first (what the customer was told, and when)."""
    rows = await session.scalars(
        select(Notification)
        .where(
            Notification.subject_type == subject_type,
            Notification.subject_id == str(subject_id),
        )
        .order_by(Notification.id)
    )
    return rows.all()


async def forget(
    session: AsyncSession, *, subject_type: str, subject_id: str | int, marker: str
) -> int:
    """Replace the recipient, subject line and text of every notice about a subject with
    ``marker`` (the subject's personal data is being removed); a notice not yet sent is
    given up as ``failed``. Returns how many notices were changed."""
    pending = Notification.status.in_([s.value for s in PENDING])
    done = await session.execute(
        update(Notification)
        .where(
            Notification.subject_type == subject_type,
            Notification.subject_id == str(subject_id),
        )
        .values(
            recipient=marker,
            subject=case((Notification.subject.is_(None), None), else_=marker),
            body=marker,
            status=case((pending, Status.failed.value), else_=Notification.status),
            next_attempt_at=None,
            last_error=case((pending, FORGOTTEN), else_=Notification.last_error),
        )
        .returning(Notification.id)
        .execution_options(synchronize_session=False)
    )
    return len(done.all())


# --- delivery ---------------------------------------------------------------------------------


async def deliver_due(
    session: AsyncSession, *, senders: Senders, policy: DeliveryPolicy, now: datetime
) -> int:
    """Claim, send and record one batch of due messages; returns how many were claimed.

    Commits the claim before sending (see the module's docstring); the outcomes are left
    in ``session``'s transaction for the caller to commit.
    """
    claims = await claim_due(session, policy=policy, now=now)
    await session.commit()
    outcomes = await asyncio.gather(*(_send(senders, claim, policy) for claim in claims))
    for claim, outcome in zip(claims, outcomes, strict=True):
        await record_outcome(session, claim=claim, outcome=outcome, policy=policy, now=now)
    return len(claims)


async def claim_due(session: AsyncSession, *, policy: DeliveryPolicy, now: datetime) -> list[Claim]:
    """Lock and claim a batch of due rows; a row out of attempts is marked dead instead."""
    rows = await session.scalars(
        select(Notification)
        .where(Notification.status.in_(PENDING), Notification.next_attempt_at <= now)
        .order_by(Notification.next_attempt_at, Notification.id)
        .limit(policy.batch_size)
        .with_for_update(skip_locked=True)
    )
    claims: list[Claim] = []
    for row in rows.all():
        if row.attempts >= policy.max_attempts:
            _dead(row, "the last send's outcome was never recorded")
            continue
        row.status = Status.sending.value
        row.attempts += 1
        row.next_attempt_at = now + policy.lease
        claims.append(Claim(message=_message(row), attempt=row.attempts))
    await session.flush()
    return claims


def _dead(row: Notification, reason: str) -> None:
    row.status = Status.dead.value
    row.next_attempt_at = None
    row.last_error = row.last_error or reason


def _message(row: Notification) -> Message:
    return Message(
        reference=str(row.id),
        channel=Channel(row.channel),
        recipient=row.recipient,
        kind=row.kind,
        subject=row.subject,
        body=row.body,
        language=row.language,
    )


async def _send(senders: Senders, claim: Claim, policy: DeliveryPolicy) -> Outcome:
    """One send, bounded by the send timeout; whatever goes wrong becomes a ``SendFailed``."""
    sender = senders.get(claim.message.channel)
    if sender is None:
        return SendFailed(f"no sender for {claim.message.channel.value}", retryable=False)
    try:
        async with asyncio.timeout(policy.send_timeout.total_seconds()):
            return await sender.send(claim.message)
    except SendFailed as failed:
        return failed
    except TimeoutError:
        return SendFailed("timed out", retryable=True)
    except Exception as exc:
        # An adapter's own defect: retried, bounded by the attempts, never lost silently.
        return SendFailed(type(exc).__name__, retryable=True)


async def record_outcome(
    session: AsyncSession,
    *,
    claim: Claim,
    outcome: Outcome,
    policy: DeliveryPolicy,
    now: datetime,
) -> bool:
    """Write what a send did; False when the claim had lapsed and the row moved on."""
    result = await session.execute(
        update(Notification)
        .where(
            Notification.id == int(claim.message.reference),
            Notification.status == Status.sending.value,
            Notification.attempts == claim.attempt,
        )
        .values(**_outcome_values(claim, outcome, policy, now))
        .returning(Notification.id)
    )
    return result.first() is not None


def _outcome_values(
    claim: Claim, outcome: Outcome, policy: DeliveryPolicy, now: datetime
) -> dict[str, object]:
    if isinstance(outcome, SendResult):
        return {
            "status": Status.sent.value,
            "provider_message_id": outcome.provider_id,
            "sent_at": now,
            "next_attempt_at": None,
            "last_error": None,
        }
    error = outcome.reason[:ERROR_LIMIT]
    if not outcome.retryable:
        return {"status": Status.failed.value, "next_attempt_at": None, "last_error": error}
    if claim.attempt >= policy.max_attempts:
        return {"status": Status.dead.value, "next_attempt_at": None, "last_error": error}
    return {
        "status": Status.queued.value,
        "next_attempt_at": now + policy.retry_after(claim.attempt),
        "last_error": error,
    }


# --- the sweep --------------------------------------------------------------------------------


def delivery_sweep(senders: Senders, policy: DeliveryPolicy) -> Sweep:
    """The timer worker's sweep that delivers one batch of due messages each run."""

    async def sweep(session: AsyncSession, now: datetime) -> int:
        return await deliver_due(session, senders=senders, policy=policy, now=now)

    return sweep


def register(registry: TimerRegistry, settings: NotificationSettings | None = None) -> None:
    """Deliver the outbox from every instance's timer worker, through the configured
    providers (``HOTLINE_SMS_URL``, ``HOTLINE_EMAIL_URL``; unset: log only)."""
    settings = settings or NotificationSettings()
    registry.register_sweep(
        DELIVERY_SWEEP,
        delivery_sweep(senders_from_settings(settings), DeliveryPolicy.from_settings(settings)),
        every_s=settings.notification_sweep_s,
    )
