"""Agents and skills: load, create, update, change status. Never commits.

An agent who stops being available (a status change, or deactivation) may have offers
ringing. Taking them back is the routing domain's work, which this lower domain must not
call: the change schedules an ``agent.rescind`` timer for the agent in its own transaction,
due at once, and the routing domain registers the handler that takes the offers back
(``app/routing/handlers.py``). The timer is durable, so the offers go back even if this
instance stops right after the commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import selectinload

from app.agents import presence
from app.agents.events import AgentEventType
from app.agents.exceptions import (
    AgentNotFound,
    LastAdmin,
    SkillExists,
    StatusConflict,
    UnknownSkill,
)
from app.agents.models import Agent, AgentChannel, AgentSkill, Role, Skill
from app.agents.schemas import AgentCounts, AgentCreate, AgentLive, AgentUpdate, SkillLevel
from app.agents.security import TokenClaims
from app.db import db_now, table_of
from app.errors import InvalidInput
from app.events.log import record
from app.timers import service as timers

RESCIND = "agent.rescind"
"""Timer kind: take back the ringing offers of the agent named by the subject."""

_WITH_DETAILS = (
    selectinload(Agent.skills).selectinload(AgentSkill.skill),
    selectinload(Agent.channels),
)


async def create_skill(session: AsyncSession, *, name: str, description: str | None) -> Skill:
    """A new skill; a taken name is a conflict naming it (the constraint backs up races)."""
    if await session.scalar(select(Skill.id).where(Skill.name == name)) is not None:
        raise SkillExists(name)
    skill = Skill(name=name, description=description)
    session.add(skill)
    await session.flush()
    return skill


async def list_skills(
    session: AsyncSession, *, after_name: str | None, limit: int
) -> Sequence[Skill]:
    """Skills by name, after ``after_name`` (a page of ``limit``)."""
    stmt = select(Skill).order_by(Skill.name).limit(limit)
    if after_name is not None:
        stmt = stmt.where(Skill.name > after_name)
    return (await session.scalars(stmt)).all()


async def skill_ids(session: AsyncSession, names: list[str]) -> dict[str, int]:
    """Map skill names to ids; unknown names are a client error naming them."""
    if not names:
        return {}
    rows = (await session.execute(select(Skill.name, Skill.id).where(Skill.name.in_(names)))).all()
    found = {row.name: row.id for row in rows}
    missing = [name for name in names if name not in found]
    if missing:
        raise UnknownSkill(missing)
    return found


async def get(session: AsyncSession, agent_id: int, *, for_update: bool = False) -> Agent | None:
    stmt = select(Agent).where(Agent.id == agent_id).options(*_WITH_DETAILS)
    if for_update:
        # The signed-in agent is already in the identity map (loaded before the lock was
        # taken); without populate_existing the locked row's values would be ignored.
        stmt = stmt.with_for_update(of=Agent).execution_options(populate_existing=True)
    return await session.scalar(stmt)


async def get_or_raise(session: AsyncSession, agent_id: int, *, for_update: bool = False) -> Agent:
    agent = await get(session, agent_id, for_update=for_update)
    if agent is None:
        raise AgentNotFound(agent_id)
    return agent


async def get_by_username(session: AsyncSession, username: str) -> Agent | None:
    return await session.scalar(select(Agent).where(Agent.username == username.lower()))


async def list_agents(
    session: AsyncSession, *, site: str | None, after_id: int, limit: int
) -> Sequence[Agent]:
    stmt = (
        select(Agent)
        .where(Agent.id > after_id)
        .options(*_WITH_DETAILS)
        .order_by(Agent.id)
        .limit(limit)
    )
    if site is not None:
        stmt = stmt.where(Agent.site == site)
    return (await session.scalars(stmt)).all()


async def _set_skills(session: AsyncSession, agent: Agent, levels: list[SkillLevel]) -> None:
    ids = await skill_ids(session, [item.skill for item in levels])
    agent.skills = [AgentSkill(skill_id=ids[item.skill], level=item.level) for item in levels]


def _set_capacity(agent: Agent, capacity: dict[Any, int]) -> None:
    """Set per-channel capacity in place, keeping each channel's live load."""
    wanted = {str(channel): value for channel, value in capacity.items()}
    kept: list[AgentChannel] = []
    for row in agent.channels:
        if row.channel in wanted:
            row.capacity = wanted.pop(row.channel)
            kept.append(row)
        elif row.load:
            raise StatusConflict(
                f"agent holds {row.load} {row.channel} contact(s); keep that channel until they end"
            )
    kept.extend(AgentChannel(channel=c, capacity=v, load=0) for c, v in wanted.items())
    agent.channels = kept


