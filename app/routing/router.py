"""HTTP routes: queues, contacts, offers, wrap-up, a queue's statistics.

The error statuses a route can answer beyond those its shape implies (401, 404, 422, 503:
``app/openapi.py``) are declared with ``errors(...)``. Lists page with ``limit`` and
``cursor``: queues by name, offers by id.

Who may call a route is the access table's answer (``app/agents/access.py``): each route loads what
the rule needs (the contact's holder and sites, the agent acted on, the offer's agent) and
calls ``require`` before it changes anything. An agent asking for a contact that was never
theirs gets the 404 of a contact that does not exist. The actions an agent's console also
sends over its websocket (accept, reject, complete, end the wrap-up) are one function each in
``app/routing/actions.py``, which both doors call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from app.agents import service as agents_service
from app.agents.access import Action, Resource, require
from app.agents.dependencies import (
    ContactCaller,
    CurrentPrincipal,
    PersonOrChannel,
    check_identity,
)
from app.agents.models import Role
from app.agents.permissions import Principal
from app.agents.router import TargetAgentId
from app.agents.schemas import MAX_ID
from app.db import Session, unit_of_work
from app.errors import InvalidInput
from app.idempotency import run_once
from app.openapi import errors, require_json_body
from app.pagination import Limit, PageCursor, decode_id_cursor, is_number, next_id_cursor
from app.routing import actions, admission, endings, service, stats
from app.routing.actions import acted_on, agent_acted_on, supervises
from app.routing.exceptions import ContactNotFound
from app.routing.figures import Interval
from app.routing.models import OfferStatus
from app.routing.presenters import contact_out, queue_out, queue_view
from app.routing.schemas import (
    CompleteIn,
    ContactCreate,
    ContactOut,
    OfferOut,
    OfferPage,
    QueueCreate,
    QueueOut,
    QueuePage,
    QueueStats,
    QueueUpdate,
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


@router.post(
    "/queues",
    response_model=QueueOut,
    status_code=201,
    tags=["queues"],
    responses=errors(403, 409),
)
async def create_queue(
    body: QueueCreate, session: Session, principal: CurrentPrincipal, key: IdempotencyKey = None
) -> JSONResponse:
    """Create a queue with its channels, strategy, routing steps and service level."""
    require(principal, Resource.queues, Action.create)

    async def create() -> tuple[int, Any]:
        queue = await service.create_queue(session, data=body, actor=principal.actor)
        await session.refresh(queue)
        return 201, (await queue_out(session, queue)).model_dump(mode="json")

    code, payload = await run_once(
        session,
        scope=f"{principal.id}:queues",
        key=key,
        payload=body.model_dump(mode="json"),
        create=create,
    )
    return JSONResponse(payload, status_code=code)


@router.get("/queues", response_model=QueuePage, tags=["queues"], responses=errors(403))
async def list_queues(
    session: Session, principal: CurrentPrincipal, limit: Limit = 100, cursor: QueueCursor = None
) -> QueuePage:
    """Queues by name."""
    require(principal, Resource.queues, Action.list)
    queues = await service.list_queues(session, after_name=cursor, limit=limit)
    overflow = {q.overflow_queue_id for q in queues if q.overflow_queue_id}
    names = await service.queue_names(session, overflow)
    unserved = await service.unserved_channels(session, queues)
    return QueuePage(
        items=[queue_view(q, names, unserved[q.id]) for q in queues],
        next_cursor=queues[-1].name if len(queues) == limit else None,
    )


@router.get("/queues/{queue_ref}", response_model=QueueOut, tags=["queues"], responses=errors(403))
async def get_queue(queue_ref: str, session: Session, principal: CurrentPrincipal) -> QueueOut:
    """One queue, by id or name."""
    require(principal, Resource.queues, Action.read)
    return await queue_out(session, await service.get_queue_or_raise(session, _ref(queue_ref)))


@router.patch(
    "/queues/{queue_ref}", response_model=QueueOut, tags=["queues"], responses=errors(403, 409)
)
async def update_queue(
    queue_ref: str, body: QueueUpdate, session: Session, principal: CurrentPrincipal
) -> QueueOut:
    """Change a queue; contacts already waiting are routed by the new rules from now on.

    A new `max_wait_s` applies to them too: each leaves (to the overflow queue, or ended) at
    its arrival in the queue plus the new max wait, at once if that has passed; `null` lets
    them wait."""
    require(principal, Resource.queues, Action.update)
    queue = await service.get_queue_or_raise(session, _ref(queue_ref))
    queue = await service.update_queue(session, queue, changes=body, actor=principal.actor)
    return await queue_out(session, queue)


@intake_router.post(
    "/contacts",
    response_model=ContactOut,
    status_code=201,
    tags=["contacts"],
    responses=errors(409),
)
async def create_contact(
    request: Request, body: ContactCreate, caller: ContactCaller, key: IdempotencyKey = None
) -> Response:
    """Queue a web, chat, app or callback contact; answers with its position and wait.

    `skills` (optional) are skills the agent who takes it must hold besides the queue's
    routing step; an unknown skill is a 422 naming it.

    Signed in with an agent's token or a channel's API key (`hlk_...`).

    A retry with the same `Idempotency-Key` creates nothing: it answers with the contact the
    first request created, as it stands now.
    """
    state = request.app.state
    taken = await admission.admit(
        state.db_pool,
        caller=(
            admission.SystemCaller(caller.actor)
            if isinstance(caller, Principal)
            else admission.AgentCaller(caller)
        ),
        admission=admission.Admission.of(
            body,
            state.settings,
            integration=caller.username if isinstance(caller, Principal) else None,
        ),
        key=key,
        settings=state.settings,
    )
    if isinstance(taken, admission.Retried):
        # Rare: the retry is shown the contact as its caller may see it now.
        viewer = (
            caller
            if isinstance(caller, Principal)
            else check_identity(caller, await agents_service.get_identity(state.db_pool, caller))
        )
        async with unit_of_work(state.sessionmaker) as session:
            contact = await service.get_contact(session, taken.contact_id)
            # As the first answer: never the caller's number nor notes, and the subject as the
            # request gave it (the same on a retry, or the key would have been refused).
            shown = (await contact_out(session, contact, viewer)).model_copy(
                update={"caller": None, "notes": None, "subject": body.subject}
            )
        if _hides_match(viewer.role.value, body):
            shown = shown.model_copy(update={"customer_id": None, "tier": None})
        return _created(shown)
    state.wakes.contact_queued(timers=taken.wakes_timers)
    admitted = taken.contact
    if _hides_match(taken.caller_role, body):
        admitted = {**admitted, "customer_id": None, "tier": None}
    view = ContactOut(
        **admitted,
        queue=taken.queue_name,
        agent_id=None,
        answered_at=None,
        ended_at=None,
        position=taken.position,
        estimated_wait_s=taken.wait.seconds,
        estimate_basis=taken.wait.basis,
    )
    return _created(view)


def _hides_match(role: str | None, body: ContactCreate) -> bool:
    """Whether a number is a customer's is a lookup (``GET /customers?phone=``), limited and
    recorded for agents: the answer to an agent's contact created by phone must not tell it
    either (no customer id, no tier)."""
    by_phone = body.customer is not None and body.customer.phone is not None
    return role == Role.agent.value and by_phone


def _created(view: ContactOut) -> Response:
    """201 with the contact, serialised straight to JSON by its model."""
    return Response(view.model_dump_json(), status_code=201, media_type="application/json")


@router.get(
    "/contacts/{contact_id}", response_model=ContactOut, tags=["contacts"], responses=errors(403)
)
async def get_contact(
    contact_id: ContactId, session: Session, principal: CurrentPrincipal
) -> ContactOut:
    """A contact with its position, estimated wait and offers with their reasons.

    Agents see the contacts they hold or were offered (any other is a 404, as if it did not
    exist), with the caller's number and the numbers in the subject masked, and only their
    own offers; supervisors see their site's contacts and those not yet offered to anyone;
    the notes are shown to the agent who handled the contact, its supervisors and admins."""
    contact, parties = await actions.read_contact(session, principal, contact_id)
    return await contact_out(session, contact, principal, parties)


@router.post(
    "/contacts/{contact_id}/abandon",
    response_model=ContactOut,
    tags=["contacts"],
    responses=errors(403, 409),
)
async def abandon(
    contact_id: ContactId, session: Session, principal: PersonOrChannel
) -> ContactOut:
    """The customer left before being answered: reported by the channel (its API key), a
    supervisor or an admin; an agent may not end a waiting contact (403).

    A channel reports only the contacts it queued (with any of its keys), and those they
    continue as after a transfer; any other is a 404, as a contact that does not exist."""
    require(
        principal,
        Resource.contacts,
        Action.abandon,
        integration=await service.integration_of(session, contact_id),
        unknown=ContactNotFound(contact_id),
    )
    contact = await endings.abandon(session, contact_id=contact_id, actor=principal.actor)
    return await contact_out(session, contact, principal)


@router.post(
    "/contacts/{contact_id}/cancel",
    response_model=ContactOut,
    tags=["contacts"],
    responses=errors(403, 409),
)
async def cancel(
    contact_id: ContactId, session: Session, principal: CurrentPrincipal
) -> ContactOut:
    """Withdraw a waiting contact (supervisors of its site, admins)."""
    await acted_on(session, principal, contact_id, Action.cancel)
    contact = await endings.cancel(session, contact_id=contact_id, actor=principal.actor)
    return await contact_out(session, contact, principal)


@router.post(
    "/contacts/{contact_id}/transfer",
    response_model=ContactOut,
    tags=["contacts"],
    responses=errors(403, 409),
)
async def transfer(
    request: Request,
    contact_id: ContactId,
    body: TransferIn,
    session: Session,
    principal: CurrentPrincipal,
) -> ContactOut:
    """Move a contact to another queue; it keeps its original enqueue time (its place).

    The agent holding it, the supervisors of that agent's site and admins may move it. The
    agent who held it is offered it again only when nobody else may take it."""
    await acted_on(session, principal, contact_id, Action.act)
    target = await service.resolve_queue(session, body.queue)
    successor = await endings.transfer(
        session,
        contact_id=contact_id,
        target=target,
        agent_id=principal.id,
        supervisor=supervises(principal),
        actor=principal.actor,
        settings=request.app.state.settings,
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
    """The conversation is over; the agent enters wrap-up for the queue's wrap-up time.

    The agent holding it, the supervisors of that agent's site and admins may complete it."""
    return await actions.complete(session, principal, contact_id=contact_id, body=body)


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
    """Offers made to an agent, oldest first (pending ones by default): agents list their
    own, supervisors those of their site's agents, admins any agent's."""
    agent_id = principal.id if agent == "me" else _agent_id(agent)
    target = await agent_acted_on(session, principal, agent_id)
    require(principal, Resource.offers, Action.list, owner_ids=(agent_id,), agent=target)
    offers = await service.list_offers(
        session,
        agent_id=agent_id,
        after_id=decode_id_cursor(cursor),
        status=status,
        limit=limit,
    )
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
    """Answer an offer made to you: the contact is connected.

    An offer past its ring timeout is a 409 (`OfferClosed`, status `expired`)."""
    return await actions.accept(session, principal, offer_id=offer_id)


