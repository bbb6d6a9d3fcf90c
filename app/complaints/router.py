"""HTTP routes of the complaint desk.

Theory of operation
-------------------

``POST /complaints`` registers a complaint from any channel (people and channels' API keys):
201 with the reference and the clocks, or 200 with ``linked: true`` and the existing
reference when the same matter is already open. An ``Idempotency-Key`` retry is answered
with the first answer. A new complaint is written on the driver pool in a transaction of its
own (``service.register_new``: the key, the facts and the rows in a few statements), and the
event hub is poked once it commits; a registration of a matter already open is registered
again in a session (``service.register``, under ``run_once``), which links it.

``POST /complaints/{id}/{verb}`` moves a complaint through the lifecycle: the row is locked
for the request's transaction, so two moves of one complaint run one after the other, and
each sees the other's result.

Who may do what (``check``): a person may register; an agent reads the complaints assigned
to them or registered by them and acts on those assigned to them; a supervisor reads and
acts on their site's complaints (assigned to an agent of the site, or to nobody yet); an
admin on all; a channel's API key only registers. A complaint a reader may not see is a 404,
as if it did not exist. Every read of one complaint is recorded in the access log
(``complaint.read``).

Time comes from ``app.state.complaint_clock`` when set (tests inject one), else the system
clock; the desk's rules from ``app.state.complaint_desk`` (the service's desk, built once by
``create_app``; tests may set another).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse

from app.accesslog import Access, AccessKind, AccessOutcome, record_access, record_access_apart
from app.agents.access import Action, Resource, allows, require
from app.agents.dependencies import CurrentPrincipal, PersonOrChannel
from app.agents.permissions import Principal
from app.complaints import service, wallboard
from app.complaints.calendar import WorkCalendar
from app.complaints.clocks import ClockKind, state
from app.complaints.exceptions import ComplaintNotFound, InvalidComplaint
from app.complaints.lifecycle import ComplaintEvent, ComplaintStatus
from app.complaints.models import (
    Complaint,
    ComplaintAudit,
    ComplaintClock,
    history_of,
    policy_of,
)
from app.complaints.schemas import (
    AuditEntryOut,
    AuditOut,
    ClockOut,
    Complainant,
    ComplaintCreate,
    ComplaintOut,
    ComplaintPage,
    ComplaintSummary,
    Matter,
    NoNul,
    Registered,
    TransitionFacts,
    contact_problem,
)
from app.db import Session, unit_of_work
from app.idempotency import check_key, fingerprint, run_once
from app.notifications.adapters import mask_recipient
from app.notifications.models import Channel
from app.openapi import errors, require_json_body
from app.pagination import Limit, PageCursor, decode_id_cursor, next_id_cursor
from app.redact import mask_personal_numbers

router = APIRouter(prefix="/api/v1", tags=["complaints"], dependencies=[Depends(require_json_body)])
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", description="retry-safe key for this create")
]
ComplaintId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the complaint's id")]


def desk_time(request: Request) -> datetime:
    """The desk's clock: injected by tests, else the system's."""
    clock: Callable[[], datetime] | None = getattr(request.app.state, "complaint_clock", None)
    return clock() if clock is not None else datetime.now(UTC)


# The dependencies are coroutines: FastAPI runs a plain function dependency on a worker
# thread, a hop (and a wait for the GIL) per request for what is an attribute read.


async def complaint_now(request: Request) -> datetime:
    """The desk's clock, as a dependency."""
    return desk_time(request)


async def complaint_desk(request: Request) -> service.Desk:
    """The app's desk (``create_app`` builds it from the settings)."""
    desk: service.Desk = request.app.state.complaint_desk
    return desk


Now = Annotated[datetime, Depends(complaint_now)]
CurrentDesk = Annotated[service.Desk, Depends(complaint_desk)]

# --- who may do what -------------------------------------------------------------------------


def check(
    principal: Principal,
    action: str,
    *,
    owner_ids: Collection[int] = (),
    sites: Collection[str | None] | None = None,
    unknown: ComplaintNotFound | None = None,
) -> None:
    """Raise unless the access table lets ``principal`` do ``action`` to this complaint."""
    require(
        principal,
        Resource.complaints,
        Action(action),
        owner_ids=owner_ids,
        sites=sites,
        unknown=unknown,
    )


def _registrar(complaint: Complaint) -> list[int]:
    kind, _, number = complaint.registered_by.partition(":")
    return [int(number)] if kind == "agent" and number.isdigit() else []


async def _sites(session: Session, complaint: Complaint) -> list[str | None]:
    if complaint.assignee_id is None:
        return []
    return [await service.agent_site(session, complaint.assignee_id)]


