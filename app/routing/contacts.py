"""A queued contact's shared steps: its row, its events, its queueing and its status moves.

Theory of operation: every function runs in the caller's transaction. ``lock_contact`` is the
first lock of the one lock order (contact, then agent, then offer) that ``offers`` and
``endings`` follow, so two operations on the same contact queue up instead of deadlocking.

Statuses move only through the lifecycle table (``contact_states``): ``move`` applies an
event to a locked contact, and ``check_move`` refuses, before anything changes, a request
whose move the table lacks, with the 409 ``ContactStateConflict``. A transfer or an overflow
ends the contact (``transferred`` / ``timed_out``) and continues it as a new contact in the
other queue, admitted like every contact (``admission``), that keeps the original enqueue
time and deadline, so the customer keeps their place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.events.log import record
from app.routing import contact_states, work
from app.routing.contact_states import ContactEvent, ContactStatus
from app.routing.events import ContactEventType
from app.routing.exceptions import ContactNotFound, ContactStateConflict, NotYourContact
from app.routing.models import Contact, Queue

# The timer kinds of a contact (handlers in ``handlers``).
WRAP_UP_END = "contact.wrap_up_end"
MAX_WAIT = "contact.max_wait"

# --- the row and its events ---------------------------------------------------------------


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
    type_: ContactEventType,
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


# --- owners and status moves -------------------------------------------------------------


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
