"""Table-driven tests and properties for the wait estimate and announced position
(app/routing/estimate.py)."""

import dataclasses
import itertools
import math
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.routing.estimate import (
    BASIS_OFFERED,
    BASIS_UNKNOWN,
    WaitEstimate,
    announce_position,
    estimate_wait,
)

# Hypothesis must not write an example database into the shared tree.
PROPERTY = settings(database=None, deadline=None, max_examples=200)

FIVE_OF_120 = (120.0,) * 5  # mean 120 s, exactly the default minimum of samples
UNKNOWN = WaitEstimate(None, BASIS_UNKNOWN)


class TestEstimateWait:
    @pytest.mark.parametrize(
        ("position", "handle_times", "agents", "seconds", "basis"),
        [
            pytest.param(
                1, FIVE_OF_120, 1, 120, "aht=120s agents=1 samples=5", id="head-one-agent"
            ),
            pytest.param(3, FIVE_OF_120, 4, 90, "aht=120s agents=4 samples=5", id="third-4-agents"),
            pytest.param(
                10, (100.0, 200.0) * 10, 4, 375, "aht=150s agents=4 samples=20", id="mixed"
            ),
            pytest.param(
                1, (61.0,) + (62.0,) * 4, 1, 62, "aht=62s agents=1 samples=5", id="round-down"
            ),
            pytest.param(
                1, (62.0,) + (63.0,) * 4, 1, 63, "aht=63s agents=1 samples=5", id="round-up"
            ),
            pytest.param(1, (100.0,) * 5, 3, 33, "aht=100s agents=3 samples=5", id="part-of-aht"),
            pytest.param(2, (0.0,) * 5, 1, 0, "aht=0s agents=1 samples=5", id="zero-handle-times"),
        ],
    )
    def test_known_data_gives_position_times_mean_aht_over_agents(
        self, position: int, handle_times: Sequence[float], agents: int, seconds: int, basis: str
    ) -> None:
        assert estimate_wait(position, handle_times, agents) == WaitEstimate(seconds, basis)

    @pytest.mark.parametrize(
        ("handle_times", "agents", "min_samples"),
        [
            pytest.param((), 4, 5, id="no-samples"),
            pytest.param((120.0,) * 4, 4, 5, id="one-sample-short"),
            pytest.param(FIVE_OF_120, 0, 5, id="nobody-staffed"),
            pytest.param((), 0, 5, id="no-samples-nobody-staffed"),
            pytest.param((120.0,) * 19, 4, 20, id="one-short-of-custom-minimum"),
        ],
    )
    def test_thin_data_or_no_staff_is_unknown_rather_than_guessed(
        self, handle_times: Sequence[float], agents: int, min_samples: int
    ) -> None:
        assert estimate_wait(3, handle_times, agents, min_samples=min_samples) == UNKNOWN

    def test_custom_minimum_of_samples_when_met_gives_estimate(self) -> None:
        found = estimate_wait(2, (60.0,) * 2, 1, min_samples=2)
        assert found == WaitEstimate(120, "aht=60s agents=1 samples=2")

    @pytest.mark.parametrize(
        ("handle_times", "agents"), [(FIVE_OF_120, 4), ((), 4), (FIVE_OF_120, 0), ((), 0)]
    )
    def test_position_zero_is_being_offered_now_and_waits_nothing(
        self, handle_times: Sequence[float], agents: int
    ) -> None:
        assert estimate_wait(0, handle_times, agents) == WaitEstimate(0, BASIS_OFFERED)

    def test_accepts_a_list_of_handle_times(self) -> None:
        assert estimate_wait(1, [30.0, 30, 30, 30, 30], 1).seconds == 30

    @pytest.mark.parametrize(
        ("position", "handle_times", "agents", "min_samples", "argument"),
        [
            (-1, FIVE_OF_120, 4, 5, "position"),
            (1, FIVE_OF_120, -1, 5, "staffed_agents"),
            (1, FIVE_OF_120, 4, 0, "min_samples"),
            (1, (*FIVE_OF_120, -1.0), 4, 5, "handle_times_s"),
            (1, (*FIVE_OF_120, math.nan), 4, 5, "handle_times_s"),
            (1, (*FIVE_OF_120, math.inf), 4, 5, "handle_times_s"),
            (0, (-1.0,), 4, 5, "handle_times_s"),
        ],
    )
    def test_rejects_invalid_input_naming_the_argument(
        self,
        position: int,
        handle_times: Sequence[float],
        agents: int,
        min_samples: int,
        argument: str,
    ) -> None:
        with pytest.raises(ValueError, match=f"^{argument} must be"):
            estimate_wait(position, handle_times, agents, min_samples=min_samples)

    def test_estimate_is_immutable(self) -> None:
        estimate = estimate_wait(1, FIVE_OF_120, 1)
        with pytest.raises(dataclasses.FrozenInstanceError):
            estimate.seconds = 0  # type: ignore[misc]

    @PROPERTY
    @given(
        position=st.integers(min_value=1, max_value=500),
        handle_times=st.lists(st.floats(min_value=0.0, max_value=3_600.0), min_size=5),
        agents=st.integers(min_value=1, max_value=200),
    )
    def test_property_wait_grows_with_position_and_falls_with_staff(
        self, position: int, handle_times: list[float], agents: int
    ) -> None:
        here = estimate_wait(position, handle_times, agents).seconds
        behind = estimate_wait(position + 1, handle_times, agents).seconds
        more_staff = estimate_wait(position, handle_times, agents + 1).seconds
        assert here is not None
        assert behind is not None
        assert more_staff is not None
        assert more_staff <= here <= behind


class TestAnnouncePosition:
    @pytest.mark.parametrize(
        ("computed", "previous", "expected"),
        [
            pytest.param(7, None, 7, id="first-announcement-is-computed"),
            pytest.param(1, None, 1, id="first-announcement-at-head"),
            pytest.param(4, 7, 4, id="moved-forward-is-announced"),
            pytest.param(7, 7, 7, id="unchanged-stays"),
            pytest.param(9, 7, 7, id="pushed-back-keeps-previous"),
            pytest.param(1, 2, 1, id="reaches-head"),
        ],
    )
    def test_announced_position_is_computed_but_never_larger_than_before(
        self, computed: int, previous: int | None, expected: int
    ) -> None:
        assert announce_position(computed, previous) == expected

    @pytest.mark.parametrize(
        ("computed", "previous", "argument"),
        [
            (0, None, "computed"),
            (-3, 5, "computed"),
            (0, 5, "computed"),
            (3, 0, "previously_announced"),
            (3, -1, "previously_announced"),
        ],
    )
    def test_rejects_positions_below_one_naming_the_argument(
        self, computed: int, previous: int | None, argument: str
    ) -> None:
        with pytest.raises(ValueError, match=f"^{argument} must be"):
            announce_position(computed, previous)

    @PROPERTY
    @given(computed=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=40))
    def test_property_sequence_of_announcements_never_increases(self, computed: list[int]) -> None:
        announced: list[int] = []
        previous: int | None = None
        for position in computed:
            previous = announce_position(position, previous)
            announced.append(previous)
        assert all(later <= earlier for earlier, later in itertools.pairwise(announced))
        assert all(1 <= told <= now for told, now in zip(announced, computed, strict=True))
        assert announced[-1] == min(computed)
