"""The queue and agent reports' pure core: time buckets, range limits, each row's figures, CSV.

Theory of operation
-------------------

A report covers ``[from, to)`` cut into buckets of its interval (``15m``, ``30m``, ``1h``,
``1d``) aligned in the report's zone: days start at local midnight and a day's intervals
count from it (``bucket_bounds``; the first and last buckets are cut to the range, and a
``to`` in the future is cut at now). Longer intervals allow longer ranges (``MAX_SPAN``: 31
days of 15-minute buckets, at most a year of days), so a report stays a few thousand
buckets at most.

``app.routing.reports`` reads the event log per bucket (the queues' ``Tally`` through the
statistics' own ``stats.tallies``; the agents' ``AgentTally`` and status changes) and
hands it here:

- **queue rows** apply the queue's service-level formula and the rates of
  ``app.routing.figures`` (the same functions as ``GET /queues/{id}/stats`` and the
  wallboard), one row per queue and bucket with any contact event;
- **agent rows** count offers and their outcomes, the contacts handled and their handle and
  wrap-up times, and the time the agent was available, from the agent's status changes
  (``available_seconds``: a sweep over the changes, starting from the status the agent had
  at ``from``). Occupancy = (handle + wrap-up time of the contacts completed in the bucket)
  / time available in the bucket, at most 100 %: a contact's work counts in the bucket it
  ended in, as the queues' occupancy does.

Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from app.agents.presence import Status
from app.routing.figures import (
    LENGTHS,
    Interval,
    Policy,
    Tally,
    abandon_rate_pct,
    mean,
    service_level_pct,
    zone_aligned_start,
    zone_day_start,
)

MAX_SPAN: Final = {
    Interval.m15: timedelta(days=31),
    Interval.m30: timedelta(days=62),
    Interval.h1: timedelta(days=92),
    Interval.d1: timedelta(days=366),
}
FORMULAS: Final = {
    "service_level_pct": "answered within the queue's threshold / (answered + abandoned "
    "after its short-abandon cutoff, where the queue counts abandons), the queue's settings now",
    "asa_s": "Σ wait of the contacts answered / answered",
    "aht_s": "Σ (handle + wrap-up) of the contacts completed / completed",
    "abandon_rate_pct": "abandoned after the cutoff / (offered - short abandons)",
    "occupancy_pct": "(handle + wrap-up) of the contacts the agent completed in the bucket / "
    "the agent's time available in the bucket, at most 100",
}
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


# --- the range and its buckets --------------------------------------------------------------


class RangeProblem(ValueError):
    """A range the report cannot cover; names the parameter."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = f"{field}: {detail}"


@dataclass(frozen=True, slots=True)
class Range:
    start: datetime
    end: datetime
    interval: Interval
    zone: ZoneInfo


EARLIEST_YEAR, LATEST_YEAR = 1971, 9998


def _in_zone(moment: datetime, zone: ZoneInfo, field: str) -> datetime:
    """A timestamp without a zone is the report's zone's wall time."""
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise RangeProblem(field, f"a year from {EARLIEST_YEAR} to {LATEST_YEAR}")
    local = moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)
    return local.astimezone(UTC)


def report_range(
    *,
    start: datetime | None,
    end: datetime | None,
    interval: Interval,
    zone: ZoneInfo,
    now: datetime,
) -> Range:
    """The range asked for: ``to`` defaults to now and is cut at now; ``from`` defaults to
    the start of the day ``to`` falls in (the day before, when ``to`` is its midnight)."""
    until = min(_in_zone(end, zone, "to"), now) if end is not None else now
    if start is None:
        first = zone_day_start(until, zone)
        begin = first if first < until else zone_day_start(until - timedelta(seconds=1), zone)
    else:
        begin = _in_zone(start, zone, "from")
    if begin >= now:
        raise RangeProblem("from", "must be in the past")
    if until <= begin:
        raise RangeProblem("to", "must be after `from`")
    if until - begin > MAX_SPAN[interval]:
        most = MAX_SPAN[interval].days
        raise RangeProblem(
            "from", f"at most {most} days before `to` with interval {interval.value}"
        )
    return Range(begin, until, interval, zone)


def next_midnight(moment: datetime, zone: ZoneInfo) -> datetime:
    day = moment.astimezone(zone).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def next_boundary(moment: datetime, interval: Interval, zone: ZoneInfo) -> datetime:
    """The first bucket boundary after ``moment``: a day's intervals never cross midnight."""
    midnight = next_midnight(moment, zone)
    if interval is Interval.d1:
        return midnight
    return min(zone_aligned_start(moment, LENGTHS[interval], zone) + LENGTHS[interval], midnight)


def bucket_bounds(span: Range) -> list[datetime]:
    """``from``, every boundary inside the range, and ``to``: bucket i is
    ``[bounds[i-1], bounds[i])``."""
    bounds = [span.start]
    while (edge := next_boundary(bounds[-1], span.interval, span.zone)) < span.end:
        bounds.append(edge)
    bounds.append(span.end)
    return bounds


# --- queue rows -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueRow:
    bucket_start: datetime
    bucket_end: datetime
    queue_id: int
    queue: str
    offered: int
    answered: int
    answered_within: int
    abandoned: int
    short_abandoned: int
    timed_out: int
    transferred_out: int
    completed: int
    service_level_pct: float | None
    asa_s: float | None
    aht_s: float | None
    abandon_rate_pct: float | None


@dataclass(frozen=True, slots=True)
class QueueInfo:
    queue_id: int
    name: str
    policy: Policy


