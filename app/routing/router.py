"""HTTP routes: queues, contacts, offers, wrap-up.

The error statuses a route can answer beyond those its shape implies (401, 404, 422, 503:
``app/openapi.py``) are declared with ``errors(...)``. Lists page with ``limit`` and
``cursor``: queues by name, offers by id.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select

from app.agents.dependencies import CurrentPrincipal, SignedToken, SupervisorOrAdmin
from app.agents.exceptions import NotAllowed
from app.agents.models import Role
from app.agents.permissions import Principal, can_manage_catalogue, sees_full_customer_data
from app.agents.router import TargetAgentId
from app.agents.schemas import MAX_ID
from app.customers import identity
from app.db import Session, unit_of_work
from app.errors import InvalidInput
from app.idempotency import run_once
from app.openapi import errors, require_json_body
from app.pagination import Limit, PageCursor, decode_id_cursor, is_number, next_id_cursor
from app.routing import endings, intake, lifecycle, service, stats
from app.routing.estimate import WaitEstimate
from app.routing.models import Contact, Offer, OfferStatus, Queue
from app.routing.schemas import (
    CompleteIn,
    ContactCreate,
    ContactOut,
    OfferOut,
    OfferPage,
    QueueCreate,
    QueueOut,
    QueuePage,
    QueueUpdate,
    ServiceLevel,
    TransferIn,
)
from app.schemas import MAX_BIGINT

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_json_body)])
# The busiest route, in a router of its own that the app includes before all others: routes
# are matched in order, and matching through the whole API cost more than the route's work.
intake_router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_json_body)])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
ContactId = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="the contact's id")]
OfferId = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="the offer's id")]
# Queues page by name (unique): the cursor is the last name of the page before.
QueueCursor = Annotated[
    str | None,
    Query(
        pattern=r"^[a-z][a-z0-9_\-]{0,63}$",
        description="the `next_cursor` of the previous page",
    ),
]


def _ref(value: str) -> str | int:
    return int(value) if is_number(value) else value


def queue_out(queue: Queue, names: dict[int, str]) -> QueueOut:
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


async def _queue_out(session: Session, queue: Queue) -> QueueOut:
    ids = {queue.overflow_queue_id} if queue.overflow_queue_id else set()
    return queue_out(queue, await service.queue_names(session, ids))


@router.post(
    "/queues",
    response_model=QueueOut,
    status_code=201,
    tags=["queues"],
    responses=errors(403, 409),
)
async def create_queue(
    body: QueueCreate, session: Session, principal: SupervisorOrAdmin, key: IdempotencyKey = None
) -> JSONResponse:
    """Create a queue with its channels, strategy, routing steps and service level."""

    async def create() -> tuple[int, Any]:
        queue = await service.create_queue(session, data=body, actor=principal.actor)
        await session.refresh(queue)
        return 201, (await _queue_out(session, queue)).model_dump(mode="json")

    code, payload = await run_once(
        session,
        scope=f"{principal.id}:queues",
        key=key,
        payload=body.model_dump(mode="json"),
        create=create,
    )
    return JSONResponse(payload, status_code=code)


@router.get("/queues", response_model=QueuePage, tags=["queues"])
async def list_queues(
    session: Session, _: CurrentPrincipal, limit: Limit = 100, cursor: QueueCursor = None
) -> QueuePage:
    """Queues by name."""
    queues = await service.list_queues(session, after_name=cursor, limit=limit)
    overflow = {q.overflow_queue_id for q in queues if q.overflow_queue_id}
    names = await service.queue_names(session, overflow)
    return QueuePage(
        items=[queue_out(q, names) for q in queues],
        next_cursor=queues[-1].name if len(queues) == limit else None,
    )


@router.get("/queues/{queue_ref}", response_model=QueueOut, tags=["queues"])
async def get_queue(queue_ref: str, session: Session, _: CurrentPrincipal) -> QueueOut:
    """One queue, by id or name."""
    return await _queue_out(session, await service.get_queue_or_raise(session, _ref(queue_ref)))


@router.patch(
    "/queues/{queue_ref}", response_model=QueueOut, tags=["queues"], responses=errors(403, 409)
)
async def update_queue(
    queue_ref: str, body: QueueUpdate, session: Session, principal: SupervisorOrAdmin
) -> QueueOut:
    """Change a queue; contacts already waiting are routed by the new rules from now on."""
    queue = await service.get_queue_or_raise(session, _ref(queue_ref))
    queue = await service.update_queue(session, queue, changes=body, actor=principal.actor)
    return await _queue_out(session, queue)


async def contact_out(
    session: Session, contact: Contact, viewer: Principal | None = None
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


@intake_router.post(
    "/contacts",
    response_model=ContactOut,
    status_code=201,
    tags=["contacts"],
    responses=errors(409),
)
async def create_contact(
    request: Request, body: ContactCreate, claims: SignedToken, key: IdempotencyKey = None
) -> Response:
    """Queue a web, chat, app or callback contact; answers with its position and wait.

    A retry with the same `Idempotency-Key` creates nothing: it answers with the contact the
    first request created, as it stands now.
    """
    state = request.app.state
    taken = await intake.take_in(
        state.db_pool, claims=claims, data=body, key=key, settings=state.settings
    )
    if isinstance(taken, intake.Retried):
        async with unit_of_work(state.sessionmaker) as session:
            shown = await contact_out(session, await service.get_contact(session, taken.contact_id))
        return _created(shown)
    state.wakes.contact_queued(timers=taken.wakes_timers)
    view = ContactOut(
        **taken.contact,
        queue=taken.queue_name,
        agent_id=None,
        answered_at=None,
        ended_at=None,
        position=taken.position,
        estimated_wait_s=taken.wait.seconds,
        estimate_basis=taken.wait.basis,
    )
    return _created(view)


def _created(view: ContactOut) -> Response:
    """201 with the contact, serialised straight to JSON by its model."""
    return Response(view.model_dump_json(), status_code=201, media_type="application/json")


@router.get("/contacts/{contact_id}", response_model=ContactOut, tags=["contacts"])
async def get_contact(
    contact_id: ContactId, session: Session, principal: CurrentPrincipal
) -> ContactOut:
    """A contact with its position, estimated wait and every offer with its reason; the
    caller's number is masked for agents, and the notes are shown to the agent who handled
    the contact, supervisors and admins."""
    contact = await service.get_contact(session, contact_id)
    return await contact_out(session, contact, principal)


@router.post(
    "/contacts/{contact_id}/abandon",
    response_model=ContactOut,
    tags=["contacts"],
    responses=errors(409),
)
async def abandon(
    contact_id: ContactId, session: Session, principal: CurrentPrincipal
) -> ContactOut:
    """The customer left before being answered."""
    contact = await endings.abandon(session, contact_id=contact_id, actor=principal.actor)
    return await contact_out(session, contact, principal)


@router.post(
    "/contacts/{contact_id}/cancel",
    response_model=ContactOut,
    tags=["contacts"],
    responses=errors(403, 409),
)
async def cancel(
    contact_id: ContactId, session: Session, principal: SupervisorOrAdmin
) -> ContactOut:
    """Withdraw a waiting contact (supervisors)."""
    contact = await endings.cancel(session, contact_id=contact_id, actor=principal.actor)
    return await contact_out(session, contact, principal)


def _supervises(principal: Principal) -> bool:
    return can_manage_catalogue(principal)


@router.post(
    "/contacts/{contact_id}/transfer",
    response_model=ContactOut,
    tags=["contacts"],
    responses=errors(403, 409),
)
async def transfer(
    contact_id: ContactId, body: TransferIn, session: Session, principal: CurrentPrincipal
) -> ContactOut:
    """Move a contact to another queue; it keeps its original enqueue time (its place)."""
    target = await service.resolve_queue(session, body.queue)
    successor = await endings.transfer(
        session,
        contact_id=contact_id,
        target=target,
        agent_id=principal.id,
        supervisor=_supervises(principal),
        actor=principal.actor,
    )
    return await contact_out(session, successor, principal)


@router.post(
    "/contacts/{contact_id}/complete",
    response_model=ContactOut,
    tags=["contacts"],
    responses=errors(403, 409),
)
async def complete(
    contact_id: ContactId, body: CompleteIn, session: Session, principal: CurrentPrincipal
) -> ContactOut:
    """The conversation is over; the agent enters wrap-up for the queue's wrap-up time."""
    contact = await endings.complete(
        session,
        contact_id=contact_id,
        agent_id=principal.id,
        supervisor=_supervises(principal),
        disposition=body.disposition,
        notes=body.notes,
        actor=principal.actor,
    )
    return await contact_out(session, contact, principal)


