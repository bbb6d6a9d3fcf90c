"""The complaint desk on the wallboard: complaints due today, at risk and breached.

Theory of operation
-------------------

Every figure is about the **resolution clock** (the mission's three days) of the complaints
still being handled: status open (``lifecycle.OPEN``) and the clock not stopped. Read at
``now`` (the desk's clock) by ``app.complaints.clocks`` from the clock's recorded history,
as everywhere on the desk:

- **breached**: the clock is past its deadline (``now >= due``; a breach is not undone by
  pausing);
- **at risk**: not breached, and at least ``AT_RISK`` (80 %) of the (extended) target used;
- **due today**: not breached, and the deadline falls before the end of today, midnight in
  the centre's zone. An at-risk complaint may be due today too: the figures overlap.

``at_risk_list`` names the first ``limit`` at-risk complaints, soonest deadline first: their
reference, deadline, the fraction of the target used and the assignee.

Who sees what (``Scope``): an admin every complaint; a supervisor the complaints of their
site, i.e. assigned to an agent of the site or to nobody yet (the rows
``service.visible_to`` gives a supervisor, less those they registered for another site's
agents: the wallboard's figures are one computation per site, not per person).

Decisions, and why
------------------

- **Deadlines of running clocks are remembered** (``Marks``): a running clock's deadline and
  80 % moment depend only on its history, so ``Counter`` computes them once per history
  (working-day clocks cost most of a millisecond each) and then only compares them with
  ``now``. A paused clock moves with ``now`` and is read again every time.
- **Counted in Python, not SQL**: a working-day deadline needs the holiday calendar, which
  lives in ``app.complaints.calendar``; the SQL only selects the open clocks in scope.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.models import Agent, Role
from app.agents.permissions import Principal
from app.complaints import lifecycle
from app.complaints.calendar import WorkCalendar
from app.complaints.clocks import ClockKind, ClockStatus, due_at, state, warning_times
from app.complaints.models import Complaint, ComplaintClock, history_of, policy_of
from app.complaints.service import DESK, Desk

AT_RISK: Final = 0.8
LIST_LIMIT: Final = 10
OPEN: Final = sorted(s.value for s in lifecycle.OPEN)


# --- bodies ----------------------------------------------------------------------------------


class AtRiskComplaint(BaseModel):
    complaint_id: int
    reference: str
    due_at: datetime = Field(description="the resolution clock's deadline")
    elapsed: float = Field(description="the fraction of the (extended) target used")
    assignee_id: int | None
    assignee: str | None = Field(description="the assignee's name; null: not assigned")


class ComplaintCounts(BaseModel):
    at: datetime = Field(description="the desk's time the figures are read at")
    day_ends_at: datetime = Field(description="the end of today in the centre's zone")
    due_today: int = Field(description="not breached, deadline before the end of today")
    at_risk: int = Field(description="not breached, at least 80 % of the target used")
    breached: int = Field(description="past the deadline")
    at_risk_list: list[AtRiskComplaint] = Field(description="the first at risk, soonest first")


# --- who sees what -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    """Every complaint, or one site's (``site`` None: a supervisor of no site)."""

    everything: bool
    site: str | None = None


def scope_of(principal: Principal) -> Scope:
    """An admin sees every complaint; anyone else the complaints of their site."""
    if principal.role is Role.admin:
        return Scope(everything=True)
    return Scope(everything=False, site=principal.site)


def _in_scope(scope: Scope) -> ColumnElement[bool]:
    if scope.everything:
        return true()
    site = select(Agent.id).where(Agent.site == scope.site)
    return or_(Complaint.assignee_id.is_(None), Complaint.assignee_id.in_(site))


# --- reading the clocks ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Marks:
    """A running clock's two moments: at risk from, and due at."""

    at_risk_from: datetime
    due: datetime


@dataclass(frozen=True, slots=True)
class OpenClock:
    """An open complaint's resolution clock, with what the list shows of the complaint."""

    row: ComplaintClock
    reference: str
    assignee_id: int | None
    assignee: str | None


@dataclass(frozen=True, slots=True)
class Reading:
    """One open clock read at ``now``."""

    clock: OpenClock
    due: datetime
    breached: bool
    at_risk: bool


def _key(row: ComplaintClock) -> tuple[Any, ...]:
    """Everything a running clock's moments depend on."""
    return (
        row.id,
        row.started_at,
        json.dumps(row.pauses, sort_keys=True),
        json.dumps(row.extensions, sort_keys=True),
        json.dumps(row.policy, sort_keys=True),
    )


def _marks(row: ComplaintClock, calendar: WorkCalendar) -> Marks:
    policy, history = policy_of(row), history_of(row)
    at_80 = dataclasses.replace(policy, warnings=(AT_RISK,))
    [(_, risk)] = warning_times(at_80, history, calendar)
    return Marks(at_risk_from=risk, due=due_at(policy, history, calendar))


def _paused(row: ComplaintClock) -> bool:
    return bool(row.pauses) and row.pauses[-1]["end"] is None


