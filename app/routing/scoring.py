"""Routing score: the ACD's pure decision core (who may take a contact, in what order).

Theory of operation
-------------------

The dispatcher (an I/O shell) loads waiting contacts and the agents whose presence lets them
receive offers, calls this module, and writes the offers it returns. Nothing here reads a
clock or touches a database: ``now`` is passed in, so every decision can be replayed from its
inputs and is explained by the ``Reason`` it carries.

A decision has three layers, applied in this order:

1. **Eligibility** (``eligible``, ``may_take``). An agent may take a contact when it has spare
   capacity on the contact's channel (``load < capacity``), is not in the contact's
   ``excluded_agent_ids`` (it just rejected or missed the offer) and, while a routing step is
   in force, holds every skill of that step at the step's minimum level. Steps expire in
   order, each ``expires_after_s`` after the previous one, counted from
   ``routing_started_at``; once the last step has expired any agent with capacity may take
   the contact (``current_step`` returns ``None``). Inside a relationship-manager window the
   contact is exclusive to its manager: nobody else may take it, and it waits for them.
2. **Contact order** (``contact_order_key``): earliest deadline first, then first come first
   served; overdue contacts (waited past their target plus the starvation bound) go first,
   among themselves first come first served.
3. **Agent order** (``rank_agents``): relationship manager, then last agent, then the queue's
   strategy with its own tie-break, then the lowest agent id.

Intervals are half-open: a step expires, and an affinity window closes, exactly at its
instant. A contact becomes overdue only when it has waited strictly longer than its target
plus the bound. Durations are converted with ``timedelta`` (microsecond resolution), so step
boundaries do not drift with floating-point sums.
"""

import heapq
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import Final, NamedTuple

__all__ = [
    "MAX_LEVEL",
    "MIN_LEVEL",
    "Affinity",
    "AgentView",
    "ContactOrderKey",
    "ContactView",
    "DispatchSettings",
    "Match",
    "QueueRules",
    "Ranked",
    "Reason",
    "SkillReq",
    "Step",
    "Strategy",
    "TierPolicy",
    "choose_agent",
    "choose_contact",
    "contact_order_key",
    "current_step",
    "deadline",
    "eligible",
    "is_overdue",
    "match",
    "may_take",
    "next_wake_at",
    "rank_agents",
]

MIN_LEVEL: Final = 1
MAX_LEVEL: Final = 10
_MICROSECOND: Final = timedelta(microseconds=1)

JSONScalar = str | int | float | bool | None


class Strategy(StrEnum):
    """How a queue orders the eligible agents."""

    LONGEST_IDLE = "longest_idle"
    MOST_SKILLED = "most_skilled"
    LEAST_OCCUPIED = "least_occupied"
    ROUND_ROBIN = "round_robin"
    FEWEST_CONTACTS = "fewest_contacts"


class Affinity(StrEnum):
    """Why an agent was preferred before the strategy was consulted."""

    RELATIONSHIP_MANAGER = "relationship_manager"
    LAST_AGENT = "last_agent"


def _require_finite(name: str, value: float, *, positive: bool = False) -> None:
    low_ok = value > 0 if positive else value >= 0
    if not (math.isfinite(value) and low_ok):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


@dataclass(frozen=True, slots=True)
class SkillReq:
    """One skill a routing step requires, at a minimum level (1-10)."""

    skill: str
    min_level: int

    def __post_init__(self) -> None:
        if not MIN_LEVEL <= self.min_level <= MAX_LEVEL:
            raise ValueError(f"min_level must be {MIN_LEVEL}..{MAX_LEVEL}, got {self.min_level}")

    def __str__(self) -> str:
        return f"{self.skill}>={self.min_level}"


@dataclass(frozen=True, slots=True)
class Step:
    """A routing step: its skills, and how long it stays in force (None: never expires)."""

    skills: tuple[SkillReq, ...]
    expires_after_s: float | None

    def __post_init__(self) -> None:
        if self.expires_after_s is not None:
            _require_finite("expires_after_s", self.expires_after_s, positive=True)


