"""The dispatcher: one decider per deployment matches waiting contacts with free agents.

Theory of operation: every instance runs a ``Dispatcher``, but only the one holding a
session-level advisory lock (on a dedicated connection) decides; when it dies its connection
closes, the lock is released and another instance takes over within ``leader_retry_s``. The
leader is woken after commits that change demand or supply (a contact queued or requeued,
an agent freed or made available) on this instance directly, on other instances through the
event log, and by a short tick; it also sleeps no longer than the next routing-step expiry or
agent delay it knows of.

A round reads the routable agents and the most urgent waiting contacts without locks, lets
the pure scoring core (``scoring.match``) decide, then, per match, locks the contact and the
agent with ``SKIP LOCKED`` and re-checks them before writing the offer. So a contact or agent
that changed meanwhile is simply left for the next round, and nothing waits on a lock held
by a request. The database backs the decision: one pending offer per contact (partial
unique index) and ``load <= capacity`` per agent channel (check constraint).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import and_, bindparam, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.agents import presence
from app.agents.models import Agent, AgentChannel, AgentSkill, Skill
from app.config import Settings
from app.customers.models import Customer
from app.db import plain_url, table_of, unit_of_work
from app.events.log import LoggedEvent, record_many
from app.routing import scoring, work
from app.routing.lifecycle import OFFER_EXPIRE
from app.routing.models import Contact, ContactStatus, Offer, Queue
from app.timers import service as timers
from app.waiting import wait_for_wake

log = logging.getLogger(__name__)

LEADER_LOCK = 0x484C4449  # "HLDI": the dispatcher's advisory lock key
# What changes demand or supply. A contact's ending frees its agent's capacity even when the
# agent's state stays busy (other chats), so the endings wake the dispatcher too: another
# process's commits reach it only through these events.
WAKE_EVENTS = frozenset(
    {
        "contact.queued",
        "contact.requeued",
        "contact.wrap_up",
        "contact.completed",
        "contact.abandoned",
        "contact.transferred",
        "contact.timed_out",
        "contact.canceled",
        "offer.rejected",
        "offer.expired",
        "offer.rescinded",
        "agent.status_changed",
        "agent.state_changed",
        "agent.updated",
        "queue.updated",
    }
)


def tier_policies(settings: Settings) -> dict[str, scoring.TierPolicy]:
    return {
        name: scoring.TierPolicy(
            name=name, sl_target_s=t.sl_target_s, rank=t.rank, rm_affinity_s=t.rm_affinity_s
        )
        for name, t in settings.tiers.items()
    }


def queue_rules(queue: Queue) -> scoring.QueueRules:
    steps = tuple(
        scoring.Step(
            skills=tuple(
                scoring.SkillReq(skill=s["skill"], min_level=s["min_level"]) for s in step["skills"]
            ),
            expires_after_s=step.get("expires_after_s"),
        )
        for step in queue.steps
    )
    return scoring.QueueRules(id=queue.id, strategy=scoring.Strategy(queue.strategy), steps=steps)


def _routable(now: datetime) -> Any:
    return and_(
        Agent.status == presence.Status.AVAILABLE.value,
        Agent.active.is_(True),
        Agent.work_wrap_ups == 0,
        or_(Agent.ready_at.is_(None), Agent.ready_at <= now),
    )


class SkillCache:
    """Agents' skill levels between rounds: they change rarely, and reading 2,000 agents'
    skills every round would dominate it. Entries go on ``agent.updated``/``agent.created``
    events and all of them every ``ttl_s``; the offer itself is still written under lock."""

    def __init__(self, ttl_s: float = 30.0) -> None:
        self._levels: dict[int, dict[str, int]] = {}
        self._ttl_s = ttl_s
        self._loaded_at = -ttl_s

    def forget(self, agent_id: int) -> None:
        self._levels.pop(agent_id, None)

    async def levels(self, session: AsyncSession, ids: list[int]) -> dict[int, dict[str, int]]:
        clock = asyncio.get_running_loop().time()
        if clock - self._loaded_at > self._ttl_s:
            self._levels, self._loaded_at = {}, clock
        missing = [i for i in ids if i not in self._levels]
        if missing:
            self._levels.update(await _skill_levels(session, missing))
        return {i: self._levels[i] for i in ids}


async def _skill_levels(session: AsyncSession, ids: list[int]) -> dict[int, dict[str, int]]:
    rows = (
        await session.execute(
            select(AgentSkill.agent_id, Skill.name, AgentSkill.level)
            .join(Skill, Skill.id == AgentSkill.skill_id)
            .where(AgentSkill.agent_id.in_(ids))
        )
    ).all()
    levels: dict[int, dict[str, int]] = {i: {} for i in ids}
    for row in rows:
        levels[row.agent_id][row.name] = row.level
    return levels


# Agents who may be offered something now, with spare capacity on one of the channels ($2).
# The first form reads every such agent; the second only those holding one of the skills
# ($3) or named ($4). Two statements rather than one with an "$3 IS NULL OR ..." test: a
# prepared statement gets one generic plan, which cannot be good for both.
_ROUTABLE_COLUMNS = """
    SELECT a.id, a.idle_since, a.last_offer_at, a.contacts_day, a.contacts_today,
           array_agg(ac.channel), array_agg(ac.load), array_agg(ac.capacity)
