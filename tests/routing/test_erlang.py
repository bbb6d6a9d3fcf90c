"""Tests for Erlang C staffing (app/routing/erlang.py).

The reference below is the textbook factorial formula evaluated exactly with fractions: it
shares no code and no algorithm with the module (which uses the Erlang B recursion in floats),
so agreement is evidence, not tautology.
"""

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.routing.erlang import agents_needed, asa, erlang_c, service_level

# Hypothesis must not write an example database into the shared tree.
PROPERTY = settings(database=None, deadline=None, max_examples=200)

# The textbook case: 100 calls per 30 minutes, 3-minute handle time → 10 erlangs;
# answer 80 % within 20 seconds.
RATE = 100 / 1800
AHT = 180.0
THRESHOLD = 20.0
TARGET = 80.0


def exact_erlang_c(agents: int, traffic: Fraction) -> Fraction:
    """Erlang C by the factorial formula, in exact arithmetic (agents > traffic > 0)."""
    top = traffic**agents / math.factorial(agents) * agents / (agents - traffic)
    below = sum((traffic**k / math.factorial(k) for k in range(agents)), Fraction(0))
    return top / (below + top)


def exact_service_level(agents: int, rate: float, aht: float, threshold: float) -> float:
    traffic = Fraction(rate) * Fraction(aht)
    if agents <= traffic:
        return 0.0
    waiting = float(exact_erlang_c(agents, traffic))
    return 1.0 - waiting * math.exp(-float(agents - traffic) * threshold / aht)


def exact_agents_needed(rate: float, aht: float, threshold: float, target_pct: float) -> int:
    agents = 1
    while exact_service_level(agents, rate, aht, threshold) < target_pct / 100:
        agents += 1
    return agents


class TestErlangC:
    @pytest.mark.parametrize(
        ("agents", "traffic"),
        [
            (1, 0.5),
            (2, 1.0),
            (5, 2.5),
            (11, 10.0),
            (13, 10.0),
            (14, 10.0),
            (30, 25.0),
            (60, 50.3),
            (100, 90.0),
        ],
    )
    def test_matches_exact_factorial_formula(self, agents: int, traffic: float) -> None:
        expected = float(exact_erlang_c(agents, Fraction(traffic)))
        assert erlang_c(agents, traffic) == pytest.approx(expected, rel=1e-12)

    def test_textbook_value_for_14_agents_and_10_erlangs(self) -> None:
        assert erlang_c(14, 10.0) == pytest.approx(0.1741, abs=1e-4)

    def test_single_agent_waits_with_probability_equal_to_utilisation(self) -> None:
        # M/M/1: the probability of waiting is the utilisation, A / N = A.
        assert erlang_c(1, 0.3) == pytest.approx(0.3, rel=1e-12)

    @pytest.mark.parametrize("agents", [0, 1, 500])
    def test_no_traffic_means_nobody_waits(self, agents: int) -> None:
        assert erlang_c(agents, 0.0) == 0.0

    @pytest.mark.parametrize(("agents", "traffic"), [(10, 10.0), (9, 10.0), (0, 0.5), (3, 3.7)])
    def test_unstable_queue_means_everybody_waits(self, agents: int, traffic: float) -> None:
        assert erlang_c(agents, traffic) == 1.0

    def test_just_stable_queue_waits_with_probability_below_one(self) -> None:
        assert 0.99 < erlang_c(11, 10.999) < 1.0

    @pytest.mark.parametrize("agents", [501, 510, 550, 700])
    def test_500_erlangs_matches_exact_formula_without_overflow(self, agents: int) -> None:
        expected = float(exact_erlang_c(agents, Fraction(500)))
        assert erlang_c(agents, 500.0) == pytest.approx(expected, rel=1e-9)

    def test_many_agents_far_above_traffic_almost_never_wait(self) -> None:
        assert 0.0 <= erlang_c(5_000, 10.0) < 1e-300

    @pytest.mark.parametrize(
        ("agents", "traffic", "argument"),
        [
            (-1, 1.0, "agents"),
            (5, -0.1, "traffic_erlangs"),
            (5, math.nan, "traffic_erlangs"),
            (5, math.inf, "traffic_erlangs"),
        ],
    )
    def test_rejects_invalid_input_naming_the_argument(
        self, agents: int, traffic: float, argument: str
    ) -> None:
        with pytest.raises(ValueError, match=f"^{argument} must be"):
            erlang_c(agents, traffic)

    @PROPERTY
    @given(
        agents=st.integers(min_value=1, max_value=60),
        load=st.floats(min_value=0.001, max_value=0.999),
    )
    def test_property_agrees_with_exact_formula(self, agents: int, load: float) -> None:
        traffic = agents * load
        expected = float(exact_erlang_c(agents, Fraction(traffic)))
        assert erlang_c(agents, traffic) == pytest.approx(expected, rel=1e-9, abs=1e-300)

    @PROPERTY
    @given(
        agents=st.integers(min_value=0, max_value=800),
        traffic=st.floats(min_value=0.0, max_value=600.0),
    )
    def test_property_is_a_probability_that_falls_as_agents_are_added(
        self, agents: int, traffic: float
    ) -> None:
        now, more = erlang_c(agents, traffic), erlang_c(agents + 1, traffic)
        assert 0.0 <= more <= now <= 1.0


