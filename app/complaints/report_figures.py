"""The figures of the complaint reports, from plain records: the pure core of ``reports``.

Theory of operation
-------------------

A report is about a **cohort**: the complaints registered in a window ``[start, end)``, by
one dimension (``Dimension``; a complaint with several categories counts in each, one with
no category, tier or severity under the key ``None``) and by the local period of their
registration (``Period``), each *as it stands when the report is read*: a complaint
registered in March and resolved in April is resolved in March's row.

One complaint is a ``ComplaintRow``: its registration, its status (an archived one's: the
status it was archived from), its resolution clock's due time, its audit trail folded into
flags (the last resolution, an answer reopened, closed or confirmed, a review asked for,
the resolution clock's breach on record) and its survey scores. ``tally`` folds a group's
rows into a ``Tally`` of counts; ``figures`` turns it into ``Figures`` by the formulas of
``FORMULAS``. ``reports`` has PostgreSQL count the same tallies in one statement from the
same tables (``OUTCOMES``, ``REOPENED_FROM``, the percentile fractions and ``rank``), and
the tests hold the two equal on a scripted history.

Decisions, and why
------------------

**Outcomes are a table** (``OUTCOMES``): open, resolved (resolved, confirmed, closed or under
review of an answer given), withdrawn, rejected; they add up to the registrations.

**SLA compliance is the resolution clock's verdict.** Resolved in time means the last
resolution came at or before the clock's due time, which already carries its pauses,
approved extensions and, after a reopen, the time the answer stood (the clock counts
handling time only). ``breached`` adds the open complaints whose clock's breach is on
record (a paused clock does not breach, and the record knows it).

**Percentiles are nearest-rank**: the value at rank ``ceil(p * n)`` of the ascending hours
to resolve, a time some complaint actually took, with the rank computed in integers (0.9 of
70 is rank 63; the floating-point product would give 64).

**Time to resolve** is calendar time from registration to the last resolution, pauses and
reopened spells included: how long the customer waited for the answer that stands.

**Each rate has its own denominator** (reopens over complaints ever resolved, so a reopen
after a withdrawal is no reopened answer; reviews over complaints ever closed or confirmed),
and is ``None``, never 0 %, when it is zero.

**Root causes count structured facts only**, those of the last resolution: category,
branch, responsible unit, upheld or not. The free-text root cause is not aggregated: one
cause is written in many ways, and the text may name people.

Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, time, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import Final
from zoneinfo import ZoneInfo

from app.complaints.lifecycle import ComplaintStatus

DEFAULT_ZONE: Final = "Asia/Shanghai"  # the centre's zone


class Dimension(StrEnum):
    """What a summary groups by."""

    category = "category"
    channel = "channel"
    branch = "branch"
    tier = "tier"
    severity = "severity"


class Period(StrEnum):
    """The periods a summary is cut into, in the report's time zone (weeks from Monday)."""

    day = "day"
    week = "week"
    month = "month"


class Outcome(StrEnum):
    """Where a complaint stands, for the figures."""

    open = "open"
    resolved = "resolved"
    withdrawn = "withdrawn"
    rejected = "rejected"


_S = ComplaintStatus
# fmt: off
OUTCOMES: Final[dict[ComplaintStatus, Outcome]] = {
    _S.registered:   Outcome.open,
    _S.classified:   Outcome.open,
    _S.assigned:     Outcome.open,
    _S.in_progress:  Outcome.open,
    _S.paused:       Outcome.open,
    _S.resolved:     Outcome.resolved,
    _S.confirmed:    Outcome.resolved,
    _S.closed:       Outcome.resolved,
    _S.under_review: Outcome.resolved,
    _S.withdrawn:    Outcome.withdrawn,
    _S.rejected:     Outcome.rejected,
}
# fmt: on
# A reopen from these statuses reopens an answer (from withdrawn or rejected it does not).
REOPENED_FROM: Final = frozenset({_S.resolved, _S.confirmed, _S.closed})
MEDIAN: Final = Fraction(1, 2)
P90: Final = Fraction(9, 10)