@dataclass(frozen=True, slots=True)
class QueueRules:
    """What the router needs of a queue: its strategy and routing steps."""

    id: int
    strategy: Strategy = Strategy.LONGEST_IDLE
    steps: tuple[Step, ...] = ()

    def __post_init__(self) -> None:
        if any(step.expires_after_s is None for step in self.steps[:-1]):
            raise ValueError("only the last routing step may never expire")


@dataclass(frozen=True, slots=True)
class TierPolicy:
    """A customer tier: its service-level target and relationship-manager window.

    ``rank`` is informational (display, reports); order comes from the deadline alone.
    ``rm_affinity_s`` 0 means the tier has no relationship-manager affinity.
    """

    name: str
    sl_target_s: float
    rank: int = 0
    rm_affinity_s: float = 0.0

    def __post_init__(self) -> None:
        _require_finite("sl_target_s", self.sl_target_s)
        _require_finite("rm_affinity_s", self.rm_affinity_s)


@dataclass(frozen=True, slots=True)
class ContactView:
    """A waiting contact as the router sees it.

    ``enqueued_at`` is the original enqueue time, kept across transfers and re-queues, so a
    contact keeps its place. ``routing_started_at`` starts the routing-step clock of the
    queue the contact is in now (reset by a transfer, kept by a re-queue after a rejected
    offer).
    """

    id: int
    channel: str
    tier: TierPolicy
    enqueued_at: datetime
    routing_started_at: datetime
    relationship_manager_id: int | None = None
    last_agent_id: int | None = None
    last_agent_until: datetime | None = None
    excluded_agent_ids: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class AgentView:
    """An agent whose presence allows offers; load and capacity are per channel."""

    id: int
    skills: Mapping[str, int]
    idle_since: datetime
    load: Mapping[str, int]
    capacity: Mapping[str, int]
    contacts_today: int = 0
    last_offer_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    """Deployment-wide routing settings."""

    starvation_bound_s: float

    def __post_init__(self) -> None:
        _require_finite("starvation_bound_s", self.starvation_bound_s)


@dataclass(frozen=True, slots=True)
class Reason:
    """Why this agent and this contact: stored with the offer, shown to supervisors.

    ``tie_break`` names the key that put this agent ahead of ``runner_up_agent_id``;
    ``contact_tie_break`` names the key that put this contact ahead of ``next_contact_id``,
    the next waiting contact the same agent could have taken. ``score`` is the value the
    strategy sorted on (``None`` for an agent never offered anything under round robin).
    """

    queue_id: int
    contact_id: int
    agent_id: int
    tier: str
    step: int | None
    rule: str
    strategy: Strategy
    score: float | None
    affinity: Affinity | None
    tie_break: str | None
    runner_up_agent_id: int | None
    agents_ranked: int
    deadline: datetime
    overdue: bool
    waited_s: float
    contact_tie_break: str | None = None
    next_contact_id: int | None = None

    def as_dict(self) -> dict[str, JSONScalar]:
        """The reason as a JSON-serialisable dict (timestamps in ISO-8601)."""
        return {
            "queue_id": self.queue_id,
            "contact_id": self.contact_id,
            "agent_id": self.agent_id,
            "tier": self.tier,
            "step": self.step,
            "rule": self.rule,
            "strategy": self.strategy.value,
            "score": self.score,
            "affinity": None if self.affinity is None else self.affinity.value,
            "tie_break": self.tie_break,
            "runner_up_agent_id": self.runner_up_agent_id,
            "agents_ranked": self.agents_ranked,
            "deadline": self.deadline.isoformat(),
            "overdue": self.overdue,
            "waited_s": self.waited_s,
            "contact_tie_break": self.contact_tie_break,
            "next_contact_id": self.next_contact_id,
        }


@dataclass(frozen=True, slots=True)
class Ranked:
    """An acceptable agent for a contact, with the reason for its place."""

    agent: AgentView
    reason: Reason


@dataclass(frozen=True, slots=True)
class Match:
    """A decided offer: this contact (in this queue) to this agent."""

    queue: QueueRules
    contact: ContactView
    agent_id: int
    reason: Reason


