"""Table-driven tests of app/routing/figures.py and ``stats.window``: the interval and the formulas.

No database: every input is a plain record, every expectation worked out by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.routing import erlang
from app.routing.figures import (
    Interval,
    Live,
    Policy,
    Tally,
    Window,
    abandon_rate_pct,
    agent_counts,
    agents_needed,
    aligned_start,
    compute,
    live_figures,
    mean,
    occupancy_pct,
    service_level_formula,
    service_level_pct,
)
from app.routing.stats import InvalidWindow, window

NOW = datetime(2026, 11, 22, 10, 7, 30, 250_000, tzinfo=UTC)
SL = Policy(threshold_s=20, target_pct=80, counts_abandons=True, short_abandon_s=5)
SL_NO_ABANDONS = Policy(threshold_s=20, target_pct=80, counts_abandons=False, short_abandon_s=5)


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 11, 22, hour, minute, second, tzinfo=UTC)


class TestAlignedStart:
    @pytest.mark.parametrize(
        ("length", "start"),
        [
            pytest.param(timedelta(minutes=15), at(10, 0), id="15m"),
            pytest.param(timedelta(minutes=30), at(10, 0), id="30m"),
            pytest.param(timedelta(hours=1), at(10, 0), id="1h"),
            pytest.param(timedelta(days=1), at(0, 0), id="1d-utc-midnight"),
            pytest.param(timedelta(minutes=5), at(10, 5), id="5m"),
        ],
    )
    def test_start_is_the_last_boundary_at_or_before_now(
        self, length: timedelta, start: datetime
    ) -> None:
        assert aligned_start(NOW, length) == start

    def test_now_on_a_boundary_starts_an_empty_interval(self) -> None:
        assert aligned_start(at(10, 15), timedelta(minutes=15)) == at(10, 15)

    def test_other_zones_align_in_utc(self) -> None:
        tokyo = NOW.astimezone(timezone(timedelta(hours=9)))
        assert aligned_start(tokyo, timedelta(days=1)) == at(0, 0)


class TestWindow:
    @pytest.mark.parametrize(
        ("interval", "name", "start"),
        [
            pytest.param(None, Interval.m15, at(10, 0), id="default-15m"),
            pytest.param(Interval.m15, Interval.m15, at(10, 0), id="15m"),
            pytest.param(Interval.m30, Interval.m30, at(10, 0), id="30m"),
            pytest.param(Interval.h1, Interval.h1, at(10, 0), id="1h"),
            pytest.param(Interval.d1, Interval.d1, at(0, 0), id="1d"),
        ],
    )
    def test_named_interval_runs_from_its_aligned_start_until_now(
        self, interval: Interval | None, name: Interval, start: datetime
    ) -> None:
        found = window(interval=interval, start=None, end=None, now=NOW)
        assert found == Window(name, start, NOW)

    @pytest.mark.parametrize(
        ("start", "end", "expected"),
        [
            pytest.param(at(9), None, Window(None, at(9), NOW), id="from-only-until-now"),
            pytest.param(at(9), at(10), Window(None, at(9), at(10)), id="from-to"),
            pytest.param(at(9), at(23), Window(None, at(9), NOW), id="to-cut-at-now"),
            pytest.param(
                datetime(2026, 11, 22, 9),
                datetime(2026, 11, 22, 10),
                Window(None, at(9), at(10)),
                id="naive-is-utc",
            ),
        ],
    )
    def test_explicit_interval_is_from_to_cut_at_now(
        self, start: datetime, end: datetime | None, expected: Window
    ) -> None:
        assert window(interval=None, start=start, end=end, now=NOW) == expected

    @pytest.mark.parametrize(
        ("interval", "start", "end", "param"),
        [
            pytest.param(None, None, at(9), "from", id="to-without-from"),
            pytest.param(Interval.h1, at(9), None, "interval", id="interval-and-from"),
            pytest.param(None, at(10), at(10), "to", id="empty"),
            pytest.param(None, at(10), at(9), "to", id="reversed"),
            pytest.param(None, NOW, None, "from", id="from-now"),
            pytest.param(None, at(23), None, "from", id="from-future"),
        ],
    )
    def test_impossible_interval_names_the_parameter(
        self, interval: Interval | None, start: datetime | None, end: datetime | None, param: str
    ) -> None:
        with pytest.raises(InvalidWindow) as raised:
            window(interval=interval, start=start, end=end, now=NOW)
        assert raised.value.extra == {"field": param}
        assert raised.value.detail.startswith(f"{param}: ")
        assert raised.value.status_code == 422

    def test_seconds_is_the_length_so_far(self) -> None:
        assert Window(Interval.m15, at(10), at(10, 7, 30)).seconds == 450.0


class TestServiceLevel:
    @pytest.mark.parametrize(
        ("tally", "policy", "pct"),
        [
            pytest.param(
                Tally(answered=2, answered_within=2, abandoned=2, short_abandoned=1),
                SL,
                66.7,
                id="long-abandon-counts-as-missed",
            ),
            pytest.param(
                Tally(answered=2, answered_within=2, abandoned=2, short_abandoned=1),
                SL_NO_ABANDONS,
                100.0,
                id="abandons-ignored",
            ),
            pytest.param(
                Tally(answered=4, answered_within=3, abandoned=1, short_abandoned=1),
                SL,
                75.0,
                id="short-abandon-never-counts",
            ),
            pytest.param(Tally(answered=3, answered_within=0), SL, 0.0, id="none-within"),
            pytest.param(Tally(abandoned=1), SL, 0.0, id="only-a-long-abandon"),
            pytest.param(Tally(abandoned=1, short_abandoned=1), SL, None, id="only-short"),
            pytest.param(Tally(abandoned=1), SL_NO_ABANDONS, None, id="nothing-answered"),
            pytest.param(Tally(), SL, None, id="empty"),
        ],
    )
    def test_answered_within_over_answered_plus_counted_abandons(
        self, tally: Tally, policy: Policy, pct: float | None
    ) -> None:
        assert service_level_pct(tally, policy) == pct

    @pytest.mark.parametrize(
        ("policy", "formula"),
        [
            pytest.param(SL, "answered within 20s / (answered + abandoned after 5s)", id="counts"),
            pytest.param(SL_NO_ABANDONS, "answered within 20s / answered", id="ignores"),
            pytest.param(
                Policy(threshold_s=2.5, target_pct=90, counts_abandons=True, short_abandon_s=0),
                "answered within 2.5s / (answered + abandoned after 0s)",
                id="fractions-and-zero",
            ),
        ],
    )
    def test_formula_is_stated_with_the_queues_numbers(self, policy: Policy, formula: str) -> None:
        assert service_level_formula(policy) == formula


class TestRates:
    @pytest.mark.parametrize(
        ("total", "count", "expected"),
        [(0.0, 0, None), (3.0, 2, 1.5), (1.0, 3, 0.333), (0.0, 4, 0.0)],
    )
    def test_mean_is_rounded_to_milliseconds_and_null_without_samples(
        self, total: float, count: int, expected: float | None
    ) -> None:
        assert mean(total, count) == expected

    @pytest.mark.parametrize(
        ("tally", "pct"),
        [
            pytest.param(Tally(offered=5, abandoned=2, short_abandoned=1), 25.0, id="short-apart"),
            pytest.param(Tally(offered=4, abandoned=1), 25.0, id="one-long"),
            pytest.param(Tally(offered=3), 0.0, id="none"),
            pytest.param(Tally(offered=1, abandoned=1, short_abandoned=1), None, id="all-short"),
            pytest.param(Tally(offered=0, abandoned=1, short_abandoned=1), None, id="negative"),
            pytest.param(Tally(), None, id="empty"),
        ],
    )
    def test_abandon_rate_sets_short_abandons_apart(self, tally: Tally, pct: float | None) -> None:
        assert abandon_rate_pct(tally) == pct

    @pytest.mark.parametrize(
        ("work_s", "staffed", "seconds", "pct"),
        [
            pytest.param(450.0, 2, 900.0, 25.0, id="quarter"),
            pytest.param(0.0, 1, 900.0, 0.0, id="idle"),
            pytest.param(2000.0, 1, 900.0, 100.0, id="capped"),
            pytest.param(100.0, 0, 900.0, None, id="nobody-staffed"),
            pytest.param(100.0, 3, 0.0, None, id="empty-interval"),
        ],
    )
    def test_occupancy_is_work_over_staffed_time(
        self, work_s: float, staffed: int, seconds: float, pct: float | None
    ) -> None:
        assert occupancy_pct(work_s, staffed, seconds) == pct

    @pytest.mark.parametrize(
        ("offered", "seconds", "aht", "expected"),
        [
            pytest.param(100, 1800.0, 180.0, 14, id="textbook-10-erlangs"),
            pytest.param(0, 900.0, 180.0, 0, id="no-traffic"),
            pytest.param(5, 900.0, None, None, id="no-aht"),
            pytest.param(5, 900.0, 0.0, None, id="zero-aht"),
            pytest.param(5, 0.0, 180.0, None, id="empty-interval"),
        ],
    )
    def test_erlang_agents_needed_at_the_intervals_rate(
        self, offered: int, seconds: float, aht: float | None, expected: int | None
    ) -> None:
        assert agents_needed(offered, seconds, aht, SL) == expected

    def test_erlang_uses_the_queues_threshold_and_target(self) -> None:
        strict = Policy(threshold_s=10, target_pct=95, counts_abandons=True, short_abandon_s=5)
        expected = erlang.agents_needed(100 / 1800, 180.0, 10, 95)
        assert agents_needed(100, 1800.0, 180.0, strict) == expected
        assert expected is not None
        assert expected > 14


class TestAgentCounts:
    @pytest.mark.parametrize(
        ("agents", "states", "statuses"),
        [
            pytest.param({}, (0, 0, 0, 0), (0, 0, 0), id="none"),
            pytest.param(
                {("available", "idle"): 2, ("available", "busy"): 1, ("away", "wrap_up"): 1},
                (2, 0, 1, 1),
                (3, 1, 0),
                id="mixed",
            ),
            pytest.param(
                {("offline", "idle"): 4, ("available", "offered"): 1},
                (0, 1, 0, 0),
                (1, 0, 4),
                id="offline-have-no-state",
            ),
        ],
    )
    def test_every_agent_by_status_and_signed_in_ones_by_state(
        self,
        agents: Mapping[tuple[str, str], int],
        states: tuple[int, int, int, int],
        statuses: tuple[int, int, int],
    ) -> None:
        counts = agent_counts(agents)
        by_state = counts.by_state
        assert (by_state.idle, by_state.offered, by_state.busy, by_state.wrap_up) == states
        by_status = counts.by_status
        assert (by_status.available, by_status.away, by_status.offline) == statuses
        assert counts.total == sum(statuses)


class TestLive:
    @pytest.mark.parametrize(
        ("oldest", "longest"),
        [
            pytest.param(None, 0.0, id="nobody-waits"),
            pytest.param(NOW - timedelta(seconds=42.5), 42.5, id="oldest"),
            pytest.param(NOW + timedelta(seconds=1), 0.0, id="clock-skew-never-negative"),
        ],
    )
    def test_longest_wait_is_from_the_oldest_enqueue_time(
        self, oldest: datetime | None, longest: float
    ) -> None:
        figures = live_figures(Live(waiting=3, oldest_enqueued_at=oldest), NOW)
        assert (figures.waiting, figures.longest_wait_s) == (3, longest)


class TestCompute:
    def test_known_interval_gives_every_figure(self) -> None:
        span = Window(Interval.m15, at(10), at(10, 7, 30))  # 450 s
        tally = Tally(
            offered=10,
            answered=6,
            answered_within=5,
            abandoned=3,
            short_abandoned=1,
            timed_out=1,
            transferred_out=2,
            wait_s_total=60.0,
            completed=4,
            work_s_total=540.0,
        )
        live = Live(
            waiting=2,
            oldest_enqueued_at=at(10, 7),
            agents={("available", "busy"): 2, ("away", "idle"): 1},
        )
        stats = compute(
            queue_id=7,
            queue_name="cards",
            policy=SL,
            span=span,
            live=live,
            tally=tally,
            now=span.end,
        )
        body = stats.model_dump(mode="json", by_alias=True)
        assert body["live"]["longest_wait_s"] == 30.0
        assert body["live"]["agents"]["total"] == 3
        figures = body["interval"]
        assert (figures["from"], figures["to"], figures["name"]) == (
            "2026-11-22T10:00:00Z",
            "2026-11-22T10:07:30Z",
            "15m",
        )
        assert figures["length_s"] == 450.0
        assert figures["service_level_pct"] == 62.5  # 5 / (6 + 2)
        assert figures["service_level"]["pct"] == 62.5
        assert figures["asa_s"] == 10.0
        assert figures["aht_s"] == 135.0
        assert figures["abandon_rate_pct"] == 22.2  # 2 / (10 - 1)
        assert figures["occupancy_pct"] == 60.0  # 540 / (2 available x 450)
        assert figures["erlang_agents_needed"] == erlang.agents_needed(10 / 450, 135.0, 20, 80)
        assert (figures["timed_out"], figures["transferred_out"]) == (1, 2)

    def test_explicit_interval_has_no_name(self) -> None:
        span = Window(None, at(9), at(10))
        stats = compute(
            queue_id=1, queue_name="q", policy=SL, span=span, live=Live(), tally=Tally(), now=NOW
        )
        assert stats.interval.name is None
        assert stats.interval.erlang_agents_needed is None
