"""Queues, contacts and offers: the ACD's tables.

Invariant 2 lives here as much as in code: a partial unique index lets a contact hold at most
one pending offer, and ``agent_channels.load <= capacity`` (see app/agents/models.py) keeps
an agent within its capacity whatever the code does.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, TimestampMixin
from app.routing.contact_states import ContactStatus
from app.routing.scoring import Strategy


class OfferStatus(StrEnum):
    pending = "pending"
    accepted = "accepted"
    rejected = "rejected"
    expired = "expired"
    rescinded = "rescinded"


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Queue(TimestampMixin, Base):
    """Where contacts wait, with the rules for routing them."""

    __tablename__ = "queues"
    __table_args__ = (
        CheckConstraint(_in("strategy", Strategy), name="strategy"),
        CheckConstraint("overflow_queue_id IS DISTINCT FROM id", name="overflow_not_self"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    channels: Mapped[list[str]] = mapped_column(ARRAY(String(16)), nullable=False)
    strategy: Mapped[str] = mapped_column(String(32), nullable=False)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False, server_default="[]")
    sl_threshold_s: Mapped[float] = mapped_column(Float, nullable=False)
    sl_target_pct: Mapped[float] = mapped_column(Float, nullable=False)
    sl_counts_abandons: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true")
    short_abandon_s: Mapped[float] = mapped_column(Float, nullable=False, server_default="5")
    ring_timeout_s: Mapped[float] = mapped_column(Float, nullable=False)
    wrap_up_s: Mapped[float] = mapped_column(Float, nullable=False)
    reject_delay_s: Mapped[float] = mapped_column(Float, nullable=False, server_default="0")
    no_answer_delay_s: Mapped[float] = mapped_column(Float, nullable=False, server_default="0")
    max_no_answer: Mapped[int] = mapped_column(Integer, nullable=False, server_default="3")
    max_wait_s: Mapped[float | None] = mapped_column(Float)
    max_length: Mapped[int | None] = mapped_column(Integer)
    overflow_queue_id: Mapped[int | None] = mapped_column(
        ForeignKey("queues.id", ondelete="SET NULL")
    )


class Contact(TimestampMixin, Base):
    """One customer contact from any channel, from enqueue to its terminal state."""

    __tablename__ = "contacts"
    __table_args__ = (
        CheckConstraint(_in("status", ContactStatus), name="status"),
        Index(
            "ix_contacts_queued_deadline",
            "deadline_at",
            postgresql_where=text("status = 'queued'"),
        ),
        # A contact's position: the queued contacts of its queue ahead of it by deadline.
        Index(
            "ix_contacts_queued_queue_deadline",
            "queue_id",
            "deadline_at",
            postgresql_where=text("status = 'queued'"),
        ),
        Index(
            "ix_contacts_completed",
            "queue_id",
            "completed_at",
            postgresql_where=text("completed_at IS NOT NULL"),
        ),
        Index(
            "ix_contacts_waiting",
            "queue_id",
            "enqueued_at",
            postgresql_where=text("status IN ('queued', 'offered')"),
        ),
        Index(
            "ix_contacts_agent_id",
            "agent_id",
            postgresql_where=text("status IN ('offered', 'connected', 'wrap_up')"),
        ),
        # A customer's contacts, newest first (the console's customer card).
        Index(
            "ix_contacts_customer_id_enqueued",
            "customer_id",
            "enqueued_at",
            "id",
            postgresql_where=text("customer_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id"), nullable=False)
    channel: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    caller: Mapped[str | None] = mapped_column(String(32), comment="phone or handle, if known")
    tier: Mapped[str] = mapped_column(String(32), nullable=False)
    subject: Mapped[str | None] = mapped_column(String(500))
    language: Mapped[str | None] = mapped_column(String(16))
    enqueued_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, comment="original; kept across transfers"
    )
    routing_started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    deadline_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, comment="enqueued_at + the tier's SL target"
    )
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    announced_position: Mapped[int | None] = mapped_column(Integer)
    short_abandon: Mapped[bool | None] = mapped_column(Boolean)
    disposition: Mapped[str | None] = mapped_column(String(64))
    notes: Mapped[str | None] = mapped_column(Text)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id"), comment="the contact this one was transferred or overflowed from"
    )
    next_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id"), comment="the contact this one became in another queue"
    )
    declined_by: Mapped[list[int]] = mapped_column(
        ARRAY(BigInteger),
        nullable=False,
        server_default="{}",
        comment="agents who rejected or missed an offer of this contact",
    )
    skills: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB,
        nullable=False,
        server_default="[]",
        comment="skills an agent must hold to take it: [{skill, min_level}]",
    )
    integration: Mapped[str | None] = mapped_column(
        String(64),
        comment="the channel (its API keys' name) that queued it, or the contact it continues",
    )


class Offer(Base):
    """A lease: this contact is ringing at this agent until ``expires_at``."""

    __tablename__ = "offers"
    __table_args__ = (
        CheckConstraint(_in("status", OfferStatus), name="status"),
        # Invariant 2: a contact is offered to at most one agent at a time.
        Index(
            "uq_offers_contact_id_pending",
            "contact_id",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_offers_agent_id_status", "agent_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), nullable=False)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), nullable=False)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id"), nullable=False)
    channel: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="pending")
    reason: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CustomerAffinity(Base):
    """Whom a customer's next contacts are offered to first (``app.routing.affinity``): one
    row per customer, set and withdrawn by the domain that asked (``source``, ``source_ref``)."""

    __tablename__ = "customer_affinities"
    __table_args__ = (
        # Positive and finite (NaN sorts above infinity in PostgreSQL, so both are refused).
        CheckConstraint("hold_s > 0 AND hold_s < 'Infinity'::float8", name="hold_s"),
    )

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    agent_id: Mapped[int] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), nullable=False
    )
    hold_s: Mapped[float] = mapped_column(
        Float,
        nullable=False,
        comment="a contact goes to the agent first for this long after it queued",
    )
    source: Mapped[str] = mapped_column(
        String(32), nullable=False, comment="who asked for it: complaint, ..."
    )
    source_ref: Mapped[str] = mapped_column(
        String(64), nullable=False, comment="what of the source's it is for: a complaint id, ..."
    )
    set_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
