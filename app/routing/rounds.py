"""The dispatcher's rounds: read, decide, write, with what the leader keeps between them.

Theory of operation: the leader (``dispatcher.Dispatcher``) keeps what changes rarely
between rounds in a ``Rounds``: the agents (``board.AgentBoard``) and the queues' routing
rules (re-read when a ``queue.*`` event names the queue). A round then costs a few
statements on the leader's own connection, whatever the size of the centre:

1. read supply from the agents' rows: the agents whose ``routing_tx`` (the transaction that
   last changed the agent, its channels or its skills; set by triggers) is at or above the
   ``xmin`` of the previous read's snapshot, with this read's own ``xmin``. A change the
   previous read could not see was made by a transaction still running or not yet begun
   then, so its id is at or above that ``xmin``: nothing is missed, whatever else runs on
   the server (an old open transaction only widens the range read; the row versions
   already read, our own offers' included, are skipped: ``board.RowVersions``). Then read the
   demand with the database's clock: each queue's most urgent queued contacts (by
   deadline, up to ``dispatch_batch`` per queue) on channels some agent has room on, so a
   queue whose contacts nobody free may take never hides another queue's;
2. decide with the pure scoring core (``scoring.match``) among the board's candidates, with
   no transaction open (the waiting contacts' relationship managers inside their windows
   and last agents inside theirs who are available but may be offered nothing now go with
   them: such an agent holds their contact, ``scoring``; one who is away, offline or
   inactive is left out, and holds nothing);
3. write in one statement (``_WRITE``), so in one short transaction: it locks the matched
   contacts and agents with ``SKIP LOCKED`` and re-checks them (still queued; still
   routable, holding the step's skills and the contact's own, with room counted afresh),
   then inserts the
   offers, their ring-timeout timers and events and updates the contacts, loads and
   agents. A pair that changed meanwhile is left for the next round.

So nothing waits on a lock held by a request, and a stale board costs a skipped match,
never a wrong offer. The database backs the decision: one pending offer per contact (partial
unique index) and ``load <= capacity`` per agent channel (check constraint).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from app.agents import presence
from app.config import Settings
from app.events.log import LoggedEvent
from app.routing import scoring
from app.routing.board import AgentBoard, AgentRow, RowVersions, Wanted
from app.routing.events import AgentWorkEventType, OfferEventType
from app.routing.offers import OFFER_EXPIRE


def tier_policies(settings: Settings) -> dict[str, scoring.TierPolicy]:
    return {
        name: scoring.TierPolicy(
            name=name, sl_target_s=t.sl_target_s, rank=t.rank, rm_affinity_s=t.rm_affinity_s
        )
        for name, t in settings.tiers.items()
    }


def queue_rules(queue_id: int, strategy: str, steps: Sequence[Any]) -> scoring.QueueRules:
    """A queue's routing rules as the scoring core takes them (steps as stored: JSON)."""
    return scoring.QueueRules(
        id=queue_id,
        strategy=scoring.Strategy(strategy),
        steps=tuple(
            scoring.Step(
                skills=scoring.skill_reqs(step["skills"]),
                expires_after_s=step.get("expires_after_s"),
            )
            for step in steps
        ),
    )


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """What a round needs of a queue: its rules and how long an offer of it rings."""

    rules: scoring.QueueRules
    ring_timeout_s: float


@dataclass(frozen=True, slots=True)
class Waiting:
    policy: QueuePolicy
    view: scoring.ContactView

    @property
    def rules(self) -> scoring.QueueRules:
        return self.policy.rules


def wanted(waiting: Sequence[Waiting], now: datetime) -> Wanted:
    skills: dict[str, int] | None = {}
    managers: set[int] = set()
    for w in waiting:
        if w.view.relationship_manager_id is not None:
            managers.add(w.view.relationship_manager_id)
        reqs = scoring.requirements(w.rules, w.view, now)
        if not reqs:
            skills = None
        elif skills is not None:
            for req in reqs:
                skills[req.skill] = min(req.min_level, skills.get(req.skill, req.min_level))
    return Wanted(
        channels=frozenset(w.view.channel for w in waiting),
        skills=skills,
        agent_ids=frozenset(managers),
    )


