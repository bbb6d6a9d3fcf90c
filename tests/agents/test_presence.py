"""Exhaustive tests of the agent presence core: every status move, every work event."""

from __future__ import annotations

import itertools
from enum import Enum

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.agents.presence import (
    MAX_REASON_LENGTH,
    Actor,
    InvalidStatusChange,
    InvalidStatusReason,
    InvalidWorkTransition,
    PresenceError,
    State,
    Status,
    StatusChange,
    Work,
    WorkEvent,
    apply_work,
    change_status,
    derive_state,
    may_receive_offers,
    status_after_no_answers,
)

AVAILABLE, AWAY, OFFLINE = Status.AVAILABLE, Status.AWAY, Status.OFFLINE
SELF, SUPERVISOR, SYSTEM = Actor.SELF, Actor.SUPERVISOR, Actor.SYSTEM


class Outcome(Enum):
    CHANGED = "changed"
    NOOP = "no-op"
    BAD_MOVE = "move not allowed"
    BAD_REASON = "reason rejected"


CHANGED, NOOP, BAD_MOVE, BAD_REASON = Outcome

# The reason an agent already has in each status (away agents are on lunch).
CURRENT_REASON: dict[Status, str | None] = {AVAILABLE: None, AWAY: "lunch", OFFLINE: None}

# Requested reason kinds, in column order below.
REASONS: tuple[str | None, ...] = (None, "lunch", "training", "no_answer")

# (from, to, actor): outcome for reason None, "lunch" (the away agent's current reason),
# "training" (another ordinary reason), "no_answer" (reserved for the system).
# fmt: off
EXPECTED: dict[tuple[Status, Status, Actor], tuple[Outcome, Outcome, Outcome, Outcome]] = {
    #                                  None        "lunch"     "training"  "no_answer"
    (OFFLINE, OFFLINE, SELF):           (NOOP,       BAD_REASON, BAD_REASON, BAD_REASON),
    (OFFLINE, OFFLINE, SUPERVISOR):     (NOOP,       BAD_REASON, BAD_REASON, BAD_REASON),
    (OFFLINE, OFFLINE, SYSTEM):         (BAD_MOVE,   BAD_REASON, BAD_REASON, BAD_REASON),
    (OFFLINE, AVAILABLE, SELF):         (CHANGED,    BAD_REASON, BAD_REASON, BAD_REASON),
    (OFFLINE, AVAILABLE, SUPERVISOR):   (CHANGED,    BAD_REASON, BAD_REASON, BAD_REASON),
    (OFFLINE, AVAILABLE, SYSTEM):       (BAD_MOVE,   BAD_REASON, BAD_REASON, BAD_REASON),
    (OFFLINE, AWAY, SELF):              (BAD_REASON, CHANGED,    CHANGED,    BAD_REASON),
    (OFFLINE, AWAY, SUPERVISOR):        (BAD_REASON, CHANGED,    CHANGED,    BAD_REASON),
    (OFFLINE, AWAY, SYSTEM):            (BAD_REASON, BAD_MOVE,   BAD_MOVE,   BAD_MOVE),
    (AVAILABLE, OFFLINE, SELF):         (CHANGED,    BAD_REASON, BAD_REASON, BAD_REASON),
    (AVAILABLE, OFFLINE, SUPERVISOR):   (CHANGED,    BAD_REASON, BAD_REASON, BAD_REASON),
    (AVAILABLE, OFFLINE, SYSTEM):       (BAD_MOVE,   BAD_REASON, BAD_REASON, BAD_REASON),
    (AVAILABLE, AVAILABLE, SELF):       (NOOP,       BAD_REASON, BAD_REASON, BAD_REASON),
    (AVAILABLE, AVAILABLE, SUPERVISOR): (NOOP,       BAD_REASON, BAD_REASON, BAD_REASON),
    (AVAILABLE, AVAILABLE, SYSTEM):     (BAD_MOVE,   BAD_REASON, BAD_REASON, BAD_REASON),
    (AVAILABLE, AWAY, SELF):            (BAD_REASON, CHANGED,    CHANGED,    BAD_REASON),
    (AVAILABLE, AWAY, SUPERVISOR):      (BAD_REASON, CHANGED,    CHANGED,    BAD_REASON),
    (AVAILABLE, AWAY, SYSTEM):          (BAD_REASON, CHANGED,    CHANGED,    CHANGED),
    (AWAY, OFFLINE, SELF):              (CHANGED,    BAD_REASON, BAD_REASON, BAD_REASON),
    (AWAY, OFFLINE, SUPERVISOR):        (CHANGED,    BAD_REASON, BAD_REASON, BAD_REASON),
    (AWAY, OFFLINE, SYSTEM):            (BAD_MOVE,   BAD_REASON, BAD_REASON, BAD_REASON),
    (AWAY, AVAILABLE, SELF):            (CHANGED,    BAD_REASON, BAD_REASON, BAD_REASON),
    (AWAY, AVAILABLE, SUPERVISOR):      (CHANGED,    BAD_REASON, BAD_REASON, BAD_REASON),
    (AWAY, AVAILABLE, SYSTEM):          (BAD_MOVE,   BAD_REASON, BAD_REASON, BAD_REASON),
    (AWAY, AWAY, SELF):                 (BAD_REASON, NOOP,       CHANGED,    BAD_REASON),
    (AWAY, AWAY, SUPERVISOR):           (BAD_REASON, NOOP,       CHANGED,    BAD_REASON),
    (AWAY, AWAY, SYSTEM):               (BAD_REASON, NOOP,       CHANGED,    CHANGED),
}
# fmt: on