"""
_ROUTABLE_WHERE = """
    WHERE a.status = 'available' AND a.active AND a.work_wrap_ups = 0
      AND (a.ready_at IS NULL OR a.ready_at <= $1)
    GROUP BY a.id
    HAVING bool_or(ac.load < ac.capacity AND ac.channel = ANY($2::text[]))
"""
_ROUTABLE_ANY = f"""
    {_ROUTABLE_COLUMNS}
    FROM agents a JOIN agent_channels ac ON ac.agent_id = a.id
    {_ROUTABLE_WHERE}
"""
_ROUTABLE_SKILLED = f"""
    WITH candidates AS (
        SELECT s.agent_id AS id FROM agent_skills s JOIN skills k ON k.id = s.skill_id
        WHERE k.name = ANY($3::text[])
        UNION
        SELECT unnest($4::bigint[])
    )
    {_ROUTABLE_COLUMNS}
    FROM candidates c JOIN agents a ON a.id = c.id JOIN agent_channels ac ON ac.agent_id = a.id
    {_ROUTABLE_WHERE}
"""


@dataclass(frozen=True, slots=True)
class Wanted:
    """Which agents a round's contacts could go to: a superset, to keep the read small.

    ``skills`` None: any agent (a contact whose steps have all expired, or a step without
    skills); otherwise agents holding one of these skills, or one of ``agent_ids`` (the
    relationship managers, who may be the only agent a contact may go to).
    """

    channels: frozenset[str]
    skills: frozenset[str] | None
    agent_ids: frozenset[int]


def wanted(waiting: Sequence[Waiting], now: datetime) -> Wanted:
    skills: set[str] | None = set()
    managers: set[int] = set()
    for w in waiting:
        if w.view.relationship_manager_id is not None:
            managers.add(w.view.relationship_manager_id)
        step = scoring.current_step(w.rules, w.view, now)
        reqs = () if step is None else w.rules.steps[step].skills
        if not reqs:
            skills = None
        elif skills is not None:
            skills.update(req.skill for req in reqs)
    return Wanted(
        channels=frozenset(w.view.channel for w in waiting),
        skills=None if skills is None else frozenset(skills),
        agent_ids=frozenset(managers),
    )


async def driver_connection(session: AsyncSession) -> Any:
    """The session's asyncpg connection, for reads too large for ORM rows (see below)."""
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    return raw.driver_connection


async def routable_agents(
    session: AsyncSession, now: datetime, want: Wanted, skills: SkillCache | None = None
) -> list[scoring.AgentView]:
    """Agents that may be offered something now and could take one of the wanted contacts,
    with skills and per-channel load.

    Rounds run often and a centre has thousands of agents, so this read goes to the driver
    directly (ORM or Core rows would cost more than the rest of the round). It runs outside
    any transaction, as the round's reads do; the writes re-check under lock.
    """
    conn = await driver_connection(session)
    if want.skills is None:
        rows = await conn.fetch(_ROUTABLE_ANY, now, list(want.channels))
    else:
        rows = await conn.fetch(
            _ROUTABLE_SKILLED, now, list(want.channels), list(want.skills), list(want.agent_ids)
        )
    if not rows:
        return []
    levels = await (skills or SkillCache()).levels(session, [row[0] for row in rows])
    today = now.date()
    return [
        scoring.AgentView(
            id=agent_id,
            skills=levels[agent_id],
            idle_since=idle_since,
            load=dict(zip(channels, loads, strict=True)),
            capacity=dict(zip(channels, capacities, strict=True)),
            contacts_today=contacts_today if contacts_day == today else 0,
            last_offer_at=last_offer_at,
        )
        for (
            agent_id,
            idle_since,
            last_offer_at,
            contacts_day,
            contacts_today,
            channels,
            loads,
            capacities,
        ) in rows
    ]