def present_holders(
    board: AgentBoard,
    waiting: Sequence[Waiting],
    candidates: Sequence[scoring.AgentView],
    now: datetime,
) -> list[scoring.AgentView]:
    """The agents the waiting contacts may be held for (``scoring.holders``: a relationship
    manager inside the manager window, a last agent inside theirs) who are available but
    not candidates, so may be offered nothing now (no room, wrap-up, a rest): the scoring
    core holds a contact for such an agent as for one with room. Away, offline and inactive
    agents are left out, so they hold nothing. From the board: no query of its own."""
    ids = {agent_id for w in waiting for agent_id in scoring.holders(w.view, now)}
    ids -= {agent.id for agent in candidates}
    rows = (board.row(agent_id) for agent_id in sorted(ids))
    return [
        scoring.AgentView(
            id=row.id,
            skills=row.skills,
            idle_since=row.idle_since,
            load=row.load,
            capacity=row.capacity,
            ready=False,
        )
        for row in rows
        if row is not None and row.available
    ]


@dataclass(frozen=True, slots=True)
class Plan:
    """What a round read: the free agents and the most urgent waiting contacts."""

    now: datetime
    agents: list[scoring.AgentView]
    waiting: list[Waiting]
    next_ready: datetime | None


def decide(plan: Plan, settings: Settings) -> list[scoring.Match]:
    dispatch = scoring.DispatchSettings(starvation_bound_s=settings.starvation_bound_s)
    return scoring.match([(w.rules, w.view) for w in plan.waiting], plan.agents, plan.now, dispatch)


def _earliest(*times: datetime | None) -> datetime | None:
    present = [t for t in times if t is not None]
    return min(present) if present else None


def next_wake(plan: Plan, matches: Sequence[scoring.Match]) -> datetime | None:
    matched = {m.contact.id for m in matches}
    steps = [
        scoring.next_wake_at(w.rules, w.view, plan.now)
        for w in plan.waiting
        if w.view.id not in matched
    ]
    return _earliest(plan.next_ready, *steps)


@dataclass(frozen=True, slots=True)
class Round:
    offers: int
    next_wake_at: datetime | None
    now: datetime
    skipped: int = 0  # decided pairs the write left: a row had moved on, or a request held it


# --- reads --------------------------------------------------------------------------------

_AGENT_COLUMNS = """
    SELECT a.id, a.routing_tx, a.active, a.status = 'available' AND a.active AS available,
        a.work_wrap_ups, a.ready_at, a.idle_since, a.last_offer_at, a.contacts_day,
        a.contacts_today, ch.channels, ch.loads, ch.capacities, sk.names, sk.levels
    FROM agents a
    LEFT JOIN LATERAL (
        SELECT array_agg(channel) AS channels, array_agg(load) AS loads,
            array_agg(capacity) AS capacities
        FROM agent_channels WHERE agent_id = a.id
    ) ch ON true
    LEFT JOIN LATERAL (
        SELECT array_agg(k.name) AS names, array_agg(s.level) AS levels
        FROM agent_skills s JOIN skills k ON k.id = s.skill_id WHERE s.agent_id = a.id
    ) sk ON true
"""
# Agents with the xmin of the statement's snapshot (one row without an agent when none
# match): every active agent; or those changed by a transaction at or above $1 (an xmin
# read before), but for the row versions already read ($2: ids, $3: their routing_tx), so
# a transaction left open on the server costs a larger scan of the index, not the same
# agents read again every round. Two statements rather than one with an "$1 IS NULL OR
# ..." test: a prepared statement gets one generic plan, which cannot be good for both.
_WITH_XMIN = """
    SELECT x.xmin, r.* FROM (
        SELECT (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint AS xmin
    ) x
    LEFT JOIN LATERAL ({agents}) r ON true
"""
_ALL_AGENTS = _WITH_XMIN.format(agents=f"{_AGENT_COLUMNS} WHERE a.active")
_CHANGED_AGENTS = _WITH_XMIN.format(
    agents=f"""{_AGENT_COLUMNS}
    WHERE a.routing_tx >= $1 AND NOT EXISTS (
        SELECT 1 FROM unnest($2::bigint[], $3::bigint[]) AS k(id, tx)
        WHERE k.id = a.id AND k.tx = a.routing_tx)"""
)

