"""Offers: a contact ringing at an agent, and how the ring ends (accept, reject, expire,
rescind).

Theory of operation: every function runs in the caller's transaction and locks rows in one
order, contact then agent then offer, so two operations on the same contact or agent queue
up behind each other instead of deadlocking. Each checks the state it found under the lock
and raises before changing anything, so a refused request changes nothing. Timer handlers
(ring timeout, rescind) are idempotent: they do nothing when the state they were set for has
already moved on. An offer that does not end in an answer puts the contact back in its queue
with its place kept (enqueue time and deadline unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents import presence
from app.agents import service as agents
from app.agents.models import Agent
from app.db import db_now
from app.events.log import record
from app.routing import work
from app.routing.contact_states import ContactEvent
from app.routing.contacts import contact_event, lock_contact, move, queue_of
from app.routing.events import ContactEventType, OfferEventType
from app.routing.exceptions import NotYourOffer, OfferClosed, OfferNotFound
from app.routing.models import Contact, Offer, OfferStatus
from app.timers import service as timers

# The ring timeout's timer kind (scheduled by ``rounds``, handled in ``handlers``).
OFFER_EXPIRE = "offer.expire"
# A phone contact was answered: the telephony above routing connects the caller to the agent
# (scheduled here, due at once; its handler is the IVR's, ``app/ivr/bridge.py``).
PHONE_ANSWERED = "contact.phone_answered"
PHONE_CHANNELS = frozenset({"voice", "callback"})


def offer_event(
    session: AsyncSession,
    type_: OfferEventType,
    offer: Offer,
    *,
    actor: str = "system",
    **data: Any,
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
    offer_event(session, OfferEventType(f"offer.{status.value}"), offer, actor=actor)
    work.wake_dispatcher(session)


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
    if contact.channel in PHONE_CHANNELS:
        await timers.schedule(
            session,
            kind=PHONE_ANSWERED,
            subject=contact.id,
            due_at=now,
            payload={"agent_id": agent.id},
        )
    offer_event(session, OfferEventType.ACCEPTED, offer, actor=actor)
    contact_event(session, ContactEventType.CONNECTED, contact, now, actor=actor)
    return offer


def _count_contact_today(agent: Agent, now: datetime) -> None:
    today = now.date()
    if agent.contacts_day != today:
        agent.contacts_day, agent.contacts_today = today, 0
    agent.contacts_today += 1


async def reject_offer(
    session: AsyncSession, *, offer_id: int, agent_id: int, actor: str = "system"
) -> Offer:
    """The agent declines: the contact goes back, keeping its place; the agent rests.

    An offer past its ring timeout is closed to a reject as to an answer: the timeout
    decides it (a missed offer, with its own delay and count), whenever its timer fires."""
    offer, contact, agent = await _locked_offer(session, offer_id, agent_id)
    now = await db_now(session)
    if offer.status != OfferStatus.pending.value:
        raise OfferClosed(offer_id, offer.status)
    if offer.expires_at <= now:
        raise OfferClosed(offer_id, "expired")
    queue = await queue_of(session, contact)
    _requeue(contact, ContactEvent.REJECT, declined_by=agent.id)
    await _close_offer(
        session, offer, contact, agent, status=OfferStatus.rejected, now=now, actor=actor
    )
    agent.ready_at = now + timedelta(seconds=queue.reject_delay_s)
    contact_event(session, ContactEventType.REQUEUED, contact, now, actor=actor, cause="rejected")
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
    contact_event(session, ContactEventType.REQUEUED, contact, now, cause="no_answer")
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
        contact_event(session, ContactEventType.REQUEUED, contact, now, cause="agent_unavailable")
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
