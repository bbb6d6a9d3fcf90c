"""What an agent does to their work: answer an offer, complete a contact, end the wrap-up.

Theory of operation
-------------------

Each action is one function that checks access and then acts, in the caller's transaction:
the REST routes (``app/routing/router.py``) and the console's websocket
(``app/realtime/actions.py``) both call it, so the two doors answer a request with the same
rules, the same body and the same errors. A function loads what the access table's rule needs
(the offer's agent, the contact's holder and sites, the agent acted on), calls ``require``
before it changes anything, then hands the work to the services (``offers``, ``endings``), which
lock the rows and check the state they find.

Decisions, and why
------------------

- The answer is the REST body (a pydantic model): the websocket sends the same JSON the route
  would, and nothing is presented twice.
- The helpers that judge access (``acted_on``, ``read_contact``, ``agent_acted_on``,
  ``own_offer``, ``supervises``) live here, not in the router: the routes that are not actions
  of an agent's console (transfer, cancel, the offers page, the IVR's path of a contact) use
  them too, and one copy of a rule is the point.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.agents import access
from app.agents.access import Action, Resource, require
from app.agents.permissions import Principal, Target
from app.routing import endings, service
from app.routing.exceptions import ContactNotFound, OfferNotFound
from app.routing.models import Contact, Offer
from app.routing.offers import accept_offer, reject_offer
from app.routing.presenters import contact_out
from app.routing.schemas import CompleteIn, ContactOut, OfferOut

# --- access ---------------------------------------------------------------------------------


async def acted_on(
    session: AsyncSession, principal: Principal, contact_id: int, action: Action
) -> Contact:
    """The contact, locked, once the access table lets ``principal`` act on it: a contact
    someone holds (or is offered) is that agent's work, judged as such; one waiting
    unoffered belongs to the sites of the agents it was offered to, if any."""
    contact = await service.get_contact(session, contact_id, for_update=True)
    if contact.agent_id is not None:
        holder = await service.agent_target(session, contact.agent_id)
        require(principal, Resource.contacts, action, owner_ids=(holder.id,), agent=holder)
    else:
        parties = await service.parties_of(session, contact)
        require(principal, Resource.contacts, action, sites=parties.sites)
    return contact


async def read_contact(
    session: AsyncSession, principal: Principal, contact_id: int
) -> tuple[Contact, service.Parties]:
    """The contact and its parties, once the access table lets ``principal`` read it; a
    contact it may not read is a 404, as one that does not exist."""
    contact = await service.get_contact(session, contact_id)
    parties = await service.parties_of(session, contact)
    require(
        principal,
        Resource.contacts,
        Action.read,
        owner_ids=parties.owner_ids,
        sites=parties.sites,
        unknown=ContactNotFound(contact_id),
    )
    return contact, parties


def supervises(principal: Principal) -> bool:
    """Whether the access table lets the principal act on contacts beyond their own work (the
    routes still check the site of the contact acted on)."""
    rule = access.rule_for(principal.role.value, Resource.contacts, Action.act)
    return rule in (access.Rule.SAME_SITE, access.Rule.ALLOW)


async def agent_acted_on(
    session: AsyncSession, principal: Principal, agent_id: int
) -> Target | None:
    """The agent a request acts on, read only when it is not the principal (whose own work
    every rule but ``DENY`` lets through) and the role's rule needs it."""
    if agent_id == principal.id:
        return None
    return await service.agent_target(session, agent_id)


async def own_offer(session: AsyncSession, principal: Principal, offer_id: int) -> None:
    """Only the agent an offer was made to answers it."""
    offer = await session.get(Offer, offer_id)
    if offer is None:
        raise OfferNotFound(offer_id)
    require(principal, Resource.offers, Action.act, owner_ids=(offer.agent_id,))


# --- the actions ----------------------------------------------------------------------------


async def accept(session: AsyncSession, principal: Principal, *, offer_id: int) -> OfferOut:
    """Answer an offer made to ``principal``: the contact is connected."""
    await own_offer(session, principal, offer_id)
    offer = await accept_offer(
        session, offer_id=offer_id, agent_id=principal.id, actor=principal.actor
    )
    return OfferOut.model_validate(offer, from_attributes=True)


async def reject(session: AsyncSession, principal: Principal, *, offer_id: int) -> OfferOut:
    """Decline an offer made to ``principal``: the contact goes back, keeping its place."""
    await own_offer(session, principal, offer_id)
    offer = await reject_offer(
        session, offer_id=offer_id, agent_id=principal.id, actor=principal.actor
    )
    return OfferOut.model_validate(offer, from_attributes=True)


async def complete(
    session: AsyncSession, principal: Principal, *, contact_id: int, body: CompleteIn
) -> ContactOut:
    """End the conversation: the holder, the supervisors of the holder's site and admins."""
    await acted_on(session, principal, contact_id, Action.act)
    contact = await endings.complete(
        session,
        contact_id=contact_id,
        agent_id=principal.id,
        supervisor=supervises(principal),
        disposition=body.disposition,
        notes=body.notes,
        actor=principal.actor,
    )
    return await contact_out(session, contact, principal)


async def wrap_up_done(
    session: AsyncSession, principal: Principal, *, agent_id: int
) -> dict[str, int]:
    """End an agent's after-contact work now: the agent, the supervisors of the agent's site,
    admins."""
    target = await agent_acted_on(session, principal, agent_id)
    require(principal, Resource.agents, Action.act, owner_ids=(agent_id,), agent=target)
    done = await endings.wrap_up_done(session, agent_id=agent_id, actor=principal.actor)
    return {"completed": done}
