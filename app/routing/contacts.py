"""A queued contact's shared steps: its row, its events, its queueing and its status moves.

Theory of operation: every function runs in the caller's transaction. ``lock_contact`` is the
first lock of the one lock order (contact, then agent, then offer) that ``offers`` and
``endings`` follow, so two operations on the same contact queue up instead of deadlocking.

Statuses move only through the lifecycle table (``contact_states``): ``move`` applies an
event to a locked contact, and ``check_move`` refuses, before anything changes, a request
whose move the table lacks, with the 409 ``ContactStateConflict``. A transfer or an overflow
ends the contact (``transferred`` / ``timed_out``) and continues it, through
``insert_contact`` and ``continuation``, as a new contact in the other queue that keeps the
original enqueue time and deadline, so the customer keeps their place.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.events.log import record
from app.routing import contact_states, work
from app.routing.contact_states import ContactEvent, ContactStatus
from app.routing.exceptions import ContactNotFound, ContactStateConflict, NotYourContact
from app.routing.models import Contact, Queue
from app.timers import service as timers

# The timer kinds of a contact (handlers in ``handlers``).
WRAP_UP_END = "contact.wrap_up_end"
MAX_WAIT = "contact.max_wait"

# --- the row and its events ---------------------------------------------------------------


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
    work.wake_dispatcher(session)
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
