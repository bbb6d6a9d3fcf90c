"""Agents (the users of Hotline), their skills and per-channel capacity."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, TimestampMixin


class Role(StrEnum):
    """Who a principal is. ``integration`` is a channel's service account (an API key,
    ``app/agents/api_keys.py``), never a person: no agent row may hold it."""

    agent = "agent"
    supervisor = "supervisor"
    admin = "admin"
    integration = "integration"


PERSON_ROLES = (Role.agent, Role.supervisor, Role.admin)
"""The roles an agent (a person who signs in with a password) may hold."""


def _in(column: str, values: Iterable[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Skill(Base):
    """Something an agent can be good at (``credit_card``, ``mandarin``)."""

    __tablename__ = "skills"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class Agent(TimestampMixin, Base):
    """A person who signs in: agent, supervisor or administrator."""

    __tablename__ = "agents"
    __table_args__ = (
        CheckConstraint(_in("role", PERSON_ROLES), name="role"),
        CheckConstraint("status IN ('available', 'away', 'offline')", name="status"),
        CheckConstraint("state IN ('idle', 'offered', 'busy', 'wrap_up')", name="state"),
        CheckConstraint(
            "work_offers >= 0 AND work_contacts >= 0 AND work_wrap_ups >= 0", name="work"
        ),
        # The dispatcher reads the agents changed since a snapshot (app/routing/rounds.py).
        Index("ix_agents_routing_tx", "routing_tx"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(200), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False, server_default="agent")
    site: Mapped[str | None] = mapped_column(String(64))
    team: Mapped[str | None] = mapped_column(String(64))
    endpoint: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true")
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="offline")
    status_reason: Mapped[str | None] = mapped_column(String(64))
    status_changed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    state: Mapped[str] = mapped_column(String(16), nullable=False, server_default="idle")
    state_changed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    # Routing bookkeeping, kept by app/routing in the same transactions as offers.
    work_offers: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    work_contacts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    work_wrap_ups: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    idle_since: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    ready_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), comment="not offered anything before (reject/no-answer delay)"
    )
    last_offer_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    consecutive_no_answers: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    contacts_today: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    contacts_day: Mapped[date | None] = mapped_column(Date)
    token_version: Mapped[int] = mapped_column(
        Integer,
        nullable=False,
        server_default="0",
        comment="raised by a password change: tokens carrying an older one are refused",
    )
    # Set by triggers (migration 0007) to the transaction that last wrote this row, its
    # channels or its skills: the dispatcher reads supply from the rows, not the event feed.
    routing_tx: Mapped[int] = mapped_column(
        BigInteger,
        server_default=text("(pg_current_xact_id()::text)::bigint"),
        nullable=False,
        comment="the transaction that last changed the agent's routing",
    )

    skills: Mapped[list[AgentSkill]] = relationship(
        lazy="raise", cascade="all, delete-orphan", order_by="AgentSkill.skill_id"
    )
    channels: Mapped[list[AgentChannel]] = relationship(
        lazy="raise", cascade="all, delete-orphan", order_by="AgentChannel.channel"
    )


class AgentSkill(Base):
    """An agent's proficiency in one skill, 1 (novice) to 10 (expert)."""

    __tablename__ = "agent_skills"
    __table_args__ = (CheckConstraint("level BETWEEN 1 AND 10", name="level"),)

    agent_id: Mapped[int] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    skill_id: Mapped[int] = mapped_column(
        ForeignKey("skills.id", ondelete="RESTRICT"), primary_key=True
    )
    level: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    skill: Mapped[Skill] = relationship(lazy="raise")


class AgentChannel(Base):
    """How many contacts of one channel an agent can hold at once."""

    __tablename__ = "agent_channels"
    __table_args__ = (
        CheckConstraint("capacity BETWEEN 0 AND 100", name="capacity"),
        # The database itself refuses to give an agent more than its capacity (invariant 2).
        CheckConstraint("load >= 0 AND load <= capacity", name="load"),
    )

    agent_id: Mapped[int] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    capacity: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    load: Mapped[int] = mapped_column(
        SmallInteger, nullable=False, server_default="0", comment="live offers + connected"
    )


class ConsoleConnection(Base):
    """One open agent console (a ``/ws/agent`` socket) and the instance that holds it.

    The instance moves ``live_until`` forward every heartbeat; a row past it belongs to an
    instance that stopped (``app/agents/consoles.py``).
    """

    __tablename__ = "console_connections"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    agent_id: Mapped[int] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), nullable=False, index=True
    )
    instance_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    opened_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    live_until: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, comment="counts as open until then"
    )