def statuses(outcome: Outcome) -> list[str]:
    """The statuses that leave a complaint at ``outcome`` (what the SQL twin matches)."""
    return sorted(s.value for s, o in OUTCOMES.items() if o is outcome)


# --- one complaint ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ComplaintRow:
    """One complaint as the reports read it: the row, and its audit trail folded into flags."""

    registered_at: datetime
    status: ComplaintStatus
    archived_from: ComplaintStatus | None = None  # the archive step's status before it
    due_at: datetime | None = None  # the resolution clock's due time
    resolved_at: datetime | None = None  # the last resolve step
    ever_resolved: bool = False  # a resolve step at all
    reopened: bool = False  # a reopen step from one of REOPENED_FROM
    closed: bool = False  # a confirm or close step
    review_requested: bool = False  # a request_review step
    breach_on_record: bool = False  # the resolution clock's sla_breached alert
    csat: tuple[int, ...] = ()  # every survey answer
    categories: tuple[str, ...] = ()
    channel: str = "phone"
    branch: str = ""
    tier: str | None = None
    severity: str | None = None
    responsible_unit: str | None = None  # from the last resolution
    upheld: bool | None = None  # from the last resolution


def outcome_of(row: ComplaintRow) -> Outcome | None:
    """Where the complaint stands; an archived one as the status it was archived from."""
    effective = row.archived_from if row.status is ComplaintStatus.archived else row.status
    return None if effective is None else OUTCOMES.get(effective)


def resolve_seconds(row: ComplaintRow) -> float | None:
    """Seconds from registration to the last resolution, for a resolved complaint."""
    if outcome_of(row) is not Outcome.resolved or row.resolved_at is None:
        return None
    return (row.resolved_at - row.registered_at).total_seconds()


def within_due(row: ComplaintRow) -> bool | None:
    """Resolved by the resolution clock's due time? None unless resolved with a due time."""
    if resolve_seconds(row) is None or row.due_at is None or row.resolved_at is None:
        return None
    return row.resolved_at <= row.due_at


def keys_of(row: ComplaintRow, by: Dimension | None) -> tuple[str | None, ...]:
    """The groups of ``by`` the complaint counts in (each of its categories)."""
    if by is None:
        return (None,)
    if by is Dimension.category:
        return tuple(dict.fromkeys(row.categories)) or (None,)
    value: str | None = getattr(row, by.value)
    return (value,)


# --- percentiles -----------------------------------------------------------------------------


def rank(p: Fraction, n: int) -> int:
    """The nearest rank ``ceil(p * n)``, 1-based, in integers (0 for no values)."""
    return (p.numerator * n + p.denominator - 1) // p.denominator


def nearest_rank(ordered: Sequence[float], p: Fraction) -> float | None:
    """The value at the nearest rank of ``p`` in ascending ``ordered``; None if empty."""
    at = rank(p, len(ordered))
    return ordered[at - 1] if at >= 1 else None


# --- a group's counts and rates --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tally:
    """A group's counts (what the SQL statement returns per group)."""

    registered: int = 0
    resolved: int = 0
    open: int = 0
    withdrawn: int = 0
    rejected: int = 0
    resolved_within_due: int = 0
    resolved_late: int = 0
    open_overdue: int = 0
    ever_resolved: int = 0
    reopened: int = 0
    closed: int = 0
    review_requested: int = 0
    csat_total: int = 0
    csat_count: int = 0
    median_s: float | None = None
    p90_s: float | None = None