class Counter:
    """Counts a scope's complaints, remembering the moments of running clocks between calls."""

    def __init__(self) -> None:
        self._marks: dict[tuple[Any, ...], Marks] = {}

    async def counts(
        self,
        session: AsyncSession,
        *,
        now: datetime,
        scope: Scope,
        zone: ZoneInfo,
        desk: Desk = DESK,
        limit: int = LIST_LIMIT,
    ) -> ComplaintCounts:
        """The wallboard's complaint figures for ``scope`` at ``now``."""
        clocks = await _open_clocks(session, scope)
        calendar = desk.work_calendar()
        readings = [self.read(clock, calendar, now) for clock in clocks]
        self._forget(clocks)
        return summarise(readings, now=now, zone=zone, calendar=calendar, limit=limit)

    def read(self, clock: OpenClock, calendar: WorkCalendar, now: datetime) -> Reading:
        """One clock at ``now``: its deadline, breached, at risk (a running clock's moments
        are remembered for the next call)."""
        row = clock.row
        if _paused(row):
            read = state(policy_of(row), history_of(row), calendar, max(now, row.started_at))
            breached = read.status is ClockStatus.BREACHED
            return Reading(clock, read.due_at, breached, not breached and read.elapsed >= AT_RISK)
        key = _key(row)
        marks = self._marks.get(key)
        if marks is None:
            marks = self._marks[key] = _marks(row, calendar)
        breached = now >= marks.due
        return Reading(clock, marks.due, breached, not breached and now >= marks.at_risk_from)

    def _forget(self, clocks: Sequence[OpenClock]) -> None:
        """Keep only the moments of clocks still open, as they are now."""
        live = {_key(clock.row) for clock in clocks}
        self._marks = {k: v for k, v in self._marks.items() if k in live}


async def counts(
    session: AsyncSession,
    *,
    now: datetime,
    principal: Principal,
    zone: ZoneInfo,
    desk: Desk = DESK,
    limit: int = LIST_LIMIT,
) -> ComplaintCounts:
    """The wallboard's complaint figures as ``principal`` may see them, read afresh."""
    return await Counter().counts(
        session, now=now, scope=scope_of(principal), zone=zone, desk=desk, limit=limit
    )


async def _open_clocks(
    session: AsyncSession, scope: Scope | ColumnElement[bool]
) -> list[OpenClock]:
    """The running or paused resolution clocks of the open complaints in ``scope`` (or
    those a condition selects), with the complaint's reference and its assignee."""
    where = _in_scope(scope) if isinstance(scope, Scope) else scope
    stmt = (
        select(ComplaintClock, Complaint.reference, Complaint.assignee_id, Agent.name)
        .join(Complaint, Complaint.id == ComplaintClock.complaint_id)
        .outerjoin(Agent, Agent.id == Complaint.assignee_id)
        .where(
            ComplaintClock.kind == ClockKind.RESOLUTION.value,
            ComplaintClock.stopped_at.is_(None),
            Complaint.status.in_(OPEN),
            where,
        )
    )
    return [OpenClock(*row) for row in (await session.execute(stmt)).all()]


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Which open complaints are overdue (breached) and which at risk, by id."""

    overdue: frozenset[int]
    at_risk: frozenset[int]


async def deadlines(
    session: AsyncSession, *, now: datetime, visible: ColumnElement[bool], desk: Desk = DESK
) -> Deadlines:
    """The open complaints ``visible`` selects whose resolution clock is breached, or at
    risk, at ``now``: the list's ``overdue`` and ``at_risk`` filters, read as here."""
    calendar = desk.work_calendar()
    counter, clocks = Counter(), await _open_clocks(session, visible)
    readings = [counter.read(clock, calendar, now) for clock in clocks]
    return Deadlines(
        overdue=frozenset(r.clock.row.complaint_id for r in readings if r.breached),
        at_risk=frozenset(r.clock.row.complaint_id for r in readings if r.at_risk),
    )


def summarise(
    readings: Sequence[Reading],
    *,
    now: datetime,
    zone: ZoneInfo,
    calendar: WorkCalendar,
    limit: int,
) -> ComplaintCounts:
    """The counts and the at-risk list from the clocks read."""
    day_end = _day_end(now, zone)
    risky = sorted((r for r in readings if r.at_risk), key=lambda r: (r.due, r.clock.reference))
    return ComplaintCounts(
        at=now,
        day_ends_at=day_end,
        due_today=sum(1 for r in readings if not r.breached and r.due < day_end),
        at_risk=len(risky),
        breached=sum(1 for r in readings if r.breached),
        at_risk_list=[_listed(r, calendar, now) for r in risky[:limit]],
    )


def _day_end(now: datetime, zone: ZoneInfo) -> datetime:
    local = now.astimezone(zone)
    tomorrow = local.date() + timedelta(days=1)
    return datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=zone)


def _listed(reading: Reading, calendar: WorkCalendar, now: datetime) -> AtRiskComplaint:
    clock = reading.clock
    row = clock.row
    read = state(policy_of(row), history_of(row), calendar, max(now, row.started_at))
    return AtRiskComplaint(
        complaint_id=row.complaint_id,
        reference=clock.reference,
        due_at=reading.due,
        elapsed=round(read.elapsed, 4),
        assignee_id=clock.assignee_id,
        assignee=clock.assignee,
    )