@dataclass(frozen=True, slots=True)
class Waiting:
    rules: scoring.QueueRules
    view: scoring.ContactView
    queue: Queue


async def waiting_contacts(
    session: AsyncSession, settings: Settings, now: datetime, limit: int
) -> list[Waiting]:
    """The most urgent queued contacts (by deadline) on channels where some agent who may be
    offered something now has spare capacity."""
    served = (
        select(AgentChannel.channel)
        .join(Agent, Agent.id == AgentChannel.agent_id)
        .where(_routable(now), AgentChannel.load < AgentChannel.capacity)
    )
    rows = (
        await session.execute(
            select(
                Contact.id,
                Contact.queue_id,
                Contact.channel,
                Contact.tier,
                Contact.enqueued_at,
                Contact.routing_started_at,
                Contact.declined_by,
                Customer.relationship_manager_id,
            )
            .outerjoin(Customer, Customer.id == Contact.customer_id)
            .where(Contact.status == ContactStatus.queued.value, Contact.channel.in_(served))
            .order_by(Contact.deadline_at, Contact.id)
            .limit(limit)
        )
    ).all()
    if not rows:
        return []
    queue_ids = {row.queue_id for row in rows}
    queues = {
        q.id: q for q in (await session.scalars(select(Queue).where(Queue.id.in_(queue_ids))))
    }
    rules = {qid: queue_rules(q) for qid, q in queues.items()}
    tiers = tier_policies(settings)
    fallback = tiers[settings.default_tier]
    return [
        Waiting(
            rules=rules[row.queue_id],
            queue=queues[row.queue_id],
            view=scoring.ContactView(
                id=row.id,
                channel=row.channel,
                tier=tiers.get(row.tier, fallback),
                enqueued_at=row.enqueued_at,
                routing_started_at=row.routing_started_at,
                relationship_manager_id=row.relationship_manager_id,
                declined_by=frozenset(row.declined_by),
            ),
        )
        for row in rows
    ]


_LOCK_CONTACTS = text(
    """
    SELECT id FROM contacts
    WHERE id = ANY(CAST(:ids AS bigint[])) AND status = 'queued'
    ORDER BY id
    FOR UPDATE SKIP LOCKED
    """
)
_LOCK_AGENTS = text(
    """
    SELECT id, work_offers, work_contacts, work_wrap_ups, state, now() AS now,
           clock_timestamp() AS clock
    FROM agents
    WHERE id = ANY(CAST(:ids AS bigint[])) AND status = 'available' AND active
      AND work_wrap_ups = 0 AND (ready_at IS NULL OR ready_at <= now())
    ORDER BY id
    FOR UPDATE SKIP LOCKED
    """
)
_SPARE = text(
    """
    SELECT agent_id, channel, capacity - load AS spare FROM agent_channels
    WHERE agent_id = ANY(CAST(:ids AS bigint[]))
    """
)
_OFFERED = (
    update(table_of(Contact))
    .where(table_of(Contact).c.id == bindparam("b_id"))
    .values(
        status=ContactStatus.offered.value, agent_id=bindparam("b_agent"), updated_at=func.now()
    )
)
_LOADED = (
    update(table_of(AgentChannel))
    .where(
        table_of(AgentChannel).c.agent_id == bindparam("b_agent"),
        table_of(AgentChannel).c.channel == bindparam("b_channel"),
    )
    .values(load=table_of(AgentChannel).c.load + bindparam("b_n"))
)
_WORKING = (
    update(table_of(Agent))
    .where(table_of(Agent).c.id == bindparam("b_id"))
    .values(
        work_offers=bindparam("b_offers"),
        work_contacts=bindparam("b_contacts"),
        work_wrap_ups=bindparam("b_wrap_ups"),
        state=bindparam("b_state"),
        state_changed_at=func.coalesce(
            bindparam("b_state_changed_at"), table_of(Agent).c.state_changed_at
        ),
        last_offer_at=bindparam("b_last_offer_at"),
        updated_at=func.now(),
    )
)


@dataclass(slots=True)
class _Locked:
    """An agent as locked for this round's offers."""

    work: presence.Work
    state: str
    state_changed_at: datetime | None = None
    offered: bool = False


