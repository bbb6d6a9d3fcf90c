"""The IVR's tables: flows and their versions, the numbers they answer, calls and their steps.

Theory of operation
-------------------

``ivr_flows`` keeps every uploaded version of a flow (``name``, ``version``), never changed
once stored. ``ivr_numbers`` points each called number at the version that answers it now;
activating another version re-points the number and nothing else.

``ivr_calls`` holds a call's whole IVR state between webhooks, so any instance can take the
next one: the flow version the call started on (kept for the call's life: activation never
changes a call in progress), the machine's state (JSON), the number of steps taken, where
the call is (``in_ivr``, ``queued``, ``bridged``, ``ended``), its contact once enqueued, its
path (``transcript``), how it ended (``outcome``, and the node a caller hung up at), and when
a webhook for it was last heard (``heard_at``: ``app.ivr.silence`` asks after calls silent
for too long) and when a turn of the wait loop last found its caller queued (``waited_at``:
a JSON provider's queued call is held to the silence once its provider keeps the loop),
a redirect to the agent in flight at the provider (``redirecting_until``, its lease:
``app.ivr.bridge``) and a callback attempt being placed (``placing_until``, its lease:
``app.ivr.callbacks``).

``ivr_steps`` is the exactly-once record: one row per step taken, holding the response
given. ``(call_id, seq)`` and ``(call_id, token)`` are unique, so a webhook delivered twice
(the same step, or the provider's idempotency token) finds its row and gets the stored
response, and two deliveries racing each other cannot both write the step; the call's row
lock orders them, the constraints stand behind the lock.

``telephony_signatures`` remembers the JSON webhooks' signatures, each with the call it was
sent for, for the replay window, so a captured request cannot be sent again.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class CallStatus(StrEnum):
    in_ivr = "in_ivr"
    queued = "queued"
    bridged = "bridged"
    ended = "ended"


class Provider(StrEnum):
    twilio = "twilio"
    json = "json"


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class IvrFlow(Base):
    """One version of a flow document, as uploaded (validated), never changed."""

    __tablename__ = "ivr_flows"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    document: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    numbers: Mapped[list[str]] = mapped_column(
        ARRAY(String(32)),
        nullable=False,
        server_default="{}",
        comment="the called numbers the document says it serves",
    )
    uploaded_by: Mapped[str] = mapped_column(String(64), nullable=False)
    uploaded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class IvrNumber(Base):
    """A called number (``To``) and the flow version that answers it."""

    __tablename__ = "ivr_numbers"

    number: Mapped[str] = mapped_column(String(32), primary_key=True)
    flow_id: Mapped[int] = mapped_column(ForeignKey("ivr_flows.id"), nullable=False)
    activated_by: Mapped[str] = mapped_column(String(64), nullable=False)
    activated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class IvrCall(Base):
    """A call in the IVR, from the first webhook to its end."""

    __tablename__ = "ivr_calls"
    __table_args__ = (
        UniqueConstraint("provider", "call_ref"),
        CheckConstraint(_in("status", CallStatus), name="status"),
        CheckConstraint(_in("provider", Provider), name="provider"),
        CheckConstraint("step >= 0", name="step_not_negative"),
        Index("ix_ivr_calls_started_at", "started_at"),
        Index(
            "ix_ivr_calls_contact_id", "contact_id", postgresql_where=text("contact_id IS NOT NULL")
        ),
        Index(
            "ix_ivr_calls_heard_at",
            "heard_at",
            postgresql_where=text("status IN ('in_ivr', 'queued', 'bridged')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16), nullable=False)
    call_ref: Mapped[str] = mapped_column(
        String(64), nullable=False, comment="the provider's id of the call (Twilio's CallSid)"
    )
    caller: Mapped[str | None] = mapped_column(String(32), comment="From, normalised if a phone")
    called: Mapped[str] = mapped_column(String(32), nullable=False, comment="To, normalised")
    flow_id: Mapped[int] = mapped_column(ForeignKey("ivr_flows.id"), nullable=False)
    state: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    step: Mapped[int] = mapped_column(
        Integer, nullable=False, server_default="0", comment="steps taken; the next one's seq"
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    announced_position: Mapped[int | None] = mapped_column(
        Integer, comment="the last queue position told to the caller (never goes up)"
    )
    transcript: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default="[]"
    )
    outcome: Mapped[str | None] = mapped_column(String(32))
    drop_node: Mapped[str | None] = mapped_column(
        String(64), comment="the node the caller hung up at, when they left in the IVR"
    )
    provider_status: Mapped[str | None] = mapped_column(
        String(32), comment="the last status the provider reported"
    )
    started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    heard_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True),
        server_default=func.now(),
        nullable=False,
        comment="when a webhook for the call was last heard (the database's clock)",
    )
    waited_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), comment="when a turn of the wait loop last found the caller queued"
    )
    redirecting_until: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True),
        comment="a redirect to the agent is in flight at the provider until then (its lease)",
    )
    placing_until: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True),
        comment="a callback attempt is being placed at the provider until then (its lease)",
    )
    left_ivr_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), comment="enqueued, transferred or ended: the time in the IVR ends"
    )
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IvrStep(Base):
    """One step of a call and the response it was given: the exactly-once record."""

    __tablename__ = "ivr_steps"
    __table_args__ = (UniqueConstraint("call_id", "seq"), UniqueConstraint("call_id", "token"))

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    call_id: Mapped[int] = mapped_column(
        ForeignKey("ivr_calls.id", ondelete="CASCADE"), nullable=False
    )
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    token: Mapped[str] = mapped_column(
        String(128),
        nullable=False,
        comment="the delivery's fingerprint: the provider's idempotency token, else the step",
    )
    event: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    response: Mapped[str] = mapped_column(Text, nullable=False)
    content_type: Mapped[str] = mapped_column(String(64), nullable=False)
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class TelephonySignature(Base):
    """A JSON webhook's signature and the call it was sent for, remembered for the replay
    window: the same signature for another call is another request (the body, which the
    signature covers, need not name the call)."""

    __tablename__ = "telephony_signatures"
    __table_args__ = (Index("ix_telephony_signatures_seen_at", "seen_at"),)

    signature: Mapped[str] = mapped_column(String(64), primary_key=True)
    call_ref: Mapped[str] = mapped_column(
        String(64),
        primary_key=True,
        comment="the call the request was sent for (the URL's call id)",
    )
    seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
