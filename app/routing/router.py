"""HTTP routes: queues, contacts, offers, wrap-up."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select

from app.agents.dependencies import CurrentPrincipal, SignedToken, SupervisorOrAdmin
from app.agents.exceptions import NotAllowed
from app.agents.models import Role
from app.agents.permissions import Principal, can_manage_catalogue
from app.db import Session, unit_of_work
from app.idempotency import run_once
from app.pagination import is_number
from app.routing import endings, intake, lifecycle, service, stats
from app.routing.estimate import WaitEstimate
from app.routing.models import Contact, Offer, OfferStatus, Queue
from app.routing.schemas import (
    CompleteIn,
    ContactCreate,
    ContactOut,
    OfferOut,
    QueueCreate,
    QueueOut,
    QueueUpdate,
    ServiceLevel,
    TransferIn,
)

router = APIRouter(prefix="/api/v1")
# The busiest route, in a router of its own that the app includes before all others: routes
# are matched in order, and matching through the whole API cost more than the route's work.
intake_router = APIRouter(prefix="/api/v1")
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


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


@router.post("/queues", response_model=QueueOut, status_code=201, tags=["queues"])
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


@router.get("/queues", response_model=list[QueueOut], tags=["queues"])
async def list_queues(session: Session, _: CurrentPrincipal) -> list[QueueOut]:
    """Every queue, by name."""
    queues = await service.list_queues(session)
    names = {q.id: q.name for q in queues}
    return [queue_out(q, names) for q in queues]


@router.get("/queues/{queue_ref}", response_model=QueueOut, tags=["queues"])
async def get_queue(queue_ref: str, session: Session, _: CurrentPrincipal) -> QueueOut:
    """One queue, by id or name."""
    return await _queue_out(session, await service.get_queue_or_raise(session, _ref(queue_ref)))


@router.patch("/queues/{queue_ref}", response_model=QueueOut, tags=["queues"])
async def update_queue(
    queue_ref: str, body: QueueUpdate, session: Session, principal: SupervisorOrAdmin
) -> QueueOut:
    """Change a queue; contacts already waiting are routed by the new rules from now on."""
    queue = await service.get_queue_or_raise(session, _ref(queue_ref))
    queue = await service.update_queue(session, queue, changes=body, actor=principal.actor)
    return await _queue_out(session, queue)


async def contact_out(session: Session, contact: Contact) -> ContactOut:
    """The contact as clients see it, with its position, wait estimate and offers."""
    position, wait = await service.announce(session, contact)
    names = await service.queue_names(session, {contact.queue_id})
    offers = await service.offers_of(session, contact.id)
    return contact_view(contact, names[contact.queue_id], position, wait, offers)


def contact_view(
    contact: Contact,
    queue_name: str,
    position: int | None,
    wait: WaitEstimate | None,
    offers: Sequence[Offer] = (),
) -> ContactOut:
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
        offers=[OfferOut.model_validate(o, from_attributes=True) for o in offers],
    )


@intake_router.post("/contacts", response_model=ContactOut, status_code=201, tags=["contacts"])
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
async def get_contact(contact_id: int, session: Session, _: CurrentPrincipal) -> ContactOut:
    """A contact with its position, estimated wait and every offer with its reason."""
    return await contact_out(session, await service.get_contact(session, contact_id))


@router.post("/contacts/{contact_id}/abandon", response_model=ContactOut, tags=["contacts"])
async def abandon(contact_id: int, session: Session, principal: CurrentPrincipal) -> ContactOut:
    """The customer left before being answered."""
    contact = await endings.abandon(session, contact_id=contact_id, actor=principal.actor)
    return await contact_out(session, contact)


@router.post("/contacts/{contact_id}/cancel", response_model=ContactOut, tags=["contacts"])
async def cancel(contact_id: int, session: Session, principal: SupervisorOrAdmin) -> ContactOut:
    """Withdraw a waiting contact (supervisors)."""
    contact = await endings.cancel(session, contact_id=contact_id, actor=principal.actor)
    return await contact_out(session, contact)


def _supervises(principal: Principal) -> bool:
    return can_manage_catalogue(principal)


@router.post("/contacts/{contact_id}/transfer", response_model=ContactOut, tags=["contacts"])
async def transfer(
    contact_id: int, body: TransferIn, session: Session, principal: CurrentPrincipal
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
    return await contact_out(session, successor)


@router.post("/contacts/{contact_id}/complete", response_model=ContactOut, tags=["contacts"])
async def complete(
    contact_id: int, body: CompleteIn, session: Session, principal: CurrentPrincipal
) -> ContactOut:
    """The conversation is over; the agent enters wrap-up for the queue's wrap-up time."""
    contact = await endings.complete(
        session,
        contact_id=contact_id,
        agent_id=principal.id,
        supervisor=_supervises(principal),
        disposition=body.disposition,
        notes=body.notes,
    )
    return await contact_out(session, contact)


@router.get("/offers", response_model=list[OfferOut], tags=["offers"])
async def list_offers(
    session: Session,
    principal: CurrentPrincipal,
    agent: Annotated[str, Query(description="`me` or an agent id")] = "me",
    status: Annotated[OfferStatus | None, Query()] = OfferStatus.pending,
) -> list[OfferOut]:
    """Offers made to an agent (pending ones by default)."""
    agent_id = principal.id if agent == "me" else _agent_id(agent)
    if agent_id != principal.id and principal.role is Role.agent:
        raise NotAllowed("agents see only their own offers")
    stmt = select(Offer).where(Offer.agent_id == agent_id).order_by(Offer.id.desc()).limit(100)
    if status is not None:
        stmt = stmt.where(Offer.status == status.value)
    return [OfferOut.model_validate(o, from_attributes=True) for o in await session.scalars(stmt)]


def _agent_id(value: str) -> int:
    if not is_number(value):
        from app.errors import InvalidInput

        raise InvalidInput(f"agent: {value!r} is neither 'me' nor an agent id", field="agent")
    return int(value)


@router.post("/offers/{offer_id}/accept", response_model=OfferOut, tags=["offers"])
async def accept(offer_id: int, session: Session, principal: CurrentPrincipal) -> OfferOut:
    """Answer an offer made to you: the contact is connected."""
    offer = await lifecycle.accept_offer(session, offer_id=offer_id, agent_id=principal.id)
    return OfferOut.model_validate(offer, from_attributes=True)


@router.post("/offers/{offer_id}/reject", response_model=OfferOut, tags=["offers"])
async def reject(offer_id: int, session: Session, principal: CurrentPrincipal) -> OfferOut:
    """Decline an offer made to you: the contact goes back, keeping its place."""
    offer = await lifecycle.reject_offer(session, offer_id=offer_id, agent_id=principal.id)
    return OfferOut.model_validate(offer, from_attributes=True)


@router.post("/agents/{agent_id}/wrap-up/done", tags=["agents"])
async def wrap_up_done(
    agent_id: int, session: Session, principal: CurrentPrincipal
) -> dict[str, int]:
    """End after-contact work now; the agent can be offered the next contact."""
    if agent_id != principal.id and not _supervises(principal):
        raise NotAllowed("only the agent or a supervisor ends the agent's wrap-up")
    return {"completed": await endings.wrap_up_done(session, agent_id=agent_id)}


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
