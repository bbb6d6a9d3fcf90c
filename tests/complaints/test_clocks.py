"""Complaint clocks: deadlines, pauses, extensions, warnings and state, all from the history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.complaints.calendar import china_calendar
from app.complaints.clocks import (
    DEFAULT_POLICIES,
    REGULATED_DECISION,
    SEVEN_DAY_REFUND,
    ClockHistory,
    ClockKind,
    ClockPaused,
    ClockPolicy,
    ClockStatus,
    ClockUnit,
    ExtensionNotAllowed,
    InvalidClockHistory,
    InvalidClockPolicy,
    Pause,
    PauseNotAllowed,
    PauseReason,
    check_extension,
    check_pause,
    due_at,
    elapsed,
    policy_for,
    state,
    total_target,
    warning_times,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
CHINA = china_calendar(range(2024, 2031))
ACK, RESOLUTION = DEFAULT_POLICIES
THREE_WORKING_DAYS = ClockPolicy(ClockKind.RESOLUTION, 3, ClockUnit.WORKING_DAYS)
FRIDAY_5PM = datetime(2026, 3, 6, 17, tzinfo=SHANGHAI)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def paused(start: datetime, *pauses: tuple[datetime, datetime | None]) -> ClockHistory:
    return ClockHistory(start, pauses=tuple(pauses))


class TestDefaultPolicies:
    def test_resolution_is_due_three_calendar_days_after_registration(self) -> None:
        assert RESOLUTION.kind is ClockKind.RESOLUTION
        assert due_at(RESOLUTION, ClockHistory(FRIDAY_5PM), CHINA) == FRIDAY_5PM + 72 * HOUR

    def test_calendar_days_ignore_holidays(self) -> None:
        start = local(2026, 9, 30, 10)
        assert due_at(RESOLUTION, ClockHistory(start), CHINA) == local(2026, 10, 3, 10)

    def test_acknowledgement_is_due_at_registration_and_met_when_stopped_then(self) -> None:
        history = ClockHistory(FRIDAY_5PM).stopped(FRIDAY_5PM)
        assert ACK.kind is ClockKind.ACKNOWLEDGEMENT
        assert due_at(ACK, history, CHINA) == FRIDAY_5PM
        read = state(ACK, history, CHINA, FRIDAY_5PM + HOUR)
        assert (read.status, read.met) == (ClockStatus.STOPPED, True)

    def test_unacknowledged_registration_is_breached_at_once(self) -> None:
        read = state(ACK, ClockHistory(FRIDAY_5PM), CHINA, FRIDAY_5PM)
        assert read.status is ClockStatus.BREACHED

    def test_acknowledgement_cannot_pause_or_extend(self) -> None:
        with pytest.raises(PauseNotAllowed):
            check_pause(ACK, ClockHistory(FRIDAY_5PM), "waiting_for_customer")
        with pytest.raises(ExtensionNotAllowed):
            check_extension(ACK, ClockHistory(FRIDAY_5PM), 1)

    def test_due_is_returned_in_utc(self) -> None:
        assert due_at(RESOLUTION, ClockHistory(FRIDAY_5PM), CHINA).tzinfo is UTC


class TestWorkingDayClock:
    def test_friday_5pm_plus_three_working_days_is_wednesday_midnight(self) -> None:
        due = due_at(THREE_WORKING_DAYS, ClockHistory(FRIDAY_5PM), CHINA)
        assert due == local(2026, 3, 12)

    def test_spring_festival_registration(self) -> None:
        due = due_at(THREE_WORKING_DAYS, ClockHistory(local(2026, 2, 13, 10)), CHINA)
        assert due == local(2026, 2, 26)

    def test_pause_inside_a_working_day_moves_due_by_the_pause(self) -> None:
        history = paused(FRIDAY_5PM, (local(2026, 3, 10, 10), local(2026, 3, 10, 14)))
        assert due_at(THREE_WORKING_DAYS, history, CHINA) == local(2026, 3, 12, 4)

    def test_pause_over_the_weekend_moves_nothing(self) -> None:
        history = paused(FRIDAY_5PM, (local(2026, 3, 7, 9), local(2026, 3, 8, 20)))
        assert due_at(THREE_WORKING_DAYS, history, CHINA) == local(2026, 3, 12)

    def test_pause_on_the_registration_day_moves_nothing(self) -> None:
        history = paused(FRIDAY_5PM, (FRIDAY_5PM + HOUR, FRIDAY_5PM + 3 * HOUR))
        assert due_at(THREE_WORKING_DAYS, history, CHINA) == local(2026, 3, 12)

    def test_pause_across_a_holiday_counts_only_the_working_time(self) -> None:
        # From Wednesday 30 Sep 12:00 to Friday 9 Oct 00:00: half of the 30th and all of
        # the 8th are working time (1.5 days); 1-7 Oct are off.
        start = local(2026, 9, 28, 9)  # Monday
        plain = due_at(THREE_WORKING_DAYS, ClockHistory(start), CHINA)
        assert plain == local(2026, 10, 9)  # Tue 29, Wed 30, Thu 8 Oct
        history = paused(start, (local(2026, 9, 30, 12), local(2026, 10, 9)))
        # 1.5 days were left at the pause; Fri 9 and the make-up Sat 10 Oct, half of it.
        assert due_at(THREE_WORKING_DAYS, history, CHINA) == local(2026, 10, 10, 12)

    def test_deadline_past_the_data_is_flagged_estimated(self) -> None:
        history = ClockHistory(local(2026, 12, 30, 10))
        read = state(THREE_WORKING_DAYS, history, CHINA, local(2026, 12, 31))
        assert read.estimated
        assert read.due_at == local(2027, 1, 5)  # Thu 31, Fri 1 Jan (unknown), Mon 4

    def test_deadline_inside_the_data_is_not_estimated(self) -> None:
        assert not state(THREE_WORKING_DAYS, ClockHistory(FRIDAY_5PM), CHINA, FRIDAY_5PM).estimated

    def test_calendar_days_are_never_estimated(self) -> None:
        history = ClockHistory(local(2099, 1, 1))
        assert not state(RESOLUTION, history, CHINA, local(2099, 1, 2)).estimated


PAUSE_SETS = st.lists(
    st.tuples(st.integers(min_value=0, max_value=5000), st.integers(min_value=0, max_value=3000)),
    max_size=6,
)


def _pauses_from(start: datetime, gaps_and_lengths: list[tuple[int, int]]) -> tuple[Pause, ...]:
    """Pauses laid one after another: each a gap of running minutes, then paused minutes."""
    pauses: list[Pause] = []
    cursor = start
    for gap, length in gaps_and_lengths:
        begin = cursor + timedelta(minutes=gap)
        cursor = begin + timedelta(minutes=length)
        pauses.append((begin, cursor))
    return tuple(pauses)


class TestPausesMoveDueByExactlyThePause:
    @given(gaps_and_lengths=PAUSE_SETS, target=st.integers(min_value=0, max_value=5))
    def test_calendar_days(self, gaps_and_lengths: list[tuple[int, int]], target: int) -> None:
        policy = ClockPolicy(ClockKind.RESOLUTION, target, ClockUnit.CALENDAR_DAYS)
        pauses = _pauses_from(FRIDAY_5PM, gaps_and_lengths)
        expected = FRIDAY_5PM + target * DAY
        for begin, end in pauses:  # a pause that starts after the deadline moves nothing
            if begin < expected and end is not None:
                expected += end - begin
        assert due_at(policy, ClockHistory(FRIDAY_5PM, pauses), CHINA) == expected

    @given(gaps_and_lengths=PAUSE_SETS)
    def test_working_days_move_by_the_working_time_paused(
        self, gaps_and_lengths: list[tuple[int, int]]
    ) -> None:
        pauses = _pauses_from(FRIDAY_5PM, gaps_and_lengths)
        due = due_at(THREE_WORKING_DAYS, ClockHistory(FRIDAY_5PM, pauses), CHINA)
        origin = CHINA.count_from(FRIDAY_5PM)
        paused_time = sum(
            (CHINA.working_time(max(b, origin), max(min(e, due), origin)) for b, e in pauses if e),
            start=0,
        )
        assert CHINA.working_days_between(FRIDAY_5PM, due) == 3 + paused_time

    @given(gaps_and_lengths=PAUSE_SETS)
    def test_a_paused_clock_is_never_due_earlier(
        self, gaps_and_lengths: list[tuple[int, int]]
    ) -> None:
        pauses = _pauses_from(FRIDAY_5PM, gaps_and_lengths)
        for policy in (RESOLUTION, THREE_WORKING_DAYS):
            plain = due_at(policy, ClockHistory(FRIDAY_5PM), CHINA)
            assert due_at(policy, ClockHistory(FRIDAY_5PM, pauses), CHINA) >= plain


class TestPauseAtTheDeadline:
    def test_pause_starting_exactly_at_the_deadline_does_not_move_it(self) -> None:
        due = FRIDAY_5PM + 72 * HOUR
        history = paused(FRIDAY_5PM, (due, due + 5 * HOUR))
        assert due_at(RESOLUTION, history, CHINA) == due
        assert state(RESOLUTION, history, CHINA, due + HOUR).status is ClockStatus.BREACHED

    def test_working_day_pause_at_the_deadline_does_not_move_it(self) -> None:
        due = local(2026, 3, 12)
        history = paused(FRIDAY_5PM, (due, due + 30 * HOUR))
        assert due_at(THREE_WORKING_DAYS, history, CHINA) == due


class TestOpenPause:
    HISTORY = ClockHistory(FRIDAY_5PM).paused(FRIDAY_5PM + 10 * HOUR)

    def test_due_without_now_is_refused(self) -> None:
        with pytest.raises(ClockPaused):
            due_at(RESOLUTION, self.HISTORY, CHINA)
        with pytest.raises(ClockPaused):
            warning_times(RESOLUTION, self.HISTORY, CHINA)

    def test_due_with_now_is_as_if_resumed_now(self) -> None:
        now = FRIDAY_5PM + 30 * HOUR
        assert due_at(RESOLUTION, self.HISTORY, CHINA, now=now) == FRIDAY_5PM + 92 * HOUR

    def test_resumed_history_keeps_the_pause(self) -> None:
        history = self.HISTORY.resumed(FRIDAY_5PM + 30 * HOUR)
        assert due_at(RESOLUTION, history, CHINA) == FRIDAY_5PM + 92 * HOUR

    def test_stop_ends_an_open_pause(self) -> None:
        history = self.HISTORY.stopped(FRIDAY_5PM + 12 * HOUR)
        assert due_at(RESOLUTION, history, CHINA) == FRIDAY_5PM + 74 * HOUR


class TestExtensions:
    def test_extensions_add_to_the_target(self) -> None:
        history = ClockHistory(FRIDAY_5PM, extensions=(15, 30))
        assert total_target(REGULATED_DECISION, history) == 60
        assert due_at(REGULATED_DECISION, history, CHINA) == FRIDAY_5PM + 60 * DAY

    def test_regulated_decision_extends_to_thirty_then_sixty(self) -> None:
        history = ClockHistory(FRIDAY_5PM)
        assert check_extension(REGULATED_DECISION, history, 15) == 30
        history = history.extended(15)
        assert check_extension(REGULATED_DECISION, history, 30) == 60
        history = history.extended(30)
        with pytest.raises(ExtensionNotAllowed, match="further"):
            check_extension(REGULATED_DECISION, history, 1)

    def test_regulated_decision_refuses_an_off_step_extension(self) -> None:
        with pytest.raises(ExtensionNotAllowed, match="from 15 to 30"):
            check_extension(REGULATED_DECISION, ClockHistory(FRIDAY_5PM), 10)

    def test_unlimited_policy_takes_any_positive_extension(self) -> None:
        assert check_extension(RESOLUTION, ClockHistory(FRIDAY_5PM), 2) == 5
        with pytest.raises(ExtensionNotAllowed):
            check_extension(RESOLUTION, ClockHistory(FRIDAY_5PM), 0)

    def test_stopped_clock_cannot_be_extended(self) -> None:
        history = ClockHistory(FRIDAY_5PM).stopped(FRIDAY_5PM + HOUR)
        with pytest.raises(ExtensionNotAllowed, match="stopped"):
            check_extension(RESOLUTION, history, 1)

    def test_extension_in_working_days_skips_the_weekend(self) -> None:
        history = ClockHistory(FRIDAY_5PM, extensions=(2,))
        assert due_at(THREE_WORKING_DAYS, history, CHINA) == local(2026, 3, 14)  # end of Fri

    def test_extension_turns_a_breach_back_into_a_running_clock(self) -> None:
        now = FRIDAY_5PM + 80 * HOUR
        assert state(RESOLUTION, ClockHistory(FRIDAY_5PM), CHINA, now).status == "breached"
        extended = ClockHistory(FRIDAY_5PM, extensions=(1,))
        assert state(RESOLUTION, extended, CHINA, now).status == "running"


class TestWarnings:
    def test_default_warnings_at_half_and_four_fifths(self) -> None:
        times = warning_times(RESOLUTION, ClockHistory(FRIDAY_5PM), CHINA)
        assert times == [(0.5, FRIDAY_5PM + 36 * HOUR), (0.8, FRIDAY_5PM + 57.6 * HOUR)]

    def test_levels_are_ordered_whatever_order_they_are_given_in(self) -> None:
        policy = ClockPolicy(ClockKind.REFUND, 7, ClockUnit.CALENDAR_DAYS, warnings=(0.9, 0.25))
        times = warning_times(policy, ClockHistory(FRIDAY_5PM), CHINA)
        assert [level for level, _ in times] == [0.25, 0.9]

    @given(gaps_and_lengths=PAUSE_SETS)
    def test_warnings_come_in_order_and_before_the_deadline(
        self, gaps_and_lengths: list[tuple[int, int]]
    ) -> None:
        pauses = _pauses_from(FRIDAY_5PM, gaps_and_lengths)
        policy = ClockPolicy(
            ClockKind.RESOLUTION, 3, ClockUnit.WORKING_DAYS, warnings=(0.2, 0.5, 0.8)
        )
        history = ClockHistory(FRIDAY_5PM, pauses)
        moments = [at for _, at in warning_times(policy, history, CHINA)]
        assert moments == sorted(moments)
        assert moments[0] > FRIDAY_5PM
        assert moments[-1] < due_at(policy, history, CHINA)

    def test_working_day_half_way_is_noon_of_the_second_day(self) -> None:
        times = dict(warning_times(THREE_WORKING_DAYS, ClockHistory(FRIDAY_5PM), CHINA))
        assert times[0.5] == local(2026, 3, 10, 12)

    def test_a_pause_before_a_warning_moves_it(self) -> None:
        history = paused(FRIDAY_5PM, (FRIDAY_5PM + HOUR, FRIDAY_5PM + 5 * HOUR))
        times = dict(warning_times(RESOLUTION, history, CHINA))
        assert times[0.5] == FRIDAY_5PM + 40 * HOUR


class TestState:
    def test_running_with_elapsed_fraction(self) -> None:
        read = state(RESOLUTION, ClockHistory(FRIDAY_5PM), CHINA, FRIDAY_5PM + 18 * HOUR)
        assert read.status is ClockStatus.RUNNING
        assert read.elapsed == pytest.approx(0.25)
        assert read.warnings_reached == ()
        assert read.met is None

    def test_warnings_reached_by_now(self) -> None:
        read = state(RESOLUTION, ClockHistory(FRIDAY_5PM), CHINA, FRIDAY_5PM + 60 * HOUR)
        assert read.warnings_reached == (0.5, 0.8)
        read = state(RESOLUTION, ClockHistory(FRIDAY_5PM), CHINA, FRIDAY_5PM + 36 * HOUR)
        assert read.warnings_reached == (0.5,)

    def test_paused_clock_does_not_advance(self) -> None:
        history = ClockHistory(FRIDAY_5PM).paused(FRIDAY_5PM + 18 * HOUR)
        read = state(RESOLUTION, history, CHINA, FRIDAY_5PM + 100 * HOUR)
        assert read.status is ClockStatus.PAUSED
        assert read.elapsed == pytest.approx(0.25)
        assert read.due_at == FRIDAY_5PM + 154 * HOUR

    def test_breached_at_the_deadline_exactly(self) -> None:
        due = FRIDAY_5PM + 72 * HOUR
        history = ClockHistory(FRIDAY_5PM)
        assert state(RESOLUTION, history, CHINA, due - timedelta(microseconds=1)).status == (
            ClockStatus.RUNNING
        )
        read = state(RESOLUTION, history, CHINA, due)
        assert read.status is ClockStatus.BREACHED
        assert read.elapsed == 1.0

    def test_pausing_after_a_breach_stays_breached(self) -> None:
        history = ClockHistory(FRIDAY_5PM).paused(FRIDAY_5PM + 80 * HOUR)
        read = state(RESOLUTION, history, CHINA, FRIDAY_5PM + 90 * HOUR)
        assert read.status is ClockStatus.BREACHED
        assert read.elapsed == pytest.approx(80 / 72)

    def test_stopped_in_time_is_met(self) -> None:
        history = ClockHistory(FRIDAY_5PM).stopped(FRIDAY_5PM + 72 * HOUR)
        read = state(RESOLUTION, history, CHINA, FRIDAY_5PM + 200 * HOUR)
        assert (read.status, read.met) == (ClockStatus.STOPPED, True)
        assert read.elapsed == 1.0

    def test_stopped_late_is_not_met(self) -> None:
        history = ClockHistory(FRIDAY_5PM).stopped(FRIDAY_5PM + 73 * HOUR)
        read = state(RESOLUTION, history, CHINA, FRIDAY_5PM + 200 * HOUR)
        assert (read.status, read.met) == (ClockStatus.STOPPED, False)

    def test_stop_in_the_future_of_now_is_not_yet_a_stop(self) -> None:
        history = ClockHistory(FRIDAY_5PM).stopped(FRIDAY_5PM + 20 * HOUR)
        read = state(RESOLUTION, history, CHINA, FRIDAY_5PM + 10 * HOUR)
        assert (read.status, read.met) == (ClockStatus.RUNNING, None)

    def test_warnings_after_the_stop_are_not_reached(self) -> None:
        history = ClockHistory(FRIDAY_5PM).stopped(FRIDAY_5PM + 40 * HOUR)
        read = state(RESOLUTION, history, CHINA, FRIDAY_5PM + 200 * HOUR)
        assert read.warnings_reached == (0.5,)

    def test_closed_pause_covering_now_reads_paused(self) -> None:
        history = paused(FRIDAY_5PM, (FRIDAY_5PM + HOUR, FRIDAY_5PM + 5 * HOUR))
        read = state(RESOLUTION, history, CHINA, FRIDAY_5PM + 2 * HOUR)
        assert read.status is ClockStatus.PAUSED

    def test_before_the_start_nothing_has_elapsed(self) -> None:
        read = state(RESOLUTION, ClockHistory(FRIDAY_5PM), CHINA, FRIDAY_5PM - HOUR)
        assert (read.status, read.elapsed) == (ClockStatus.RUNNING, 0.0)

    def test_elapsed_in_working_days_counts_only_working_time(self) -> None:
        history = ClockHistory(FRIDAY_5PM)
        assert elapsed(THREE_WORKING_DAYS, history, CHINA, local(2026, 3, 9)) == 0
        assert elapsed(THREE_WORKING_DAYS, history, CHINA, local(2026, 3, 9, 18)) == 0.75

    def test_naive_now_is_refused(self) -> None:
        with pytest.raises(InvalidClockHistory, match="naive"):
            state(RESOLUTION, ClockHistory(FRIDAY_5PM), CHINA, datetime(2026, 3, 7))


class TestPolicyChange:
    def test_same_history_under_a_new_policy_gives_the_new_deadline(self) -> None:
        history = paused(FRIDAY_5PM, (local(2026, 3, 9, 10), local(2026, 3, 9, 16)))
        assert due_at(RESOLUTION, history, CHINA) == FRIDAY_5PM + 78 * HOUR
        five_working_days = ClockPolicy(ClockKind.RESOLUTION, 5, ClockUnit.WORKING_DAYS)
        # Mon-Fri count, less the six hours paused on Monday, which spill over the weekend.
        assert due_at(five_working_days, history, CHINA) == local(2026, 3, 16, 6)

    def test_a_breached_clock_is_running_again_under_a_longer_policy(self) -> None:
        now = local(2026, 3, 10, 9)
        history = ClockHistory(FRIDAY_5PM)
        one_day = ClockPolicy(ClockKind.RESOLUTION, 1, ClockUnit.CALENDAR_DAYS)
        assert state(one_day, history, CHINA, now).status is ClockStatus.BREACHED
        assert state(THREE_WORKING_DAYS, history, CHINA, now).status is ClockStatus.RUNNING


class TestPolicyFor:
    BASE = ClockPolicy(ClockKind.FIRST_REPLY, 24, ClockUnit.HOURS)
    CARDS = ClockPolicy(ClockKind.FIRST_REPLY, 8, ClockUnit.HOURS, category="credit_card")
    VIP = ClockPolicy(ClockKind.FIRST_REPLY, 4, ClockUnit.HOURS, tier="vip")
    VIP_PHONE = ClockPolicy(ClockKind.FIRST_REPLY, 2, ClockUnit.HOURS, tier="vip", channel="phone")
    VIP_CARDS = ClockPolicy(
        ClockKind.FIRST_REPLY, 1, ClockUnit.HOURS, category="credit_card", tier="vip"
    )
    LOANS = ClockPolicy(ClockKind.FIRST_REPLY, 6, ClockUnit.HOURS, category="loans")
    ALL = (*DEFAULT_POLICIES, BASE, CARDS, VIP, VIP_PHONE, LOANS, VIP_CARDS, SEVEN_DAY_REFUND)

    def test_unscoped_policies_apply_to_everyone(self) -> None:
        chosen = policy_for(None, None, None, self.ALL)
        assert chosen[ClockKind.RESOLUTION] is RESOLUTION
        assert chosen[ClockKind.ACKNOWLEDGEMENT] is ACK
        assert chosen[ClockKind.FIRST_REPLY] is self.BASE
        assert chosen[ClockKind.REFUND] is SEVEN_DAY_REFUND

    def test_more_scoping_fields_win(self) -> None:
        assert policy_for("credit_card", "vip", "web", self.ALL)[ClockKind.FIRST_REPLY] is (
            self.VIP_CARDS
        )
        assert policy_for("payment", "vip", "phone", self.ALL)[ClockKind.FIRST_REPLY] is (
            self.VIP_PHONE
        )

    def test_category_outranks_tier_at_equal_count(self) -> None:
        chosen = policy_for("credit_card", "vip", "web", (self.VIP, self.CARDS))
        assert chosen[ClockKind.FIRST_REPLY] is self.CARDS

    def test_non_matching_scopes_are_ignored(self) -> None:
        chosen = policy_for("payment", "regular", "web", self.ALL)
        assert chosen[ClockKind.FIRST_REPLY] is self.BASE

    def test_any_of_several_categories_matches_and_ties_go_to_the_first(self) -> None:
        chosen = policy_for(["loans", "credit_card"], None, None, self.ALL)
        assert chosen[ClockKind.FIRST_REPLY] is self.CARDS

    def test_kinds_without_a_policy_are_absent(self) -> None:
        assert ClockKind.DECISION not in policy_for(None, None, None, self.ALL)


class TestPauseRules:
    def test_listed_reason_is_accepted(self) -> None:
        reason = check_pause(RESOLUTION, ClockHistory(FRIDAY_5PM), "external_appraisal")
        assert reason is PauseReason.external_appraisal

    def test_unlisted_reason_is_refused_naming_the_listed_ones(self) -> None:
        listed = ", ".join(sorted(PauseReason))
        assert "waiting_for_customer" in listed
        with pytest.raises(PauseNotAllowed, match=listed):
            check_pause(RESOLUTION, ClockHistory(FRIDAY_5PM), "lunch")

    def test_reason_outside_the_policy_is_refused(self) -> None:
        policy = ClockPolicy(
            ClockKind.REFUND,
            7,
            ClockUnit.CALENDAR_DAYS,
            pause_reasons=frozenset({PauseReason.waiting_for_customer}),
        )
        with pytest.raises(PauseNotAllowed, match="external_appraisal"):
            check_pause(policy, ClockHistory(FRIDAY_5PM), "external_appraisal")

    def test_paused_or_stopped_clock_cannot_pause_again(self) -> None:
        history = ClockHistory(FRIDAY_5PM).paused(FRIDAY_5PM + HOUR)
        with pytest.raises(PauseNotAllowed):
            check_pause(RESOLUTION, history, "waiting_for_customer")
        with pytest.raises(PauseNotAllowed):
            history.paused(FRIDAY_5PM + 2 * HOUR)
        with pytest.raises(PauseNotAllowed):
            ClockHistory(FRIDAY_5PM).stopped(FRIDAY_5PM).paused(FRIDAY_5PM)


class TestHistoryValidation:
    @pytest.mark.parametrize(
        ("pauses", "stopped_at", "message"),
        [
            (((FRIDAY_5PM - HOUR, FRIDAY_5PM),), None, "overlaps"),
            (((FRIDAY_5PM + 2 * HOUR, FRIDAY_5PM + HOUR),), None, "ends before"),
            (
                ((FRIDAY_5PM, FRIDAY_5PM + 2 * HOUR), (FRIDAY_5PM + HOUR, None)),
                None,
                "overlaps",
            ),
            (((FRIDAY_5PM, None), (FRIDAY_5PM + HOUR, None)), None, "not ended"),
            (((FRIDAY_5PM + 5 * HOUR, None),), FRIDAY_5PM + HOUR, "after the clock stopped"),
            ((), FRIDAY_5PM - HOUR, "before it starts"),
            (((datetime(2026, 3, 7), None),), None, "naive"),
        ],
    )
    def test_impossible_histories_are_refused(
        self, pauses: tuple[Pause, ...], stopped_at: datetime | None, message: str
    ) -> None:
        with pytest.raises(InvalidClockHistory, match=message):
            ClockHistory(FRIDAY_5PM, pauses, stopped_at=stopped_at)

    def test_non_positive_extension_is_refused(self) -> None:
        with pytest.raises(InvalidClockHistory):
            ClockHistory(FRIDAY_5PM, extensions=(0,))

    def test_resume_without_a_pause_and_stopping_twice_are_refused(self) -> None:
        with pytest.raises(InvalidClockHistory):
            ClockHistory(FRIDAY_5PM).resumed(FRIDAY_5PM)
        with pytest.raises(InvalidClockHistory):
            ClockHistory(FRIDAY_5PM).stopped(FRIDAY_5PM).stopped(FRIDAY_5PM)

    def test_moments_are_normalised_to_utc(self) -> None:
        history = ClockHistory(FRIDAY_5PM).paused(FRIDAY_5PM + HOUR)
        assert history.started_at.tzinfo is UTC
        assert history.pauses[0][0].tzinfo is UTC


class TestPolicyValidation:
    def test_unit_accepts_its_string_value(self) -> None:
        policy = ClockPolicy(ClockKind.REFUND, 7, "working_days")  # type: ignore[arg-type]
        assert policy.unit is ClockUnit.WORKING_DAYS

    @pytest.mark.parametrize(
        "build",
        [
            lambda: ClockPolicy(ClockKind.REFUND, -1, ClockUnit.HOURS),
            lambda: ClockPolicy(ClockKind.REFUND, 7, ClockUnit.HOURS, warnings=(1.0,)),
            lambda: ClockPolicy(ClockKind.REFUND, 7, ClockUnit.HOURS, warnings=(0.0,)),
            lambda: ClockPolicy(ClockKind.REFUND, 7, ClockUnit.HOURS, extendable_to=(30, 20)),
            lambda: ClockPolicy(ClockKind.REFUND, 7, ClockUnit.HOURS, extendable_to=(7,)),
        ],
    )
    def test_impossible_policies_are_refused(self, build: object) -> None:
        with pytest.raises(InvalidClockPolicy):
            build()  # type: ignore[operator]
