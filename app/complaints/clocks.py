"""Complaint clocks: named deadlines derived from a recorded history, never stored as truth.

Theory of operation
-------------------

A complaint runs several named clocks (``ClockKind``): the acknowledgement (due at
registration), the resolution (three calendar days after registration by default, the
mission's rule) and, where a ``ClockPolicy`` is configured for the complaint's category, tier
or channel, the first reply, the regulated decision (15 days, extendable to 30 and then 60
with approval and a notice to the customer), a 7-day refund and the post-closure review.

A policy says how much time a clock has (``target`` in a ``unit``), when to warn (fractions
of the target, default 50 % and 80 %), for which of the listed reasons it may pause (the
status table's ``PauseReason``, re-exported here so there is one list) and how far it may be
extended. A ``ClockHistory`` says what happened: when the clock started, each pause (start,
end or ``None`` while it lasts), each approved extension, and when it stopped. Every answer here is
computed from the pair and a ``WorkCalendar``, so a pause moves the deadline by exactly the
paused time, and a changed policy applied to the same history recomputes an open complaint's
deadline correctly. Nothing reads a clock: ``now`` is passed in.

The elapsed-work model
~~~~~~~~~~~~~~~~~~~~~~

A clock accumulates elapsed time only while it runs (between its start and its pauses). The
deadline (``due_at``) is the earliest moment at which the accumulated time reaches the target
plus the approved extensions; a warning at fraction *f* is the moment it reaches *f* times
that. What accumulates depends on the unit:

- ``hours``: real time; a target of 24 hours is due 24 hours after the start, pauses added.
- ``calendar_days``: real time in days of 24 hours. The mission's "three days" is
  registration time + 72 hours, plus every paused interval.
- ``working_days``: working time on the calendar (``WorkCalendar.working_time``): each
  working day counts as one day, spread over its 24 hours; weekends, holidays, and the day of
  registration itself (the Civil Code's rule that the starting day is not counted) count
  nothing. Unpaused, the deadline is therefore the end (24:00 local) of the N-th working day
  after the day of registration: three working days from Friday 17:00 is Wednesday 24:00. A
  pause moves the deadline by the working time it covered: a pause from Tuesday 10:00 to
  14:00 moves it four hours, to Thursday 04:00; a pause over a weekend or on the day of
  registration moves it not at all, because the clock was not counting then.

Extensions are counted in the policy's unit (days for the day units, hours for ``hours``).
Day boundaries are the calendar's zone (the centre's, default Asia/Shanghai); datetimes are
aware at the edges and returned in UTC. A working-day deadline that crosses a year the
calendar has no data for is computed on the weekday rule and flagged ``estimated``.

While a pause is open the deadline is not yet known: ``due_at`` and ``warning_times`` take
``now`` and answer as if the clock resumed at ``now``; without it they raise ``ClockPaused``.

State at a moment
~~~~~~~~~~~~~~~~~

``state`` reads the clock at ``now``, in this precedence: **stopped** (``stopped_at <= now``;
``met`` says whether it stopped by the deadline, a stop exactly at the deadline being in
time), **breached** (``now >= due_at``, even while paused: a breach is not undone by
pausing), **paused**, **running**. ``elapsed`` is the fraction of the (extended) target used,
above 1 once breached. A zero target (the acknowledgement) is due at the start.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import Final

from app.complaints.calendar import WorkCalendar
from app.complaints.lifecycle import PauseReason

__all__ = [
    "DEFAULT_POLICIES",
    "REGULATED_DECISION",
    "SEVEN_DAY_REFUND",
    "ClockError",
    "ClockHistory",
    "ClockKind",
    "ClockPaused",
    "ClockPolicy",
    "ClockState",
    "ClockStatus",
    "ClockUnit",
    "ExtensionNotAllowed",
    "InvalidClockHistory",
    "InvalidClockPolicy",
    "Pause",
    "PauseNotAllowed",
    "PauseReason",
    "check_extension",
    "check_pause",
    "due_at",
    "elapsed",
    "policy_for",
    "state",
    "total_target",
    "warning_times",
]


class ClockKind(StrEnum):
    """The named clocks a complaint may run."""

    ACKNOWLEDGEMENT = "acknowledgement"
    FIRST_REPLY = "first_reply"
    RESOLUTION = "resolution"
    DECISION = "decision"
    REFUND = "refund"
    REVIEW = "review"


class ClockUnit(StrEnum):
    """What a target counts."""

    CALENDAR_DAYS = "calendar_days"
    WORKING_DAYS = "working_days"
    HOURS = "hours"


class ClockStatus(StrEnum):
    """A clock's condition at a given moment."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    BREACHED = "breached"


