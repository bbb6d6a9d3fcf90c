"""Queues and contacts: define queues, take contacts in, show where they stand.

Besides the rows, it reads what the access rules (``app/agents/access.py``) need to judge a
request: the agents a contact involves and their sites (``parties_of``), and the agent a
request acts on (``agent_target``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, cast, delete, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.agents import service as agents
from app.agents.exceptions import AgentNotFound
from app.agents.models import Agent, AgentChannel, AgentSkill, Role, Skill
from app.agents.permissions import Target
from app.db import table_of
from app.events.log import record
from app.routing import estimate, scoring
from app.routing.contact_states import WAITING, ContactStatus
from app.routing.contacts import MAX_WAIT, lock_contact
from app.routing.events import QueueEventType
from app.routing.exceptions import (
    ContactNotFound,
    OverflowLoop,
    QueueNotFound,
    UnknownQueue,
)
from app.routing.models import Contact, Offer, OfferStatus, Queue
from app.routing.schemas import OfferOut, QueueCreate, QueueLive, QueueUpdate, ServiceLevel
from app.timers import service as timers
from app.timers.models import Timer

# --- queues -------------------------------------------------------------------------------


async def get_queue(session: AsyncSession, ref: str | int) -> Queue | None:
    if isinstance(ref, int):
        return await session.get(Queue, ref)
    return await session.scalar(select(Queue).where(Queue.name == ref))


async def get_queue_or_raise(session: AsyncSession, ref: str | int) -> Queue:
    queue = await get_queue(session, ref)
    if queue is None:
        raise QueueNotFound(ref)
    return queue


async def resolve_queue(session: AsyncSession, ref: str | int, field: str = "queue") -> Queue:
    """A queue named in a request body: unknown is a 422 naming the field."""
    queue = await get_queue(session, ref)
    if queue is None:
        raise UnknownQueue(ref, field)
    return queue


async def list_queues(
    session: AsyncSession, *, after_name: str | None, limit: int
) -> Sequence[Queue]:
    """Queues by name, after ``after_name`` (a page of ``limit``)."""
    stmt = select(Queue).order_by(Queue.name).limit(limit)
    if after_name is not None:
        stmt = stmt.where(Queue.name > after_name)
    return (await session.scalars(stmt)).all()


async def _check_step_skills(session: AsyncSession, steps: list[dict[str, Any]]) -> None:
    names = sorted({s["skill"] for step in steps for s in step["skills"]})
    if not names:
        return
    await agents.skill_ids(session, names)


async def _apply_fields(session: AsyncSession, queue: Queue, fields: dict[str, Any]) -> None:
    if "steps" in fields:
        await _check_step_skills(session, fields["steps"])
    sl = fields.pop("service_level", None)
    if sl is not None:
        level = ServiceLevel.model_validate(sl)
        queue.sl_threshold_s, queue.sl_target_pct = level.threshold_s, level.target_pct
        queue.sl_counts_abandons, queue.short_abandon_s = (
            level.counts_abandons,
            level.short_abandon_s,
        )
    if "overflow_queue" in fields:
        await _set_overflow(session, queue, fields.pop("overflow_queue"))
    for name, value in fields.items():
        setattr(queue, name, value)


# "HLQO": serialises the changes of queues' overflow queues.
OVERFLOW_CHANGES_LOCK = 0x484C514F


async def _set_overflow(session: AsyncSession, queue: Queue, ref: str | None) -> None:
    """Point the queue's overflow at ``ref`` (None: none), unless the chain would loop.

    A change that sets an overflow takes a transaction-level advisory lock before it reads
    the chain, and holds it until its commit. Each statement reads what was committed
    before it began (READ COMMITTED), so of two changes that would close a loop between
    them (A -> B and B -> A at once), the second reads the chain only after the first has
    committed, sees the first's link and is refused. One lock for every queue keeps it
    simple (such changes are rare); locking the chain's rows instead would mean reading the
    chain before knowing which rows to lock. Clearing an overflow cannot close a loop.
    """
    if ref is None:
        queue.overflow_queue_id = None
        return
    await session.execute(select(func.pg_advisory_xact_lock(OVERFLOW_CHANGES_LOCK)))
    overflow = await resolve_queue(session, ref, "overflow_queue")
    loop = await _overflow_loop(session, queue, overflow)
    if loop is not None:
        raise OverflowLoop(loop)
    queue.overflow_queue_id = overflow.id


async def _overflow_loop(session: AsyncSession, queue: Queue, overflow: Queue) -> list[str] | None:
    """The names along the chain from ``queue`` through ``overflow`` up to the first queue
    met twice, or None when the chain ends without coming back to one (read from the rows,
    not the session's objects)."""
    names, seen = [queue.name], {queue.id}  # a queue being created has no id yet: None
    step: int | None = overflow.id
    while step is not None:
        row = (
            await session.execute(
                select(Queue.name, Queue.overflow_queue_id).where(Queue.id == step)
            )
        ).one()
        names.append(row.name)
        if step in seen:
            return names
        seen.add(step)
        step = row.overflow_queue_id
    return None


async def create_queue(session: AsyncSession, *, data: QueueCreate, actor: str) -> Queue:
    queue = Queue(name=data.name)
    await _apply_fields(session, queue, data.model_dump(mode="json", exclude={"name"}))
    session.add(queue)
    await session.flush()
    record(
        session,
        type=QueueEventType.CREATED,
        subject_type="queue",
        subject_id=queue.id,
        data={"name": queue.name},
        actor=actor,
    )
    return queue


async def update_queue(
    session: AsyncSession, queue: Queue, *, changes: QueueUpdate, actor: str
) -> Queue:
    # Only the fields the request names, each stored whole: a step's skill or expiry left
    # out takes its default, as on create (``exclude_unset`` would drop it inside them too).
    given = changes.model_dump(mode="json")
    fields = {name: given[name] for name in changes.model_fields_set}
    await _apply_fields(session, queue, dict(fields))
    await session.flush()
    if "max_wait_s" in fields:
        await _follow_max_wait(session, queue)
    if fields:
        record(
            session,
            type=QueueEventType.UPDATED,
            subject_type="queue",
            subject_id=queue.id,
            data={"fields": sorted(fields)},
            actor=actor,
        )
    await session.refresh(queue)
    return queue


async def _follow_max_wait(session: AsyncSession, queue: Queue) -> None:
    """The contacts already waiting in the queue leave by its new max wait, counted from
    their arrival in it as a new contact's is (at once if that has passed); with none, they
    wait on."""
    waiting = select(Contact.id, Contact.routing_started_at).where(
        Contact.queue_id == queue.id, Contact.status.in_(sorted(WAITING))
    )
    if queue.max_wait_s is None:
        ids = select(cast(waiting.subquery().c.id, String))
        await session.execute(delete(Timer).where(Timer.kind == MAX_WAIT, Timer.subject.in_(ids)))
        return
    limit = timedelta(seconds=queue.max_wait_s)
    rows = (await session.execute(waiting)).all()
    due = [(row.id, row.routing_started_at + limit) for row in rows]
    await timers.schedule_many(session, kind=MAX_WAIT, due=due)


async def queue_names(session: AsyncSession, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = (await session.execute(select(Queue.id, Queue.name).where(Queue.id.in_(ids)))).all()
    return {row.id: row.name for row in rows}


async def unserved_channels(session: AsyncSession, queues: Sequence[Queue]) -> dict[int, list[str]]:
    """Per queue, the channels it takes that no active agent can take: none has capacity on
    the channel and the skills of the queue's last routing step (the loosest), so a contact
    there waits until the queue's max wait, or for ever without one."""
    if not queues:
        return {}
    can: dict[int, set[str]] = {}
    taking = select(AgentChannel.agent_id, AgentChannel.channel).join(
        Agent, Agent.id == AgentChannel.agent_id
    )
    for agent_id, channel in await session.execute(
        taking.where(Agent.active, AgentChannel.capacity > 0)
    ):
        can.setdefault(agent_id, set()).add(channel)
    held: dict[int, dict[str, int]] = {agent_id: {} for agent_id in can}
    levels = select(AgentSkill.agent_id, Skill.name, AgentSkill.level).join(
        Skill, Skill.id == AgentSkill.skill_id
    )
    for agent_id, skill, level in await session.execute(
        levels.where(AgentSkill.agent_id.in_(list(can)))
    ):
        held[agent_id][skill] = level
    return {q.id: _unserved(q, can, held) for q in queues}


def _unserved(queue: Queue, can: dict[int, set[str]], held: dict[int, dict[str, int]]) -> list[str]:
    needs = scoring.skill_reqs(queue.steps[-1]["skills"] if queue.steps else [])
    able = [agent_id for agent_id, skills in held.items() if scoring.meets(skills, needs)]
    served = set().union(*(can[agent_id] for agent_id in able))
    return [channel for channel in queue.channels if channel not in served]


# --- contacts -----------------------------------------------------------------------------


async def get_contact(
    session: AsyncSession, contact_id: int, *, for_update: bool = False
) -> Contact:
    """The contact (locked, first in the lock order, with ``for_update``) or a 404."""
    if for_update:
        return await lock_contact(session, contact_id)
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise ContactNotFound(contact_id)
    return contact


@dataclass(frozen=True, slots=True)
class Parties:
    """The agents a contact involves: the one holding it (or who held it), and every agent
    it was offered to, each with their site."""

    holder: int | None
    sites_by_agent: dict[int, str | None]

    @property
    def owner_ids(self) -> frozenset[int]:
        return frozenset(self.sites_by_agent)

    @property
    def sites(self) -> frozenset[str | None]:
        """The sites the contact belongs to; empty while no agent was ever offered it."""
        return frozenset(self.sites_by_agent.values())


async def parties_of(session: AsyncSession, contact: Contact) -> Parties:
    """The contact's holder and the agents it was offered to, with their sites (one query)."""
    offered = select(Offer.agent_id).where(Offer.contact_id == contact.id)
    involved: ColumnElement[bool] = Agent.id.in_(offered)
    if contact.agent_id is not None:
        involved = or_(involved, Agent.id == contact.agent_id)
    rows = (await session.execute(select(Agent.id, Agent.site).where(involved))).all()
    return Parties(contact.agent_id, {row.id: row.site for row in rows})


# The contact and those it continues (a transfer or an overflow), back to the first, which
# the channel queued if its ``contact.queued`` names a key of that channel (any of its keys,
# so a contact outlives the key's rotation).
async def integration_of(session: AsyncSession, contact_id: int) -> str | None:
    """The channel that queued the contact, or the contact it continues (None: a person or
    the service did, or there is no such contact). It never changes: it is read unlocked."""
    return await session.scalar(select(Contact.integration).where(Contact.id == contact_id))


async def agent_target(session: AsyncSession, agent_id: int) -> Target:
    """The agent a request acts on, as the access rules judge it, or a 404."""
    row = (
        await session.execute(select(Agent.role, Agent.site).where(Agent.id == agent_id))
    ).one_or_none()
    if row is None:
        raise AgentNotFound(agent_id)
    return Target(id=agent_id, role=Role(row.role), site=row.site)


async def offers_of(session: AsyncSession, contact_id: int) -> Sequence[Offer]:
    return (
        await session.scalars(
            select(Offer).where(Offer.contact_id == contact_id).order_by(Offer.id)
        )
    ).all()


async def position_of(session: AsyncSession, contact: Contact) -> int | None:
    """Contacts of the same queue ahead of this one, plus one: those the dispatcher serves
    first (by deadline, then id: ``rounds._WAITING``), so no two share a place."""
    if contact.status != ContactStatus.queued.value:
        return 0 if contact.status == ContactStatus.offered.value else None
    ahead = await session.scalar(
        select(func.count())
        .select_from(Contact)
        .where(
            Contact.queue_id == contact.queue_id,
            Contact.status == ContactStatus.queued.value,
            tuple_(Contact.deadline_at, Contact.id) < tuple_(contact.deadline_at, contact.id),
        )
    )
    return int(ahead or 0) + 1


async def announce(
    session: AsyncSession, contact: Contact
) -> tuple[int | None, estimate.WaitEstimate | None]:
    """The position told to the customer (never going backwards) and the wait estimate."""
    computed = await position_of(session, contact)
    if computed is None:
        return None, None
    if computed == 0:
        return 0, estimate.estimate_wait(0, [], 1)
    told = estimate.announce_position(computed, contact.announced_position)
    if told != contact.announced_position:
        # Only ever lowered, and without holding the row: concurrent readers cannot push
        # the announced position back up, and the dispatcher is never kept from the contact.
        lowered = await session.scalar(
            update(Contact)
            .where(
                Contact.id == contact.id,
                or_(Contact.announced_position.is_(None), Contact.announced_position > told),
            )
            .values(announced_position=told)
            .returning(Contact.announced_position)
            .execution_options(synchronize_session=False)
        )
        told = lowered if lowered is not None else min(told, contact.announced_position or told)
    return told, await _estimate(session, contact, told)


async def _estimate(
    session: AsyncSession, contact: Contact, position: int
) -> estimate.WaitEstimate:
    """Recent handle times of the queue and staffed agents on the channel, in one query."""
    recent = (
        select(func.extract("epoch", Contact.completed_at - Contact.answered_at).label("t"))
        .where(
            Contact.queue_id == contact.queue_id,
            Contact.completed_at.is_not(None),
            Contact.answered_at.is_not(None),
            Contact.completed_at > func.now() - estimate.RECENT_WINDOW,
        )
        .order_by(Contact.completed_at.desc())
        .limit(estimate.RECENT_SAMPLES)
        .subquery()
    )
    staffed = (
        select(func.count())
        .select_from(Agent)
        .join(AgentChannel, AgentChannel.agent_id == Agent.id)
        .where(
            Agent.status == "available",
            Agent.active.is_(True),
            AgentChannel.channel == contact.channel,
            AgentChannel.capacity > 0,
        )
        .scalar_subquery()
    )
    row = (
        await session.execute(select(select(func.array_agg(recent.c.t)).scalar_subquery(), staffed))
    ).one()
    handle_times = [float(t) for t in (row[0] or [])]
    return estimate.estimate_wait(position, handle_times, int(row[1] or 0))


# --- offers -------------------------------------------------------------------------------


async def list_offers(
    session: AsyncSession,
    *,
    agent_id: int,
    after_id: int,
    status: OfferStatus | None,
    limit: int,
) -> Sequence[Offer]:
    """Offers made to ``agent_id`` after ``after_id``, by id (a page of ``limit``); only
    those in ``status`` unless it is None."""
    stmt = (
        select(Offer)
        .where(Offer.agent_id == agent_id, Offer.id > after_id)
        .order_by(Offer.id)
        .limit(limit)
    )
    if status is not None:
        stmt = stmt.where(Offer.status == status.value)
    return (await session.scalars(stmt)).all()


# --- live snapshots ------------------------------------------------------------------------
# Read on a plain connection, so the caller can read several of them in one snapshot of the
# database (the websockets' first message).


async def pending_offers(conn: AsyncConnection, agent_id: int) -> list[OfferOut]:
    """The agent's offers still ringing, oldest first."""
    offers = table_of(Offer)
    stmt = (
        offers.select()
        .where(offers.c.agent_id == agent_id, offers.c.status == OfferStatus.pending.value)
        .order_by(offers.c.id)
    )
    return [OfferOut.model_validate(row, from_attributes=True) for row in await conn.execute(stmt)]


async def waiting_by_queue(conn: AsyncConnection) -> list[QueueLive]:
    """Every queue by name, with its contacts waiting (queued or offered) and the oldest."""
    contacts, queues = table_of(Contact), table_of(Queue)
    waiting = (
        select(
            contacts.c.queue_id,
            func.count().label("waiting"),
            func.min(contacts.c.enqueued_at).label("oldest_enqueued_at"),
        )
        .where(contacts.c.status.in_(sorted(WAITING)))
        .group_by(contacts.c.queue_id)
        .subquery()
    )
    stmt = (
        select(
            queues.c.id,
            queues.c.name,
            func.coalesce(waiting.c.waiting, 0).label("waiting"),
            waiting.c.oldest_enqueued_at,
        )
        .select_from(queues.outerjoin(waiting, waiting.c.queue_id == queues.c.id))
        .order_by(queues.c.name)
    )
    return [QueueLive.model_validate(row, from_attributes=True) for row in await conn.execute(stmt)]