STATUS_CASES = [
    pytest.param(
        current,
        requested,
        actor,
        reason,
        outcome,
        id=f"{current}-{requested}-{actor}-{reason}-{outcome.name.lower()}",
    )
    for (current, requested, actor), outcomes in EXPECTED.items()
    for reason, outcome in zip(REASONS, outcomes, strict=True)
]


def test_status_table_covers_every_from_to_actor_combination() -> None:
    assert set(EXPECTED) == set(itertools.product(Status, Status, Actor))


class TestChangeStatus:
    @pytest.mark.parametrize(("current", "requested", "actor", "reason", "outcome"), STATUS_CASES)
    def test_every_move_actor_and_reason_kind(
        self,
        current: Status,
        requested: Status,
        actor: Actor,
        reason: str | None,
        outcome: Outcome,
    ) -> None:
        current_reason = CURRENT_REASON[current]
        if outcome in (BAD_MOVE, BAD_REASON):
            error = InvalidStatusReason if outcome is BAD_REASON else InvalidStatusChange
            with pytest.raises(error) as caught:
                change_status(current, current_reason, requested, reason, actor=actor)
            assert type(caught.value) is error
            assert (caught.value.current, caught.value.requested) == (current, requested)
            assert caught.value.actor is actor
            return
        result = change_status(current, current_reason, requested, reason, actor=actor)
        assert result == StatusChange(
            previous=current, status=requested, reason=reason, changed=outcome is CHANGED
        )

    @pytest.mark.parametrize("reason", ["no_answer", "disconnected"])
    def test_system_may_put_an_available_agent_away_with_a_reserved_reason(
        self, reason: str
    ) -> None:
        result = change_status(AVAILABLE, None, AWAY, reason, actor=SYSTEM)
        assert result == StatusChange(previous=AVAILABLE, status=AWAY, reason=reason, changed=True)

    @pytest.mark.parametrize("actor", [SELF, SUPERVISOR])
    @pytest.mark.parametrize("reason", ["no_answer", "disconnected", "No_Answer", " DISCONNECTED "])
    def test_people_may_not_use_a_reserved_reason_in_any_case(
        self, actor: Actor, reason: str
    ) -> None:
        with pytest.raises(InvalidStatusReason, match="is reserved for the system"):
            change_status(AVAILABLE, None, AWAY, reason, actor=actor)

    def test_system_disconnect_of_an_agent_away_for_no_answer_changes_the_reason(self) -> None:
        result = change_status(AWAY, "no_answer", AWAY, "disconnected", actor=SYSTEM)
        assert result.changed
        assert result.reason == "disconnected"

    def test_repeating_a_reserved_reason_is_a_no_op_for_the_system(self) -> None:
        result = change_status(AWAY, "no_answer", AWAY, "no_answer", actor=SYSTEM)
        assert not result.changed

    def test_away_reason_is_stripped_and_compared_stripped(self) -> None:
        result = change_status(AWAY, "lunch", AWAY, "  lunch\t", actor=SELF)
        assert result == StatusChange(previous=AWAY, status=AWAY, reason="lunch", changed=False)

    def test_away_reason_differing_only_in_case_is_a_change(self) -> None:
        assert change_status(AWAY, "lunch", AWAY, "Lunch", actor=SELF).changed

    @pytest.mark.parametrize("reason", ["", "   ", "\t\n"])
    def test_blank_away_reason_counts_as_missing(self, reason: str) -> None:
        with pytest.raises(InvalidStatusReason, match="status away requires a reason"):
            change_status(AVAILABLE, None, AWAY, reason, actor=SELF)

    @pytest.mark.parametrize("requested", [AVAILABLE, OFFLINE])
    @pytest.mark.parametrize("reason", ["", "  "])
    def test_blank_reason_is_accepted_as_none_where_no_reason_is_taken(
        self, requested: Status, reason: str
    ) -> None:
        result = change_status(AWAY, "lunch", requested, reason, actor=SELF)
        assert result == StatusChange(previous=AWAY, status=requested, reason=None, changed=True)

    @pytest.mark.parametrize("requested", [AVAILABLE, OFFLINE])
    def test_reason_on_a_status_that_takes_none_is_named_in_the_error(
        self, requested: Status
    ) -> None:
        with pytest.raises(InvalidStatusReason) as caught:
            change_status(AWAY, "lunch", requested, "coffee", actor=SELF)
        assert str(caught.value) == (
            f"status {requested} takes no reason, but reason 'coffee' was given"
        )

    def test_free_text_reason_up_to_the_limit_is_accepted(self) -> None:
        reason = "x" * MAX_REASON_LENGTH
        assert change_status(AVAILABLE, None, AWAY, reason, actor=SELF).reason == reason

    def test_reason_longer_than_the_limit_is_rejected_with_its_length(self) -> None:
        with pytest.raises(InvalidStatusReason, match="at most 64 characters, got 65"):
            change_status(AVAILABLE, None, AWAY, "x" * 65, actor=SELF)

    @pytest.mark.parametrize("reason", ["lunch\nbreak", "coffee\x00", "\x1b[31mred"])
    def test_reason_with_control_characters_is_rejected(self, reason: str) -> None:
        with pytest.raises(InvalidStatusReason, match="control characters"):
            change_status(AVAILABLE, None, AWAY, reason, actor=SELF)

    def test_non_ascii_reason_is_accepted(self) -> None:
        assert change_status(AVAILABLE, None, AWAY, "午休", actor=SELF).reason == "午休"

    @pytest.mark.parametrize(
        ("current", "requested", "message"),
        [
            (OFFLINE, AWAY, "the system cannot change status from offline to away"),
            (AWAY, AVAILABLE, "the system cannot change status from away to available"),
            (AVAILABLE, OFFLINE, "the system cannot change status from available to offline"),
        ],
    )
    def test_move_error_names_the_actor_and_both_statuses(
        self, current: Status, requested: Status, message: str
    ) -> None:
        reason = "no_answer" if requested is AWAY else None
        with pytest.raises(InvalidStatusChange) as caught:
            change_status(current, None, requested, reason, actor=SYSTEM)
        assert str(caught.value) == message

    def test_missing_away_reason_message_suggests_reasons(self) -> None:
        with pytest.raises(InvalidStatusReason) as caught:
            change_status(AVAILABLE, None, AWAY, None, actor=SUPERVISOR)
        assert str(caught.value) == (
            "status away requires a reason (e.g. break, lunch, training, meeting)"
        )

    def test_every_presence_error_is_a_presence_error(self) -> None:
        assert issubclass(InvalidStatusReason, InvalidStatusChange)
        assert issubclass(InvalidStatusChange, PresenceError)
        assert issubclass(InvalidWorkTransition, PresenceError)


