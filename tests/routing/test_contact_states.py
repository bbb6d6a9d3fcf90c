"""Exhaustive tests of the contact lifecycle table: every (status, event) pair."""

from __future__ import annotations

import itertools

import pytest

from app.routing.contact_states import (
    INITIAL,
    TERMINAL,
    WAITING,
    ContactEvent,
    ContactStatus,
    IllegalContactMove,
    allows,
    apply,
    moves,
)

S, E = ContactStatus, ContactEvent

# Written out again, independently of the module: a move added to or dropped from the
# table, or pointed elsewhere, fails here.
# fmt: off
EXPECTED: dict[tuple[ContactStatus, ContactEvent], ContactStatus] = {
    (S.queued, E.OFFER):          S.offered,
    (S.queued, E.ABANDON):        S.abandoned,
    (S.queued, E.CANCEL):         S.canceled,
    (S.queued, E.TRANSFER):       S.transferred,
    (S.queued, E.TIME_OUT):       S.timed_out,
    (S.offered, E.ANSWER):        S.connected,
    (S.offered, E.REJECT):        S.queued,
    (S.offered, E.EXPIRE):        S.queued,
    (S.offered, E.RESCIND):       S.queued,
    (S.offered, E.ABANDON):       S.abandoned,
    (S.offered, E.CANCEL):        S.canceled,
    (S.offered, E.TRANSFER):      S.transferred,
    (S.connected, E.COMPLETE):    S.wrap_up,
    (S.connected, E.TRANSFER):    S.transferred,
    (S.wrap_up, E.END_WRAP_UP):   S.completed,
}
# fmt: on

ALLOWED = sorted(EXPECTED.items())
REFUSED = sorted(set(itertools.product(ContactStatus, ContactEvent)) - set(EXPECTED))


class TestApply:
    @pytest.mark.parametrize(("move", "after"), ALLOWED, ids=lambda v: str(v))
    def test_an_allowed_move_gives_the_tables_status(
        self, move: tuple[ContactStatus, ContactEvent], after: ContactStatus
    ) -> None:
        status, event = move
        assert apply(status, event) is after
        assert allows(status, event)

    @pytest.mark.parametrize(("status", "event"), REFUSED, ids=lambda v: str(v))
    def test_every_other_move_raises_naming_the_status_and_the_event(
        self, status: ContactStatus, event: ContactEvent
    ) -> None:
        assert not allows(status, event)
        with pytest.raises(IllegalContactMove) as raised:
            apply(status, event)
        assert (raised.value.status, raised.value.event) == (status, event)
        assert str(raised.value) == f"cannot {event.value} a contact that is {status.value}"

    def test_the_pairs_tested_are_every_pair(self) -> None:
        pairs = [move for move, _ in ALLOWED] + REFUSED
        assert len(pairs) == len(set(pairs)) == len(ContactStatus) * len(ContactEvent)

    def test_the_table_holds_exactly_the_expected_moves(self) -> None:
        assert moves() == EXPECTED

    def test_the_table_handed_out_is_a_copy(self) -> None:
        table = moves()
        table[S.completed, E.OFFER] = S.offered
        with pytest.raises(IllegalContactMove):
            apply(S.completed, E.OFFER)


class TestTerminal:
    """Invariant 1: every contact ends in exactly one terminal status."""

    @pytest.mark.parametrize("status", sorted(TERMINAL), ids=str)
    def test_a_terminal_status_has_no_way_out(self, status: ContactStatus) -> None:
        for event in ContactEvent:
            with pytest.raises(IllegalContactMove):
                apply(status, event)

    def test_the_terminal_statuses_are_exactly_those_without_a_move_out(self) -> None:
        with_a_way_out = {status for status, _ in moves()}
        assert set(ContactStatus) - with_a_way_out == TERMINAL

    def test_the_terminal_statuses_are_the_five_endings(self) -> None:
        assert {s.value for s in TERMINAL} == {
            "completed",
            "abandoned",
            "timed_out",
            "transferred",
            "canceled",
        }

    def test_every_status_is_reachable_from_the_first(self) -> None:
        assert _reachable(INITIAL) == set(ContactStatus)

    @pytest.mark.parametrize("status", sorted(set(ContactStatus) - TERMINAL), ids=str)
    def test_every_live_status_can_still_end(self, status: ContactStatus) -> None:
        assert _reachable(status) & TERMINAL


class TestStatuses:
    def test_a_contact_starts_queued(self) -> None:
        assert INITIAL is S.queued
        assert INITIAL not in TERMINAL

    def test_waiting_means_not_yet_answered(self) -> None:
        assert {S.queued, S.offered} == WAITING
        answered = _reachable(S.connected)
        assert not WAITING & answered


def _reachable(start: ContactStatus) -> set[ContactStatus]:
    seen, frontier = {start}, [start]
    while frontier:
        status = frontier.pop()
        for (origin, _), after in moves().items():
            if origin is status and after not in seen:
                seen.add(after)
                frontier.append(after)
    return seen