class ClockError(ValueError):
    """A clock question with no valid answer; the message says why."""


class InvalidClockPolicy(ClockError):
    """A policy that cannot be applied (negative target, warning outside (0, 1), ...)."""


class InvalidClockHistory(ClockError):
    """A history that cannot have happened (overlapping pauses, a stop before the start)."""


class ClockPaused(ClockError):
    """The deadline of a clock paused without end is asked for without a ``now``."""


class PauseNotAllowed(ClockError):
    """A pause for a reason the policy does not list, or of a clock that cannot pause now."""


class ExtensionNotAllowed(ClockError):
    """An extension the policy does not permit."""


Pause = tuple[datetime, datetime | None]
Segment = tuple[datetime, datetime | None]

_UNIT_LENGTH: Final = {ClockUnit.HOURS: timedelta(hours=1), ClockUnit.CALENDAR_DAYS: timedelta(1)}
_MICROSECOND: Final = timedelta(microseconds=1)


@dataclass(frozen=True)
class ClockPolicy:
    """How long a clock has, when it warns, why it may pause, how far it may be extended.

    ``extendable_to`` lists the totals an extension may bring the target to, in order (the
    regulated decision: ``(30, 60)``); ``None`` allows any approved extension and ``()``
    none. ``category``, ``tier`` and ``channel`` scope the policy (``None``: any); see
    ``policy_for``. ``unit`` also accepts its string value.
    """

    kind: ClockKind
    target: int
    unit: ClockUnit
    warnings: tuple[float, ...] = (0.5, 0.8)
    pause_reasons: frozenset[PauseReason] = frozenset(PauseReason)
    extendable_to: tuple[int, ...] | None = None
    category: str | None = None
    tier: str | None = None
    channel: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ClockKind(self.kind))
        object.__setattr__(self, "unit", ClockUnit(self.unit))
        if self.target < 0:
            raise InvalidClockPolicy(f"{self.kind}: a negative target")
        if any(not 0 < level < 1 for level in self.warnings):
            raise InvalidClockPolicy(f"{self.kind}: warnings are fractions between 0 and 1")
        object.__setattr__(self, "warnings", tuple(sorted(set(self.warnings))))
        steps = self.extendable_to
        if steps is not None and list(steps) != sorted(set(steps)):
            raise InvalidClockPolicy(f"{self.kind}: extension totals must increase")
        if steps and steps[0] <= self.target:
            raise InvalidClockPolicy(f"{self.kind}: extension totals must exceed the target")


def _aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidClockHistory(f"{what} is a naive datetime: give a time zone")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class ClockHistory:
    """What happened to one clock: start, pauses, approved extensions, stop."""

    started_at: datetime
    pauses: tuple[Pause, ...] = ()
    extensions: tuple[int, ...] = ()
    stopped_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "started_at", _aware(self.started_at, "started_at"))
        object.__setattr__(self, "pauses", _checked_pauses(self.started_at, self.pauses))
        if any(amount <= 0 for amount in self.extensions):
            raise InvalidClockHistory("an extension must add a positive amount")
        if self.stopped_at is not None:
            object.__setattr__(self, "stopped_at", _checked_stop(self, self.stopped_at))

    @property
    def open_pause(self) -> datetime | None:
        """The start of the pause that has not ended, if any."""
        if self.pauses and self.pauses[-1][1] is None:
            return self.pauses[-1][0]
        return None

    def paused(self, at: datetime) -> ClockHistory:
        """This history with a pause starting at ``at``."""
        if self.open_pause is not None or self.stopped_at is not None:
            raise PauseNotAllowed("the clock is already paused or stopped")
        return replace(self, pauses=(*self.pauses, (at, None)))

    def resumed(self, at: datetime) -> ClockHistory:
        """This history with its open pause ended at ``at``."""
        start = self.open_pause
        if start is None:
            raise InvalidClockHistory("the clock is not paused")
        return replace(self, pauses=(*self.pauses[:-1], (start, at)))

    def extended(self, amount: int) -> ClockHistory:
        """This history with one more approved extension of ``amount`` units."""
        return replace(self, extensions=(*self.extensions, amount))

    def stopped(self, at: datetime) -> ClockHistory:
        """This history stopped at ``at`` (a pause still open ends there)."""
        if self.stopped_at is not None:
            raise InvalidClockHistory("the clock is already stopped")
        return replace(self, stopped_at=at)