def tally(rows: Iterable[ComplaintRow]) -> Tally:
    """Fold a group's complaints into its counts."""
    rows = list(rows)
    outcomes = [outcome_of(r) for r in rows]
    timing = [within_due(r) for r in rows]
    durations = sorted(s for r in rows if (s := resolve_seconds(r)) is not None)
    return Tally(
        registered=len(rows),
        resolved=outcomes.count(Outcome.resolved),
        open=outcomes.count(Outcome.open),
        withdrawn=outcomes.count(Outcome.withdrawn),
        rejected=outcomes.count(Outcome.rejected),
        resolved_within_due=timing.count(True),
        resolved_late=timing.count(False),
        open_overdue=sum(
            o is Outcome.open and r.breach_on_record for r, o in zip(rows, outcomes, strict=True)
        ),
        ever_resolved=sum(r.ever_resolved for r in rows),
        reopened=sum(r.reopened for r in rows),
        closed=sum(r.closed for r in rows),
        review_requested=sum(r.review_requested for r in rows),
        csat_total=sum(sum(r.csat) for r in rows),
        csat_count=sum(len(r.csat) for r in rows),
        median_s=nearest_rank(durations, MEDIAN),
        p90_s=nearest_rank(durations, P90),
    )


@dataclass(frozen=True, slots=True)
class Figures:
    """A group's counts and rates, as the report shows them."""

    registered: int
    resolved: int
    open: int
    withdrawn: int
    rejected: int
    resolved_within_due: int
    resolved_late: int
    open_overdue: int
    breached: int
    sla_compliance_pct: float | None
    median_hours_to_resolve: float | None
    p90_hours_to_resolve: float | None
    ever_resolved: int
    reopened: int
    reopen_rate_pct: float | None
    closed: int
    review_requested: int
    review_rate_pct: float | None
    csat_count: int
    csat_average: float | None


FORMULAS: Final[dict[str, str]] = {
    "sla_compliance_pct": "resolved_within_due / (resolved_within_due + resolved_late) * 100: "
    "resolved at or before the resolution clock's due time, over the resolved complaints",
    "breached": "resolved_late + open_overdue (open with the resolution clock's breach on record)",
    "median_hours_to_resolve": "nearest rank ceil(0.5 * n) of the hours from registration to "
    "the last resolution, over the n resolved complaints",
    "p90_hours_to_resolve": "nearest rank ceil(0.9 * n) of the same hours",
    "reopen_rate_pct": "reopened / ever_resolved * 100: answers reopened at least once, over "
    "the complaints resolved at least once",
    "review_rate_pct": "review_requested / closed * 100: reviews asked for, over the complaints "
    "closed or confirmed at least once",
    "csat_average": "the sum of the CSAT scores / csat_count (every survey answer)",
}


def pct(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 2)


def figures(t: Tally) -> Figures:
    """A tally's rates, each by its formula in ``FORMULAS``."""
    answered = t.resolved_within_due + t.resolved_late
    return Figures(
        registered=t.registered,
        resolved=t.resolved,
        open=t.open,
        withdrawn=t.withdrawn,
        rejected=t.rejected,
        resolved_within_due=t.resolved_within_due,
        resolved_late=t.resolved_late,
        open_overdue=t.open_overdue,
        breached=t.resolved_late + t.open_overdue,
        sla_compliance_pct=pct(t.resolved_within_due, answered),
        median_hours_to_resolve=hours(t.median_s),
        p90_hours_to_resolve=hours(t.p90_s),
        ever_resolved=t.ever_resolved,
        reopened=t.reopened,
        reopen_rate_pct=pct(t.reopened, t.ever_resolved),
        closed=t.closed,
        review_requested=t.review_requested,
        review_rate_pct=pct(t.review_requested, t.closed),
        csat_count=t.csat_count,
        csat_average=round(t.csat_total / t.csat_count, 2) if t.csat_count else None,
    )


FIGURE_NAMES: Final = tuple(f.name for f in fields(Figures))

# --- periods and groups ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """The registrations a report covers, ``[start, end)``, and the zone its periods use."""

    start: datetime
    end: datetime
    zone: ZoneInfo


