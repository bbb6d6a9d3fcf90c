"""Table-driven tests and properties for the pure routing score (app/routing/scoring.py)."""

import heapq
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.routing.scoring import (
    Affinity,
    AgentView,
    ContactView,
    DispatchSettings,
    Match,
    QueueRules,
    Ranked,
    Reason,
    SkillReq,
    Step,
    Strategy,
    TierPolicy,
    choose_agent,
    choose_contact,
    contact_order_key,
    current_step,
    deadline,
    eligible,
    holders,
    is_overdue,
    match,
    may_take,
    next_wake_at,
    rank_agents,
)

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
PLATINUM = TierPolicy("platinum", sl_target_s=10, rank=1, rm_affinity_s=60)
GOLD = TierPolicy("gold", sl_target_s=20, rank=2)
STANDARD = TierPolicy("standard", sl_target_s=60, rank=4)
SETTINGS = DispatchSettings(starvation_bound_s=30)
# A contact overdue for SETTINGS has waited more than its target + 30 s.

# Hypothesis must not write an example database into the shared tree.
PROPERTY = settings(database=None, deadline=None, max_examples=200)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def later(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def make_step(*skills: tuple[str, int], expires: float | None = None) -> Step:
    return Step(tuple(SkillReq(skill, level) for skill, level in skills), expires)


def make_queue(
    strategy: Strategy = Strategy.LONGEST_IDLE, steps: Sequence[Step] = (), queue_id: int = 1
) -> QueueRules:
    return QueueRules(queue_id, strategy, tuple(steps))


def make_contact(
    contact_id: int = 1,
    *,
    tier: TierPolicy = STANDARD,
    channel: str = "voice",
    waited: float = 0.0,
    in_queue: float | None = None,
    manager: int | None = None,
    last_agent: int | None = None,
    last_until: datetime | None = None,
    excluded: frozenset[int] = frozenset(),
    declined: frozenset[int] = frozenset(),
    needs: Sequence[tuple[str, int]] = (),
) -> ContactView:
    return ContactView(
        id=contact_id,
        channel=channel,
        tier=tier,
        enqueued_at=ago(waited),
        routing_started_at=ago(waited if in_queue is None else in_queue),
        relationship_manager_id=manager,
        last_agent_id=last_agent,
        last_agent_until=last_until,
        excluded_agent_ids=excluded,
        declined_by=declined,
        skills=tuple(SkillReq(skill, level) for skill, level in needs),
    )


def make_agent(
    agent_id: int,
    *,
    skills: dict[str, int] | None = None,
    idle: float = 0.0,
    load: int = 0,
    capacity: int = 1,
    channel: str = "voice",
    contacts_today: int = 0,
    offered_ago: float | None = None,
    ready: bool = True,
) -> AgentView:
    return AgentView(
        id=agent_id,
        skills=skills or {},
        idle_since=ago(idle),
        load={channel: load},
        capacity={channel: capacity},
        contacts_today=contacts_today,
        last_offer_at=None if offered_ago is None else ago(offered_ago),
        ready=ready,
    )


def ids(ranked: Sequence[Ranked]) -> list[int]:
    return [entry.agent.id for entry in ranked]


def rank(
    agents: Sequence[AgentView], contact: ContactView | None = None, queue: QueueRules | None = None
) -> list[Ranked]:
    return rank_agents(queue or make_queue(), contact or make_contact(), agents, NOW, SETTINGS)


# --- validation ----------------------------------------------------------------------------


class TestValidation:
    @pytest.mark.parametrize("level", [0, 11, -1])
    def test_skill_requirement_outside_one_to_ten_is_rejected(self, level: int) -> None:
        with pytest.raises(ValueError, match="min_level"):
            SkillReq("billing", level)

    @pytest.mark.parametrize("level", [1, 10])
    def test_skill_requirement_at_either_end_of_the_scale_is_accepted(self, level: int) -> None:
        assert SkillReq("billing", level).min_level == level

    @pytest.mark.parametrize("expires", [0.0, -5.0, float("nan"), float("inf")])
    def test_step_expiry_must_be_finite_and_positive(self, expires: float) -> None:
        with pytest.raises(ValueError, match=r"expires_after_s must be a finite number > 0"):
            Step((), expires)

    def test_only_the_last_step_may_never_expire(self) -> None:
        with pytest.raises(ValueError, match="only the last routing step"):
            make_queue(steps=[make_step(expires=None), make_step(expires=30)])

    def test_last_step_that_never_expires_is_accepted(self) -> None:
        queue = make_queue(steps=[make_step(expires=30), make_step(expires=None)])
        assert queue.steps[-1].expires_after_s is None

    @pytest.mark.parametrize(
        ("target", "rm_window"), [(-1.0, 0.0), (float("nan"), 0.0), (10.0, -1.0)]
    )
    def test_tier_rejects_negative_or_non_finite_durations(
        self, target: float, rm_window: float
    ) -> None:
        with pytest.raises(ValueError, match=r"must be a finite number >= 0"):
            TierPolicy("gold", sl_target_s=target, rm_affinity_s=rm_window)

    @pytest.mark.parametrize("bound", [-1.0, float("inf")])
    def test_starvation_bound_must_be_finite_and_non_negative(self, bound: float) -> None:
        with pytest.raises(ValueError, match="starvation_bound_s"):
            DispatchSettings(starvation_bound_s=bound)

    def test_zero_starvation_bound_is_accepted(self) -> None:
        assert DispatchSettings(starvation_bound_s=0).starvation_bound_s == 0


# --- steps -----------------------------------------------------------------------------------

THREE_STEPS = make_queue(
    steps=[
        make_step(("billing", 8), expires=30),
        make_step(("billing", 5), expires=60),
        make_step(("billing", 1), expires=None),
    ]
)
TWO_EXPIRING_STEPS = make_queue(
    steps=[make_step(("billing", 8), expires=30), make_step(("billing", 5), expires=60)]
)


class TestCurrentStep:
    @pytest.mark.parametrize(
        ("queue", "in_queue", "expected"),
        [
            pytest.param(THREE_STEPS, 0, 0, id="first_step_at_enqueue"),
            pytest.param(THREE_STEPS, 29.999999, 0, id="first_step_just_before_expiry"),
            pytest.param(THREE_STEPS, 30, 1, id="second_step_exactly_at_first_expiry"),
            pytest.param(THREE_STEPS, 89.999999, 1, id="second_step_until_cumulative_expiry"),
            pytest.param(THREE_STEPS, 90, 2, id="last_step_at_cumulative_expiry"),
            pytest.param(THREE_STEPS, 86_400, 2, id="last_step_without_expiry_holds_forever"),
            pytest.param(TWO_EXPIRING_STEPS, 89.999999, 1, id="last_step_before_it_expires"),
            pytest.param(TWO_EXPIRING_STEPS, 90, None, id="none_once_last_step_expired"),
            pytest.param(make_queue(), 0, None, id="none_for_queue_without_steps"),
            pytest.param(THREE_STEPS, -5, 0, id="first_step_if_clock_is_behind_routing_start"),
        ],
    )
    def test_step_in_force(self, queue: QueueRules, in_queue: float, expected: int | None) -> None:
        assert current_step(queue, make_contact(in_queue=in_queue), NOW) == expected

    def test_step_clock_runs_from_routing_start_not_original_enqueue(self) -> None:
        transferred = make_contact(waited=500, in_queue=10)
        assert current_step(THREE_STEPS, transferred, NOW) == 0

    def test_fractional_expiries_add_up_exactly(self) -> None:
        queue = make_queue(steps=[make_step(expires=0.1), make_step(expires=0.2)])
        assert current_step(queue, make_contact(in_queue=0.3), NOW) is None
        assert current_step(queue, make_contact(in_queue=0.299999), NOW) == 1


class TestNextWakeAt:
    @pytest.mark.parametrize(
        ("queue", "contact", "expected"),
        [
            pytest.param(THREE_STEPS, make_contact(in_queue=0), later(30), id="first_expiry"),
            pytest.param(THREE_STEPS, make_contact(in_queue=30), later(60), id="second_expiry"),
            pytest.param(THREE_STEPS, make_contact(in_queue=90), None, id="last_never_expires"),
            pytest.param(TWO_EXPIRING_STEPS, make_contact(in_queue=95), None, id="all_expired"),
            pytest.param(make_queue(), make_contact(), None, id="no_steps_no_manager"),
            pytest.param(
                make_queue(),
                make_contact(tier=PLATINUM, manager=7, waited=20),
                later(40),
                id="manager_window_end",
            ),
            pytest.param(
                THREE_STEPS,
                make_contact(tier=PLATINUM, manager=7, waited=55, in_queue=20),
                later(5),
                id="manager_window_end_before_step_expiry",
            ),
            pytest.param(
                THREE_STEPS,
                make_contact(tier=PLATINUM, manager=7, waited=20, in_queue=20),
                later(10),
                id="step_expiry_before_manager_window_end",
            ),
            pytest.param(
                make_queue(),
                make_contact(tier=PLATINUM, manager=7, waited=60),
                None,
                id="manager_window_already_closed",
            ),
            pytest.param(
                make_queue(),
                make_contact(tier=GOLD, manager=7),
                None,
                id="tier_without_manager_affinity",
            ),
            pytest.param(
                make_queue(),
                make_contact(last_agent=4, last_until=later(25)),
                later(25),
                id="last_agent_window_end",
            ),
            pytest.param(
                THREE_STEPS,
                make_contact(in_queue=0, last_agent=4, last_until=later(45)),
                later(30),
                id="step_expiry_before_last_agent_window_end",
            ),
            pytest.param(
                make_queue(),
                make_contact(
                    tier=PLATINUM, manager=7, waited=20, last_agent=4, last_until=later(5)
                ),
                later(5),
                id="last_agent_window_end_before_manager_window_end",
            ),
            pytest.param(
                make_queue(),
                make_contact(last_agent=4, last_until=NOW),
                None,
                id="last_agent_window_closing_now",
            ),
        ],
    )
    def test_next_instant_when_more_agents_may_take_the_contact(
        self, queue: QueueRules, contact: ContactView, expected: datetime | None
    ) -> None:
        assert next_wake_at(queue, contact, NOW) == expected


class TestDeadlineAndOverdue:
    @pytest.mark.parametrize(
        ("tier", "expected"), [(PLATINUM, ago(90)), (GOLD, ago(80)), (STANDARD, ago(40))]
    )
    def test_deadline_is_enqueue_time_plus_tier_target(
        self, tier: TierPolicy, expected: datetime
    ) -> None:
        assert deadline(make_contact(tier=tier, waited=100)) == expected

    def test_deadline_counts_from_original_enqueue_not_routing_start(self) -> None:
        assert deadline(make_contact(waited=100, in_queue=5)) == ago(40)

    @pytest.mark.parametrize(
        ("tier", "waited", "expected"),
        [
            pytest.param(STANDARD, 90, False, id="standard_exactly_target_plus_bound"),
            pytest.param(STANDARD, 90.000001, True, id="standard_just_past_target_plus_bound"),
            pytest.param(PLATINUM, 40, False, id="platinum_exactly_target_plus_bound"),
            pytest.param(PLATINUM, 41, True, id="platinum_past_target_plus_bound"),
            pytest.param(STANDARD, 61, False, id="past_target_but_within_bound"),
        ],
    )
    def test_overdue_only_after_strictly_more_than_target_plus_bound(
        self, tier: TierPolicy, waited: float, expected: bool
    ) -> None:
        assert is_overdue(make_contact(tier=tier, waited=waited), NOW, SETTINGS) is expected


# --- eligibility ---------------------------------------------------------------------------

BILLING_AND_CARDS = make_queue(steps=[make_step(("billing", 5), ("cards", 3), expires=None)])


class TestEligible:
    @pytest.mark.parametrize(
        ("agent", "expected"),
        [
            pytest.param(make_agent(1, load=0, capacity=1), True, id="spare_capacity"),
            pytest.param(make_agent(1, load=1, capacity=1), False, id="at_capacity"),
            pytest.param(make_agent(1, load=2, capacity=1), False, id="over_capacity"),
            pytest.param(make_agent(1, load=2, capacity=3), True, id="chat_style_capacity"),
            pytest.param(make_agent(1, capacity=0), False, id="zero_capacity"),
            pytest.param(make_agent(1, channel="chat"), False, id="capacity_on_other_channel"),
            pytest.param(
                AgentView(1, {}, NOW, load={}, capacity={"voice": 1}), True, id="no_load_entry"
            ),
            pytest.param(make_agent(1, ready=False), False, id="not_ready"),
        ],
    )
    def test_capacity_on_the_contacts_channel(self, agent: AgentView, expected: bool) -> None:
        assert eligible(agent, make_queue(), make_contact(channel="voice"), NOW) is expected

    @pytest.mark.parametrize(
        ("skills", "expected"),
        [
            pytest.param({"billing": 5, "cards": 3}, True, id="exactly_the_minimum_levels"),
            pytest.param({"billing": 10, "cards": 9}, True, id="above_the_minimum_levels"),
            pytest.param({"billing": 4, "cards": 3}, False, id="one_skill_below_minimum"),
            pytest.param({"billing": 9}, False, id="one_skill_missing"),
            pytest.param({}, False, id="no_skills"),
        ],
    )
    def test_every_skill_of_the_step_in_force_at_its_minimum(
        self, skills: dict[str, int], expected: bool
    ) -> None:
        agent = make_agent(1, skills=skills)
        assert eligible(agent, BILLING_AND_CARDS, make_contact(), NOW) is expected

    @pytest.mark.parametrize(
        ("in_queue", "expected"),
        [(0, False), (29, False), (30, True), (89, True), (90, False)],
    )
    def test_relaxed_step_admits_weaker_agent_only_while_in_force(
        self, in_queue: float, expected: bool
    ) -> None:
        # billing 6 fails step 0 (billing >= 8), passes step 1 (billing >= 5) and fails
        # step 2 (loans >= 1): eligibility follows the step in force, not the easiest one.
        queue = make_queue(
            steps=[
                make_step(("billing", 8), expires=30),
                make_step(("billing", 5), expires=60),
                make_step(("loans", 1), expires=None),
            ]
        )
        agent = make_agent(1, skills={"billing": 6})
        assert eligible(agent, queue, make_contact(in_queue=in_queue), NOW) is expected

    def test_any_agent_with_capacity_once_all_steps_expired(self) -> None:
        contact = make_contact(in_queue=90)
        assert eligible(make_agent(1), TWO_EXPIRING_STEPS, contact, NOW)

    def test_all_steps_expired_still_requires_capacity(self) -> None:
        contact = make_contact(in_queue=90)
        assert not eligible(make_agent(1, load=1), TWO_EXPIRING_STEPS, contact, NOW)

    def test_step_without_skills_admits_any_agent(self) -> None:
        queue = make_queue(steps=[make_step(expires=None)])
        assert eligible(make_agent(1), queue, make_contact(), NOW)

    @pytest.mark.parametrize(
        ("queue", "in_queue", "skills", "expected"),
        [
            pytest.param(
                BILLING_AND_CARDS,
                0,
                {"billing": 5, "cards": 3},
                False,
                id="the_steps_skills_but_not_the_contacts",
            ),
            pytest.param(
                BILLING_AND_CARDS,
                0,
                {"billing": 5, "cards": 3, "spanish": 4},
                True,
                id="the_steps_skills_and_the_contacts",
            ),
            pytest.param(
                BILLING_AND_CARDS,
                0,
                {"billing": 5, "cards": 3, "spanish": 3},
                False,
                id="the_contacts_skill_below_its_minimum",
            ),
            pytest.param(
                BILLING_AND_CARDS,
                0,
                {"billing": 4, "cards": 3, "spanish": 9},
                False,
                id="the_contacts_skills_but_not_the_steps",
            ),
            pytest.param(make_queue(), 0, {"spanish": 4}, True, id="queue_without_steps"),
            pytest.param(make_queue(), 0, {"billing": 9}, False, id="queue_without_steps_lacking"),
            pytest.param(
                TWO_EXPIRING_STEPS, 90, {"spanish": 4}, True, id="steps_expired_contacts_skill"
            ),
            pytest.param(
                TWO_EXPIRING_STEPS, 90, {"billing": 9}, False, id="steps_expired_still_required"
            ),
        ],
    )
    def test_the_contacts_own_skills_as_well_as_the_steps(
        self, queue: QueueRules, in_queue: float, skills: dict[str, int], expected: bool
    ) -> None:
        contact = make_contact(in_queue=in_queue, needs=[("spanish", 4)])
        assert eligible(make_agent(1, skills=skills), queue, contact, NOW) is expected

    def test_the_contact_and_the_step_may_name_one_skill_at_two_levels(self) -> None:
        contact = make_contact(needs=[("billing", 7)])
        assert not eligible(make_agent(1, skills={"billing": 6}), BILLING, contact, NOW)
        assert eligible(make_agent(1, skills={"billing": 7}), BILLING, contact, NOW)

    def test_excluded_agent_is_not_eligible_even_when_fully_qualified(self) -> None:
        agent = make_agent(1, skills={"billing": 10, "cards": 10})
        contact = make_contact(excluded=frozenset({1}))
        assert not eligible(agent, BILLING_AND_CARDS, contact, NOW)

    def test_exclusion_of_another_agent_does_not_matter(self) -> None:
        contact = make_contact(excluded=frozenset({2}))
        assert eligible(make_agent(1), make_queue(), contact, NOW)


class TestMayTake:
    @pytest.mark.parametrize(
        ("agent_id", "waited", "tier", "expected"),
        [
            pytest.param(7, 10, PLATINUM, True, id="manager_inside_window"),
            pytest.param(8, 10, PLATINUM, False, id="other_agent_inside_window"),
            pytest.param(8, 59.999999, PLATINUM, False, id="other_agent_just_before_window_end"),
            pytest.param(8, 60, PLATINUM, True, id="other_agent_exactly_at_window_end"),
            pytest.param(8, 10, GOLD, True, id="other_agent_when_tier_has_no_window"),
        ],
    )
    def test_manager_window_is_exclusive_while_the_manager_is_present(
        self, agent_id: int, waited: float, tier: TierPolicy, expected: bool
    ) -> None:
        # The manager is present (passed in); an absent one holds nothing (TestManagerHold).
        contact = make_contact(tier=tier, manager=7, waited=waited)
        present = [make_agent(7)]
        assert may_take(make_agent(agent_id), make_queue(), contact, NOW, present=present) is (
            expected
        )

    def test_manager_still_needs_to_be_eligible(self) -> None:
        contact = make_contact(tier=PLATINUM, manager=7, waited=10)
        assert not may_take(make_agent(7, load=1), make_queue(), contact, NOW)

    def test_contact_without_manager_may_be_taken_by_any_eligible_agent(self) -> None:
        contact = make_contact(tier=PLATINUM, waited=10)
        assert may_take(make_agent(8), make_queue(), contact, NOW)


# --- contact order -------------------------------------------------------------------------


class TestContactOrderKey:
    @pytest.mark.parametrize(
        ("first", "second"),
        [
            pytest.param(
                make_contact(1, tier=PLATINUM, waited=1),
                make_contact(2, tier=STANDARD, waited=10),
                id="platinum_waited_1s_before_standard_waited_10s",
            ),
            pytest.param(
                make_contact(2, tier=STANDARD, waited=55),
                make_contact(1, tier=PLATINUM, waited=1),
                id="standard_near_deadline_before_fresh_platinum",
            ),
            pytest.param(
                make_contact(2, tier=STANDARD, waited=91),
                make_contact(1, tier=PLATINUM, waited=0),
                id="standard_past_target_plus_bound_before_fresh_platinum",
            ),
            pytest.param(
                make_contact(2, tier=STANDARD, waited=100),
                make_contact(1, tier=PLATINUM, waited=90),
                id="overdue_first_come_first_served_across_tiers",
            ),
            pytest.param(
                make_contact(2, tier=PLATINUM, waited=50),
                make_contact(1, tier=TierPolicy("slow", 1000), waited=100),
                id="overdue_before_older_contact_that_is_not_overdue",
            ),
            pytest.param(
                make_contact(2, tier=GOLD, waited=10),
                make_contact(1, tier=PLATINUM, waited=0),
                id="same_deadline_first_come_first_served",
            ),
            pytest.param(
                make_contact(1, tier=GOLD, waited=5),
                make_contact(2, tier=GOLD, waited=5),
                id="same_deadline_and_enqueue_lower_id",
            ),
            pytest.param(
                make_contact(1, tier=STANDARD, waited=100),
                make_contact(2, tier=STANDARD, waited=100),
                id="overdue_same_enqueue_lower_id",
            ),
        ],
    )
    def test_first_contact_goes_before_second(
        self, first: ContactView, second: ContactView
    ) -> None:
        assert contact_order_key(first, NOW, SETTINGS) < contact_order_key(second, NOW, SETTINGS)

    def test_overdue_contact_is_keyed_by_enqueue_time(self) -> None:
        key = contact_order_key(make_contact(5, waited=100), NOW, SETTINGS)
        assert key == (0, ago(100), ago(100), 5)

    def test_contact_exactly_at_target_plus_bound_is_keyed_by_deadline(self) -> None:
        key = contact_order_key(make_contact(5, waited=90), NOW, SETTINGS)
        assert key == (1, ago(30), ago(90), 5)

    def test_mixed_queue_sorts_overdue_then_deadline(self) -> None:
        contacts = [
            make_contact(1, tier=PLATINUM, waited=2),  # deadline +8
            make_contact(2, tier=STANDARD, waited=95),  # overdue, enqueued -95
            make_contact(3, tier=GOLD, waited=15),  # deadline +5
            make_contact(4, tier=PLATINUM, waited=45),  # overdue, enqueued -45
            make_contact(5, tier=STANDARD, waited=30),  # deadline +30
        ]
        ordered = sorted(contacts, key=lambda c: contact_order_key(c, NOW, SETTINGS))
        assert [c.id for c in ordered] == [2, 4, 3, 1, 5]


TIERS = (PLATINUM, GOLD, STANDARD, TierPolicy("bronze", 120))
contacts_st = st.builds(
    make_contact,
    st.integers(1, 50),
    tier=st.sampled_from(TIERS),
    waited=st.integers(0, 400),
)


class TestContactOrderProperties:
    @PROPERTY
    @given(contacts_st, contacts_st)
    def test_overdue_contact_precedes_every_later_contact_of_any_tier(
        self, a: ContactView, b: ContactView
    ) -> None:
        if is_overdue(a, NOW, SETTINGS) and (a.enqueued_at, a.id) < (b.enqueued_at, b.id):
            assert contact_order_key(a, NOW, SETTINGS) < contact_order_key(b, NOW, SETTINGS)

    @PROPERTY
    @given(contacts_st, contacts_st)
    def test_contacts_not_overdue_follow_deadline_then_arrival(
        self, a: ContactView, b: ContactView
    ) -> None:
        if not (is_overdue(a, NOW, SETTINGS) or is_overdue(b, NOW, SETTINGS)):
            edf_a = (deadline(a), a.enqueued_at, a.id)
            edf_b = (deadline(b), b.enqueued_at, b.id)
            key_a = contact_order_key(a, NOW, SETTINGS)
            key_b = contact_order_key(b, NOW, SETTINGS)
            assert (edf_a < edf_b) == (key_a < key_b)


def _serve_platinum_flood(choose: str, hold_s: float | None = None) -> float:
    """One agent (12 s per contact) against platinum arriving every 2.5 s; one standard
    contact at t=0, held for ``hold_s`` (if given) for a last agent who stays busy. Returns
    the standard contact's wait until offered."""
    queue = make_queue()
    start = NOW
    standard = replace(make_contact(1, tier=STANDARD), enqueued_at=start, routing_started_at=start)
    present: list[AgentView] = []
    if hold_s is not None:
        until = start + timedelta(seconds=hold_s)
        standard = replace(standard, last_agent_id=2, last_agent_until=until)
        present = [make_agent(2, load=1)]
    platinum = [
        replace(
            make_contact(100 + n, tier=PLATINUM),
            enqueued_at=start + timedelta(seconds=0.5 + 2.5 * n),
            routing_started_at=start + timedelta(seconds=0.5 + 2.5 * n),
        )
        for n in range(400)
    ]
    waiting: list[ContactView] = [standard]
    arrivals = list(platinum)
    now = start + timedelta(seconds=1)
    while True:
        waiting += [c for c in arrivals if c.enqueued_at <= now]
        arrivals = [c for c in arrivals if c.enqueued_at > now]
        agent = make_agent(1)
        pairs = [(queue, c) for c in waiting]
        if choose == "choose_contact":
            chosen = choose_contact(agent, pairs, now, SETTINGS, present=present)
            offered = None if chosen is None else chosen.contact
        else:
            matched = match(pairs, [agent, *present], now, SETTINGS)
            offered = matched[0].contact if matched else None
        assert offered is not None
        if offered.id == standard.id:
            return (now - start).total_seconds()
        waiting.remove(offered)
        now += timedelta(seconds=12)


class TestStarvationBound:
    @pytest.mark.parametrize("choose", ["choose_contact", "match"])
    def test_standard_contact_is_offered_within_target_plus_bound_under_platinum_flood(
        self, choose: str
    ) -> None:
        # Earliest deadline alone would serve the 20 platinum contacts enqueued in the
        # first 50 s first (about 240 s); the overdue rule caps the wait at
        # target + bound + one service time.
        waited = _serve_platinum_flood(choose)
        assert 90 < waited <= STANDARD.sl_target_s + SETTINGS.starvation_bound_s + 12

    @pytest.mark.parametrize("choose", ["choose_contact", "match"])
    @pytest.mark.parametrize(
        ("hold_s", "low", "high"),
        [
            pytest.param(30, 90, 90 + 12, id="window_ends_before_target_plus_bound"),
            pytest.param(150, 150, 150 + 12, id="window_ends_after_target_plus_bound"),
        ],
    )
    def test_contact_held_for_a_busy_agent_is_offered_by_the_later_of_the_two(
        self, choose: str, hold_s: float, low: float, high: float
    ) -> None:
        # Held, the contact waits for its last agent (who stays busy) until its window
        # ends, then goes by the normal rules: by the later of its window's end and its
        # target + bound, plus one service time, under the same flood.
        waited = _serve_platinum_flood(choose, hold_s)
        assert low < waited <= high


# --- agent order ---------------------------------------------------------------------------

MOST_SKILLED = make_queue(
    Strategy.MOST_SKILLED, [make_step(("billing", 1), ("cards", 1), expires=None)]
)


def _chat_agent(agent_id: int, load: int, capacity: int, idle: float = 0.0) -> AgentView:
    return AgentView(
        agent_id,
        {},
        ago(idle),
        load={"chat": load, "voice": 1},
        capacity={"chat": capacity, "voice": 1},
    )


STRATEGY_CASES = [
    pytest.param(
        make_queue(Strategy.LONGEST_IDLE),
        make_contact(),
        [make_agent(1, idle=10), make_agent(2, idle=30), make_agent(3, idle=20)],
        [2, 3, 1],
        [30.0, 20.0, 10.0],
        ["idle_since", "idle_since", None],
        id="longest_idle_earliest_idle_since_first",
    ),
    pytest.param(
        make_queue(Strategy.LONGEST_IDLE),
        make_contact(),
        [make_agent(2, idle=10), make_agent(1, idle=10)],
        [1, 2],
        [10.0, 10.0],
        ["agent_id", None],
        id="longest_idle_tie_lowest_agent_id",
    ),
    pytest.param(
        MOST_SKILLED,
        make_contact(),
        [
            make_agent(1, skills={"billing": 5, "cards": 5}, idle=5),
            make_agent(2, skills={"billing": 9, "cards": 3, "loans": 10}, idle=1),
            make_agent(3, skills={"billing": 2, "cards": 8}, idle=20),
            make_agent(4, skills={"billing": 10}, idle=99),
        ],
        [2, 3, 1],
        [12, 10, 10],
        ["skill_sum", "idle_since", None],
        id="most_skilled_highest_sum_on_step_skills_ties_longest_idle",
    ),
    pytest.param(
        MOST_SKILLED,
        make_contact(),
        [
            make_agent(5, skills={"billing": 5, "cards": 5}, idle=5),
            make_agent(4, skills={"billing": 4, "cards": 6}, idle=5),
        ],
        [4, 5],
        [10, 10],
        ["agent_id", None],
        id="most_skilled_full_tie_lowest_agent_id",
    ),
    pytest.param(
        make_queue(
            Strategy.MOST_SKILLED,
            [make_step(("billing", 5), expires=30), make_step(("cards", 5), expires=30)],
        ),
        make_contact(in_queue=60),
        [
            make_agent(1, skills={"billing": 1, "cards": 1, "loans": 10}),
            make_agent(2, skills={"cards": 9}),
            make_agent(3, skills={}),
        ],
        [2, 1, 3],
        [9, 2, 0],
        ["skill_sum", "skill_sum", None],
        id="most_skilled_after_expiry_sums_union_of_all_steps",
    ),
    pytest.param(
        make_queue(Strategy.MOST_SKILLED),
        make_contact(),
        [make_agent(2, skills={"billing": 9}, idle=1), make_agent(1, idle=1)],
        [1, 2],
        [0, 0],
        ["agent_id", None],
        id="most_skilled_without_steps_scores_nothing",
    ),
    pytest.param(
        make_queue(Strategy.LEAST_OCCUPIED),
        make_contact(channel="chat"),
        [
            _chat_agent(1, load=1, capacity=2, idle=50),
            _chat_agent(2, load=1, capacity=4),
            _chat_agent(3, load=0, capacity=1),
            _chat_agent(4, load=2, capacity=4, idle=60),
            _chat_agent(5, load=3, capacity=3, idle=90),
        ],
        [3, 2, 4, 1],
        [0.0, 0.25, 0.5, 0.5],
        ["occupancy", "occupancy", "idle_since", None],
        id="least_occupied_lowest_ratio_on_channel_ties_longest_idle",
    ),
    pytest.param(
        make_queue(Strategy.ROUND_ROBIN),
        make_contact(),
        [
            make_agent(1, offered_ago=5),
            make_agent(2, idle=1),
            make_agent(3, offered_ago=50),
            make_agent(4, idle=99),
        ],
        [2, 4, 3, 1],
        [None, None, 50.0, 5.0],
        ["agent_id", "last_offer_at", "last_offer_at", None],
        id="round_robin_never_offered_first_then_oldest_offer_ties_lowest_id",
    ),
    pytest.param(
        make_queue(Strategy.ROUND_ROBIN),
        make_contact(),
        [make_agent(2, offered_ago=5, idle=1), make_agent(1, offered_ago=5, idle=0)],
        [1, 2],
        [5.0, 5.0],
        ["agent_id", None],
        id="round_robin_same_offer_time_lowest_id_not_longest_idle",
    ),
    pytest.param(
        make_queue(Strategy.FEWEST_CONTACTS),
        make_contact(),
        [
            make_agent(1, contacts_today=5, idle=99),
            make_agent(2, contacts_today=2, idle=1),
            make_agent(3, contacts_today=2, idle=30),
            make_agent(4, contacts_today=0),
        ],
        [4, 3, 2, 1],
        [0, 2, 2, 5],
        ["contacts_today", "idle_since", "contacts_today", None],
        id="fewest_contacts_lowest_count_ties_longest_idle",
    ),
    pytest.param(
        make_queue(Strategy.FEWEST_CONTACTS),
        make_contact(),
        [make_agent(9, contacts_today=1, idle=3), make_agent(8, contacts_today=1, idle=3)],
        [8, 9],
        [1, 1],
        ["agent_id", None],
        id="fewest_contacts_full_tie_lowest_agent_id",
    ),
]


class TestRankAgents:
    @pytest.mark.parametrize(
        ("queue", "contact", "agents", "order", "scores", "tie_breaks"), STRATEGY_CASES
    )
    def test_strategy_orders_eligible_agents(
        self,
        queue: QueueRules,
        contact: ContactView,
        agents: list[AgentView],
        order: list[int],
        scores: list[float | None],
        tie_breaks: list[str | None],
    ) -> None:
        ranked = rank(agents, contact, queue)
        assert ids(ranked) == order
        assert [r.reason.score for r in ranked] == scores
        assert [r.reason.tie_break for r in ranked] == tie_breaks
        assert [r.reason.runner_up_agent_id for r in ranked] == [*order[1:], None]
        assert all(r.reason.strategy is queue.strategy for r in ranked)
        assert all(r.reason.affinity is None for r in ranked)

    def test_every_strategy_has_a_table_case(self) -> None:
        queues = [case.values[0] for case in STRATEGY_CASES]
        assert {q.strategy for q in queues if isinstance(q, QueueRules)} == set(Strategy)

    def test_no_agents_gives_empty_ranking(self) -> None:
        assert rank([]) == []

    def test_agents_without_capacity_or_excluded_are_left_out(self) -> None:
        agents = [make_agent(1, load=1), make_agent(2), make_agent(3, idle=50)]
        contact = make_contact(excluded=frozenset({3}))
        ranked = rank(agents, contact)
        assert ids(ranked) == [2]
        assert ranked[0].reason.agents_ranked == 1

    def test_agents_failing_the_step_are_left_out(self) -> None:
        agents = [make_agent(1, skills={"billing": 5, "cards": 3}), make_agent(2, idle=99)]
        assert ids(rank(agents, queue=BILLING_AND_CARDS)) == [1]

    def test_agents_with_the_steps_skills_but_not_the_contacts_are_left_out(self) -> None:
        agents = [
            make_agent(1, skills={"billing": 5, "cards": 3}, idle=99),
            make_agent(2, skills={"billing": 5, "cards": 3, "spanish": 2}),
        ]
        contact = make_contact(needs=[("spanish", 2)])
        ranked = rank(agents, contact, BILLING_AND_CARDS)
        assert ids(ranked) == [2]
        assert ranked[0].reason.agents_ranked == 1
        assert choose_agent(BILLING_AND_CARDS, contact, agents[:1], NOW, SETTINGS) is None


PLATINUM_WITH_MANAGER = make_contact(tier=PLATINUM, manager=3, waited=10)


class TestAffinity:
    def test_inside_manager_window_only_the_manager_is_ranked(self) -> None:
        agents = [make_agent(1, idle=500), make_agent(3, idle=1), make_agent(2, idle=300)]
        ranked = rank(agents, PLATINUM_WITH_MANAGER)
        assert ids(ranked) == [3]
        assert ranked[0].reason.affinity is Affinity.RELATIONSHIP_MANAGER
        assert ranked[0].reason.agents_ranked == 1

    @pytest.mark.parametrize(
        "manager",
        [
            pytest.param(make_agent(3, load=1), id="manager_at_capacity"),
            pytest.param(make_agent(3, ready=False), id="manager_in_wrap_up_or_resting"),
        ],
    )
    def test_contact_waits_for_busy_manager_inside_window(self, manager: AgentView) -> None:
        assert rank([make_agent(1, idle=500), manager], PLATINUM_WITH_MANAGER) == []

    # The three below waited for the manager until the window closed; a manager who cannot
    # take the contact now holds nothing, so the other agent takes it at once.
    def test_manager_without_voice_capacity_holds_nothing_inside_window(self) -> None:
        agents = [make_agent(1, idle=500), make_agent(3, channel="chat")]
        assert ids(rank(agents, PLATINUM_WITH_MANAGER)) == [1]

    def test_manager_lacking_step_skills_holds_nothing_inside_window(self) -> None:
        agents = [make_agent(1, skills={"billing": 9, "cards": 9}), make_agent(3)]
        assert ids(rank(agents, PLATINUM_WITH_MANAGER, BILLING_AND_CARDS)) == [1]

    def test_manager_excluded_from_the_contact_holds_nothing_inside_window(self) -> None:
        contact = replace(PLATINUM_WITH_MANAGER, excluded_agent_ids=frozenset({3}))
        assert ids(rank([make_agent(1), make_agent(3)], contact)) == [1]

    def test_manager_who_is_not_present_holds_nothing_inside_window(self) -> None:
        ranked = rank([make_agent(1, idle=5), make_agent(2)], PLATINUM_WITH_MANAGER)
        assert ids(ranked) == [1, 2]
        assert [r.reason.affinity for r in ranked] == [None, None]

    def test_after_window_manager_is_preferred_but_others_follow(self) -> None:
        contact = make_contact(tier=PLATINUM, manager=3, waited=60)
        ranked = rank([make_agent(1, idle=500), make_agent(3, idle=1), make_agent(2)], contact)
        assert ids(ranked) == [3, 1, 2]
        assert [r.reason.affinity for r in ranked] == [Affinity.RELATIONSHIP_MANAGER, None, None]
        assert ranked[0].reason.tie_break == "relationship_manager"

    def test_after_window_others_take_contact_when_manager_busy(self) -> None:
        contact = make_contact(tier=PLATINUM, manager=3, waited=61)
        assert ids(rank([make_agent(3, load=1), make_agent(2)], contact)) == [2]

    def test_tier_without_manager_affinity_ignores_the_manager(self) -> None:
        contact = make_contact(tier=GOLD, manager=3, waited=1)
        ranked = rank([make_agent(3, idle=1), make_agent(1, idle=500)], contact)
        assert ids(ranked) == [1, 3]
        assert all(r.reason.affinity is None for r in ranked)

    def test_last_agent_alone_is_ranked_while_the_contact_is_held_for_them(self) -> None:
        # Before holds, the others followed the last agent ([4, 1, 2], tie_break last_agent).
        contact = make_contact(last_agent=4, last_until=later(1))
        ranked = rank([make_agent(1, idle=500), make_agent(4, idle=1), make_agent(2)], contact)
        assert ids(ranked) == [4]
        assert ranked[0].reason.affinity is Affinity.LAST_AGENT
        assert (ranked[0].reason.tie_break, ranked[0].reason.runner_up_agent_id) == (None, None)
        assert ranked[0].reason.agents_ranked == 1
        assert ranked[0].reason.score == 1.0

    @pytest.mark.parametrize(
        "until",
        [pytest.param(NOW, id="at_last_agent_until"), pytest.param(None, id="no_until")],
    )
    def test_last_agent_affinity_lapses(self, until: datetime | None) -> None:
        contact = make_contact(last_agent=4, last_until=until)
        ranked = rank([make_agent(1, idle=500), make_agent(4, idle=1)], contact)
        assert ids(ranked) == [1, 4]
        assert ranked[1].reason.affinity is None

    def test_last_agent_without_the_channel_leaves_others_in_strategy_order(self) -> None:
        # Was a last agent at capacity, who now holds the contact (see TestLastAgentHold).
        contact = make_contact(last_agent=4, last_until=later(60))
        agents = [make_agent(4, channel="chat"), make_agent(1), make_agent(2, idle=9)]
        assert ids(rank(agents, contact)) == [2, 1]

    def test_manager_before_last_agent_before_strategy(self) -> None:
        # All three declined it, so nothing holds it (the last agent declined too): the
        # affinities only order them. Without declines the last agent would hold it alone.
        contact = make_contact(
            tier=PLATINUM,
            manager=3,
            waited=70,
            last_agent=4,
            last_until=later(60),
            declined=frozenset({1, 3, 4}),
        )
        agents = [make_agent(1, idle=500), make_agent(4), make_agent(3)]
        ranked = rank(agents, contact)
        assert ids(ranked) == [3, 4, 1]
        assert [r.reason.affinity for r in ranked] == [
            Affinity.RELATIONSHIP_MANAGER,
            Affinity.LAST_AGENT,
            None,
        ]
        assert [r.reason.tie_break for r in ranked] == [
            "relationship_manager",
            "last_agent",
            None,
        ]

    def test_manager_who_is_also_last_agent_is_labelled_manager(self) -> None:
        contact = make_contact(
            tier=PLATINUM, manager=3, waited=10, last_agent=3, last_until=later(60)
        )
        ranked = rank([make_agent(3)], contact)
        assert ranked[0].reason.affinity is Affinity.RELATIONSHIP_MANAGER


HELD = make_contact(last_agent=4, last_until=later(30))
OTHER = make_agent(1, skills={"billing": 9, "cards": 9}, idle=500)


class TestLastAgentHold:
    """Inside its window a contact waits for its last agent while they are present (passed
    in), with the channel and the step's skills, and not a decliner: even without room now.
    Otherwise it goes by the normal rules at once."""

    @pytest.mark.parametrize(
        "last",
        [
            pytest.param(make_agent(4, load=1), id="at_capacity"),
            pytest.param(make_agent(4, load=3, capacity=3), id="at_capacity_of_several"),
            pytest.param(make_agent(4, ready=False), id="in_wrap_up_or_resting"),
        ],
    )
    def test_contact_waits_for_a_present_last_agent_without_room(self, last: AgentView) -> None:
        agents = [OTHER, last]
        assert rank(agents, HELD) == []
        assert choose_agent(make_queue(), HELD, agents, NOW, SETTINGS) is None
        assert match([(make_queue(), HELD)], agents, NOW, SETTINGS) == []
        assert not may_take(OTHER, make_queue(), HELD, NOW, present=[last])
        assert choose_contact(OTHER, [(make_queue(), HELD)], NOW, SETTINGS, present=[last]) is None

    @pytest.mark.parametrize(
        ("last", "queue", "contact"),
        [
            pytest.param(None, make_queue(), HELD, id="away_offline_or_inactive"),
            pytest.param(make_agent(4, channel="chat"), make_queue(), HELD, id="no_channel"),
            pytest.param(make_agent(4, capacity=0), make_queue(), HELD, id="zero_capacity"),
            pytest.param(
                make_agent(4, load=1, skills={"billing": 9, "cards": 2}),
                BILLING_AND_CARDS,
                HELD,
                id="lacking_a_skill_of_the_step",
            ),
            pytest.param(
                make_agent(4, load=1),
                make_queue(),
                replace(HELD, excluded_agent_ids=frozenset({4})),
                id="excluded",
            ),
            pytest.param(
                make_agent(4, load=1),
                make_queue(),
                replace(HELD, declined_by=frozenset({4})),
                id="declined_it",
            ),
            pytest.param(
                make_agent(4, load=1), make_queue(), replace(HELD, last_agent_until=NOW), id="ended"
            ),
            pytest.param(
                make_agent(4, load=1), make_queue(), replace(HELD, last_agent_until=None), id="none"
            ),
        ],
    )
    def test_contact_goes_to_another_agent_at_once(
        self, last: AgentView | None, queue: QueueRules, contact: ContactView
    ) -> None:
        agents = [OTHER] if last is None else [OTHER, last]
        assert ids(rank(agents, contact, queue)) == [1]
        assert _summary(match([(queue, contact)], agents, NOW, SETTINGS)) == [(contact.id, 1)]
        assert may_take(OTHER, queue, contact, NOW, present=agents)

    @pytest.mark.parametrize(
        ("in_queue", "taken_by"),
        [
            pytest.param(9.999999, [(1, 1)], id="not_held_while_a_step_it_fails_is_in_force"),
            pytest.param(10, [], id="held_once_that_step_has_expired"),
        ],
    )
    def test_skills_are_those_of_the_step_in_force(
        self, in_queue: float, taken_by: list[tuple[int, int]]
    ) -> None:
        queue = make_queue(steps=[make_step(("cards", 3), expires=10)])
        contact = replace(HELD, routing_started_at=ago(in_queue))
        agents = [OTHER, make_agent(4, load=1, skills={"billing": 9})]
        assert _summary(match([(queue, contact)], agents, NOW, SETTINGS)) == taken_by

    @pytest.mark.parametrize(
        ("until", "taken_by"),
        [
            pytest.param(later(0.000001), [], id="held_a_microsecond_before_the_end"),
            pytest.param(NOW, [(1, 1)], id="released_exactly_at_the_end"),
        ],
    )
    def test_hold_ends_exactly_at_the_end_of_the_window(
        self, until: datetime, taken_by: list[tuple[int, int]]
    ) -> None:
        contact = replace(HELD, last_agent_until=until)
        agents = [OTHER, make_agent(4, load=1)]
        assert _summary(match([(make_queue(), contact)], agents, NOW, SETTINGS)) == taken_by

    def test_an_open_manager_window_comes_before_the_hold(self) -> None:
        contact = make_contact(
            tier=PLATINUM, manager=3, waited=10, last_agent=4, last_until=later(30)
        )
        assert ids(rank([make_agent(4, idle=500), make_agent(3)], contact)) == [3]
        assert rank([make_agent(4, idle=500), make_agent(3, load=1)], contact) == []

    def test_after_the_manager_window_the_hold_comes_before_the_manager(self) -> None:
        contact = make_contact(
            tier=PLATINUM, manager=3, waited=70, last_agent=4, last_until=later(30)
        )
        assert ids(rank([make_agent(3, idle=500), make_agent(4)], contact)) == [4]
        assert rank([make_agent(3, idle=500), make_agent(4, load=1)], contact) == []

    def test_batch_fills_the_last_agents_room_and_holds_the_rest_for_them(self) -> None:
        # The last agent fills up with the first contact; the second then waits for them,
        # and a later contact still goes to the other agent: a hold holds up nothing else.
        waiting = [
            (make_queue(), make_contact(1, waited=20, last_agent=4, last_until=later(30))),
            (make_queue(), make_contact(2, waited=10, last_agent=4, last_until=later(30))),
            (make_queue(), make_contact(3, waited=5)),
        ]
        agents = [OTHER, make_agent(4)]
        assert _summary(match(waiting, agents, NOW, SETTINGS)) == [(1, 4), (3, 1)]

    def test_freed_agent_passes_over_a_contact_held_for_another(self) -> None:
        waiting = [
            (make_queue(), make_contact(1, waited=20, last_agent=4, last_until=later(30))),
            (make_queue(), make_contact(2, waited=5)),
        ]
        busy = make_agent(4, load=1)
        held = choose_contact(OTHER, waiting, NOW, SETTINGS, present=[busy])
        alone = choose_contact(OTHER, waiting, NOW, SETTINGS)
        assert held is not None
        assert held.contact.id == 2
        assert alone is not None
        assert alone.contact.id == 1  # the last agent is not present: nothing holds it

    def test_a_view_that_is_not_ready_takes_nothing(self) -> None:
        resting = make_agent(1, ready=False)
        assert rank([resting]) == []
        assert match([(make_queue(), make_contact())], [resting], NOW, SETTINGS) == []
        assert choose_contact(resting, [(make_queue(), make_contact())], NOW, SETTINGS) is None


# --- the manager window holds only while the manager is present ---------------------------

# A billing step, and a contact that needs cards of its own: the manager (agent 3) must hold
# both. OTHER (agent 1, idle longest) always may take the contact.
MANAGED_QUEUE = make_queue(steps=[make_step(("billing", 5))])
QUALIFIED = {"billing": 9, "cards": 9}
M_IDLE = make_agent(3, skills=QUALIFIED, idle=1)
M_BUSY = make_agent(3, skills=QUALIFIED, load=1)  # at capacity on voice
M_RESTING = make_agent(3, skills=QUALIFIED, ready=False)  # in wrap-up, or resting
M_CHAT_IDLE = make_agent(3, skills=QUALIFIED, channel="chat")  # no voice capacity
M_CHAT_BUSY = make_agent(3, skills=QUALIFIED, channel="chat", load=1)
M_NO_STEP_SKILL = {"billing": 4, "cards": 9}
M_NO_OWN_SKILL = {"billing": 9, "cards": 2}
L_IDLE = make_agent(4, skills=QUALIFIED, idle=2)
L_BUSY = make_agent(4, skills=QUALIFIED, load=1)
INSIDE, AFTER = 10.0, 60.0  # waited: PLATINUM's manager window is 60 s, half-open
NOBODY: frozenset[int] = frozenset()
M: frozenset[int] = frozenset({3})


def _managed(waited: float, excluded: frozenset[int], declined: frozenset[int]) -> ContactView:
    return make_contact(
        tier=PLATINUM,
        manager=3,
        waited=waited,
        excluded=excluded,
        declined=declined,
        needs=[("cards", 3)],
    )


class TestManagerHold:
    """Inside the manager window a contact is held for its manager while they are present
    (passed in, with room or not), with the channel and the skills required (the step's and
    the contact's own), not excluded and not a decliner; otherwise the window holds nothing
    and the contact goes by the rules at once. After the window the manager is preferred.

    Each row: the manager's view (None: away, offline or deactivated), how long the contact
    waited, who is excluded and who declined, and the agents who may take it, best first.
    """

    @pytest.mark.parametrize(
        ("manager", "waited", "excluded", "declined", "expected"),
        [
            # Not present.
            pytest.param(None, INSIDE, NOBODY, NOBODY, [1], id="absent-inside"),
            pytest.param(None, AFTER, NOBODY, NOBODY, [1], id="absent-after"),
            # Present and qualified: held inside the window, with room or not.
            pytest.param(M_IDLE, INSIDE, NOBODY, NOBODY, [3], id="idle-inside"),
            pytest.param(M_BUSY, INSIDE, NOBODY, NOBODY, [], id="busy-inside"),
            pytest.param(M_RESTING, INSIDE, NOBODY, NOBODY, [], id="resting-inside"),
            pytest.param(M_IDLE, AFTER, NOBODY, NOBODY, [3, 1], id="idle-after"),
            pytest.param(M_BUSY, AFTER, NOBODY, NOBODY, [1], id="busy-after"),
            pytest.param(M_RESTING, AFTER, NOBODY, NOBODY, [1], id="resting-after"),
            # Present without the contact's channel.
            pytest.param(M_CHAT_IDLE, INSIDE, NOBODY, NOBODY, [1], id="no_channel-idle-inside"),
            pytest.param(M_CHAT_BUSY, INSIDE, NOBODY, NOBODY, [1], id="no_channel-busy-inside"),
            pytest.param(M_CHAT_IDLE, AFTER, NOBODY, NOBODY, [1], id="no_channel-idle-after"),
            pytest.param(M_CHAT_BUSY, AFTER, NOBODY, NOBODY, [1], id="no_channel-busy-after"),
            # Present without the step's skill.
            pytest.param(
                replace(M_IDLE, skills=M_NO_STEP_SKILL),
                INSIDE,
                NOBODY,
                NOBODY,
                [1],
                id="no_step_skill-idle-inside",
            ),
            pytest.param(
                replace(M_BUSY, skills=M_NO_STEP_SKILL),
                INSIDE,
                NOBODY,
                NOBODY,
                [1],
                id="no_step_skill-busy-inside",
            ),
            pytest.param(
                replace(M_IDLE, skills=M_NO_STEP_SKILL),
                AFTER,
                NOBODY,
                NOBODY,
                [1],
                id="no_step_skill-idle-after",
            ),
            pytest.param(
                replace(M_BUSY, skills=M_NO_STEP_SKILL),
                AFTER,
                NOBODY,
                NOBODY,
                [1],
                id="no_step_skill-busy-after",
            ),
            # Present without the contact's own skill.
            pytest.param(
                replace(M_IDLE, skills=M_NO_OWN_SKILL),
                INSIDE,
                NOBODY,
                NOBODY,
                [1],
                id="no_own_skill-idle-inside",
            ),
            pytest.param(
                replace(M_BUSY, skills=M_NO_OWN_SKILL),
                INSIDE,
                NOBODY,
                NOBODY,
                [1],
                id="no_own_skill-busy-inside",
            ),
            pytest.param(
                replace(M_IDLE, skills=M_NO_OWN_SKILL),
                AFTER,
                NOBODY,
                NOBODY,
                [1],
                id="no_own_skill-idle-after",
            ),
            pytest.param(
                replace(M_BUSY, skills=M_NO_OWN_SKILL),
                AFTER,
                NOBODY,
                NOBODY,
                [1],
                id="no_own_skill-busy-after",
            ),
            # Present but excluded from the contact.
            pytest.param(M_IDLE, INSIDE, M, NOBODY, [1], id="excluded-idle-inside"),
            pytest.param(M_BUSY, INSIDE, M, NOBODY, [1], id="excluded-busy-inside"),
            pytest.param(M_RESTING, INSIDE, M, NOBODY, [1], id="excluded-resting-inside"),
            pytest.param(M_IDLE, AFTER, M, NOBODY, [1], id="excluded-idle-after"),
            pytest.param(M_BUSY, AFTER, M, NOBODY, [1], id="excluded-busy-after"),
            # Present but declined (rejected or missed) it: after everyone else.
            pytest.param(M_IDLE, INSIDE, NOBODY, M, [1, 3], id="declined-idle-inside"),
            pytest.param(M_BUSY, INSIDE, NOBODY, M, [1], id="declined-busy-inside"),
            pytest.param(M_RESTING, INSIDE, NOBODY, M, [1], id="declined-resting-inside"),
            pytest.param(M_IDLE, AFTER, NOBODY, M, [1, 3], id="declined-idle-after"),
            pytest.param(M_BUSY, AFTER, NOBODY, M, [1], id="declined-busy-after"),
        ],
    )
    def test_who_may_take_the_contact(
        self,
        manager: AgentView | None,
        waited: float,
        excluded: frozenset[int],
        declined: frozenset[int],
        expected: list[int],
    ) -> None:
        contact = _managed(waited, excluded, declined)
        agents = [OTHER] if manager is None else [OTHER, manager]
        others = [] if manager is None else [manager]
        ranked = rank_agents(MANAGED_QUEUE, contact, agents, NOW, SETTINGS)
        assert ids(ranked) == expected
        if expected[:1] == [3]:  # the manager first: held (alone) or preferred
            assert ranked[0].reason.affinity is Affinity.RELATIONSHIP_MANAGER
        if expected == [3]:  # held: nobody else ranked
            assert (ranked[0].reason.runner_up_agent_id, ranked[0].reason.agents_ranked) == (
                None,
                1,
            )
        assert all(r.reason.affinity is None for r in ranked if r.agent.id != 3)
        chosen = choose_agent(MANAGED_QUEUE, contact, agents, NOW, SETTINGS)
        assert (None if chosen is None else chosen.agent.id) == (expected[0] if expected else None)
        batch = match([(MANAGED_QUEUE, contact)], agents, NOW, SETTINGS)
        assert _summary(batch) == [(1, agent_id) for agent_id in expected[:1]]
        # The other agent, freed, may take it exactly when it is not held for the manager.
        may = may_take(OTHER, MANAGED_QUEUE, contact, NOW, present=others)
        assert may is (1 in expected)
        freed = choose_contact(OTHER, [(MANAGED_QUEUE, contact)], NOW, SETTINGS, present=others)
        assert (freed is not None) is (1 in expected)

    # The manager window gives way to the last-agent hold (agent 4, inside its window) when
    # the manager holds nothing; a manager who holds it comes first.
    @pytest.mark.parametrize(
        ("manager", "last", "excluded", "declined", "expected"),
        [
            pytest.param(None, L_IDLE, NOBODY, NOBODY, [4], id="absent-to_idle_last"),
            pytest.param(None, L_BUSY, NOBODY, NOBODY, [], id="absent-to_busy_last"),
            pytest.param(None, None, NOBODY, NOBODY, [1], id="absent-no_last_present"),
            pytest.param(M_CHAT_IDLE, L_BUSY, NOBODY, NOBODY, [], id="no_channel-to_busy_last"),
            pytest.param(M_CHAT_IDLE, L_IDLE, NOBODY, NOBODY, [4], id="no_channel-to_idle_last"),
            pytest.param(
                replace(M_BUSY, skills=M_NO_STEP_SKILL),
                L_BUSY,
                NOBODY,
                NOBODY,
                [],
                id="no_step_skill-to_busy_last",
            ),
            pytest.param(M_BUSY, L_IDLE, M, NOBODY, [4], id="excluded-to_idle_last"),
            pytest.param(M_IDLE, L_IDLE, NOBODY, M, [4], id="declined-to_idle_last"),
            pytest.param(M_IDLE, L_BUSY, NOBODY, M, [], id="declined-to_busy_last"),
            pytest.param(M_IDLE, L_IDLE, M, frozenset({4}), [1, 4], id="neither_holds"),
            pytest.param(M_BUSY, L_IDLE, NOBODY, NOBODY, [], id="busy_manager_holds_first"),
            pytest.param(M_IDLE, L_IDLE, NOBODY, NOBODY, [3], id="idle_manager_holds_first"),
        ],
    )
    def test_inside_the_window_a_manager_who_holds_nothing_falls_to_the_last_agent(
        self,
        manager: AgentView | None,
        last: AgentView | None,
        excluded: frozenset[int],
        declined: frozenset[int],
        expected: list[int],
    ) -> None:
        contact = replace(
            _managed(INSIDE, excluded, declined), last_agent_id=4, last_agent_until=later(30)
        )
        present = [a for a in (manager, last) if a is not None]
        agents = [OTHER, *present]
        assert ids(rank_agents(MANAGED_QUEUE, contact, agents, NOW, SETTINGS)) == expected
        batch = match([(MANAGED_QUEUE, contact)], agents, NOW, SETTINGS)
        assert _summary(batch) == [(1, agent_id) for agent_id in expected[:1]]
        assert may_take(OTHER, MANAGED_QUEUE, contact, NOW, present=present) is (1 in expected)

    @pytest.mark.parametrize(
        ("waited", "last_until", "expected"),
        [
            pytest.param(INSIDE, later(30), (3, 4), id="both_windows_open"),
            pytest.param(INSIDE, NOW, (3,), id="manager_window_only"),
            pytest.param(AFTER, later(30), (4,), id="last_agent_window_only"),
            pytest.param(59.999999, None, (3,), id="manager_window_a_microsecond_before_end"),
            pytest.param(AFTER, None, (), id="neither"),
        ],
    )
    def test_holders_are_the_agents_of_the_open_windows(
        self, waited: float, last_until: datetime | None, expected: tuple[int, ...]
    ) -> None:
        contact = make_contact(
            tier=PLATINUM, manager=3, waited=waited, last_agent=4, last_until=last_until
        )
        assert holders(contact, NOW) == expected

    def test_a_tier_without_a_window_has_no_manager_holder(self) -> None:
        assert holders(make_contact(tier=GOLD, manager=3, waited=1), NOW) == ()

    def test_a_batch_serves_others_while_a_present_manager_holds_a_contact(self) -> None:
        # An absent manager's contact is served at once; a busy one's waits, and holds up
        # nothing else.
        waiting = [
            (MANAGED_QUEUE, replace(_managed(INSIDE, NOBODY, NOBODY), id=1)),
            (
                MANAGED_QUEUE,
                replace(_managed(INSIDE - 1, NOBODY, NOBODY), id=2, relationship_manager_id=5),
            ),
            (MANAGED_QUEUE, make_contact(3, waited=5, needs=[("cards", 3)])),
        ]
        agents = [OTHER, replace(OTHER, id=2, idle_since=ago(400)), M_BUSY]
        assert _summary(match(waiting, agents, NOW, SETTINGS)) == [(2, 1), (3, 2)]


class TestDeclined:
    """An agent who declined or missed a contact gets it again only when nobody else may."""

    def test_agent_who_declined_goes_after_a_worse_agent_by_strategy(self) -> None:
        contact = make_contact(declined=frozenset({1}))
        ranked = rank([make_agent(1, idle=500), make_agent(2, idle=5)], contact)
        assert ids(ranked) == [2, 1]
        assert ranked[0].reason.tie_break == "declined"
        assert ranked[0].reason.runner_up_agent_id == 1

    def test_agent_who_declined_still_takes_it_when_alone(self) -> None:
        contact = make_contact(declined=frozenset({1}))
        ranked = rank([make_agent(1, idle=500)], contact)
        assert ids(ranked) == [1]
        assert ranked[0].reason.tie_break is None

    def test_declining_outranks_affinity(self) -> None:
        contact = make_contact(tier=PLATINUM, manager=3, waited=60, declined=frozenset({3}))
        ranked = rank([make_agent(3, idle=500), make_agent(2, idle=1)], contact)
        assert ids(ranked) == [2, 3]
        assert ranked[1].reason.affinity is Affinity.RELATIONSHIP_MANAGER

    def test_match_gives_the_contact_to_someone_else_while_anyone_else_may_take_it(self) -> None:
        contact = make_contact(1, declined=frozenset({1, 2}))
        agents = [make_agent(1, idle=500), make_agent(2, idle=400), make_agent(3, idle=1)]
        assert _summary(match([(SUPPORT, contact)], agents, NOW, SETTINGS)) == [(1, 3)]

    def test_match_tops_up_the_shortlist_from_those_who_declined(self) -> None:
        contact = make_contact(1, declined=frozenset({1, 2}))
        agents = [make_agent(1, idle=500), make_agent(2, idle=400)]
        matches = match([(SUPPORT, contact)], agents, NOW, SETTINGS)
        assert _summary(matches) == [(1, 1)]
        assert matches[0].reason.runner_up_agent_id == 2
        assert matches[0].reason.tie_break == "idle_since"

    def test_match_offers_a_decliner_once_the_others_are_taken_in_the_batch(self) -> None:
        waiting = [
            (SUPPORT, make_contact(1, waited=20, declined=frozenset({1}))),
            (SUPPORT, make_contact(2, waited=10, declined=frozenset({1, 2}))),
        ]
        agents = [make_agent(1, idle=500), make_agent(2, idle=400)]
        assert _summary(match(waiting, agents, NOW, SETTINGS)) == [(1, 2), (2, 1)]


# --- reasons ---------------------------------------------------------------------------------


class TestReason:
    def test_reason_names_step_rule_strategy_score_and_contact_deadline(self) -> None:
        contact = make_contact(9, tier=GOLD, waited=12)
        agents = [make_agent(1, skills={"billing": 5, "cards": 3}, idle=40), make_agent(2, idle=9)]
        agents[1] = replace(agents[1], skills={"billing": 6, "cards": 4})
        reason = rank(agents, contact, BILLING_AND_CARDS)[0].reason
        assert reason == Reason(
            queue_id=1,
            contact_id=9,
            agent_id=1,
            tier="gold",
            step=0,
            rule="steps[0] requires billing>=5, cards>=3",
            strategy=Strategy.LONGEST_IDLE,
            score=40.0,
            affinity=None,
            tie_break="idle_since",
            runner_up_agent_id=2,
            agents_ranked=2,
            deadline=later(8),
            overdue=False,
            waited_s=12.0,
        )

    @pytest.mark.parametrize(
        ("queue", "in_queue", "step", "rule"),
        [
            pytest.param(
                TWO_EXPIRING_STEPS, 90, None, "any agent: all routing steps expired", id="expired"
            ),
            pytest.param(make_queue(), 0, None, "any agent: queue has no routing steps", id="none"),
            pytest.param(
                make_queue(steps=[make_step(expires=None)]),
                0,
                0,
                "steps[0] requires no skills",
                id="step_without_skills",
            ),
            pytest.param(THREE_STEPS, 45, 1, "steps[1] requires billing>=5", id="second_step"),
        ],
    )
    def test_reason_states_the_eligibility_rule(
        self, queue: QueueRules, in_queue: float, step: int | None, rule: str
    ) -> None:
        agent = make_agent(1, skills={"billing": 10})
        reason = rank([agent], make_contact(in_queue=in_queue), queue)[0].reason
        assert (reason.step, reason.rule) == (step, rule)

    @pytest.mark.parametrize(
        ("queue", "in_queue", "rule"),
        [
            pytest.param(
                THREE_STEPS,
                45,
                "steps[1] requires billing>=5; contact requires spanish>=4, cards>=1",
                id="step",
            ),
            pytest.param(
                TWO_EXPIRING_STEPS,
                90,
                "any agent: all routing steps expired; contact requires spanish>=4, cards>=1",
                id="expired",
            ),
            pytest.param(
                make_queue(),
                0,
                "any agent: queue has no routing steps; contact requires spanish>=4, cards>=1",
                id="none",
            ),
        ],
    )
    def test_reason_names_the_contacts_own_skills(
        self, queue: QueueRules, in_queue: float, rule: str
    ) -> None:
        agent = make_agent(1, skills={"billing": 10, "spanish": 4, "cards": 1})
        contact = make_contact(in_queue=in_queue, needs=[("spanish", 4), ("cards", 1)])
        assert rank([agent], contact, queue)[0].reason.rule == rule

    def test_reason_marks_overdue_contact(self) -> None:
        reason = rank([make_agent(1)], make_contact(waited=91))[0].reason
        assert reason.overdue
        assert reason.deadline == ago(31)

    def test_only_candidate_has_no_tie_break_or_runner_up(self) -> None:
        reason = rank([make_agent(1)])[0].reason
        assert (reason.tie_break, reason.runner_up_agent_id) == (None, None)
        assert reason.agents_ranked == 1
        assert (reason.contact_tie_break, reason.next_contact_id) == (None, None)

    def test_as_dict_is_json_serialisable_and_complete(self) -> None:
        contact = make_contact(4, tier=PLATINUM, manager=3, waited=100)
        reason = rank([make_agent(3, idle=2), make_agent(1)], contact)[0].reason
        reason = replace(reason, contact_tie_break="deadline", next_contact_id=5)
        as_dict = reason.as_dict()
        assert json.loads(json.dumps(as_dict)) == as_dict
        assert as_dict == {
            "queue_id": 1,
            "contact_id": 4,
            "agent_id": 3,
            "tier": "platinum",
            "step": None,
            "rule": "any agent: queue has no routing steps",
            "strategy": "longest_idle",
            "score": 2.0,
            "affinity": "relationship_manager",
            "tie_break": "relationship_manager",
            "runner_up_agent_id": 1,
            "agents_ranked": 2,
            "deadline": "2026-11-22T08:58:30+00:00",
            "overdue": True,
            "waited_s": 100.0,
            "contact_tie_break": "deadline",
            "next_contact_id": 5,
        }

    def test_as_dict_without_affinity_gives_null(self) -> None:
        assert rank([make_agent(1)])[0].reason.as_dict()["affinity"] is None


# --- choose_agent / choose_contact ---------------------------------------------------------


class TestChooseAgent:
    def test_best_ranked_agent_is_chosen_with_runner_up_in_reason(self) -> None:
        agents = [make_agent(1, idle=5), make_agent(2, idle=50), make_agent(3, idle=20)]
        chosen = choose_agent(make_queue(), make_contact(), agents, NOW, SETTINGS)
        assert chosen is not None
        assert chosen.agent.id == 2
        assert (chosen.reason.runner_up_agent_id, chosen.reason.agents_ranked) == (3, 3)

    def test_none_when_no_agent_is_eligible(self) -> None:
        agents = [make_agent(1, load=1), make_agent(2, skills={"billing": 1})]
        assert choose_agent(BILLING_AND_CARDS, make_contact(), agents, NOW, SETTINGS) is None

    def test_none_while_contact_waits_for_its_manager(self) -> None:
        agents = [make_agent(1), make_agent(3, load=1)]
        assert choose_agent(make_queue(), PLATINUM_WITH_MANAGER, agents, NOW, SETTINGS) is None


SUPPORT = make_queue(queue_id=1)
BILLING = make_queue(steps=[make_step(("billing", 5), expires=None)], queue_id=2)


class TestChooseContact:
    def test_platinum_waited_1s_is_offered_before_standard_waited_10s(self) -> None:
        candidates = [
            (SUPPORT, make_contact(1, tier=STANDARD, waited=10)),
            (SUPPORT, make_contact(2, tier=PLATINUM, waited=1)),
        ]
        chosen = choose_contact(make_agent(1), candidates, NOW, SETTINGS)
        assert chosen is not None
        assert (chosen.contact.id, chosen.agent_id, chosen.queue) == (2, 1, SUPPORT)
        assert (chosen.reason.next_contact_id, chosen.reason.contact_tie_break) == (1, "deadline")
        assert (chosen.reason.agents_ranked, chosen.reason.tie_break) == (1, None)

    def test_overdue_standard_is_offered_before_fresh_platinum(self) -> None:
        candidates = [
            (SUPPORT, make_contact(1, tier=PLATINUM, waited=0)),
            (SUPPORT, make_contact(2, tier=STANDARD, waited=91)),
        ]
        chosen = choose_contact(make_agent(1), candidates, NOW, SETTINGS)
        assert chosen is not None
        assert chosen.contact.id == 2
        assert chosen.reason.overdue
        assert chosen.reason.contact_tie_break == "overdue"

    @pytest.mark.parametrize(
        ("second", "tie_break"),
        [
            pytest.param(make_contact(2, tier=PLATINUM, waited=45), "enqueued_at", id="overdue"),
            pytest.param(make_contact(2, tier=GOLD, waited=100), "contact_id", id="same_time"),
        ],
    )
    def test_reason_names_what_put_the_contact_ahead(
        self, second: ContactView, tie_break: str
    ) -> None:
        candidates = [(SUPPORT, second), (SUPPORT, make_contact(1, tier=GOLD, waited=100))]
        chosen = choose_contact(make_agent(1), candidates, NOW, SETTINGS)
        assert chosen is not None
        assert (chosen.contact.id, chosen.reason.contact_tie_break) == (1, tie_break)

    def test_reason_names_enqueue_time_for_equal_deadlines(self) -> None:
        candidates = [
            (SUPPORT, make_contact(1, tier=PLATINUM, waited=0)),
            (SUPPORT, make_contact(2, tier=GOLD, waited=10)),
        ]
        chosen = choose_contact(make_agent(1), candidates, NOW, SETTINGS)
        assert chosen is not None
        assert (chosen.contact.id, chosen.reason.contact_tie_break) == (2, "enqueued_at")

    def test_earlier_contact_needing_missing_skill_is_skipped(self) -> None:
        candidates = [
            (BILLING, make_contact(1, tier=PLATINUM, waited=5)),
            (SUPPORT, make_contact(2, waited=1)),
        ]
        chosen = choose_contact(make_agent(1, skills={"billing": 4}), candidates, NOW, SETTINGS)
        assert chosen is not None
        assert (chosen.contact.id, chosen.reason.next_contact_id) == (2, None)

    def test_contact_reserved_for_another_manager_is_skipped(self) -> None:
        candidates = [
            (SUPPORT, make_contact(1, tier=PLATINUM, manager=3, waited=5)),
            (SUPPORT, make_contact(2, waited=1)),
        ]
        busy_manager = make_agent(3, load=1)
        chosen = choose_contact(make_agent(1), candidates, NOW, SETTINGS, present=[busy_manager])
        alone = choose_contact(make_agent(1), candidates, NOW, SETTINGS)
        assert chosen is not None
        assert chosen.contact.id == 2
        assert alone is not None
        assert alone.contact.id == 1  # the manager is not present: nothing holds it

    def test_manager_is_offered_their_reserved_contact(self) -> None:
        candidates = [
            (SUPPORT, make_contact(2, waited=1)),
            (SUPPORT, make_contact(1, tier=PLATINUM, manager=3, waited=5)),
        ]
        chosen = choose_contact(make_agent(3), candidates, NOW, SETTINGS)
        assert chosen is not None
        assert chosen.contact.id == 1
        assert chosen.reason.affinity is Affinity.RELATIONSHIP_MANAGER
        assert chosen.reason.next_contact_id == 2

    def test_contact_the_agent_just_rejected_is_skipped(self) -> None:
        candidates = [
            (SUPPORT, make_contact(1, tier=PLATINUM, waited=5, excluded=frozenset({1}))),
            (SUPPORT, make_contact(2, waited=1)),
        ]
        chosen = choose_contact(make_agent(1), candidates, NOW, SETTINGS)
        assert chosen is not None
        assert chosen.contact.id == 2

    def test_contact_on_a_channel_with_spare_capacity_is_chosen(self) -> None:
        agent = AgentView(
            1, {}, NOW, load={"voice": 1, "chat": 0}, capacity={"voice": 1, "chat": 2}
        )
        candidates = [
            (SUPPORT, make_contact(1, tier=PLATINUM, waited=5)),
            (SUPPORT, make_contact(2, channel="chat", waited=1)),
        ]
        chosen = choose_contact(agent, candidates, NOW, SETTINGS)
        assert chosen is not None
        assert chosen.contact.id == 2

    @pytest.mark.parametrize(
        "candidates",
        [
            pytest.param([], id="no_contacts"),
            pytest.param([(BILLING, make_contact(1))], id="only_contacts_needing_other_skills"),
            pytest.param(
                [(SUPPORT, make_contact(1, channel="chat"))], id="only_contacts_on_full_channel"
            ),
        ],
    )
    def test_none_when_the_agent_may_take_nothing(
        self, candidates: list[tuple[QueueRules, ContactView]]
    ) -> None:
        agent = AgentView(1, {}, NOW, load={"chat": 3}, capacity={"voice": 1, "chat": 3})
        assert choose_contact(agent, candidates, NOW, SETTINGS) is None


# --- match ------------------------------------------------------------------------------------


def _summary(matches: Sequence[Match]) -> list[tuple[int, int]]:
    return [(m.contact.id, m.agent_id) for m in matches]


class TestMatch:
    def test_contacts_in_order_get_best_remaining_agents(self) -> None:
        waiting = [
            (SUPPORT, make_contact(1, tier=STANDARD, waited=10)),
            (SUPPORT, make_contact(2, tier=PLATINUM, waited=1)),
        ]
        agents = [make_agent(1, idle=5), make_agent(2, idle=50)]
        assert _summary(match(waiting, agents, NOW, SETTINGS)) == [(2, 2), (1, 1)]

    def test_no_contacts_or_no_agents_gives_no_matches(self) -> None:
        assert match([], [make_agent(1)], NOW, SETTINGS) == []
        assert match([(SUPPORT, make_contact())], [], NOW, SETTINGS) == []

    def test_capacity_is_never_exceeded_within_a_batch(self) -> None:
        waiting = [(SUPPORT, make_contact(n, channel="chat", waited=n)) for n in (1, 2, 3)]
        agent = make_agent(1, channel="chat", capacity=2)
        assert _summary(match(waiting, [agent], NOW, SETTINGS)) == [(3, 1), (2, 1)]

    def test_agent_with_existing_load_gets_only_its_spare_capacity(self) -> None:
        waiting = [(SUPPORT, make_contact(n, channel="chat", waited=n)) for n in (1, 2, 3)]
        agent = make_agent(1, channel="chat", load=2, capacity=3)
        assert _summary(match(waiting, [agent], NOW, SETTINGS)) == [(3, 1)]

    def test_capacity_is_counted_per_channel(self) -> None:
        waiting = [
            (SUPPORT, make_contact(1, waited=9)),
            (SUPPORT, make_contact(2, waited=8)),
            (SUPPORT, make_contact(3, channel="chat", waited=7)),
            (SUPPORT, make_contact(4, channel="chat", waited=6)),
        ]
        agent = AgentView(1, {}, NOW, load={}, capacity={"voice": 1, "chat": 2})
        assert _summary(match(waiting, [agent], NOW, SETTINGS)) == [(1, 1), (3, 1), (4, 1)]

    def test_contact_without_eligible_agent_does_not_block_later_ones(self) -> None:
        waiting = [
            (BILLING, make_contact(1, tier=PLATINUM, waited=5)),
            (SUPPORT, make_contact(2, waited=1)),
        ]
        assert _summary(match(waiting, [make_agent(1)], NOW, SETTINGS)) == [(2, 1)]

    @pytest.mark.parametrize("strategy", list(Strategy))
    def test_contacts_of_one_step_with_different_skills_go_to_the_agents_holding_them(
        self, strategy: Strategy
    ) -> None:
        # Agent 1 is first by every strategy, but only contact 2 may go to it: an index of
        # acceptable agents kept per step alone would give contact 1 agent 1 (or leave
        # contact 2 with agent 2, who lacks its skill).
        queue = make_queue(strategy, [make_step(("billing", 1), expires=None)])
        waiting = [
            (queue, make_contact(1, waited=20, needs=[("french", 2)])),
            (queue, make_contact(2, waited=10, needs=[("spanish", 2)])),
        ]
        agents = [
            make_agent(1, skills={"billing": 9, "spanish": 2}, idle=90, offered_ago=90),
            make_agent(2, skills={"billing": 1, "french": 2}, idle=10, offered_ago=10),
        ]
        assert _summary(match(waiting, agents, NOW, SETTINGS)) == [(1, 2), (2, 1)]

    def test_contact_whose_skills_nobody_holds_waits_and_others_are_served(self) -> None:
        waiting = [
            (SUPPORT, make_contact(1, waited=20, needs=[("japanese", 1)])),
            (SUPPORT, make_contact(2, waited=10)),
        ]
        matches = match(waiting, [make_agent(1, skills={"spanish": 10})], NOW, SETTINGS)
        assert _summary(matches) == [(2, 1)]
        assert matches[0].reason.next_contact_id is None

    def test_contact_waits_for_its_manager_while_others_are_served(self) -> None:
        waiting = [
            (SUPPORT, make_contact(1, tier=PLATINUM, manager=3, waited=5)),
            (SUPPORT, make_contact(2, waited=1)),
        ]
        agents = [make_agent(1, idle=99), make_agent(3, load=1)]
        assert _summary(match(waiting, agents, NOW, SETTINGS)) == [(2, 1)]

    @pytest.mark.parametrize(
        "strategy",
        [Strategy.LONGEST_IDLE, Strategy.ROUND_ROBIN, Strategy.FEWEST_CONTACTS],
    )
    def test_batch_spreads_contacts_over_multi_capacity_agents(self, strategy: Strategy) -> None:
        queue = make_queue(strategy)
        waiting = [(queue, make_contact(n, channel="chat", waited=10 - n)) for n in (1, 2, 3)]
        agents = [
            make_agent(1, channel="chat", capacity=3, idle=50, offered_ago=50),
            make_agent(2, channel="chat", capacity=3, idle=10, offered_ago=10),
        ]
        assert _summary(match(waiting, agents, NOW, SETTINGS)) == [(1, 1), (2, 2), (3, 1)]

    def test_batch_fills_least_occupied_agent_first(self) -> None:
        queue = make_queue(Strategy.LEAST_OCCUPIED)
        waiting = [(queue, make_contact(n, channel="chat", waited=10 - n)) for n in (1, 2, 3)]
        agents = [_chat_agent(1, load=1, capacity=4), _chat_agent(2, load=0, capacity=2)]
        # 1/4 vs 0/2 -> agent 2; then 1/4 vs 1/2 -> agent 1; then 2/4 vs 1/2 tie -> longer idle
        # (both were just offered at NOW) -> lowest id.
        assert _summary(match(waiting, agents, NOW, SETTINGS)) == [(1, 2), (2, 1), (3, 1)]

    def test_reason_names_the_next_contact_the_agent_could_have_taken(self) -> None:
        waiting = [
            (SUPPORT, make_contact(1, tier=PLATINUM, waited=5)),
            (BILLING, make_contact(2, waited=50)),
            (SUPPORT, make_contact(3, waited=10)),
        ]
        agents = [make_agent(1, idle=20), make_agent(2, skills={"billing": 7})]
        matches = match(waiting, agents, NOW, SETTINGS)
        assert _summary(matches) == [(1, 1), (2, 2)]
        assert (matches[0].reason.next_contact_id, matches[0].reason.contact_tie_break) == (
            3,
            "deadline",
        )
        assert matches[0].reason.runner_up_agent_id == 2
        assert matches[1].reason.next_contact_id == 3

    def test_last_matched_contact_has_no_next_contact(self) -> None:
        matches = match([(SUPPORT, make_contact(1))], [make_agent(1)], NOW, SETTINGS)
        assert (matches[0].reason.next_contact_id, matches[0].reason.contact_tie_break) == (
            None,
            None,
        )


# --- match properties ------------------------------------------------------------------------

SKILLS = ("billing", "cards", "loans")
CHANNELS = ("voice", "chat")
AGENT_IDS = st.integers(1, 8)
READY = st.sampled_from([True, True, True, False])  # mostly ready


@st.composite
def steps_st(draw: st.DrawFn) -> tuple[Step, ...]:
    count = draw(st.integers(0, 3))
    steps = []
    for index in range(count):
        reqs = draw(
            st.lists(
                st.builds(SkillReq, st.sampled_from(SKILLS), st.integers(1, 10)),
                max_size=2,
            )
        )
        last = index == count - 1
        expiry = st.one_of(st.none(), st.integers(1, 90)) if last else st.integers(1, 90)
        steps.append(Step(tuple(reqs), draw(expiry)))
    return tuple(steps)


queues_st = st.builds(QueueRules, st.integers(1, 4), st.sampled_from(list(Strategy)), steps_st())


@st.composite
def agent_st(draw: st.DrawFn, agent_id: int) -> AgentView:
    per_channel = st.dictionaries(st.sampled_from(CHANNELS), st.integers(0, 3))
    offered = draw(st.one_of(st.none(), st.integers(0, 300)))
    return AgentView(
        id=agent_id,
        skills=draw(st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 10))),
        idle_since=ago(draw(st.integers(-5, 300))),
        load=draw(per_channel),
        capacity=draw(per_channel),
        contacts_today=draw(st.integers(0, 5)),
        last_offer_at=None if offered is None else ago(offered),
        ready=draw(READY),
    )