def _checked_pauses(started_at: datetime, pauses: Iterable[Pause]) -> tuple[Pause, ...]:
    checked: list[Pause] = []
    floor: datetime | None = started_at
    for index, (begin, end) in enumerate(pauses):
        if floor is None:
            raise InvalidClockHistory(f"pause {index} follows a pause that has not ended")
        begin = _aware(begin, f"pause {index} start")
        if begin < floor:
            raise InvalidClockHistory(f"pause {index} overlaps the start or another pause")
        floor = None if end is None else _aware(end, f"pause {index} end")
        if floor is not None and floor < begin:
            raise InvalidClockHistory(f"pause {index} ends before it starts")
        checked.append((begin, floor))
    return tuple(checked)


def _checked_stop(history: ClockHistory, stopped_at: datetime) -> datetime:
    stop = _aware(stopped_at, "stopped_at")
    if stop < history.started_at:
        raise InvalidClockHistory("the clock stops before it starts")
    if history.pauses and history.pauses[-1][0] > stop:
        raise InvalidClockHistory("a pause starts after the clock stopped")
    return stop


def total_target(policy: ClockPolicy, history: ClockHistory) -> int:
    """The target with every approved extension added, in the policy's unit."""
    return policy.target + sum(history.extensions)


def _segments(history: ClockHistory, now: datetime | None) -> list[Segment]:
    """The running intervals, the last one open-ended. The stop is ignored: a stopped clock's
    deadline is the one it had. A pause still open ends at the stop, else at ``now``."""
    resume_at = history.stopped_at or now
    segments: list[Segment] = []
    begin: datetime | None = history.started_at
    for pause_start, pause_end in history.pauses:
        assert begin is not None
        segments.append((begin, pause_start))
        begin = pause_end if pause_end is not None else resume_at
        if begin is None:
            raise ClockPaused("the clock is paused: its deadline depends on when it resumes")
        begin = max(begin, pause_start)
    assert begin is not None
    segments.append((begin, None))
    return segments


@dataclass(frozen=True)
class _Meter:
    """How one unit measures running time: ``measure`` counts, ``advance`` inverts it."""

    measure: Callable[[datetime, datetime], Fraction]
    advance: Callable[[datetime, Fraction], datetime]


