"""Assigning a complaint: to the person who should handle it, or to the team's queue.

Theory of operation
-------------------

**The chooser** (``choose``) is pure: it reads a list of ``Candidate`` agents and the
``ComplaintFacts`` that matter for assignment, and answers a ``Choice``: an agent or nobody,
the rule that decided, and the reasons in words. A candidate is excluded by the first rule of
``_EXCLUSIONS`` (a literal table) that holds:

- ``current_assignee``: auto-assigning an assigned complaint asks for someone else;
- ``inactive``: the agent's account is switched off;
- ``complained_about``: the person the complaint is about (conflict of interest);
- ``same_branch``: an agent of the branch complained about, that is whose ``site`` or
  ``team`` names that branch (compared case-, width- and punctuation-insensitively, so
  ``Pudong`` is ``pudong``, in full-width letters too). Sites and teams are where the agents sit
  and whom they work with, so an agent whose site or team is the branch complained about
  answers to the people complained about; excluding on either is the cautious reading (a
  wrong exclusion costs a queue, a wrong inclusion is a conflict of interest);
- ``missing_skill``: the agent lacks a skill the categories need. Each category maps to a
  skill (``AssignRules.skill_for``; a category the map lacks needs the skill of the same
  name); a complaint not yet classified needs none. Skill levels do not matter here;
- ``at_capacity``: the agent's open complaints (``load``: assigned to them, in a status of
  ``lifecycle.OPEN``) already fill their ``case`` capacity (an ``agent_channels`` row for
  channel ``case``; no row is a capacity of 0).

Presence (available, away) is not read: a case is back-office work held for days, not a
live contact that needs someone at the console now.

Among the rest, the customer's relationship manager comes first when the customer's tier
puts them first (``AssignRules.rm_tiers``: the tiers whose ``TierConfig.rm_affinity_s`` is
positive, as for calls); then the least loaded (the smallest fraction of their capacity in
use, so a part-timer with 1 of 2 is as busy as a full-timer with 10 of 20), then the one
whose last assignment is longest ago (never is longest), then the lowest id. The ``rule``
names the first of these that told the winner from the runner-up.

**The service** (``auto_assign``) locks the complaint, loads the candidates (every agent with
a ``case`` channel, and the relationship manager), takes a transaction-scoped advisory lock
on each agent that could take it (all rules but capacity pass) in ascending id order, then
reads their loads (a statement after the locks sees every assignment committed before they
were granted) and chooses. Two auto-assignments that could pick the same agent therefore run
one after the other for that agent, and neither sees a stale load: capacity holds under
concurrency. Ascending order means two assigners never wait for each other in a cycle. The
assignment is the lifecycle's ``assign`` move, made by ``service.transition`` with the
reasons as its ``reason``, so they are in the audit entry (``reason`` and
``data.facts.reason``) and the clocks carry on untouched. When nobody is eligible the
complaint keeps its holder (none, or the current assignee), an audit entry ``queued`` and a
``complaint.queued`` event name the team queue and the reasons: it is never dropped. It
waits in the queue (``team_queue``) and is assigned as soon as someone may take it
(``assign_queue``).

The people a complaint is about are named by the caller (``implicated``) and kept in the
complaint's ``facts["implicated"]``, so a later auto-assignment excludes them too.

The last assignment of an agent is the latest ``assign`` entry of the complaints they hold
(the latest ``assign`` entry of a complaint is always to its current holder), read through
the assignee and audit indexes rather than a scan of every audit entry.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from fractions import Fraction
from typing import Any

from sqlalchemy import BigInteger, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.models import Agent, AgentChannel, AgentSkill, Skill
from app.agents.permissions import Principal
from app.complaints import lifecycle, service, team_queue
from app.complaints.events import ComplaintEventType, complaint_event
from app.complaints.exceptions import IllegalMove
from app.complaints.lifecycle import ComplaintEvent, ComplaintStatus
from app.complaints.models import Complaint, ComplaintAudit
from app.complaints.schemas import TransitionFacts
from app.config import TierConfig
from app.customers.models import Customer

CASE_CHANNEL = "case"
LISTED = 20  # agent ids a reason names before it says how many more
REASON_LIMIT = 10_000  # a transition's reason is at most this long

# --- the chooser (pure) ----------------------------------------------------------------------


class Exclusion(StrEnum):
    """Why a candidate may not take the complaint."""

    current_assignee = "current_assignee"
    inactive = "inactive"
    complained_about = "complained_about"
    same_branch = "same_branch"
    missing_skill = "missing_skill"
    at_capacity = "at_capacity"


class Rule(StrEnum):
    """What decided the choice."""

    relationship_manager = "relationship_manager"
    only_candidate = "only_candidate"
    least_loaded = "least_loaded"
    longest_since_last_assignment = "longest_since_last_assignment"
    lowest_id = "lowest_id"
    nobody_eligible = "nobody_eligible"


@dataclass(frozen=True, slots=True)
class Candidate:
    """An agent as the chooser sees them."""

    agent_id: int
    skills: frozenset[str] = frozenset()
    capacity: int = 0
    load: int = 0
    active: bool = True
    site: str | None = None
    team: str | None = None
    last_assigned_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ComplaintFacts:
    """What of a complaint decides who may take it."""

    categories: tuple[str, ...] = ()
    branch: str = ""
    implicated: frozenset[int] = frozenset()
    relationship_manager_id: int | None = None
    tier: str | None = None
    assignee_id: int | None = None


@dataclass(frozen=True, slots=True)
class AssignRules:
    """The desk's assignment settings."""

    skill_for: Mapping[str, str] = field(default_factory=dict)
    rm_tiers: frozenset[str] = frozenset()
    queue: str = "complaints"

    def skills_needed(self, categories: Iterable[str]) -> tuple[str, ...]:
        """The skills the categories need, each once, in the categories' order."""
        return tuple(dict.fromkeys(self.skill_for.get(c, c) for c in categories))


