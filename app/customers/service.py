"""Customers: create, update (tier changes are events), look up. Never commits.

Phone numbers are stored normalised (``identity.normalise_phone``: E.164, or a service
number's bare digits) and every lookup by phone normalises the number asked for the same
way, in the configured default region, so the customer is found however either was typed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.models import Agent
from app.config import Settings
from app.customers import identity
from app.customers.exceptions import CustomerNotFound, InvalidCustomer
from app.customers.models import Customer
from app.customers.schemas import CustomerCreate, CustomerUpdate
from app.db import driver_connection
from app.events.log import record


def clean_phone(
    value: str | None, *, region: str = identity.DEFAULT_PHONE_REGION, field: str = "phone"
) -> str | None:
    """The number as stored, or ``InvalidCustomer`` naming ``field`` (a 422)."""
    if value is None:
        return None
    try:
        return identity.normalise_phone(value, region=region)
    except identity.InvalidPhone as exc:
        raise InvalidCustomer(field, str(exc)) from exc


def clean_id_number(value: str | None, *, today: date) -> str | None:
    if value is None:
        return None
    try:
        return identity.validate_resident_id(value, today=today)
    except identity.InvalidIdNumber as exc:
        raise InvalidCustomer("id_number", str(exc)) from exc


def clean_tier(value: str | None, settings: Settings) -> str:
    tier = value if value is not None else settings.default_tier
    if tier not in settings.tiers:
        known = ", ".join(settings.tier_names)
        raise InvalidCustomer("tier", f"unknown tier {tier!r}; configured tiers: {known}")
    return tier


async def _check_manager(session: AsyncSession, manager_id: int | None) -> None:
    if manager_id is None:
        return
    active = await session.scalar(select(Agent.active).where(Agent.id == manager_id))
    if not active:
        raise InvalidCustomer(
            "relationship_manager_id", f"agent {manager_id} does not exist or is not active"
        )


async def create(
    session: AsyncSession,
    *,
    data: CustomerCreate,
    settings: Settings,
    today: date,
    actor: str | None,
) -> Customer:
    """A new customer; writes ``customer.created``."""
    await _check_manager(session, data.relationship_manager_id)
    customer = Customer(
        name=data.name,
        phone=clean_phone(data.phone, region=settings.default_phone_region),
        id_number=clean_id_number(data.id_number, today=today),
        tier=clean_tier(data.tier, settings),
        language=data.language,
        relationship_manager_id=data.relationship_manager_id,
    )
    session.add(customer)
    await session.flush()
    record(
        session,
        type="customer.created",
        subject_type="customer",
        subject_id=customer.id,
        data={"tier": customer.tier},
        actor=actor,
    )
    return customer


async def update(
    session: AsyncSession,
    customer: Customer,
    *,
    changes: CustomerUpdate,
    settings: Settings,
    today: date,
    actor: str | None,
) -> Customer:
    """Apply a partial update; a tier change writes ``customer.tier_changed``."""
    fields = changes.model_dump(exclude_unset=True)
    if "phone" in fields:
        fields["phone"] = clean_phone(fields["phone"], region=settings.default_phone_region)
    if "id_number" in fields:
        fields["id_number"] = clean_id_number(fields["id_number"], today=today)
    if "tier" in fields:
        fields["tier"] = clean_tier(fields["tier"], settings)
    if "relationship_manager_id" in fields:
        await _check_manager(session, fields["relationship_manager_id"])
    previous_tier = customer.tier
    for name, value in fields.items():
        setattr(customer, name, value)
    await session.flush()
    if customer.tier != previous_tier:
        record(
            session,
            type="customer.tier_changed",
            subject_type="customer",
            subject_id=customer.id,
            data={"tier": customer.tier, "previous": previous_tier},
            actor=actor,
        )
    elif fields:
        record(
            session,
            type="customer.updated",
            subject_type="customer",
            subject_id=customer.id,
            data={"fields": sorted(fields)},
            actor=actor,
        )
    await session.refresh(customer)
    return customer


async def get(
    session: AsyncSession, customer_id: int, *, for_update: bool = False
) -> Customer | None:
    stmt = select(Customer).where(Customer.id == customer_id)
    if for_update:
        stmt = stmt.with_for_update()
    return await session.scalar(stmt)


async def get_or_raise(
    session: AsyncSession, customer_id: int, *, for_update: bool = False
) -> Customer:
    customer = await get(session, customer_id, for_update=for_update)
    if customer is None:
        raise CustomerNotFound(customer_id)
    return customer


async def get_by_phone(
    session: AsyncSession, phone: str, *, region: str = identity.DEFAULT_PHONE_REGION
) -> Customer | None:
    """The customer with this number, however it was typed."""
    normalised = clean_phone(phone, region=region)
    return await session.scalar(select(Customer).where(Customer.phone == normalised))


@dataclass(frozen=True, slots=True)
class Known:
    """What identifying a caller needs of a customer."""

    id: int
    tier: str
    language: str | None


_KNOWN = "SELECT id, tier, language FROM customers WHERE {} = $1"
KNOWN_BY_PHONE = _KNOWN.format("phone")
KNOWN_BY_ID_NUMBER = _KNOWN.format("id_number")


async def known_by_phone(
    session: AsyncSession, phone: str, *, region: str = identity.DEFAULT_PHONE_REGION
) -> Known | None:
    """``get_by_phone``'s customer, read in one statement on the session's driver connection
    (a hot path: the IVR identifies most callers by their number). Raises as it does."""
    normalised = clean_phone(phone, region=region)
    row = await (await driver_connection(session)).fetchrow(KNOWN_BY_PHONE, normalised)
    return None if row is None else Known(row["id"], row["tier"], row["language"])


async def known_by_id_number(session: AsyncSession, id_number: str) -> Known | None:
    """The customer with this resident ID number (as stored: upper case), as ``Known``."""
    wanted = id_number.strip().upper()
    row = await (await driver_connection(session)).fetchrow(KNOWN_BY_ID_NUMBER, wanted)
    return None if row is None else Known(row["id"], row["tier"], row["language"])


async def list_customers(
    session: AsyncSession,
    *,
    phone: str | None,
    tier: str | None,
    after_id: int,
    limit: int,
    region: str = identity.DEFAULT_PHONE_REGION,
) -> Sequence[Customer]:
    """A page of customers by id; with ``phone``, the one with that number (caller ID)."""
    stmt = select(Customer).where(Customer.id > after_id).order_by(Customer.id).limit(limit)
    if phone is not None:
        stmt = stmt.where(Customer.phone == clean_phone(phone, region=region))
    if tier is not None:
        stmt = stmt.where(Customer.tier == tier)
    return (await session.scalars(stmt)).all()