# The database's clock, and each queue's most urgent queued contacts on the channels some
# agent has room on ($1), up to $2 of them per queue (ix_contacts_queued_queue_deadline):
# a window per queue, so the contacts of one queue nobody free may take never hide those
# of another. With each, its customer's relationship manager and the agent the customer
# should reach first (``app.routing.affinity``) until when: a probe of each primary key.
_WAITING = """
    SELECT now() AS now, w.* FROM (SELECT) one
    LEFT JOIN LATERAL (
        SELECT c.id, c.queue_id, c.channel, c.tier, c.enqueued_at, c.routing_started_at,
            c.declined_by, c.skills, cu.relationship_manager_id, ca.agent_id AS last_agent_id,
            c.enqueued_at + make_interval(secs => ca.hold_s) AS last_agent_until
        FROM queues q
        CROSS JOIN LATERAL (
            SELECT c.id, c.queue_id, c.channel, c.tier, c.enqueued_at, c.routing_started_at,
                c.declined_by, c.skills, c.customer_id
            FROM contacts c
            WHERE c.queue_id = q.id AND c.status = 'queued' AND c.channel = ANY($1::text[])
            ORDER BY c.deadline_at, c.id
            LIMIT $2
        ) c
        LEFT JOIN customers cu ON cu.id = c.customer_id
        LEFT JOIN customer_affinities ca ON ca.customer_id = c.customer_id
        WHERE cardinality($1::text[]) > 0  -- nobody has room: no queue to look into
    ) w ON true
"""
_QUEUES = "SELECT id, strategy, steps, ring_timeout_s FROM queues WHERE id = ANY($1::bigint[])"
FILL_SLICE = 200  # agents put on a new board between two turns of the event loop


def _agent_row(record: asyncpg.Record) -> AgentRow:
    channels = record["channels"] or []
    names = record["names"] or []
    return AgentRow(
        id=record["id"],
        available=record["available"],
        wrap_ups=record["work_wrap_ups"],
        ready_at=record["ready_at"],
        idle_since=record["idle_since"],
        last_offer_at=record["last_offer_at"],
        contacts_day=record["contacts_day"],
        contacts_today=record["contacts_today"],
        load=dict(zip(channels, record["loads"] or [], strict=True)),
        capacity=dict(zip(channels, record["capacities"] or [], strict=True)),
        skills=dict(zip(names, record["levels"] or [], strict=True)),
    )


# --- the write ----------------------------------------------------------------------------

