"""Response bodies of queues and contacts, as the viewer may see them.

Theory of operation: ``queue_view`` and ``contact_view`` build a body from rows already read,
and ``shown_caller``, ``shown_subject``, ``shown_notes`` and ``shown_offers`` decide, by the
access table (``app/agents/access.py``), what of a contact the viewer may see: the caller's number
and the numbers typed into the subject masked for a role that sees customers' numbers masked;
the notes only to the agent who handled the contact and to supervisors of its site; the
offers made to the viewer, or to the agents of the viewer's site. Without a viewer (a role
unknown) a body shows the least: no caller, no notes, the subject masked, no offer's reason
beyond the viewer's. ``queue_out`` and ``contact_out`` read what a body needs beyond its row
(queue names, the position and wait estimate, the offers, the agents involved and their
sites) through ``service``, then build it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.access import Action, Resource, allows
from app.agents.permissions import Principal
from app.customers import identity
from app.redact import mask_personal_numbers
from app.routing import service
from app.routing.estimate import WaitEstimate
from app.routing.models import Contact, Offer, Queue
from app.routing.schemas import ContactOut, OfferOut, QueueOut, ServiceLevel, StepSkill


def queue_view(queue: Queue, names: dict[int, str], unserved: list[str]) -> QueueOut:
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
        unserved_channels=unserved,
    )


async def queue_out(session: AsyncSession, queue: Queue) -> QueueOut:
    ids = {queue.overflow_queue_id} if queue.overflow_queue_id else set()
    unserved = await service.unserved_channels(session, [queue])
    return queue_view(queue, await service.queue_names(session, ids), unserved[queue.id])


async def contact_out(
    session: AsyncSession,
    contact: Contact,
    viewer: Principal | None = None,
    parties: service.Parties | None = None,
) -> ContactOut:
    """The contact as ``viewer`` may see it, with its position, wait estimate and offers."""
    position, wait = await service.announce(session, contact)
    names = await service.queue_names(session, {contact.queue_id})
    offers = await service.offers_of(session, contact.id)
    if parties is None:
        parties = await service.parties_of(session, contact)
    shown = shown_offers(offers, parties, viewer)
    return contact_view(contact, names[contact.queue_id], position, wait, shown, viewer, parties)


def _unmasked(viewer: Principal | None) -> bool:
    return viewer is not None and allows(viewer, Resource.customers, Action.unmask)


def shown_caller(caller: str | None, viewer: Principal | None) -> str | None:
    """The caller's number as the viewer may see it: masked for agents, exactly as a
    customer's phone is (the caller is usually that customer)."""
    if caller is None or viewer is None:
        return None
    return caller if _unmasked(viewer) else identity.mask_phone(caller)


def shown_subject(subject: str | None, viewer: Principal | None) -> str | None:
    """The customer's own words, with any phone or ID number they typed masked for a viewer
    who sees customers' numbers masked."""
    if subject is None or _unmasked(viewer):
        return subject
    return mask_personal_numbers(subject)


def shown_notes(
    contact: Contact, viewer: Principal | None, parties: service.Parties | None
) -> str | None:
    """The notes are the handling agent's record of the conversation: shown to that agent
    and to the supervisors of the contact's site and admins, who review it."""
    if viewer is None or parties is None:
        return None
    holder = () if contact.agent_id is None else (contact.agent_id,)
    may = allows(
        viewer, Resource.contacts, Action.read_notes, owner_ids=holder, sites=parties.sites
    )
    return contact.notes if may else None


def shown_offers(
    offers: Sequence[Offer], parties: service.Parties, viewer: Principal | None
) -> list[Offer]:
    """The offers whose agent the viewer may see offers of: their own, their site's."""
    if viewer is None:
        return []
    return [o for o in offers if _sees_offer(viewer, o, parties)]


def _sees_offer(viewer: Principal, offer: Offer, parties: service.Parties) -> bool:
    site = parties.sites_by_agent.get(offer.agent_id)
    return allows(viewer, Resource.offers, Action.list, owner_ids=(offer.agent_id,), sites=(site,))


def contact_view(
    contact: Contact,
    queue_name: str,
    position: int | None,
    wait: WaitEstimate | None,
    offers: Sequence[Offer] = (),
    viewer: Principal | None = None,
    parties: service.Parties | None = None,
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
        subject=shown_subject(contact.subject, viewer),
        language=contact.language,
        skills=[StepSkill.model_validate(s) for s in contact.skills],
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
        notes=shown_notes(contact, viewer, parties),
        offers=[OfferOut.model_validate(o, from_attributes=True) for o in offers],
    )