# ---------------------------------------------------------------------------------------------
# Work and derived state

ZERO = Work()
ONE_EACH = Work(offers=1, contacts=1, wrap_ups=1)
OFFERED_ONLY = Work(offers=1)
BUSY_ONLY = Work(contacts=1)
WRAP_UP_ONLY = Work(wrap_ups=1)
MANY = Work(offers=2, contacts=3, wrap_ups=4)

E = WorkEvent
ERR = None  # expected result: InvalidWorkTransition

# event -> (offers, contacts, wrap_ups) after applying it to each of STARTS, in order.
# fmt: off
WORK_EXPECTED: dict[WorkEvent, tuple[tuple[int, int, int] | None, ...]] = {
    #                    ZERO       OFFERED    BUSY       WRAP_UP    ONE_EACH   MANY
    E.OFFER_CREATED:    ((1, 0, 0), (2, 0, 0), (1, 1, 0), (1, 0, 1), (2, 1, 1), (3, 3, 4)),
    E.OFFER_ACCEPTED:   (ERR,       (0, 1, 0), ERR,       ERR,       (0, 2, 1), (1, 4, 4)),
    E.OFFER_REJECTED:   (ERR,       (0, 0, 0), ERR,       ERR,       (0, 1, 1), (1, 3, 4)),
    E.OFFER_EXPIRED:    (ERR,       (0, 0, 0), ERR,       ERR,       (0, 1, 1), (1, 3, 4)),
    E.OFFER_RESCINDED:  (ERR,       (0, 0, 0), ERR,       ERR,       (0, 1, 1), (1, 3, 4)),
    E.CONTACT_ENDED:    (ERR,       ERR,       (0, 0, 1), ERR,       (1, 0, 2), (2, 2, 5)),
    E.CONTACT_DROPPED:  (ERR,       ERR,       (0, 0, 0), ERR,       (1, 0, 1), (2, 2, 4)),
    E.WRAP_UP_DONE:     (ERR,       ERR,       ERR,       (0, 0, 0), (1, 1, 0), (2, 3, 3)),
}
# fmt: on
STARTS = (ZERO, OFFERED_ONLY, BUSY_ONLY, WRAP_UP_ONLY, ONE_EACH, MANY)