@router.get("/offers", response_model=OfferPage, tags=["offers"], responses=errors(403))
async def list_offers(
    session: Session,
    principal: CurrentPrincipal,
    agent: Annotated[str, Query(description="`me` or an agent id")] = "me",
    status: Annotated[
        OfferStatus | None, Query(description="only offers in this status (default: pending)")
    ] = OfferStatus.pending,
    limit: Limit = 100,
    cursor: PageCursor = None,
) -> OfferPage:
    """Offers made to an agent, oldest first (pending ones by default)."""
    agent_id = principal.id if agent == "me" else _agent_id(agent)
    if agent_id != principal.id and principal.role is Role.agent:
        raise NotAllowed("agents see only their own offers")
    stmt = (
        select(Offer)
        .where(Offer.agent_id == agent_id, Offer.id > decode_id_cursor(cursor))
        .order_by(Offer.id)
        .limit(limit)
    )
    if status is not None:
        stmt = stmt.where(Offer.status == status.value)
    offers = (await session.scalars(stmt)).all()
    return OfferPage(
        items=[OfferOut.model_validate(o, from_attributes=True) for o in offers],
        next_cursor=next_id_cursor([o.id for o in offers], limit),
    )


def _agent_id(value: str) -> int:
    if not is_number(value) or not 1 <= int(value) <= MAX_ID:
        raise InvalidInput(f"agent: {value!r} is neither 'me' nor an agent id", field="agent")
    return int(value)


