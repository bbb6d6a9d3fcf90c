"""The dispatcher's standing view of the agents, kept between its rounds.

Theory of operation
-------------------

A round needs the agents a waiting contact could go to, with their skills, per-channel load
and capacity and the figures the queue's strategy ranks them by. Reading hundreds of agents
from the database for every round would cost more than the rest of the round, and most of
them have not changed since the last one. The board keeps every active agent instead:

- it is filled whole (``fill``) when the dispatcher takes the lead, and again every
  ``dispatch_board_refresh_s`` as a safety net;
- before each decision the dispatcher reads again the agents whose rows changed since its
  previous read (``update``; ``app/routing/rounds.py`` says how it finds them from the
  rows, never from the event feed, which any open transaction on the server holds back);
- the dispatcher's own offers are applied as soon as they commit (``offered``), when the
  board held the version of the agent's row the offer was written over;
- ``RowVersions`` remembers which versions of the agents' rows the board holds, so that
  a read skips the rows it has already seen (its own offers' too).

The board is a guide, not the truth: the round's write locks and re-checks every agent it
offers a contact to, so a stale entry can cost a skipped match, never a wrong offer.

Indexes keep a round's cost in proportion to the agents it could use, not to the centre:
per skill, the agents holding it; per channel, the agents who could take one more contact on
it now or after a delay (available, active, not in wrap-up, load below capacity). The
delay (``ready_at``) is checked when candidates are asked for.

Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from app.routing.scoring import AgentView

__all__ = ["AgentBoard", "AgentRow", "RowVersions", "Wanted"]

_NOBODY: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class AgentRow:
    """An agent as the database has it, in what routing needs."""

    id: int
    available: bool  # status available and the account active
    wrap_ups: int
    ready_at: datetime | None  # resting after a rejected or missed offer until then
    idle_since: datetime
    last_offer_at: datetime | None
    contacts_day: date | None
    contacts_today: int
    load: Mapping[str, int]
    capacity: Mapping[str, int]
    skills: Mapping[str, int]

    def spare_on(self, channel: str) -> bool:
        """May take one more contact on ``channel``, delays aside."""
        if not self.available or self.wrap_ups:
            return False
        return self.load.get(channel, 0) < self.capacity.get(channel, 0)


@dataclass(frozen=True, slots=True)
class Wanted:
    """Which agents a round's contacts could go to: a superset, to keep the round small.

    ``skills`` None: any agent (a contact whose steps have all expired, or a step without
    skills, and that requires no skills of its own); otherwise agents holding one of these
    skills at the level given (the lowest any waiting contact's step or the contact itself
    asks for), or one of ``agent_ids`` (the relationship
    managers, who may be the only agent a contact may go to).
    """

    channels: frozenset[str]
    skills: Mapping[str, int] | None
    agent_ids: frozenset[int] = frozenset()


@dataclass(slots=True)
class _Entry:
    row: AgentRow
    view: AgentView | None = None
    view_day: date | None = None

    def view_on(self, day: date) -> AgentView:
        if self.view is None or self.view_day != day:
            row = self.row
            self.view = AgentView(
                id=row.id,
                skills=row.skills,
                idle_since=row.idle_since,
                load=row.load,
                capacity=row.capacity,
                contacts_today=row.contacts_today if row.contacts_day == day else 0,
                last_offer_at=row.last_offer_at,
            )
            self.view_day = day
        return self.view


@dataclass
class AgentBoard:
    """Every active agent, indexed by skill and by the channels they have room on."""

    _entries: dict[int, _Entry] = field(default_factory=dict)
    _holders: dict[str, dict[int, set[int]]] = field(default_factory=dict)  # skill, level
    _spare: dict[str, set[int]] = field(default_factory=dict)
    _resting: set[int] = field(default_factory=set)
    filled: bool = False

    # --- keeping it current ---------------------------------------------------------------

    def fill(self, rows: Iterable[AgentRow]) -> None:
        """Replace everything with these rows (every active agent)."""
        self._entries.clear()
        self._holders.clear()
        self._spare.clear()
        self._resting.clear()
        for row in rows:
            self._put(row)
        self.filled = True

    def clear(self) -> None:
        """Forget everything: the next round fills the board again."""
        self.fill(())
        self.filled = False

    def update(self, asked: Sequence[int], rows: Iterable[AgentRow]) -> None:
        """The rows read for ``asked``: an asked agent without a row has gone (inactive)."""
        found = set()
        for row in rows:
            found.add(row.id)
            self._put(row)
        for agent_id in asked:
            if agent_id not in found:
                self._drop(agent_id)

    def offered(self, agent_id: int, channel: str, now: datetime) -> None:
        """Our own offer committed: one more contact on ``channel``, offered at ``now``.

        Only the load and the last offer change: the skills, the delay and the other
        channels' room stay as they are, so only this channel's room is looked at again."""
        entry = self._entries.get(agent_id)
        if entry is None:
            return
        row = entry.row
        load = {**row.load, channel: row.load.get(channel, 0) + 1}
        row = AgentRow(
            id=row.id,
            available=row.available,
            wrap_ups=row.wrap_ups,
            ready_at=row.ready_at,
            idle_since=row.idle_since,
            last_offer_at=now,
            contacts_day=row.contacts_day,
            contacts_today=row.contacts_today,
            load=load,
            capacity=row.capacity,
            skills=row.skills,
        )
        self._entries[agent_id] = _Entry(row)
        if not row.spare_on(channel):
            self._spare.get(channel, set()).discard(agent_id)

    def _put(self, row: AgentRow) -> None:
        self._drop(row.id)
        self._entries[row.id] = _Entry(row)
        for skill, level in row.skills.items():
            self._holders.setdefault(skill, {}).setdefault(level, set()).add(row.id)
        for channel in row.capacity:
            if row.spare_on(channel):
                self._spare.setdefault(channel, set()).add(row.id)
        if row.ready_at is not None:
            self._resting.add(row.id)

    def _drop(self, agent_id: int) -> None:
        entry = self._entries.pop(agent_id, None)
        if entry is None:
            return
        for skill, level in entry.row.skills.items():
            self._holders[skill][level].discard(agent_id)
        for channel in entry.row.capacity:
            self._spare.get(channel, set()).discard(agent_id)
        self._resting.discard(agent_id)

    # --- reading it -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def row(self, agent_id: int) -> AgentRow | None:
        entry = self._entries.get(agent_id)
        return None if entry is None else entry.row

    def served_channels(self) -> frozenset[str]:
        """Channels some agent has room on (now or after a delay)."""
        return frozenset(channel for channel, ids in self._spare.items() if ids)

    def candidates(self, want: Wanted, now: datetime) -> list[AgentView]:
        """Agents who may be offered something now, with room on one of the wanted channels
        and, unless any agent will do, one of the wanted skills or named."""
        rooms = [self._spare.get(channel, _NOBODY) for channel in want.channels]
        room = rooms[0] if len(rooms) == 1 else set().union(*rooms)
        if want.skills is None:
            ids = room
        else:
            named = set(want.agent_ids)
            for skill, lowest in want.skills.items():
                for level, holders in self._holders.get(skill, {}).items():
                    if level >= lowest:
                        named |= holders
            ids = named & room
        day = now.date()
        views = []
        for agent_id in ids:
            entry = self._entries[agent_id]
            ready_at = entry.row.ready_at
            if ready_at is None or ready_at <= now:
                views.append(entry.view_on(day))
        return views

    def next_ready(self, now: datetime) -> datetime | None:
        """The next time a resting agent with room becomes ready, if any."""
        soonest: datetime | None = None
        for agent_id in list(self._resting):
            row = self._entries[agent_id].row
            if row.ready_at is None or row.ready_at <= now:
                self._resting.discard(agent_id)  # ready for good, until the row changes
                continue
            has_room = any(row.spare_on(channel) for channel in row.capacity)
            if has_room and (soonest is None or row.ready_at < soonest):
                soonest = row.ready_at
        return soonest


@dataclass
class RowVersions:
    """Which versions of the agents' rows the board holds, as far as the next read needs.

    Each agent's row carries ``routing_tx``, the transaction that last changed it (or its
    channels or skills). A read takes the rows with ``routing_tx >= since``: every change
    the previous read could not see was made by a transaction at or above that read's
    snapshot ``xmin``. A version is named by (agent, ``routing_tx``): a transaction's
    changes are seen only once it has committed, and it writes nothing after. The versions
    read at or above ``since`` are kept so the read can skip them (the same rows come back
    each round while an old transaction holds ``xmin`` back); older ones can no longer
    match and are forgotten.
    """

    since: int = 0
    _txs: dict[int, int] = field(default_factory=dict)

    def known(self) -> tuple[list[int], list[int]]:
        """The versions the next read may skip: agent ids, and their ``routing_tx``."""
        return list(self._txs), list(self._txs.values())

    def holds(self, agent_id: int, tx: int) -> bool:
        """Whether the board holds the agent's row version written by ``tx``: one below
        ``since`` was committed before the last read's snapshot, which the board shows."""
        return tx < self.since or self._txs.get(agent_id) == tx

    def note(self, versions: Iterable[tuple[int, int]]) -> None:
        """The board now holds these (agent id, ``routing_tx``) versions as well."""
        self._txs.update(versions)

    def advance(self, read: Iterable[tuple[int, int]], xmin: int) -> None:
        """A read saw these (agent id, ``routing_tx``) versions; its snapshot's xmin."""
        txs = self._txs
        txs.update(read)
        if xmin != self.since:
            self._txs = {agent_id: tx for agent_id, tx in txs.items() if tx >= xmin}
        self.since = xmin