# A round's offers in one statement, so in one short transaction of its own. The decided
# pairs ($1..$7, one element each, in decision order) are re-checked under lock: the
# contacts still queued and the agents still routable are locked without waiting (a row a
# request holds is skipped, and its pair left for the next round); an agent must still
# hold the skills its pair's routing step and its contact ask for ($7: name -> lowest
# level), and its
# pairs on a channel are kept, in order, while its room (capacity - load) lasts. Skills
# and room are read from the statement's snapshot, which is current for an agent whose
# row it sees: every change to them writes the agent's row (triggers), so a change that
# committed after the snapshot left a newer version of the row, which the lock finds and
# the visibility test refuses, and one still running holds the row, which the lock skips.
# Then the offers, their ring-timeout timers and events, the contacts, the loads and the
# agents are written (the ``offer.created`` events carry the pair's reason, $5). After an
# offer an agent's state is $8 if it has a connected contact, else $9
# (``presence.derive_state`` decides both; routable agents have no
# wrap-up). Returns the offers made, each with the agent row's version it was written over.
_WRITE = f"""
    WITH m AS (
        SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[],
            $5::jsonb[], $6::float8[], $7::jsonb[])
            WITH ORDINALITY AS m(contact_id, agent_id, queue_id, channel, reason, ring_s,
                skills, ord)
    ), clock AS (
        SELECT clock_timestamp() AS at
    ), pairs AS (
        -- Locked from the pairs, each row through its primary key: a plan that does not
        -- depend on how many pairs the planner guesses (prepared statements get one generic
        -- plan, which guesses a handful).
        SELECT m.*, a.work_contacts, a.state AS was
        FROM m
        JOIN contacts c ON c.id = m.contact_id
        JOIN agents a ON a.id = m.agent_id
        WHERE c.status = 'queued'
          AND a.status = 'available' AND a.active AND a.work_wrap_ups = 0
          AND (a.ready_at IS NULL OR a.ready_at <= now())
          AND pg_visible_in_snapshot((a.routing_tx::text)::xid8, pg_current_snapshot())
        FOR UPDATE OF c, a SKIP LOCKED
    ), possible AS (
        SELECT p.*, ac.capacity - ac.load AS room,
            row_number() OVER (PARTITION BY p.agent_id, p.channel ORDER BY p.ord) AS nth
        FROM pairs p
        JOIN agent_channels ac ON ac.agent_id = p.agent_id AND ac.channel = p.channel
        WHERE NOT EXISTS (
            SELECT 1 FROM jsonb_each_text(p.skills) need(skill, level)
            WHERE NOT EXISTS (
                SELECT 1 FROM agent_skills s JOIN skills k ON k.id = s.skill_id
                WHERE s.agent_id = p.agent_id AND k.name = need.skill
                  AND s.level >= need.level::int))
    ), kept AS (
        SELECT p.*, row_number() OVER (PARTITION BY p.agent_id ORDER BY p.ord) AS first,
            count(*) OVER (PARTITION BY p.agent_id) AS made,
            CASE WHEN p.work_contacts > 0 THEN $8::text ELSE $9::text END AS state
        FROM possible p WHERE p.nth <= p.room
    ), o AS (
        INSERT INTO offers (contact_id, agent_id, queue_id, channel, reason, created_at,
            expires_at)
        SELECT k.contact_id, k.agent_id, k.queue_id, k.channel, k.reason, clock.at,
            clock.at + make_interval(secs => k.ring_s)
        FROM kept k, clock ORDER BY k.ord
        RETURNING id, contact_id, agent_id, channel, expires_at
    ), offered AS (
        UPDATE contacts c SET status = 'offered', agent_id = k.agent_id, updated_at = now()
        FROM kept k WHERE c.id = k.contact_id
    ), loaded AS (
        UPDATE agent_channels ac SET load = ac.load + t.n
        FROM (SELECT agent_id, channel, count(*)::int AS n FROM kept GROUP BY 1, 2) t
        WHERE ac.agent_id = t.agent_id AND ac.channel = t.channel
    ), working AS (
        UPDATE agents a SET work_offers = a.work_offers + k.made, state = k.state,
            state_changed_at = CASE WHEN k.state <> a.state THEN now()
                                    ELSE a.state_changed_at END,
            last_offer_at = now(), updated_at = now()
        FROM kept k WHERE a.id = k.agent_id AND k.first = 1
    ), ringing AS (
        INSERT INTO timers (kind, subject, due_at)
        SELECT '{OFFER_EXPIRE}', o.id::text, o.expires_at FROM o
    ), logged AS (
        INSERT INTO events (type, subject_type, subject_id, data, actor)
        SELECT type, subject_type, subject_id, data, 'system' FROM (
            SELECT k.ord, 0 AS k, '{AgentWorkEventType.STATE_CHANGED}' AS type,
                'agent' AS subject_type, k.agent_id::text AS subject_id,
                jsonb_build_object('agent_id', k.agent_id, 'state', k.state,
                    'previous', k.was, 'contact_id', k.contact_id) AS data
            FROM kept k WHERE k.first = 1 AND k.state <> k.was
            UNION ALL
            SELECT k.ord, 1, '{OfferEventType.CREATED}', 'offer', o.id::text,
                jsonb_build_object('offer_id', o.id, 'contact_id', k.contact_id,
                    'agent_id', k.agent_id, 'queue_id', k.queue_id, 'channel', k.channel,
                    'reason', k.reason, 'expires_at', o.expires_at)
            FROM kept k JOIN o ON o.contact_id = k.contact_id
        ) e ORDER BY ord, k
    )
    SELECT o.id, o.contact_id, o.agent_id, o.channel, o.expires_at, now() AS now,
        -- The version of the agent's row the offer was written over: the locked one, which
        -- is the one this statement's snapshot sees (the lock refuses any other).
        (SELECT a.routing_tx FROM agents a WHERE a.id = o.agent_id) AS written_over,
        (pg_current_xact_id()::text)::bigint AS tx
    FROM o
"""
# The state an agent derives once offered a contact, with and without a connected one.
_OFFERED_STATES = (
    presence.derive_state(presence.Work(offers=1, contacts=1, wrap_ups=0)).value,
    presence.derive_state(presence.Work(offers=1, contacts=0, wrap_ups=0)).value,
)