@st.composite
def waiting_contact_st(draw: st.DrawFn, contact_id: int) -> tuple[QueueRules, ContactView]:
    waited = draw(st.integers(0, 300))
    until = draw(st.one_of(st.none(), st.integers(-30, 30)))
    contact = make_contact(
        contact_id,
        tier=draw(st.sampled_from(TIERS)),
        channel=draw(st.sampled_from(CHANNELS)),
        waited=waited,
        in_queue=draw(st.integers(0, waited)),
        manager=draw(st.one_of(st.none(), AGENT_IDS)),
        last_agent=draw(st.one_of(st.none(), AGENT_IDS)),
        last_until=None if until is None else later(until),
        excluded=draw(st.frozensets(AGENT_IDS, max_size=2)),
        needs=draw(st.lists(st.tuples(st.sampled_from(SKILLS), st.integers(1, 10)), max_size=2)),
    )
    return draw(queues_st), contact


@st.composite
def scenario_st(
    draw: st.DrawFn,
) -> tuple[list[tuple[QueueRules, ContactView]], list[AgentView]]:
    agent_ids = draw(st.lists(AGENT_IDS, unique=True, max_size=6))
    agents = [draw(agent_st(agent_id)) for agent_id in agent_ids]
    contact_ids = draw(st.lists(st.integers(1, 40), unique=True, max_size=10))
    waiting = [draw(waiting_contact_st(contact_id)) for contact_id in contact_ids]
    return waiting, agents


