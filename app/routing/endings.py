"""How a contact ends: completed after wrap-up, abandoned, transferred, timed out, canceled.

Every contact ends in exactly one terminal state (invariant 1): each function here moves a
locked contact out of a live status once, and a second attempt finds it terminal and is
refused (or, for timers, does nothing).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.agents import presence
from app.config import Settings
from app.db import db_now
from app.errors import Conflict
from app.routing import admission, work
from app.routing.contact_states import ContactEvent, ContactStatus
from app.routing.contacts import (
    MAX_WAIT,
    WRAP_UP_END,
    check_move,
    check_owner,
    contact_event,
    lock_contact,
    may_move,
    move,
    queue_of,
    seconds,
)
from app.routing.events import ContactEventType
from app.routing.exceptions import ChannelNotAccepted, QueueFull
from app.routing.models import Contact, Offer, OfferStatus, Queue
from app.routing.offers import rescind_for_contact
from app.timers import service as timers

S = ContactStatus


async def complete(
    session: AsyncSession,
    *,
    contact_id: int,
    agent_id: int,
    supervisor: bool,
    disposition: str | None,
    notes: str | None,
    actor: str = "system",
) -> Contact:
    """The conversation is over: the agent enters wrap-up (or the contact completes)."""
    contact = await lock_contact(session, contact_id)
    check_owner(contact, agent_id, supervisor=supervisor)
    check_move(contact, ContactEvent.COMPLETE)
    assert contact.agent_id is not None
    agent = await work.lock_agent(session, contact.agent_id)
    now = await db_now(session)
    queue = await queue_of(session, contact)
    contact.disposition, contact.notes, contact.completed_at = disposition, notes, now
    move(contact, ContactEvent.COMPLETE)
    await work.apply(
        session,
        agent,
        presence.WorkEvent.CONTACT_ENDED,
        channel=contact.channel,
        now=now,
        contact_id=contact.id,
    )
    if queue.wrap_up_s > 0:
        until = now + timedelta(seconds=queue.wrap_up_s)
        await timers.schedule(session, kind=WRAP_UP_END, subject=contact.id, due_at=until)
        contact_event(
            session,
            ContactEventType.WRAP_UP,
            contact,
            now,
            actor=actor,
            until=until.isoformat(),
            disposition=disposition,
        )
    else:
        await end_wrap_up(session, contact_id=contact.id, now=now, actor=actor)
    return contact


async def end_wrap_up(
    session: AsyncSession, *, contact_id: int, now: datetime, actor: str = "system"
) -> bool:
    """After-contact work is done (timer or the agent): the contact completes."""
    contact = await lock_contact(session, contact_id)
    if not may_move(contact, ContactEvent.END_WRAP_UP) or contact.agent_id is None:
        return False
    agent = await work.lock_agent(session, contact.agent_id)
    move(contact, ContactEvent.END_WRAP_UP)
    contact.ended_at = now
    await work.apply(
        session,
        agent,
        presence.WorkEvent.WRAP_UP_DONE,
        channel=contact.channel,
        now=now,
        contact_id=contact.id,
    )
    await timers.cancel(session, kind=WRAP_UP_END, subject=contact.id)
    handled_from = contact.answered_at or contact.enqueued_at
    contact_event(
        session,
        ContactEventType.COMPLETED,
        contact,
        now,
        actor=actor,
        handle_s=seconds(handled_from, contact.completed_at or now),
        wrap_up_s=seconds(contact.completed_at or now, now),
        disposition=contact.disposition,
    )
    return True


async def wrap_up_done(session: AsyncSession, *, agent_id: int, actor: str) -> int:
    """The agent says their after-contact work is done; returns the contacts completed."""
    now = await db_now(session)
    ids = (
        await session.scalars(
            select(Contact.id)
            .where(Contact.agent_id == agent_id, Contact.status == S.wrap_up.value)
            .order_by(Contact.id)
        )
    ).all()
    done = 0
    for contact_id in ids:
        done += await end_wrap_up(session, contact_id=contact_id, now=now, actor=actor)
    if not done:
        raise Conflict(f"agent {agent_id} is not in wrap-up")
    return done


async def end_unattended(
    session: AsyncSession,
    *,
    contact_id: int,
    disposition: str,
    notes: str,
    now: datetime,
    actor: str,
) -> bool:
    """The service ends a connected contact nobody is on the line for (a callback that
    reached nobody, a caller who hung up before the agent was put through): it completes
    with ``disposition``, without after-contact work, and its agent is free at once. False,
    with nothing changed, for a contact no longer connected (the agent ended it meanwhile)."""
    contact = await lock_contact(session, contact_id)
    if contact.status != S.connected.value or contact.agent_id is None:
        return False
    await complete(
        session,
        contact_id=contact.id,
        agent_id=contact.agent_id,
        supervisor=True,
        disposition=disposition,
        notes=notes,
        actor=actor,
    )
    await end_wrap_up(session, contact_id=contact.id, now=now, actor=actor)
    return True


async def abandon(session: AsyncSession, *, contact_id: int, actor: str) -> Contact:
    """The customer left before being answered."""
    contact = await lock_contact(session, contact_id)
    check_move(contact, ContactEvent.ABANDON)
    now = await db_now(session)
    queue = await queue_of(session, contact)
    if contact.status == S.offered.value:
        await rescind_for_contact(session, contact, now)
    waited = seconds(contact.enqueued_at, now)
    move(contact, ContactEvent.ABANDON)
    contact.ended_at, contact.agent_id = now, None
    contact.short_abandon = waited < queue.short_abandon_s
    await timers.cancel(session, kind=MAX_WAIT, subject=contact.id)
    contact_event(
        session, ContactEventType.ABANDONED, contact, now, actor=actor, short=contact.short_abandon
    )
    return contact


async def cancel(session: AsyncSession, *, contact_id: int, actor: str) -> Contact:
    """Withdrawn by the service (not the customer) before it was answered."""
    contact = await lock_contact(session, contact_id)
    check_move(contact, ContactEvent.CANCEL)
    now = await db_now(session)
    if contact.status == S.offered.value:
        await rescind_for_contact(session, contact, now)
    move(contact, ContactEvent.CANCEL)
    contact.ended_at, contact.agent_id = now, None
    await timers.cancel(session, kind=MAX_WAIT, subject=contact.id)
    contact_event(session, ContactEventType.CANCELED, contact, now, actor=actor)
    return contact


async def _leave_live_state(session: AsyncSession, contact: Contact, now: datetime) -> None:
    """Release whoever holds the contact: rescind a ringing offer (the agent never held it,
    as after an abandon or a cancel), free a connected agent (who handled it, and stays
    named)."""
    if contact.status == S.offered.value:
        await rescind_for_contact(session, contact, now)
        contact.agent_id = None
    elif contact.status == S.connected.value and contact.agent_id is not None:
        agent = await work.lock_agent(session, contact.agent_id)
        await work.apply(
            session,
            agent,
            presence.WorkEvent.CONTACT_DROPPED,
            channel=contact.channel,
            now=now,
            contact_id=contact.id,
        )
    await timers.cancel(session, kind=MAX_WAIT, subject=contact.id)


async def transfer(
    session: AsyncSession,
    *,
    contact_id: int,
    target: Queue,
    agent_id: int,
    supervisor: bool,
    actor: str,
    settings: Settings,
) -> Contact:
    """Move the contact to another queue; it keeps its original enqueue time and deadline.

    The successor is admitted by the rules of every admission: a full target overflows along
    its chain, and a chain full to the end refuses the transfer (409) with nothing changed."""
    contact = await lock_contact(session, contact_id)
    check_move(contact, ContactEvent.TRANSFER)
    if contact.status == S.connected.value:
        check_owner(contact, agent_id, supervisor=supervisor)
    elif not supervisor:
        raise Conflict(f"contact {contact.id} is {contact.status}; only a supervisor moves it")
    if target.id == contact.queue_id:
        raise Conflict(f"contact {contact.id} is already in queue {target.name!r}")
    now = await db_now(session)
    successor = await admission.admit_within(
        session,
        caller=admission.SystemCaller(actor),
        admission=admission.Admission.continuing(contact, target.id),
        settings=settings,
    )
    if contact.status == S.connected.value and contact.agent_id is not None:
        # The agent who handed it on is the last who should get it back: anyone else who
        # may take it first (and no last-agent hold for them), as after a reject.
        successor.declined_by = [contact.agent_id]
    await _leave_live_state(session, contact, now)
    move(contact, ContactEvent.TRANSFER)
    contact.ended_at, contact.next_id = now, successor.id
    contact_event(
        session,
        ContactEventType.TRANSFERRED,
        contact,
        now,
        actor=actor,
        to_contact_id=successor.id,
        to_queue_id=successor.queue_id,
    )
    return successor


async def time_out(
    session: AsyncSession, *, contact_id: int, now: datetime, settings: Settings
) -> None:
    """Max wait reached (timer): admitted to the queue's overflow queue (by the rules of every
    admission: a full one passes it on along its chain), or, with none to take it, ended; so
    too when the contact already timed out of that queue (a stored loop)."""
    contact = await lock_contact(session, contact_id)
    if contact.status == S.offered.value:
        await _retry_after_offer(session, contact)
        return
    if not may_move(contact, ContactEvent.TIME_OUT):
        return
    queue = await queue_of(session, contact)
    successor = await _overflow(session, contact, queue.overflow_queue_id, settings)
    if successor is not None:
        contact.next_id = successor.id
    move(contact, ContactEvent.TIME_OUT)
    contact.ended_at = now
    contact_event(
        session,
        ContactEventType.TIMED_OUT,
        contact,
        now,
        overflow_contact_id=successor.id if successor is not None else None,
        overflow_queue_id=successor.queue_id if successor is not None else None,
    )


async def _overflow(
    session: AsyncSession, contact: Contact, target: int | None, settings: Settings
) -> Contact | None:
    """The contact's successor in the overflow queue ``target``, or None with nowhere to go
    (no overflow, a chain full to its end or closed to the channel, or a queue the contact
    already timed out of): the contact ends here."""
    if target is None:
        return None
    left = await _timed_out_of(session, contact)
    if target in left:
        return None
    try:
        return await admission.admit_within(
            session,
            caller=admission.SystemCaller("system"),
            admission=admission.Admission.continuing(contact, target, avoid=left),
            settings=settings,
        )
    except (QueueFull, ChannelNotAccepted):
        return None


async def _timed_out_of(session: AsyncSession, contact: Contact) -> frozenset[int]:
    """The queues the contact has already left by their max wait: its own, and those its
    earlier parts (``parent_id``, back to the first) timed out of. An overflow into one of
    them would go round a loop (one stored before loops were refused), so the contact ends
    instead: each overflow adds a queue to this set, and a contact overflows at most once
    per queue."""
    earlier = (
        select(Contact.id, Contact.parent_id, Contact.queue_id, Contact.status)
        .where(Contact.id == contact.parent_id)
        .cte("earlier", recursive=True)
    )
    parent = aliased(Contact)
    earlier = earlier.union_all(
        select(parent.id, parent.parent_id, parent.queue_id, parent.status).where(
            parent.id == earlier.c.parent_id
        )
    )
    left = select(earlier.c.queue_id).where(earlier.c.status == S.timed_out.value)
    return frozenset({contact.queue_id, *(await session.scalars(left))})


async def _retry_after_offer(session: AsyncSession, contact: Contact) -> None:
    """Max wait came while the contact rings: let the offer run, look again after it."""
    expires_at = await session.scalar(
        select(Offer.expires_at).where(
            Offer.contact_id == contact.id, Offer.status == OfferStatus.pending.value
        )
    )
    if expires_at is not None:
        due = expires_at + timedelta(milliseconds=100)
        await timers.schedule(session, kind=MAX_WAIT, subject=contact.id, due_at=due)
