"""The customer's self-service lookup: ``GET /api/v1/public/complaints/{reference}?phone=``.

Theory of operation
-------------------

No sign-in: the reference and the phone number the complaint was registered with are the
proof (``app.complaints.public``). Whoever asks is anonymous, so what keeps the route from
being an oracle is here:

- **One answer for nothing found.** An unknown reference and a wrong phone number are the
  same 404 with the same fixed body (``PublicComplaintNotFound``), reached by the same work.
- **Counted before anything is looked up.** Each attempt is a hit on two limits kept in
  PostgreSQL (``app/ratelimit.py``), committed on their own so a refused or failed attempt
  still counts: per client address (someone sweeping references) and per reference
  (someone guessing the phone number of one), each blocking with a doubling back-off when
  tripped. Over either: 429 with ``Retry-After``, whether the reference exists or not. A
  lookup that succeeds gives its reference's hit back, so a customer who checks often is
  never locked out by their own visits, while wrong numbers add up.
- **On record.** Every attempt, answered, not found, malformed or refused, is a row in the
  access log (``complaint.public_lookup``, no agent, role ``public``; the reference asked
  for as the query, never the phone number): an answered one in the request's transaction,
  the others in a short transaction of their own, since their request rolls back.

The limits are ``DEFAULT_LIMITS`` unless ``app.state.public_lookup_limits`` holds others
(tests set tight ones). Time and the desk's rules come as for the desk's other routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app import ratelimit
from app.accesslog import AccessLogEntry, AccessOutcome
from app.agents.router import client_address
from app.complaints import public
from app.complaints.router import CurrentDesk, Now
from app.complaints.schemas import NoNul
from app.customers.identity import InvalidPhone
from app.db import Session, unit_of_work
from app.errors import InvalidInput, NotFound
from app.openapi import errors

router = APIRouter(prefix="/api/v1/public", tags=["complaints"])

PUBLIC_LOOKUP: Final = "complaint.public_lookup"
PUBLIC_ROLE: Final = "public"
QUERY_LENGTH: Final = 40


@dataclass(frozen=True, slots=True)
class PublicLimits:
    """Lookups allowed per client address and per reference."""

    address: ratelimit.Limit
    reference: ratelimit.Limit


DEFAULT_LIMITS: Final = PublicLimits(
    address=ratelimit.Limit(
        "complaint_public.address",
        hits=30,
        window_s=60,
        backoff_s=60,
        backoff_max_s=3600,
        label="complaint status lookups from this address",
    ),
    reference=ratelimit.Limit(
        "complaint_public.reference",
        hits=5,
        window_s=900,
        backoff_s=900,
        backoff_max_s=86400,
        label="status lookups of this complaint reference",
    ),
)


class PublicComplaintNotFound(NotFound):
    """No complaint with this reference and phone number: which of the two is wrong is
    deliberately not said."""

    def __init__(self) -> None:
        super().__init__("no complaint with this reference and phone number")


def limits_of(request: Request) -> PublicLimits:
    limits: PublicLimits | None = getattr(request.app.state, "public_lookup_limits", None)
    return limits or DEFAULT_LIMITS


def lookup_entry(
    outcome: AccessOutcome, reference: str, complaint_id: int | None = None
) -> AccessLogEntry:
    """The access-log row of one anonymous lookup."""
    return AccessLogEntry(
        agent_id=None,
        role=PUBLIC_ROLE,
        site=None,
        kind=PUBLIC_LOOKUP,
        outcome=outcome.value,
        subject_id=complaint_id,
        query=reference[:QUERY_LENGTH],
    )


async def record_apart(request: Request, outcome: AccessOutcome, reference: str) -> None:
    """Record a lookup whose request is about to fail, in a transaction of its own."""
    async with unit_of_work(request.app.state.sessionmaker) as session:
        session.add(lookup_entry(outcome, reference))


async def count_attempt(request: Request, limits: PublicLimits, reference: str) -> None:
    """One hit per address and per reference, committed at once; over either, the refusal
    is recorded and raised (a 429)."""
    hits = [(limits.address, client_address(request)), (limits.reference, reference)]
    try:
        await ratelimit.hit_all(request.app.state.engine, hits)
    except ratelimit.RateLimited:
        await record_apart(request, AccessOutcome.limited, reference)
        raise


async def answered(
    session: AsyncSession, limits: PublicLimits, reference: str, complaint_id: int
) -> None:
    """Record the answered lookup and give the reference its hit back."""
    session.add(lookup_entry(AccessOutcome.found, reference, complaint_id))
    await ratelimit.forgive(session, limits.reference, reference)
    await session.flush()


Reference = Annotated[
    str, Path(min_length=1, max_length=64, description="the reference, C-YYYYMMDD-NNNNNN"), NoNul
]
Phone = Annotated[
    str,
    Query(min_length=1, max_length=40, description="the phone number the complaint gave"),
]


@router.get(
    "/complaints/{reference}", response_model=public.PublicStatus, responses=errors(404, 429)
)
async def public_complaint_status(
    request: Request,
    reference: Reference,
    phone: Phone,
    session: Session,
    now: Now,
    desk: CurrentDesk,
) -> public.PublicStatus:
    """A complaint's status, deadlines and public timeline, for whoever gives its reference
    and the phone number it was registered with; no sign-in. A wrong number and an unknown
    reference are the same 404."""
    key = public.normalised_reference(reference)
    limits = limits_of(request)
    await count_attempt(request, limits, key)
    region = request.app.state.settings.default_phone_region
    try:
        found = await public.public_status(session, key, phone, now, region=region, desk=desk)
    except InvalidPhone as exc:
        await record_apart(request, AccessOutcome.not_found, key)
        raise InvalidInput(f"phone: {exc}", field="phone") from None
    if found is None:
        await record_apart(request, AccessOutcome.not_found, key)
        raise PublicComplaintNotFound
    await answered(session, limits, key, found.complaint_id)
    return found