Scenario = tuple[list[tuple[QueueRules, ContactView]], list[AgentView]]


def _final_agents(agents: Sequence[AgentView], matches: Sequence[Match]) -> list[AgentView]:
    added = Counter((m.agent_id, m.contact.channel) for m in matches)
    return [
        replace(
            agent,
            load={
                channel: agent.load.get(channel, 0) + added[agent.id, channel]
                for channel in CHANNELS
            },
        )
        for agent in agents
    ]


def _unloaded(agent: AgentView) -> AgentView:
    return replace(agent, load={})


class TestMatchProperties:
    @PROPERTY
    @given(scenario_st())
    def test_no_agent_exceeds_capacity_on_any_channel(self, scenario: Scenario) -> None:
        waiting, agents = scenario
        matches = match(waiting, agents, NOW, SETTINGS)
        added = Counter((m.agent_id, m.contact.channel) for m in matches)
        for agent in agents:
            for channel in CHANNELS:
                if added[agent.id, channel]:
                    total = agent.load.get(channel, 0) + added[agent.id, channel]
                    assert total <= agent.capacity.get(channel, 0)

    @PROPERTY
    @given(scenario_st())
    def test_each_contact_is_matched_at_most_once(self, scenario: Scenario) -> None:
        waiting, agents = scenario
        matched = [m.contact.id for m in match(waiting, agents, NOW, SETTINGS)]
        assert len(matched) == len(set(matched))

    @PROPERTY
    @given(scenario_st())
    def test_every_match_is_one_the_agent_may_take(self, scenario: Scenario) -> None:
        waiting, agents = scenario
        by_id = {agent.id: agent for agent in agents}
        for m in match(waiting, agents, NOW, SETTINGS):
            # Skills, exclusion, manager window and hold; capacity is the property above.
            agent = _unloaded(by_id[m.agent_id])
            assert may_take(agent, m.queue, m.contact, NOW, present=agents)
            assert m.reason.agent_id == m.agent_id
            assert m.reason.contact_id == m.contact.id

    @PROPERTY
    @given(scenario_st())
    def test_work_conservation_no_unmatched_contact_has_an_agent_who_may_take_it(
        self, scenario: Scenario
    ) -> None:
        waiting, agents = scenario
        matches = match(waiting, agents, NOW, SETTINGS)
        matched = {m.contact.id for m in matches}
        final = _final_agents(agents, matches)
        for queue, contact in waiting:
            if contact.id not in matched:
                assert not any(
                    may_take(agent, queue, contact, NOW, present=final) for agent in final
                )

    @PROPERTY
    @given(scenario_st())
    def test_no_agent_gets_a_contact_while_an_earlier_one_it_could_take_waits(
        self, scenario: Scenario
    ) -> None:
        waiting, agents = scenario
        matches = match(waiting, agents, NOW, SETTINGS)
        matched = {m.contact.id for m in matches}
        by_id = {agent.id: agent for agent in agents}
        for m in matches:
            key = contact_order_key(m.contact, NOW, SETTINGS)
            agent = _unloaded(by_id[m.agent_id])
            for queue, contact in waiting:
                earlier = contact_order_key(contact, NOW, SETTINGS) < key
                # The agent had room on this channel then: it still had room for m later.
                if earlier and contact.id not in matched and contact.channel == m.contact.channel:
                    assert not may_take(agent, queue, contact, NOW, present=agents)

    @PROPERTY
    @given(scenario_st(), st.data())
    def test_choose_contact_picks_the_first_contact_the_agent_may_take(
        self, scenario: Scenario, data: st.DataObject
    ) -> None:
        waiting, agents = scenario
        agent = data.draw(agent_st(1))
        chosen = choose_contact(agent, waiting, NOW, SETTINGS, present=agents)
        takeable = [
            contact_order_key(c, NOW, SETTINGS)
            for q, c in waiting
            if may_take(agent, q, c, NOW, present=agents)
        ]
        if chosen is None:
            assert takeable == []
        else:
            assert contact_order_key(chosen.contact, NOW, SETTINGS) == min(takeable)

    @PROPERTY
    @given(scenario_st())
    def test_rank_agents_returns_exactly_the_agents_who_may_take_the_contact(
        self, scenario: Scenario
    ) -> None:
        waiting, agents = scenario
        for queue, contact in waiting:
            ranked = rank_agents(queue, contact, agents, NOW, SETTINGS)
            expected = {a.id for a in agents if may_take(a, queue, contact, NOW, present=agents)}
            assert set(ids(ranked)) == expected
            assert len(ranked) == len(expected)