def period_start(moment: datetime, period: Period, zone: ZoneInfo) -> datetime:
    """The local midnight that starts the period containing ``moment`` (weeks on Monday)."""
    day = moment.astimezone(zone).date()
    if period is Period.week:
        day -= timedelta(days=day.weekday())
    elif period is Period.month:
        day = day.replace(day=1)
    return datetime.combine(day, time(), zone)


def period_end(start: datetime, period: Period, zone: ZoneInfo) -> datetime:
    """The local midnight that starts the next period."""
    day = start.astimezone(zone).date()
    if period is Period.month:
        day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    else:
        day += timedelta(days=7 if period is Period.week else 1)
    return datetime.combine(day, time(), zone)


def bounds(
    bucket: datetime | None, period: Period | None, window: Window
) -> tuple[datetime, datetime]:
    """The registrations a row counts, ``[start, end)``: its period cut to the window."""
    if bucket is None or period is None:
        return window.start, window.end
    end = period_end(bucket, period, window.zone)
    return max(bucket, window.start), min(end, window.end)


@dataclass(frozen=True, slots=True)
class Group:
    """One row of a summary: a period (cut to the window), a key and its figures."""

    start: datetime
    end: datetime
    key: str | None
    figures: Figures


def ordered(groups: Iterable[Group]) -> list[Group]:
    """Rows by period, then by key (``None`` last)."""
    return sorted(groups, key=lambda g: (g.start, g.key is None, g.key or ""))


def summarise(
    rows: Iterable[ComplaintRow], by: Dimension | None, period: Period | None, window: Window
) -> list[Group]:
    """The summary of a window's complaints (already cut to it): one row per period and key."""
    groups: defaultdict[tuple[datetime | None, str | None], list[ComplaintRow]] = defaultdict(list)
    for row in rows:
        bucket = None if period is None else period_start(row.registered_at, period, window.zone)
        for key in keys_of(row, by):
            groups[bucket, key].append(row)
    return ordered(
        Group(*bounds(bucket, period, window), key, figures(tally(members)))
        for (bucket, key), members in groups.items()
    )


# --- root causes -----------------------------------------------------------------------------


class RootDimension(StrEnum):
    """What the root-cause figures count the resolved complaints by (``all``: every one)."""

    all = "all"
    category = "category"
    branch = "branch"
    responsible_unit = "responsible_unit"


@dataclass(frozen=True, slots=True)
class RootCause:
    """Resolved complaints of one key, split by whether they were upheld."""

    dimension: RootDimension
    key: str | None
    resolved: int
    upheld: int
    not_upheld: int
    upheld_unknown: int

    @property
    def upheld_pct(self) -> float | None:
        """Upheld over the complaints with a finding (upheld or not), in percent."""
        return pct(self.upheld, self.upheld + self.not_upheld)


def _root_keys(row: ComplaintRow, dimension: RootDimension) -> tuple[str | None, ...]:
    if dimension is RootDimension.all:
        return (None,)
    if dimension is RootDimension.category:
        return keys_of(row, Dimension.category)
    value: str | None = getattr(row, dimension.value)
    return (value,)


def root_causes(rows: Iterable[ComplaintRow]) -> list[RootCause]:
    """The resolved complaints counted by each ``RootDimension`` and key."""
    split: defaultdict[tuple[RootDimension, str | None], list[bool | None]] = defaultdict(list)
    for row in rows:
        if outcome_of(row) is not Outcome.resolved:
            continue
        for dimension in RootDimension:
            for key in _root_keys(row, dimension):
                split[dimension, key].append(row.upheld)
    return ordered_causes(
        RootCause(d, k, len(v), v.count(True), v.count(False), v.count(None))
        for (d, k), v in split.items()
    )


def ordered_causes(causes: Iterable[RootCause]) -> list[RootCause]:
    """By dimension (in ``RootDimension``'s order), then most resolved first, then key."""
    order = {d: i for i, d in enumerate(RootDimension)}
    return sorted(
        causes, key=lambda c: (order[c.dimension], -c.resolved, c.key is None, c.key or "")
    )
