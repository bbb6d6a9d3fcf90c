"""The working-day calendar: China's published schedule, operators' overrides, and counting."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import chinese_calendar  # type: ignore[import-untyped]
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.complaints.calendar import (
    DEFAULT_ZONE,
    CalendarError,
    WorkCalendar,
    china_calendar,
    with_overrides,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
CHINA = china_calendar(range(2024, 2031))


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def d(text: str) -> date:
    return date.fromisoformat(text)


class TestChinaCalendar:
    @pytest.mark.parametrize(
        "day",
        ["2026-02-14", "2026-02-28", "2026-09-20", "2026-10-10", "2025-01-26", "2025-02-08"],
    )
    def test_make_up_weekend_days_are_working_days(self, day: str) -> None:
        assert d(day).weekday() >= 5
        assert CHINA.is_working_day(d(day))
        assert d(day) in CHINA.workdays

    @pytest.mark.parametrize(
        "day",
        [
            "2026-02-16",  # Monday of the Spring Festival week
            "2026-02-20",  # Friday
            "2026-02-23",  # the Monday after, still off
            "2026-10-01",  # National Day, a Thursday
            "2026-10-07",  # Wednesday, last day off
            "2025-10-08",
            "2026-01-02",  # New Year's bridge, a Friday
        ],
    )
    def test_weekday_holidays_are_not_working_days(self, day: str) -> None:
        assert d(day).weekday() < 5
        assert not CHINA.is_working_day(d(day))
        assert d(day) in CHINA.holidays

    def test_ordinary_days_follow_the_weekday_rule(self) -> None:
        assert CHINA.is_working_day(d("2026-02-24"))  # back to work after the festival
        assert CHINA.is_working_day(d("2026-10-09"))
        assert not CHINA.is_working_day(d("2026-03-07"))  # an ordinary Saturday
        assert d("2026-03-07") not in CHINA.holidays

    def test_agrees_with_the_package_on_every_day_of_2025_and_2026(self) -> None:
        day = d("2025-01-01")
        while day.year < 2027:
            assert CHINA.is_working_day(day) == chinese_calendar.is_workday(day), day
            day += timedelta(days=1)

    def test_years_past_the_package_data_are_left_uncovered_not_raised(self) -> None:
        calendar = china_calendar(range(2025, 2100))
        assert {2025, 2026} <= calendar.years
        assert 2099 not in calendar.years
        assert calendar.covers(d("2026-06-01"))
        assert not calendar.covers(d("2099-06-01"))

    def test_uncovered_year_falls_back_to_weekends_only(self) -> None:
        assert CHINA.is_working_day(d("2099-10-01"))  # a Thursday; the holiday is unknown
        assert not CHINA.is_working_day(d("2099-10-03"))  # a Saturday

    def test_default_zone_is_the_centres(self) -> None:
        assert CHINA.zone == DEFAULT_ZONE == "Asia/Shanghai"


class TestEstimated:
    def test_span_inside_covered_years_is_not_estimated(self) -> None:
        assert not CHINA.estimated(local(2025, 12, 30), local(2026, 1, 6))

    def test_span_reaching_an_uncovered_year_is_estimated(self) -> None:
        assert CHINA.estimated(local(2026, 12, 30), local(2027, 1, 6))

    def test_a_gap_year_inside_the_span_is_estimated(self) -> None:
        calendar = WorkCalendar(years=frozenset({2024, 2026}))
        assert calendar.estimated(local(2024, 12, 30), local(2026, 1, 6))


class TestOverrides:
    def test_added_holiday_makes_a_weekday_off(self) -> None:
        edited = with_overrides(CHINA, holidays=[d("2026-03-10")])
        assert not edited.is_working_day(d("2026-03-10"))
        assert CHINA.is_working_day(d("2026-03-10"))  # the original is unchanged

    def test_added_workday_makes_a_saturday_worked_and_leaves_the_holidays(self) -> None:
        edited = with_overrides(CHINA, workdays=[d("2026-03-07"), d("2026-10-02")])
        assert edited.is_working_day(d("2026-03-07"))
        assert edited.is_working_day(d("2026-10-02"))
        assert d("2026-10-02") not in edited.holidays

    def test_removed_day_reverts_to_the_weekday_rule(self) -> None:
        edited = with_overrides(CHINA, removed=[d("2026-10-01"), d("2026-10-10")])
        assert edited.is_working_day(d("2026-10-01"))  # a Thursday
        assert not edited.is_working_day(d("2026-10-10"))  # a Saturday

    def test_operator_can_mark_a_year_known(self) -> None:
        edited = with_overrides(CHINA, holidays=[d("2027-02-08")], years=[2027])
        assert edited.covers(d("2027-06-01"))
        assert not edited.estimated(local(2026, 12, 30), local(2027, 1, 6))

    def test_same_day_as_holiday_and_workday_is_refused(self) -> None:
        with pytest.raises(CalendarError, match="2026-03-10"):
            with_overrides(CHINA, holidays=[d("2026-03-10")], workdays=[d("2026-03-10")])

    def test_override_moves_a_deadline(self) -> None:
        start = local(2026, 3, 6, 17)  # Friday
        edited = with_overrides(CHINA, holidays=[d("2026-03-10")])
        assert CHINA.add_working_days(start, 3) == local(2026, 3, 12)
        assert edited.add_working_days(start, 3) == local(2026, 3, 13)


class TestConstruction:
    def test_overlapping_sets_are_refused(self) -> None:
        with pytest.raises(CalendarError):
            WorkCalendar(holidays=frozenset({d("2026-03-07")}), workdays={d("2026-03-07")})  # type: ignore[arg-type]

    def test_unknown_zone_is_refused(self) -> None:
        with pytest.raises(CalendarError, match="Mars/Olympus"):
            WorkCalendar(zone="Mars/Olympus")

    def test_naive_datetime_is_refused(self) -> None:
        with pytest.raises(CalendarError, match="naive"):
            CHINA.add_working_days(datetime(2026, 3, 6, 17), 3)

    def test_calendar_without_any_working_day_raises_instead_of_looping(self) -> None:
        first = d("2026-01-01")
        every_day = frozenset(first + timedelta(days=i) for i in range(4000))
        calendar = WorkCalendar(holidays=every_day)
        with pytest.raises(CalendarError, match="no working day"):
            calendar.add_working_days(local(2026, 1, 1), 1)


class TestAddWorkingDays:
    def test_friday_evening_plus_three_is_the_end_of_wednesday(self) -> None:
        due = CHINA.add_working_days(local(2026, 3, 6, 17), 3)
        assert due == local(2026, 3, 12)  # Wednesday 24:00 = Thursday 00:00 local
        assert due.tzinfo is UTC

    def test_registration_day_is_not_counted_even_early_on_a_working_day(self) -> None:
        assert CHINA.add_working_days(local(2026, 3, 9, 0, 1), 3) == local(2026, 3, 13)

    def test_saturday_registration_counts_from_monday(self) -> None:
        assert CHINA.add_working_days(local(2026, 3, 7, 11), 3) == local(2026, 3, 12)

    def test_spring_festival_counts_the_make_up_saturday_and_skips_the_week_off(self) -> None:
        # Friday 13 Feb: Saturday 14 is worked, 15-23 are off, then Tuesday 24, Wednesday 25.
        assert CHINA.add_working_days(local(2026, 2, 13, 10), 3) == local(2026, 2, 26)

    def test_national_day_week_is_skipped(self) -> None:
        # Tuesday 29 Sep: Wednesday 30 counts, 1-7 Oct are off, Thursday 8 and Friday 9.
        assert CHINA.add_working_days(local(2026, 9, 29, 15), 3) == local(2026, 10, 10)
        # and then the make-up Saturday 10 Oct is the fourth working day
        assert CHINA.add_working_days(local(2026, 9, 29, 15), 4) == local(2026, 10, 11)

    def test_day_boundaries_are_local_not_utc(self) -> None:
        # Both moments fall on Monday 9 March in UTC, but on different days in Shanghai.
        late_monday = local(2026, 3, 9, 23, 30)
        early_tuesday = local(2026, 3, 10, 0, 30)
        assert late_monday.astimezone(UTC).date() == early_tuesday.astimezone(UTC).date()
        assert CHINA.add_working_days(late_monday, 3) == local(2026, 3, 13)
        assert CHINA.add_working_days(early_tuesday, 3) == local(2026, 3, 14)

    def test_zero_days_is_the_start_itself(self) -> None:
        start = local(2026, 3, 6, 17)
        assert CHINA.add_working_days(start, 0) == start

    def test_negative_days_are_refused(self) -> None:
        with pytest.raises(CalendarError):
            CHINA.add_working_days(local(2026, 3, 6, 17), -1)

    def test_past_the_data_the_weekday_rule_applies(self) -> None:
        # Friday 27 Dec 2030: Mon 30, Tue 31, Wed 1 Jan (its holiday is not known), Thu, Fri.
        assert CHINA.add_working_days(local(2030, 12, 27, 9), 5) == local(2031, 1, 4)


class TestWorkingTime:
    def test_a_working_day_counts_one_and_a_holiday_none(self) -> None:
        assert CHINA.working_time(local(2026, 3, 9), local(2026, 3, 10)) == 1
        assert CHINA.working_time(local(2026, 10, 1), local(2026, 10, 2)) == 0

    def test_part_of_a_day_counts_its_share(self) -> None:
        assert CHINA.working_time(local(2026, 3, 9, 6), local(2026, 3, 9, 12)) == Fraction(1, 4)

    def test_a_day_shortened_by_daylight_saving_still_counts_one(self) -> None:
        berlin = ZoneInfo("Europe/Berlin")
        # Sunday 29 March 2026 has 23 hours in Berlin; make it a working day.
        calendar = WorkCalendar(workdays=frozenset({d("2026-03-29")}), zone="Europe/Berlin")
        start, end = calendar.day_start(d("2026-03-29")), calendar.day_start(d("2026-03-30"))
        assert end - start == timedelta(hours=23)
        assert calendar.working_time(start, end) == 1
        middle = calendar.after_working_time(start, Fraction(1, 2))
        assert middle - start == timedelta(hours=11, minutes=30)
        assert start == datetime(2026, 3, 29, tzinfo=berlin)

    def test_between_refuses_an_end_before_the_start(self) -> None:
        with pytest.raises(CalendarError):
            CHINA.working_days_between(local(2026, 3, 10), local(2026, 3, 9))

    def test_between_is_zero_on_the_registration_day(self) -> None:
        assert CHINA.working_days_between(local(2026, 3, 9, 9), local(2026, 3, 9, 23)) == 0


MOMENTS = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2026, 11, 30), timezones=st.just(UTC)
)


@given(start=MOMENTS, n=st.integers(min_value=0, max_value=40))
def test_working_days_between_inverts_add_working_days(start: datetime, n: int) -> None:
    due = CHINA.add_working_days(start, n)
    assert CHINA.working_days_between(start, due) == n
    assert CHINA.add_working_days(start, n + 1) > due


@given(start=MOMENTS, n=st.integers(min_value=1, max_value=40))
def test_a_working_day_deadline_is_the_midnight_ending_a_working_day(
    start: datetime, n: int
) -> None:
    due = CHINA.add_working_days(start, n).astimezone(SHANGHAI)
    assert (due.hour, due.minute, due.second, due.microsecond) == (0, 0, 0, 0)
    assert CHINA.is_working_day(due.date() - timedelta(days=1))
    assert due.date() - timedelta(days=1) > start.astimezone(SHANGHAI).date()


@given(
    start=MOMENTS,
    amount=st.fractions(min_value=0, max_value=30, max_denominator=96),
)
def test_after_working_time_inverts_working_time(start: datetime, amount: Fraction) -> None:
    end = CHINA.after_working_time(start, amount)
    assert CHINA.working_time(start, end) >= amount
    if end > start:  # earliest: a microsecond sooner has not reached the amount
        assert CHINA.working_time(start, end - timedelta(microseconds=1)) < amount
