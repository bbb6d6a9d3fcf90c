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
from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.agents import presence
from app.agents.models import Agent, AgentChannel, AgentSkill, Skill
from app.config import Settings
from app.customers.models import Customer
from app.db import plain_url, unit_of_work
from app.events.log import LoggedEvent
from app.routing import scoring, work
from app.routing.lifecycle import OFFER_EXPIRE, db_now, offer_event
from app.routing.models import Contact, ContactStatus, Offer, Queue
from app.timers import service as timers
from app.waiting import wait_for_wake

log = logging.getLogger(__name__)

LEADER_LOCK = 0x484C4449  # "HLDI": the dispatcher's advisory lock key
WAKE_EVENTS = frozenset(
    {
        "contact.queued",
        "contact.requeued",
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


async def routable_agents(
    session: AsyncSession, now: datetime, skills: SkillCache | None = None
) -> list[scoring.AgentView]:
    """Agents that may be offered something now, with skills and per-channel load."""
    spare = exists().where(
        AgentChannel.agent_id == Agent.id, AgentChannel.load < AgentChannel.capacity
    )
    rows = (await session.execute(select(Agent).where(_routable(now), spare))).scalars().all()
    if not rows:
        return []
    ids = [a.id for a in rows]
    channels = (
        (await session.execute(select(AgentChannel).where(AgentChannel.agent_id.in_(ids))))
        .scalars()
        .all()
    )
    levels = await (skills or SkillCache()).levels(session, ids)
    load: dict[int, dict[str, int]] = {i: {} for i in ids}
    capacity: dict[int, dict[str, int]] = {i: {} for i in ids}
    for ch in channels:
        load[ch.agent_id][ch.channel], capacity[ch.agent_id][ch.channel] = ch.load, ch.capacity
    today = now.date()
    return [
        scoring.AgentView(
            id=a.id,
            skills=levels[a.id],
            idle_since=a.idle_since,
            load=load[a.id],
            capacity=capacity[a.id],
            contacts_today=a.contacts_today if a.contacts_day == today else 0,
            last_offer_at=a.last_offer_at,
        )
        for a in rows
    ]


@dataclass(frozen=True, slots=True)
class Waiting:
    rules: scoring.QueueRules
    view: scoring.ContactView
    queue: Queue


async def waiting_contacts(
    session: AsyncSession, settings: Settings, channels: set[str], limit: int
) -> list[Waiting]:
    """The most urgent queued contacts on these channels (by deadline)."""
    rows = (
        await session.execute(
            select(Contact, Customer.relationship_manager_id)
            .outerjoin(Customer, Customer.id == Contact.customer_id)
            .where(Contact.status == ContactStatus.queued.value, Contact.channel.in_(channels))
            .order_by(Contact.deadline_at, Contact.id)
            .limit(limit)
        )
    ).all()
    if not rows:
        return []
    queue_ids = {row.Contact.queue_id for row in rows}
    queues = {
        q.id: q for q in (await session.scalars(select(Queue).where(Queue.id.in_(queue_ids))))
    }
    rules = {qid: queue_rules(q) for qid, q in queues.items()}
    tiers = tier_policies(settings)
    fallback = tiers[settings.default_tier]
    return [
        Waiting(
            rules=rules[row.Contact.queue_id],
            queue=queues[row.Contact.queue_id],
            view=scoring.ContactView(
                id=row.Contact.id,
                channel=row.Contact.channel,
                tier=tiers.get(row.Contact.tier, fallback),
                enqueued_at=row.Contact.enqueued_at,
                routing_started_at=row.Contact.routing_started_at,
                relationship_manager_id=row.relationship_manager_id,
            ),
        )
        for row in rows
    ]


async def _lock_for_offer(
    session: AsyncSession, contact_id: int, agent_id: int, channel: str, now: datetime
) -> tuple[Contact, Agent] | None:
    """Lock the pair and re-check both; None when either moved on since the read.

    Both rows are re-read under the lock (``populate_existing``, after flushing this round's
    earlier offers): work counters computed from a copy read before the lock would overwrite
    what a request changed meanwhile.
    """
    await session.flush()
    contact = await session.scalar(
        select(Contact)
        .where(Contact.id == contact_id, Contact.status == ContactStatus.queued.value)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    if contact is None:
        return None
    agent = await session.scalar(
        select(Agent)
        .where(Agent.id == agent_id, _routable(now))
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    if agent is None:
        return None
    spare = await session.scalar(
        select(AgentChannel.load < AgentChannel.capacity).where(
            AgentChannel.agent_id == agent_id, AgentChannel.channel == channel
        )
    )
    return (contact, agent) if spare else None


async def make_offer(
    session: AsyncSession, match: scoring.Match, queue: Queue, now: datetime
) -> Offer | None:
    """Write one decided offer (a lease until the ring timeout)."""
    locked = await _lock_for_offer(
        session, match.contact.id, match.agent_id, match.contact.channel, now
    )
    if locked is None:
        return None
    contact, agent = locked
    # The lease starts now, not when the round began: the round may have read the contact
    # as queued only after its previous offer was decided, later than the round's start.
    created_at: datetime | None = await session.scalar(select(func.clock_timestamp()))
    assert created_at is not None
    expires_at = created_at + timedelta(seconds=queue.ring_timeout_s)
    offer = Offer(
        contact_id=contact.id,
        agent_id=agent.id,
        queue_id=queue.id,
        channel=contact.channel,
        reason=match.reason.as_dict(),
        created_at=created_at,
        expires_at=expires_at,
    )
    session.add(offer)
    await session.flush()
    contact.status, contact.agent_id = ContactStatus.offered.value, agent.id
    agent.last_offer_at = now
    await work.apply(
        session,
        agent,
        presence.WorkEvent.OFFER_CREATED,
        channel=contact.channel,
        now=now,
        contact_id=contact.id,
    )
    await timers.schedule(session, kind=OFFER_EXPIRE, subject=offer.id, due_at=expires_at)
    offer_event(
        session, "offer.created", offer, expires_at=expires_at.isoformat(), reason=offer.reason
    )
    return offer


@dataclass(frozen=True, slots=True)
class Round:
    offers: int
    next_wake_at: datetime | None
    now: datetime


async def _next_ready(session: AsyncSession, now: datetime) -> datetime | None:
    ready: datetime | None = await session.scalar(
        select(func.min(Agent.ready_at)).where(
            Agent.status == presence.Status.AVAILABLE.value, Agent.ready_at > now
        )
    )
    return ready


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
    now = await db_now(session)
    next_ready = await _next_ready(session, now)
    agents = await routable_agents(session, now, skills)
    if not agents:
        return Plan(now, [], [], next_ready)
    channels = {ch for a in agents for ch, cap in a.capacity.items() if a.load.get(ch, 0) < cap}
    waiting = await waiting_contacts(session, settings, channels, settings.dispatch_batch)
    return Plan(now, agents, waiting, next_ready)


def decide(plan: Plan, settings: Settings) -> list[scoring.Match]:
    dispatch = scoring.DispatchSettings(starvation_bound_s=settings.starvation_bound_s)
    return scoring.match([(w.rules, w.view) for w in plan.waiting], plan.agents, plan.now, dispatch)


async def write_round(session: AsyncSession, plan: Plan, matches: Sequence[scoring.Match]) -> int:
    """Write the decided offers; a pair that moved on since the read is skipped."""
    if not matches:
        return 0
    now = await db_now(session)
    queues = {w.view.id: w.queue for w in plan.waiting}
    made = 0
    for m in matches:
        made += await make_offer(session, m, queues[m.contact.id], now) is not None
    return made


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