@router.post(
    "/offers/{offer_id}/reject",
    response_model=OfferOut,
    tags=["offers"],
    responses=errors(403, 409),
)
async def reject(offer_id: OfferId, session: Session, principal: CurrentPrincipal) -> OfferOut:
    """Decline an offer made to you: the contact goes back, keeping its place.

    An offer past its ring timeout is a 409 (`OfferClosed`, status `expired`), as for an
    accept: the timeout decides it as a missed offer."""
    return await actions.reject(session, principal, offer_id=offer_id)


@router.post("/agents/{agent_id}/wrap-up/done", tags=["agents"], responses=errors(403, 409))
async def wrap_up_done(
    agent_id: TargetAgentId, session: Session, principal: CurrentPrincipal
) -> dict[str, int]:
    """End after-contact work now; the agent can be offered the next contact (the agent,
    the supervisors of the agent's site, admins)."""
    return await actions.wrap_up_done(session, principal, agent_id=agent_id)


@router.get(
    "/queues/{queue_ref}/stats", response_model=QueueStats, tags=["queues"], responses=errors(403)
)
async def queue_stats(
    queue_ref: str,
    session: Session,
    principal: CurrentPrincipal,
    interval: Annotated[
        Interval | None,
        Query(description="the current interval, aligned in UTC (default `15m`)"),
    ] = None,
    from_: Annotated[
        datetime | None,
        Query(alias="from", description="start of an explicit interval (UTC if no zone)"),
    ] = None,
    to: Annotated[
        datetime | None, Query(description="end of an explicit interval (default and at most now)")
    ] = None,
) -> QueueStats:
    """Live figures of a queue (by id or name) and its figures over the current interval.

    Live: contacts waiting, the longest wait, the queue's agents by state and status. Over the
    interval (`interval`, or `from`/`to`): offered, answered, abandoned, service level with the
    queue's formula, ASA, AHT, abandon rate, occupancy and the Erlang C agents needed.
    """
    require(principal, Resource.stats, Action.read)
    queue = await service.get_queue_or_raise(session, _ref(queue_ref))
    return await stats.queue_stats(session, queue=queue, interval=interval, start=from_, end=to)
