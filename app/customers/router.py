"""HTTP routes for customers.

Who may call a route is the access table's answer (``app/agents/access.py``): each route calls
``require`` first, and a role without ``customers unmask`` (agents) sees the numbers masked.
The routes keep them so: which fields such a role may set is ``permissions``'s rule, and
lookups that could unmask a number (by phone, a create that could conflict on one) are
counted, limited and recorded by ``lookups``. Reads of one customer are recorded too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse

from app.accesslog import Access, AccessKind, AccessOutcome
from app.agents.access import Action, Resource, allows, require
from app.agents.dependencies import CurrentPrincipal
from app.agents.permissions import Principal
from app.config import Settings
from app.customers import identity, permissions, service
from app.customers.dependencies import Guard
from app.customers.exceptions import fields_not_allowed
from app.customers.lookups import LookupGuard
from app.customers.models import Customer
from app.customers.schemas import CustomerCreate, CustomerOut, CustomerPage, CustomerUpdate
from app.db import Session
from app.idempotency import run_once
from app.openapi import errors, require_json_body
from app.pagination import Limit, PageCursor, decode_id_cursor, next_id_cursor

router = APIRouter(prefix="/api/v1", tags=["customers"], dependencies=[Depends(require_json_body)])
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", description="retry-safe key for this create")
]
CustomerId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the customer's id")]


def customer_out(principal: Principal, customer: Customer) -> CustomerOut:
    """The customer as this principal may see it: masked numbers for agents."""
    full = allows(principal, Resource.customers, Action.unmask)
    phone, id_number = customer.phone, customer.id_number
    return CustomerOut(
        id=customer.id,
        name=customer.name,
        phone=phone if full or phone is None else identity.mask_phone(phone),
        id_number=id_number if full or id_number is None else identity.mask_id_number(id_number),
        tier=customer.tier,
        relationship_manager_id=customer.relationship_manager_id,
        language=customer.language,
        created_at=customer.created_at,
        updated_at=customer.updated_at,
    )


def _today() -> datetime:
    return datetime.now(UTC)


def _masked_phone(phone: str | None, settings: Settings) -> str | None:
    """The number as the access log keeps it: normalised (or a 422), then masked."""
    normalised = service.clean_phone(phone, region=settings.default_phone_region)
    return None if normalised is None else identity.mask_phone(normalised)


def _given(body: CustomerCreate) -> set[str]:
    """The fields of a new customer given a value (a null sets nothing)."""
    return {name for name in body.model_fields_set if getattr(body, name) is not None}


@router.post(
    "/customers", response_model=CustomerOut, status_code=201, responses=errors(403, 409, 429)
)
async def create_customer(
    request: Request,
    body: CustomerCreate,
    session: Session,
    principal: CurrentPrincipal,
    guard: Guard,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Register a customer (any signed-in user; only supervisors and admins set the ID
    number, tier or relationship manager). For agents, a create with a phone number counts
    against the lookup limit."""
    require(principal, Resource.customers, Action.create)
    refused = permissions.refused_on_create(principal, _given(body))
    if refused:
        raise fields_not_allowed(refused, verb="set")
    query = _masked_phone(body.phone, request.app.state.settings)
    if query is not None:
        await guard.count(AccessKind.customer_conflict, query)

    async def create() -> tuple[int, Any]:
        customer = await service.create(
            session,
            data=body,
            settings=request.app.state.settings,
            today=_today().date(),
            actor=principal.actor,
        )
        await session.refresh(customer)
        return 201, customer_out(principal, customer).model_dump(mode="json")

    async with guard.conflicts_recorded(query):
        code, payload = await run_once(
            session,
            scope=f"{principal.id}:customers",
            key=key,
            payload=body.model_dump(mode="json"),
            create=create,
        )
    return JSONResponse(payload, status_code=code)


@router.get("/customers", response_model=CustomerPage, responses=errors(403, 429))
async def list_customers(
    request: Request,
    session: Session,
    principal: CurrentPrincipal,
    guard: Guard,
    phone: Annotated[str | None, Query(max_length=32, description="exact phone lookup")] = None,
    tier: Annotated[str | None, Query(max_length=32)] = None,
    limit: Limit = 100,
    cursor: PageCursor = None,
) -> CustomerPage:
    """Customers by id, or the one with a phone number (caller identification). A lookup by
    phone is recorded in the access log and, for agents, counts against the lookup limit."""
    require(principal, Resource.customers, Action.list)
    query = _masked_phone(phone, request.app.state.settings)
    if query is not None:
        await guard.count(AccessKind.customer_lookup_phone, query)
    customers = await service.list_customers(
        session,
        phone=phone,
        tier=tier,
        after_id=decode_id_cursor(cursor),
        limit=limit,
        region=request.app.state.settings.default_phone_region,
    )
    if query is not None:
        await _record_lookup(guard, customers, query)
    return CustomerPage(
        items=[customer_out(principal, c) for c in customers],
        next_cursor=next_id_cursor([c.id for c in customers], limit),
    )


async def _record_lookup(guard: LookupGuard, found: Sequence[Customer], query: str) -> None:
    outcome = AccessOutcome.found if found else AccessOutcome.not_found
    subject = found[0].id if found else None
    await guard.answered(Access(AccessKind.customer_lookup_phone, outcome, subject, query))


@router.get("/customers/{customer_id}", response_model=CustomerOut, responses=errors(403))
async def get_customer(
    customer_id: CustomerId, session: Session, principal: CurrentPrincipal, guard: Guard
) -> CustomerOut:
    """One customer; the read is recorded in the access log."""
    require(principal, Resource.customers, Action.read)
    async with guard.absence_recorded(AccessKind.customer_read, str(customer_id)):
        customer = await service.get_or_raise(session, customer_id)
    await guard.answered(Access(AccessKind.customer_read, AccessOutcome.found, customer.id))
    return customer_out(principal, customer)


@router.patch("/customers/{customer_id}", response_model=CustomerOut, responses=errors(403, 409))
async def update_customer(
    request: Request,
    customer_id: CustomerId,
    body: CustomerUpdate,
    session: Session,
    principal: CurrentPrincipal,
    guard: Guard,
) -> CustomerOut:
    """Change a customer; the phone and ID numbers, tier and relationship manager are
    changed by supervisors and admins only."""
    require(principal, Resource.customers, Action.update)
    refused = permissions.refused_on_update(principal, body.model_fields_set)
    if refused:
        raise fields_not_allowed(refused, verb="change")
    settings = request.app.state.settings
    customer = await service.get_or_raise(session, customer_id, for_update=True)
    async with guard.conflicts_recorded(_masked_phone(body.phone, settings)):
        customer = await service.update(
            session,
            customer,
            changes=body,
            settings=settings,
            today=_today().date(),
            actor=principal.actor,
        )
    return customer_out(principal, customer)
