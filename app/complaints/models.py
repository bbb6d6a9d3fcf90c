"""The complaint desk's tables: complaints, their clocks, and their hash-chained audit trail.

Theory of operation
-------------------

``complaints`` holds one row per matter: who complains (the complainant, marked ``self`` or
``authorised_agent``), how to reach them, the matter (when, where, which branch, what
happened), the grounds and the request, as registered; then what the desk has learnt
(categories, severity, assignee, escalation level) and the facts each transition brought
(``facts``: the resolution, the pause reason, ...). The same matter raised again through
another channel adds its facts to ``linked`` instead of a second row.

``complaint_clocks`` keeps each named clock's history, the only truth about it: the policy
it runs under (a snapshot, so a later policy change is a deliberate recomputation, not an
accident), its start, its pauses (``[{"start", "end", "reason"}]``), its approved extensions
(``[{"days", "reason", "approver_id", ...}]``) and its stop. ``due_at`` is a cache derived
from that history by ``app.complaints.clocks`` and rewritten whenever the history changes,
so the lists can filter on it with an index. The functions at the end read a clock row as
``app.complaints.clocks`` does (``policy_of``, ``history_of``) and edit its history
(``end_pause``, ``stop_clock``); ``recompute`` rewrites the cache.

``complaint_audit`` is append-only: one row per step, ``(complaint_id, seq)`` unique, each
row chained to the one before (``app.complaints.chain``). The migration adds a trigger that
refuses UPDATE and DELETE, but for one UPDATE: anonymisation's redaction, which empties an
entry's ``reason`` and ``data`` and stores their digest in ``content_sha256`` (the hash
covers the content through that digest, so the chain still verifies), on a complaint already
anonymised. The chain is what detects tampering by whoever can drop the trigger.
``complaints.audit_seq`` and ``audit_hash`` record the head of the chain, so a removed last
entry is detected too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column, query_expression

from app.complaints.calendar import WorkCalendar
from app.complaints.clocks import (
    ClockHistory,
    ClockKind,
    ClockPolicy,
    ClockUnit,
    PauseReason,
    due_at,
)
from app.complaints.lifecycle import ComplaintStatus, EscalationLevel
from app.db import Base, TimestampMixin


class Channel(StrEnum):
    """Where a complaint came in."""

    phone = "phone"
    web = "web"
    app = "app"
    email = "email"
    letter = "letter"
    counter = "counter"


class Relation(StrEnum):
    """Who the complainant is to the customer."""

    self = "self"
    authorised_agent = "authorised_agent"


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Complaint(TimestampMixin, Base):
    """One matter a customer (or their authorised agent) complains about."""

    __tablename__ = "complaints"
    __table_args__ = (
        CheckConstraint(_in("status", ComplaintStatus), name="status"),
        CheckConstraint(_in("channel", Channel), name="channel"),
        CheckConstraint(_in("complainant_relation", Relation), name="complainant_relation"),
        CheckConstraint(_in("escalation_level", EscalationLevel), name="escalation_level"),
        # Linking looks for the customer's open complaints; the lists filter by these.
        Index("ix_complaints_customer_id_status", "customer_id", "status"),
        Index("ix_complaints_status_id", "status", "id"),
        Index("ix_complaints_assignee_id_id", "assignee_id", "id"),
        Index("ix_complaints_branch_id", "branch", "id"),
        Index("ix_complaints_categories", "categories", postgresql_using="gin"),
        Index("ix_complaints_search", "search", postgresql_using="gin"),
        # Archive and retention (app.complaints.archive, app.complaints.anonymise): only an
        # archived complaint is anonymised, a held one never, and a hold has its moment.
        CheckConstraint("anonymised_at IS NULL OR status = 'archived'", name="anonymised_archived"),
        CheckConstraint("NOT (legal_hold AND anonymised_at IS NOT NULL)", name="held_kept"),
        CheckConstraint("legal_hold = (legal_hold_at IS NOT NULL)", name="legal_hold_at"),
        # The retention sweep's candidates, oldest archive first; and the complaints archived
        # by a request, whose archived_at the archive sweep stamps from the audit trail.
        Index(
            "ix_complaints_retention_due",
            "archived_at",
            postgresql_where=text("anonymised_at IS NULL AND NOT legal_hold"),
        ),
        Index(
            "ix_complaints_archive_unstamped",
            "id",
            postgresql_where=text("status = 'archived' AND archived_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    reference: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    channel: Mapped[str] = mapped_column(String(16), nullable=False)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    complainant_name: Mapped[str] = mapped_column(String(200), nullable=False)
    complainant_contact: Mapped[str] = mapped_column(String(200), nullable=False)
    complainant_relation: Mapped[str] = mapped_column(String(24), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    location: Mapped[str] = mapped_column(Text, nullable=False)
    branch: Mapped[str] = mapped_column(String(100), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    grounds: Mapped[str] = mapped_column(Text, nullable=False)
    request: Mapped[str] = mapped_column(Text, nullable=False)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    categories: Mapped[list[str]] = mapped_column(
        ARRAY(String(64)), nullable=False, server_default="{}"
    )
    severity: Mapped[str | None] = mapped_column(String(16))
    escalation_level: Mapped[str] = mapped_column(
        String(16), nullable=False, server_default=EscalationLevel.agent.value
    )
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    registered_by: Mapped[str] = mapped_column(
        String(64), nullable=False, comment="the actor who registered it: agent:<id>, ..."
    )
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    due_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), comment="the resolution clock's due time (a derived cache)"
    )
    facts: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default="{}", comment="the facts transitions brought"
    )
    linked: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default="[]", comment="the same matter raised again"
    )
    audit_seq: Mapped[int] = mapped_column(
        Integer, nullable=False, server_default="0", comment="the audit chain's last seq"
    )
    audit_hash: Mapped[str | None] = mapped_column(
        String(64), comment="the audit chain's last hash (its head)"
    )
    archived_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), comment="when it was archived (its audit entry's time)"
    )
    anonymised_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), comment="when retention removed its personal data"
    )
    customer_tier: Mapped[str | None] = mapped_column(
        String(32), comment="the customer's tier, kept when anonymisation unlinks the customer"
    )
    # The linked customer's tier now, or the kept one; loaded only where a query asks for it
    # (``with_expression``, as the export does): never a column.
    tier: Mapped[str | None] = query_expression()
    legal_hold: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=false(), comment="true: never anonymised"
    )
    legal_hold_reason: Mapped[str | None] = mapped_column(Text)
    legal_hold_by: Mapped[str | None] = mapped_column(
        String(64), comment="the actor who placed the hold: agent:<id>"
    )
    legal_hold_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Written whole on every change (app.complaints.search_terms), never read back: deferred.
    search: Mapped[str] = mapped_column(
        TSVECTOR,
        nullable=False,
        server_default=text("''::tsvector"),
        deferred=True,
        deferred_raiseload=True,
        comment="the words it is found by (app.complaints.search_terms)",
    )


class ComplaintClock(Base):
    """One named clock of a complaint, as its history."""

    __tablename__ = "complaint_clocks"
    __table_args__ = (
        Index("ix_complaint_clocks_complaint_id_kind", "complaint_id", "kind", unique=True),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id"), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    policy: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, comment="the policy it runs under: kind, target, unit, warnings"
    )
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pauses: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default="[]", comment='[{"start", "end", "reason"}]'
    )
    extensions: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default="[]", comment='[{"days", "reason", "approver_id"}]'
    )
    due_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, comment="derived from the history (a cache)"
    )


class ComplaintAudit(Base):
    """One step of a complaint's history, chained to the step before."""

    __tablename__ = "complaint_audit"

    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    actor: Mapped[str] = mapped_column(String(64), nullable=False)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    before: Mapped[str | None] = mapped_column(String(32))
    after: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    content_sha256: Mapped[str | None] = mapped_column(
        String(64),
        comment="redacted: the digest of the reason and data removed; null while they are kept",
    )
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