async def create_agent(
    session: AsyncSession, *, data: AgentCreate, password_hash: str, actor: str | None
) -> Agent:
    """A new agent, offline and idle; writes ``agent.created``."""
    agent = Agent(
        username=data.username.lower(),
        name=data.name,
        password_hash=password_hash,
        role=data.role.value,
        site=data.site,
        team=data.team,
        endpoint=data.endpoint,
        skills=[],
        channels=[],
    )
    await _set_skills(session, agent, data.skills)
    _set_capacity(agent, data.capacity)
    session.add(agent)
    await session.flush()
    record(
        session,
        type=AgentEventType.CREATED,
        subject_type="agent",
        subject_id=agent.id,
        data={"username": agent.username, "role": agent.role, "site": agent.site},
        actor=actor,
    )
    return await reload(session, agent)


async def reload(session: AsyncSession, agent: Agent) -> Agent:
    """The agent with its skills and channels freshly loaded."""
    agent_id = agent.id  # read before expiring: an expired attribute would lazy-load
    await session.flush()
    session.expire(agent)
    return await get_or_raise(session, agent_id)


REVOKING_FIELDS = frozenset({"active", "password", "role", "site"})
"""Fields of ``agent.updated`` whose change revokes the agent's earlier tokens: what a token
let its holder do depends on them. Reactivation revokes too: an inactive account holds no
valid token, and an account deactivated before deactivating revoked tokens must not get its
old ones back."""


def _stored(value: Any) -> Any:
    """A field's value as the agent's row holds it."""
    return value.value if isinstance(value, Role) else value


def _changes_access(agent: Agent, fields: dict[str, Any]) -> bool:
    """Whether ``fields`` change one of the agent's ``REVOKING_FIELDS``."""
    return any(
        getattr(agent, name) != _stored(value)
        for name, value in fields.items()
        if name in REVOKING_FIELDS
    )


ADMIN_CHANGES_LOCK = 0x484C4144  # "HLAD": serialises demotions and deactivations of admins


async def _keep_an_admin(session: AsyncSession, agent: Agent, fields: dict[str, Any]) -> None:
    """Refuse to demote or deactivate the last active admin.

    Such changes take a transaction-level advisory lock before counting, so two admins
    demoting each other at once cannot both succeed: the second counts after the first has
    committed. (Locking the admins' rows instead could deadlock with the row each request
    already holds.)
    """
    role, active = fields.get("role", agent.role), fields.get("active", agent.active)
    still_admin = active and (role.value if isinstance(role, Role) else role) == Role.admin.value
    if agent.role != Role.admin.value or not agent.active or still_admin:
        return
    await session.execute(select(func.pg_advisory_xact_lock(ADMIN_CHANGES_LOCK)))
    others = await session.scalar(
        select(func.count())
        .select_from(Agent)
        .where(Agent.role == Role.admin.value, Agent.active.is_(True), Agent.id != agent.id)
    )
    if not others:
        raise LastAdmin(agent.id)


async def update_agent(
    session: AsyncSession,
    agent: Agent,
    *,
    changes: AgentUpdate,
    password_hash: str | None,
    actor: str | None,
) -> Agent:
    """Apply a partial update; writes ``agent.updated`` naming the changed fields.

    Deactivating an agent also takes them offline, out of routing (``change_status``, which
    has their ringing offers taken back). A new password, or a new role, site or activation,
    revokes every token issued before (``REVOKING_FIELDS``).
    """
    fields = changes.model_dump(exclude_unset=True, exclude={"password", "skills", "capacity"})
    await _keep_an_admin(session, agent, fields)
    revoking = password_hash is not None or _changes_access(agent, fields)
    if fields.get("active") is False and agent.status != presence.Status.OFFLINE.value:
        await change_status(
            session,
            agent,
            status=presence.Status.OFFLINE,
            reason=None,
            by=presence.Actor.SUPERVISOR,
            actor=actor,
        )
    for name, value in fields.items():
        setattr(agent, name, _stored(value))
    changed = sorted(fields)
    if changes.skills is not None:
        await _set_skills(session, agent, changes.skills)
        changed.append("skills")
    if changes.capacity is not None:
        _set_capacity(agent, changes.capacity)
        changed.append("capacity")
    if password_hash is not None:
        agent.password_hash = password_hash
        changed.append("password")
    if revoking:
        agent.token_version += 1  # every token issued before now stops working
    if changed:
        record(
            session,
            type=AgentEventType.UPDATED,
            subject_type="agent",
            subject_id=agent.id,
            data={"fields": changed},
            actor=actor,
        )
    return await reload(session, agent)


async def change_status(
    session: AsyncSession,
    agent: Agent,
    *,
    status: presence.Status,
    reason: str | None,
    by: presence.Actor,
    actor: str | None,
) -> Agent:
    """The agent's own choice of presence; writes ``agent.status_changed`` when it changes.

    An agent who stops being available gets its ringing offers taken back (``RESCIND``).
    """
    try:
        change = presence.change_status(
            presence.Status(agent.status), agent.status_reason, status, reason, actor=by
        )
    except presence.InvalidStatusReason as exc:
        raise InvalidInput(str(exc), field="reason") from exc
    except presence.InvalidStatusChange as exc:
        raise StatusConflict(str(exc)) from exc
    if not change.changed:
        return agent
    if status is not presence.Status.OFFLINE and not agent.active:
        raise StatusConflict("a deactivated agent cannot become available or away")
    now = await db_now(session)
    agent.status, agent.status_reason, agent.status_changed_at = (
        change.status.value,
        change.reason,
        now,
    )
    if change.previous is presence.Status.AVAILABLE and change.status is not change.previous:
        await _take_offers_back(session, agent.id, now)
    if change.status is presence.Status.AVAILABLE and change.previous is not change.status:
        # Back at the desk: offers missed before (what set them away) no longer count.
        agent.consecutive_no_answers = 0
    record(
        session,
        type=AgentEventType.STATUS_CHANGED,
        subject_type="agent",
        subject_id=agent.id,
        data={
            "agent_id": agent.id,
            "status": change.status.value,
            "reason": change.reason,
            "previous": change.previous.value,
            "site": agent.site,
        },
        actor=actor,
    )
    return agent


