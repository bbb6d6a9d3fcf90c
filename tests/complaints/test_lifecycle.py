"""Exhaustive tests of the complaint lifecycle table: every (status, event) pair, the facts
each move needs, and the escalation ladder."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.complaints.lifecycle import (
    DEADLINE_STOPPED,
    ESCALATION_TARGETS,
    FINISHED,
    INITIAL,
    OPEN,
    TERMINAL,
    ComplaintEvent,
    ComplaintStatus,
    EscalationLevel,
    IllegalComplaintMove,
    PauseReason,
    ReviewOutcome,
    allows,
    apply,
    escalate_to,
    missing,
    moves,
    needs,
    next_level,
    optional,
    unexpected,
)
from app.complaints.schemas import TransitionFacts

S, E = ComplaintStatus, ComplaintEvent
AGENT, SUPERVISOR, HEAD_OFFICE = EscalationLevel

# Written out again, independently of the module and in another shape (by status, then
# event): a move added to or dropped from the table, or pointed elsewhere, fails here.
# fmt: off
BY_STATUS: dict[ComplaintStatus, dict[ComplaintEvent, ComplaintStatus]] = {
    S.registered: {
        E.CLASSIFY: S.classified, E.ASSIGN: S.assigned, E.ESCALATE: S.registered,
        E.WITHDRAW: S.withdrawn, E.REJECT: S.rejected,
    },
    S.classified: {
        E.CLASSIFY: S.classified, E.ASSIGN: S.assigned, E.ESCALATE: S.classified,
        E.WITHDRAW: S.withdrawn, E.REJECT: S.rejected,
    },
    S.assigned: {
        E.CLASSIFY: S.assigned, E.ASSIGN: S.assigned, E.START: S.in_progress,
        E.EXTEND: S.assigned, E.ESCALATE: S.assigned,
        E.WITHDRAW: S.withdrawn, E.REJECT: S.rejected,
    },
    S.in_progress: {
        E.CLASSIFY: S.in_progress, E.ASSIGN: S.in_progress, E.PAUSE: S.paused,
        E.EXTEND: S.in_progress, E.ESCALATE: S.in_progress, E.RESOLVE: S.resolved,
        E.WITHDRAW: S.withdrawn, E.REJECT: S.rejected,
    },
    S.paused: {
        E.CLASSIFY: S.paused, E.ASSIGN: S.paused, E.RESUME: S.in_progress,
        E.EXTEND: S.paused, E.ESCALATE: S.paused,
        E.WITHDRAW: S.withdrawn, E.REJECT: S.rejected,
    },
    S.resolved: {E.CONFIRM: S.confirmed, E.CLOSE: S.closed, E.REOPEN: S.in_progress},
    S.confirmed: {
        E.REOPEN: S.in_progress, E.REQUEST_REVIEW: S.under_review, E.ARCHIVE: S.archived,
    },
    S.closed: {
        E.REOPEN: S.in_progress, E.REQUEST_REVIEW: S.under_review, E.ARCHIVE: S.archived,
    },
    S.under_review: {
        E.CLASSIFY: S.under_review, E.ASSIGN: S.under_review, E.EXTEND: S.under_review,
        E.ESCALATE: S.under_review, E.CONCLUDE_REVIEW: S.closed,
    },
    S.withdrawn: {E.REOPEN: S.registered, E.ARCHIVE: S.archived},
    S.rejected: {E.REOPEN: S.registered, E.ARCHIVE: S.archived},
    S.archived: {},
}
# fmt: on

EXPECTED = {
    (status, event): after for status, row in BY_STATUS.items() for event, after in row.items()
}
ALL_PAIRS = sorted(itertools.product(ComplaintStatus, ComplaintEvent))
ALLOWED = sorted(EXPECTED.items())
REFUSED = sorted(set(ALL_PAIRS) - set(EXPECTED))

HANDLED = (S.registered, S.classified, S.assigned, S.in_progress, S.paused)

# The facts each move needs, written out again.
NEEDS: dict[ComplaintEvent, set[str]] = {
    E.CLASSIFY: {"categories", "severity"},
    E.ASSIGN: {"assignee"},
    E.START: set(),
    E.PAUSE: {"reason"},
    E.RESUME: set(),
    E.EXTEND: {"reason", "approval", "days"},
    E.ESCALATE: {"target"},
    E.RESOLVE: {"resolution", "root_cause", "corrective_action", "remedy"},
    E.CONFIRM: set(),
    E.CLOSE: set(),
    E.ARCHIVE: set(),
    E.WITHDRAW: set(),
    E.REJECT: {"reason"},
    E.REOPEN: {"reason"},
    E.REQUEST_REVIEW: {"reason"},
    E.CONCLUDE_REVIEW: {"outcome", "reason"},
}

# (current, target) -> level after; agent is not a target.
# fmt: off
LADDER: dict[tuple[EscalationLevel, EscalationLevel], EscalationLevel] = {
    (AGENT, SUPERVISOR):       SUPERVISOR,
    (AGENT, HEAD_OFFICE):      HEAD_OFFICE,
    (SUPERVISOR, SUPERVISOR):  SUPERVISOR,
    (SUPERVISOR, HEAD_OFFICE): HEAD_OFFICE,
    (HEAD_OFFICE, SUPERVISOR): HEAD_OFFICE,
    (HEAD_OFFICE, HEAD_OFFICE): HEAD_OFFICE,
}
# fmt: on


class TestApply:
    @pytest.mark.parametrize(("move", "after"), ALLOWED, ids=str)
    def test_an_allowed_move_gives_the_tables_status(
        self, move: tuple[ComplaintStatus, ComplaintEvent], after: ComplaintStatus
    ) -> None:
        status, event = move
        assert apply(status, event) is after
        assert allows(status, event)

    @pytest.mark.parametrize(("status", "event"), REFUSED, ids=str)
    def test_every_other_move_raises_naming_the_current_status(
        self, status: ComplaintStatus, event: ComplaintEvent
    ) -> None:
        assert not allows(status, event)
        with pytest.raises(IllegalComplaintMove) as raised:
            apply(status, event)
        assert (raised.value.status, raised.value.event) == (status, event)
        assert str(raised.value) == f"cannot {event.value} a complaint that is {status.value}"

    def test_the_pairs_tested_are_every_pair(self) -> None:
        pairs = [move for move, _ in ALLOWED] + REFUSED
        assert len(pairs) == len(set(pairs)) == len(ComplaintStatus) * len(ComplaintEvent)
        assert set(BY_STATUS) == set(ComplaintStatus)

    def test_the_table_holds_exactly_the_expected_moves(self) -> None:
        assert moves() == EXPECTED

    def test_the_table_handed_out_is_a_copy(self) -> None:
        table = moves()
        table[S.archived, E.REOPEN] = S.in_progress
        with pytest.raises(IllegalComplaintMove):
            apply(S.archived, E.REOPEN)


class TestTerminal:
    @pytest.mark.parametrize("status", sorted(TERMINAL), ids=str)
    @pytest.mark.parametrize("event", list(ComplaintEvent), ids=str)
    def test_a_terminal_status_refuses_everything(
        self, status: ComplaintStatus, event: ComplaintEvent
    ) -> None:
        assert not allows(status, event)
        with pytest.raises(IllegalComplaintMove, match=f"that is {status.value}$"):
            apply(status, event)

    def test_archived_is_the_only_terminal_status(self) -> None:
        assert {S.archived} == TERMINAL

    def test_the_terminal_statuses_are_exactly_those_without_a_move_out(self) -> None:
        with_a_way_out = {status for status, _ in moves()}
        assert set(ComplaintStatus) - with_a_way_out == TERMINAL

    def test_every_status_is_reachable_from_the_first(self) -> None:
        assert _reachable(INITIAL) == set(ComplaintStatus)

    @pytest.mark.parametrize("status", sorted(set(ComplaintStatus) - TERMINAL), ids=str)
    def test_every_live_status_can_still_end(self, status: ComplaintStatus) -> None:
        assert _reachable(status) & TERMINAL


class TestStatuses:
    def test_a_complaint_starts_registered(self) -> None:
        assert INITIAL is S.registered
        assert INITIAL in OPEN

    def test_open_finished_and_terminal_split_every_status(self) -> None:
        assert set(ComplaintStatus) == OPEN | FINISHED | TERMINAL
        assert not OPEN & FINISHED
        assert not OPEN & TERMINAL
        assert not FINISHED & TERMINAL

    def test_finished_complaints_are_the_ones_that_may_be_archived(self) -> None:
        archivable = {status for status, event in moves() if event is E.ARCHIVE}
        assert archivable == FINISHED == {S.confirmed, S.closed, S.withdrawn, S.rejected}

    def test_the_deadline_is_stopped_in_the_open_statuses_only_resolve_leads_to(self) -> None:
        """The pages mark a passed deadline overdue only outside these: the open statuses
        that no walk from registration reaches without a ``resolve``."""
        seen, frontier = {INITIAL}, [INITIAL]
        while frontier:
            status = frontier.pop()
            for (origin, event), after in moves().items():
                if origin is status and event is not E.RESOLVE and after not in seen:
                    seen.add(after)
                    frontier.append(after)
        assert OPEN - seen == DEADLINE_STOPPED == {S.resolved, S.under_review}

    def test_the_values_are_the_column_values(self) -> None:
        assert {s.value for s in ComplaintStatus} == {
            "registered", "classified", "assigned", "in_progress", "paused", "resolved",
            "confirmed", "closed", "under_review", "withdrawn", "rejected", "archived",
        }  # fmt: skip


class TestEvents:
    def test_every_verb_of_the_api_is_an_event(self) -> None:
        api_verbs = {
            "classify", "assign", "start", "pause", "resume", "extend", "escalate",
            "resolve", "confirm", "reopen", "withdraw", "close", "archive",
        }  # fmt: skip
        assert api_verbs <= {e.value for e in ComplaintEvent}

    def test_the_side_path_verbs_are_events(self) -> None:
        assert {"reject", "request_review", "conclude_review"} <= {e.value for e in E}

    @pytest.mark.parametrize("event", list(ComplaintEvent), ids=str)
    def test_every_event_is_allowed_somewhere(self, event: ComplaintEvent) -> None:
        assert any(allows(status, event) for status in ComplaintStatus)


class TestPolicy:
    """The decisions the module documents, each stated once more as a rule."""

    @pytest.mark.parametrize("event", [E.CLASSIFY, E.ASSIGN, E.ESCALATE, E.EXTEND], ids=str)
    def test_moves_that_change_who_or_how_urgent_never_change_where(
        self, event: ComplaintEvent
    ) -> None:
        for status in ComplaintStatus:
            if allows(status, event) and status not in {S.registered, S.classified}:
                assert apply(status, event) is status

    def test_escalation_is_an_attribute_so_escalate_keeps_every_status(self) -> None:
        escalating = {s for s in ComplaintStatus if allows(s, E.ESCALATE)}
        assert escalating == {*HANDLED, S.under_review}
        assert all(apply(s, E.ESCALATE) is s for s in escalating)

    def test_withdraw_and_reject_are_open_while_the_complaint_is_handled(self) -> None:
        for event, after in ((E.WITHDRAW, S.withdrawn), (E.REJECT, S.rejected)):
            assert {s for s in ComplaintStatus if allows(s, event)} == set(HANDLED)
            assert all(apply(s, event) is after for s in HANDLED)

    def test_a_complaint_can_be_assigned_before_it_is_classified(self) -> None:
        assert apply(S.registered, E.ASSIGN) is S.assigned

    def test_reassignment_keeps_a_paused_complaint_paused(self) -> None:
        assert apply(S.paused, E.ASSIGN) is S.paused

    def test_extend_needs_someone_handling_the_complaint(self) -> None:
        extending = {s for s in ComplaintStatus if allows(s, E.EXTEND)}
        assert extending == {S.assigned, S.in_progress, S.paused, S.under_review}

    def test_a_pause_is_entered_and_left_only_by_pause_and_resume(self) -> None:
        into = {(s, e) for (s, e), after in moves().items() if after is S.paused and s != after}
        out_of = {e for (s, e), after in moves().items() if s is S.paused and after != s}
        assert into == {(S.in_progress, E.PAUSE)}
        assert out_of == {E.RESUME, E.WITHDRAW, E.REJECT}

    def test_reopen_keeps_the_record_and_review_is_not_a_reopen(self) -> None:
        assert apply(S.closed, E.REOPEN) is S.in_progress
        assert apply(S.rejected, E.REOPEN) is S.registered
        assert apply(S.closed, E.REQUEST_REVIEW) is S.under_review
        assert apply(S.under_review, E.CONCLUDE_REVIEW) is S.closed
        assert not allows(S.under_review, E.REOPEN)

    def test_a_resolved_complaint_must_be_confirmed_or_closed_before_archive(self) -> None:
        assert not allows(S.resolved, E.ARCHIVE)


class TestNeeds:
    @pytest.mark.parametrize("event", list(ComplaintEvent), ids=str)
    def test_each_event_needs_exactly_its_facts(self, event: ComplaintEvent) -> None:
        assert needs(event) == NEEDS[event]

    def test_optional_facts(self) -> None:
        assert optional(E.RESOLVE) == {"compensation", "responsible_unit", "upheld", "approval"}
        assert optional(E.EXTEND) == {"clock"}
        assert optional(E.ESCALATE) == {"reason"}
        assert optional(E.WITHDRAW) == {"reason"}
        assert optional(E.START) == frozenset()

    @pytest.mark.parametrize("event", list(ComplaintEvent), ids=str)
    def test_no_fact_is_both_needed_and_optional(self, event: ComplaintEvent) -> None:
        assert not needs(event) & optional(event)


class TestMissing:
    def test_nothing_given_names_every_needed_fact_sorted(self) -> None:
        assert missing(E.RESOLVE, {}) == (
            "corrective_action",
            "remedy",
            "resolution",
            "root_cause",
        )

    def test_all_facts_given_is_nothing_missing(self) -> None:
        facts = {"categories": ["payment"], "severity": "high"}
        assert missing(E.CLASSIFY, facts) == ()

    @pytest.mark.parametrize("blank", [None, "", "   ", [], (), {}, set()], ids=repr)
    def test_a_blank_value_counts_as_missing(self, blank: object) -> None:
        assert missing(E.CLASSIFY, {"categories": blank, "severity": "low"}) == ("categories",)

    @pytest.mark.parametrize("value", [0, False, 3, "x", ["a"]], ids=repr)
    def test_a_present_value_is_not_missing(self, value: object) -> None:
        assert missing(E.EXTEND, {"reason": "appraisal", "approval": 7, "days": value}) == ()

    def test_facts_other_than_the_needed_ones_are_ignored(self) -> None:
        assert missing(E.START, {"anything": None}) == ()

    @given(
        st.sampled_from(list(ComplaintEvent)),
        st.dictionaries(st.sampled_from(sorted(set().union(*NEEDS.values()))), st.text()),
    )
    def test_missing_is_the_needed_facts_without_a_non_blank_value(
        self, event: ComplaintEvent, facts: dict[str, str]
    ) -> None:
        given_facts = {name for name, value in facts.items() if value.strip()}
        assert set(missing(event, facts)) == NEEDS[event] - given_facts


class TestUnexpected:
    @pytest.mark.parametrize("event", list(ComplaintEvent), ids=str)
    def test_the_needed_optional_and_a_reason_are_taken_by_every_event(
        self, event: ComplaintEvent
    ) -> None:
        facts = dict.fromkeys(NEEDS[event] | optional(event) | {"reason"}, "x")
        assert unexpected(event, facts) == ()

    @pytest.mark.parametrize("event", list(ComplaintEvent), ids=str)
    def test_every_other_fact_is_named_sorted(self, event: ComplaintEvent) -> None:
        every = set(TransitionFacts.model_fields)
        others = every - NEEDS[event] - optional(event) - {"reason"}
        assert unexpected(event, dict.fromkeys(every, "x")) == tuple(sorted(others))

    def test_classify_does_not_take_compensation(self) -> None:
        facts = {"categories": ["fees"], "severity": "low", "compensation": 1}
        assert unexpected(E.CLASSIFY, facts) == ("compensation",)


class TestEscalation:
    @pytest.mark.parametrize(("move", "after"), sorted(LADDER.items()), ids=str)
    def test_escalating_takes_the_higher_level_and_never_lowers(
        self, move: tuple[EscalationLevel, EscalationLevel], after: EscalationLevel
    ) -> None:
        assert escalate_to(*move) is after

    @pytest.mark.parametrize("current", list(EscalationLevel), ids=str)
    def test_the_agent_level_is_not_a_target(self, current: EscalationLevel) -> None:
        with pytest.raises(ValueError, match="only to supervisor or head_office, not to agent"):
            escalate_to(current, AGENT)

    def test_the_targets_are_supervisor_and_head_office(self) -> None:
        assert {SUPERVISOR, HEAD_OFFICE} == ESCALATION_TARGETS

    def test_a_warning_climbs_one_step_at_a_time_and_stops_at_the_top(self) -> None:
        assert next_level(AGENT) is SUPERVISOR
        assert next_level(SUPERVISOR) is HEAD_OFFICE
        assert next_level(HEAD_OFFICE) is None


class TestEnums:
    def test_pause_reasons_are_the_listed_ones(self) -> None:
        assert {r.value for r in PauseReason} == {
            "waiting_for_customer",
            "external_appraisal",
            "third_party_response",
            "legal_proceedings",
        }

    def test_review_outcomes(self) -> None:
        assert {o.value for o in ReviewOutcome} == {"upheld", "revised"}


class TestWalks:
    @given(st.lists(st.sampled_from(list(ComplaintEvent)), max_size=40))
    def test_any_sequence_of_events_follows_the_expected_table(
        self, events: list[ComplaintEvent]
    ) -> None:
        status = INITIAL
        for event in events:
            if (status, event) in EXPECTED:
                after = apply(status, event)
                assert after is EXPECTED[status, event]
                status = after
                continue
            with pytest.raises(IllegalComplaintMove):
                apply(status, event)
        assert status in BY_STATUS


def _reachable(start: ComplaintStatus) -> set[ComplaintStatus]:
    seen, frontier = {start}, [start]
    while frontier:
        status = frontier.pop()
        for (origin, _), after in moves().items():
            if origin is status and after not in seen:
                seen.add(after)
                frontier.append(after)
    return seen
