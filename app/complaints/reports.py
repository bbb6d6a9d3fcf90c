"""The complaint reports' queries: one statement per report, the figures from ``report_figures``.

Theory of operation
-------------------

``window`` reads the range asked for (``from``, ``to``, the time zone) and refuses what is
not one, naming the parameter; it reads no clock (``now`` comes in). ``summary`` and
``root_causes`` each run one statement over the complaints registered in the window that the
principal may list (``service.visible_to``: an admin all; a supervisor their site's
complaints, those not yet assigned, and their own), and hand the rows to the pure core.

**The summary statement** builds, in CTEs:

1. ``cohort``: one row per complaint and key of the dimension (``unnest`` of the
   categories, a left join so a complaint with none keeps a ``NULL`` key; the customer's
   tier by a left join), with the local period its registration falls in
   (``date_trunc(unit, registered_at, zone)``, the same local midnight as
   ``report_figures.period_start``);
2. ``steps``: the audit trail folded into one row per complaint (the last resolve, whether
   an answer was reopened, closed or confirmed, reviewed, the resolution clock's breach,
   the status an archived complaint was archived from);
3. ``surveys``: the survey scores per complaint;
4. ``facts``: the per-complaint flags of ``report_figures.tally`` (outcomes from
   ``OUTCOMES``), and each resolved complaint's rank by time to resolve within its group
   (``row_number`` and ``count`` over the group);

and the outer query counts per group with ``FILTER`` and takes the times at the nearest
ranks with the integer formula of ``report_figures.rank``. The result is one ``Tally`` per
group, and ``report_figures.figures`` computes the rates.

**The root-cause statement** reads the resolved complaints (the same outcomes) with the
responsible unit and the finding of their last resolution (``facts.resolve``), and counts
them in four ``UNION ALL`` branches: all, by category, by branch, by responsible unit.

Decisions, and why
------------------

**Counting is the database's, rates are Python's.** Counts and ranks over a year of
complaints stay in PostgreSQL (one row per group comes back, not one per complaint); every
formula that turns them into a figure is in the pure core, tested from plain records, and a
test checks the statement's tallies against ``report_figures.tally`` for a scripted history.

**A time without a zone is in the report's zone.** Reports are read by local day, week and
month, so ``from=2026-12-01`` means local midnight, as the periods do. The window defaults
to the 30 days before ``to`` (default now), and spans at most 366 days.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Final
from zoneinfo import ZoneInfo, available_timezones

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Select,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    select,
    true,
    union_all,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import CTE

from app.agents.permissions import Principal
from app.complaints.clocks import ClockKind
from app.complaints.deadlines import BREACH_ACTION
from app.complaints.lifecycle import ComplaintEvent, ComplaintStatus
from app.complaints.models import Complaint, ComplaintAudit
from app.complaints.notes import ComplaintFeedback
from app.complaints.report_figures import (
    MEDIAN,
    P90,
    REOPENED_FROM,
    Dimension,
    Group,
    Outcome,
    Period,
    RootCause,
    RootDimension,
    Tally,
    Window,
    bounds,
    figures,
    ordered,
    ordered_causes,
    statuses,
)
from app.complaints.service import visible_to
from app.customers.models import Customer
from app.errors import InvalidInput

DEFAULT_SPAN: Final = timedelta(days=30)
MAX_SPAN: Final = timedelta(days=366)
# Timestamps outside these are refused (no complaint desk reports on them; arithmetic on
# Python's extreme datetimes would overflow).
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(9000, 1, 1, tzinfo=UTC)
INVALID_PARAMETER: Final = "22023"  # PostgreSQL: an unknown time zone, among others


class InvalidReport(InvalidInput):
    """Report parameters that do not describe a report; names the parameter."""

    def __init__(self, param: str, detail: str) -> None:
        super().__init__(f"{param}: {detail}", field=param)


# --- the window ------------------------------------------------------------------------------


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; else a 422 naming ``tz``."""
    if name not in _zones():
        raise InvalidReport("tz", f"{name!r} is not an IANA time zone (e.g. Asia/Shanghai)")
    return ZoneInfo(name)