async def set_away_by_system(session: AsyncSession, agent: Agent, *, reason: str) -> Agent:
    """The system sets an available agent away (no answer, console gone)."""
    return await change_status(
        session,
        agent,
        status=presence.Status.AWAY,
        reason=reason,
        by=presence.Actor.SYSTEM,
        actor="system",
    )


async def _take_offers_back(session: AsyncSession, agent_id: int, now: datetime) -> None:
    """Schedule ``RESCIND`` for the agent, due now (one pending timer per agent: a second
    call before it fires replaces it)."""
    await timers.schedule(session, kind=RESCIND, subject=agent_id, due_at=now)


async def ensure_admin(
    session: AsyncSession, *, username: str, password_hash: str
) -> tuple[Agent, bool]:
    """The first admin: created once; returns (agent, created)."""
    existing = await session.scalar(select(Agent).where(Agent.role == Role.admin.value).limit(1))
    if existing is not None:
        return existing, False
    agent = Agent(
        username=username.lower(),
        name="Administrator",
        password_hash=password_hash,
        role=Role.admin.value,
    )
    session.add(agent)
    await session.flush()
    record(
        session,
        type=AgentEventType.CREATED,
        subject_type="agent",
        subject_id=agent.id,
        data={"username": agent.username, "role": agent.role, "site": None},
        actor="system",
    )
    return agent, True


# Every request pays for this read: one prepared statement on the driver, no ORM.
_IDENTITY = """
    SELECT id, username, role, site, active, token_version FROM agents WHERE id = $1
"""


async def warm(conn: asyncpg.Connection) -> None:
    """Prepare the sign-in statement on a new connection."""
    await conn.fetchrow(_IDENTITY, 0)


async def get_identity(
    db: asyncpg.Pool | asyncpg.Connection, claims: TokenClaims
) -> Identity | None:
    """What signing a request in needs, and no more: the agent a token names, as it is now."""
    row = await db.fetchrow(_IDENTITY, claims.agent_id)
    return None if row is None else Identity(*row)


_IDENTITIES = """
    SELECT id, username, role, site, active, token_version FROM agents WHERE id = ANY($1::bigint[])
"""


async def get_identities(
    db: asyncpg.Pool | asyncpg.Connection, agent_ids: Iterable[int]
) -> dict[int, Identity]:
    """``get_identity`` for many agents in one statement, by id; a missing agent is absent."""
    rows = await db.fetch(_IDENTITIES, sorted(set(agent_ids)))
    return {row["id"]: Identity(*row) for row in rows}


@dataclass(frozen=True, slots=True)
class Identity:
    id: int
    username: str
    role: str
    site: str | None
    active: bool
    token_version: int


# --- live snapshots ------------------------------------------------------------------------
# Read on a plain connection, so the caller can read several of them in one snapshot of the
# database (the websockets' first message).


async def live_agent(conn: AsyncConnection, agent_id: int) -> AgentLive | None:
    """The agent as a console shows it; None if there is no such agent."""
    agents = table_of(Agent)
    columns = (agents.c.id, agents.c.username, agents.c.name, agents.c.role, agents.c.status)
    stmt = select(*columns, agents.c.status_reason, agents.c.state).where(agents.c.id == agent_id)
    row = (await conn.execute(stmt)).first()
    return None if row is None else AgentLive.model_validate(row, from_attributes=True)


async def live_counts(conn: AsyncConnection) -> AgentCounts:
    """Active agents with capacity on a channel (those who take contacts), counted by status
    and by state; every status and state is present, zero or not."""
    agents, channels = table_of(Agent), table_of(AgentChannel)
    takes_contacts = exists().where(channels.c.agent_id == agents.c.id, channels.c.capacity > 0)
    stmt = (
        select(agents.c.status, agents.c.state, func.count().label("n"))
        .where(agents.c.active.is_(True), takes_contacts)
        .group_by(agents.c.status, agents.c.state)
    )
    counts = AgentCounts(
        by_status={status.value: 0 for status in presence.Status},
        by_state={state.value: 0 for state in presence.State},
    )
    for row in await conn.execute(stmt):
        counts.by_status[row.status] = counts.by_status.get(row.status, 0) + row.n
        counts.by_state[row.state] = counts.by_state.get(row.state, 0) + row.n
    return counts
