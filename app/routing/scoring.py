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
   ``excluded_agent_ids`` (never to be offered this contact: a hard rule, unlike
   ``declined_by`` below; the dispatcher sets none today), holds every skill the contact
   itself requires (``ContactView.skills``: its IVR path's, say) at its minimum level and,
   while a routing step is in force, every skill of that step at the step's minimum level.
   The contact's own skills never expire: a contact no agent holds them for waits, until
   its queue's max wait moves or ends it. Steps expire in order, each ``expires_after_s``
   after the previous one, counted from ``routing_started_at``; once the last step has
   expired any agent with capacity (and the contact's own skills) may take the contact
   (``current_step`` returns ``None``). Inside a relationship-manager window the contact
   is *held* for its manager while the manager is present: among the agents passed in,
   with capacity on the contact's channel and the skills required, and neither excluded
   from nor a decliner of the contact. A held contact is its agent's alone: nobody else may
   take it. Inside its last-agent window (until ``last_agent_until``) a contact is held
   the same way for its last agent, when no manager window holds it. An agent who is
   present but has no room now (at capacity, or not ``ready``) then keeps the contact
   waiting; one who is not present, or does not qualify, holds nothing, and the contact
   falls to the next hold, if any, or to the normal rules at once.
2. **Contact order** (``contact_order_key``): earliest deadline first, then first come first
   served; overdue contacts (waited past their target plus the starvation bound) go first,
   among themselves first come first served.
3. **Agent order** (``rank_agents``): agents who already declined or missed this contact
   (``declined_by``) after every other agent (they still take it when nobody else may, so
   nothing waits for them), then the relationship manager (a preference wherever nothing
   holds the contact for another agent), then the last agent, then the
   queue's strategy with its own tie-break, then the lowest agent id.

The batch (``match``) takes contacts in order and gives each its best remaining agent; the
agents are indexed once per call (``_Pool``) so that a contact costs a few heap operations
rather than a scan of every agent it may take: per signature of acceptability (strategy
entries, channel, the skills required: the step's and the contact's own) a heap of the
acceptable agents' strategy entries, brought up
to date lazily with the offers made since it was last consulted. Its results are exactly
those of ranking every acceptable agent afresh for each contact.

Intervals are half-open: a step expires, and an affinity window closes, exactly at its
instant. A contact becomes overdue only when it has waited strictly longer than its target
plus the bound. Durations are converted with ``timedelta`` (microsecond resolution), so step
boundaries do not drift with floating-point sums.

The agents passed in are those whose presence allows offers (available and active): the
ones who may be offered something now, and any others the caller knows to be present,
such as an agent at capacity on a channel, or one finishing a contact in wrap-up or resting
after a missed offer (``ready`` False: it takes nothing). An agent not passed in is away.
So a caller passes in every present agent a contact may be held for (``holders``: its
manager inside the manager window, its last agent inside the last-agent window), whatever
their room, or the contact is not held for them.

Decisions, and why
------------------

**The manager and the last agent hold a contact only while present.** The manager window
is the tier's promise that its customers reach their own manager; the last agent (the
handler of the customer's open complaint) is worth waiting for too. Either is worth
waiting for when they will be free in a moment: busy with another contact, at capacity,
in wrap-up, resting after a missed offer. One who is away, offline or deactivated (not
passed in), who lacks the channel or the skills required, or who declined or may never
have this contact, would keep the caller waiting for nothing: a platinum caller would wait
out the whole manager window, longer than the tier's target, beside idle agents who could
answer. Such a window holds nothing, and the contact falls through at once: to the
last-agent hold if that applies, else to the normal rules. Both windows use the one
``_held_for`` rule and the one ``only``, so a held contact is decided alike in either
(only its agent is ranked, whether or not they have room now, so who may take it never
depends on how busy that agent is at the instant, and a batch decides it alike whatever
came before it); both are half-open and both wake the dispatcher as they close
(``next_wake_at``). An open manager window is decided first, the stronger promise; after
it the manager is a preference, and a preference never breaks a hold. Whether the agent
is present is the caller's to say, so an agent leaving (away, offline, deactivated) must
wake the caller, as it does the dispatcher (``app.routing.dispatcher.WAKE_EVENTS``).

**A hold is bounded, so nobody starves.** A hold makes one contact wait for one agent and
changes nothing else: not the order of contacts (``contact_order_key``), not what any other
agent is offered. It ends when its agent stops being present or qualified, or when its
window closes (the manager window ``rm_affinity_s`` after the contact queued, the last
agent's at ``last_agent_until``) at the latest, and the contact then goes by the next hold,
if any, or by the normal rules with its original place. So every guarantee of the contact
order holds as before, a held contact counting, like one a routing step keeps from an
agent, as one that agent may not take; and the held contact itself is offered by the
later of its windows' ends and its target plus ``starvation_bound_s``, plus the time until
an agent who may take it is free, whatever arrives meanwhile.
"""

import heapq
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, NamedTuple

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
    "holders",
    "is_overdue",
    "match",
    "may_take",
    "meets",
    "next_wake_at",
    "rank_agents",
    "requirements",
    "skill_reqs",
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


def skill_reqs(stored: Iterable[Mapping[str, Any]]) -> tuple[SkillReq, ...]:
    """Skills as stored (JSON: ``[{"skill": ..., "min_level": ...}]``), in their order.

    A skill stored without its level (a queue's steps changed before they were stored
    whole) counts at the schemas' default, the lowest level."""
    return tuple(
        SkillReq(skill=s["skill"], min_level=s.get("min_level", MIN_LEVEL)) for s in stored
    )


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
    offer). ``skills`` are the skills the contact itself requires (its IVR path's, or its
    creator's): they hold whatever routing step is in force, and after every step expired.
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
    declined_by: frozenset[int] = frozenset()
    skills: tuple[SkillReq, ...] = ()


@dataclass(frozen=True, slots=True)
class AgentView:
    """An agent whose presence allows offers; load and capacity are per channel.

    ``ready`` False: present, but to be offered nothing now (finishing a contact in
    wrap-up, resting after a missed offer); such an agent takes no contact, but holds one
    as its manager or its last agent.
    """

    id: int
    skills: Mapping[str, int]
    idle_since: datetime
    load: Mapping[str, int]
    capacity: Mapping[str, int]
    contacts_today: int = 0
    last_offer_at: datetime | None = None
    ready: bool = True


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


def holders(contact: ContactView, now: datetime) -> tuple[int, ...]:
    """The agents the contact would be held for at ``now`` if they were present: its
    relationship manager inside the manager window, its last agent inside the last-agent
    window. A caller passes each of them in while they are present, with room or not
    (``ready`` False when they may be offered nothing now), or the contact is not held."""
    until = contact.last_agent_until
    found = []
    if _in_rm_window(contact, now) and contact.relationship_manager_id is not None:
        found.append(contact.relationship_manager_id)
    if contact.last_agent_id is not None and until is not None and now < until:
        found.append(contact.last_agent_id)
    return tuple(found)


def next_wake_at(queue: QueueRules, contact: ContactView, now: datetime) -> datetime | None:
    """Next instant after ``now`` at which more agents may take the contact, if any.

    That is a routing-step expiry or the end of the relationship-manager or last-agent
    window: the shell keeps a durable timer for it so that the dispatcher looks again (work
    conservation). The last-agent window counts whether or not it holds the contact: that
    depends on the agents, and a wake that finds nothing new costs one round.
    """
    ends = [*_step_ends(queue, contact), _rm_window_end(contact), contact.last_agent_until]
    return min((end for end in ends if end is not None and end > now), default=None)


def deadline(contact: ContactView) -> datetime:
    """When the contact's service-level target runs out: enqueued_at + the tier's target."""
    return contact.enqueued_at + timedelta(seconds=contact.tier.sl_target_s)


def is_overdue(contact: ContactView, now: datetime, settings: DispatchSettings) -> bool:
    """Whether the contact has waited longer than its target plus the starvation bound."""
    return now > deadline(contact) + timedelta(seconds=settings.starvation_bound_s)


# --- per-contact context ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    """What a decision about one contact needs, worked out once per contact.

    ``only`` is the agent the contact is held for, if any (nobody else may take it): the
    relationship manager inside the manager window, or else the last agent inside theirs,
    each only while present and qualified (``_held_for``); ``manager``
    and ``last`` are the agents an affinity prefers, if any. ``reqs`` are the skills an
    agent must hold: the step's, then the contact's own.
    """

    queue: QueueRules
    contact: ContactView
    now: datetime
    step: int | None
    reqs: tuple[SkillReq, ...]
    scored: frozenset[str]
    only: int | None
    manager: int | None
    last: int | None


_Present = Mapping[int, AgentView]


def _scored_skills(queue: QueueRules, step: int | None) -> frozenset[str]:
    steps = queue.steps if step is None else (queue.steps[step],)
    return frozenset(req.skill for s in steps for req in s.skills)


def _held_for(
    contact: ContactView, agent_id: int | None, reqs: Sequence[SkillReq], present: _Present
) -> int | None:
    """The agent (the manager inside their window, or the last agent inside theirs), if the
    contact is held for them: present, with capacity on the channel and the skills
    required, not excluded and not a decliner (room aside)."""
    agent = None if agent_id is None else present.get(agent_id)
    if agent is None or agent.id in contact.excluded_agent_ids or agent.id in contact.declined_by:
        return None
    if agent.capacity.get(contact.channel, 0) <= 0 or not meets(agent.skills, reqs):
        return None
    return agent.id


def _requirements(
    queue: QueueRules, contact: ContactView, step: int | None
) -> tuple[SkillReq, ...]:
    step_skills = () if step is None else queue.steps[step].skills
    return (*step_skills, *contact.skills) if contact.skills else step_skills


def requirements(queue: QueueRules, contact: ContactView, now: datetime) -> tuple[SkillReq, ...]:
    """The skills an agent must hold to take the contact at ``now``: those of the routing
    step in force (none once every step expired), then the contact's own."""
    return _requirements(queue, contact, current_step(queue, contact, now))


def _context(queue: QueueRules, contact: ContactView, now: datetime, present: _Present) -> _Context:
    """``present``: the agents passed in, by id (they decide whether the contact is held)."""
    step = current_step(queue, contact, now)
    reqs = _requirements(queue, contact, step)
    manager = contact.relationship_manager_id if contact.tier.rm_affinity_s > 0 else None
    until = contact.last_agent_until
    last = contact.last_agent_id if until is not None and now < until else None
    # An open manager window is decided first; one whose manager holds nothing (away,
    # unqualified, excluded, a decliner) gives way at once to the last-agent hold.
    only = _held_for(contact, manager, reqs, present) if _in_rm_window(contact, now) else None
    if only is None:
        only = _held_for(contact, last, reqs, present)
    return _Context(
        queue=queue,
        contact=contact,
        now=now,
        step=step,
        reqs=reqs,
        scored=_scored_skills(queue, step),
        only=only,
        manager=manager,
        last=last,
    )


def _present(agents: Iterable[AgentView]) -> _Present:
    # Later duplicates of an id replace earlier ones, as in ``match``.
    return {agent.id: agent for agent in agents}


# --- eligibility --------------------------------------------------------------------------


def meets(skills: Mapping[str, int], reqs: Sequence[SkillReq]) -> bool:
    """Whether skills held at these levels meet every requirement."""
    return all(skills.get(req.skill, 0) >= req.min_level for req in reqs)


def _eligible(ctx: _Context, agent: AgentView, load: Mapping[str, int]) -> bool:
    # ``load`` is passed apart from the agent: within a batch it grows with each offer.
    if not agent.ready or agent.id in ctx.contact.excluded_agent_ids:
        return False
    channel = ctx.contact.channel
    if not load.get(channel, 0) < agent.capacity.get(channel, 0):
        return False
    return meets(agent.skills, ctx.reqs)


def _accepts(ctx: _Context, agent: AgentView, load: Mapping[str, int]) -> bool:
    return (ctx.only is None or agent.id == ctx.only) and _eligible(ctx, agent, load)


def eligible(agent: AgentView, queue: QueueRules, contact: ContactView, now: datetime) -> bool:
    """Ready, spare capacity on the contact's channel, not excluded, the step's skills and
    the contact's own."""
    return _eligible(_context(queue, contact, now, {}), agent, agent.load)


def may_take(
    agent: AgentView,
    queue: QueueRules,
    contact: ContactView,
    now: datetime,
    *,
    present: Iterable[AgentView] = (),
) -> bool:
    """Eligible, and the agent the contact is held for, if any (its relationship manager
    inside the manager window, or else its last agent inside theirs, while present and
    qualified); ``present``: the other agents present."""
    ctx = _context(queue, contact, now, {**_present(present), agent.id: agent})
    return _accepts(ctx, agent, agent.load)


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
#
# Sort keys are tuples of plain ints, compared exactly: times are microseconds relative to
# ``now`` and an occupancy load/capacity is scaled by the lcm of the capacities ranked
# together (``scale``), so load * (scale // capacity) orders like the fraction itself. A
# strategy's terms followed by the agent id make its *entry*; the full key puts (declined,
# not manager, not last agent) in front. Scores are derived back from the terms (int / int true
# division is correctly rounded, like ``timedelta.total_seconds`` and ``float(Fraction)``).


@dataclass(slots=True)
class _Agent:
    """An agent during one call: its view, its load so far, and times in µs from ``now``."""

    view: AgentView
    load: Mapping[str, int]
    idle: int
    offered: int | None
    contacts: int


def _agent_state(view: AgentView, now: datetime) -> _Agent:
    offered = None if view.last_offer_at is None else _micros(view.last_offer_at - now)
    return _Agent(view, view.load, _micros(view.idle_since - now), offered, view.contacts_today)


_Key = tuple[int, ...]
_TermsOf = Callable[[_Agent, str, frozenset[str], int], _Key]
_ScoreOf = Callable[[_Key, int], float | None]
_US_PER_S: Final = 1_000_000


def _longest_idle(agent: _Agent, channel: str, skills: frozenset[str], scale: int) -> _Key:
    # Earlier idle_since sorts first.
    return (agent.idle,)


def _most_skilled(agent: _Agent, channel: str, skills: frozenset[str], scale: int) -> _Key:
    held = agent.view.skills
    return -sum(held.get(skill, 0) for skill in skills), agent.idle


def _least_occupied(agent: _Agent, channel: str, skills: frozenset[str], scale: int) -> _Key:
    # Only agents with spare capacity are ranked, so capacity > 0 here.
    return agent.load.get(channel, 0) * (scale // agent.view.capacity[channel]), agent.idle


def _round_robin(agent: _Agent, channel: str, skills: frozenset[str], scale: int) -> _Key:
    return (0, 0) if agent.offered is None else (1, agent.offered)


def _fewest_contacts(agent: _Agent, channel: str, skills: frozenset[str], scale: int) -> _Key:
    return agent.contacts, agent.idle


def _idle_score(terms: _Key, scale: int) -> float:
    return -terms[0] / _US_PER_S


def _negated_score(terms: _Key, scale: int) -> int:
    return -terms[0]


def _occupancy_score(terms: _Key, scale: int) -> float:
    return terms[0] / scale


def _offer_score(terms: _Key, scale: int) -> float | None:
    return -terms[1] / _US_PER_S if terms[0] else None


def _count_score(terms: _Key, scale: int) -> int:
    return terms[0]


class _Spec(NamedTuple):
    names: tuple[str, ...]  # names of the sort terms
    terms: _TermsOf
    score: _ScoreOf  # the value the strategy sorted on, from its terms
    per_channel: bool  # terms depend on the contact's channel (and on ``scale``)
    per_skills: bool  # terms depend on the scored skills


_STRATEGIES: Final[Mapping[Strategy, _Spec]] = {
    Strategy.LONGEST_IDLE: _Spec(("idle_since",), _longest_idle, _idle_score, False, False),
    Strategy.MOST_SKILLED: _Spec(
        ("skill_sum", "idle_since"), _most_skilled, _negated_score, False, True
    ),
    Strategy.LEAST_OCCUPIED: _Spec(
        ("occupancy", "idle_since"), _least_occupied, _occupancy_score, True, False
    ),
    Strategy.ROUND_ROBIN: _Spec(
        ("last_offer_at", "last_offer_at"), _round_robin, _offer_score, False, False
    ),
    Strategy.FEWEST_CONTACTS: _Spec(
        ("contacts_today", "idle_since"), _fewest_contacts, _count_score, False, False
    ),
}


def _key_names(strategy: Strategy) -> tuple[str, ...]:
    names = _STRATEGIES[strategy].names
    return ("declined", "relationship_manager", "last_agent", *names, "agent_id")


def _entry(ctx: _Context, agent: _Agent, scale: int) -> _Key:
    terms = _STRATEGIES[ctx.queue.strategy].terms
    return (*terms(agent, ctx.contact.channel, ctx.scored, scale), agent.view.id)


def _full_key(ctx: _Context, entry: _Key) -> _Key:
    agent_id = entry[-1]
    declined = agent_id in ctx.contact.declined_by
    return (declined, agent_id != ctx.manager, agent_id != ctx.last, *entry)


def _capacity_lcm(capacities: Iterable[Mapping[str, int]], channel: str) -> int:
    return math.lcm(*({capacity.get(channel, 0) for capacity in capacities} - {0}))


def _affinity(manager: bool, last_agent: bool) -> Affinity | None:
    if manager:
        return Affinity.RELATIONSHIP_MANAGER
    return Affinity.LAST_AGENT if last_agent else None


def _step_rule(queue: QueueRules, step: int | None) -> str:
    if step is None:
        why = "all routing steps expired" if queue.steps else "queue has no routing steps"
        return f"any agent: {why}"
    skills = ", ".join(str(req) for req in queue.steps[step].skills) or "no skills"
    return f"steps[{step}] requires {skills}"


def _rule(queue: QueueRules, contact: ContactView, step: int | None) -> str:
    """The rule the agent was chosen by: the step's, then the contact's own skills, which
    every agent without them was passed over for."""
    rule = _step_rule(queue, step)
    if not contact.skills:
        return rule
    return f"{rule}; contact requires {', '.join(str(req) for req in contact.skills)}"


def _reasons(
    ctx: _Context, settings: DispatchSettings, best: Sequence[_Key], ranked: int, scale: int
) -> list[Reason]:
    """Reasons for the agents with these full keys (best first), each naming the next."""
    queue, contact, now = ctx.queue, ctx.contact, ctx.now
    names, score = _key_names(queue.strategy), _STRATEGIES[queue.strategy].score
    rule, due = _rule(queue, contact, ctx.step), deadline(contact)
    overdue, waited = is_overdue(contact, now, settings), _seconds(now - contact.enqueued_at)
    # Each agent's runner-up is the next one down; the last has none (zip stops at best).
    runners_up: list[_Key | None] = [*best[1:], None]
    return [
        Reason(
            queue_id=queue.id,
            contact_id=contact.id,
            agent_id=key[-1],
            tier=contact.tier.name,
            step=ctx.step,
            rule=rule,
            strategy=queue.strategy,
            score=score(key[3:-1], scale),
            affinity=_affinity(not key[1], not key[2]),
            tie_break=None if other is None else _first_difference(names, key, other),
            runner_up_agent_id=None if other is None else other[-1],
            agents_ranked=ranked,
            deadline=due,
            overdue=overdue,
            waited_s=waited,
        )
        for key, other in zip(best, runners_up, strict=False)
    ]


def _ranked(
    ctx: _Context, settings: DispatchSettings, agents: Sequence[AgentView], limit: int
) -> list[Ranked]:
    accepted = [agent for agent in agents if _accepts(ctx, agent, agent.load)]
    per_channel = _STRATEGIES[ctx.queue.strategy].per_channel
    scale = _capacity_lcm((a.capacity for a in accepted), ctx.contact.channel) if per_channel else 1
    keyed = [
        (_full_key(ctx, _entry(ctx, _agent_state(agent, ctx.now), scale)), index)
        for index, agent in enumerate(accepted)
    ]
    # The index breaks ties between equal keys (repeated agent ids) in input order.
    best = heapq.nsmallest(limit, keyed)
    reasons = _reasons(ctx, settings, [key for key, _ in best], len(accepted), scale)
    return [
        Ranked(accepted[index], reason) for (_, index), reason in zip(best, reasons, strict=True)
    ]


def rank_agents(
    queue: QueueRules,
    contact: ContactView,
    agents: Sequence[AgentView],
    now: datetime,
    settings: DispatchSettings,
) -> list[Ranked]:
    """Agents that may take the contact, best first, each with its reason.

    Order: agents in ``declined_by`` after all others; then the relationship manager (alone,
    inside the manager window while the contact is held for them: empty if they cannot take
    it now; preferred otherwise), then the last agent while ``last_agent_until`` holds
    (alone, while the contact is held for them: empty if they cannot take it now), then the
    queue's strategy, then the lowest agent id. ``agents`` are the agents present (see the
    module's docstring).
    """
    ctx = _context(queue, contact, now, _present(agents))
    return _ranked(ctx, settings, agents, len(agents))


def choose_agent(
    queue: QueueRules,
    contact: ContactView,
    agents: Sequence[AgentView],
    now: datetime,
    settings: DispatchSettings,
) -> Ranked | None:
    """The best agent for a contact (new or waiting), or None if nobody may take it now."""
    ranked = _ranked(_context(queue, contact, now, _present(agents)), settings, agents, 2)
    return ranked[0] if ranked else None


# --- contact for an agent, and the batch -------------------------------------------------

_Waiting = tuple[QueueRules, ContactView]


def _in_contact_order(
    waiting: Sequence[_Waiting], now: datetime, settings: DispatchSettings
) -> list[_Waiting]:
    return sorted(waiting, key=lambda pair: contact_order_key(pair[1], now, settings))


def _with_next_contact(
    reason: Reason,
    chosen: ContactView,
    following: _Context | None,
    now: datetime,
    settings: DispatchSettings,
) -> Reason:
    if following is None:
        return reason
    tie = _contact_tie_break(
        contact_order_key(chosen, now, settings),
        contact_order_key(following.contact, now, settings),
    )
    # Built field by field: ``dataclasses.replace`` costs several times as much, once a match.
    r = reason
    return Reason(
        r.queue_id,
        r.contact_id,
        r.agent_id,
        r.tier,
        r.step,
        r.rule,
        r.strategy,
        r.score,
        r.affinity,
        r.tie_break,
        r.runner_up_agent_id,
        r.agents_ranked,
        r.deadline,
        r.overdue,
        r.waited_s,
        contact_tie_break=tie,
        next_contact_id=following.contact.id,
    )


def choose_contact(
    agent: AgentView,
    candidates: Sequence[_Waiting],
    now: datetime,
    settings: DispatchSettings,
    *,
    present: Iterable[AgentView] = (),
) -> Match | None:
    """The waiting contact a freed agent should be offered: the first it may take, in order
    (``present``: the other agents present, who may hold a contact as its manager or its
    last agent)."""
    everyone = {**_present(present), agent.id: agent}
    in_order = _in_contact_order(candidates, now, settings)
    ordered = (_context(q, c, now, everyone) for q, c in in_order)
    takeable = (ctx for ctx in ordered if _accepts(ctx, agent, agent.load))
    first = next(takeable, None)
    if first is None:
        return None
    reason = _ranked(first, settings, [agent], 1)[0].reason
    reason = _with_next_contact(reason, first.contact, next(takeable, None), now, settings)
    return Match(first.queue, first.contact, agent.id, reason)


def _skill_levels(
    agents: Iterable[_Agent], needed: frozenset[str]
) -> dict[str, dict[int, list[int]]]:
    """skill -> level -> ids of the agents holding the skill at that level, for the skills
    some contact of the call requires (an agent holds many a round never asks for)."""
    levels: dict[str, dict[int, list[int]]] = {}
    for agent in agents:
        for skill, level in agent.view.skills.items():
            if skill in needed:
                levels.setdefault(skill, {}).setdefault(level, []).append(agent.view.id)
    return levels


_Signature = tuple[tuple[Strategy, str, frozenset[str]], str, frozenset[SkillReq]]


@dataclass(slots=True)
class _Standing:
    """The agents acceptable under one signature, and a lazy heap of their entries.

    A signature is what acceptability and entries depend on apart from the contact's id,
    exclusions and decliners: the entries' key (strategy, channel, scored skills), the
    channel and the skill requirements, the step's and the contact's own (two contacts of
    one step whose own skills differ accept different agents). ``members`` are the agents
    with spare room on the channel who meet the requirements (as of the first ``applied``
    offers of the call); ``heap`` holds the current entry of every member, and possibly
    stale entries and copies, dropped as they reach the top (an entry is valid while its
    agent is a member and it equals the agent's entry).
    """

    members: set[int]
    heap: list[_Key]
    entries: dict[int, _Key]
    applied: int


def _two_smallest(standing: _Standing, skip: frozenset[int]) -> list[_Key]:
    """The two smallest valid entries of agents not in ``skip``; valid ones go back."""
    heap, members, entries = standing.heap, standing.members, standing.entries
    taken: list[_Key] = []
    held: list[_Key] = []
    while heap and len(taken) < 2:
        entry = heapq.heappop(heap)
        agent_id = entry[-1]
        # Equal entries pop one after the other: a copy of the one just held is dropped.
        if agent_id not in members or entries[agent_id] != entry or held[-1:] == [entry]:
            continue
        held.append(entry)
        if agent_id not in skip:
            taken.append(entry)
    for entry in held:
        heapq.heappush(heap, entry)
    return taken


class _Pool:
    """The agents of one ``match`` call, indexed so that a contact costs a few heap operations.

    Per channel, the ids of the ready agents with spare capacity; per skill requirement, the
    ids that meet it (skills do not change within a call); per (strategy, channel, skills)
    the strategy entries computed so far; per signature a ``_Standing``. An offer updates the
    agent, drops it from its channel's spare set once full, forgets its entries (they are
    recomputed when next needed) and is logged; a standing applies the offers logged since
    its last use before it is consulted (a member without room leaves, one with room gets
    its new entry pushed). For a held contact (at most one acceptable agent: its manager or
    its last agent) the acceptable set is computed afresh instead.
    """

    def __init__(self, agents: Sequence[AgentView], now: datetime, needed: frozenset[str]) -> None:
        # Later duplicates of an id replace earlier ones, as a dict would.
        self.agents = {agent.id: _agent_state(agent, now) for agent in agents}
        self._spare: dict[str, set[int]] = {}
        self._levels = _skill_levels(self.agents.values(), needed)
        self._meeting: dict[SkillReq, set[int]] = {}
        self._scales: dict[str, int] = {}
        self._entries: dict[tuple[Strategy, str, frozenset[str]], dict[int, _Key]] = {}
        self._standings: dict[_Signature, _Standing] = {}
        self._offered: list[int] = []  # ids of the agents offered so far, in order

    def _spare_on(self, channel: str) -> set[int]:
        if channel not in self._spare:
            self._spare[channel] = {
                agent_id
                for agent_id, agent in self.agents.items()
                if agent.view.ready
                and agent.load.get(channel, 0) < agent.view.capacity.get(channel, 0)
            }
        return self._spare[channel]

    def _meets(self, req: SkillReq) -> set[int]:
        if req not in self._meeting:
            levels = self._levels.get(req.skill, {}).items()
            ids = (held_by for level, held_by in levels if level >= req.min_level)
            self._meeting[req] = set().union(*ids)
        return self._meeting[req]

    def _qualified(self, ctx: _Context) -> set[int]:
        """A new set of the ids with spare room on the channel that meet every requirement."""
        sets = [self._spare_on(ctx.contact.channel), *map(self._meets, ctx.reqs)]
        sets.sort(key=len)
        return sets[0].intersection(*sets[1:])

    def _acceptable(self, ctx: _Context) -> set[int]:
        acceptable = self._qualified(ctx)
        if ctx.only is not None:
            acceptable &= {ctx.only}
        acceptable.difference_update(ctx.contact.excluded_agent_ids)
        return acceptable

    def _scale(self, ctx: _Context, spec: _Spec) -> int:
        channel = ctx.contact.channel
        if spec.per_channel and channel not in self._scales:
            capacities = (agent.view.capacity for agent in self.agents.values())
            self._scales[channel] = _capacity_lcm(capacities, channel)
        return self._scales[channel] if spec.per_channel else 1

    def _entries_key(self, ctx: _Context, spec: _Spec) -> tuple[Strategy, str, frozenset[str]]:
        channel = ctx.contact.channel if spec.per_channel else ""
        return ctx.queue.strategy, channel, ctx.scored if spec.per_skills else frozenset()

    def _entries_for(
        self, ctx: _Context, spec: _Spec, ids: Iterable[int], scale: int
    ) -> dict[int, _Key]:
        entries = self._entries.setdefault(self._entries_key(ctx, spec), {})
        for agent_id in set(ids).difference(entries):
            entries[agent_id] = _entry(ctx, self.agents[agent_id], scale)
        return entries

    def _standing(self, ctx: _Context, spec: _Spec, scale: int) -> _Standing:
        """The standing of the contact's signature, up to date with every offer so far."""
        signature = (self._entries_key(ctx, spec), ctx.contact.channel, frozenset(ctx.reqs))
        standing = self._standings.get(signature)
        if standing is None:
            members = self._qualified(ctx)
            entries = self._entries_for(ctx, spec, members, scale)
            heap = [entries[agent_id] for agent_id in members]
            heapq.heapify(heap)
            standing = _Standing(members, heap, entries, len(self._offered))
            self._standings[signature] = standing
            return standing
        changed = standing.members.intersection(self._offered[standing.applied :])
        standing.applied = len(self._offered)
        if changed:
            standing.members -= changed - self._spare_on(ctx.contact.channel)
            changed &= standing.members
            entries = self._entries_for(ctx, spec, changed, scale)
            for agent_id in changed:
                heapq.heappush(standing.heap, entries[agent_id])
        return standing

    def _scan(self, ctx: _Context, spec: _Spec, scale: int) -> tuple[list[_Key], int]:
        """Shortlist and count by scanning the acceptable agents (a held contact)."""
        acceptable = self._acceptable(ctx)
        entries = self._entries_for(ctx, spec, acceptable, scale)
        declined = ctx.contact.declined_by & acceptable
        fresh = acceptable - declined if declined else acceptable
        shortlist = heapq.nsmallest(2, map(entries.__getitem__, fresh))
        if len(shortlist) < 2:
            shortlist += heapq.nsmallest(2 - len(shortlist), map(entries.__getitem__, declined))
        shortlist += [entries[i] for i in (ctx.manager, ctx.last) if i in acceptable]
        return shortlist, len(acceptable)

    def _consult(self, ctx: _Context, spec: _Spec, scale: int) -> tuple[list[_Key], int]:
        """The same shortlist and count as ``_scan``, from the signature's standing."""
        standing = self._standing(ctx, spec, scale)
        members, entries = standing.members, standing.entries
        excluded = ctx.contact.excluded_agent_ids
        shortlist = _two_smallest(standing, excluded | ctx.contact.declined_by)
        if len(shortlist) < 2:
            declined = (ctx.contact.declined_by & members) - excluded
            shortlist += heapq.nsmallest(2 - len(shortlist), map(entries.__getitem__, declined))
        affinity = (ctx.manager, ctx.last)
        shortlist += [entries[i] for i in affinity if i in members and i not in excluded]
        return shortlist, len(members) - len(members & excluded)

    def best(self, ctx: _Context) -> tuple[list[_Key], int, int]:
        """Full keys of the best two acceptable agents, how many are acceptable, the scale."""
        spec = _STRATEGIES[ctx.queue.strategy]
        scale = self._scale(ctx, spec)
        # Agents who declined the contact go last, then affinity agents go first. The best
        # two are therefore among the affinity agents and the best two by strategy alone of
        # those who did not decline, topped up from those who did when there are fewer.
        # Entries end in the agent id, so they are unique and the best two are well defined.
        if ctx.only is None:
            shortlist, ranked = self._consult(ctx, spec, scale)
        else:
            shortlist, ranked = self._scan(ctx, spec, scale)
        best = sorted({_full_key(ctx, entry) for entry in shortlist})[:2]
        return best, ranked, scale

    def offer(self, agent: _Agent, channel: str) -> None:
        """Treat the agent as just offered a contact on this channel at ``now``."""
        load = agent.load.get(channel, 0) + 1
        agent.load = {**agent.load, channel: load}
        agent.idle, agent.offered, agent.contacts = 0, 0, agent.contacts + 1
        if not load < agent.view.capacity.get(channel, 0):
            self._spare_on(channel).discard(agent.view.id)
        for entries in self._entries.values():
            entries.pop(agent.view.id, None)
        self._offered.append(agent.view.id)


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
    left waiting. Contact and agent ids must be unique. Cost: building an index of
    O(agents) per signature, then per contact a few heap operations, a log of the offers
    since its signature was last consulted, and the scan for its next contact (see ``_Pool``).
    """
    present = _present(agents)
    ordered = [_context(q, c, now, present) for q, c in _in_contact_order(waiting, now, settings)]
    pool = _Pool(agents, now, frozenset(req.skill for ctx in ordered for req in ctx.reqs))
    matches: list[Match] = []
    for index, ctx in enumerate(ordered):
        best, ranked, scale = pool.best(ctx)
        if not best:
            continue
        reason = _reasons(ctx, settings, best, ranked, scale)[0]
        agent = pool.agents[best[0][-1]]
        later = itertools.islice(ordered, index + 1, None)
        following = next((c for c in later if _accepts(c, agent.view, agent.load)), None)
        reason = _with_next_contact(reason, ctx.contact, following, now, settings)
        matches.append(Match(ctx.queue, ctx.contact, agent.view.id, reason))
        pool.offer(agent, ctx.contact.channel)
    return matches