def rules_from(tiers: Mapping[str, TierConfig], **overrides: Any) -> AssignRules:
    """The rules with relationship managers first for the tiers that wait for them."""
    rm_tiers = frozenset(name for name, tier in tiers.items() if tier.rm_affinity_s > 0)
    return AssignRules(rm_tiers=rm_tiers, **overrides)


@dataclass(frozen=True, slots=True)
class Choice:
    """Who takes the complaint (None: the team queue), the deciding rule, and why."""

    agent_id: int | None
    rule: Rule
    reasons: tuple[str, ...]
    excluded: Mapping[int, Exclusion] = field(default_factory=dict)
    eligible: tuple[int, ...] = ()


def plain(value: str | None) -> str:
    """A name compared without case, width, spaces or punctuation."""
    kept = (c for c in unicodedata.normalize("NFKC", value or "").casefold() if c.isalnum())
    return "".join(kept)


@dataclass(frozen=True, slots=True)
class _Need:
    facts: ComplaintFacts
    skills: frozenset[str]
    branch: str


def _of_branch(c: Candidate, need: _Need) -> bool:
    return bool(need.branch) and need.branch in (plain(c.site), plain(c.team))


_EXCLUSIONS: tuple[tuple[Exclusion, Callable[[Candidate, _Need], bool]], ...] = (
    (Exclusion.current_assignee, lambda c, n: c.agent_id == n.facts.assignee_id),
    (Exclusion.inactive, lambda c, n: not c.active),
    (Exclusion.complained_about, lambda c, n: c.agent_id in n.facts.implicated),
    (Exclusion.same_branch, _of_branch),
    (Exclusion.missing_skill, lambda c, n: not n.skills <= c.skills),
    (Exclusion.at_capacity, lambda c, n: c.load >= c.capacity),
)


def _need(facts: ComplaintFacts, rules: AssignRules) -> _Need:
    return _Need(facts, frozenset(rules.skills_needed(facts.categories)), plain(facts.branch))