@router.post(
    "/offers/{offer_id}/accept",
    response_model=OfferOut,
    tags=["offers"],
    responses=errors(403, 409),
)
async def accept(offer_id: OfferId, session: Session, principal: CurrentPrincipal) -> OfferOut:
    """Answer an offer made to you: the contact is connected."""
    offer = await lifecycle.accept_offer(
        session, offer_id=offer_id, agent_id=principal.id, actor=principal.actor
    )
    return OfferOut.model_validate(offer, from_attributes=True)


@router.post(
    "/offers/{offer_id}/reject",
    response_model=OfferOut,
    tags=["offers"],
    responses=errors(403, 409),
)
async def reject(offer_id: OfferId, session: Session, principal: CurrentPrincipal) -> OfferOut:
    """Decline an offer made to you: the contact goes back, keeping its place."""
    offer = await lifecycle.reject_offer(
        session, offer_id=offer_id, agent_id=principal.id, actor=principal.actor
    )
    return OfferOut.model_validate(offer, from_attributes=True)


@router.post("/agents/{agent_id}/wrap-up/done", tags=["agents"], responses=errors(403, 409))
async def wrap_up_done(
    agent_id: TargetAgentId, session: Session, principal: CurrentPrincipal
) -> dict[str, int]:
    """End after-contact work now; the agent can be offered the next contact."""
    if agent_id != principal.id and not _supervises(principal):
        raise NotAllowed("only the agent or a supervisor ends the agent's wrap-up")
    done = await endings.wrap_up_done(session, agent_id=agent_id, actor=principal.actor)
    return {"completed": done}


# --- live queue statistics ----------------------------------------------------------------


@router.get("/queues/{queue_ref}/stats", response_model=stats.QueueStats, tags=["queues"])
async def queue_stats(
    queue_ref: str,
    session: Session,
    _: CurrentPrincipal,
    interval: Annotated[
        stats.Interval | None,
        Query(description="the current interval, aligned in UTC (default `15m`)"),
    ] = None,
    from_: Annotated[
        datetime | None,
        Query(alias="from", description="start of an explicit interval (UTC if no zone)"),
    ] = None,
    to: Annotated[
        datetime | None, Query(description="end of an explicit interval (default and at most now)")
    ] = None,
) -> stats.QueueStats:
    """Live figures of a queue (by id or name) and its figures over the current interval.

    Live: contacts waiting, the longest wait, the queue's agents by state and status. Over the
    interval (`interval`, or `from`/`to`): offered, answered, abandoned, service level with the
    queue's formula, ASA, AHT, abandon rate, occupancy and the Erlang C agents needed.
    """
    queue = await service.get_queue_or_raise(session, _ref(queue_ref))
    return await stats.queue_stats(session, queue=queue, interval=interval, start=from_, end=to)