class TestServiceLevel:
    @pytest.mark.parametrize(
        ("agents", "expected"), [(12, 0.6402), (13, 0.7956), (14, 0.8884), (15, 0.9415)]
    )
    def test_textbook_values_for_10_erlangs(self, agents: int, expected: float) -> None:
        assert service_level(agents, RATE, AHT, THRESHOLD) == pytest.approx(expected, abs=5e-5)

    @pytest.mark.parametrize("agents", [11, 13, 14, 20, 40])
    def test_matches_exact_reference(self, agents: int) -> None:
        expected = exact_service_level(agents, RATE, AHT, THRESHOLD)
        assert service_level(agents, RATE, AHT, THRESHOLD) == pytest.approx(expected, rel=1e-12)

    def test_zero_threshold_is_the_probability_of_not_waiting(self) -> None:
        assert service_level(14, RATE, AHT, 0.0) == pytest.approx(1 - erlang_c(14, 10.0))

    def test_longer_threshold_gives_higher_service_level(self) -> None:
        assert service_level(14, RATE, AHT, 60.0) > service_level(14, RATE, AHT, THRESHOLD)

    @pytest.mark.parametrize("agents", [0, 9, 10])
    def test_unstable_queue_answers_nothing_within_threshold(self, agents: int) -> None:
        assert service_level(agents, RATE, AHT, THRESHOLD) == 0.0

    @pytest.mark.parametrize("agents", [0, 1, 7])
    def test_no_traffic_is_full_service_level_even_unstaffed(self, agents: int) -> None:
        assert service_level(agents, 0.0, AHT, THRESHOLD) == 1.0

    def test_500_erlangs_is_finite_and_between_zero_and_one(self) -> None:
        level = service_level(520, 500 / 180, 180.0, 20.0)
        assert level == pytest.approx(exact_service_level(520, 500 / 180, 180.0, 20.0))
        assert 0.0 < level < 1.0

    @pytest.mark.parametrize(
        ("agents", "rate", "aht", "threshold", "argument"),
        [
            (-1, RATE, AHT, THRESHOLD, "agents"),
            (14, -0.01, AHT, THRESHOLD, "arrival_rate_per_s"),
            (14, math.nan, AHT, THRESHOLD, "arrival_rate_per_s"),
            (14, math.inf, AHT, THRESHOLD, "arrival_rate_per_s"),
            (14, RATE, 0.0, THRESHOLD, "aht_s"),
            (14, RATE, -180.0, THRESHOLD, "aht_s"),
            (14, RATE, math.nan, THRESHOLD, "aht_s"),
            (14, RATE, math.inf, THRESHOLD, "aht_s"),
            (14, RATE, AHT, -1.0, "threshold_s"),
            (14, RATE, AHT, math.nan, "threshold_s"),
        ],
    )
    def test_rejects_invalid_input_naming_the_argument(
        self, agents: int, rate: float, aht: float, threshold: float, argument: str
    ) -> None:
        with pytest.raises(ValueError, match=f"^{argument} must be"):
            service_level(agents, rate, aht, threshold)

    @PROPERTY
    @given(
        agents=st.integers(min_value=0, max_value=400),
        rate=st.floats(min_value=0.0, max_value=2.0),
        aht=st.floats(min_value=1.0, max_value=900.0),
        threshold=st.floats(min_value=0.0, max_value=300.0),
    )
    def test_property_more_agents_never_lower_service_level(
        self, agents: int, rate: float, aht: float, threshold: float
    ) -> None:
        now = service_level(agents, rate, aht, threshold)
        more = service_level(agents + 1, rate, aht, threshold)
        assert 0.0 <= now <= more <= 1.0


