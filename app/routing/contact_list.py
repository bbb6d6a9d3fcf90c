"""The list of contacts (``GET /api/v1/contacts``): who sees which, in what order, how it pages.

Theory of operation
-------------------

A list never refuses what it filters: it shows the contacts its caller may see and no
other. Which those are is the access table's answer (``app/agents/access.py``), asked twice
and turned into SQL here, beside the Python that ``GET /contacts/{id}`` runs:

- ``contacts`` ``read``, exactly as the single read judges it (``service.parties_of`` and
  ``access.passes``): a contact's owners are the agent holding it and every agent it was
  offered to; its sites are theirs; a contact no agent was ever offered has no site yet.
  ``own`` is "I am an owner", ``same site`` adds "my site is one of its sites, or it has
  none", ``allow`` is everything.
- ``contacts`` ``read_history``, only when the caller asks for one customer: that
  customer's contacts, when the caller holds a live contact of the customer right now
  (offered to them, connected or in wrap-up). It is the agent's customer card. Asking for a
  customer one is not serving, or for everything, adds nothing, so the answer never tells
  whether the customer has other contacts.

The rule decides the predicate (``_predicate``); nothing else does. Each item is then shown
as ``GET /contacts/{id}`` shows it to the same caller (``presenters.shown_*``): the caller's
number and the numbers in the subject masked for a role without ``customers`` ``unmask``,
the notes only to the agent who handled the contact, its site's supervisors and admins. A
contact seen through ``read_history`` is therefore shown as to an agent who did not handle
it. An item is a summary: no position, wait estimate or offers (``GET /contacts/{id}`` has
them).

Newest first, by ``(enqueued_at, id)`` descending; a transfer keeps the original enqueue
time, so the successor (the higher id) comes first. The cursor is the last item's key,
``<microseconds since 1970>.<id>``; ``since`` is inclusive and ``until`` exclusive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, exists, false, or_, select, true, tuple_, union
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.access import Action, Resource, Rule, rule_for
from app.agents.models import Agent
from app.agents.permissions import Principal
from app.channels import Channel
from app.errors import InvalidInput
from app.pagination import is_number
from app.routing import service
from app.routing.contact_states import ContactStatus
from app.routing.models import Contact, Offer
from app.routing.presenters import shown_caller, shown_notes, shown_subject
from app.schemas import MAX_BIGINT

# The contacts an agent is serving now: ringing at them, in conversation, in wrap-up.
LIVE: Final = (ContactStatus.offered, ContactStatus.connected, ContactStatus.wrap_up)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class ContactSummary(BaseModel):
    """A contact in a list, as the caller may see it (``GET /contacts/{id}`` has the rest)."""

    id: int
    status: ContactStatus
    queue: str
    queue_id: int
    channel: str
    tier: str
    customer_id: int | None
    subject: str | None = Field(description="masked for the agent role, as on a single read")
    language: str | None
    enqueued_at: datetime
    agent_id: int | None
    answered_at: datetime | None
    ended_at: datetime | None
    disposition: str | None
    transferred_from: int | None
    transferred_to: int | None
    caller: str | None = Field(description="masked for the agent role")
    notes: str | None = Field(
        description="shown to the agent who handled it, its site's supervisors and admins"
    )


class ContactPage(BaseModel):
    items: list[ContactSummary]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


@dataclass(frozen=True, slots=True)
class Filters:
    customer_id: int | None = None
    queue_id: int | None = None
    status: ContactStatus | None = None
    channel: Channel | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class After:
    """The key of the last item of the page before."""

    enqueued_at: datetime
    id: int


# --- filters and the cursor -------------------------------------------------------------------


def utc(moment: datetime | None) -> datetime | None:
    """A timestamp without a zone is taken as UTC (the API's convention)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def checked_range(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and until <= since:
        raise InvalidInput("until: must be later than since", field="until")


def decode_cursor(cursor: str | None) -> After | None:
    """The key after which the next page starts, or a 422 naming ``cursor``."""
    if cursor is None:
        return None
    micros, _, ident = cursor.partition(".")
    if not (is_number(micros) and is_number(ident) and 1 <= int(ident) <= MAX_BIGINT):
        raise InvalidInput(f"cursor {cursor!r} is not valid", field="cursor")
    try:
        at = _EPOCH + timedelta(microseconds=int(micros))
    except OverflowError:
        raise InvalidInput(f"cursor {cursor!r} is not valid", field="cursor") from None
    return After(at, int(ident))


def encode_cursor(contact: Contact) -> str:
    micros = (contact.enqueued_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{contact.id}"


# --- who sees which: the access table in SQL ----------------------------------------------------


def _predicate(
    rule: Rule, own: ColumnElement[bool], site: ColumnElement[bool]
) -> ColumnElement[bool]:
    """The SQL twin of ``access.passes`` for one rule."""
    if rule is Rule.ALLOW:
        return true()
    if rule is Rule.OWN:
        return own
    if rule is Rule.SAME_SITE:
        return or_(own, site)
    return false()


def owned_by(agent_id: int) -> ColumnElement[bool]:
    """The agent holds (or held) the contact, or was offered it."""
    offered = exists().where(Offer.contact_id == Contact.id, Offer.agent_id == agent_id)
    return or_(Contact.agent_id == agent_id, offered)


def of_site(site: str | None) -> ColumnElement[bool]:
    """One of the contact's agents is of ``site``, or no agent was ever offered it."""
    unclaimed = and_(Contact.agent_id.is_(None), ~exists().where(Offer.contact_id == Contact.id))
    if site is None:
        return unclaimed
    agents_there = select(Agent.id).where(Agent.site == site)
    offered_there = exists().where(Offer.contact_id == Contact.id, Offer.agent_id.in_(agents_there))
    return or_(unclaimed, Contact.agent_id.in_(agents_there), offered_there)


def served_by(agent_id: int) -> ColumnElement[bool]:
    """The contact's customer has a live contact held by the agent right now."""
    customers = select(Contact.customer_id).where(
        Contact.agent_id == agent_id,
        Contact.status.in_([s.value for s in LIVE]),
        Contact.customer_id.is_not(None),
    )
    return Contact.customer_id.in_(customers)


def visible_to(principal: Principal, *, one_customer: bool) -> ColumnElement[bool]:
    """The contacts ``principal`` may see in a list (``one_customer``: it asked for one)."""
    role = principal.role.value
    readable = _predicate(
        rule_for(role, Resource.contacts, Action.read),
        owned_by(principal.id),
        of_site(principal.site),
    )
    if not one_customer:
        return readable
    history = _predicate(
        rule_for(role, Resource.contacts, Action.read_history), served_by(principal.id), false()
    )
    return or_(readable, history)


# --- the page ---------------------------------------------------------------------------------


def _filtered(filters: Filters) -> list[ColumnElement[bool]]:
    wanted: list[tuple[Any, object | None]] = [
        (Contact.customer_id, filters.customer_id),
        (Contact.queue_id, filters.queue_id),
        (Contact.status, None if filters.status is None else filters.status.value),
        (Contact.channel, None if filters.channel is None else filters.channel.value),
    ]
    found: list[ColumnElement[bool]] = [col == value for col, value in wanted if value is not None]
    if filters.since is not None:
        found.append(Contact.enqueued_at >= filters.since)
    if filters.until is not None:
        found.append(Contact.enqueued_at < filters.until)
    return found


async def list_contacts(
    session: AsyncSession,
    *,
    principal: Principal,
    filters: Filters,
    after: After | None,
    limit: int,
) -> Sequence[Contact]:
    """A page of the contacts ``principal`` may see, newest first, after ``after``."""
    one_customer = filters.customer_id is not None
    stmt = select(Contact).where(visible_to(principal, one_customer=one_customer))
    stmt = stmt.where(*_filtered(filters))
    if after is not None:
        stmt = stmt.where(tuple_(Contact.enqueued_at, Contact.id) < (after.enqueued_at, after.id))
    stmt = stmt.order_by(Contact.enqueued_at.desc(), Contact.id.desc()).limit(limit)
    return (await session.scalars(stmt)).all()


async def parties_by_contact(
    session: AsyncSession, contacts: Sequence[Contact]
) -> dict[int, service.Parties]:
    """``service.parties_of`` for every contact of a page, in one query."""
    ids = [c.id for c in contacts]
    if not ids:
        return {}
    involved = union(
        select(Offer.contact_id, Offer.agent_id).where(Offer.contact_id.in_(ids)),
        select(Contact.id, Contact.agent_id).where(
            Contact.id.in_(ids), Contact.agent_id.is_not(None)
        ),
    ).subquery()
    rows = await session.execute(
        select(involved.c.contact_id, Agent.id, Agent.site).join(
            Agent, Agent.id == involved.c.agent_id
        )
    )
    sites: dict[int, dict[int, str | None]] = {i: {} for i in ids}
    for contact_id, agent_id, site in rows:
        sites[contact_id][agent_id] = site
    return {c.id: service.Parties(c.agent_id, sites[c.id]) for c in contacts}


def summary_view(
    contact: Contact, queue_name: str, viewer: Principal, parties: service.Parties
) -> ContactSummary:
    """The item, masked as ``GET /contacts/{id}`` masks it for ``viewer``."""
    return ContactSummary(
        id=contact.id,
        status=ContactStatus(contact.status),
        queue=queue_name,
        queue_id=contact.queue_id,
        channel=contact.channel,
        tier=contact.tier,
        customer_id=contact.customer_id,
        subject=shown_subject(contact.subject, viewer),
        language=contact.language,
        enqueued_at=contact.enqueued_at,
        agent_id=contact.agent_id,
        answered_at=contact.answered_at,
        ended_at=contact.ended_at,
        disposition=contact.disposition,
        transferred_from=contact.parent_id,
        transferred_to=contact.next_id,
        caller=shown_caller(contact.caller, viewer),
        notes=shown_notes(contact, viewer, parties),
    )


async def page_of(
    session: AsyncSession, contacts: Sequence[Contact], viewer: Principal, limit: int
) -> ContactPage:
    """The page's body: each item as ``viewer`` may see it, and the next cursor."""
    names = await service.queue_names(session, {c.queue_id for c in contacts})
    parties = await parties_by_contact(session, contacts)
    return ContactPage(
        items=[summary_view(c, names[c.queue_id], viewer, parties[c.id]) for c in contacts],
        next_cursor=encode_cursor(contacts[-1]) if len(contacts) == limit else None,
    )
