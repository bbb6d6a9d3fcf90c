"""The access log: who looked up or read personal data, when, and what came of it.

Theory of operation
-------------------

Some reads can serve as an oracle: a lookup by phone number, or a write refused because
another customer already holds the number, tells the reader something about data their role
sees only masked. Every such attempt leaves one row in ``access_log`` saying who made it
(the user's id, and their role and site at that moment), when, what kind of access it was
(``AccessKind``), which record it reached (``subject_id``, or null when it reached none) and
how it ended (``AccessOutcome``). What was searched is kept only in a masked form
(``query``): the log of a phone sweep must not become the list of numbers tried.

An access that succeeds is recorded in the request's own transaction (``record_access``):
it is on record exactly when the answer is. An attempt that fails (refused by the rate
limit, ended by a uniqueness conflict, a record that does not exist) rolls its request
back, so it is recorded in a short transaction of its own (``record_access_apart``): a
refused attempt is an attempt all the same.

Supervisors read the entries of their own site's agents and admins read every entry
(``visible_to``); other roles read none. Entries are listed by id, the order they were
written, and page like every list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ColumnElement,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    String,
    false,
    func,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from app.agents.models import Role
from app.agents.permissions import Principal
from app.db import Base, unit_of_work


class AccessKind(StrEnum):
    """What was looked at, and how."""

    customer_lookup_phone = "customer.lookup_phone"
    customer_conflict = "customer.conflict"
    customer_read = "customer.read"
    contact_read = "contact.read"
    complaint_read = "complaint.read"
    complaint_public_lookup = "complaint.public_lookup"  # by reference and phone, no sign-in
    complaint_export = "complaint.export"  # complaints written out (app/complaints/export.py)


class AccessOutcome(StrEnum):
    """How an access ended."""

    found = "found"
    not_found = "not_found"
    conflict = "conflict"
    limited = "limited"


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class AccessLogEntry(Base):
    """One attempt to reach personal data."""

    __tablename__ = "access_log"
    __table_args__ = (
        CheckConstraint(_in("kind", AccessKind), name="kind"),
        CheckConstraint(_in("outcome", AccessOutcome), name="outcome"),
        # A supervisor reads their site's entries, an admin one agent's: both by id.
        Index("ix_access_log_site_id", "site", "id"),
        Index("ix_access_log_agent_id_id", "agent_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    # No cascade: an agent who looked at data cannot be deleted out of the record of it.
    # None: nobody signed in (a customer's public lookup)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    site: Mapped[str | None] = mapped_column(String(64), comment="the user's site at the time")
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    subject_id: Mapped[int | None] = mapped_column(
        BigInteger, comment="the record reached (a customer's id for customer.*), if any"
    )
    query: Mapped[str | None] = mapped_column(
        String(40), comment="what was asked for, with any number masked"
    )


@dataclass(frozen=True, slots=True)
class Access:
    """One attempt, as the code that made it describes it."""

    kind: AccessKind
    outcome: AccessOutcome
    subject_id: int | None = None
    query: str | None = None


def entry_for(
    principal: Principal, access: Access, *, at: datetime | None = None
) -> AccessLogEntry:
    """The row recording ``access`` by ``principal``."""
    entry = AccessLogEntry(
        agent_id=principal.id,
        role=principal.role.value,
        site=principal.site,
        kind=access.kind.value,
        outcome=access.outcome.value,
        subject_id=access.subject_id,
        query=access.query,
    )
    if at is not None:
        entry.at = at
    return entry


async def record_access(
    session: AsyncSession, principal: Principal, access: Access, *, at: datetime | None = None
) -> None:
    """Record ``access`` in ``session``'s transaction: on record if, and only if, it commits."""
    session.add(entry_for(principal, access, at=at))
    await session.flush()


async def record_access_apart(
    sessionmaker: async_sessionmaker[AsyncSession],
    principal: Principal,
    access: Access,
    *,
    at: datetime | None = None,
) -> None:
    """Record ``access`` in a transaction of its own, for a request about to be rolled back."""
    async with unit_of_work(sessionmaker) as session:
        await record_access(session, principal, access, at=at)


def visible_to(principal: Principal) -> ColumnElement[bool]:
    """The entries ``principal`` may read: an admin all, a supervisor their site's agents'."""
    if principal.role is Role.admin:
        return true()
    if principal.role is Role.supervisor and principal.site is not None:
        return (AccessLogEntry.site == principal.site) & (AccessLogEntry.role == Role.agent.value)
    return false()


async def list_access(
    session: AsyncSession,
    *,
    principal: Principal,
    agent_id: int | None = None,
    kind: AccessKind | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> Sequence[AccessLogEntry]:
    """A page of the entries ``principal`` may read, oldest first, after ``after_id``."""
    stmt = (
        select(AccessLogEntry)
        .where(visible_to(principal), AccessLogEntry.id > after_id)
        .order_by(AccessLogEntry.id)
        .limit(limit)
    )
    if agent_id is not None:
        stmt = stmt.where(AccessLogEntry.agent_id == agent_id)
    if kind is not None:
        stmt = stmt.where(AccessLogEntry.kind == kind.value)
    return (await session.scalars(stmt)).all()