class TestAsa:
    @pytest.mark.parametrize(
        ("agents", "expected"), [(12, 40.445), (13, 17.116), (14, 7.836), (15, 3.674)]
    )
    def test_textbook_values_for_10_erlangs(self, agents: int, expected: float) -> None:
        assert asa(agents, RATE, AHT) == pytest.approx(expected, abs=5e-4)

    def test_is_probability_of_waiting_times_aht_over_spare_agents(self) -> None:
        expected = float(exact_erlang_c(14, Fraction(10))) * AHT / 4
        assert asa(14, RATE, AHT) == pytest.approx(expected, rel=1e-12)

    @pytest.mark.parametrize("agents", [0, 9, 10])
    def test_unstable_queue_has_no_average_speed_of_answer(self, agents: int) -> None:
        assert asa(agents, RATE, AHT) is None

    @pytest.mark.parametrize("agents", [0, 3])
    def test_no_traffic_is_answered_immediately(self, agents: int) -> None:
        assert asa(agents, 0.0, AHT) == 0.0

    @pytest.mark.parametrize(
        ("agents", "rate", "aht", "argument"),
        [
            (-1, RATE, AHT, "agents"),
            (14, -1.0, AHT, "arrival_rate_per_s"),
            (14, RATE, 0.0, "aht_s"),
        ],
    )
    def test_rejects_invalid_input_naming_the_argument(
        self, agents: int, rate: float, aht: float, argument: str
    ) -> None:
        with pytest.raises(ValueError, match=f"^{argument} must be"):
            asa(agents, rate, aht)

    @PROPERTY
    @given(
        agents=st.integers(min_value=1, max_value=300),
        rate=st.floats(min_value=0.001, max_value=1.0),
        aht=st.floats(min_value=1.0, max_value=600.0),
    )
    def test_property_more_agents_never_raise_asa(
        self, agents: int, rate: float, aht: float
    ) -> None:
        now = asa(agents, rate, aht)
        more = asa(agents + 1, rate, aht)
        assert more is not None or now is None
        if now is not None and more is not None:
            assert 0.0 <= more <= now