def _real_meter(length: timedelta) -> _Meter:
    scale = length // _MICROSECOND

    def measure(a: datetime, b: datetime) -> Fraction:
        return Fraction((b - a) // _MICROSECOND, scale)

    def advance(a: datetime, amount: Fraction) -> datetime:
        return a + timedelta(microseconds=math.ceil(amount * scale))

    return _Meter(measure, advance)


def _working_meter(calendar: WorkCalendar, started_at: datetime) -> _Meter:
    origin = calendar.count_from(started_at)

    def measure(a: datetime, b: datetime) -> Fraction:
        a, b = max(a, origin), max(b, origin)
        return calendar.working_time(a, b)

    def advance(a: datetime, amount: Fraction) -> datetime:
        return calendar.after_working_time(max(a, origin), amount)

    return _Meter(measure, advance)


def _meter(policy: ClockPolicy, history: ClockHistory, calendar: WorkCalendar) -> _Meter:
    if policy.unit is ClockUnit.WORKING_DAYS:
        return _working_meter(calendar, history.started_at)
    return _real_meter(_UNIT_LENGTH[policy.unit])


def _reached(meter: _Meter, segments: Sequence[Segment], amount: Fraction) -> datetime:
    """The earliest moment the running time over ``segments`` reaches ``amount``."""
    remaining = amount
    for begin, end in segments:
        if remaining == 0:
            return begin
        if end is not None:
            counted = meter.measure(begin, end)
            if counted < remaining:
                remaining -= counted
                continue
        return meter.advance(begin, remaining)
    raise AssertionError("the last running segment is open-ended")


def due_at(
    policy: ClockPolicy,
    history: ClockHistory,
    calendar: WorkCalendar,
    *,
    now: datetime | None = None,
) -> datetime:
    """The deadline: when running time reaches the extended target (UTC).

    A clock paused without end needs ``now`` and answers as if it resumed then."""
    segments = _segments(history, _utc(now))
    meter = _meter(policy, history, calendar)
    return _reached(meter, segments, Fraction(total_target(policy, history)))


def warning_times(
    policy: ClockPolicy,
    history: ClockHistory,
    calendar: WorkCalendar,
    *,
    now: datetime | None = None,
) -> list[tuple[float, datetime]]:
    """Each warning level with the moment running time reaches it, in increasing order."""
    segments = _segments(history, _utc(now))
    meter = _meter(policy, history, calendar)
    total = total_target(policy, history)
    return [
        (level, _reached(meter, segments, Fraction(str(level)) * total))
        for level in policy.warnings
    ]


def elapsed(
    policy: ClockPolicy, history: ClockHistory, calendar: WorkCalendar, now: datetime
) -> Fraction:
    """Running time accumulated by ``now`` (or by the stop), in the policy's unit."""
    until = _aware(now, "now")
    if history.stopped_at is not None:
        until = min(until, history.stopped_at)
    meter = _meter(policy, history, calendar)
    total = Fraction(0)
    for begin, end in _segments(history, until):
        stop = until if end is None else min(end, until)
        if stop > begin:
            total += meter.measure(begin, stop)
    return total


@dataclass(frozen=True)
class ClockState:
    """A clock read at one moment.

    ``due_at`` is the deadline (for a paused clock, the deadline if it resumed at ``now``);
    ``elapsed`` the fraction of the extended target used; ``warnings_reached`` the warning
    levels passed while it ran; ``met`` whether a stopped clock stopped in time (``None``
    while it has not stopped); ``estimated`` whether the deadline rests on a year the
    calendar has no holiday data for."""

    status: ClockStatus
    elapsed: float
    due_at: datetime
    warnings_reached: tuple[float, ...]
    met: bool | None
    estimated: bool


def state(
    policy: ClockPolicy, history: ClockHistory, calendar: WorkCalendar, now: datetime
) -> ClockState:
    """The clock's status, progress and deadline at ``now``."""
    now = _aware(now, "now")
    due = due_at(policy, history, calendar, now=now)
    stop = history.stopped_at
    stopped = stop is not None and stop <= now
    reached_by = stop if stop is not None and stopped else now
    warnings = warning_times(policy, history, calendar, now=now)
    return ClockState(
        status=_status(history, now, due, stopped=stopped),
        elapsed=_fraction_used(policy, history, calendar, now),
        due_at=due,
        warnings_reached=tuple(level for level, at in warnings if at <= reached_by),
        met=(stop is not None and stop <= due) if stopped else None,
        estimated=_estimated(policy, history, calendar, due),
    )


def _status(history: ClockHistory, now: datetime, due: datetime, *, stopped: bool) -> ClockStatus:
    if stopped:
        return ClockStatus.STOPPED
    if now >= due:
        return ClockStatus.BREACHED
    if any(start <= now and (end is None or now < end) for start, end in history.pauses):
        return ClockStatus.PAUSED
    return ClockStatus.RUNNING


def _fraction_used(
    policy: ClockPolicy, history: ClockHistory, calendar: WorkCalendar, now: datetime
) -> float:
    total = total_target(policy, history)
    if total == 0:
        return 1.0 if now >= history.started_at else 0.0
    return float(elapsed(policy, history, calendar, now) / total)


def _estimated(
    policy: ClockPolicy, history: ClockHistory, calendar: WorkCalendar, due: datetime
) -> bool:
    if policy.unit is not ClockUnit.WORKING_DAYS:
        return False
    return calendar.estimated(history.started_at, due)


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else _aware(moment, "now")


def check_pause(policy: ClockPolicy, history: ClockHistory, reason: str) -> PauseReason:
    """The listed reason for a pause this clock may take now; ``PauseNotAllowed`` if none."""
    try:
        listed = PauseReason(reason)
    except ValueError:
        names = ", ".join(sorted(PauseReason))
        raise PauseNotAllowed(f"{reason!r} is not a listed pause reason ({names})") from None
    if listed not in policy.pause_reasons:
        raise PauseNotAllowed(f"the {policy.kind} clock does not pause for {listed}")
    if history.open_pause is not None or history.stopped_at is not None:
        raise PauseNotAllowed(f"the {policy.kind} clock is already paused or stopped")
    return listed


def check_extension(policy: ClockPolicy, history: ClockHistory, amount: int) -> int:
    """The new extended target, if the policy permits adding ``amount``."""
    current = total_target(policy, history)
    if amount <= 0:
        raise ExtensionNotAllowed("an extension must add a positive amount")
    if history.stopped_at is not None:
        raise ExtensionNotAllowed(f"the {policy.kind} clock has stopped")
    steps = policy.extendable_to
    if steps is None:
        return current + amount
    following = [step for step in steps if step > current]
    if not following:
        raise ExtensionNotAllowed(f"the {policy.kind} clock cannot be extended further")
    if current + amount != following[0]:
        raise ExtensionNotAllowed(
            f"the {policy.kind} clock extends from {current} to {following[0]} {policy.unit}"
        )
    return following[0]


def _specificity(policy: ClockPolicy) -> tuple[int, int]:
    """More scoping fields first; among equals, category over tier over channel."""
    fields = (policy.category, policy.tier, policy.channel)
    count = sum(value is not None for value in fields)
    weight = sum(4 >> index for index, value in enumerate(fields) if value is not None)
    return count, weight


def _applies(
    policy: ClockPolicy, categories: Collection[str], tier: str | None, channel: str | None
) -> bool:
    return (
        (policy.category is None or policy.category in categories)
        and (policy.tier is None or policy.tier == tier)
        and (policy.channel is None or policy.channel == channel)
    )


def policy_for(
    category: str | Collection[str] | None,
    tier: str | None,
    channel: str | None,
    policies: Iterable[ClockPolicy],
) -> dict[ClockKind, ClockPolicy]:
    """The clocks a complaint runs: for each kind, the most specific matching policy.

    ``category`` may be several categories (a complaint may have more than one). Among
    equally specific matches the first in ``policies`` wins, so operators order them."""
    categories = {category} if isinstance(category, str) else set(category or ())
    chosen: dict[ClockKind, ClockPolicy] = {}
    for policy in policies:
        if not _applies(policy, categories, tier, channel):
            continue
        best = chosen.get(policy.kind)
        if best is None or _specificity(policy) > _specificity(best):
            chosen[policy.kind] = policy
    return chosen


DEFAULT_POLICIES: Final[tuple[ClockPolicy, ...]] = (
    ClockPolicy(
        ClockKind.ACKNOWLEDGEMENT,
        0,
        ClockUnit.HOURS,
        warnings=(),
        pause_reasons=frozenset(),
        extendable_to=(),
    ),
    ClockPolicy(ClockKind.RESOLUTION, 3, ClockUnit.CALENDAR_DAYS),
)
"""The mission's rule: acknowledged at registration, resolved within three calendar days."""

REGULATED_DECISION: Final = ClockPolicy(
    ClockKind.DECISION, 15, ClockUnit.CALENDAR_DAYS, extendable_to=(30, 60)
)
"""The regulators' decision clock: 15 days, extendable to 30 and then 60 with approval."""

SEVEN_DAY_REFUND: Final = ClockPolicy(ClockKind.REFUND, 7, ClockUnit.CALENDAR_DAYS)
"""A refund within seven days."""