async def write_round(session: AsyncSession, plan: Plan, matches: Sequence[scoring.Match]) -> int:
    """Write the decided offers (leases until each queue's ring timeout) in a few statements.

    The matched contacts, then the matched agents, are locked with ``SKIP LOCKED`` and
    re-checked (still queued; still routable, with spare capacity counted afresh); a pair
    that moved on since the read is skipped and left to the next round. The offers, the
    contacts' status, the loads, the agents' work, the ring-timeout timers and the events
    then go in one statement each, whatever the number of offers.
    """
    if not matches:
        return 0
    contact_ids = sorted({m.contact.id for m in matches})
    agent_ids = sorted({m.agent_id for m in matches})
    locked_contacts = set((await session.scalars(_LOCK_CONTACTS, {"ids": contact_ids})).all())
    if not locked_contacts:
        return 0
    agent_rows = (await session.execute(_LOCK_AGENTS, {"ids": agent_ids})).all()
    if not agent_rows:
        return 0
    now, created_at = agent_rows[0].now, agent_rows[0].clock
    agents = {
        row.id: _Locked(
            presence.Work(row.work_offers, row.work_contacts, row.work_wrap_ups), row.state
        )
        for row in agent_rows
    }
    spare = {
        (row.agent_id, row.channel): row.spare
        for row in await session.execute(_SPARE, {"ids": list(agents)})
    }
    queues = {w.view.id: w.queue for w in plan.waiting}
    offers: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for m in matches:
        key = (m.agent_id, m.contact.channel)
        agent = agents.get(m.agent_id)
        if m.contact.id not in locked_contacts or agent is None or spare.get(key, 0) <= 0:
            continue
        spare[key] -= 1
        agent.offered = True
        agent.work = presence.apply_work(agent.work, presence.WorkEvent.OFFER_CREATED)
        state = presence.derive_state(agent.work).value
        if state != agent.state:
            events.append(work.state_event(m.agent_id, state, agent.state, m.contact.id))
            agent.state, agent.state_changed_at = state, now
        queue = queues[m.contact.id]
        offers.append(
            {
                "contact_id": m.contact.id,
                "agent_id": m.agent_id,
                "queue_id": queue.id,
                "channel": m.contact.channel,
                "reason": m.reason.as_dict(),
                "created_at": created_at,
                "expires_at": created_at + timedelta(seconds=queue.ring_timeout_s),
                "_event_at": len(events),
            }
        )
        events.append({})  # the offer.created event, once the offer has its id
    if not offers:
        return 0
    await _insert_offers(session, offers, events)
    await session.execute(
        _OFFERED, [{"b_id": o["contact_id"], "b_agent": o["agent_id"]} for o in offers]
    )
    taken: dict[tuple[int, str], int] = {}
    for o in offers:
        taken[o["agent_id"], o["channel"]] = taken.get((o["agent_id"], o["channel"]), 0) + 1
    await session.execute(
        _LOADED, [{"b_agent": a, "b_channel": ch, "b_n": n} for (a, ch), n in taken.items()]
    )
    await session.execute(
        _WORKING,
        [
            {
                "b_id": agent_id,
                "b_offers": a.work.offers,
                "b_contacts": a.work.contacts,
                "b_wrap_ups": a.work.wrap_ups,
                "b_state": a.state,
                "b_state_changed_at": a.state_changed_at,
                "b_last_offer_at": now,
            }
            for agent_id, a in agents.items()
            if a.offered
        ],
    )
    await timers.schedule_many(
        session, kind=OFFER_EXPIRE, due=[(o["id"], o["expires_at"]) for o in offers]
    )
    await record_many(session, events)
    return len(offers)


async def _insert_offers(
    session: AsyncSession, offers: list[dict[str, Any]], events: list[dict[str, Any]]
) -> None:
    """Insert the offers, note their ids and fill in their ``offer.created`` events."""
    table = table_of(Offer)
    columns = ("contact_id", "agent_id", "queue_id", "channel", "reason", "created_at")
    ids = (
        await session.scalars(
            insert(table).returning(table.c.id, sort_by_parameter_order=True),
            [{c: o[c] for c in (*columns, "expires_at")} for o in offers],
        )
    ).all()
    for offer, offer_id in zip(offers, ids, strict=True):
        offer["id"] = offer_id
        events[offer.pop("_event_at")] = {
            "type": "offer.created",
            "subject_type": "offer",
            "subject_id": offer_id,
            "actor": "system",
            "data": {
                "offer_id": offer_id,
                "contact_id": offer["contact_id"],
                "agent_id": offer["agent_id"],
                "queue_id": offer["queue_id"],
                "channel": offer["channel"],
                "expires_at": offer["expires_at"].isoformat(),
                "reason": offer["reason"],
            },
        }


@dataclass(frozen=True, slots=True)
class Round:
    offers: int
    next_wake_at: datetime | None
    now: datetime


