"""HTTP routes of the archive: legal holds, and the export of complaints.

Theory of operation
-------------------

``POST /complaints/{id}/legal-hold`` (``{"reason"}``) puts a complaint under a legal hold and
``DELETE /complaints/{id}/legal-hold`` lifts it; both are the admin's (the access table's
``complaints manage``), lock the complaint for the request's transaction, and answer the
complaint's hold as it now stands. A second hold, lifting a hold that is not there, or a
hold on an anonymised complaint is a 409.

``GET /complaints/export`` streams the complaints the caller may list, with the list's
filters (``status``, ``archived`` included, ``category``, ``assignee``, ``branch``, ``text``)
and a registration period (``from`` inclusive, ``to`` exclusive), as CSV (``format=csv`` or
``Accept: text/csv``) or JSON (the default). Supervisors export their site's complaints and
admins all (``complaints export``); agents none. The export is put on record (its row and the
access log) in the request's transaction, which commits before the first byte is sent; the
rows are then read and sent page by page (``app.complaints.export``).

The app includes this router before the desk's: ``/complaints/export`` would otherwise be
taken for a complaint's id, and ``/complaints/{id}/legal-hold`` for a lifecycle verb.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, Field, StringConstraints

from app.agents.dependencies import CurrentPrincipal
from app.complaints import archive, export, service
from app.complaints.archive import ArchiveConfig
from app.complaints.lifecycle import ComplaintStatus
from app.complaints.models import Complaint
from app.complaints.reports import EARLIEST, LATEST
from app.complaints.router import ComplaintId, CurrentDesk, Now, check, desk_time
from app.complaints.schemas import NoNul
from app.db import Session
from app.errors import InvalidInput
from app.openapi import errors, require_json_body
from app.schemas import StrictModel

router = APIRouter(prefix="/api/v1", tags=["complaints"], dependencies=[Depends(require_json_body)])

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2_000)]
CSV_TYPE = "text/csv; charset=utf-8"
JSON_TYPE = "application/json"


async def archive_config(request: Request) -> ArchiveConfig:
    """The injected configuration (tests), else the environment's."""
    config: ArchiveConfig | None = getattr(request.app.state, "complaint_archive", None)
    return config or archive.default_config()


CurrentArchiveConfig = Annotated[ArchiveConfig, Depends(archive_config)]

# --- legal holds -------------------------------------------------------------------------------


class LegalHoldCreate(StrictModel):
    reason: Reason = Field(description="why it must be kept: name the case, not the person")


class LegalHoldOut(BaseModel):
    complaint_id: int
    reference: str
    status: str
    legal_hold: bool = Field(description="true: the complaint is never anonymised")
    reason: str | None
    placed_by: str | None
    placed_at: datetime | None
    archived_at: datetime | None
    anonymised_at: datetime | None


def hold_out(complaint: Complaint) -> LegalHoldOut:
    return LegalHoldOut(
        complaint_id=complaint.id,
        reference=complaint.reference,
        status=complaint.status,
        legal_hold=complaint.legal_hold,
        reason=complaint.legal_hold_reason,
        placed_by=complaint.legal_hold_by,
        placed_at=complaint.legal_hold_at,
        archived_at=complaint.archived_at,
        anonymised_at=complaint.anonymised_at,
    )


@router.post(
    "/complaints/{complaint_id}/legal-hold",
    response_model=LegalHoldOut,
    responses=errors(403, 409),
)
async def place_legal_hold(
    complaint_id: ComplaintId,
    body: LegalHoldCreate,
    session: Session,
    principal: CurrentPrincipal,
    now: Now,
) -> LegalHoldOut:
    """Put a complaint (archived or not) under a legal hold: it is never anonymised while
    held. Admin only; a complaint already held or already anonymised is a 409."""
    check(principal, "manage")
    complaint = await service.get_or_raise(session, complaint_id, for_update=True)
    await archive.place_hold(session, complaint, reason=body.reason, principal=principal, now=now)
    return hold_out(complaint)


@router.delete(
    "/complaints/{complaint_id}/legal-hold",
    response_model=LegalHoldOut,
    responses=errors(403, 409),
)
async def lift_legal_hold(
    complaint_id: ComplaintId, session: Session, principal: CurrentPrincipal, now: Now
) -> LegalHoldOut:
    """Lift a complaint's legal hold: retention applies to it again. Admin only; a
    complaint not under a hold is a 409."""
    check(principal, "manage")
    complaint = await service.get_or_raise(session, complaint_id, for_update=True)
    await archive.lift_hold(session, complaint, principal=principal, now=now)
    return hold_out(complaint)


