"""The IVR's lookups: the data a flow's nodes ask for, answered from the database.

Theory of operation
-------------------

The call machine is pure: a node that needs data (``identify``, ``complaint_status``) emits
a ``Lookup`` action, and the shell answers it here with a result event in the same webhook,
in the request's transaction:

- ``customer_by_number``: the customer whose phone is the caller's number, normalised as
  the customers' service normalises every number (``customers.service.get_by_phone``). A
  withheld or malformed caller ID (``anonymous``, ``+266696687``) identifies nobody.
- ``customer_by_id``: the customer with this resident ID number (the machine has checked
  its shape and check digit already).
- ``complaint_status``: the complaint desk's own public lookup
  (``app.complaints.public.public_status``), with the caller's number as the proof the
  complaint is theirs, exactly as the customer's self-service page asks for it; an unknown
  reference and a number that is not the complaint's are one answer, ``ComplaintNotFound``.

An identified customer's language is passed on only when the flow speaks it (a customer
stored with ``en`` is spoken to in the flow's ``en-US``); otherwise the caller keeps the
language the call has.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.complaints import public
from app.complaints.service import Desk
from app.customers import identity
from app.customers import service as customers
from app.customers.exceptions import InvalidCustomer
from app.customers.models import Customer
from app.ivr.vocabulary import (
    ComplaintFound,
    ComplaintNotFound,
    Event,
    Identified,
    Lookup,
    LookupKind,
    NotIdentified,
)


async def answer(
    session: AsyncSession,
    lookup: Lookup,
    *,
    caller: str,
    languages: Sequence[str],
    region: str,
    desk: Desk,
    now: datetime,
) -> Event:
    """The result event that answers ``lookup`` for a call from ``caller``."""
    if lookup.kind is LookupKind.COMPLAINT_STATUS:
        return await _complaint(session, lookup.value, caller, region=region, desk=desk, now=now)
    if lookup.kind is LookupKind.CUSTOMER_BY_NUMBER:
        customer = await _by_number(session, lookup.value, region)
    else:
        customer = await _by_id_number(session, lookup.value)
    if customer is None:
        return NotIdentified()
    return Identified(customer.id, customer.tier, spoken(customer.language, languages))


def spoken(language: str | None, languages: Sequence[str]) -> str | None:
    """The flow's language that ``language`` means (``en`` → ``en-US``), if it speaks it."""
    if not language:
        return None
    if language in languages:
        return language
    prefix = language.split("-")[0].lower()
    return next((known for known in languages if known.split("-")[0].lower() == prefix), None)


async def _by_number(session: AsyncSession, number: str, region: str) -> Customer | None:
    try:
        return await customers.get_by_phone(session, number, region=region)
    except InvalidCustomer:
        return None  # a withheld or malformed caller ID identifies nobody


async def _by_id_number(session: AsyncSession, id_number: str) -> Customer | None:
    wanted = id_number.strip().upper()
    return await session.scalar(select(Customer).where(Customer.id_number == wanted))


async def _complaint(
    session: AsyncSession, reference: str, caller: str, *, region: str, desk: Desk, now: datetime
) -> Event:
    try:
        found = await public.public_status(
            session, reference, caller, now, region=region, desk=desk
        )
    except identity.InvalidPhone:
        return ComplaintNotFound()  # no number to prove the complaint is the caller's
    if found is None:
        return ComplaintNotFound()
    return ComplaintFound(found.reference, found.status.value, found.due_at)