def queue_rows(
    bounds: Sequence[datetime],
    queues: Sequence[QueueInfo],
    tallies: Mapping[tuple[int, int], Tally],
) -> list[QueueRow]:
    """One row per bucket and queue with any contact event, by bucket then queue name."""
    rows: list[QueueRow] = []
    for i in range(1, len(bounds)):
        for q in queues:
            tally = tallies.get((q.queue_id, i))
            if tally is not None:
                rows.append(_queue_row(bounds[i - 1], bounds[i], q, tally))
    return rows


def _queue_row(start: datetime, end: datetime, q: QueueInfo, t: Tally) -> QueueRow:
    return QueueRow(
        bucket_start=start,
        bucket_end=end,
        queue_id=q.queue_id,
        queue=q.name,
        offered=t.offered,
        answered=t.answered,
        answered_within=t.answered_within,
        abandoned=t.abandoned,
        short_abandoned=t.short_abandoned,
        timed_out=t.timed_out,
        transferred_out=t.transferred_out,
        completed=t.completed,
        service_level_pct=service_level_pct(t, q.policy),
        asa_s=mean(t.wait_s_total, t.answered),
        aht_s=mean(t.work_s_total, t.completed),
        abandon_rate_pct=abandon_rate_pct(t),
    )


# --- agent rows -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentTally:
    """What the log says about one agent's offers and contacts in one bucket."""

    offers: int = 0
    accepted: int = 0
    rejected: int = 0
    missed: int = 0  # the offer rang out (expired)
    rescinded: int = 0  # taken back: the agent went away, or the customer left
    handled: int = 0  # contacts completed (after their wrap-up)
    handle_s: float = 0.0
    wrap_up_s: float = 0.0


@dataclass(frozen=True, slots=True)
class AgentRow:
    bucket_start: datetime
    bucket_end: datetime
    agent_id: int
    agent: str
    site: str | None
    offers: int
    accepted: int
    rejected: int
    missed: int
    rescinded: int
    handled: int
    handle_s: float
    wrap_up_s: float
    aht_s: float | None
    available_s: float
    occupancy_pct: float | None


@dataclass(frozen=True, slots=True)
class AgentInfo:
    agent_id: int
    name: str
    site: str | None


def available_seconds(
    bounds: Sequence[datetime], initial: str, changes: Iterable[tuple[datetime, str]]
) -> list[float]:
    """Seconds with status ``available`` in each bucket, from the status at ``bounds[0]`` and
    the changes after it (in order)."""
    spells: list[tuple[datetime, datetime]] = []
    status, since = initial, bounds[0]
    for at, new in changes:
        at = max(at, bounds[0])
        if status == Status.AVAILABLE and at > since:
            spells.append((since, at))
        status, since = new, at
    if status == Status.AVAILABLE and bounds[-1] > since:
        spells.append((since, bounds[-1]))
    return [_overlap(spells, bounds[i - 1], bounds[i]) for i in range(1, len(bounds))]


def _overlap(spells: Iterable[tuple[datetime, datetime]], start: datetime, end: datetime) -> float:
    total = 0.0
    for a, b in spells:
        cut = (min(b, end) - max(a, start)).total_seconds()
        total += max(cut, 0.0)
    return round(total, 3)


def occupancy(work_s: float, available_s: float) -> float | None:
    """Work over time available, in percent, at most 100; None without time available."""
    if available_s <= 0:
        return None
    return min(round(100 * work_s / available_s, 1), 100.0)


def agent_rows(
    bounds: Sequence[datetime],
    agents: Sequence[AgentInfo],
    tallies: Mapping[tuple[int, int], AgentTally],
    available: Mapping[int, Sequence[float]],
) -> list[AgentRow]:
    """One row per bucket and agent with an offer, a contact or time available."""
    rows: list[AgentRow] = []
    for i in range(1, len(bounds)):
        for a in agents:
            tally = tallies.get((a.agent_id, i), AgentTally())
            free = available.get(a.agent_id, ())
            seconds = free[i - 1] if len(free) >= i else 0.0
            if tally != AgentTally() or seconds > 0:
                rows.append(_agent_row(bounds[i - 1], bounds[i], a, tally, seconds))
    return rows


def _agent_row(
    start: datetime, end: datetime, a: AgentInfo, t: AgentTally, available_s: float
) -> AgentRow:
    return AgentRow(
        bucket_start=start,
        bucket_end=end,
        agent_id=a.agent_id,
        agent=a.name,
        site=a.site,
        offers=t.offers,
        accepted=t.accepted,
        rejected=t.rejected,
        missed=t.missed,
        rescinded=t.rescinded,
        handled=t.handled,
        handle_s=round(t.handle_s, 3),
        wrap_up_s=round(t.wrap_up_s, 3),
        aht_s=mean(t.handle_s + t.wrap_up_s, t.handled),
        available_s=available_s,
        occupancy_pct=occupancy(t.handle_s + t.wrap_up_s, available_s),
    )


# --- CSV --------------------------------------------------------------------------------------


def csv_cell(value: object, zone: ZoneInfo) -> str:
    """A cell as text: times in the report's zone; text a spreadsheet would run as a formula
    (starting ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) behind a ``'``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = value.astimezone(zone).isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def csv_text(rows: Sequence[QueueRow] | Sequence[AgentRow], kind: type, zone: ZoneInfo) -> str:
    """A header row of ``kind``'s fields, then one line per row (CRLF, as RFC 4180)."""
    names = [f.name for f in fields(kind)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(names)
    writer.writerows([csv_cell(getattr(row, n), zone) for n in names] for row in rows)
    return out.getvalue()
