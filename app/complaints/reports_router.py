"""HTTP routes of the complaint desk: reports.

Theory of operation
-------------------

``GET /complaints/reports/summary`` counts the complaints registered in a window by one
dimension (``by``: category, channel, branch, tier, severity; none: all together) and by
period (``period``: day, week, month in the report's zone ``tz``; none: the whole window),
with SLA compliance, the median and 90th-percentile hours to resolve, the reopen and review
rates and the CSAT average (``app.complaints.report_figures``; each formula is in the
answer's ``formulas`` and in ``docs/complaints/reports.md``). ``GET
/complaints/reports/root-causes`` counts the resolved complaints of the window by category,
branch and responsible unit, each split by whether the complaint was upheld.

Both answer JSON, or CSV (a header row, one row per group; UTF-8 with a byte-order mark so
spreadsheets read Chinese text right) with ``format=csv`` or ``Accept: text/csv``. A text
cell a spreadsheet would run as a formula (starting ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return) is written with a leading ``'``.

Who may: supervisors and admins. A supervisor's figures cover the complaints they may list
(their site's, those not yet assigned, and their own), an admin's every complaint; agents
and channels' API keys get a 403. Time (``now``, the default end of the window) is the
desk's clock (``app.state.complaint_clock`` when set).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from app.agents.access import Action, Resource, require
from app.agents.dependencies import CurrentPrincipal
from app.agents.permissions import Principal
from app.complaints import reports
from app.complaints.report_figures import (
    DEFAULT_ZONE,
    FIGURE_NAMES,
    FORMULAS,
    Dimension,
    Figures,
    Group,
    Period,
    RootCause,
    RootDimension,
    Window,
)
from app.complaints.router import Now
from app.db import Session
from app.openapi import errors

router = APIRouter(prefix="/api/v1", tags=["complaints"])

COHORT: Final = (
    "complaints registered in [from, to), as they stand at `at`; a complaint with several "
    "categories counts in each"
)
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


class Format(StrEnum):
    json = "json"
    csv = "csv"


# --- bodies ----------------------------------------------------------------------------------


class ReportWindow(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from", description="the first registration counted")
    to: datetime = Field(description="the end of the window (not counted)")
    tz: str = Field(description="the zone of the periods and of `from`/`to` without one")
    at: datetime = Field(description="when the figures were read")


class SummaryRow(BaseModel):
    period_start: datetime = Field(description="the row's period, cut to the window")
    period_end: datetime
    key: str | None = Field(description="the dimension's value; null: none (or no `by`)")
    figures: Figures


class SummaryOut(ReportWindow):
    by: Dimension | None
    period: Period | None
    cohort: str = Field(default=COHORT, description="which complaints the rows count")
    formulas: dict[str, str] = Field(description="how each rate is computed")
    rows: list[SummaryRow]


class RootCauseRow(BaseModel):
    dimension: RootDimension
    key: str | None = Field(description="null: none given (no category, no unit)")
    resolved: int
    upheld: int
    not_upheld: int
    upheld_unknown: int = Field(description="resolved without saying whether it was upheld")
    upheld_pct: float | None = Field(description="upheld / (upheld + not_upheld) * 100")


class RootCausesOut(ReportWindow):
    cohort: str = Field(
        default="resolved complaints registered in [from, to); the facts of their last resolution",
    )
    rows: list[RootCauseRow]


# --- who may, and how to answer --------------------------------------------------------------


def may_report(principal: Principal) -> None:
    """The access table's ``reports``/``read`` (supervisors: their site; admins: all); the
    rows are then the complaints the principal may list."""
    require(
        principal,
        Resource.reports,
        Action.read,
        owner_ids=[principal.id],
        sites=[principal.site],
    )


def wants_csv(fmt: Format | None, accept: str | None) -> bool:
    """``format`` decides; without it, an ``Accept`` that names ``text/csv``."""
    if fmt is not None:
        return fmt is Format.csv
    media = {part.split(";")[0].strip().lower() for part in (accept or "").split(",")}
    return "text/csv" in media


def csv_cell(value: object) -> str:
    """A cell as text; text a spreadsheet would run as a formula is quoted with ``'``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def csv_response(name: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([csv_cell(v) for v in row] for row in rows)
    return Response(
        content="\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


CSV_RESPONSE: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "JSON, or CSV with `format=csv` or `Accept: text/csv`",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    },
    **errors(403, 422),
}