WORK_CASES = [
    pytest.param(
        start,
        event,
        None if result is None else Work(*result),
        id=f"{event}-from-{derive_state(start)}-{i}",
    )
    for event, results in WORK_EXPECTED.items()
    for i, (start, result) in enumerate(zip(STARTS, results, strict=True))
]

MISSING_PHRASE = {
    WorkEvent.OFFER_ACCEPTED: "no live offer",
    WorkEvent.OFFER_REJECTED: "no live offer",
    WorkEvent.OFFER_EXPIRED: "no live offer",
    WorkEvent.OFFER_RESCINDED: "no live offer",
    WorkEvent.CONTACT_ENDED: "no connected contact",
    WorkEvent.CONTACT_DROPPED: "no connected contact",
    WorkEvent.WRAP_UP_DONE: "no contact in wrap-up",
}


def test_work_table_covers_every_event() -> None:
    assert set(WORK_EXPECTED) == set(WorkEvent)
    assert {derive_state(start) for start in STARTS} == set(State)


class TestApplyWork:
    @pytest.mark.parametrize(("start", "event", "result"), WORK_CASES)
    def test_every_event_against_every_state(
        self, start: Work, event: WorkEvent, result: Work | None
    ) -> None:
        if result is None:
            with pytest.raises(InvalidWorkTransition) as caught:
                apply_work(start, event)
            assert (caught.value.work, caught.value.event) == (start, event)
        else:
            assert apply_work(start, event) == result

    @pytest.mark.parametrize("event", sorted(MISSING_PHRASE))
    def test_error_on_zero_work_names_the_event_the_state_and_what_is_missing(
        self, event: WorkEvent
    ) -> None:
        with pytest.raises(InvalidWorkTransition) as caught:
            apply_work(ZERO, event)
        assert str(caught.value) == (
            f"cannot apply {event}: the agent has {MISSING_PHRASE[event]} "
            "(state idle; offers=0, contacts=0, wrap_ups=0)"
        )

    def test_accepting_while_busy_without_an_offer_reports_the_busy_state(self) -> None:
        with pytest.raises(InvalidWorkTransition, match=r"offer_accepted: .*\(state busy;"):
            apply_work(Work(contacts=2, wrap_ups=1), WorkEvent.OFFER_ACCEPTED)

    @pytest.mark.parametrize(
        "counts", [{"offers": -1}, {"contacts": -1}, {"wrap_ups": -1}], ids=str
    )
    def test_work_with_a_negative_count_cannot_be_built(self, counts: dict[str, int]) -> None:
        with pytest.raises(ValueError, match="must be non-negative"):
            Work(**counts)


# (offers > 0, contacts > 0, wrap_ups > 0) -> state
DERIVED: dict[tuple[bool, bool, bool], State] = {
    (False, False, False): State.IDLE,
    (True, False, False): State.OFFERED,
    (False, True, False): State.BUSY,
    (False, False, True): State.WRAP_UP,
    (True, True, False): State.BUSY,
    (True, False, True): State.OFFERED,
    (False, True, True): State.BUSY,
    (True, True, True): State.BUSY,
}


class TestDeriveState:
    def test_table_covers_every_combination_of_zero_and_non_zero_counts(self) -> None:
        assert set(DERIVED) == set(itertools.product((False, True), repeat=3))

    @pytest.mark.parametrize(("nonzero", "state"), list(DERIVED.items()), ids=str)
    @pytest.mark.parametrize("amount", [1, 5])
    def test_busy_beats_offered_beats_wrap_up_beats_idle(
        self, nonzero: tuple[bool, bool, bool], state: State, amount: int
    ) -> None:
        offers, contacts, wrap_ups = (amount if flag else 0 for flag in nonzero)
        assert derive_state(Work(offers, contacts, wrap_ups)) is state


