"""Response bodies of queues and contacts, as the viewer may see them.

Theory of operation: ``queue_view`` and ``contact_view`` build a body from rows already read,
and ``shown_caller`` / ``shown_notes`` decide what of a contact the viewer's role may see (the
caller's number masked for agents, the notes only to the handling agent and to supervisors).
``queue_out`` and ``contact_out`` read what a body needs beyond its row (queue names, the
position and wait estimate, the offers) through ``service``, then build it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.models import Role
from app.agents.permissions import Principal, sees_full_customer_data
from app.customers import identity
from app.routing import service
from app.routing.estimate import WaitEstimate
from app.routing.models import Contact, Offer, Queue
from app.routing.schemas import ContactOut, OfferOut, QueueOut, ServiceLevel


def queue_view(queue: Queue, names: dict[int, str]) -> QueueOut:
    return QueueOut(
        id=queue.id,
        name=queue.name,
        description=queue.description,
        channels=list(queue.channels),
        strategy=queue.strategy,  # type: ignore[arg-type]
        steps=queue.steps,
        service_level=ServiceLevel(
            threshold_s=queue.sl_threshold_s,
            target_pct=queue.sl_target_pct,
            counts_abandons=queue.sl_counts_abandons,
            short_abandon_s=queue.short_abandon_s,
        ),
        ring_timeout_s=queue.ring_timeout_s,
        wrap_up_s=queue.wrap_up_s,
        reject_delay_s=queue.reject_delay_s,
        no_answer_delay_s=queue.no_answer_delay_s,
        max_no_answer=queue.max_no_answer,
        max_wait_s=queue.max_wait_s,
        max_length=queue.max_length,
        overflow_queue=names.get(queue.overflow_queue_id) if queue.overflow_queue_id else None,
        created_at=queue.created_at,
    )


async def queue_out(session: AsyncSession, queue: Queue) -> QueueOut:
    ids = {queue.overflow_queue_id} if queue.overflow_queue_id else set()
    return queue_view(queue, await service.queue_names(session, ids))


async def contact_out(
    session: AsyncSession, contact: Contact, viewer: Principal | None = None
) -> ContactOut:
    """The contact as ``viewer`` may see it, with its position, wait estimate and offers;
    without a viewer (its role unknown), without the caller's number and the notes."""
    position, wait = await service.announce(session, contact)
    names = await service.queue_names(session, {contact.queue_id})
    offers = await service.offers_of(session, contact.id)
    return contact_view(contact, names[contact.queue_id], position, wait, offers, viewer)


def shown_caller(caller: str | None, viewer: Principal | None) -> str | None:
    """The caller's number as the viewer may see it: masked for agents, exactly as a
    customer's phone is (the caller is usually that customer)."""
    if caller is None or viewer is None:
        return None
    return caller if sees_full_customer_data(viewer) else identity.mask_phone(caller)


def shown_notes(contact: Contact, viewer: Principal | None) -> str | None:
    """The notes are the handling agent's record of the conversation: shown to that agent
    and to supervisors and admins, who review it."""
    if viewer is None:
        return None
    if contact.agent_id == viewer.id or viewer.role in (Role.supervisor, Role.admin):
        return contact.notes
    return None


def contact_view(
    contact: Contact,
    queue_name: str,
    position: int | None,
    wait: WaitEstimate | None,
    offers: Sequence[Offer] = (),
    viewer: Principal | None = None,
) -> ContactOut:
    """The response body of a contact, as ``viewer`` may see it."""
    return ContactOut(
        id=contact.id,
        status=contact.status,
        queue=queue_name,
        queue_id=contact.queue_id,
        channel=contact.channel,
        tier=contact.tier,
        customer_id=contact.customer_id,
        subject=contact.subject,
        language=contact.language,
        enqueued_at=contact.enqueued_at,
        deadline_at=contact.deadline_at,
        agent_id=contact.agent_id,
        answered_at=contact.answered_at,
        ended_at=contact.ended_at,
        position=position,
        estimated_wait_s=wait.seconds if wait else None,
        estimate_basis=wait.basis if wait else None,
        short_abandon=contact.short_abandon,
        disposition=contact.disposition,
        transferred_from=contact.parent_id,
        transferred_to=contact.next_id,
        caller=shown_caller(contact.caller, viewer),
        notes=shown_notes(contact, viewer),
        offers=[OfferOut.model_validate(o, from_attributes=True) for o in offers],
    )
