"""Draining the team queue: a queued complaint goes to someone as soon as they may take it.

Theory of operation
-------------------

The team queue is ``queued_complaints`` (``app.complaints.team_queue``): the complaints an
auto-assignment found nobody for. Each is assigned by ``assign.auto_assign``, the one path
of every automatic assignment (the same rules, the same locks, the reasons on record), as
the system (actor ``system``), once someone may take it. Two things drain the queue:

- **the nudge**: a move that gives an agent room schedules the durable timer
  ``complaint.assign_queued`` (one row, due at once; ``team_queue.after_move``). Its handler
  assigns the first complaint, earliest due first among the ``LOOK_AT`` most urgent, that
  someone may take now, and if it assigned one schedules itself again at once, so a burst of
  room is used up one complaint per timer run;
- **the sweep** (``complaints.assign_queued``, every ``SWEEP_EVERY_S`` on every instance):
  the whole queue, earliest due first (up to ``SWEEP_LIMIT`` complaints a run), each in a
  transaction of its own. It finds the room no move announced: a capacity raised, a skill
  added, a new agent, a nudge lost with its transaction.

Both first ask whether any active agent has room under their ``case`` capacity at all, and
stop at once when nobody has. Each complaint is then tried in a savepoint: it is locked
with ``SKIP LOCKED`` (a complaint a request or another instance holds is left for the next
look), the agents who could take it are locked and their loads read (``assign.decide``), and
only if someone may take it does ``auto_assign`` assign it. Otherwise the savepoint is
rolled back, which lets go of the agents' locks and writes nothing: a complaint that waits
gets no new audit entry each time it is looked at.

Decisions, and why
------------------

**Capacity holds under concurrency** as for every auto-assignment: the agents' locks are
taken in ascending order and the loads read after them, so two instances draining at once
(or a drain and a request) that could pick the same agent run one after the other for that
agent. The sweep commits after each complaint, so it never holds the locks of one complaint
while it waits for those of the next.

**The timer's handler never waits for a lock.** It runs in the timer worker's transaction,
which holds the fired timer's row; a move that gives room (a reassignment holding the
agents' locks) writes that row and would wait for the worker while the worker waited for
its locks. The handler therefore sets ``lock_timeout`` to ``LOCK_WAIT`` for its own
savepoint; a lock held longer undoes its work and it fires again ``RETRY_AFTER`` later, as
the routing handlers do with ``NOWAIT``.

**Room is the assignment rules' own**: open complaints under the ``case`` capacity
(``assign.loads``). A resolved complaint still counts until the customer confirms it or it
is closed, so it is the confirmation or the closure that gives its holder room.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import exists, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.models import Agent, AgentChannel, Role
from app.agents.permissions import Principal
from app.complaints import assign, lifecycle, service, team_queue
from app.complaints.lifecycle import ComplaintEvent, ComplaintStatus
from app.complaints.models import Complaint
from app.complaints.team_queue import QueuedComplaint
from app.config import Settings
from app.routing.handlers import LOCK_NOT_AVAILABLE
from app.timers import service as timers
from app.timers.models import Timer
from app.timers.worker import Handler, Sweep, TimerRegistry

ACTOR: Final = "system"
SWEEP: Final = "complaints.assign_queued"
SWEEP_EVERY_S: Final = 10.0
SWEEP_LIMIT: Final = 500  # queued complaints a sweep looks at; the rest wait for the next
LOOK_AT: Final = 20  # queued complaints a timer run looks at, the most urgent first
PAGE: Final = 50
LOCK_WAIT: Final = "100ms"
RETRY_AFTER: Final = timedelta(milliseconds=200)


@dataclass(frozen=True, slots=True)
class _System(Principal):
    """The desk itself, as the author of the assignments it makes from the queue."""

    @property
    def actor(self) -> str:
        return ACTOR


SYSTEM: Final = _System(id=0, username=ACTOR, role=Role.admin, site=None)

# --- reading the queue -----------------------------------------------------------------------


async def anyone_has_room(session: AsyncSession) -> bool:
    """Has any active agent fewer open complaints than their ``case`` capacity?"""
    held = (
        select(func.count())
        .where(
            Complaint.assignee_id == AgentChannel.agent_id,
            Complaint.status.in_([s.value for s in lifecycle.OPEN]),
        )
        .scalar_subquery()
    )
    room = exists().where(
        AgentChannel.channel == assign.CASE_CHANNEL,
        AgentChannel.capacity > held,
        Agent.id == AgentChannel.agent_id,
        Agent.active,
    )
    return bool(await session.scalar(select(room)))


async def queued_ids(session: AsyncSession, *, skip: Sequence[int], limit: int) -> list[int]:
    """The queued complaints, earliest due first (then the oldest), but those in ``skip``."""
    stmt = (
        select(QueuedComplaint.complaint_id)
        .join(Complaint, Complaint.id == QueuedComplaint.complaint_id)
        .where(QueuedComplaint.complaint_id.not_in(skip))
        .order_by(Complaint.due_at.asc().nulls_last(), Complaint.id)
        .limit(limit)
    )
    return list(await session.scalars(stmt))


async def _locked(session: AsyncSession, complaint_id: int) -> Complaint | None:
    """The queued complaint, locked; None if it left the queue or someone holds it."""
    stmt = (
        select(Complaint)
        .join(QueuedComplaint, QueuedComplaint.complaint_id == Complaint.id)
        .where(Complaint.id == complaint_id)
        .with_for_update(of=Complaint, skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return await session.scalar(stmt)


# --- assigning -------------------------------------------------------------------------------


class _Nobody(Exception):
    """Nobody may take the complaint now: undo the try (and let go of the agents' locks)."""


async def attempt(
    session: AsyncSession,
    complaint_id: int,
    *,
    now: datetime,
    rules: assign.AssignRules,
    desk: service.Desk,
) -> assign.Outcome | None:
    """Assign the queued complaint if someone may take it now; else change nothing."""
    try:
        async with session.begin_nested():
            complaint = await _locked(session, complaint_id)
            if complaint is None:
                raise _Nobody
            if not lifecycle.allows(ComplaintStatus(complaint.status), ComplaintEvent.ASSIGN):
                await team_queue.unmark(session, complaint_id)
                return None
            if (await assign.decide(session, complaint, rules)).agent_id is None:
                raise _Nobody
            done = await assign.auto_assign(
                session,
                complaint_id=complaint_id,
                principal=SYSTEM,
                now=now,
                rules=rules,
                desk=desk,
            )
    except _Nobody:
        return None
    return done if done.choice.agent_id is not None else None


async def assign_first(
    session: AsyncSession,
    *,
    now: datetime,
    rules: assign.AssignRules,
    desk: service.Desk,
    look_at: int = LOOK_AT,
) -> assign.Outcome | None:
    """Assign the most urgent of the first ``look_at`` queued complaints someone may take."""
    if not await anyone_has_room(session):
        return None
    for complaint_id in await queued_ids(session, skip=(), limit=look_at):
        done = await attempt(session, complaint_id, now=now, rules=rules, desk=desk)
        if done is not None:
            return done
    return None


async def drain(
    session: AsyncSession,
    *,
    now: datetime,
    rules: assign.AssignRules,
    desk: service.Desk,
    limit: int = SWEEP_LIMIT,
) -> int:
    """Assign every queued complaint someone may take, earliest due first, each in a
    transaction of its own (this commits ``session``); returns how many were assigned."""
    seen: list[int] = []
    assigned = 0
    while len(seen) < limit and await anyone_has_room(session):
        page = await queued_ids(session, skip=seen, limit=min(PAGE, limit - len(seen)))
        if not page:
            break
        for complaint_id in page:
            seen.append(complaint_id)
            if await attempt(session, complaint_id, now=now, rules=rules, desk=desk):
                assigned += 1
            await session.commit()
    return assigned


# --- the timer and the sweep -----------------------------------------------------------------


async def _lock_timeout(session: AsyncSession, value: str) -> None:
    await session.execute(text("SELECT set_config('lock_timeout', :value, true)"), {"value": value})


async def _assign_without_waiting(
    session: AsyncSession, *, now: datetime, rules: assign.AssignRules, desk: service.Desk
) -> bool | None:
    """``assign_first`` waiting at most ``LOCK_WAIT`` for any lock: whether it assigned a
    complaint, or None when a lock was held longer (its work undone)."""
    was = await session.scalar(text("SELECT current_setting('lock_timeout')"))
    try:
        async with session.begin_nested():
            await _lock_timeout(session, LOCK_WAIT)
            done = await assign_first(session, now=now, rules=rules, desk=desk)
            await _lock_timeout(session, str(was))  # kept by the savepoint's release
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        return None  # the rollback restored the setting too
    return done is not None


async def _again(session: AsyncSession, after: timedelta) -> None:
    """Fire again (the worker deleted the fired row: this schedules a new one)."""
    clock = await session.scalar(select(func.clock_timestamp()))
    assert clock is not None
    await timers.schedule(
        session, kind=team_queue.KIND, subject=team_queue.SUBJECT, due_at=clock + after
    )


def timer_handler(rules: assign.AssignRules, desk: service.Desk) -> Handler:
    """The ``complaint.assign_queued`` handler: one complaint a run while any may go."""

    async def handle(session: AsyncSession, timer: Timer, now: datetime) -> None:
        assigned = await _assign_without_waiting(session, now=now, rules=rules, desk=desk)
        if assigned is None:
            await _again(session, RETRY_AFTER)
        elif assigned:
            await _again(session, timedelta(0))

    return handle


def sweep(rules: assign.AssignRules, desk: service.Desk) -> Sweep:
    """The periodic drain of the whole queue."""

    async def run(session: AsyncSession, now: datetime) -> int:
        return await drain(session, now=now, rules=rules, desk=desk)

    return run


def register(
    registry: TimerRegistry,
    settings: Settings,
    *,
    rules: assign.AssignRules | None = None,
    desk: service.Desk | None = None,
    every_s: float = SWEEP_EVERY_S,
) -> None:
    """Drain the team queue from every instance's timer worker: the nudge and the sweep."""
    rules = rules or assign.rules_from(settings.tiers)
    desk = desk or service.desk_for(settings)
    registry.register(team_queue.KIND, timer_handler(rules, desk))
    registry.register_sweep(SWEEP, sweep(rules, desk), every_s=every_s)