def exclusion(
    candidate: Candidate, facts: ComplaintFacts, rules: AssignRules = AssignRules()
) -> Exclusion | None:
    """The first rule that keeps ``candidate`` from the complaint, or None."""
    need = _need(facts, rules)
    return next((why for why, holds in _EXCLUSIONS if holds(candidate, need)), None)


_LOCKABLE = (None, Exclusion.at_capacity)


def contenders(
    candidates: Iterable[Candidate], facts: ComplaintFacts, rules: AssignRules = AssignRules()
) -> list[int]:
    """The agents only their load could keep from the complaint, by id: those to lock."""
    ids = (c.agent_id for c in candidates if exclusion(c, facts, rules) in _LOCKABLE)
    return sorted(set(ids))


_NEVER = datetime.min.replace(tzinfo=UTC)


def _order(c: Candidate) -> tuple[Fraction, datetime, int]:
    return Fraction(c.load, c.capacity), c.last_assigned_at or _NEVER, c.agent_id


_TIE_RULES = (Rule.least_loaded, Rule.longest_since_last_assignment, Rule.lowest_id)


def _decided_by(ranked: Sequence[Candidate]) -> Rule:
    if len(ranked) == 1:
        return Rule.only_candidate
    first, second = _order(ranked[0]), _order(ranked[1])
    return next(rule for rule, a, b in zip(_TIE_RULES, first, second, strict=True) if a != b)


def _ids(ids: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:LISTED])
    return shown if len(ids) <= LISTED else f"{shown} and {len(ids) - LISTED} more"


def _exclusion_reasons(excluded: Mapping[int, Exclusion]) -> list[str]:
    by_rule: dict[Exclusion, list[int]] = {}
    for agent_id, why in sorted(excluded.items()):
        by_rule.setdefault(why, []).append(agent_id)
    return [f"excluded ({why.value}): {_ids(ids)}" for why, ids in sorted(by_rule.items())]


def _needs_reason(facts: ComplaintFacts, rules: AssignRules) -> list[str]:
    skills = rules.skills_needed(facts.categories)
    said = [f"needs skills: {', '.join(skills)}" if skills else "needs no skill (unclassified)"]
    if facts.implicated:
        said.append(f"complained about: {_ids(sorted(facts.implicated))}")
    return said


def _manager(
    facts: ComplaintFacts,
    rules: AssignRules,
    pool: Mapping[int, Candidate],
    excluded: Mapping[int, Exclusion],
) -> tuple[int | None, list[str]]:
    """The relationship manager if they come first and may take it, and what was said."""
    manager = facts.relationship_manager_id
    if manager is None or facts.tier not in rules.rm_tiers:
        return None, []
    if manager not in pool:
        return None, [f"relationship manager {manager} is not a candidate"]
    if manager in excluded:
        return None, [f"relationship manager {manager} passed over ({excluded[manager].value})"]
    return manager, []


def _winner_reason(winner: Candidate, rule: Rule) -> str:
    last = "never" if winner.last_assigned_at is None else winner.last_assigned_at.isoformat()
    return (
        f"chose agent {winner.agent_id} ({rule.value}): {winner.load} of {winner.capacity} "
        f"cases open, last assigned {last}"
    )


def choose(
    candidates: Iterable[Candidate], facts: ComplaintFacts, rules: AssignRules = AssignRules()
) -> Choice:
    """Who takes the complaint, by the rules above; nobody if no candidate may."""
    pool = {c.agent_id: c for c in candidates}
    excluded = {i: why for i, c in pool.items() if (why := exclusion(c, facts, rules))}
    ranked = sorted((c for i, c in pool.items() if i not in excluded), key=_order)
    reasons = [*_needs_reason(facts, rules), *_exclusion_reasons(excluded)]
    manager, said = _manager(facts, rules, pool, excluded)
    reasons += said
    eligible = tuple(c.agent_id for c in ranked)
    if not ranked:
        reasons.append(f"nobody eligible: queued for {rules.queue}")
        return Choice(None, Rule.nobody_eligible, tuple(reasons), excluded, eligible)
    if manager is not None:
        winner, rule = pool[manager], Rule.relationship_manager
    else:
        winner, rule = ranked[0], _decided_by(ranked)
    reasons.append(_winner_reason(winner, rule))
    return Choice(winner.agent_id, rule, tuple(reasons), excluded, eligible)