# --- reference implementation ----------------------------------------------------------------
#
# The straightforward algorithm the optimised module replaced, kept here in substance: a
# dataclass per agent and sort keys of ``Fraction``s. The properties below check that the
# optimised ``match``, ``rank_agents``, ``choose_agent`` and ``choose_contact`` give exactly
# its results, and ``bench/scoring.py`` times it against them.

_RefTerms = tuple[float | None, tuple[Fraction, ...]]
_RefStrategyTerms = Callable[[AgentView, str, frozenset[str], datetime], _RefTerms]
_REF_MICROSECOND = timedelta(microseconds=1)
_RefWaiting = tuple[QueueRules, ContactView]


def _ref_micros(delta: timedelta) -> int:
    return delta // _REF_MICROSECOND


def _ref_in_rm_window(contact: ContactView, now: datetime) -> bool:
    if contact.relationship_manager_id is None or contact.tier.rm_affinity_s <= 0:
        return False
    return now < contact.enqueued_at + timedelta(seconds=contact.tier.rm_affinity_s)


def _ref_qualified(
    agent: AgentView, queue: QueueRules, contact: ContactView, step: int | None
) -> bool:
    if agent.id in contact.excluded_agent_ids:
        return False
    reqs = (*(() if step is None else queue.steps[step].skills), *contact.skills)
    return all(agent.skills.get(req.skill, 0) >= req.min_level for req in reqs)


