"""HTTP routes of the IVR: flows (upload, list, read, activate), calls' paths, the outcome report.

Theory of operation
-------------------

``POST /ivr/flows`` takes a flow document as JSON or YAML (by ``Content-Type``: JSON, or
``application/yaml``, ``application/x-yaml``, ``text/yaml``, ``text/plain``) and answers 201
with the stored version, or 422 naming every node and field that is wrong, the queues and
skills the centre lacks included. The same document uploaded again under its name and
version answers 200 with the version stored before; another document under a version
already taken is a 409. ``POST /ivr/flows/{id}/activate`` makes the version answer its
numbers (or those its body gives; the body may be left out); calls in progress keep the
version they started on.

Who may do what, from the access table (``app/agents/access.py``), until the IVR has rows
of its own: reading flows is reading the queues' catalogue (``queues read``); uploading and
activating flows, and reading a call's path, is managing it (``queues update``: supervisors
and admins); the outcome report is a statistic (``stats read``). The path of a contact's
call (``GET /contacts/{id}/ivr``, for the agent who takes it) is read as the contact is
(``contacts read``, with the contact's parties). A caller's number is masked for a viewer
without ``customers unmask``.

Time comes from ``app.state.ivr_clock`` when set (tests inject one), else the system clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from app.agents.access import Action, Resource, allows, require
from app.agents.dependencies import CurrentPrincipal
from app.db import Session
from app.errors import InvalidInput
from app.idempotency import run_once
from app.ivr import bridge, reports, service
from app.ivr.dependencies import ivr_now
from app.ivr.exceptions import NoIvrPath
from app.ivr.models import IvrFlow
from app.ivr.schemas import Activation, CallOut, FlowOut, FlowPage, FlowSummary, OutcomeReport
from app.openapi import errors
from app.pagination import Limit, PageCursor, decode_id_cursor, next_id_cursor
from app.routing import actions

router = APIRouter(prefix="/api/v1/ivr", tags=["ivr"])
# The IVR's view of a contact, beside routing's routes for it.
contacts_router = APIRouter(prefix="/api/v1")

DOCUMENT_TYPES: Final = {
    "application/json": "json",
    "application/yaml": "yaml",
    "application/x-yaml": "yaml",
    "text/yaml": "yaml",
    "text/x-yaml": "yaml",
    "text/plain": "yaml",
}
FlowId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the flow version's id")]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", description="retry-safe key for this create")
]
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "the flow document (docs/ivr.md), as JSON or YAML",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


def _region(request: Request) -> str:
    return request.app.state.settings.default_phone_region  # type: ignore[no-any-return]


async def _document(request: Request) -> bytes:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in DOCUMENT_TYPES:
        sent = media or "no Content-Type"
        raise InvalidInput(
            f"send the flow as application/json or application/yaml, not {sent}", field="body"
        )
    body = await request.body()
    if not body.strip():
        raise InvalidInput("the flow document is empty", field="body")
    return body


async def _summary(session: Session, row: IvrFlow, model: type[FlowSummary] = FlowSummary) -> Any:
    active = (await service.active_numbers(session, [row.id]))[row.id]
    fields = {
        "id": row.id,
        "name": row.name,
        "version": row.version,
        "numbers": row.numbers,
        "active_numbers": active,
        "uploaded_by": row.uploaded_by,
        "uploaded_at": row.uploaded_at,
    }
    if model is FlowOut:
        fields["document"] = row.document
    return model.model_validate(fields)


@router.post(
    "/flows",
    response_model=FlowOut,
    status_code=201,
    responses={
        200: {"model": FlowOut, "description": "this version was uploaded before"},
        **errors(403, 409),
    },
    openapi_extra=UPLOAD_BODY,
)
async def upload_flow(
    request: Request, session: Session, principal: CurrentPrincipal, key: IdempotencyKey = None
) -> JSONResponse:
    """Upload a flow version (JSON or YAML), validated: 422 names every node that is wrong.

    The same document again under its name and version answers 200 with the stored one."""
    require(principal, Resource.queues, Action.update)
    document = await _document(request)

    async def create() -> tuple[int, Any]:
        row, new = await service.upload(
            session, document=document, actor=principal.actor, region=_region(request)
        )
        shown = await _summary(session, row, FlowOut)
        return (201 if new else 200), shown.model_dump(mode="json")

    code, payload = await run_once(
        session,
        scope=f"{principal.actor}:ivr_flows",
        key=key,
        payload=document.decode("utf-8", "replace"),
        create=create,
    )
    return JSONResponse(payload, status_code=code)


@router.get("/flows", response_model=FlowPage, responses=errors(403))
async def list_flows(
    session: Session, principal: CurrentPrincipal, limit: Limit = 100, cursor: PageCursor = None
) -> FlowPage:
    """Flow versions, oldest first, with the numbers each answers now."""
    require(principal, Resource.queues, Action.read)
    rows = await service.list_flows(session, after_id=decode_id_cursor(cursor), limit=limit)
    active = await service.active_numbers(session, [row.id for row in rows])
    items = [
        FlowSummary(
            id=row.id,
            name=row.name,
            version=row.version,
            numbers=row.numbers,
            active_numbers=active[row.id],
            uploaded_by=row.uploaded_by,
            uploaded_at=row.uploaded_at,
        )
        for row in rows
    ]
    return FlowPage(items=items, next_cursor=next_id_cursor([row.id for row in rows], limit))


@router.get("/flows/{flow_id}", response_model=FlowOut, responses=errors(403))
async def get_flow(flow_id: FlowId, session: Session, principal: CurrentPrincipal) -> FlowOut:
    """One flow version with its document."""
    require(principal, Resource.queues, Action.read)
    return await _summary(session, await service.get_or_raise(session, flow_id), FlowOut)  # type: ignore[no-any-return]


@router.post("/flows/{flow_id}/activate", response_model=FlowOut, responses=errors(403))
async def activate_flow(
    flow_id: FlowId,
    request: Request,
    session: Session,
    principal: CurrentPrincipal,
    body: Activation | None = None,
) -> FlowOut:
    """Answer `numbers` (default: those the document declares) with this version from now
    on; calls in progress keep the version they started on. The body may be left out."""
    require(principal, Resource.queues, Action.update)
    row = await service.activate(
        session,
        flow_id=flow_id,
        numbers=None if body is None else body.numbers,
        actor=principal.actor,
        region=_region(request),
        now=ivr_now(request),
    )
    return await _summary(session, row, FlowOut)  # type: ignore[no-any-return]


@router.get("/calls/{call_id}", response_model=CallOut, responses=errors(403))
async def get_call(
    call_id: Annotated[str, Path(max_length=64, description="the provider's id of the call")],
    request: Request,
    session: Session,
    principal: CurrentPrincipal,
    provider: Annotated[str | None, Query(pattern="^(twilio|json)$")] = None,
) -> CallOut:
    """A call's way through the IVR: each node, the caller's input, the prompt, the outcome
    and the time it spent in the IVR."""
    require(principal, Resource.queues, Action.update)
    call = await reports.find_call(session, call_id, provider)
    unmasked = allows(principal, Resource.customers, Action.unmask)
    return await reports.call_view(session, call, unmasked=unmasked, now=ivr_now(request))


@contacts_router.get(
    "/contacts/{contact_id}/ivr", response_model=CallOut, tags=["contacts"], responses=errors(403)
)
async def get_contact_path(
    contact_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="the contact's id")],
    request: Request,
    session: Session,
    principal: CurrentPrincipal,
) -> CallOut:
    """How the caller of a contact came through the IVR, for the agent who takes the call:
    the flow, the language, each step (the options chosen, `choice`), how long it took.

    Readable by whoever may read the contact (`GET /contacts/{contact_id}`: an agent the
    contacts they hold or were offered, any other a 404), with the caller's number masked
    for a viewer who may not see customers' numbers in full. A contact that continues
    another (a transfer, an overflow) shows the call that queued the first; a contact that
    did not come through the IVR is a 404 that says so."""
    await actions.read_contact(session, principal, contact_id)
    call = await bridge.call_of_contact(session, contact_id, lock=False)
    if call is None:
        raise NoIvrPath(contact_id)
    unmasked = allows(principal, Resource.customers, Action.unmask)
    return await reports.call_view(session, call, unmasked=unmasked, now=ivr_now(request))


CSV_ANSWER: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "JSON, or CSV with `format=csv` or `Accept: text/csv`",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    },
    **errors(403, 422),
}


@router.get("/reports/outcomes", response_model=OutcomeReport, responses=CSV_ANSWER)
async def outcome_report(
    session: Session,
    principal: CurrentPrincipal,
    request: Request,
    start: Annotated[
        datetime | None,
        Query(
            alias="from",
            description="calls started from (default: the start of the day `to` falls in, "
            "in the centre's zone); without a zone, UTC",
        ),
    ] = None,
    end: Annotated[
        datetime | None,
        Query(alias="to", description="until, not counted (default: now); without a zone, UTC"),
    ] = None,
    fmt: Annotated[
        str | None, Query(alias="format", pattern="^(json|csv)$", description="json or csv")
    ] = None,
    accept: Annotated[str | None, Header(description="`text/csv` for CSV")] = None,
) -> Any:
    """IVR outcomes of the calls started in the period: served, enqueued, callback,
    transferred, abandoned in the IVR (`hung_up`), ended; drop-off per node. JSON, or CSV
    (`format=csv`, or `Accept: text/csv` without `format`). The period defaults as the queue
    reports' does: `to` now, `from` the start of the day `to` falls in (the centre's zone)."""
    require(principal, Resource.stats, Action.read)
    zone = ZoneInfo(request.app.state.settings.centre_zone)
    begin, until = reports.period(
        start=None if start is None else _utc(start),
        end=None if end is None else _utc(end),
        now=ivr_now(request),
        zone=zone,
    )
    report = await reports.outcomes(session, start=begin, end=until)
    if fmt == "csv" or (fmt is None and _names_csv(accept)):
        return Response(
            content=reports.outcomes_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="ivr-outcomes.csv"'},
        )
    return report


def _names_csv(accept: str | None) -> bool:
    return "text/csv" in {part.split(";")[0].strip().lower() for part in (accept or "").split(",")}


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