def _aware(moment: datetime, param: str, tz: ZoneInfo) -> datetime:
    try:
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)
        if EARLIEST <= aware <= LATEST:
            return aware.astimezone(UTC)
    except (OverflowError, ValueError):
        pass
    raise InvalidReport(param, f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")


def window(*, start: datetime | None, end: datetime | None, tz: ZoneInfo, now: datetime) -> Window:
    """``[from, to)``: ``to`` defaults to now, ``from`` to 30 days before ``to``."""
    to = _aware(end, "to", tz) if end is not None else now.astimezone(UTC)
    since = _aware(start, "from", tz) if start is not None else to - DEFAULT_SPAN
    if since >= to:
        raise InvalidReport("from", "must be before `to`")
    if to - since > MAX_SPAN:
        raise InvalidReport("from", f"a report spans at most {MAX_SPAN.days} days")
    return Window(since, to, tz)


# --- the summary statement -------------------------------------------------------------------

_A = ComplaintAudit
_E = ComplaintEvent
_DIMENSIONS: Final[dict[Dimension, Any]] = {
    Dimension.channel: Complaint.channel,
    Dimension.branch: Complaint.branch,
    Dimension.severity: Complaint.severity,
    Dimension.tier: Customer.tier,
}


def _in_window(principal: Principal, span: Window) -> list[ColumnElement[bool]]:
    return [
        visible_to(principal),
        Complaint.registered_at >= span.start,
        Complaint.registered_at < span.end,
    ]


def _each_category(column: Any) -> Any:
    """``unnest(column) AS cats(category)``: joined with ``ON true``, one row per category
    (a left join keeps a complaint with none, its category NULL)."""
    return func.unnest(column).table_valued("category").render_derived("cats")


def _cohort(principal: Principal, by: Dimension | None, period: Period | None, span: Window) -> CTE:
    bucket: Any = (
        cast(null(), DateTime(timezone=True))
        if period is None
        else func.date_trunc(
            period.value, Complaint.registered_at, span.zone.key, type_=DateTime(timezone=True)
        )
    )
    key: Any = cast(null(), String) if by is None else _DIMENSIONS.get(by)
    stmt = select(Complaint.id, Complaint.status, Complaint.registered_at, Complaint.due_at)
    if by is Dimension.category:
        categories = _each_category(Complaint.categories)
        stmt = stmt.outerjoin(categories, true())
        key = categories.c.category
    if by is Dimension.tier:
        stmt = stmt.outerjoin(Customer, Customer.id == Complaint.customer_id)
    stmt = stmt.add_columns(key.label("key"), bucket.label("period"))
    return stmt.where(*_in_window(principal, span)).cte("cohort")


def _steps(ids: Any) -> CTE:
    """The audit trail of each complaint in ``ids`` folded into one row."""
    resolve = _A.action == _E.RESOLVE.value
    breach = and_(_A.action == BREACH_ACTION, _A.data["clock"].astext == ClockKind.RESOLUTION.value)
    return (
        select(
            _A.complaint_id.label("id"),
            func.max(_A.at).filter(resolve).label("resolved_at"),
            func.bool_or(resolve).label("ever_resolved"),
            func.bool_or(
                and_(_A.action == _E.REOPEN.value, _A.before.in_([s.value for s in REOPENED_FROM]))
            ).label("reopened"),
            func.bool_or(_A.action.in_([_E.CONFIRM.value, _E.CLOSE.value])).label("closed"),
            func.bool_or(_A.action == _E.REQUEST_REVIEW.value).label("review_requested"),
            func.bool_or(breach).label("breached"),
            func.max(_A.before).filter(_A.action == _E.ARCHIVE.value).label("archived_from"),
        )
        .where(_A.complaint_id.in_(ids))
        .group_by(_A.complaint_id)
        .cte("steps")
    )


def _surveys(ids: Any) -> CTE:
    f = ComplaintFeedback
    return (
        select(
            f.complaint_id.label("id"),
            func.sum(f.csat).label("total"),
            func.count().label("answers"),
        )
        .where(f.complaint_id.in_(ids))
        .group_by(f.complaint_id)
        .cte("surveys")
    )


def _is(effective: ColumnElement[str], outcome: Outcome) -> ColumnElement[bool]:
    return effective.in_(statuses(outcome))


def _facts(cohort: CTE) -> CTE:
    ids = select(cohort.c.id)
    steps, surveys = _steps(ids), _surveys(ids)
    archived = cohort.c.status == ComplaintStatus.archived.value
    effective = case((archived, steps.c.archived_from), else_=cohort.c.status)
    resolved = _is(effective, Outcome.resolved)
    seconds = case((resolved, func.extract("epoch", steps.c.resolved_at - cohort.c.registered_at)))
    group = (cohort.c.key, cohort.c.period)
    return (
        select(
            cohort.c.key,
            cohort.c.period,
            resolved.label("resolved"),
            *(_is(effective, o).label(o.value) for o in Outcome if o is not Outcome.resolved),
            and_(resolved, steps.c.resolved_at <= cohort.c.due_at).label("within"),
            and_(resolved, steps.c.resolved_at > cohort.c.due_at).label("late"),
            and_(_is(effective, Outcome.open), steps.c.breached).label("overdue"),
            steps.c.ever_resolved,
            steps.c.reopened,
            steps.c.closed,
            steps.c.review_requested,
            surveys.c.total.label("csat_total"),
            surveys.c.answers.label("csat_count"),
            seconds.label("seconds"),
            func.row_number().over(partition_by=group, order_by=seconds).label("rank"),
            func.count(seconds).over(partition_by=group).label("n"),
        )
        .select_from(cohort)
        .outerjoin(steps, steps.c.id == cohort.c.id)
        .outerjoin(surveys, surveys.c.id == cohort.c.id)
        .cte("facts")
    )


def _at_rank(facts: CTE, p: Any) -> ColumnElement[Any]:
    """The seconds at the nearest rank of ``p``: ``report_figures.rank`` in SQL."""
    nearest = (facts.c.n * p.numerator + (p.denominator - 1)) // p.denominator
    return func.max(facts.c.seconds).filter(facts.c.rank == nearest)


def _counted(facts: CTE, flag: str) -> ColumnElement[int]:
    return func.count().filter(facts.c[flag]).label(flag)


def summary_statement(
    principal: Principal, by: Dimension | None, period: Period | None, span: Window
) -> Select[Any]:
    """One row per group: its key, its period's start and the columns of a ``Tally``."""
    facts = _facts(_cohort(principal, by, period, span))
    return select(
        facts.c.key,
        facts.c.period,
        func.count().label("registered"),
        *(_counted(facts, o.value) for o in Outcome),
        _counted(facts, "within").label("resolved_within_due"),
        _counted(facts, "late").label("resolved_late"),
        _counted(facts, "overdue").label("open_overdue"),
        *(_counted(facts, n) for n in ("ever_resolved", "reopened", "closed", "review_requested")),
        func.coalesce(func.sum(facts.c.csat_total), 0).label("csat_total"),
        func.coalesce(func.sum(facts.c.csat_count), 0).label("csat_count"),
        _at_rank(facts, MEDIAN).label("median_s"),
        _at_rank(facts, P90).label("p90_s"),
    ).group_by(facts.c.key, facts.c.period)


def _tally(row: Any) -> Tally:
    values = row._asdict()
    for name in ("median_s", "p90_s"):
        values[name] = None if values[name] is None else float(values[name])
    del values["key"], values["period"]
    return Tally(**{k: v if k.endswith("_s") else int(v) for k, v in values.items()})


async def _rows(session: AsyncSession, stmt: Any) -> list[Any]:
    try:
        return list((await session.execute(stmt)).all())
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == INVALID_PARAMETER:
            raise InvalidReport("tz", "the database does not know this time zone") from None
        raise


async def summary(
    session: AsyncSession,
    *,
    principal: Principal,
    by: Dimension | None,
    period: Period | None,
    span: Window,
) -> list[Group]:
    """The summary rows of the complaints ``principal`` may list, registered in ``span``."""
    found = await _rows(session, summary_statement(principal, by, period, span))
    return ordered(
        Group(*bounds(row.period, period, span), row.key, figures(_tally(row))) for row in found
    )


# --- the root-cause statement ----------------------------------------------------------------


def _resolved(principal: Principal, span: Window) -> CTE:
    archived_from = (
        select(_A.before)
        .where(_A.complaint_id == Complaint.id, _A.action == _E.ARCHIVE.value)
        .limit(1)
        .scalar_subquery()
    )
    archived = Complaint.status == ComplaintStatus.archived.value
    effective = case((archived, archived_from), else_=Complaint.status)
    unit = func.nullif(func.btrim(Complaint.facts[("resolve", "responsible_unit")].astext), "")
    return (
        select(
            Complaint.categories,
            Complaint.branch,
            unit.label("unit"),
            Complaint.facts[("resolve", "upheld")].astext.label("upheld"),
        )
        .where(*_in_window(principal, span), _is(effective, Outcome.resolved))
        .cte("resolved")
    )


def _split(resolved: CTE, dimension: RootDimension, key: Any) -> Select[Any]:
    upheld = resolved.c.upheld
    return select(
        literal(dimension.value).label("dimension"),
        key.label("key"),
        func.count().label("resolved"),
        func.count().filter(upheld == "true").label("upheld"),
        func.count().filter(upheld == "false").label("not_upheld"),
        func.count().filter(upheld.is_(None)).label("upheld_unknown"),
    )


def root_cause_statement(principal: Principal, span: Window) -> Any:
    """One row per dimension and key: resolved, upheld, not upheld, not said."""
    resolved = _resolved(principal, span)
    categories = _each_category(resolved.c.categories)
    return union_all(
        _split(resolved, RootDimension.all, cast(null(), String)).select_from(resolved),
        _split(resolved, RootDimension.category, categories.c.category)
        .select_from(resolved)
        .outerjoin(categories, true())
        .group_by(categories.c.category),
        _split(resolved, RootDimension.branch, resolved.c.branch).group_by(resolved.c.branch),
        _split(resolved, RootDimension.responsible_unit, resolved.c.unit).group_by(resolved.c.unit),
    )


async def root_causes(
    session: AsyncSession, *, principal: Principal, span: Window
) -> list[RootCause]:
    """The resolved complaints ``principal`` may list, registered in ``span``, counted."""
    found = await _rows(session, root_cause_statement(principal, span))
    return ordered_causes(
        RootCause(
            RootDimension(row.dimension),
            row.key,
            int(row.resolved),
            int(row.upheld),
            int(row.not_upheld),
            int(row.upheld_unknown),
        )
        for row in found
        if row.resolved  # the "all" branch of an empty window
    )