class ContactOrderKey(NamedTuple):
    """Sort key for waiting contacts; smaller goes first.

    ``primary`` is the deadline, or the enqueue time for an overdue contact.
    """

    overdue_rank: int
    primary: datetime
    enqueued_at: datetime
    contact_id: int


# --- time -------------------------------------------------------------------------------


def _seconds(delta: timedelta) -> float:
    return delta.total_seconds()


def _micros(delta: timedelta) -> int:
    return delta // _MICROSECOND


def _step_ends(queue: QueueRules, contact: ContactView) -> Iterator[datetime | None]:
    end = contact.routing_started_at
    for step in queue.steps:
        if step.expires_after_s is None:
            yield None
        else:
            end += timedelta(seconds=step.expires_after_s)
            yield end


def current_step(queue: QueueRules, contact: ContactView, now: datetime) -> int | None:
    """Index of the routing step in force at ``now``; None once every step has expired."""
    for index, end in enumerate(_step_ends(queue, contact)):
        if end is None or now < end:
            return index
    return None


def _rm_window_end(contact: ContactView) -> datetime | None:
    if contact.relationship_manager_id is None or contact.tier.rm_affinity_s <= 0:
        return None
    return contact.enqueued_at + timedelta(seconds=contact.tier.rm_affinity_s)


def _in_rm_window(contact: ContactView, now: datetime) -> bool:
    end = _rm_window_end(contact)
    return end is not None and now < end


def next_wake_at(queue: QueueRules, contact: ContactView, now: datetime) -> datetime | None:
    """Next instant after ``now`` at which more agents may take the contact, if any.

    That is a routing-step expiry or the end of the relationship-manager window: the shell
    keeps a durable timer for it so that the dispatcher looks again (work conservation).
    """
    ends = [*_step_ends(queue, contact), _rm_window_end(contact)]
    return min((end for end in ends if end is not None and end > now), default=None)


def deadline(contact: ContactView) -> datetime:
    """When the contact's service-level target runs out: enqueued_at + the tier's target."""
    return contact.enqueued_at + timedelta(seconds=contact.tier.sl_target_s)


def is_overdue(contact: ContactView, now: datetime, settings: DispatchSettings) -> bool:
    """Whether the contact has waited longer than its target plus the starvation bound."""
    return now > deadline(contact) + timedelta(seconds=settings.starvation_bound_s)


# --- eligibility --------------------------------------------------------------------------


def _has_spare_capacity(agent: AgentView, channel: str) -> bool:
    return agent.load.get(channel, 0) < agent.capacity.get(channel, 0)


def _meets(agent: AgentView, skills: Sequence[SkillReq]) -> bool:
    return all(agent.skills.get(req.skill, 0) >= req.min_level for req in skills)


def _eligible_at(
    agent: AgentView, queue: QueueRules, contact: ContactView, step: int | None
) -> bool:
    if agent.id in contact.excluded_agent_ids:
        return False
    if not _has_spare_capacity(agent, contact.channel):
        return False
    return step is None or _meets(agent, queue.steps[step].skills)


def eligible(agent: AgentView, queue: QueueRules, contact: ContactView, now: datetime) -> bool:
    """Spare capacity on the contact's channel, not excluded, and the step's skills if any."""
    return _eligible_at(agent, queue, contact, current_step(queue, contact, now))


def _acceptable_at(
    agent: AgentView, queue: QueueRules, contact: ContactView, step: int | None, rm_only: bool
) -> bool:
    if rm_only and agent.id != contact.relationship_manager_id:
        return False
    return _eligible_at(agent, queue, contact, step)


def may_take(agent: AgentView, queue: QueueRules, contact: ContactView, now: datetime) -> bool:
    """Eligible, and the relationship manager if the contact is inside its manager window."""
    return _acceptable_at(
        agent, queue, contact, current_step(queue, contact, now), _in_rm_window(contact, now)
    )


# --- contact order -----------------------------------------------------------------------


