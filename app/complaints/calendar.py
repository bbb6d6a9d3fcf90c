"""Working days in the centre's zone: public holidays, make-up working days, and counting.

Theory of operation
-------------------

A ``WorkCalendar`` is a value: the public holidays, the make-up working days (China's 调休,
when a Saturday or Sunday is worked to bridge a long holiday), the years whose data is
authoritative, and the time zone whose midnights divide the days (the centre's zone, default
``Asia/Shanghai``). A day is a working day when it is a make-up working day, or when it is a
Monday to Friday that is not a holiday. Nothing here reads a clock or does I/O; operators'
edits are applied with ``with_overrides``, and storing them is the service's job.

``china_calendar(years)`` seeds the value from the ``chinese_calendar`` package, which carries
the State Council's published schedules. That package raises ``NotImplementedError`` for a
year it has no data for; such a year is simply left out of ``years``. The calendar never
consults the package again, so a date in an uncovered year cannot crash anything: it falls
back to the plain rule (Monday to Friday are working days, unless an operator's override
says otherwise) and ``estimated`` flags it, so callers can show the deadline as provisional.

Datetimes at the edges are aware and returned in UTC; a naive datetime is refused, because
guessing its zone would silently move a deadline by eight hours.

Counting working time
---------------------

Each local day is one unit of working time if it is a working day and zero otherwise, spread
evenly over the day (so a day made 23 or 25 hours long by a daylight-saving change still
counts as one day). ``working_time(a, b)`` measures ``[a, b)`` that way, as an exact
``Fraction`` of days, and ``after_working_time(t, amount)`` is its inverse: the earliest
moment at or after ``t`` by which ``amount`` working days have elapsed (rounded up to the
microsecond, so a deadline is never early).

"Within N working days" follows the rule of the PRC Civil Code (articles 201 to 203): the day
on which the period starts is not counted, and the period ends at the end (24:00) of its last
day; a last day that would fall on a holiday cannot happen here, since only working days are
counted. So ``add_working_days(start, n)`` is the end of the N-th working day after the local
day of ``start``, that is the next local midnight, and ``working_days_between`` measures with
the same rule, so the two are inverse. Registered on Friday 17:00 with a target of three
working days (an ordinary week): Monday, Tuesday and Wednesday count, and the deadline is
Wednesday 24:00, written as Thursday 00:00 local. Registered on Saturday, the same. A zero
target is due at once.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import chinese_calendar  # type: ignore[import-untyped]

__all__ = [
    "DEFAULT_ZONE",
    "CalendarError",
    "WorkCalendar",
    "china_calendar",
    "with_overrides",
]

DEFAULT_ZONE: Final = "Asia/Shanghai"

# A calendar with no working day in this many consecutive days is a mistake in its data
# (an operator marking every day a holiday), not a deadline anyone can meet.
_SEARCH_LIMIT_DAYS: Final = 3660

_ONE_DAY: Final = timedelta(days=1)
_MICROSECOND: Final = timedelta(microseconds=1)


class CalendarError(ValueError):
    """A calendar that cannot be built or a question it cannot answer."""


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise CalendarError(f"naive datetime {moment.isoformat()}: give a time zone")
    return moment


def _micros(span: timedelta) -> int:
    return span // _MICROSECOND


@dataclass(frozen=True)
class WorkCalendar:
    """Holidays, make-up working days and covered years, in one time zone."""

    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()
    years: frozenset[int] = frozenset()
    zone: str = DEFAULT_ZONE
    _tz: ZoneInfo = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        both = self.holidays & self.workdays
        if both:
            raise CalendarError(f"both a holiday and a working day: {min(both).isoformat()}")
        try:
            tz = ZoneInfo(self.zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CalendarError(f"unknown time zone {self.zone!r}") from exc
        object.__setattr__(self, "_tz", tz)

    def is_working_day(self, day: date) -> bool:
        """Whether ``day`` is worked: a make-up day, or a weekday that is not a holiday."""
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def covers(self, day: date) -> bool:
        """Whether ``day`` lies in a year whose holidays are known, not estimated."""
        return day.year in self.years

    def estimated(self, a: datetime, b: datetime) -> bool:
        """Whether any local day from ``a`` to ``b`` lies outside the covered years."""
        first, last = sorted((self.local_date(a).year, self.local_date(b).year))
        return any(year not in self.years for year in range(first, last + 1))

    def local_date(self, moment: datetime) -> date:
        """The centre's calendar day at ``moment``."""
        return _aware(moment).astimezone(self._tz).date()

    def day_start(self, day: date) -> datetime:
        """The local midnight that begins ``day``, in UTC."""
        return datetime.combine(day, time(), tzinfo=self._tz).astimezone(UTC)

    def _day_span(self, day: date) -> tuple[datetime, datetime]:
        return self.day_start(day), self.day_start(day + _ONE_DAY)

    def working_time(self, a: datetime, b: datetime) -> Fraction:
        """Working days elapsed in ``[a, b)``: each working day counts 1, spread over its hours."""
        a, b = _aware(a).astimezone(UTC), _aware(b).astimezone(UTC)
        total = Fraction(0)
        day = self.local_date(a)
        while a < b:
            start, end = self._day_span(day)
            if self.is_working_day(day):
                covered = min(b, end) - max(a, start)
                total += Fraction(_micros(covered), _micros(end - start))
            a, day = end, day + _ONE_DAY
        return total

    def after_working_time(self, moment: datetime, amount: Fraction | int) -> datetime:
        """The earliest moment at or after ``moment`` by which ``amount`` working days elapse."""
        if amount < 0:
            raise CalendarError("a negative amount of working time")
        moment = _aware(moment).astimezone(UTC)
        remaining = Fraction(amount)
        day = self.local_date(moment)
        for _ in range(_SEARCH_LIMIT_DAYS):
            if remaining == 0:
                return moment
            start, end = self._day_span(day)
            if self.is_working_day(day):
                available = Fraction(_micros(end - moment), _micros(end - start))
                if remaining <= available:
                    offset = math.ceil(remaining * _micros(end - start))
                    return moment + timedelta(microseconds=offset)
                remaining -= available
            moment, day = end, day + _ONE_DAY
        raise CalendarError(f"no working day within {_SEARCH_LIMIT_DAYS} days of {day}")

    def count_from(self, start: datetime) -> datetime:
        """Where a working-day period started at ``start`` begins to count: the next midnight."""
        return self.day_start(self.local_date(start) + _ONE_DAY)

    def add_working_days(self, start: datetime, n: int) -> datetime:
        """The end of the ``n``-th working day after the local day of ``start`` (UTC)."""
        if n < 0:
            raise CalendarError("a negative number of working days")
        if n == 0:
            return _aware(start).astimezone(UTC)
        return self.after_working_time(self.count_from(start), n)

    def working_days_between(self, a: datetime, b: datetime) -> Fraction:
        """Working days elapsed from ``a`` to ``b``, not counting the day of ``a``."""
        if _aware(b) < _aware(a):
            raise CalendarError("the end is before the start")
        begin = self.count_from(a)
        return self.working_time(begin, b) if b > begin else Fraction(0)


