"""The life of a contact after it is queued: offers, answer, wrap-up and its one ending.

Theory of operation: every function runs in the caller's transaction and locks rows in one
order, contact then agent then offer, so two operations on the same contact or agent queue
up behind each other instead of deadlocking. Each checks the state it found under the lock
and raises before changing anything, so a refused request changes nothing. Timer handlers
(ring timeout, wrap-up end, max wait, rescind) are idempotent: they do nothing when the
state they were set for has already moved on.

Statuses move only through the lifecycle table (``contact_states``): ``move`` applies an
event to a locked contact, and ``check_move`` refuses, before anything changes, a request
whose move the table lacks, with the 409 ``ContactStateConflict``. A transfer or an overflow
ends the contact (``transferred`` / ``timed_out``) and continues it as a new contact in the
other queue that keeps the original enqueue time and deadline, so the customer keeps their
place.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents import presence
from app.agents import service as agents
from app.agents.models import Agent
from app.events.log import record
from app.routing import contact_states, work
from app.routing.contact_states import ContactEvent, ContactStatus
from app.routing.exceptions import (
    ContactNotFound,
    ContactStateConflict,
    NotYourContact,
    NotYourOffer,
    OfferClosed,
    OfferNotFound,
)
from app.routing.models import Contact, Offer, OfferStatus, Queue
from app.timers import service as timers

OFFER_EXPIRE = "offer.expire"
WRAP_UP_END = "contact.wrap_up_end"
MAX_WAIT = "contact.max_wait"
wake_dispatcher = work.wake_dispatcher


async def db_now(session: AsyncSession) -> datetime:
    now: datetime | None = await session.scalar(select(func.now()))
    assert now is not None
    return now


def seconds(since: datetime, now: datetime) -> float:
    return round(max((now - since).total_seconds(), 0.0), 3)


async def lock_contact(session: AsyncSession, contact_id: int) -> Contact:
    """The contact row, locked and freshly read (see ``work.lock_agent``)."""
    await session.flush()
    contact = await session.scalar(
        select(Contact)
        .where(Contact.id == contact_id)
        .with_for_update(**work.for_update(session))
        .execution_options(populate_existing=True)
    )
    if contact is None:
        raise ContactNotFound(contact_id)
    return contact


async def queue_of(session: AsyncSession, contact: Contact) -> Queue:
    queue = await session.get(Queue, contact.queue_id)
    assert queue is not None
    return queue


def contact_event(
    session: AsyncSession,
    type_: str,
    contact: Contact,
    now: datetime,
    *,
    actor: str = "system",
    **data: Any,
) -> None:
    record(
        session,
        type=type_,
        subject_type="contact",
        subject_id=contact.id,
        data={
            "contact_id": contact.id,
            "queue_id": contact.queue_id,
            "channel": contact.channel,
            "tier": contact.tier,
            "agent_id": contact.agent_id,
            "wait_s": seconds(contact.enqueued_at, contact.answered_at or now),
            **data,
        },
        actor=actor,
    )


def offer_event(
    session: AsyncSession, type_: str, offer: Offer, *, actor: str = "system", **data: Any
) -> None:
    record(
        session,
        type=type_,
        subject_type="offer",
        subject_id=offer.id,
        data={
            "offer_id": offer.id,
            "contact_id": offer.contact_id,
            "agent_id": offer.agent_id,
            "queue_id": offer.queue_id,
            "channel": offer.channel,
            **data,
        },
        actor=actor,
    )


# --- offers -------------------------------------------------------------------------------


async def _locked_offer(
    session: AsyncSession, offer_id: int, agent_id: int | None
) -> tuple[Offer, Contact, Agent]:
    """The offer with its contact and agent locked (in lock order); checks ownership."""
    offer = await session.get(Offer, offer_id)
    if offer is None:
        raise OfferNotFound(offer_id)
    if agent_id is not None and offer.agent_id != agent_id:
        raise NotYourOffer(offer_id)
    contact = await lock_contact(session, offer.contact_id)
    agent = await work.lock_agent(session, offer.agent_id)
    await session.refresh(offer, with_for_update=work.for_update(session))
    return offer, contact, agent


def _requeue(contact: Contact, event: ContactEvent, *, declined_by: int | None = None) -> None:
    """Back in the queue, keeping its place (enqueue time and deadline unchanged).

    ``declined_by``: the agent who rejected or missed the offer; the dispatcher offers the
    contact to anyone else first (``scoring``), and to them again only if nobody else may.
    """
    move(contact, event)
    contact.agent_id = None
    if declined_by is not None and declined_by not in contact.declined_by:
        contact.declined_by = [*contact.declined_by, declined_by]


async def _close_offer(
    session: AsyncSession,
    offer: Offer,
    contact: Contact,
    agent: Agent,
    *,
    status: OfferStatus,
    now: datetime,
    actor: str = "system",
) -> None:
    offer.status, offer.decided_at = status.value, now
    event = {
        OfferStatus.rejected: presence.WorkEvent.OFFER_REJECTED,
        OfferStatus.expired: presence.WorkEvent.OFFER_EXPIRED,
        OfferStatus.rescinded: presence.WorkEvent.OFFER_RESCINDED,
    }[status]
    await work.apply(session, agent, event, channel=offer.channel, now=now, contact_id=contact.id)
    await timers.cancel(session, kind=OFFER_EXPIRE, subject=offer.id)
    offer_event(session, f"offer.{status.value}", offer, actor=actor)
    wake_dispatcher(session)


async def accept_offer(
    session: AsyncSession, *, offer_id: int, agent_id: int, actor: str = "system"
) -> Offer:
    """The agent answers: the contact is connected to them."""
    offer, contact, agent = await _locked_offer(session, offer_id, agent_id)
    now = await db_now(session)
    if offer.status != OfferStatus.pending.value:
        raise OfferClosed(offer_id, offer.status)
    if offer.expires_at <= now:
        raise OfferClosed(offer_id, "expired")
    offer.status, offer.decided_at = OfferStatus.accepted.value, now
    move(contact, ContactEvent.ANSWER)
    contact.answered_at = now
    await work.apply(
        session,
        agent,
        presence.WorkEvent.OFFER_ACCEPTED,
        channel=offer.channel,
        now=now,
        contact_id=contact.id,
    )
    agent.consecutive_no_answers = 0
    _count_contact_today(agent, now)
    await timers.cancel(session, kind=OFFER_EXPIRE, subject=offer.id)
    offer_event(session, "offer.accepted", offer, actor=actor)
    contact_event(session, "contact.connected", contact, now, actor=actor)
    return offer


def _count_contact_today(agent: Agent, now: datetime) -> None:
    today = now.date()
    if agent.contacts_day != today:
        agent.contacts_day, agent.contacts_today = today, 0
    agent.contacts_today += 1


async def reject_offer(
    session: AsyncSession, *, offer_id: int, agent_id: int, actor: str = "system"
) -> Offer:
    """The agent declines: the contact goes back, keeping its place; the agent rests."""
    offer, contact, agent = await _locked_offer(session, offer_id, agent_id)
    now = await db_now(session)
    if offer.status != OfferStatus.pending.value:
        raise OfferClosed(offer_id, offer.status)
    queue = await queue_of(session, contact)
    _requeue(contact, ContactEvent.REJECT, declined_by=agent.id)
    await _close_offer(
        session, offer, contact, agent, status=OfferStatus.rejected, now=now, actor=actor
    )
    agent.ready_at = now + timedelta(seconds=queue.reject_delay_s)
    contact_event(session, "contact.requeued", contact, now, actor=actor, cause="rejected")
    return offer


async def expire_offer(session: AsyncSession, *, offer_id: int, now: datetime) -> bool:
    """Ring timeout (timer or lease sweep): the contact goes back; the agent rests, or goes
    away. Returns False when the offer was no longer pending."""
    offer = await session.get(Offer, offer_id)
    if offer is None or offer.status != OfferStatus.pending.value:
        return False
    offer, contact, agent = await _locked_offer(session, offer_id, None)
    if offer.status != OfferStatus.pending.value:
        return False
    queue = await queue_of(session, contact)
    _requeue(contact, ContactEvent.EXPIRE, declined_by=agent.id)
    await _close_offer(session, offer, contact, agent, status=OfferStatus.expired, now=now)
    agent.ready_at = now + timedelta(seconds=queue.no_answer_delay_s)
    agent.consecutive_no_answers += 1
    contact_event(session, "contact.requeued", contact, now, cause="no_answer")
    status = presence.status_after_no_answers(agent.consecutive_no_answers, queue.max_no_answer)
    # Only an active, available agent is set away: a deactivated one is out of routing
    # already, and refusing its status change must not undo the expiry (the contact would
    # stay offered).
    if status is not None and _routable_status(agent):
        # Its other offers ringing go back too: the agents domain schedules that (``RESCIND``).
        await agents.set_away_by_system(session, agent, reason=presence.NO_ANSWER_REASON)
    return True


def _routable_status(agent: Agent) -> bool:
    """Available and active: the agent may keep offers ringing."""
    return agent.active and agent.status == presence.Status.AVAILABLE.value


async def overdue_offers(
    session: AsyncSession, *, expired_before: datetime, limit: int
) -> Sequence[int]:
    """Pending offers that expired before ``expired_before``, the oldest first."""
    return (
        await session.scalars(
            select(Offer.id)
            .where(Offer.status == OfferStatus.pending.value, Offer.expires_at < expired_before)
            .order_by(Offer.expires_at, Offer.id)
            .limit(limit)
        )
    ).all()


async def rescind_offers_of(session: AsyncSession, *, agent_id: int, now: datetime) -> int:
    """Take back the pending offers of an agent who is no longer available (the agents
    domain's ``agent.rescind`` timer)."""
    offer_ids = (
        await session.scalars(
            select(Offer.id).where(
                Offer.agent_id == agent_id, Offer.status == OfferStatus.pending.value
            )
        )
    ).all()
    rescinded = 0
    for offer_id in offer_ids:
        offer, contact, agent = await _locked_offer(session, offer_id, None)
        if offer.status != OfferStatus.pending.value:
            continue
        if _routable_status(agent):
            break  # available again before this ran: let the offers ring
        _requeue(contact, ContactEvent.RESCIND)
        await _close_offer(session, offer, contact, agent, status=OfferStatus.rescinded, now=now)
        contact_event(session, "contact.requeued", contact, now, cause="agent_unavailable")
        rescinded += 1
    return rescinded


async def rescind_for_contact(session: AsyncSession, contact: Contact, now: datetime) -> None:
    """The contact is leaving while it rings: take the offer back from the agent."""
    offer = await session.scalar(
        select(Offer).where(
            Offer.contact_id == contact.id, Offer.status == OfferStatus.pending.value
        )
    )
    if offer is None:
        return
    agent = await work.lock_agent(session, offer.agent_id)
    await session.refresh(offer, with_for_update=work.for_update(session))
    await _close_offer(session, offer, contact, agent, status=OfferStatus.rescinded, now=now)


# --- new contacts -------------------------------------------------------------------------


async def insert_contact(
    session: AsyncSession,
    *,
    queue: Queue,
    template: Contact,
    now: datetime,
    parent_id: int | None = None,
    actor: str = "system",
) -> Contact:
    """Queue ``template`` (unsaved) in ``queue``; writes ``contact.queued`` and its timers."""
    template.queue_id, template.status = queue.id, contact_states.INITIAL.value
    template.routing_started_at, template.parent_id = now, parent_id
    session.add(template)
    await session.flush()
    if queue.max_wait_s is not None:
        await schedule_max_wait(session, template, queue, now)
    contact_event(
        session, "contact.queued", template, now, actor=actor, customer_id=template.customer_id
    )
    wake_dispatcher(session)
    return template


async def schedule_max_wait(
    session: AsyncSession, contact: Contact, queue: Queue, now: datetime
) -> None:
    """The queue's max wait, counted from ``now`` (the contact's arrival in this queue)."""
    assert queue.max_wait_s is not None
    await timers.schedule(
        session, kind=MAX_WAIT, subject=contact.id, due_at=now + timedelta(seconds=queue.max_wait_s)
    )


def continuation(contact: Contact) -> Contact:
    """A copy of ``contact`` for another queue, keeping its original place."""
    return Contact(
        channel=contact.channel,
        customer_id=contact.customer_id,
        caller=contact.caller,
        tier=contact.tier,
        subject=contact.subject,
        language=contact.language,
        enqueued_at=contact.enqueued_at,
        deadline_at=contact.deadline_at,
        announced_position=None,
    )


def check_owner(contact: Contact, agent_id: int, *, supervisor: bool) -> None:
    if not supervisor and contact.agent_id != agent_id:
        raise NotYourContact(contact.id)


# --- status moves -------------------------------------------------------------------------


def check_move(contact: Contact, event: ContactEvent) -> None:
    """Refuse, with the 409 naming the status and the action, a move the table lacks."""
    _next_status(contact, event)


def may_move(contact: Contact, event: ContactEvent) -> bool:
    """Whether the table allows ``event`` now (a timer whose moment has passed does nothing)."""
    return contact_states.allows(ContactStatus(contact.status), event)


def move(contact: Contact, event: ContactEvent) -> None:
    """The one place a contact's status changes: through the table, or the 409."""
    contact.status = _next_status(contact, event).value


def _next_status(contact: Contact, event: ContactEvent) -> ContactStatus:
    try:
        return contact_states.apply(ContactStatus(contact.status), event)
    except contact_states.IllegalContactMove as exc:
        raise ContactStateConflict(contact.id, contact.status, event.value) from exc