async def may_read(session: Session, principal: Principal, complaint: Complaint) -> None:
    owners = [*_registrar(complaint), *([complaint.assignee_id] if complaint.assignee_id else [])]
    sites = await _sites(session, complaint)
    check(principal, "read", owner_ids=owners, sites=sites, unknown=ComplaintNotFound(complaint.id))


async def may_act(session: Session, principal: Principal, complaint: Complaint) -> None:
    await may_read(session, principal, complaint)
    owners = [complaint.assignee_id] if complaint.assignee_id else []
    check(principal, "act", owner_ids=owners, sites=await _sites(session, complaint))


# --- presenters ----------------------------------------------------------------------------------


def clock_out(row: ComplaintClock, calendar: WorkCalendar, now: datetime) -> ClockOut:
    policy = policy_of(row)
    read = state(policy, history_of(row), calendar, max(now, row.started_at))
    open_pause = row.pauses[-1] if row.pauses and row.pauses[-1]["end"] is None else None
    return ClockOut(
        kind=row.kind,
        target=policy.target,
        unit=policy.unit.value,
        started_at=row.started_at,
        stopped_at=row.stopped_at,
        due_at=read.due_at,
        status=read.status.value,
        elapsed=read.elapsed,
        extensions=[int(e["days"]) for e in row.extensions],
        paused_for=None if open_pause is None else open_pause["reason"],
    )


def summary(complaint: Complaint, due: datetime | None = None) -> dict[str, Any]:
    """The list's fields; ``due``: the resolution deadline read now, when the stored one
    is behind it (a paused complaint's, ``service.paused_due``)."""
    return {
        "id": complaint.id,
        "reference": complaint.reference,
        "status": complaint.status,
        "channel": complaint.channel,
        "customer_id": complaint.customer_id,
        "branch": complaint.branch,
        "categories": list(complaint.categories),
        "severity": complaint.severity,
        "escalation_level": complaint.escalation_level,
        "assignee_id": complaint.assignee_id,
        "registered_at": complaint.registered_at,
        "due_at": complaint.due_at if due is None else due,
    }


def resolution_due(clocks: list[ClockOut], stored: datetime | None) -> datetime | None:
    """The resolution clock's deadline as ``clocks`` read it (a paused one's moves on with
    the pause); ``stored`` when the complaint runs none."""
    return next((c.due_at for c in clocks if c.kind == ClockKind.RESOLUTION.value), stored)


def unmasked(principal: Principal) -> bool:
    """Whether ``principal`` sees customers' numbers in full (``customers unmask``)."""
    return allows(principal, Resource.customers, Action.unmask)


def _masked(value: Any) -> Any:
    """``value`` with the personal numbers in its text masked, through lists and objects."""
    if isinstance(value, str):
        return mask_personal_numbers(value)
    if isinstance(value, list):
        return [_masked(item) for item in value]
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    return value


def masked_contact(contact: str) -> str:
    """A complainant's contact for a viewer without ``unmask``: an address keeps its first
    letter and its domain, a number its first three and last four digits."""
    local, at, _ = contact.rpartition("@")
    if at and local:
        return mask_recipient(Channel.email, contact)
    return mask_personal_numbers(contact)


def entry_out(row: ComplaintAudit, *, unmask: bool = True) -> AuditEntryOut:
    """An audit entry; masked, its reason and data (the hashes stay the stored ones)."""
    entry = service.entry_of(row)
    if not unmask:
        entry = {**entry, "reason": _masked(entry["reason"]), "data": _masked(entry["data"])}
    return AuditEntryOut.model_validate({**entry, "redacted": entry["content_sha256"] is not None})


def complaint_out(
    complaint: Complaint,
    clocks: list[ClockOut],
    timeline: list[ComplaintAudit],
    *,
    unmask: bool = True,
) -> ComplaintOut:
    """The complaint as its viewer may see it: without ``unmask``, the complainant's contact
    and the personal numbers in its texts, facts and timeline are masked."""
    text: Callable[[Any], Any] = (lambda value: value) if unmask else _masked
    contact = complaint.complainant_contact
    return ComplaintOut(
        **summary(complaint, resolution_due(clocks, complaint.due_at)),
        complainant=Complainant(
            name=complaint.complainant_name,
            contact=contact if unmask else masked_contact(contact),
            relation=complaint.complainant_relation,  # type: ignore[arg-type]
        ),
        matter=Matter(
            occurred_at=complaint.occurred_at,
            location=text(complaint.location),
            branch=complaint.branch,
            description=text(complaint.description),
        ),
        grounds=text(complaint.grounds),
        request=text(complaint.request),
        contact_id=complaint.contact_id,
        registered_by=complaint.registered_by,
        facts=text(complaint.facts),
        linked=text(complaint.linked),
        clocks=clocks,
        timeline=[entry_out(row, unmask=unmask) for row in timeline],
    )