def contact_order_key(
    contact: ContactView, now: datetime, settings: DispatchSettings
) -> ContactOrderKey:
    """Sort key for waiting contacts: overdue first come first served, then earliest deadline.

    Earliest deadline first (ties: enqueue time, then id) already stops strict-priority
    starvation: a later higher-tier contact overtakes only if its own deadline is earlier.
    Under overload every deadline slips, so a contact that has waited longer than its own
    target plus ``starvation_bound_s`` is *overdue* and goes before every contact that is
    not, and overdue contacts go among themselves by enqueue time (then id). Once overdue,
    then, no contact enqueued after it, of any tier, is offered before it to an agent who
    could take both. With a continuous platinum stream the agents keep up with, a standard
    contact is therefore offered by its target plus the bound (plus the time until an agent
    it is eligible for frees up); no ordering can do better when no such agent is free.
    """
    if is_overdue(contact, now, settings):
        return ContactOrderKey(0, contact.enqueued_at, contact.enqueued_at, contact.id)
    return ContactOrderKey(1, deadline(contact), contact.enqueued_at, contact.id)


def _contact_tie_break(winner: ContactOrderKey, other: ContactOrderKey) -> str:
    primary = "enqueued_at" if winner.overdue_rank == 0 else "deadline"
    return _first_difference(("overdue", primary, "enqueued_at", "contact_id"), winner, other)


def _first_difference(
    names: Sequence[str], winner: Sequence[object], other: Sequence[object]
) -> str:
    differing = (name for name, a, b in zip(names, winner, other, strict=True) if a != b)
    return next(differing, names[-1])


# --- agent order -------------------------------------------------------------------------

_Terms = tuple[float | None, tuple[Fraction, ...]]
_StrategyTerms = Callable[[AgentView, str, frozenset[str], datetime], _Terms]


def _idle_term(agent: AgentView, now: datetime) -> Fraction:
    # Earlier idle_since sorts first; microseconds keep the comparison exact.
    return Fraction(_micros(agent.idle_since - now))


def _longest_idle(agent: AgentView, channel: str, skills: frozenset[str], now: datetime) -> _Terms:
    return _seconds(now - agent.idle_since), (_idle_term(agent, now),)


def _most_skilled(agent: AgentView, channel: str, skills: frozenset[str], now: datetime) -> _Terms:
    total = sum(agent.skills.get(skill, 0) for skill in skills)
    return total, (Fraction(-total), _idle_term(agent, now))


def _least_occupied(
    agent: AgentView, channel: str, skills: frozenset[str], now: datetime
) -> _Terms:
    # Only agents with spare capacity are ranked, so capacity > 0 here.
    occupancy = Fraction(agent.load.get(channel, 0), agent.capacity[channel])
    return float(occupancy), (occupancy, _idle_term(agent, now))


def _round_robin(agent: AgentView, channel: str, skills: frozenset[str], now: datetime) -> _Terms:
    if agent.last_offer_at is None:
        return None, (Fraction(0), Fraction(0))
    return _seconds(now - agent.last_offer_at), (
        Fraction(1),
        Fraction(_micros(agent.last_offer_at - now)),
    )


def _fewest_contacts(
    agent: AgentView, channel: str, skills: frozenset[str], now: datetime
) -> _Terms:
    return agent.contacts_today, (Fraction(agent.contacts_today), _idle_term(agent, now))


# strategy -> (names of its sort terms, the function computing score and terms)
_STRATEGIES: Final[Mapping[Strategy, tuple[tuple[str, ...], _StrategyTerms]]] = {
    Strategy.LONGEST_IDLE: (("idle_since",), _longest_idle),
    Strategy.MOST_SKILLED: (("skill_sum", "idle_since"), _most_skilled),
    Strategy.LEAST_OCCUPIED: (("occupancy", "idle_since"), _least_occupied),
    Strategy.ROUND_ROBIN: (("last_offer_at", "last_offer_at"), _round_robin),
    Strategy.FEWEST_CONTACTS: (("contacts_today", "idle_since"), _fewest_contacts),
}


def _key_names(strategy: Strategy) -> tuple[str, ...]:
    return ("relationship_manager", "last_agent", *_STRATEGIES[strategy][0], "agent_id")


@dataclass(frozen=True, slots=True)
class _Candidate:
    agent: AgentView
    affinity: Affinity | None
    score: float | None
    key: tuple[Fraction, ...]


