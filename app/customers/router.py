"""HTTP routes for customers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse

from app.agents.dependencies import CurrentPrincipal
from app.agents.exceptions import NotAllowed
from app.agents.permissions import Principal, sees_full_customer_data
from app.customers import identity, service
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
    full = sees_full_customer_data(principal)
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


@router.post("/customers", response_model=CustomerOut, status_code=201, responses=errors(403, 409))
async def create_customer(
    request: Request,
    body: CustomerCreate,
    session: Session,
    principal: CurrentPrincipal,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Register a customer (any signed-in user; only supervisors and admins set a tier)."""
    if body.tier is not None and not sees_full_customer_data(principal):
        raise NotAllowed("only supervisors and admins set a customer's tier")

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

    code, payload = await run_once(
        session,
        scope=f"{principal.id}:customers",
        key=key,
        payload=body.model_dump(mode="json"),
        create=create,
    )
    return JSONResponse(payload, status_code=code)


@router.get("/customers", response_model=CustomerPage)
async def list_customers(
    request: Request,
    session: Session,
    principal: CurrentPrincipal,
    phone: Annotated[str | None, Query(max_length=32, description="exact phone lookup")] = None,
    tier: Annotated[str | None, Query(max_length=32)] = None,
    limit: Limit = 100,
    cursor: PageCursor = None,
) -> CustomerPage:
    """Customers by id, or the one with a phone number (caller identification)."""
    customers = await service.list_customers(
        session,
        phone=phone,
        tier=tier,
        after_id=decode_id_cursor(cursor),
        limit=limit,
        region=request.app.state.settings.default_phone_region,
    )
    return CustomerPage(
        items=[customer_out(principal, c) for c in customers],
        next_cursor=next_id_cursor([c.id for c in customers], limit),
    )


@router.get("/customers/{customer_id}", response_model=CustomerOut)
async def get_customer(
    customer_id: CustomerId, session: Session, principal: CurrentPrincipal
) -> CustomerOut:
    """One customer."""
    return customer_out(principal, await service.get_or_raise(session, customer_id))


@router.patch("/customers/{customer_id}", response_model=CustomerOut, responses=errors(403, 409))
async def update_customer(
    request: Request,
    customer_id: CustomerId,
    body: CustomerUpdate,
    session: Session,
    principal: CurrentPrincipal,
) -> CustomerOut:
    """Change a customer; tier and relationship manager changes need a supervisor or admin."""
    privileged = {"tier", "relationship_manager_id"} & body.model_fields_set
    if privileged and not sees_full_customer_data(principal):
        raise NotAllowed(f"only supervisors and admins change {', '.join(sorted(privileged))}")
    customer = await service.get_or_raise(session, customer_id, for_update=True)
    customer = await service.update(
        session,
        customer,
        changes=body,
        settings=request.app.state.settings,
        today=_today().date(),
        actor=principal.actor,
    )
    return customer_out(principal, customer)