OFFERABLE: dict[tuple[Status, State], bool] = {
    (AVAILABLE, State.IDLE): True,
    (AVAILABLE, State.OFFERED): True,
    (AVAILABLE, State.BUSY): True,
    (AVAILABLE, State.WRAP_UP): False,
    (AWAY, State.IDLE): False,
    (AWAY, State.OFFERED): False,
    (AWAY, State.BUSY): False,
    (AWAY, State.WRAP_UP): False,
    (OFFLINE, State.IDLE): False,
    (OFFLINE, State.OFFERED): False,
    (OFFLINE, State.BUSY): False,
    (OFFLINE, State.WRAP_UP): False,
}


class TestMayReceiveOffers:
    def test_table_covers_every_status_and_state(self) -> None:
        assert set(OFFERABLE) == set(itertools.product(Status, State))

    @pytest.mark.parametrize(("key", "expected"), list(OFFERABLE.items()), ids=str)
    def test_only_available_agents_outside_wrap_up_receive_offers(
        self, key: tuple[Status, State], expected: bool
    ) -> None:
        assert may_receive_offers(*key) is expected


class TestStatusAfterNoAnswers:
    @pytest.mark.parametrize(
        ("consecutive", "maximum", "expected"),
        [
            (0, 3, None),
            (2, 3, None),
            (3, 3, AWAY),
            (4, 3, AWAY),
            (1, 1, AWAY),
            (0, 1, None),
            (0, 0, None),
            (100, 0, None),
        ],
    )
    def test_away_once_the_threshold_is_reached_and_never_when_it_is_zero(
        self, consecutive: int, maximum: int, expected: Status | None
    ) -> None:
        assert status_after_no_answers(consecutive, maximum) is expected

    @pytest.mark.parametrize(("consecutive", "maximum"), [(-1, 3), (1, -1)])
    def test_negative_counts_are_rejected(self, consecutive: int, maximum: int) -> None:
        with pytest.raises(ValueError, match="must be non-negative"):
            status_after_no_answers(consecutive, maximum)


# ---------------------------------------------------------------------------------------------
# Properties


@given(st.lists(st.sampled_from(WorkEvent), max_size=200))
def test_any_event_sequence_keeps_counts_non_negative_and_state_consistent(
    events: list[WorkEvent],
) -> None:
    work = Work()
    model = {"offers": 0, "contacts": 0, "wrap_ups": 0}
    for event in events:
        try:
            work = apply_work(work, event)
        except InvalidWorkTransition:
            assert _model_count_needed(event, model) == 0
            continue
        _model_apply(event, model)
        assert (work.offers, work.contacts, work.wrap_ups) == tuple(model.values())
        assert min(work.offers, work.contacts, work.wrap_ups) >= 0
        assert derive_state(work) is _model_state(model)


# An independent model: which count each event consumes and which it produces.
CONSUMES: dict[WorkEvent, str | None] = {
    WorkEvent.OFFER_CREATED: None,
    WorkEvent.OFFER_ACCEPTED: "offers",
    WorkEvent.OFFER_REJECTED: "offers",
    WorkEvent.OFFER_EXPIRED: "offers",
    WorkEvent.OFFER_RESCINDED: "offers",
    WorkEvent.CONTACT_ENDED: "contacts",
    WorkEvent.CONTACT_DROPPED: "contacts",
    WorkEvent.WRAP_UP_DONE: "wrap_ups",
}
PRODUCES: dict[WorkEvent, str | None] = {
    WorkEvent.OFFER_CREATED: "offers",
    WorkEvent.OFFER_ACCEPTED: "contacts",
    WorkEvent.CONTACT_ENDED: "wrap_ups",
}


def _model_count_needed(event: WorkEvent, model: dict[str, int]) -> int:
    consumed = CONSUMES[event]
    assert consumed is not None, f"{event} can always be applied"
    return model[consumed]


def _model_apply(event: WorkEvent, model: dict[str, int]) -> None:
    consumed, produced = CONSUMES[event], PRODUCES.get(event)
    if consumed is not None:
        model[consumed] -= 1
    if produced is not None:
        model[produced] += 1


def _model_state(model: dict[str, int]) -> State:
    for name, state in (
        ("contacts", State.BUSY),
        ("offers", State.OFFERED),
        ("wrap_ups", State.WRAP_UP),
    ):
        if model[name]:
            return state
    return State.IDLE