async def detail(
    session: Session,
    complaint: Complaint,
    desk: service.Desk,
    now: datetime,
    principal: Principal,
) -> ComplaintOut:
    calendar = desk.work_calendar()
    rows = await service.clocks_of(session, complaint.id)
    timeline = await service.audit_entries(session, complaint.id)
    clocks = [clock_out(r, calendar, now) for r in rows]
    return complaint_out(complaint, clocks, timeline, unmask=unmasked(principal))


# --- routes ----------------------------------------------------------------------------------


# How far ahead of the desk's clock "when it happened" may be: a clock running a little fast.
OCCURRED_LEEWAY = timedelta(hours=1)
# The earliest "when it happened" a complaint may name, as for the desk's reports: an older
# date is a typo, and the oldest Python dates are stored as -infinity or not at all.
OCCURRED_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


@router.post(
    "/complaints",
    response_model=Registered,
    status_code=201,
    responses={
        **errors(403, 409),
        200: {"model": Registered, "description": "linked to the open complaint"},
    },
)
async def register_complaint(
    request: Request,
    body: ComplaintCreate,
    principal: PersonOrChannel,
    now: Now,
    desk: CurrentDesk,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Register a complaint from any channel; the same matter already open is linked to it
    (200, ``linked: true``, its reference) instead of opened twice."""
    check(principal, "create")
    if body.matter.occurred_at > now + OCCURRED_LEEWAY:
        raise InvalidComplaint("matter.occurred_at", "is in the future: say when it happened")
    if body.matter.occurred_at < OCCURRED_EARLIEST:
        raise InvalidComplaint(
            "matter.occurred_at", f"is before {OCCURRED_EARLIEST:%Y-%m-%d}: say when it happened"
        )
    state = request.app.state
    region = state.settings.default_phone_region
    problem = contact_problem(body.complainant.contact, region)
    if problem is not None:
        raise InvalidComplaint("complainant.contact", problem)
    scope = f"{principal.actor}:complaints"
    payload = body.model_dump(mode="json")
    calendar = desk.work_calendar()

    def answer(done: service.Registration) -> tuple[int, Any]:
        clocks = [clock_out(r, calendar, now) for r in done.clocks]
        registered = Registered(
            id=done.complaint.id,
            reference=done.complaint.reference,
            status=done.complaint.status,
            due_at=resolution_due(clocks, done.complaint.due_at),
            clocks=clocks,
            linked=done.linked,
        )
        return (200 if done.linked else 201), registered.model_dump(mode="json")

    keyed = None
    if key is not None:
        check_key(key)
        keyed = service.Keyed(scope, key, fingerprint(payload))
    taken = await service.register_new(
        state.db_pool,
        data=body,
        actor=principal.actor,
        now=now,
        desk=desk,
        keyed=keyed,
        answer=answer,
    )
    if isinstance(taken, service.Created):
        _wake(state, timers=taken.wakes_timers)
        assert taken.answer is not None
        return JSONResponse(taken.answer[1], status_code=taken.answer[0])
    if isinstance(taken, service.Replayed):
        return JSONResponse(taken.answer[1], status_code=taken.answer[0])
    # Rare: the same matter is open. Linking runs in a session.
    code, out = await _register_in_session(
        state, body, principal, now, desk, key=key, answer=answer
    )
    return JSONResponse(out, status_code=code)


async def _register_in_session(
    state: Any,
    body: ComplaintCreate,
    principal: Principal,
    now: datetime,
    desk: service.Desk,
    *,
    key: str | None,
    answer: service.Answer,
) -> tuple[int, Any]:
    """Register in a session of its own (``service.register``, which links), the key kept
    by ``run_once``; the customer's lock is taken before the key, in the order the driver's
    statements take them."""
    async with unit_of_work(state.sessionmaker) as session:
        await service.lock_customer(session, body)

        async def create() -> tuple[int, Any]:
            done = await service.register(
                session, data=body, actor=principal.actor, now=now, desk=desk
            )
            return answer(done)

        payload = body.model_dump(mode="json")
        scope = f"{principal.actor}:complaints"
        return await run_once(session, scope=scope, key=key, payload=payload, create=create)


def _wake(state: Any, *, timers: bool) -> None:
    """A registration committed on the driver: the hub reads its event now, and the timer
    worker looks now when a timer it set is due soon."""
    if state.hub is not None:
        state.hub.poke()
    if timers and state.timer_worker is not None:
        state.timer_worker.poke()


@router.get("/complaints", response_model=ComplaintPage, responses=errors(403))
async def list_complaints(
    session: Session,
    principal: CurrentPrincipal,
    status: ComplaintStatus | None = None,
    category: Annotated[str | None, Query(max_length=64), NoNul] = None,
    assignee: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    branch: Annotated[str | None, Query(max_length=100), NoNul] = None,
    text: Annotated[
        str | None, Query(max_length=200, description="words in the matter"), NoNul
    ] = None,
    overdue: Annotated[
        bool | None,
        Query(description="true: open with the resolution clock past its deadline; false: not"),
    ] = None,
    at_risk: Annotated[
        bool | None,
        Query(
            description="true: open, not overdue, at least 80 % of the resolution clock's "
            "(extended) target used; false: not"
        ),
    ] = None,
    limit: Limit = 100,
    cursor: PageCursor = None,
    *,
    now: Now,
    desk: CurrentDesk,
) -> ComplaintPage:
    """The complaints the caller may see, oldest first, filtered."""
    check(principal, "list", owner_ids=[principal.id], sites=[principal.site])
    filters = service.Filters(status, category, assignee, branch, text)
    if overdue is not None or at_risk is not None:
        filters = await _by_deadline(session, principal, filters, overdue, at_risk, now, desk)
    found = await service.list_complaints(
        session,
        principal=principal,
        filters=filters,
        after_id=decode_id_cursor(cursor),
        limit=limit,
    )
    due = await service.paused_due(session, found, desk.work_calendar(), now)
    return ComplaintPage(
        items=[ComplaintSummary(**summary(c, due.get(c.id))) for c in found],
        next_cursor=next_id_cursor([c.id for c in found], limit),
    )


async def _by_deadline(
    session: Session,
    principal: Principal,
    filters: service.Filters,
    overdue: bool | None,
    at_risk: bool | None,
    now: datetime,
    desk: service.Desk,
) -> service.Filters:
    """``filters`` narrowed to the complaints whose resolution clock is (or is not) overdue or
    at risk, read at ``now`` as the wallboard reads them."""
    found = await wallboard.deadlines(
        session, now=now, visible=service.visible_to(principal), desk=desk
    )
    only: frozenset[int] | None = None
    never: frozenset[int] = frozenset()
    for wanted, ids in ((overdue, found.overdue), (at_risk, found.at_risk)):
        if wanted is True:
            only = ids if only is None else only & ids
        elif wanted is False:
            never |= ids
    return dataclasses.replace(filters, only_ids=only, not_ids=never)


async def readable(
    request: Request, session: Session, principal: Principal, complaint_id: int
) -> Complaint:
    """The complaint, if ``principal`` may read it (a 404 otherwise); the read is recorded
    in the access log either way."""
    try:
        complaint = await service.get_or_raise(session, complaint_id)
        await may_read(session, principal, complaint)
    except ComplaintNotFound:
        absent = Access(AccessKind.complaint_read, AccessOutcome.not_found, query=str(complaint_id))
        await record_access_apart(request.app.state.sessionmaker, principal, absent)
        raise
    found = Access(AccessKind.complaint_read, AccessOutcome.found, subject_id=complaint.id)
    await record_access(session, principal, found)
    return complaint


@router.get("/complaints/{complaint_id}", response_model=ComplaintOut)
async def get_complaint(
    request: Request,
    complaint_id: ComplaintId,
    session: Session,
    principal: CurrentPrincipal,
    now: Now,
    desk: CurrentDesk,
) -> ComplaintOut:
    """One complaint, its clocks and its timeline; the read is recorded in the access log."""
    complaint = await readable(request, session, principal, complaint_id)
    return await detail(session, complaint, desk, now, principal)


@router.get("/complaints/{complaint_id}/audit", response_model=AuditOut)
async def get_audit(
    request: Request, complaint_id: ComplaintId, session: Session, principal: CurrentPrincipal
) -> AuditOut:
    """The hash-chained history, and whether it verifies (else the first seq that fails)."""
    complaint = await readable(request, session, principal, complaint_id)
    rows, bad = await service.audit_trail(session, complaint)
    return AuditOut(
        complaint_id=complaint.id,
        reference=complaint.reference,
        entries=[entry_out(r, unmask=unmasked(principal)) for r in rows],
        verified=bad is None,
        first_bad_seq=bad,
    )


@router.post(
    "/complaints/{complaint_id}/{verb}",
    response_model=ComplaintOut,
    responses=errors(403, 409, 422),
)
async def move_complaint(
    complaint_id: ComplaintId,
    verb: ComplaintEvent,
    session: Session,
    principal: CurrentPrincipal,
    now: Now,
    desk: CurrentDesk,
    body: TransitionFacts | None = None,
) -> ComplaintOut:
    """Move a complaint through its lifecycle with the facts the move needs; an illegal
    move is a 409 naming the current status."""
    complaint = await service.get_or_raise(session, complaint_id, for_update=True)
    await may_act(session, principal, complaint)
    await service.transition(
        session,
        complaint,
        event=verb,
        facts=body or TransitionFacts(),
        principal=principal,
        now=now,
        desk=desk,
    )
    return await detail(session, complaint, desk, now, principal)
