"""HTTP routes of the routing reports: queues and agents per time bucket, JSON or CSV.

Theory of operation
-------------------

``GET /reports/queues`` and ``GET /reports/agents`` cover ``[from, to)`` in buckets of
``interval`` (15m, 30m, 1h, 1d) aligned in ``tz`` (default: the centre's zone), read from the
event log by ``app.routing.reports``; every figure and its formula is in
``app.routing.report_figures`` and ``docs/reports.md``. A range too long for its interval, a
``to`` before ``from`` or an unknown zone is a 422 naming the parameter.

Both answer JSON, or CSV (a header row, one line per row; UTF-8 with a byte-order mark so
spreadsheets read Chinese names right) with ``format=csv`` or ``Accept: text/csv``. A text
cell a spreadsheet would run as a formula (starting ``=``, ``+``, ``-``, ``@``) is written with
a leading ``'``.

Who may: the access table's ``reports``/``read``. Supervisors see every queue (queues have no
site) and the agents of their own site, admins everything; agents and channels' keys get a
403. A supervisor naming another site's agent gets a 403.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from app.agents import service as agents_service
from app.agents.access import Action, Resource, Rule, require, rule_for
from app.agents.dependencies import CurrentPrincipal
from app.agents.permissions import Principal
from app.db import Session, db_now
from app.openapi import errors
from app.routing import reports, service
from app.routing.figures import Interval
from app.routing.report_figures import FORMULAS, AgentRow, QueueRow, Range, csv_text
from app.schemas import MAX_BIGINT

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])


class Format(StrEnum):
    json = "json"
    csv = "csv"


# --- bodies -----------------------------------------------------------------------------------


class ReportHead(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from", description="the start of the range (in `tz`)")
    to: datetime = Field(description="the end of the range, not counted (now at the latest)")
    interval: Interval
    tz: str = Field(description="the zone the buckets are aligned in")
    at: datetime = Field(description="when the report was read (database time)")
    formulas: dict[str, str] = Field(description="how each rate is computed")


class QueueReportRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    bucket_start: datetime
    bucket_end: datetime
    queue_id: int
    queue: str
    offered: int = Field(description="contacts that entered the queue (transfers in included)")
    answered: int
    answered_within: int = Field(description="answered within the queue's threshold")
    abandoned: int = Field(description="short abandons included")
    short_abandoned: int
    timed_out: int
    transferred_out: int
    completed: int
    service_level_pct: float | None
    asa_s: float | None
    aht_s: float | None
    abandon_rate_pct: float | None


class AgentReportRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    bucket_start: datetime
    bucket_end: datetime
    agent_id: int
    agent: str = Field(description="the agent's name")
    site: str | None
    offers: int = Field(description="offers made to the agent")
    accepted: int
    rejected: int
    missed: int = Field(description="offers that rang out unanswered")
    rescinded: int = Field(description="offers taken back (the agent went away, the customer left)")
    handled: int = Field(description="contacts the agent completed (wrap-up done)")
    handle_s: float
    wrap_up_s: float
    aht_s: float | None = Field(description="(handle + wrap-up) / handled")
    available_s: float = Field(description="time with status available in the bucket")
    occupancy_pct: float | None


class QueueReport(ReportHead):
    rows: list[QueueReportRow] = Field(description="per bucket, then queue by name")


class AgentReport(ReportHead):
    rows: list[AgentReportRow] = Field(description="per bucket, then agent by name")


# --- parameters -------------------------------------------------------------------------------

CSV_RESPONSE: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "JSON, or CSV with `format=csv` or `Accept: text/csv`",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    },
    **errors(403, 422),
}
IntervalParam = Annotated[Interval, Query(description="the buckets' length")]
From = Annotated[
    datetime | None,
    Query(
        alias="from",
        description="start of the range (default: the start of the day `to` falls in); "
        "without a zone, in `tz`",
    ),
]
To = Annotated[
    datetime | None,
    Query(description="end of the range, not counted (default and at most: now)"),
]
Zone = Annotated[str | None, Query(max_length=64, description="IANA zone (default: the centre's)")]
FormatParam = Annotated[
    Format | None, Query(alias="format", description="json or csv (default: by `Accept`)")
]
Accept = Annotated[str | None, Header(description="`text/csv` for CSV")]


def wants_csv(fmt: Format | None, accept: str | None) -> bool:
    """``format`` decides; without it, an ``Accept`` that names ``text/csv``."""
    if fmt is not None:
        return fmt is Format.csv
    media = {part.split(";")[0].strip().lower() for part in (accept or "").split(",")}
    return "text/csv" in media


def may_report(principal: Principal) -> None:
    require(
        principal, Resource.reports, Action.read, owner_ids=[principal.id], sites=[principal.site]
    )


async def _range(
    request: Request,
    session: Session,
    *,
    start: datetime | None,
    end: datetime | None,
    interval: Interval,
    tz: str | None,
) -> tuple[Range, datetime]:
    zone = reports.zone(tz or request.app.state.settings.centre_zone)
    now = await db_now(session)
    span = reports.range_of(start=start, end=end, interval=interval, tz=zone, now=now)
    return span, now


def _head(span: Range, now: datetime) -> dict[str, Any]:
    return {
        "from": span.start.astimezone(span.zone),
        "to": span.end.astimezone(span.zone),
        "interval": span.interval,
        "tz": span.zone.key,
        "at": now,
        "formulas": FORMULAS,
    }


def _local(row: QueueRow | AgentRow, span: Range) -> dict[str, Any]:
    return {
        "bucket_start": row.bucket_start.astimezone(span.zone),
        "bucket_end": row.bucket_end.astimezone(span.zone),
    }


def csv_response(name: str, text: str) -> Response:
    return Response(
        content="\ufeff" + text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


# --- routes -----------------------------------------------------------------------------------


@router.get("/queues", response_model=QueueReport, responses=errors(404) | CSV_RESPONSE)
async def queue_report(
    request: Request,
    session: Session,
    principal: CurrentPrincipal,
    interval: IntervalParam = Interval.m15,
    from_: From = None,
    to: To = None,
    queue_id: Annotated[
        int | None, Query(ge=1, le=MAX_BIGINT, description="one queue (default: every queue)")
    ] = None,
    tz: Zone = None,
    fmt: FormatParam = None,
    accept: Accept = None,
) -> Any:
    """Per bucket and queue: offered, answered, abandoned (short apart), timed out,
    transferred, service level, ASA, AHT and abandon rate, from the event log (JSON or CSV)."""
    may_report(principal)
    if queue_id is not None:
        await service.get_queue_or_raise(session, queue_id)
    span, now = await _range(request, session, start=from_, end=to, interval=interval, tz=tz)
    _, rows = await reports.queue_report(session, span=span, queue_id=queue_id)
    if wants_csv(fmt, accept):
        return csv_response("queues", csv_text(rows, QueueRow, span.zone))
    items = [QueueReportRow.model_validate(r).model_copy(update=_local(r, span)) for r in rows]
    return QueueReport(**_head(span, now), rows=items)


@router.get("/agents", response_model=AgentReport, responses=errors(404) | CSV_RESPONSE)
async def agent_report(
    request: Request,
    session: Session,
    principal: CurrentPrincipal,
    interval: IntervalParam = Interval.m15,
    from_: From = None,
    to: To = None,
    agent_id: Annotated[
        int | None, Query(ge=1, le=MAX_BIGINT, description="one agent (default: every agent)")
    ] = None,
    tz: Zone = None,
    fmt: FormatParam = None,
    accept: Accept = None,
) -> Any:
    """Per bucket and agent: offers and their outcomes, contacts handled, handle and wrap-up
    time, time available and occupancy, from the event log (JSON or CSV). Supervisors: the
    agents of their site."""
    may_report(principal)
    if agent_id is not None:
        agent = await agents_service.get_or_raise(session, agent_id)
        require(principal, Resource.reports, Action.read, owner_ids=[agent.id], sites=[agent.site])
    everyone = rule_for(principal.role.value, Resource.reports, Action.read) is Rule.ALLOW
    sites = reports.ALL_SITES if everyone else [principal.site]
    span, now = await _range(request, session, start=from_, end=to, interval=interval, tz=tz)
    _, rows = await reports.agent_report(session, span=span, sites=sites, agent_id=agent_id)
    if wants_csv(fmt, accept):
        return csv_response("agents", csv_text(rows, AgentRow, span.zone))
    items = [AgentReportRow.model_validate(r).model_copy(update=_local(r, span)) for r in rows]
    return AgentReport(**_head(span, now), rows=items)
