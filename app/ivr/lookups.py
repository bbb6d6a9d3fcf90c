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

Complaint-status lookups: limits and record
-------------------------------------------

Anyone can place a call, or post webhooks, with a number of their choosing, so the status
lookup is guarded as the self-service route is (``app.complaints.public_router``), with
limits of its own:

- **Counted before anything is looked up.** Each attempt is a hit on two limits kept in
  PostgreSQL (``app/ratelimit.py``), committed at once in a transaction of their own on the
  session's engine, so an attempt counts even if its step then fails: per caller number
  (the ``From`` as the call holds it, normalised when the call started by
  ``app.ivr.service.number_key``, so ``138 0013 8000`` and ``+8613800138000`` are one
  caller; someone sweeping references) and per reference (someone trying one reference
  from many numbers), each blocking with a doubling back-off when tripped. Withheld
  numbers written alike (``anonymous``) count as one caller; they never prove a complaint.
- **No oracle.** Over either limit the caller hears what an unknown reference gets,
  ``ComplaintNotFound``, whether the reference exists or not, and nothing is looked up.
- **A found lookup gives its reference's hit back**, at once and on its own too, so a
  caller who checks their own complaint often is never locked out by the reference limit,
  while wrong numbers add up. The number's hit is kept.
- **On record.** Every attempt, found, not found (a withheld or malformed caller ID
  included) or limited, is one row in the access log: kind ``complaint.public_lookup`` (a
  lookup by reference and phone, without signing in), role ``ivr``, no agent, the
  reference as the query, never the caller's number. The row is written in the step's
  transaction, with the answer the caller hears: a step that fails after its lookup is
  answered with an error, so the caller learns nothing from it, and its hit still counts.

The limits are ``DEFAULT_LIMITS`` unless the step's context carries others (tests set tight
ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app import ratelimit
from app.accesslog import AccessKind, AccessLogEntry, AccessOutcome
from app.complaints import public
from app.complaints.service import Desk
from app.customers import identity
from app.customers import service as customers
from app.customers.exceptions import InvalidCustomer
from app.ivr.vocabulary import (
    ComplaintFound,
    ComplaintNotFound,
    Event,
    Identified,
    Lookup,
    LookupKind,
    NotIdentified,
)

IVR_ROLE: Final = "ivr"
QUERY_LENGTH: Final = 40  # the access log's query column


@dataclass(frozen=True, slots=True)
class StatusLimits:
    """Complaint-status lookups allowed per caller number and per reference."""

    number: ratelimit.Limit
    reference: ratelimit.Limit


# Read at each lookup, not at import, so that a context without limits of its own gets
# whatever this names at the time.
DEFAULT_LIMITS = StatusLimits(
    number=ratelimit.Limit(
        "complaint_ivr.number",
        hits=10,
        window_s=3600,
        backoff_s=3600,
        backoff_max_s=86400,
        label="complaint status lookups from this number",
    ),
    reference=ratelimit.Limit(
        "complaint_ivr.reference",
        hits=5,
        window_s=900,
        backoff_s=900,
        backoff_max_s=86400,
        label="status lookups of this complaint reference by phone",
    ),
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
    limits: StatusLimits | None = None,
) -> Event:
    """The result event that answers ``lookup`` for a call from ``caller``."""
    if lookup.kind is LookupKind.COMPLAINT_STATUS:
        asked = Asked(public.normalised_reference(lookup.value), caller, region, now)
        return await _complaint(session, asked, desk=desk, limits=limits or DEFAULT_LIMITS)
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


async def _by_number(session: AsyncSession, number: str, region: str) -> customers.Known | None:
    try:
        return await customers.known_by_phone(session, number, region=region)
    except InvalidCustomer:
        return None  # a withheld or malformed caller ID identifies nobody


async def _by_id_number(session: AsyncSession, id_number: str) -> customers.Known | None:
    return await customers.known_by_id_number(session, id_number)


# --- complaint status ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Asked:
    """One complaint-status attempt: the reference keyed, by whom, when."""

    reference: str  # as stored, C-YYYYMMDD-NNNNNN
    caller: str  # as the call holds it: normalised when it started, "" when withheld
    region: str
    now: datetime


async def _complaint(
    session: AsyncSession, asked: Asked, *, desk: Desk, limits: StatusLimits
) -> Event:
    engine = engine_of(session)
    try:
        await ratelimit.hit_all(
            engine, [(limits.number, asked.caller), (limits.reference, asked.reference)]
        )
    except ratelimit.RateLimited:
        return _not_found(session, asked, AccessOutcome.limited)
    found = await _status(session, asked, desk)
    if found is None:
        return _not_found(session, asked, AccessOutcome.not_found)
    session.add(status_entry(asked, AccessOutcome.found, found.complaint_id))
    await _give_back(engine, limits.reference, asked.reference)
    return ComplaintFound(found.reference, found.status.value, found.due_at)


async def _status(session: AsyncSession, asked: Asked, desk: Desk) -> public.PublicStatus | None:
    try:
        return await public.public_status(
            session, asked.reference, asked.caller, asked.now, region=asked.region, desk=desk
        )
    except identity.InvalidPhone:
        return None  # no number to prove the complaint is the caller's


def _not_found(session: AsyncSession, asked: Asked, outcome: AccessOutcome) -> Event:
    session.add(status_entry(asked, outcome))
    return ComplaintNotFound()


def status_entry(
    asked: Asked, outcome: AccessOutcome, complaint_id: int | None = None
) -> AccessLogEntry:
    """The access-log row of one complaint-status attempt: the reference, never the number."""
    entry = AccessLogEntry(
        agent_id=None,
        role=IVR_ROLE,
        site=None,
        kind=AccessKind.complaint_public_lookup.value,
        outcome=outcome.value,
        subject_id=complaint_id,
        query=asked.reference[:QUERY_LENGTH],
    )
    entry.at = asked.now
    return entry


def engine_of(session: AsyncSession) -> AsyncEngine:
    """The engine behind ``session``, where the limits' hits commit on their own."""
    if not isinstance(session.bind, AsyncEngine):
        raise TypeError("a complaint-status lookup needs a session bound to an engine")
    return session.bind


async def _give_back(engine: AsyncEngine, limit: ratelimit.Limit, key: str) -> None:
    # On its own, like the hit: the step's transaction holds no lock on the limit's row, so
    # a second lookup of the reference in the same step cannot wait on this one.
    async with engine.begin() as conn:
        await ratelimit.forgive(conn, limit, key)
