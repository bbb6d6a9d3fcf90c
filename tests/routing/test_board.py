"""The dispatcher's agent board (pure): indexes, updates, candidates, delays."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from app.routing.board import AgentBoard, AgentRow, RowVersions, Wanted

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
TODAY = NOW.date()


def row(agent_id: int, **overrides: Any) -> AgentRow:
    values: dict[str, Any] = {
        "id": agent_id,
        "available": True,
        "wrap_ups": 0,
        "ready_at": None,
        "idle_since": NOW - timedelta(minutes=agent_id),
        "last_offer_at": None,
        "contacts_day": TODAY,
        "contacts_today": 0,
        "load": {"chat": 0},
        "capacity": {"chat": 2},
        "skills": {"cards": 5},
    }
    values.update(overrides)
    return AgentRow(**values)


def want(
    channels: tuple[str, ...] = ("chat",),
    skills: dict[str, int] | None = None,
    agent_ids: tuple[int, ...] = (),
    *,
    anyone: bool = False,
) -> Wanted:
    """Agents with room on ``channels``: holding ``skills`` (name: lowest level; cards at 1
    unless given), or named in ``agent_ids``; ``anyone``: whatever their skills."""
    return Wanted(
        channels=frozenset(channels),
        skills=None if anyone else (skills if skills is not None else {"cards": 1}),
        agent_ids=frozenset(agent_ids),
    )


def board_of(*rows: AgentRow) -> AgentBoard:
    board = AgentBoard()
    board.fill(rows)
    return board


def ids(board: AgentBoard, wanted: Wanted, now: datetime = NOW) -> list[int]:
    return sorted(view.id for view in board.candidates(wanted, now))


class TestAgentRowSpareOn:
    @pytest.mark.parametrize(
        ("overrides", "channel", "spare"),
        [
            ({}, "chat", True),
            ({"available": False}, "chat", False),
            ({"wrap_ups": 1}, "chat", False),
            ({"load": {"chat": 2}}, "chat", False),
            ({}, "voice", False),  # no capacity on the channel at all
        ],
        ids=["room", "not-available", "in-wrap-up", "full", "no-such-channel"],
    )
    def test_room_needs_availability_no_wrap_up_and_load_below_capacity(
        self, overrides: dict[str, Any], channel: str, spare: bool
    ) -> None:
        assert row(1, **overrides).spare_on(channel) is spare


class TestFill:
    def test_a_new_board_is_empty_and_not_filled(self) -> None:
        board = AgentBoard()

        assert len(board) == 0
        assert not board.filled
        assert board.served_channels() == frozenset()

    def test_fill_replaces_everything(self) -> None:
        board = board_of(row(1), row(2))

        board.fill([row(3)])

        assert len(board) == 1
        assert board.row(1) is None
        assert ids(board, want()) == [3]

    def test_clear_empties_and_asks_for_a_fill(self) -> None:
        board = board_of(row(1))

        board.clear()

        assert not board.filled
        assert len(board) == 0


class TestCandidates:
    def test_skilled_agents_with_room_on_the_channel(self) -> None:
        board = board_of(
            row(1),
            row(2, skills={"loans": 3}),
            row(3, load={"chat": 2}),
            row(4, available=False),
            row(5, wrap_ups=1),
            row(6, capacity={"voice": 1}, load={"voice": 0}),
        )

        assert ids(board, want()) == [1]

    def test_any_agent_when_no_skill_is_wanted(self) -> None:
        board = board_of(row(1), row(2, skills={}), row(3, load={"chat": 2}))

        assert ids(board, want(anyone=True)) == [1, 2]

    def test_named_agents_count_without_the_skill(self) -> None:
        board = board_of(row(1), row(2, skills={"loans": 3}))

        assert ids(board, want(agent_ids=(2,))) == [1, 2]

    def test_named_agent_without_room_is_not_a_candidate(self) -> None:
        board = board_of(row(2, skills={}, load={"chat": 2}))

        assert ids(board, want(agent_ids=(2,))) == []

    def test_any_wanted_channel_with_room_will_do(self) -> None:
        board = board_of(
            row(1, capacity={"voice": 1, "chat": 1}, load={"voice": 1, "chat": 0}),
            row(2, capacity={"voice": 1}, load={"voice": 0}),
        )

        assert ids(board, want(channels=("voice", "chat"))) == [1, 2]
        assert ids(board, want(channels=("voice",))) == [2]

    def test_a_resting_agent_is_a_candidate_once_ready(self) -> None:
        board = board_of(row(1, ready_at=NOW + timedelta(seconds=5)))

        assert ids(board, want()) == []
        assert ids(board, want(), NOW + timedelta(seconds=5)) == [1]

    def test_views_carry_what_the_strategies_rank_by(self) -> None:
        offered = NOW - timedelta(seconds=30)
        board = board_of(row(1, contacts_today=7, last_offer_at=offered, load={"chat": 1}))

        (view,) = board.candidates(want(), NOW)

        assert view.contacts_today == 7
        assert view.last_offer_at == offered
        assert dict(view.load) == {"chat": 1}
        assert dict(view.capacity) == {"chat": 2}
        assert dict(view.skills) == {"cards": 5}
        assert view.idle_since == NOW - timedelta(minutes=1)

    def test_contacts_counted_on_another_day_count_as_none(self) -> None:
        board = board_of(row(1, contacts_day=date(2026, 11, 29), contacts_today=7))

        (yesterday,) = board.candidates(want(), NOW - timedelta(days=1))
        (today,) = board.candidates(want(), NOW)

        assert yesterday.contacts_today == 7
        assert today.contacts_today == 0

    def test_holders_below_the_lowest_level_asked_for_are_left_out(self) -> None:
        board = board_of(row(1, skills={"cards": 2}), row(2, skills={"cards": 3}), row(3))

        assert ids(board, want(skills={"cards": 3})) == [2, 3]
        assert ids(board, want(skills={"cards": 6})) == []
        assert ids(board, want(skills={"cards": 6}, agent_ids=(1,))) == [1]

    def test_any_of_several_skills_will_do(self) -> None:
        board = board_of(row(1, skills={"cards": 2}), row(2, skills={"loans": 9}), row(3))

        assert ids(board, want(skills={"cards": 3, "loans": 9})) == [2, 3]

    def test_unknown_skill_and_channel_give_nobody(self) -> None:
        board = board_of(row(1))

        assert ids(board, want(skills={"ghost": 1})) == []
        assert ids(board, want(channels=("sms",))) == []


class TestServedChannels:
    def test_channels_someone_has_room_on_resting_or_not(self) -> None:
        board = board_of(
            row(1, capacity={"chat": 1, "voice": 1}, load={"chat": 1, "voice": 0}),
            row(2, capacity={"case": 5}, load={"case": 0}, ready_at=NOW + timedelta(hours=1)),
            row(3, capacity={"app": 1}, load={"app": 0}, available=False),
        )

        assert board.served_channels() == frozenset({"voice", "case"})

    def test_a_channel_nobody_has_room_on_any_more_is_not_served(self) -> None:
        board = board_of(row(1, capacity={"chat": 1}))

        board.update([1], [row(1, capacity={"chat": 1}, load={"chat": 1})])

        assert board.served_channels() == frozenset()


class TestUpdate:
    def test_update_replaces_read_rows_and_drops_asked_agents_not_found(self) -> None:
        board = board_of(row(1), row(2), row(3))

        board.update([1, 2], [row(1, skills={"loans": 4})])

        assert board.row(2) is None
        assert ids(board, want(skills={"loans": 1})) == [1]
        assert ids(board, want()) == [3]

    def test_update_adds_an_agent_the_board_did_not_know(self) -> None:
        board = board_of(row(1))

        board.update([9], [row(9)])

        assert ids(board, want()) == [1, 9]

    def test_an_agent_who_lost_room_leaves_the_channel_index(self) -> None:
        board = board_of(row(1))

        board.update([1], [row(1, available=False)])

        assert ids(board, want()) == []
        assert board.served_channels() == frozenset()


class TestOffered:
    def test_our_offer_takes_room_and_dates_the_last_offer(self) -> None:
        board = board_of(row(1), row(2))
        board.candidates(want(), NOW)  # views built before the offer are not reused

        board.offered(1, "chat", NOW)

        views = {v.id: v for v in board.candidates(want(), NOW)}
        assert views[1].load == {"chat": 1}
        assert views[1].last_offer_at == NOW
        assert views[2].load == {"chat": 0}

    def test_full_after_our_offers_means_no_longer_a_candidate(self) -> None:
        board = board_of(row(1))

        board.offered(1, "chat", NOW)
        board.offered(1, "chat", NOW)

        assert ids(board, want()) == []

    def test_offer_to_an_agent_the_board_no_longer_has_is_ignored(self) -> None:
        board = board_of(row(1))

        board.offered(99, "chat", NOW)

        assert ids(board, want()) == [1]


class TestRowVersions:
    def test_a_new_record_reads_everything_and_skips_nothing(self) -> None:
        versions = RowVersions()

        assert versions.since == 0
        assert versions.known() == ([], [])

    def test_versions_read_are_skipped_while_at_or_above_the_xmin(self) -> None:
        versions = RowVersions()

        versions.advance([(1, 100), (2, 104)], xmin=100)

        assert versions.since == 100
        assert versions.known() == ([1, 2], [100, 104])

    def test_a_newer_version_of_an_agent_replaces_the_older(self) -> None:
        versions = RowVersions()
        versions.advance([(1, 100)], xmin=100)

        versions.advance([(1, 107)], xmin=100)

        assert versions.known() == ([1], [107])

    @pytest.mark.parametrize(
        ("agent_id", "tx", "held"),
        [(1, 99, True), (1, 100, True), (1, 101, False), (2, 104, True), (3, 104, False)],
        ids=["before-the-read", "read", "newer-than-read", "read-other", "never-read"],
    )
    def test_the_board_holds_versions_it_read_or_older_than_the_last_read(
        self, agent_id: int, tx: int, held: bool
    ) -> None:
        versions = RowVersions()
        versions.advance([(1, 100), (2, 104)], xmin=100)

        assert versions.holds(agent_id, tx) is held

    def test_noted_versions_are_held_and_skipped(self) -> None:
        versions = RowVersions()
        versions.advance([(1, 100)], xmin=100)

        versions.note([(1, 120), (5, 120)])

        assert versions.holds(5, 120)
        assert versions.known() == ([1, 5], [120, 120])

    def test_versions_below_a_later_xmin_are_forgotten(self) -> None:
        versions = RowVersions()
        versions.advance([(1, 100), (2, 104), (3, 109)], xmin=100)

        versions.advance([(4, 111)], xmin=105)

        assert versions.since == 105
        assert versions.known() == ([3, 4], [109, 111])


class TestNextReady:
    def test_soonest_delay_of_an_agent_with_room(self) -> None:
        board = board_of(
            row(1, ready_at=NOW + timedelta(seconds=20)),
            row(2, ready_at=NOW + timedelta(seconds=5)),
            row(3, ready_at=NOW + timedelta(seconds=1), load={"chat": 2}),  # no room
            row(4, ready_at=NOW + timedelta(seconds=1), available=False),
        )

        assert board.next_ready(NOW) == NOW + timedelta(seconds=5)

    def test_delays_that_have_passed_are_forgotten(self) -> None:
        board = board_of(row(1, ready_at=NOW - timedelta(seconds=1)))

        assert board.next_ready(NOW) is None
        assert ids(board, want()) == [1]

    def test_no_resting_agent_means_no_wake_up(self) -> None:
        assert board_of(row(1)).next_ready(NOW) is None