async def _clock(session: AsyncSession) -> tuple[datetime, datetime | None]:
    """The database's time, and the next time a resting available agent becomes ready."""
    row = (
        await session.execute(
            select(
                func.now(),
                select(func.min(Agent.ready_at))
                .where(Agent.status == presence.Status.AVAILABLE.value, Agent.ready_at > func.now())
                .scalar_subquery(),
            )
        )
    ).one()
    return row[0], row[1]


def _earliest(*times: datetime | None) -> datetime | None:
    present = [t for t in times if t is not None]
    return min(present) if present else None


@dataclass(frozen=True, slots=True)
class Plan:
    """What a round read: the free agents and the most urgent waiting contacts."""

    now: datetime
    agents: list[scoring.AgentView]
    waiting: list[Waiting]
    next_ready: datetime | None


async def read_round(
    session: AsyncSession, settings: Settings, skills: SkillCache | None = None
) -> Plan:
    now, next_ready = await _clock(session)
    waiting = await waiting_contacts(session, settings, now, settings.dispatch_batch)
    if not waiting:
        return Plan(now, [], [], next_ready)
    agents = await routable_agents(session, now, wanted(waiting, now), skills)
    return Plan(now, agents, waiting, next_ready)


def decide(plan: Plan, settings: Settings) -> list[scoring.Match]:
    dispatch = scoring.DispatchSettings(starvation_bound_s=settings.starvation_bound_s)
    return scoring.match([(w.rules, w.view) for w in plan.waiting], plan.agents, plan.now, dispatch)


def next_wake(plan: Plan, matches: Sequence[scoring.Match]) -> datetime | None:
    matched = {m.contact.id for m in matches}
    steps = [
        scoring.next_wake_at(w.rules, w.view, plan.now)
        for w in plan.waiting
        if w.view.id not in matched
    ]
    return _earliest(plan.next_ready, *steps)


async def dispatch_round(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    skills: SkillCache | None = None,
) -> Round:
    """Read, decide, write. No transaction stays open while the scoring core decides, so
    the round never holds the event log's readers back."""
    async with unit_of_work(sessionmaker) as session:
        plan = await read_round(session, settings, skills)
    matches = decide(plan, settings)
    async with unit_of_work(sessionmaker) as session:
        made = await write_round(session, plan, matches)
    return Round(made, next_wake(plan, matches), plan.now)


class Dispatcher:
    """Runs rounds while this instance holds the dispatcher lock."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        database_url: str,
        settings: Settings,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._dsn = plain_url(database_url)
        self._settings = settings
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock_conn: Any = None
        self._leading = False
        self._skills = SkillCache()
        self.rounds = 0

    @property
    def is_leader(self) -> bool:
        return self._leading and self._lock_conn is not None and not self._lock_conn.is_closed()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._resign()

    def poke(self) -> None:
        self._wake.set()

    def on_events(self, batch: Sequence[LoggedEvent]) -> None:
        """Hub listener: wake on events that change demand or supply."""
        for event in batch:
            if event.type in ("agent.updated", "agent.created"):
                self._skills.forget(int(event.subject_id))
        if any(event.type in WAKE_EVENTS for event in batch):
            self._wake.set()

    async def _try_lead(self) -> bool:
        """Hold the dispatcher lock, on one dedicated connection kept between attempts."""
        if self._lock_conn is not None and self._lock_conn.is_closed():
            self._lock_conn, self._leading = None, False
        if self._leading:
            return True
        if self._lock_conn is None:
            self._lock_conn = await self._connect()
            if self._lock_conn is None:
                return False
        self._leading = bool(
            await self._lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK)
        )
        if self._leading:
            log.info("this instance now runs the dispatcher")
        return self._leading

    async def _connect(self) -> Any:
        try:
            return await asyncpg.connect(self._dsn)
        except (OSError, asyncpg.PostgresError):
            log.warning("dispatcher cannot reach the database; retrying")
            return None

    async def _resign(self) -> None:
        conn, self._lock_conn, self._leading = self._lock_conn, None, False
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)

    async def _run(self) -> None:
        while True:
            delay = self._settings.leader_retry_s
            try:
                if await self._try_lead():
                    delay = await self._lead_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch round failed; retrying")
            if delay > 0:
                await wait_for_wake(self._wake, delay)
            self._wake.clear()

    async def _lead_once(self) -> float:
        """One round; returns how long to sleep before the next one (0: go again now)."""
        self._wake.clear()
        result = await dispatch_round(self._sessionmaker, self._settings, self._skills)
        now = result.now
        self.rounds += 1
        if result.offers:
            return 0.0
        tick = self._settings.dispatch_tick_s
        if result.next_wake_at is None:
            return tick
        return min(max((result.next_wake_at - now).total_seconds(), 0.001), tick)