# --- the export --------------------------------------------------------------------------------

EXPORT_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "description": "the complaints, as CSV (UTF-8 with a byte-order mark, a header row) "
        "or as JSON: the export's id, its filters and the complaints with the same keys",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            JSON_TYPE: {
                "schema": {
                    "type": "object",
                    "required": ["export_id", "filters", "complaints"],
                    "properties": {
                        "export_id": {"type": "integer"},
                        "filters": {"type": "object"},
                        "complaints": {"type": "array", "items": {"type": "object"}},
                    },
                }
            },
        },
    },
    **errors(403),
}


def chosen_format(given: export.ExportFormat | None, accept: str | None) -> export.ExportFormat:
    """``format`` when given, else CSV if the client accepts it, else JSON."""
    if given is not None:
        return given
    wanted = [part.split(";")[0].strip().lower() for part in (accept or "").split(",")]
    return export.ExportFormat.csv if "text/csv" in wanted else export.ExportFormat.json


def _within_reach(param: str, moment: datetime | None) -> None:
    """A 422 naming ``param`` for a moment outside the reports' years (Python's extreme
    datetimes cannot even be written in UTC)."""
    if moment is None:
        return
    try:
        if EARLIEST <= moment <= LATEST:
            return
    except OverflowError:
        pass
    raise InvalidInput(
        f"{param}: must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}", field=param
    )


async def export_filters(
    status: ComplaintStatus | None = None,
    category: Annotated[str | None, Query(max_length=64), NoNul] = None,
    assignee: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    branch: Annotated[str | None, Query(max_length=100), NoNul] = None,
    text: Annotated[
        str | None, Query(max_length=200, description="words in the matter"), NoNul
    ] = None,
    since: Annotated[
        AwareDatetime | None,
        Query(alias="from", description="registered at or after (1970-01-01 to 9000-01-01)"),
    ] = None,
    until: Annotated[
        AwareDatetime | None,
        Query(alias="to", description="registered before (1970-01-01 to 9000-01-01)"),
    ] = None,
) -> export.ExportFilters:
    """The list's filters and the registration period; ``to`` must come after ``from``.
    Each is checked here, before the export is put on record and its first byte sent: a
    refusal found once the stream has begun could only cut the download short."""
    service.search_words(text)
    for param, moment in (("from", since), ("to", until)):
        _within_reach(param, moment)
    if since is not None and until is not None and until <= since:
        raise InvalidInput("to must be later than from", field="to")
    return export.ExportFilters(status, category, assignee, branch, text, since, until)


def _disposition(format_: export.ExportFormat, now: datetime) -> str:
    return f'attachment; filename="complaints-{now:%Y%m%dT%H%M%SZ}.{format_.value}"'


@router.get(
    "/complaints/export",
    response_class=StreamingResponse,
    responses=EXPORT_RESPONSES,
)
async def export_complaints(
    request: Request,
    session: Session,
    principal: CurrentPrincipal,
    now: Now,
    desk: CurrentDesk,
    filters: Annotated[export.ExportFilters, Depends(export_filters)],
    format_: Annotated[
        export.ExportFormat | None,
        Query(alias="format", description="csv or json; else as Accept says (default json)"),
    ] = None,
    accept: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """The complaints the caller may list (archived ones included), filtered, as CSV or
    JSON, streamed; supervisors their site's, admins all. Every export is recorded in the
    access log with its filters and, once sent, the number of complaints."""
    check(principal, "export", owner_ids=[principal.id], sites=[principal.site])
    chosen = chosen_format(format_, accept)
    made = await export.start(
        session, principal=principal, filters=filters, format_=chosen, now=now
    )
    job = export.Export(
        made.id, principal, filters, chosen, lambda: desk_time(request), desk.work_calendar()
    )
    return StreamingResponse(
        export.stream(request.app.state.sessionmaker, job),
        media_type=CSV_TYPE if chosen is export.ExportFormat.csv else JSON_TYPE,
        headers={"Content-Disposition": _disposition(chosen, now)},
    )