def _is_manager(contact: ContactView, agent: AgentView) -> bool:
    return contact.tier.rm_affinity_s > 0 and agent.id == contact.relationship_manager_id


def _is_last_agent(contact: ContactView, agent: AgentView, now: datetime) -> bool:
    until = contact.last_agent_until
    return agent.id == contact.last_agent_id and until is not None and now < until


def _affinity(manager: bool, last_agent: bool) -> Affinity | None:
    if manager:
        return Affinity.RELATIONSHIP_MANAGER
    return Affinity.LAST_AGENT if last_agent else None


def _candidate(
    queue: QueueRules, contact: ContactView, agent: AgentView, skills: frozenset[str], now: datetime
) -> _Candidate:
    manager = _is_manager(contact, agent)
    last_agent = _is_last_agent(contact, agent, now)
    score, terms = _STRATEGIES[queue.strategy][1](agent, contact.channel, skills, now)
    key = (Fraction(not manager), Fraction(not last_agent), *terms, Fraction(agent.id))
    return _Candidate(agent, _affinity(manager, last_agent), score, key)


def _scored_skills(queue: QueueRules, step: int | None) -> frozenset[str]:
    steps = queue.steps if step is None else (queue.steps[step],)
    return frozenset(req.skill for s in steps for req in s.skills)


def _rule(queue: QueueRules, step: int | None) -> str:
    if step is None:
        why = "all routing steps expired" if queue.steps else "queue has no routing steps"
        return f"any agent: {why}"
    skills = ", ".join(str(req) for req in queue.steps[step].skills) or "no skills"
    return f"steps[{step}] requires {skills}"


def _agent_tie_break(
    strategy: Strategy, winner: _Candidate, runner_up: _Candidate | None
) -> str | None:
    if runner_up is None:
        return None
    return _first_difference(_key_names(strategy), winner.key, runner_up.key)


@dataclass(frozen=True, slots=True)
class _Decision:
    queue: QueueRules
    contact: ContactView
    step: int | None
    now: datetime
    settings: DispatchSettings


def _reason(
    decision: _Decision, winner: _Candidate, runner_up: _Candidate | None, ranked: int
) -> Reason:
    queue, contact, now = decision.queue, decision.contact, decision.now
    return Reason(
        queue_id=queue.id,
        contact_id=contact.id,
        agent_id=winner.agent.id,
        tier=contact.tier.name,
        step=decision.step,
        rule=_rule(queue, decision.step),
        strategy=queue.strategy,
        score=winner.score,
        affinity=winner.affinity,
        tie_break=_agent_tie_break(queue.strategy, winner, runner_up),
        runner_up_agent_id=None if runner_up is None else runner_up.agent.id,
        agents_ranked=ranked,
        deadline=deadline(contact),
        overdue=is_overdue(contact, now, decision.settings),
        waited_s=_seconds(now - contact.enqueued_at),
    )


def _ranked(decision: _Decision, agents: Sequence[AgentView], limit: int) -> list[Ranked]:
    queue, contact, step, now = decision.queue, decision.contact, decision.step, decision.now
    rm_only = _in_rm_window(contact, now)
    skills = _scored_skills(queue, step)
    pool = [
        _candidate(queue, contact, agent, skills, now)
        for agent in agents
        if _acceptable_at(agent, queue, contact, step, rm_only)
    ]
    best = heapq.nsmallest(limit, pool, key=lambda candidate: candidate.key)
    # Each agent's runner-up is the next one down; the last has none (zip stops at best).
    runners_up: list[_Candidate | None] = [*best[1:], None]
    return [
        Ranked(winner.agent, _reason(decision, winner, runner_up, len(pool)))
        for winner, runner_up in zip(best, runners_up, strict=False)
    ]


def _decision(
    queue: QueueRules, contact: ContactView, now: datetime, settings: DispatchSettings
) -> _Decision:
    return _Decision(queue, contact, current_step(queue, contact, now), now, settings)


