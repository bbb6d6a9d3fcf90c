"""The complaint reports' figures from plain records (``app.complaints.report_figures``):
nearest ranks, outcomes, every formula against hand-computed values, local periods and the
root-cause counts. No database: each complaint is a ``ComplaintRow`` written here."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.complaints.lifecycle import ComplaintStatus
from app.complaints.report_figures import (
    MEDIAN,
    OUTCOMES,
    P90,
    ComplaintRow,
    Dimension,
    Outcome,
    Period,
    RootCause,
    RootDimension,
    Tally,
    Window,
    figures,
    nearest_rank,
    outcome_of,
    period_end,
    period_start,
    rank,
    root_causes,
    statuses,
    summarise,
    tally,
)

S = ComplaintStatus
SHANGHAI = ZoneInfo("Asia/Shanghai")
START = datetime(2030, 3, 3, 17, 0, tzinfo=UTC)  # Monday 4 March, 01:00 in Shanghai
HOUR = timedelta(hours=1)
WEEK_2 = datetime(2030, 3, 11, tzinfo=SHANGHAI)
WEEK_3 = datetime(2030, 3, 18, tzinfo=SHANGHAI)


def at(hours: float) -> datetime:
    return START + hours * HOUR


def row(hours: float = 0, status: ComplaintStatus = S.registered, **kw: Any) -> ComplaintRow:
    return ComplaintRow(registered_at=at(hours), status=status, due_at=at(hours + 72), **kw)


def resolved(after_h: float, due_h: float = 72, **kw: Any) -> ComplaintRow:
    """Registered at 0, resolved ``after_h`` hours later, due at ``due_h``."""
    return replace(
        row(status=S.resolved, resolved_at=at(after_h), ever_resolved=True, **kw), due_at=at(due_h)
    )


class TestNearestRank:
    @pytest.mark.parametrize(
        ("p", "n", "expected"),
        [
            (MEDIAN, 0, 0),
            (MEDIAN, 1, 1),
            (MEDIAN, 2, 1),
            (MEDIAN, 3, 2),
            (MEDIAN, 4, 2),
            (MEDIAN, 5, 3),
            (P90, 1, 1),
            (P90, 9, 9),
            (P90, 10, 9),
            (P90, 11, 10),
            (P90, 20, 18),
            (P90, 70, 63),  # 0.9 * 70 is 63.00000000000001 in floating point
            (Fraction(1), 7, 7),
        ],
    )
    def test_the_rank_is_the_ceiling_of_p_times_n(self, p: Fraction, n: int, expected: int) -> None:
        assert rank(p, n) == expected

    def test_no_values_have_no_percentile(self) -> None:
        assert (nearest_rank([], MEDIAN), nearest_rank([], P90)) == (None, None)

    def test_one_value_is_every_percentile(self) -> None:
        assert (nearest_rank([7.0], MEDIAN), nearest_rank([7.0], P90)) == (7.0, 7.0)

    def test_an_even_count_takes_the_lower_middle_value_never_a_mean(self) -> None:
        assert nearest_rank([1.0, 2.0, 10.0, 20.0], MEDIAN) == 2.0

    def test_ties_are_values_like_any_other(self) -> None:
        values = [1.0, 2.0, 2.0, 2.0, 5.0]
        assert (nearest_rank(values, MEDIAN), nearest_rank(values, P90)) == (2.0, 5.0)

    def test_p90_of_ten_is_the_ninth_value(self) -> None:
        values = [float(v) for v in range(1, 11)]
        assert nearest_rank(values, P90) == 9.0
        assert nearest_rank([*values, 11.0], P90) == 10.0


class TestOutcomes:
    def test_every_status_but_archived_has_one_outcome(self) -> None:
        assert set(OUTCOMES) == set(ComplaintStatus) - {S.archived}
        listed = sorted(s for o in Outcome for s in statuses(o))
        assert listed == sorted(s.value for s in OUTCOMES)

    @pytest.mark.parametrize(
        ("status", "archived_from", "expected"),
        [
            (S.registered, None, Outcome.open),
            (S.paused, None, Outcome.open),
            (S.resolved, None, Outcome.resolved),
            (S.under_review, None, Outcome.resolved),
            (S.withdrawn, None, Outcome.withdrawn),
            (S.rejected, None, Outcome.rejected),
            (S.archived, S.closed, Outcome.resolved),
            (S.archived, S.confirmed, Outcome.resolved),
            (S.archived, S.withdrawn, Outcome.withdrawn),
            (S.archived, S.rejected, Outcome.rejected),
            (S.archived, None, None),
        ],
    )
    def test_an_archived_complaint_counts_as_what_it_was_archived_from(
        self, status: ComplaintStatus, archived_from: ComplaintStatus | None, expected: Any
    ) -> None:
        assert outcome_of(row(status=status, archived_from=archived_from)) == expected


class TestFigures:
    def test_an_empty_group_counts_nothing_and_has_no_rates(self) -> None:
        shown = figures(tally([]))
        assert shown == figures(Tally())
        assert (shown.registered, shown.breached, shown.csat_count) == (0, 0, 0)
        rates = (
            shown.sla_compliance_pct,
            shown.median_hours_to_resolve,
            shown.p90_hours_to_resolve,
            shown.reopen_rate_pct,
            shown.review_rate_pct,
            shown.csat_average,
        )
        assert rates == (None,) * 6

    def test_one_complaint_resolved_in_time(self) -> None:
        shown = figures(tally([resolved(10, csat=(4,), closed=True)]))
        assert (shown.registered, shown.resolved, shown.resolved_within_due) == (1, 1, 1)
        assert (shown.sla_compliance_pct, shown.breached) == (100.0, 0)
        assert (shown.median_hours_to_resolve, shown.p90_hours_to_resolve) == (10.0, 10.0)
        assert (shown.reopen_rate_pct, shown.review_rate_pct) == (0.0, 0.0)
        assert (shown.csat_average, shown.csat_count) == (4.0, 1)

    def test_resolved_exactly_at_the_due_time_is_in_time(self) -> None:
        assert figures(tally([resolved(72)])).resolved_within_due == 1
        late = figures(tally([resolved(72 + 1 / 3600)]))
        assert (late.resolved_within_due, late.resolved_late, late.breached) == (0, 1, 1)

    def test_a_resolved_complaint_without_a_due_time_is_not_rated(self) -> None:
        shown = figures(tally([replace(resolved(10), due_at=None), resolved(80)]))
        assert (shown.resolved, shown.resolved_within_due, shown.resolved_late) == (2, 0, 1)
        assert shown.sla_compliance_pct == 0.0

    def test_the_outcomes_add_up_to_the_registrations(self) -> None:
        rows = [
            row(),
            row(status=S.paused),
            resolved(5),
            row(status=S.withdrawn),
            row(status=S.archived, archived_from=S.rejected),
        ]
        shown = figures(tally(rows))
        parts = (shown.open, shown.resolved, shown.withdrawn, shown.rejected)
        assert parts == (2, 1, 1, 1)
        assert sum(parts) == shown.registered

    def test_a_breach_on_record_counts_only_while_the_complaint_is_open(self) -> None:
        rows = [
            row(breach_on_record=True),  # open and past its deadline
            resolved(80, breach_on_record=True),  # counted as resolved late, once
            row(status=S.withdrawn, breach_on_record=True),  # no longer anyone's work
        ]
        shown = figures(tally(rows))
        assert (shown.open_overdue, shown.resolved_late, shown.breached) == (1, 1, 2)

    def test_hand_computed_group(self) -> None:
        """Six complaints: times 10, 20, 20, 40, 80 hours and one open; due at 72 h."""
        rows = [
            resolved(10, closed=True, csat=(5,)),
            resolved(20, closed=True, review_requested=True, csat=(1, 4)),
            resolved(20, reopened=True),
            resolved(40, closed=True),
            resolved(80, reopened=True, closed=True, csat=(3,)),
            row(ever_resolved=True, reopened=True, status=S.in_progress),
        ]
        shown = figures(tally(rows))
        assert (shown.registered, shown.resolved, shown.open) == (6, 5, 1)
        assert (shown.resolved_within_due, shown.resolved_late) == (4, 1)
        assert shown.sla_compliance_pct == 80.0  # 4 / 5
        assert shown.median_hours_to_resolve == 20.0  # rank ceil(2.5) = 3 of 10, 20, 20, 40, 80
        assert shown.p90_hours_to_resolve == 80.0  # rank ceil(4.5) = 5
        assert (shown.ever_resolved, shown.reopened, shown.reopen_rate_pct) == (6, 3, 50.0)
        assert (shown.closed, shown.review_requested, shown.review_rate_pct) == (4, 1, 25.0)
        assert (shown.csat_count, shown.csat_average) == (4, 3.25)  # (5 + 1 + 4 + 3) / 4

    def test_time_to_resolve_is_to_the_last_resolution(self) -> None:
        shown = figures(tally([resolved(30.5, reopened=True)]))
        assert shown.median_hours_to_resolve == 30.5


class TestPeriods:
    @pytest.mark.parametrize(
        ("period", "start", "end"),
        [
            (Period.day, datetime(2026, 12, 2, tzinfo=SHANGHAI), datetime(2026, 12, 3)),
            (Period.week, datetime(2026, 11, 30, tzinfo=SHANGHAI), datetime(2026, 12, 7)),
            (Period.month, datetime(2026, 12, 1, tzinfo=SHANGHAI), datetime(2027, 1, 1)),
        ],
    )
    def test_periods_are_local(self, period: Period, start: datetime, end: datetime) -> None:
        moment = datetime(2026, 12, 1, 17, 30, tzinfo=UTC)  # Wednesday 2 December, 01:30 local
        assert period_start(moment, period, SHANGHAI) == start
        assert period_end(start, period, SHANGHAI) == end.replace(tzinfo=SHANGHAI)

    def test_february_ends_on_the_first_of_march(self) -> None:
        feb = datetime(2028, 2, 1, tzinfo=SHANGHAI)
        assert period_end(feb, Period.month, SHANGHAI) == datetime(2028, 3, 1, tzinfo=SHANGHAI)

    def test_rows_are_cut_to_the_window_and_categories_count_in_each(self) -> None:
        window = Window(datetime(2030, 3, 6, tzinfo=SHANGHAI), WEEK_3, SHANGHAI)
        rows = [
            replace(row(60), categories=("payment", "card")),  # Wed 6 March, 13:00 local
            replace(row(170), categories=("payment",)),
            row(171),
        ]
        groups = summarise(rows, Dimension.category, Period.week, window)
        assert [(g.start, g.end, g.key, g.figures.registered) for g in groups] == [
            (window.start, WEEK_2, "card", 1),
            (window.start, WEEK_2, "payment", 1),
            (WEEK_2, WEEK_3, "payment", 1),
            (WEEK_2, WEEK_3, None, 1),
        ]
        whole = summarise(rows, None, None, window)
        assert [(g.start, g.end, g.key, g.figures.registered) for g in whole] == [
            (window.start, window.end, None, 3)
        ]


class TestRootCausesFromRows:
    def test_resolved_complaints_by_each_dimension_and_finding(self) -> None:
        rows = [
            resolved(
                1, categories=("payment",), branch="Pudong", responsible_unit="Cards", upheld=True
            ),
            resolved(1, categories=("payment", "fee"), branch="Pudong", upheld=False),
            resolved(1, branch="Jingan", responsible_unit="Cards"),
            row(categories=("payment",), branch="Pudong", upheld=True),  # open: not counted
        ]
        found = {(c.dimension, c.key): c for c in root_causes(rows)}
        assert found[RootDimension.all, None] == RootCause(RootDimension.all, None, 3, 1, 1, 1)
        assert found[RootDimension.category, "payment"].upheld_pct == 50.0
        assert found[RootDimension.category, None].resolved == 1
        assert found[RootDimension.branch, "Pudong"].resolved == 2
        cards = found[RootDimension.responsible_unit, "Cards"]
        assert (cards.resolved, cards.upheld, cards.upheld_unknown, cards.upheld_pct) == (
            2,
            1,
            1,
            100.0,
        )
        assert found[RootDimension.responsible_unit, None].upheld_pct == 0.0
