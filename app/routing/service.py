"""Queues and contacts: define queues, take contacts in, show where they stand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents import service as agents
from app.agents.models import Agent, AgentChannel
from app.config import Settings
from app.customers import service as customers
from app.customers.models import Customer
from app.db import table_of
from app.errors import InvalidInput
from app.events.log import record, wake_after_commit
from app.routing import estimate
from app.routing.exceptions import (
    ChannelNotAccepted,
    ContactNotFound,
    QueueFull,
    QueueNotFound,
    UnknownQueue,
)
from app.routing.lifecycle import schedule_max_wait
from app.routing.models import Contact, ContactStatus, Offer, Queue
from app.routing.schemas import ContactCreate, QueueCreate, QueueUpdate, ServiceLevel
from app.routing.work import wake_dispatcher

ESTIMATE_WINDOW = timedelta(hours=1)
ESTIMATE_SAMPLES = 50


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


async def list_queues(session: AsyncSession) -> Sequence[Queue]:
    return (await session.scalars(select(Queue).order_by(Queue.name))).all()


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
        ref = fields.pop("overflow_queue")
        overflow = await resolve_queue(session, ref, "overflow_queue") if ref else None
        if overflow is not None and overflow.id == queue.id:
            raise InvalidInput("overflow_queue: a queue cannot overflow into itself")
        queue.overflow_queue_id = overflow.id if overflow else None
    for name, value in fields.items():
        setattr(queue, name, value)


async def create_queue(session: AsyncSession, *, data: QueueCreate, actor: str) -> Queue:
    queue = Queue(name=data.name)
    await _apply_fields(session, queue, data.model_dump(mode="json", exclude={"name"}))
    session.add(queue)
    await session.flush()
    record(
        session,
        type="queue.created",
        subject_type="queue",
        subject_id=queue.id,
        data={"name": queue.name},
        actor=actor,
    )
    return queue


async def update_queue(
    session: AsyncSession, queue: Queue, *, changes: QueueUpdate, actor: str
) -> Queue:
    fields = changes.model_dump(mode="json", exclude_unset=True)
    await _apply_fields(session, queue, dict(fields))
    await session.flush()
    if fields:
        record(
            session,
            type="queue.updated",
            subject_type="queue",
            subject_id=queue.id,
            data={"fields": sorted(fields)},
            actor=actor,
        )
    await session.refresh(queue)
    return queue


async def queue_names(session: AsyncSession, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = (await session.execute(select(Queue.id, Queue.name).where(Queue.id.in_(ids)))).all()
    return {row.id: row.name for row in rows}


# --- contacts -----------------------------------------------------------------------------


async def _customer(
    session: AsyncSession, data: ContactCreate
) -> tuple[Customer | None, str | None]:
    ref = data.customer
    if ref is None:
        return None, None
    if ref.id is not None:
        customer = await customers.get(session, ref.id)
        if customer is None:
            raise InvalidInput(f"customer.id: customer {ref.id} does not exist", field="customer")
        return customer, customer.phone
    assert ref.phone is not None
    phone = customers.clean_phone(ref.phone)
    assert phone is not None
    return await customers.get_by_phone(session, phone), phone


async def _waiting_count(session: AsyncSession, queue_id: int) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Contact)
        .where(
            Contact.queue_id == queue_id,
            Contact.status.in_([ContactStatus.queued.value, ContactStatus.offered.value]),
        )
    )
    return int(count or 0)


async def _admit(session: AsyncSession, queue: Queue) -> Queue:
    """The queue itself, or its overflow when it is full."""
    seen: set[int] = set()
    while (
        queue.max_length is not None and await _waiting_count(session, queue.id) >= queue.max_length
    ):
        seen.add(queue.id)
        overflow = (
            await session.get(Queue, queue.overflow_queue_id) if queue.overflow_queue_id else None
        )
        if overflow is None or overflow.id in seen:
            raise QueueFull(queue.name, queue.max_length)
        queue = overflow
    return queue


# A new contact, its ``contact.queued`` event, its announced position and what its wait
# estimate needs, in one statement: this is the hottest write path. The position counts the
# queued contacts of the queue ahead of it (deadline not later than its own: ties went first,
# being older), as ``position_of`` does for any contact.
_QUEUE_CONTACT = text(
    """
    WITH ahead AS (
        SELECT count(*) AS n FROM contacts
        WHERE queue_id = :queue_id AND status = 'queued'
          AND deadline_at <= now() + make_interval(secs => :sl_target_s)
    ), c AS (
        INSERT INTO contacts (queue_id, channel, status, customer_id, caller, tier, subject,
            language, enqueued_at, routing_started_at, deadline_at, announced_position)
        SELECT :queue_id, :channel, 'queued', :customer_id, :caller, :tier, :subject,
            :language, now(), now(), now() + make_interval(secs => :sl_target_s), ahead.n + 1
        FROM ahead
        RETURNING *
    ), e AS (
        INSERT INTO events (type, subject_type, subject_id, data, actor)
        SELECT 'contact.queued', 'contact', c.id::text,
            jsonb_build_object('contact_id', c.id, 'queue_id', c.queue_id,
                'channel', c.channel, 'tier', c.tier, 'agent_id', NULL, 'wait_s', 0.0,
                'customer_id', c.customer_id),
            :actor
        FROM c
    )
    SELECT c.*, h.times AS handle_times,
        -- Staffing is only worth counting when there are handle times to spread over it.
        CASE WHEN cardinality(h.times) >= :min_samples THEN
            (SELECT count(*) FROM agents a JOIN agent_channels ac ON ac.agent_id = a.id
             WHERE a.status = 'available' AND a.active AND ac.channel = c.channel
               AND ac.capacity > 0)
        ELSE 0 END AS staffed
    FROM c, LATERAL (
        SELECT array_agg(t) AS times FROM (
            SELECT extract(epoch FROM d.completed_at - d.answered_at)::float8 AS t
            FROM contacts d
            WHERE d.queue_id = c.queue_id AND d.completed_at IS NOT NULL
              AND d.answered_at IS NOT NULL
              AND d.completed_at > now() - make_interval(secs => :window_s)
            ORDER BY d.completed_at DESC LIMIT :samples) recent
    ) h
    """
).bindparams(
    window_s=ESTIMATE_WINDOW.total_seconds(),
    samples=ESTIMATE_SAMPLES,
    min_samples=estimate.MIN_SAMPLES,
)
_CONTACT_COLUMNS = tuple(c.key for c in table_of(Contact).columns)


@dataclass(frozen=True, slots=True)
class Queued:
    """A contact just queued, with what its caller is told."""

    contact: Contact
    queue: Queue
    position: int
    wait: estimate.WaitEstimate


async def create_contact(
    session: AsyncSession, *, data: ContactCreate, settings: Settings, actor: str
) -> Queued:
    """Queue a contact from any channel, with the customer's tier looked up."""
    queue = await resolve_queue(session, data.queue)
    if data.channel.value not in queue.channels:
        raise ChannelNotAccepted(queue.name, data.channel.value, list(queue.channels))
    customer, caller = await _customer(session, data)
    tier = customer.tier if customer is not None else settings.default_tier
    policy = settings.tiers.get(tier) or settings.tiers[settings.default_tier]
    queue = await _admit(session, queue)
    if data.channel.value not in queue.channels:
        raise QueueFull(queue.name, queue.max_length or 0)
    row = (
        (
            await session.execute(
                _QUEUE_CONTACT,
                {
                    "queue_id": queue.id,
                    "channel": data.channel.value,
                    "customer_id": customer.id if customer else None,
                    "caller": caller,
                    "tier": tier,
                    "subject": data.subject,
                    "language": data.language or (customer.language if customer else None),
                    "sl_target_s": float(policy.sl_target_s),
                    "actor": actor,
                },
            )
        )
        .mappings()
        .one()
    )
    contact = Contact(**{key: row[key] for key in _CONTACT_COLUMNS})
    wake_after_commit(session)
    if queue.max_wait_s is not None:
        await schedule_max_wait(session, contact, queue, contact.enqueued_at)
    wake_dispatcher(session)
    position = contact.announced_position or 1
    wait = estimate.estimate_wait(position, row["handle_times"] or [], row["staffed"])
    return Queued(contact, queue, position, wait)


async def get_contact(session: AsyncSession, contact_id: int) -> Contact:
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise ContactNotFound(contact_id)
    return contact


async def offers_of(session: AsyncSession, contact_id: int) -> Sequence[Offer]:
    return (
        await session.scalars(
            select(Offer).where(Offer.contact_id == contact_id).order_by(Offer.id)
        )
    ).all()


async def position_of(session: AsyncSession, contact: Contact) -> int | None:
    """Contacts of the same queue ahead of this one (by deadline, then arrival), plus one."""
    if contact.status != ContactStatus.queued.value:
        return 0 if contact.status == ContactStatus.offered.value else None
    ahead = await session.scalar(
        select(func.count())
        .select_from(Contact)
        .where(
            Contact.queue_id == contact.queue_id,
            Contact.status == ContactStatus.queued.value,
            Contact.id != contact.id,
            (Contact.deadline_at < contact.deadline_at)
            | (
                (Contact.deadline_at == contact.deadline_at)
                & (Contact.enqueued_at <= contact.enqueued_at)
                & (Contact.id < contact.id)
            ),
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
            Contact.completed_at > func.now() - ESTIMATE_WINDOW,
        )
        .order_by(Contact.completed_at.desc())
        .limit(ESTIMATE_SAMPLES)
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