def rank_agents(
    queue: QueueRules,
    contact: ContactView,
    agents: Sequence[AgentView],
    now: datetime,
    settings: DispatchSettings,
) -> list[Ranked]:
    """Agents that may take the contact, best first, each with its reason.

    Order: the relationship manager (alone, inside the manager window: empty if they cannot
    take it now; preferred after it), then the last agent while ``last_agent_until`` holds,
    then the queue's strategy, then the lowest agent id.
    """
    return _ranked(_decision(queue, contact, now, settings), agents, len(agents))


def choose_agent(
    queue: QueueRules,
    contact: ContactView,
    agents: Sequence[AgentView],
    now: datetime,
    settings: DispatchSettings,
) -> Ranked | None:
    """The best agent for a contact (new or waiting), or None if nobody may take it now."""
    ranked = _ranked(_decision(queue, contact, now, settings), agents, 2)
    return ranked[0] if ranked else None


# --- contact for an agent, and the batch -------------------------------------------------

_Waiting = tuple[QueueRules, ContactView]


def _in_contact_order(
    waiting: Sequence[_Waiting], now: datetime, settings: DispatchSettings
) -> list[_Waiting]:
    return sorted(waiting, key=lambda pair: contact_order_key(pair[1], now, settings))


def _with_next_contact(
    reason: Reason, chosen: ContactView, following: _Waiting | None, decision: _Decision
) -> Reason:
    if following is None:
        return reason
    now, settings = decision.now, decision.settings
    tie = _contact_tie_break(
        contact_order_key(chosen, now, settings), contact_order_key(following[1], now, settings)
    )
    return replace(reason, contact_tie_break=tie, next_contact_id=following[1].id)


def choose_contact(
    agent: AgentView, candidates: Sequence[_Waiting], now: datetime, settings: DispatchSettings
) -> Match | None:
    """The waiting contact a freed agent should be offered: the first it may take, in order."""
    takeable = [
        pair
        for pair in _in_contact_order(candidates, now, settings)
        if may_take(agent, pair[0], pair[1], now)
    ]
    if not takeable:
        return None
    queue, contact = takeable[0]
    decision = _decision(queue, contact, now, settings)
    ranked = _ranked(decision, [agent], 1)[0]
    following = takeable[1] if len(takeable) > 1 else None
    reason = _with_next_contact(ranked.reason, contact, following, decision)
    return Match(queue, contact, agent.id, reason)


def _after_offer(agent: AgentView, channel: str, now: datetime) -> AgentView:
    load = {**agent.load, channel: agent.load.get(channel, 0) + 1}
    return replace(
        agent,
        load=load,
        idle_since=now,
        last_offer_at=now,
        contacts_today=agent.contacts_today + 1,
    )


def _next_takeable(agent: AgentView, later: Sequence[_Waiting], now: datetime) -> _Waiting | None:
    return next((pair for pair in later if may_take(agent, pair[0], pair[1], now)), None)


def match(
    waiting: Sequence[_Waiting],
    agents: Sequence[AgentView],
    now: datetime,
    settings: DispatchSettings,
) -> list[Match]:
    """Greedy batch assignment: contacts in order, each to its best remaining agent.

    A matched agent is treated as just offered for the rest of the batch (load + 1 on the
    channel, ``idle_since`` and ``last_offer_at`` = now, one more contact today), so capacity
    is never exceeded and the strategy spreads a batch. A contact no agent may take is
    skipped. Afterwards no unmatched contact has an agent that may take it (work
    conservation), and no agent was given a contact while an earlier one it could take was
    left waiting. Contact and agent ids must be unique. Cost: O(contacts x agents).
    """
    ordered = _in_contact_order(waiting, now, settings)
    pool = {agent.id: agent for agent in agents}
    matches: list[Match] = []
    for index, (queue, contact) in enumerate(ordered):
        decision = _decision(queue, contact, now, settings)
        ranked = _ranked(decision, list(pool.values()), 2)
        if not ranked:
            continue
        best = ranked[0]
        following = _next_takeable(best.agent, ordered[index + 1 :], now)
        reason = _with_next_contact(best.reason, contact, following, decision)
        matches.append(Match(queue, contact, best.agent.id, reason))
        pool[best.agent.id] = _after_offer(best.agent, contact.channel, now)
    return matches