@dataclass(frozen=True, slots=True)
class Made:
    """An offer the round wrote."""

    offer_id: int
    contact_id: int
    agent_id: int
    channel: str
    expires_at: datetime


def required_skills(m: scoring.Match) -> dict[str, int]:
    """The skills (name: lowest level) asked of the agent: those of the routing step in
    force when the pair was decided (the reason's step) and the contact's own, the higher
    level where both name a skill; the write checks the agent still holds them."""
    step = m.reason.step
    reqs = () if step is None else m.queue.steps[step].skills
    needed: dict[str, int] = {}
    for req in (*reqs, *m.contact.skills):
        needed[req.skill] = max(req.min_level, needed.get(req.skill, 0))
    return needed


class Rounds:
    """What the leader keeps between rounds, and the rounds themselves, on its connection.

    ``on_commit(made)`` runs after each round's write commits (wake the event hub, and the
    timer worker when an offer rings for less than its poll interval).
    """

    def __init__(
        self,
        conn: asyncpg.Connection,
        settings: Settings,
        *,
        on_commit: Callable[[Sequence[Made]], None] | None = None,
    ) -> None:
        self._conn = conn
        self._settings = settings
        self._on_commit = on_commit
        self._tiers = tier_policies(settings)
        self.board = AgentBoard()
        self._queues: dict[int, QueuePolicy] = {}
        self._filled_at: float | None = None
        self._versions = RowVersions()

    def on_events(self, batch: Sequence[LoggedEvent]) -> None:
        """Forget the rules of the queues these events name. Agents are not marked: each
        round reads the changed ones from their rows."""
        for event in batch:
            if event.subject_type == "queue" and event.subject_id.isdigit():
                self._queues.pop(int(event.subject_id), None)

    async def round(self) -> Round:
        """Read, decide, write. No transaction stays open while the scoring core decides, so
        the round never holds the event log's readers back."""
        plan = await self.read()
        matches = decide(plan, self._settings)
        made = await self.write(plan, matches)
        return Round(len(made), next_wake(plan, matches), plan.now, len(matches) - len(made))

    async def read(self) -> Plan:
        await self._refresh_agents()
        board = self.board
        rows = await self._conn.fetch(
            _WAITING, list(board.served_channels()), self._settings.dispatch_batch
        )
        now: datetime = rows[0]["now"]
        found = [row for row in rows if row["id"] is not None]
        if not found:
            return Plan(now, [], [], board.next_ready(now))
        waiting = await self._waiting(found)
        agents = board.candidates(wanted(waiting, now), now)
        agents += present_holders(board, waiting, agents, now)
        return Plan(now, agents, waiting, board.next_ready(now))

    async def _refresh_agents(self) -> None:
        clock = asyncio.get_running_loop().time()
        every = self._settings.dispatch_board_refresh_s
        if not self.board.filled or self._filled_at is None or clock - self._filled_at > every:
            self._queues.clear()
            await self._fill()
            self._filled_at = clock
            return
        versions = self._versions
        rows = await self._conn.fetch(_CHANGED_AGENTS, versions.since, *versions.known())
        changed = [row for row in rows if row["id"] is not None]
        if changed:
            active = (_agent_row(row) for row in changed if row["active"])
            self.board.update([row["id"] for row in changed], active)
        versions.advance(((row["id"], row["routing_tx"]) for row in changed), rows[0]["xmin"])

    async def _fill(self) -> None:
        """Read every agent into a new board, built a slice at a time: a centre's whole
        board takes tens of milliseconds to build, which would hold up every request on an
        event loop the dispatcher shares."""
        rows = await self._conn.fetch(_ALL_AGENTS)
        agents = [row for row in rows if row["id"] is not None]
        fresh = AgentBoard()
        fresh.fill(())
        for start in range(0, len(agents), FILL_SLICE):
            fresh.update((), (_agent_row(r) for r in agents[start : start + FILL_SLICE]))
            await asyncio.sleep(0)
        self.board = fresh
        self._versions = RowVersions()
        self._versions.advance(((r["id"], r["routing_tx"]) for r in agents), rows[0]["xmin"])

    async def _waiting(self, rows: Sequence[asyncpg.Record]) -> list[Waiting]:
        missing = sorted({row["queue_id"] for row in rows} - self._queues.keys())
        if missing:
            for q in await self._conn.fetch(_QUEUES, missing):
                self._queues[q["id"]] = QueuePolicy(
                    queue_rules(q["id"], q["strategy"], q["steps"]), q["ring_timeout_s"]
                )
        fallback = self._tiers[self._settings.default_tier]
        return [
            Waiting(
                policy=self._queues[row["queue_id"]],
                view=scoring.ContactView(
                    id=row["id"],
                    channel=row["channel"],
                    tier=self._tiers.get(row["tier"], fallback),
                    enqueued_at=row["enqueued_at"],
                    routing_started_at=row["routing_started_at"],
                    relationship_manager_id=row["relationship_manager_id"],
                    last_agent_id=row["last_agent_id"],
                    last_agent_until=self._hold_until(row, self._tiers.get(row["tier"], fallback)),
                    declined_by=frozenset(row["declined_by"]),
                    skills=scoring.skill_reqs(row["skills"]),
                ),
            )
            for row in rows
            if row["queue_id"] in self._queues  # a queue deleted meanwhile: not routable
        ]

    def _hold_until(self, row: asyncpg.Record, tier: scoring.TierPolicy) -> datetime | None:
        """The last-agent window, ended no later than the contact's target plus the starvation
        bound: a hold for a busy handler never makes a contact overdue."""
        until = row["last_agent_until"]
        if until is None:
            return None
        bound = timedelta(seconds=tier.sl_target_s + self._settings.starvation_bound_s)
        return min(until, row["enqueued_at"] + bound)  # type: ignore[no-any-return]

    async def write(self, plan: Plan, matches: Sequence[scoring.Match]) -> list[Made]:
        """Write the decided offers (leases until each queue's ring timeout), re-checked
        under lock, in one statement; apply them to the board once committed."""
        if not matches:
            return []
        ring = {w.view.id: w.policy.ring_timeout_s for w in plan.waiting}
        rows = await self._conn.fetch(
            _WRITE,
            [m.contact.id for m in matches],
            [m.agent_id for m in matches],
            [m.queue.id for m in matches],
            [m.contact.channel for m in matches],
            [m.reason.as_dict() for m in matches],
            [ring[m.contact.id] for m in matches],
            [required_skills(m) for m in matches],
            *_OFFERED_STATES,
        )
        made = [
            Made(row["id"], row["contact_id"], row["agent_id"], row["channel"], row["expires_at"])
            for row in rows
        ]
        self._apply(rows)
        if made and self._on_commit is not None:
            self._on_commit(made)
        return made

    def _apply(self, rows: Sequence[asyncpg.Record]) -> None:
        """Apply our committed offers to the board, so the next read need not read their
        agents again; but where the board did not hold the version of the agent's row the
        offer was written over (another transaction changed it after our read), the next
        read reads the agent's row, which has both changes."""
        versions, applied = self._versions, []
        for row in rows:
            if versions.holds(row["agent_id"], row["written_over"]):
                self.board.offered(row["agent_id"], row["channel"], row["now"])
                applied.append((row["agent_id"], row["tx"]))
        versions.note(applied)