def _ref_only(
    queue: QueueRules,
    contact: ContactView,
    step: int | None,
    now: datetime,
    present: dict[int, AgentView],
) -> int | None:
    """The one agent who may take the contact: its manager inside the manager window, else
    its last agent inside the last-agent window, each while present, qualified and not a
    decliner."""
    if _ref_in_rm_window(contact, now):
        manager = _ref_holding(contact.relationship_manager_id, queue, contact, step, present)
        if manager is not None:
            return manager
    until = contact.last_agent_until
    if until is None or now >= until:
        return None
    return _ref_holding(contact.last_agent_id, queue, contact, step, present)


def _ref_holding(
    agent_id: int | None,
    queue: QueueRules,
    contact: ContactView,
    step: int | None,
    present: dict[int, AgentView],
) -> int | None:
    agent = None if agent_id is None else present.get(agent_id)
    if agent is None or agent.id in contact.declined_by:
        return None
    if agent.capacity.get(contact.channel, 0) == 0:
        return None
    return agent.id if _ref_qualified(agent, queue, contact, step) else None


def _ref_acceptable_at(
    agent: AgentView, queue: QueueRules, contact: ContactView, step: int | None, only: int | None
) -> bool:
    if only is not None and agent.id != only:
        return False
    if not agent.ready:
        return False
    if not agent.load.get(contact.channel, 0) < agent.capacity.get(contact.channel, 0):
        return False
    return _ref_qualified(agent, queue, contact, step)