class TestAgentsNeeded:
    def test_textbook_case_needs_14_agents(self) -> None:
        assert agents_needed(RATE, AHT, THRESHOLD, TARGET) == 14

    def test_textbook_case_14_meets_target_and_13_does_not(self) -> None:
        assert service_level(14, RATE, AHT, THRESHOLD) >= TARGET / 100
        assert service_level(13, RATE, AHT, THRESHOLD) < TARGET / 100

    @pytest.mark.parametrize(
        ("rate", "aht", "threshold", "target"),
        [
            (RATE, AHT, THRESHOLD, 90.0),
            (RATE, AHT, 60.0, 80.0),
            (RATE, AHT, 0.0, 50.0),
            (0.5, 300.0, 15.0, 95.0),
            (0.01, 60.0, 30.0, 99.0),
            (2.0, 240.0, 20.0, 80.0),
            (500 / 180, 180.0, 20.0, 80.0),
        ],
    )
    def test_matches_exact_reference_search(
        self, rate: float, aht: float, threshold: float, target: float
    ) -> None:
        expected = exact_agents_needed(rate, aht, threshold, target)
        assert agents_needed(rate, aht, threshold, target) == expected

    def test_meeting_target_exactly_is_enough(self) -> None:
        exact_pct = service_level(14, RATE, AHT, THRESHOLD) * 100
        assert agents_needed(RATE, AHT, THRESHOLD, exact_pct) == 14

    def test_tiny_target_still_needs_a_stable_queue(self) -> None:
        assert agents_needed(RATE, AHT, THRESHOLD, 0.001) == 11

    def test_no_traffic_needs_no_agents(self) -> None:
        assert agents_needed(0.0, AHT, THRESHOLD, TARGET) == 0

    def test_full_target_is_met_once_service_level_rounds_to_one(self) -> None:
        needed = agents_needed(RATE, AHT, 0.0, 100.0)
        assert needed is not None
        assert service_level(needed, RATE, AHT, 0.0) == 1.0
        assert service_level(needed - 1, RATE, AHT, 0.0) < 1.0

    @pytest.mark.parametrize(("max_agents", "expected"), [(14, 14), (13, None), (11, None)])
    def test_max_agents_caps_the_search(self, max_agents: int, expected: int | None) -> None:
        found = agents_needed(RATE, AHT, THRESHOLD, TARGET, max_agents=max_agents)
        assert found == expected

    @pytest.mark.parametrize("max_agents", [0, 5, 10])
    def test_max_agents_below_first_stable_staffing_is_not_enough(self, max_agents: int) -> None:
        assert agents_needed(RATE, AHT, THRESHOLD, TARGET, max_agents=max_agents) is None

    def test_zero_max_agents_is_enough_without_traffic(self) -> None:
        assert agents_needed(0.0, AHT, THRESHOLD, TARGET, max_agents=0) == 0

    def test_default_max_of_10_000_agents_is_not_enough_for_9_990_erlangs(self) -> None:
        assert agents_needed(9_990 / 180, 180.0, 0.0, 99.0) is None

    def test_default_max_of_10_000_agents_is_enough_for_9_000_erlangs(self) -> None:
        needed = agents_needed(9_000 / 180, 180.0, 20.0, 80.0)
        assert needed is not None
        assert 9_000 < needed < 10_000
        assert service_level(needed, 9_000 / 180, 180.0, 20.0) >= 0.8
        assert service_level(needed - 1, 9_000 / 180, 180.0, 20.0) < 0.8

    @pytest.mark.parametrize(
        ("rate", "aht", "threshold", "target", "max_agents", "argument"),
        [
            (-0.1, AHT, THRESHOLD, TARGET, 10, "arrival_rate_per_s"),
            (math.nan, AHT, THRESHOLD, TARGET, 10, "arrival_rate_per_s"),
            (RATE, 0.0, THRESHOLD, TARGET, 10, "aht_s"),
            (RATE, -1.0, THRESHOLD, TARGET, 10, "aht_s"),
            (RATE, AHT, -0.5, TARGET, 10, "threshold_s"),
            (RATE, AHT, math.inf, TARGET, 10, "threshold_s"),
            (RATE, AHT, THRESHOLD, 0.0, 10, "target_pct"),
            (RATE, AHT, THRESHOLD, -5.0, 10, "target_pct"),
            (RATE, AHT, THRESHOLD, 100.1, 10, "target_pct"),
            (RATE, AHT, THRESHOLD, math.nan, 10, "target_pct"),
            (RATE, AHT, THRESHOLD, TARGET, -1, "max_agents"),
        ],
    )
    def test_rejects_invalid_input_naming_the_argument(
        self,
        rate: float,
        aht: float,
        threshold: float,
        target: float,
        max_agents: int,
        argument: str,
    ) -> None:
        with pytest.raises(ValueError, match=f"^{argument} must be"):
            agents_needed(rate, aht, threshold, target, max_agents=max_agents)

    @PROPERTY
    @given(
        rate=st.floats(min_value=0.0, max_value=1.0),
        aht=st.floats(min_value=10.0, max_value=600.0),
        threshold=st.floats(min_value=0.0, max_value=120.0),
        target=st.floats(min_value=1.0, max_value=99.0),
    )
    def test_property_result_is_the_least_staffing_meeting_target(
        self, rate: float, aht: float, threshold: float, target: float
    ) -> None:
        needed = agents_needed(rate, aht, threshold, target)
        assert needed is not None
        assert service_level(needed, rate, aht, threshold) >= target / 100
        if needed > 0:
            assert service_level(needed - 1, rate, aht, threshold) < target / 100
