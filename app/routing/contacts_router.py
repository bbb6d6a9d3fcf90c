"""HTTP route: the list of contacts (``GET /api/v1/contacts``), beyond API.md.

A router of its own beside ``app/routing/router.py`` (which holds the other contact routes),
included by ``app/main.py``. The route asks the access table whether the caller may list
contacts at all (``contacts`` ``list``: an integration key may not, 403); which contacts
the list then holds, and how each is masked, is ``app/routing/contact_list.py``. Filters
that do not parse, an unknown queue, a range that ends before it starts or a cursor no page
gave are a 422 naming the parameter; a customer with no contact the caller may see is an
empty page, never an error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.access import Action, Resource, require
from app.agents.dependencies import CurrentPrincipal
from app.channels import Channel
from app.db import Session
from app.errors import InvalidInput
from app.openapi import errors, require_json_body
from app.pagination import PageCursor, is_number
from app.routing import contact_list, service
from app.routing.contact_list import ContactPage, Filters
from app.routing.contact_states import ContactStatus
from app.schemas import MAX_BIGINT

router = APIRouter(prefix="/api/v1", tags=["contacts"], dependencies=[Depends(require_json_body)])
ContactLimit = Annotated[int, Query(ge=1, le=200, description="page size")]
CustomerFilter = Annotated[
    int | None, Query(ge=1, le=MAX_BIGINT, description="only this customer's contacts")
]
QueueFilter = Annotated[
    str | None, Query(min_length=1, max_length=64, description="a queue's name or id")
]
Moment = Annotated[datetime | None, Query(description="enqueued at or after (UTC if no zone)")]
Until = Annotated[datetime | None, Query(description="enqueued before (UTC if no zone)")]


async def _queue_id(session: AsyncSession, ref: str | None) -> int | None:
    """The id of the queue named by ``queue``, or a 422 naming it."""
    if ref is None:
        return None
    if is_number(ref) and not 1 <= int(ref) <= MAX_BIGINT:
        raise InvalidInput(f"queue: {ref!r} is not a queue id", field="queue")
    queue = await service.resolve_queue(session, int(ref) if is_number(ref) else ref)
    return queue.id


@router.get("/contacts", response_model=ContactPage, responses=errors(403))
async def list_contacts(
    session: Session,
    principal: CurrentPrincipal,
    customer: CustomerFilter = None,
    queue: QueueFilter = None,
    status: Annotated[ContactStatus | None, Query(description="only in this status")] = None,
    channel: Annotated[Channel | None, Query(description="only of this channel")] = None,
    since: Moment = None,
    until: Until = None,
    limit: ContactLimit = 100,
    cursor: PageCursor = None,
) -> ContactPage:
    """Contacts newest first (by enqueue time), filtered; those the caller may read.

    Supervisors see their site's contacts and those not yet offered to anyone, admins all,
    agents their own. An agent asking for one customer (`customer`) while holding a live
    contact of that customer (offered, connected or in wrap-up) also sees the customer's
    other contacts, with the caller masked and without notes: the console's customer card.
    """
    require(
        principal,
        Resource.contacts,
        Action.list,
        owner_ids=(principal.id,),
        sites=(principal.site,),
    )
    start, end = contact_list.utc(since), contact_list.utc(until)
    contact_list.checked_range(start, end)
    after = contact_list.decode_cursor(cursor)
    filters = Filters(customer, await _queue_id(session, queue), status, channel, start, end)
    found = await contact_list.list_contacts(
        session, principal=principal, filters=filters, after=after, limit=limit
    )
    return await contact_list.page_of(session, found, principal, limit)