def _ref_present(
    agents: Iterable[AgentView], agent: AgentView | None = None
) -> dict[int, AgentView]:
    present = {a.id: a for a in agents}
    if agent is not None:
        present[agent.id] = agent
    return present


def reference_may_take(
    agent: AgentView,
    queue: QueueRules,
    contact: ContactView,
    now: datetime,
    present: Iterable[AgentView] = (),
) -> bool:
    step = current_step(queue, contact, now)
    only = _ref_only(queue, contact, step, now, _ref_present(present, agent))
    return _ref_acceptable_at(agent, queue, contact, step, only)


def _ref_first_difference(
    names: Sequence[str], winner: Sequence[object], other: Sequence[object]
) -> str:
    differing = (name for name, a, b in zip(names, winner, other, strict=True) if a != b)
    return next(differing, names[-1])


def _ref_idle_term(agent: AgentView, now: datetime) -> Fraction:
    return Fraction(_ref_micros(agent.idle_since - now))


def _ref_longest_idle(
    agent: AgentView, channel: str, skills: frozenset[str], now: datetime
) -> _RefTerms:
    return (now - agent.idle_since).total_seconds(), (_ref_idle_term(agent, now),)


def _ref_most_skilled(
    agent: AgentView, channel: str, skills: frozenset[str], now: datetime
) -> _RefTerms:
    total = sum(agent.skills.get(skill, 0) for skill in skills)
    return total, (Fraction(-total), _ref_idle_term(agent, now))