From = Annotated[
    datetime | None,
    Query(
        alias="from",
        description="first registration counted (default: 30 days before `to`); "
        "without a zone, in `tz`",
    ),
]
To = Annotated[
    datetime | None,
    Query(description="end of the window, not counted (default: now); without a zone, in `tz`"),
]
Zone = Annotated[str, Query(max_length=64, description="IANA zone of the periods")]
FormatParam = Annotated[
    Format | None, Query(alias="format", description="json or csv (default: by `Accept`)")
]
Accept = Annotated[str | None, Header(description="`text/csv` for CSV")]


def _window(start: datetime | None, end: datetime | None, tz: str, now: datetime) -> Window:
    return reports.window(start=start, end=end, tz=reports.zone(tz), now=now)


def _echo(span: Window, now: datetime) -> dict[str, Any]:
    return {
        "from": span.start.astimezone(span.zone),
        "to": span.end.astimezone(span.zone),
        "tz": span.zone.key,
        "at": now,
    }


def _row(group: Group, zone: Window) -> SummaryRow:
    return SummaryRow(
        period_start=group.start.astimezone(zone.zone),
        period_end=group.end.astimezone(zone.zone),
        key=group.key,
        figures=group.figures,
    )


def _cause(cause: RootCause) -> RootCauseRow:
    return RootCauseRow(
        dimension=cause.dimension,
        key=cause.key,
        resolved=cause.resolved,
        upheld=cause.upheld,
        not_upheld=cause.not_upheld,
        upheld_unknown=cause.upheld_unknown,
        upheld_pct=cause.upheld_pct,
    )


# --- routes ----------------------------------------------------------------------------------


@router.get("/complaints/reports/summary", response_model=SummaryOut, responses=CSV_RESPONSE)
async def complaint_summary(
    session: Session,
    principal: CurrentPrincipal,
    now: Now,
    by: Annotated[Dimension | None, Query(description="group by (default: all together)")] = None,
    period: Annotated[
        Period | None, Query(description="cut into periods (default: the whole window)")
    ] = None,
    from_: From = None,
    to: To = None,
    tz: Zone = DEFAULT_ZONE,
    fmt: FormatParam = None,
    accept: Accept = None,
) -> Any:
    """Counts, SLA compliance, hours to resolve, reopen and review rates and CSAT of the
    complaints registered in the window, by a dimension and period (JSON or CSV)."""
    may_report(principal)
    span = _window(from_, to, tz, now)
    groups = await reports.summary(session, principal=principal, by=by, period=period, span=span)
    rows = [_row(g, span) for g in groups]
    if wants_csv(fmt, accept):
        header = ("period_start", "period_end", "by", "key", *FIGURE_NAMES)
        values = (
            (
                r.period_start,
                r.period_end,
                by,
                r.key,
                *(getattr(r.figures, n) for n in FIGURE_NAMES),
            )
            for r in rows
        )
        return csv_response("complaints-summary", header, values)
    return SummaryOut(**_echo(span, now), by=by, period=period, formulas=FORMULAS, rows=rows)


@router.get("/complaints/reports/root-causes", response_model=RootCausesOut, responses=CSV_RESPONSE)
async def complaint_root_causes(
    session: Session,
    principal: CurrentPrincipal,
    now: Now,
    from_: From = None,
    to: To = None,
    tz: Zone = DEFAULT_ZONE,
    fmt: FormatParam = None,
    accept: Accept = None,
) -> Any:
    """The resolved complaints of the window by category, branch and responsible unit, each
    split by whether the complaint was upheld (JSON or CSV)."""
    may_report(principal)
    span = _window(from_, to, tz, now)
    rows = [_cause(c) for c in await reports.root_causes(session, principal=principal, span=span)]
    if wants_csv(fmt, accept):
        header = tuple(RootCauseRow.model_fields)
        values = (tuple(getattr(r, n) for n in header) for r in rows)
        return csv_response("complaints-root-causes", header, values)
    return RootCausesOut(**_echo(span, now), rows=rows)