def reason_text(choice: Choice) -> str:
    """The reasons as one line, short enough for a transition's ``reason``."""
    line = "; ".join(choice.reasons)
    return line if len(line) <= REASON_LIMIT else line[: REASON_LIMIT - 1] + "…"


# --- the service -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """An auto-assignment done: the complaint as it is now, and the choice made."""

    complaint: Complaint
    choice: Choice
    queue: str | None


async def _customer_facts(
    session: AsyncSession, customer_id: int | None
) -> tuple[int | None, str | None]:
    if customer_id is None:
        return None, None
    stmt = select(Customer.relationship_manager_id, Customer.tier).where(Customer.id == customer_id)
    row = (await session.execute(stmt)).one_or_none()
    return (None, None) if row is None else (row[0], row[1])


def implicated_of(complaint: Complaint) -> frozenset[int]:
    """The people the complaint is about, as recorded on it."""
    return frozenset(int(i) for i in complaint.facts.get("implicated", ()))


async def facts_of(session: AsyncSession, complaint: Complaint) -> ComplaintFacts:
    """What of ``complaint`` the chooser reads."""
    manager, tier = await _customer_facts(session, complaint.customer_id)
    return ComplaintFacts(
        categories=tuple(complaint.categories),
        branch=complaint.branch,
        implicated=implicated_of(complaint),
        relationship_manager_id=manager,
        tier=tier,
        assignee_id=complaint.assignee_id,
    )


async def _skills(session: AsyncSession, ids: Sequence[int]) -> dict[int, set[str]]:
    stmt = (
        select(AgentSkill.agent_id, Skill.name)
        .join(Skill, Skill.id == AgentSkill.skill_id)
        .where(AgentSkill.agent_id.in_(ids))
    )
    found: dict[int, set[str]] = {}
    for agent_id, name in await session.execute(stmt):
        found.setdefault(agent_id, set()).add(name)
    return found


async def candidates_for(session: AsyncSession, facts: ComplaintFacts) -> list[Candidate]:
    """Every agent with a ``case`` channel, and the relationship manager; loads not read."""
    capacity = func.coalesce(AgentChannel.capacity, 0)
    stmt = (
        select(Agent.id, Agent.active, Agent.site, Agent.team, capacity)
        .outerjoin(
            AgentChannel,
            (AgentChannel.agent_id == Agent.id) & (AgentChannel.channel == CASE_CHANNEL),
        )
        .where((AgentChannel.capacity > 0) | (Agent.id == facts.relationship_manager_id))
    )
    rows = (await session.execute(stmt)).all()
    skills = await _skills(session, [r[0] for r in rows])
    return [
        Candidate(
            agent_id=i,
            skills=frozenset(skills.get(i, ())),
            capacity=cap,
            active=active,
            site=site,
            team=team,
        )
        for i, active, site, team, cap in rows
    ]


_LOCK_AGENTS = text(
    # unnest yields the ids in the array's (ascending) order and each row's lock is taken
    # as it is produced, so the locks are taken in that order.
    "SELECT pg_advisory_xact_lock(hashtextextended('complaints:agent:' || id::text, 0)) "
    "FROM unnest(:ids) AS id"
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))


async def lock_agents(session: AsyncSession, agent_ids: Sequence[int]) -> None:
    """Hold each agent's assignment lock until the transaction ends, lowest id first."""
    if agent_ids:
        await session.execute(_LOCK_AGENTS, {"ids": sorted(agent_ids)})


async def loads(session: AsyncSession, agent_ids: Sequence[int]) -> dict[int, int]:
    """Each agent's open complaints."""
    open_statuses = [s.value for s in lifecycle.OPEN]
    stmt = (
        select(Complaint.assignee_id, func.count())
        .where(Complaint.assignee_id.in_(agent_ids), Complaint.status.in_(open_statuses))
        .group_by(Complaint.assignee_id)
    )
    return {int(i): int(n) for i, n in await session.execute(stmt) if i is not None}