def _ref_least_occupied(
    agent: AgentView, channel: str, skills: frozenset[str], now: datetime
) -> _RefTerms:
    occupancy = Fraction(agent.load.get(channel, 0), agent.capacity[channel])
    return float(occupancy), (occupancy, _ref_idle_term(agent, now))


def _ref_round_robin(
    agent: AgentView, channel: str, skills: frozenset[str], now: datetime
) -> _RefTerms:
    if agent.last_offer_at is None:
        return None, (Fraction(0), Fraction(0))
    return (now - agent.last_offer_at).total_seconds(), (
        Fraction(1),
        Fraction(_ref_micros(agent.last_offer_at - now)),
    )


def _ref_fewest_contacts(
    agent: AgentView, channel: str, skills: frozenset[str], now: datetime
) -> _RefTerms:
    return agent.contacts_today, (Fraction(agent.contacts_today), _ref_idle_term(agent, now))


_REF_STRATEGIES: dict[Strategy, tuple[tuple[str, ...], _RefStrategyTerms]] = {
    Strategy.LONGEST_IDLE: (("idle_since",), _ref_longest_idle),
    Strategy.MOST_SKILLED: (("skill_sum", "idle_since"), _ref_most_skilled),
    Strategy.LEAST_OCCUPIED: (("occupancy", "idle_since"), _ref_least_occupied),
    Strategy.ROUND_ROBIN: (("last_offer_at", "last_offer_at"), _ref_round_robin),
    Strategy.FEWEST_CONTACTS: (("contacts_today", "idle_since"), _ref_fewest_contacts),
}


@dataclass(frozen=True, slots=True)
class _RefCandidate:
    agent: AgentView
    affinity: Affinity | None
    score: float | None
    key: tuple[Fraction, ...]


@dataclass(frozen=True, slots=True)
class _RefDecision:
    queue: QueueRules
    contact: ContactView
    step: int | None
    now: datetime
    settings: DispatchSettings
    only: int | None


def _ref_decision(
    queue: QueueRules,
    contact: ContactView,
    now: datetime,
    settings: DispatchSettings,
    present: dict[int, AgentView],
) -> _RefDecision:
    step = current_step(queue, contact, now)
    only = _ref_only(queue, contact, step, now, present)
    return _RefDecision(queue, contact, step, now, settings, only)


def _ref_candidate(d: _RefDecision, agent: AgentView, skills: frozenset[str]) -> _RefCandidate:
    contact, now = d.contact, d.now
    manager = contact.tier.rm_affinity_s > 0 and agent.id == contact.relationship_manager_id
    until = contact.last_agent_until
    last_agent = agent.id == contact.last_agent_id and until is not None and now < until
    score, terms = _REF_STRATEGIES[d.queue.strategy][1](agent, contact.channel, skills, now)
    declined = agent.id in contact.declined_by
    key = (
        Fraction(declined),
        Fraction(not manager),
        Fraction(not last_agent),
        *terms,
        Fraction(agent.id),
    )
    affinity = Affinity.RELATIONSHIP_MANAGER if manager else None
    if affinity is None and last_agent:
        affinity = Affinity.LAST_AGENT
    return _RefCandidate(agent, affinity, score, key)


def _ref_rule(queue: QueueRules, contact: ContactView, step: int | None) -> str:
    own = ", ".join(str(req) for req in contact.skills)
    tail = f"; contact requires {own}" if own else ""
    if step is None:
        why = "all routing steps expired" if queue.steps else "queue has no routing steps"
        return f"any agent: {why}{tail}"
    skills = ", ".join(str(req) for req in queue.steps[step].skills) or "no skills"
    return f"steps[{step}] requires {skills}{tail}"


def _ref_reason(
    d: _RefDecision, winner: _RefCandidate, runner_up: _RefCandidate | None, ranked: int
) -> Reason:
    queue, contact, now = d.queue, d.contact, d.now
    strategy_names = _REF_STRATEGIES[queue.strategy][0]
    names = ("declined", "relationship_manager", "last_agent", *strategy_names, "agent_id")
    tie_break = None
    if runner_up is not None:
        tie_break = _ref_first_difference(names, winner.key, runner_up.key)
    return Reason(
        queue_id=queue.id,
        contact_id=contact.id,
        agent_id=winner.agent.id,
        tier=contact.tier.name,
        step=d.step,
        rule=_ref_rule(queue, contact, d.step),
        strategy=queue.strategy,
        score=winner.score,
        affinity=winner.affinity,
        tie_break=tie_break,
        runner_up_agent_id=None if runner_up is None else runner_up.agent.id,
        agents_ranked=ranked,
        deadline=deadline(contact),
        overdue=is_overdue(contact, now, d.settings),
        waited_s=(now - contact.enqueued_at).total_seconds(),
    )


def _ref_ranked(d: _RefDecision, agents: Sequence[AgentView], limit: int) -> list[Ranked]:
    queue, step = d.queue, d.step
    steps = queue.steps if step is None else (queue.steps[step],)
    skills = frozenset(req.skill for s in steps for req in s.skills)
    pool = [
        _ref_candidate(d, agent, skills)
        for agent in agents
        if _ref_acceptable_at(agent, queue, d.contact, step, d.only)
    ]
    best = heapq.nsmallest(limit, pool, key=lambda candidate: candidate.key)
    runners_up: list[_RefCandidate | None] = [*best[1:], None]
    return [
        Ranked(winner.agent, _ref_reason(d, winner, runner_up, len(pool)))
        for winner, runner_up in zip(best, runners_up, strict=False)
    ]


