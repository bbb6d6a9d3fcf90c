"""Every deadline watched: each running clock keeps one durable timer for its next alert.

Theory of operation
-------------------

A clock's alerts are its policy's warning levels (default 50 % and 80 % of the extended
target) and its breach (the deadline itself). When each falls due is never stored: it is
derived, like the deadline, from the clock's recorded history by ``app.complaints.clocks``
(``warning_times``, ``due_at``), so a pause moves every alert by exactly the paused time and
an extension or a changed policy moves them as the history says.

**One timer per clock.** After every change to a clock's history (registration, pause,
resume, extension, stop, reopen, a recomputed policy) the service calls ``reschedule``: a
running clock gets the durable timer ``complaint.clock`` / ``"<clock id>"`` set to the
moment of its earliest alert not yet fired (the payload names that alert, for people reading
the timers table); a paused or stopped clock, or one whose alerts have all fired, has none.
The timer row is replaced in place (``app.timers.service.schedule`` upserts by kind and
subject), so a clock never has two.

**Which alerts fired** is read from the complaint's audit trail, the hash-chained record the
firing writes in the same transaction (``sla_warning`` and ``sla_breached`` entries, whose
data names the clock, the alert and the run). No second record can disagree with it. An
alert fires once per *run* of a clock: the run is the clock's ``started_at``, which only a
new start (a review requested again) changes, so a reopened resolution clock, which carries
on, does not warn again about what it already warned of, while a fresh review clock does.

**Firing** (``app.complaints.handlers``) locks the complaint, recomputes the alerts from the
history at the worker's ``now`` and acts only on those due and not yet fired; the timer's
payload is never trusted. A timer set before a resume, still in flight when the resume moved
the alerts, therefore finds nothing due and only sets the timer right. Alerts that fell due
together (a worker was down, a policy shortened the target) fire together, in order, each
once. Many clocks falling due at once are fired in batches by ``app.complaints.clock_batch``,
with the same rules and the helpers below (``plan``, ``escalated``, ``alert_data``,
``alert_payload``), so both paths write the same.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.complaints import lifecycle
from app.complaints.calendar import WorkCalendar
from app.complaints.clocks import due_at, warning_times
from app.complaints.events import ComplaintEventType
from app.complaints.lifecycle import ComplaintEvent, ComplaintStatus, EscalationLevel
from app.complaints.models import (
    ComplaintAudit,
    ComplaintClock,
    history_of,
    is_running,
    iso,
    policy_of,
)
from app.timers import service as timers

KIND: Final = "complaint.clock"
BREACH: Final = "breach"
WARNING_ACTION: Final = "sla_warning"
BREACH_ACTION: Final = "sla_breached"
ALERT_ACTIONS: Final = (WARNING_ACTION, BREACH_ACTION)


@dataclass(frozen=True, slots=True, order=True)
class Alert:
    """One alert of one clock: when it falls due, and which it is (a level, or the breach)."""

    at: datetime
    rank: float  # the warning's level; 1.0 for the breach, so alerts of one moment sort
    name: str  # "0.5", "0.8", ..., or "breach"

    @property
    def level(self) -> float | None:
        """The warning's fraction of the target; None for the breach."""
        return None if self.name == BREACH else self.rank

    @property
    def action(self) -> str:
        return BREACH_ACTION if self.name == BREACH else WARNING_ACTION


Fired = frozenset[tuple[str, str, str]]
"""The alerts fired for a complaint: (clock kind, run, alert name)."""


def alert_name(level: float) -> str:
    return str(level)


def run_of(row: ComplaintClock) -> str:
    """The run a clock's alerts belong to: its start."""
    return iso(row.started_at)


def alerts(row: ComplaintClock, calendar: WorkCalendar) -> list[Alert]:
    """Every alert of a running clock, from its history, in the order they fall due."""
    policy, history = policy_of(row), history_of(row)
    found = [
        Alert(at, level, alert_name(level))
        for level, at in warning_times(policy, history, calendar)
    ]
    found.append(Alert(due_at(policy, history, calendar), 1.0, BREACH))
    return sorted(found)


def pending(row: ComplaintClock, calendar: WorkCalendar, fired: Fired) -> list[Alert]:
    """The alerts of this clock's run that have not fired (none unless it is running)."""
    if not is_running(row):
        return []
    run = run_of(row)
    return [a for a in alerts(row, calendar) if (row.kind, run, a.name) not in fired]


def due_now(
    row: ComplaintClock, calendar: WorkCalendar, fired: Fired, now: datetime
) -> list[Alert]:
    """The pending alerts due by ``now``, earliest first."""
    return [a for a in pending(row, calendar, fired) if a.at <= now]