# --- a clock row as app.complaints.clocks reads it ------------------------------------------


def policy_of(row: ComplaintClock) -> ClockPolicy:
    """The policy a clock runs under, from its snapshot."""
    p = row.policy
    return ClockPolicy(
        kind=ClockKind(p["kind"]),
        target=int(p["target"]),
        unit=ClockUnit(p["unit"]),
        warnings=tuple(p.get("warnings", ())),
        pause_reasons=frozenset(PauseReason(r) for r in p.get("pause_reasons", ())),
        extendable_to=None if p.get("extendable_to") is None else tuple(p["extendable_to"]),
    )


def snapshot(policy: ClockPolicy) -> dict[str, Any]:
    """A policy as ``complaint_clocks.policy`` keeps it."""
    return {
        "kind": policy.kind.value,
        "target": policy.target,
        "unit": policy.unit.value,
        "warnings": list(policy.warnings),
        "pause_reasons": sorted(r.value for r in policy.pause_reasons),
        "extendable_to": None if policy.extendable_to is None else list(policy.extendable_to),
    }


def _moment(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def history_of(row: ComplaintClock) -> ClockHistory:
    """A clock's history as ``app.complaints.clocks`` reads it."""
    return ClockHistory(
        started_at=row.started_at,
        pauses=tuple((datetime.fromisoformat(p["start"]), _moment(p["end"])) for p in row.pauses),
        extensions=tuple(int(e["days"]) for e in row.extensions),
        stopped_at=row.stopped_at,
    )


def recompute(row: ComplaintClock, calendar: WorkCalendar, now: datetime) -> None:
    """The clock's cached ``due_at``, from its history (a paused clock: as if resumed now)."""
    row.due_at = due_at(policy_of(row), history_of(row), calendar, now=now)


def iso(moment: datetime) -> str:
    """A timestamp as histories store it: ISO-8601 in UTC."""
    return moment.astimezone(UTC).isoformat()


def is_running(row: ComplaintClock) -> bool:
    """Neither stopped nor paused."""
    return row.stopped_at is None and not (row.pauses and row.pauses[-1]["end"] is None)


def stop_clock(row: ComplaintClock, now: datetime) -> None:
    """Stop the clock at ``now`` (ending a pause in course); a stopped clock stays as it is."""
    if row.stopped_at is not None:
        return
    end_pause(row, now)
    row.stopped_at = now


def end_pause(row: ComplaintClock, now: datetime) -> None:
    """End the pause in course, if any, at ``now``."""
    if row.pauses and row.pauses[-1]["end"] is None:
        row.pauses = [*row.pauses[:-1], {**row.pauses[-1], "end": iso(now)}]