def reference_rank_agents(
    queue: QueueRules,
    contact: ContactView,
    agents: Sequence[AgentView],
    now: datetime,
    settings: DispatchSettings,
) -> list[Ranked]:
    d = _ref_decision(queue, contact, now, settings, _ref_present(agents))
    return _ref_ranked(d, agents, len(agents))


def reference_choose_agent(
    queue: QueueRules,
    contact: ContactView,
    agents: Sequence[AgentView],
    now: datetime,
    settings: DispatchSettings,
) -> Ranked | None:
    ranked = _ref_ranked(
        _ref_decision(queue, contact, now, settings, _ref_present(agents)), agents, 2
    )
    return ranked[0] if ranked else None


def _ref_in_contact_order(
    waiting: Sequence[_RefWaiting], now: datetime, settings: DispatchSettings
) -> list[_RefWaiting]:
    return sorted(waiting, key=lambda pair: contact_order_key(pair[1], now, settings))


def _ref_with_next_contact(
    reason: Reason, chosen: ContactView, following: _RefWaiting | None, d: _RefDecision
) -> Reason:
    if following is None:
        return reason
    winner = contact_order_key(chosen, d.now, d.settings)
    other = contact_order_key(following[1], d.now, d.settings)
    primary = "enqueued_at" if winner.overdue_rank == 0 else "deadline"
    names = ("overdue", primary, "enqueued_at", "contact_id")
    tie = _ref_first_difference(names, winner, other)
    return replace(reason, contact_tie_break=tie, next_contact_id=following[1].id)


def reference_choose_contact(
    agent: AgentView,
    candidates: Sequence[_RefWaiting],
    now: datetime,
    settings: DispatchSettings,
    present: Iterable[AgentView] = (),
) -> Match | None:
    everyone = _ref_present(present, agent)
    takeable = [
        pair
        for pair in _ref_in_contact_order(candidates, now, settings)
        if reference_may_take(agent, pair[0], pair[1], now, everyone.values())
    ]
    if not takeable:
        return None
    queue, contact = takeable[0]
    d = _ref_decision(queue, contact, now, settings, everyone)
    ranked = _ref_ranked(d, [agent], 1)[0]
    following = takeable[1] if len(takeable) > 1 else None
    reason = _ref_with_next_contact(ranked.reason, contact, following, d)
    return Match(queue, contact, agent.id, reason)


def _ref_after_offer(agent: AgentView, channel: str, now: datetime) -> AgentView:
    load = {**agent.load, channel: agent.load.get(channel, 0) + 1}
    return replace(
        agent,
        load=load,
        idle_since=now,
        last_offer_at=now,
        contacts_today=agent.contacts_today + 1,
    )


def reference_match(
    waiting: Sequence[_RefWaiting],
    agents: Sequence[AgentView],
    now: datetime,
    settings: DispatchSettings,
) -> list[Match]:
    ordered = _ref_in_contact_order(waiting, now, settings)
    pool = {agent.id: agent for agent in agents}
    matches: list[Match] = []
    for index, (queue, contact) in enumerate(ordered):
        # Offers change loads, never who is present, nor their channels and skills.
        d = _ref_decision(queue, contact, now, settings, pool)
        ranked = _ref_ranked(d, list(pool.values()), 2)
        if not ranked:
            continue
        best = ranked[0]
        later_pairs = ordered[index + 1 :]
        following = next(
            (
                p
                for p in later_pairs
                if reference_may_take(best.agent, p[0], p[1], now, pool.values())
            ),
            None,
        )
        reason = _ref_with_next_contact(best.reason, contact, following, d)
        matches.append(Match(queue, contact, best.agent.id, reason))
        pool[best.agent.id] = _ref_after_offer(best.agent, contact.channel, now)
    return matches


# --- the optimised functions against the reference ---------------------------------------------

# Denser than scenario_st: most agents may take most contacts, contacts share a few queues
# (so agents are ranked again after an offer within the batch) and affinities name agents
# that exist. A few shared values make ties, and so every tie-break, likely.
MICROS = st.one_of(st.sampled_from([0, 1_000_000, 2_500_000]), st.integers(-5_000_000, 3 * 10**8))
RICH_TIERS = (*TIERS, TierPolicy("vip", sl_target_s=15, rank=1, rm_affinity_s=5))
# A contact's own skills: few and low, so that contacts of one step differ in who may take
# them while most still find an agent.
CONTACT_NEEDS = st.builds(SkillReq, st.sampled_from(SKILLS), st.integers(1, 4))


@st.composite
def rich_steps_st(draw: st.DrawFn) -> tuple[Step, ...]:
    count = draw(st.integers(0, 2))
    steps = []
    for index in range(count):
        reqs = draw(
            st.lists(st.builds(SkillReq, st.sampled_from(SKILLS), st.integers(1, 6)), max_size=2)
        )
        expiry = st.one_of(st.integers(1, 120), st.sampled_from([0.25, 0.5, 1.5]))
        last = index == count - 1
        steps.append(Step(tuple(reqs), draw(st.one_of(st.none(), expiry) if last else expiry)))
    return tuple(steps)


@st.composite
def rich_agent_st(draw: st.DrawFn, agent_id: int) -> AgentView:
    offered = draw(st.one_of(st.none(), MICROS))
    return AgentView(
        id=agent_id,
        skills=draw(st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 10), min_size=2)),
        idle_since=NOW - timedelta(microseconds=draw(MICROS)),
        load={"voice": draw(st.integers(0, 1)), "chat": draw(st.integers(0, 3))},
        capacity={"voice": draw(st.integers(0, 2)), "chat": draw(st.integers(0, 6))},
        contacts_today=draw(st.integers(0, 4)),
        last_offer_at=None if offered is None else NOW - timedelta(microseconds=offered),
        ready=draw(READY),
    )


@st.composite
def rich_contact_st(
    draw: st.DrawFn, contact_id: int, queues: list[QueueRules], agent_ids: list[int]
) -> tuple[QueueRules, ContactView]:
    # Either side of the manager windows (5 s, 60 s) as well as anywhere up to 150 s.
    edges = st.sampled_from([4_999_999, 5_000_000, 6_000_000, 60_000_000, 61_000_000])
    waited = draw(st.one_of(edges, st.integers(0, 150_000_000)))
    until = draw(st.one_of(st.none(), st.integers(-10, 60)))
    some_agent = st.one_of(st.none(), st.sampled_from([*agent_ids, 99]))
    contact = ContactView(
        id=contact_id,
        channel=draw(st.sampled_from(CHANNELS)),
        tier=draw(st.sampled_from(RICH_TIERS)),
        enqueued_at=NOW - timedelta(microseconds=waited),
        routing_started_at=NOW - timedelta(microseconds=draw(st.integers(0, waited))),
        relationship_manager_id=draw(some_agent),
        last_agent_id=draw(some_agent),
        last_agent_until=None if until is None else later(until),
        excluded_agent_ids=draw(st.frozensets(st.sampled_from([*agent_ids, 99]), max_size=2)),
        declined_by=draw(st.frozensets(st.sampled_from([*agent_ids, 99]), max_size=3)),
        skills=tuple(draw(st.lists(CONTACT_NEEDS, max_size=1))),
    )
    return draw(st.sampled_from(queues)), contact


@st.composite
def rich_scenario_st(draw: st.DrawFn) -> Scenario:
    # Agent ids may repeat: rank_agents and choose_agent keep every view, match the last one.
    agent_ids = draw(st.lists(st.integers(1, 30), max_size=20))
    agents = [draw(rich_agent_st(agent_id)) for agent_id in agent_ids]
    strategy = draw(st.sampled_from(list(Strategy)))
    queues = draw(
        st.lists(
            st.builds(QueueRules, st.integers(1, 6), st.just(strategy), rich_steps_st()),
            min_size=1,
            max_size=3,
        )
    )
    contact_ids = draw(st.lists(st.integers(1, 60), unique=True, max_size=20))
    waiting = [draw(rich_contact_st(n, queues, agent_ids)) for n in contact_ids]
    return waiting, agents


@st.composite
def affinity_scenario_st(draw: st.DrawFn) -> Scenario:
    """Every contact names a manager (window of 5 or 60 s) and a current last agent."""
    waiting, agents = draw(rich_scenario_st())
    ids = st.sampled_from([agent.id for agent in agents] or [1])
    pinned = [
        replace(
            contact,
            tier=draw(st.sampled_from([RICH_TIERS[-1], PLATINUM])),
            relationship_manager_id=draw(ids),
            last_agent_id=draw(ids),
            last_agent_until=later(1),
        )
        for _, contact in waiting
    ]
    return [(queue, contact) for (queue, _), contact in zip(waiting, pinned, strict=True)], agents


any_scenario_st = st.one_of(scenario_st(), rich_scenario_st(), affinity_scenario_st())


@st.composite
def crowded_scenario_st(draw: st.DrawFn) -> Scenario:
    """Many contacts over few agents (room for several each) and few step signatures.

    ``match`` keeps a heap per signature across the batch, updated after each offer; here each
    is consulted again and again as agents are offered (new entries) and fill up (leave it),
    with declines, exclusions, affinities, strategies mixed within a batch (queues may share
    a step with another strategy), both channels, expiring steps and repeated agent ids.
    """
    agent_ids = draw(st.lists(st.integers(1, 12), min_size=1, max_size=12))
    agents = [draw(rich_agent_st(agent_id)) for agent_id in agent_ids]
    steps = draw(st.lists(rich_steps_st(), min_size=1, max_size=2))
    queues = [
        QueueRules(n, draw(st.sampled_from(list(Strategy))), draw(st.sampled_from(steps)))
        for n in range(1, draw(st.integers(1, 4)) + 1)
    ]
    contact_ids = draw(st.lists(st.integers(1, 200), unique=True, min_size=10, max_size=60))
    waiting = [draw(rich_contact_st(n, queues, agent_ids)) for n in contact_ids]
    return waiting, agents


def _score_types(reasons: Sequence[Reason]) -> list[type]:
    return [type(reason.score) for reason in reasons]


class TestAgainstReference:
    @PROPERTY
    @given(any_scenario_st)
    def test_match_gives_the_reference_matches_and_reasons(self, scenario: Scenario) -> None:
        waiting, agents = scenario
        got = match(waiting, agents, NOW, SETTINGS)
        expected = reference_match(waiting, agents, NOW, SETTINGS)
        assert got == expected
        assert _score_types([m.reason for m in got]) == _score_types([m.reason for m in expected])

    @PROPERTY
    @given(crowded_scenario_st())
    def test_match_in_a_crowded_batch_gives_the_reference_matches_and_reasons(
        self, scenario: Scenario
    ) -> None:
        waiting, agents = scenario
        got = match(waiting, agents, NOW, SETTINGS)
        assert got == reference_match(waiting, agents, NOW, SETTINGS)

    @PROPERTY
    @given(any_scenario_st)
    def test_rank_agents_and_choose_agent_give_the_reference_ranking(
        self, scenario: Scenario
    ) -> None:
        waiting, agents = scenario
        for queue, contact in waiting:
            got = rank_agents(queue, contact, agents, NOW, SETTINGS)
            expected = reference_rank_agents(queue, contact, agents, NOW, SETTINGS)
            assert got == expected
            assert _score_types([r.reason for r in got]) == _score_types(
                [r.reason for r in expected]
            )
            chosen = choose_agent(queue, contact, agents, NOW, SETTINGS)
            assert chosen == reference_choose_agent(queue, contact, agents, NOW, SETTINGS)

    @PROPERTY
    @given(any_scenario_st)
    def test_choose_contact_and_may_take_give_the_reference_answers(
        self, scenario: Scenario
    ) -> None:
        waiting, agents = scenario
        for agent in agents:
            for present in ([], agents):
                got = choose_contact(agent, waiting, NOW, SETTINGS, present=present)
                assert got == reference_choose_contact(agent, waiting, NOW, SETTINGS, present)
                for queue, contact in waiting:
                    expected = reference_may_take(agent, queue, contact, NOW, present)
                    assert may_take(agent, queue, contact, NOW, present=present) is expected

    @pytest.mark.parametrize("strategy", list(Strategy))
    def test_large_batch_matches_the_reference(self, strategy: Strategy) -> None:
        # Many agents per contact, several offers per agent (the within-batch updates), two
        # queues scoring different skills, both channels, affinities and exclusions.
        queues = [
            make_queue(strategy, [make_step(("billing", 3), expires=30)]),
            make_queue(strategy, [make_step(("cards", 2), ("loans", 1), expires=None)], 2),
        ]
        waiting = [
            (
                queues[n % 2],
                make_contact(
                    n,
                    tier=TIERS[n % 4],
                    channel=CHANNELS[n % 3 % 2],
                    waited=n % 97,
                    manager=n % 9,
                    last_agent=n % 7,
                    last_until=later(5),
                    excluded=frozenset({n % 11}),
                ),
            )
            for n in range(1, 151)
        ]
        agents = [
            AgentView(
                n,
                {"billing": n % 10 + 1, "cards": n % 3 + 1, "loans": n % 4},
                ago(n % 13),
                load={"chat": n % 2},
                capacity={"voice": n % 3, "chat": n % 5},
                contacts_today=n % 4,
                last_offer_at=None if n % 5 == 0 else ago(n % 17),
            )
            for n in range(1, 41)
        ]
        got = match(waiting, agents, NOW, SETTINGS)
        assert len(got) > 40
        assert got == reference_match(waiting, agents, NOW, SETTINGS)
        # The last agents hold their contacts (alone, so beating no one): the affinity shows.
        assert {m.reason.tie_break for m in got} >= {"relationship_manager"}
        assert {m.reason.affinity for m in got} >= {
            Affinity.RELATIONSHIP_MANAGER,
            Affinity.LAST_AGENT,
        }