@functools.cache
def _china_year(year: int) -> tuple[frozenset[date], frozenset[date]] | None:
    """The year's holidays and make-up working days, or ``None`` past the package's data."""
    first = date(year, 1, 1)
    days = [first + timedelta(days=i) for i in range((date(year + 1, 1, 1) - first).days)]
    try:
        details = [(day, chinese_calendar.get_holiday_detail(day)) for day in days]
    except NotImplementedError:
        return None
    holidays = frozenset(day for day, (off, name) in details if off and name is not None)
    workdays = frozenset(day for day, (off, _) in details if not off and day.weekday() >= 5)
    return holidays, workdays


def china_calendar(years: range, zone: str = DEFAULT_ZONE) -> WorkCalendar:
    """Mainland China's published schedule for ``years``; years without data are estimated."""
    holidays: set[date] = set()
    workdays: set[date] = set()
    covered: set[int] = set()
    for year in years:
        known = _china_year(year)
        if known is not None:
            holidays |= known[0]
            workdays |= known[1]
            covered.add(year)
    return WorkCalendar(frozenset(holidays), frozenset(workdays), frozenset(covered), zone)


def with_overrides(
    calendar: WorkCalendar,
    holidays: Iterable[date] = (),
    workdays: Iterable[date] = (),
    removed: Iterable[date] = (),
    years: Iterable[int] = (),
) -> WorkCalendar:
    """Operators' edits: days ``removed`` revert to the weekday rule, then the given
    ``holidays`` and ``workdays`` are set (each taking the day from the other list), and
    ``years`` are marked as known (an operator who has entered a year's schedule)."""
    added_off, added_on, dropped = frozenset(holidays), frozenset(workdays), frozenset(removed)
    clash = added_off & added_on
    if clash:
        raise CalendarError(f"both a holiday and a working day: {min(clash).isoformat()}")
    return WorkCalendar(
        holidays=(calendar.holidays - dropped - added_on) | added_off,
        workdays=(calendar.workdays - dropped - added_off) | added_on,
        years=calendar.years | frozenset(years),
        zone=calendar.zone,
    )