@dataclass(frozen=True, slots=True)
class Plan:
    """What firing a clock's timer at a moment does: the alerts due, the deadline they
    name, and the alert its timer is set to next."""

    due: list[Alert]
    deadline: datetime | None
    next: Alert | None


def plan(row: ComplaintClock, calendar: WorkCalendar, fired: Fired, now: datetime) -> Plan:
    """``due_now``, the deadline and the next pending alert at once (alerts derived once)."""
    if not is_running(row):
        return Plan([], None, None)
    found = alerts(row, calendar)
    run = run_of(row)
    waiting = [a for a in found if (row.kind, run, a.name) not in fired]
    due = [a for a in waiting if a.at <= now]
    later = waiting[len(due) :]
    return Plan(due, found[-1].at, later[0] if later else None)


def next_payload(row: ComplaintClock, alert: Alert) -> dict[str, Any]:
    """The payload of the timer set to ``alert`` (for people reading the timers table)."""
    return {"clock": row.kind, "alert": alert.name}


def escalated(status: str, level: str) -> str:
    """The escalation level after an alert: one step up the ladder where the status allows
    an escalation, never above head office."""
    higher = lifecycle.next_level(EscalationLevel(level))
    if higher is not None and lifecycle.allows(ComplaintStatus(status), ComplaintEvent.ESCALATE):
        return higher.value
    return level


def alert_data(row: ComplaintClock, alert: Alert, before: str, after: str) -> dict[str, Any]:
    """An alert's audit entry data: the alert, and the levels before and after it."""
    return {**alert_record(row, alert), "escalation": {"before": before, "after": after}}


def alert_event(alert: Alert) -> ComplaintEventType:
    """The event an alert logs: the breach, or a warning."""
    if alert.name == BREACH:
        return ComplaintEventType.SLA_BREACHED
    return ComplaintEventType.SLA_WARNING


def alert_payload(
    base: dict[str, Any], row: ComplaintClock, alert: Alert, deadline: datetime, level: str
) -> dict[str, Any]:
    """An alert event's payload (``events.ClockEvent``), after the complaint's ``base``
    (its id, reference and status)."""
    return {
        **base,
        "clock": row.kind,
        "due_at": iso(deadline),
        "level": alert.level,
        "escalation_level": level,
    }


def fired_from(entries: Iterable[dict[str, Any]]) -> Fired:
    """The fired alerts named by audit entries' data."""
    return frozenset((e["clock"], e["run"], e["alert"]) for e in entries)


async def fired_alerts(session: AsyncSession, complaint_id: int) -> Fired:
    """The alerts fired for a complaint, as its audit trail records them."""
    rows = await session.scalars(
        select(ComplaintAudit.data).where(
            ComplaintAudit.complaint_id == complaint_id,
            ComplaintAudit.action.in_(ALERT_ACTIONS),
        )
    )
    return fired_from(rows)


def alert_record(row: ComplaintClock, alert: Alert) -> dict[str, Any]:
    """What an alert's audit entry says about it (what ``fired_from`` reads back)."""
    return {"clock": row.kind, "run": run_of(row), "alert": alert.name, "due": iso(alert.at)}


async def schedule_next(
    session: AsyncSession, row: ComplaintClock, calendar: WorkCalendar, fired: Fired
) -> Alert | None:
    """Set the clock's timer to its next pending alert, or remove it; returns that alert."""
    upcoming = pending(row, calendar, fired)
    if not upcoming:
        await timers.cancel(session, kind=KIND, subject=row.id)
        return None
    alert = upcoming[0]
    await timers.schedule(
        session,
        kind=KIND,
        subject=row.id,
        due_at=alert.at,
        payload=next_payload(row, alert),
    )
    return alert


async def reschedule(
    session: AsyncSession,
    rows: Sequence[ComplaintClock],
    calendar: WorkCalendar,
    *,
    fired: Fired | None = None,
) -> None:
    """Set each clock's timer from its history, after the history changed.

    The rows must be flushed (they need their ids). ``fired`` may be given by a caller that
    already read it; else it is read from the audit trail when a clock runs."""
    if fired is None:
        fired = await _fired_if_running(session, rows)
    for row in rows:
        await schedule_next(session, row, calendar, fired)


async def _fired_if_running(session: AsyncSession, rows: Collection[ComplaintClock]) -> Fired:
    running = [row for row in rows if is_running(row)]
    if not running:
        return frozenset()
    return await fired_alerts(session, running[0].complaint_id)
