"""The outbox table: one row per message to a customer, with its delivery state.

Theory of operation
-------------------

A row is written by ``outbox.enqueue`` in the transaction of the change it tells the
customer about, so it exists if and only if that change committed. ``(subject_type,
subject_id, kind, dedupe_key)`` is unique: the same notice about the same thing is one row
however often it is enqueued, and so it is sent at most once.

The status moves ``queued`` → ``sending`` (claimed by a sender; ``attempts`` counts the
claims) → ``sent``, or back to ``queued`` with ``next_attempt_at`` pushed out after a failure
worth retrying, or to ``failed`` (the provider refused it for good) or ``dead`` (the attempts
ran out). While a row is ``sending``, ``next_attempt_at`` is the end of the claim's lease: a
sender that dies mid-send leaves the row to be claimed again once the lease is over. Only
``queued`` and ``sending`` rows have a ``next_attempt_at``; the partial index holds just them.

``recipient`` is stored as given (the phone number or address) and never written to a log;
``last_error`` says what failed (an HTTP status, a timeout) and never quotes the provider's
reply, which may repeat the recipient.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class Channel(StrEnum):
    """How a message reaches the customer."""

    sms = "sms"
    email = "email"


class Status(StrEnum):
    """Where a message is on its way to the customer."""

    queued = "queued"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    dead = "dead"


PENDING = (Status.queued, Status.sending)
"""The statuses a sender still claims (``sending``: once its lease is over)."""


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Notification(Base):
    """One message to a customer and what became of it."""

    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint(_in("channel", Channel), name="channel"),
        CheckConstraint(_in("status", Status), name="status"),
        CheckConstraint("attempts >= 0", name="attempts"),
        UniqueConstraint(
            "subject_type",
            "subject_id",
            "kind",
            "dedupe_key",
            name="uq_notifications_subject_type_subject_id_kind_dedupe_key",
        ),
        Index(
            "ix_notifications_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('queued', 'sending')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), nullable=False)
    recipient: Mapped[str] = mapped_column(
        String(320), nullable=False, comment="phone number or e-mail address, as given"
    )
    kind: Mapped[str] = mapped_column(
        String(64), nullable=False, comment="what the notice is: complaint.resolved, ..."
    )
    subject: Mapped[str | None] = mapped_column(String(300), comment="an e-mail's subject line")
    body: Mapped[str] = mapped_column(Text, nullable=False)
    language: Mapped[str] = mapped_column(String(16), nullable=False)
    subject_type: Mapped[str] = mapped_column(
        String(32), nullable=False, comment="what the notice is about: complaint, ..."
    )
    subject_id: Mapped[str] = mapped_column(String(64), nullable=False)
    dedupe_key: Mapped[str] = mapped_column(
        String(128),
        nullable=False,
        server_default="",
        comment="tells apart notices of one kind about one subject that are meant to differ",
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True),
        comment="queued: when to try; sending: when the claim lapses; otherwise null",
    )
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