async def last_assigned(session: AsyncSession, agent_ids: Sequence[int]) -> dict[int, datetime]:
    """When each agent was last given a complaint they still hold."""
    stmt = (
        select(Complaint.assignee_id, func.max(ComplaintAudit.at))
        .join(ComplaintAudit, ComplaintAudit.complaint_id == Complaint.id)
        .where(Complaint.assignee_id.in_(agent_ids), ComplaintAudit.action == "assign")
        .group_by(Complaint.assignee_id)
    )
    return {int(i): at for i, at in await session.execute(stmt) if i is not None}


async def with_loads(session: AsyncSession, candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates with their current loads and last assignments."""
    ids = [c.agent_id for c in candidates]
    held, last = await loads(session, ids), await last_assigned(session, ids)
    return [
        replace(c, load=held.get(c.agent_id, 0), last_assigned_at=last.get(c.agent_id))
        for c in candidates
    ]


def _check_assignable(complaint: Complaint) -> None:
    status = ComplaintStatus(complaint.status)
    if not lifecycle.allows(status, ComplaintEvent.ASSIGN):
        raise IllegalMove(lifecycle.IllegalComplaintMove(status, ComplaintEvent.ASSIGN))


def _remember_implicated(complaint: Complaint, implicated: Iterable[int]) -> None:
    known = implicated_of(complaint) | frozenset(implicated)
    if known != implicated_of(complaint):
        complaint.facts = {**complaint.facts, "implicated": sorted(known)}


def _queue(
    session: AsyncSession,
    complaint: Complaint,
    choice: Choice,
    queue: str,
    actor: str,
    now: datetime,
) -> None:
    data = {
        "queue": queue,
        "rule": choice.rule.value,
        "implicated": sorted(implicated_of(complaint)),
    }
    step = service.Step("queued", complaint.status, complaint.status, reason_text(choice), data)
    service.write_audit(session, complaint, step, actor=actor, at=now)
    payload = {
        "complaint_id": complaint.id,
        "reference": complaint.reference,
        "status": complaint.status,
        "queue": queue,
        "assignee_id": complaint.assignee_id,
    }
    complaint_event(
        session,
        ComplaintEventType.QUEUED,
        complaint.id,
        payload,
        actor=actor,
        agent_id=complaint.assignee_id,
    )


async def decide(session: AsyncSession, complaint: Complaint, rules: AssignRules) -> Choice:
    """Lock the agents who could take ``complaint``, read their loads, choose."""
    facts = await facts_of(session, complaint)
    found = await candidates_for(session, facts)
    await lock_agents(session, contenders(found, facts, rules))
    return choose(await with_loads(session, found), facts, rules)


async def auto_assign(
    session: AsyncSession,
    *,
    complaint_id: int,
    principal: Principal,
    now: datetime,
    rules: AssignRules = AssignRules(),
    implicated: Iterable[int] = (),
    desk: service.Desk = service.DESK,
) -> Outcome:
    """Assign the complaint by the rules, or mark it for the team queue; never drop it."""
    complaint = await service.get_or_raise(session, complaint_id, for_update=True)
    _check_assignable(complaint)
    _remember_implicated(complaint, implicated)
    choice = await decide(session, complaint, rules)
    if choice.agent_id is None:
        _queue(session, complaint, choice, rules.queue, principal.actor, now)
        await team_queue.mark(session, complaint_id=complaint.id, queue=rules.queue, now=now)
        await session.flush()
        return Outcome(complaint, choice, rules.queue)
    facts = TransitionFacts(assignee=choice.agent_id, reason=reason_text(choice))
    await service.transition(
        session,
        complaint,
        event=ComplaintEvent.ASSIGN,
        facts=facts,
        principal=principal,
        now=now,
        desk=desk,
    )
    return Outcome(complaint, choice, None)
