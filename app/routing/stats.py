"""Live queue statistics: what a wallboard shows, computed from the event log.

Theory of operation
-------------------

Two kinds of figure, read in the request's transaction:

- **live**, read from current rows: the contacts waiting (queued or offered) and the oldest
  one's wait from its original enqueue time (kept across transfers), and the queue's agents
  by state and by status. An agent of the queue is active, has capacity on one of the
  queue's channels and meets the skills of the queue's last routing step (every such agent
  when the queue has no steps).
- **over an interval**, from the ``events`` table in one aggregate query over
  ``(type, at)`` filtered on ``data->>'queue_id'``: contacts offered (``contact.queued``, so a
  transfer or overflow into the queue counts), answered, abandoned, timed out and
  transferred out, with the wait, handle and wrap-up times the events carry.

The interval is either the current aligned one (``15m`` from the last quarter hour in UTC,
``1d`` from midnight UTC, until now) or ``[from, to)`` cut at now. Rates are per second of
the interval so far. The service-level formula is the queue's (threshold, whether
abandons after the short-abandon cutoff count as missed) and is applied when the figures are
read, so changing it re-rates the interval; whether an abandon was short was decided when it
happened, with the cutoff then in force.

The pure part (``window``, ``compute`` and the formulas) does no I/O and reads no clock;
``queue_stats`` is the only function that queries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, Float, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.models import Agent, AgentChannel, AgentSkill, Skill
from app.agents.presence import State, Status
from app.errors import InvalidInput
from app.events.models import Event
from app.routing import erlang
from app.routing.contact_states import WAITING
from app.routing.lifecycle import db_now
from app.routing.models import Contact, Queue

# --- response ------------------------------------------------------------------------------


class AgentsByState(BaseModel):
    idle: int = Field(description="signed-in agents of the queue with nothing to do")
    offered: int = Field(description="signed-in agents with a contact ringing")
    busy: int = Field(description="signed-in agents handling a contact")
    wrap_up: int = Field(description="signed-in agents in after-contact work")


class AgentsByStatus(BaseModel):
    available: int = Field(description="agents of the queue who chose to take contacts")
    away: int = Field(description="agents of the queue who are signed in but away")
    offline: int = Field(description="agents of the queue who are signed out")


class AgentCounts(BaseModel):
    total: int = Field(description="agents of the queue, whatever their status")
    by_state: AgentsByState = Field(
        description="what the agents who are not offline are doing (system-derived state)"
    )
    by_status: AgentsByStatus = Field(description="every agent of the queue by chosen status")


class LiveFigures(BaseModel):
    waiting: int = Field(description="contacts queued or ringing in this queue now")
    longest_wait_s: float = Field(
        description="the oldest waiting contact's wait from its original enqueue time "
        "(kept across transfers); 0 when nobody waits"
    )
    agents: AgentCounts = Field(
        description="agents of the queue: active, with capacity on one of its channels and "
        "the skills of its last routing step (all such agents when it has no steps)"
    )


class ServiceLevelFigure(BaseModel):
    pct: float | None = Field(
        description="the service level in percent (0.1 precision); null when the formula's "
        "denominator is 0"
    )
    threshold_s: float = Field(description="answered within this many seconds counts as met")
    target_pct: float = Field(description="the queue's target for `pct`")
    counts_abandons: bool = Field(
        description="whether abandons after the short-abandon cutoff count as missed"
    )
    short_abandon_s: float = Field(
        description="the queue's short-abandon cutoff now (each abandon was judged short or "
        "not with the cutoff in force when it happened)"
    )
    formula: str = Field(
        description="the formula applied, e.g. "
        "`answered within 20s / (answered + abandoned after 5s)`"
    )


class IntervalFigures(BaseModel):
    name: str | None = Field(
        description="`15m`, `30m`, `1h` or `1d` for the current aligned interval; null for an "
        "explicit from/to"
    )
    start: datetime = Field(serialization_alias="from", description="start of the interval")
    end: datetime = Field(
        serialization_alias="to", description="end of the interval (now at the latest)"
    )
    length_s: float = Field(description="seconds from `from` to `to`: the rates' denominator")
    offered: int = Field(
        description="contacts that entered the queue (`contact.queued`, including transfers "
        "and overflows in)"
    )
    answered: int = Field(description="contacts connected to an agent (`contact.connected`)")
    abandoned: int = Field(
        description="customers who left before an answer (`contact.abandoned`), short included"
    )
    short_abandoned: int = Field(
        description="abandons before the short-abandon cutoff, counted apart"
    )
    timed_out: int = Field(description="contacts that reached the queue's maximum wait")
    transferred_out: int = Field(description="contacts moved from this queue to another")
    service_level_pct: float | None = Field(description="the same as `service_level.pct`")
    service_level: ServiceLevelFigure = Field(
        description="the service level with the formula and settings it was computed with"
    )
    asa_s: float | None = Field(
        description="average speed of answer: mean wait of the answered contacts, from their "
        "original enqueue time; null when none was answered"
    )
    aht_s: float | None = Field(
        description="average handle time: mean of handle plus wrap-up time of the contacts "
        "completed; null when none completed"
    )
    abandon_rate_pct: float | None = Field(
        description="abandons after the short-abandon cutoff / (offered - short abandons), "
        "in percent; null when that denominator is not positive"
    )
    occupancy_pct: float | None = Field(
        description="approximate: handle plus wrap-up time of the contacts completed in the "
        "interval / (agents of the queue available now x interval length), in percent, at "
        "most 100; null when nobody is available or the interval is empty"
    )
    erlang_agents_needed: int | None = Field(
        description="Erlang C agents needed to meet the service-level target at the "
        "interval's arrival rate (offered / length) and AHT; null without an AHT yet or "
        "past 10,000 agents"
    )


class QueueStats(BaseModel):
    queue_id: int = Field(description="the queue's id")
    queue: str = Field(description="the queue's name")
    at: datetime = Field(description="when the figures were read (database time)")
    live: LiveFigures = Field(description="the queue right now")
    interval: IntervalFigures = Field(description="counts and rates over the interval")


# --- the interval (pure) -------------------------------------------------------------------


class Interval(StrEnum):
    """The current interval, aligned in UTC."""

    m15 = "15m"
    m30 = "30m"
    h1 = "1h"
    d1 = "1d"


LENGTHS: Final = {
    Interval.m15: timedelta(minutes=15),
    Interval.m30: timedelta(minutes=30),
    Interval.h1: timedelta(hours=1),
    Interval.d1: timedelta(days=1),
}
DEFAULT_INTERVAL: Final = Interval.m15
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidWindow(InvalidInput):
    """Query parameters that do not describe an interval; names the parameter."""

    def __init__(self, param: str, detail: str) -> None:
        super().__init__(f"{param}: {detail}", field=param)


@dataclass(frozen=True, slots=True)
class Window:
    name: Interval | None
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def _utc(moment: datetime) -> datetime:
    """A timestamp without a zone is taken as UTC (the API's convention)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def aligned_start(now: datetime, length: timedelta) -> datetime:
    """The start of the interval of ``length`` that contains ``now``, aligned in UTC."""
    return now - (now - _EPOCH) % length


def window(
    *,
    interval: Interval | None,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
) -> Window:
    """The interval asked for: the current aligned one, or ``[from, to)`` cut at now."""
    if start is None:
        if end is not None:
            raise InvalidWindow("from", "give `from` with `to`")
        name = interval or DEFAULT_INTERVAL
        return Window(name, aligned_start(now, LENGTHS[name]), now)
    if interval is not None:
        raise InvalidWindow("interval", "give either `interval` or `from`/`to`, not both")
    start = _utc(start)
    if end is not None and _utc(end) <= start:
        raise InvalidWindow("to", "must be after `from`")
    if start >= now:
        raise InvalidWindow("from", "must be in the past")
    return Window(None, start, min(_utc(end), now) if end is not None else now)


# --- the figures (pure) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    """The queue's service-level settings."""

    threshold_s: float
    target_pct: float
    counts_abandons: bool
    short_abandon_s: float


@dataclass(frozen=True, slots=True)
class Tally:
    """What the event log says about one queue over an interval."""

    offered: int = 0
    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    timed_out: int = 0
    transferred_out: int = 0
    wait_s_total: float = 0.0
    completed: int = 0
    work_s_total: float = 0.0


@dataclass(frozen=True, slots=True)
class Live:
    """The queue now: waiting contacts and agent counts by ``(status, state)``."""

    waiting: int = 0
    oldest_enqueued_at: datetime | None = None
    agents: Mapping[tuple[str, str], int] = field(default_factory=dict)


def _pct(part: float, whole: float) -> float:
    return round(100 * part / whole, 1)


def _secs(value: float) -> str:
    return f"{value:g}s"


def service_level_pct(tally: Tally, policy: Policy) -> float | None:
    """Answered within the threshold / (answered + counted abandons), in percent."""
    missed = tally.abandoned - tally.short_abandoned if policy.counts_abandons else 0
    denominator = tally.answered + missed
    return _pct(tally.answered_within, denominator) if denominator else None


def service_level_formula(policy: Policy) -> str:
    """The formula in words, with the queue's numbers."""
    within = f"answered within {_secs(policy.threshold_s)}"
    if not policy.counts_abandons:
        return f"{within} / answered"
    return f"{within} / (answered + abandoned after {_secs(policy.short_abandon_s)})"


def mean(total: float, count: int) -> float | None:
    return round(total / count, 3) if count else None


def abandon_rate_pct(tally: Tally) -> float | None:
    """Abandons after the cutoff over the contacts offered, short abandons set apart."""
    denominator = tally.offered - tally.short_abandoned
    if denominator <= 0:
        return None
    return _pct(tally.abandoned - tally.short_abandoned, denominator)


def occupancy_pct(work_s: float, staffed: int, seconds: float) -> float | None:
    """Work time over staffed time, in percent and capped at 100 (an approximation)."""
    staffed_s = staffed * seconds
    if staffed_s <= 0:
        return None
    return min(_pct(work_s, staffed_s), 100.0)


def agents_needed(offered: int, seconds: float, aht_s: float | None, policy: Policy) -> int | None:
    """Erlang C staffing for the interval's arrival rate; None without traffic data."""
    if aht_s is None or aht_s <= 0 or seconds <= 0:
        return None
    return erlang.agents_needed(offered / seconds, aht_s, policy.threshold_s, policy.target_pct)


def agent_counts(agents: Mapping[tuple[str, str], int]) -> AgentCounts:
    """Counts by status (everyone) and by state (everyone not offline)."""
    by_status = dict.fromkeys(Status, 0)
    by_state = dict.fromkeys(State, 0)
    for (status, state), count in agents.items():
        by_status[Status(status)] += count
        if status != Status.OFFLINE:
            by_state[State(state)] += count
    return AgentCounts(
        total=sum(by_status.values()),
        by_state=AgentsByState.model_validate({k.value: v for k, v in by_state.items()}),
        by_status=AgentsByStatus.model_validate({k.value: v for k, v in by_status.items()}),
    )


def live_figures(live: Live, now: datetime) -> LiveFigures:
    oldest = live.oldest_enqueued_at
    longest = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
    return LiveFigures(
        waiting=live.waiting, longest_wait_s=round(longest, 3), agents=agent_counts(live.agents)
    )


def interval_figures(tally: Tally, policy: Policy, span: Window, staffed: int) -> IntervalFigures:
    """Counts and rates over the interval, by the queue's service-level formula."""
    sl = service_level_pct(tally, policy)
    aht = mean(tally.work_s_total, tally.completed)
    return IntervalFigures(
        name=span.name.value if span.name is not None else None,
        start=span.start,
        end=span.end,
        length_s=round(span.seconds, 3),
        offered=tally.offered,
        answered=tally.answered,
        abandoned=tally.abandoned,
        short_abandoned=tally.short_abandoned,
        timed_out=tally.timed_out,
        transferred_out=tally.transferred_out,
        service_level_pct=sl,
        service_level=ServiceLevelFigure(
            pct=sl,
            threshold_s=policy.threshold_s,
            target_pct=policy.target_pct,
            counts_abandons=policy.counts_abandons,
            short_abandon_s=policy.short_abandon_s,
            formula=service_level_formula(policy),
        ),
        asa_s=mean(tally.wait_s_total, tally.answered),
        aht_s=aht,
        abandon_rate_pct=abandon_rate_pct(tally),
        occupancy_pct=occupancy_pct(tally.work_s_total, staffed, span.seconds),
        erlang_agents_needed=agents_needed(tally.offered, span.seconds, aht, policy),
    )


def compute(
    *,
    queue_id: int,
    queue_name: str,
    policy: Policy,
    span: Window,
    live: Live,
    tally: Tally,
    now: datetime,
) -> QueueStats:
    """Every figure of the stats endpoint from plain records."""
    staffed = sum(n for (status, _), n in live.agents.items() if status == Status.AVAILABLE)
    return QueueStats(
        queue_id=queue_id,
        queue=queue_name,
        at=now,
        live=live_figures(live, now),
        interval=interval_figures(tally, policy, span, staffed),
    )


# --- queries -------------------------------------------------------------------------------

QUEUED, CONNECTED, ABANDONED = "contact.queued", "contact.connected", "contact.abandoned"
TIMED_OUT, TRANSFERRED, COMPLETED = "contact.timed_out", "contact.transferred", "contact.completed"


def _number(key: str) -> ColumnElement[float]:
    return cast(Event.data[key].astext, Float)


def _is(type_: str) -> ColumnElement[bool]:
    return Event.type == type_


async def _tally(session: AsyncSession, queue_id: int, span: Window, threshold_s: float) -> Tally:
    """One aggregate over the queue's contact events in the interval (index on type, at)."""
    wait, work = _number("wait_s"), _number("handle_s") + _number("wrap_up_s")
    row = (
        await session.execute(
            select(
                func.count().filter(_is(QUEUED)).label("offered"),
                func.count().filter(_is(CONNECTED)).label("answered"),
                func.count().filter(_is(CONNECTED), wait <= threshold_s).label("answered_within"),
                func.count().filter(_is(ABANDONED)).label("abandoned"),
                func.count()
                .filter(_is(ABANDONED), Event.data["short"].astext == "true")
                .label("short_abandoned"),
                func.count().filter(_is(TIMED_OUT)).label("timed_out"),
                func.count().filter(_is(TRANSFERRED)).label("transferred_out"),
                func.coalesce(func.sum(wait).filter(_is(CONNECTED)), 0.0).label("wait_s_total"),
                func.count().filter(_is(COMPLETED)).label("completed"),
                func.coalesce(func.sum(work).filter(_is(COMPLETED)), 0.0).label("work_s_total"),
            ).where(
                Event.type.in_([QUEUED, CONNECTED, ABANDONED, TIMED_OUT, TRANSFERRED, COMPLETED]),
                Event.at >= span.start,
                Event.at < span.end,
                Event.data["queue_id"].astext == str(queue_id),
            )
        )
    ).one()
    return Tally(**row._asdict())


def _agents_of(queue: Queue) -> list[Any]:
    """Conditions on ``Agent`` that make it an agent of the queue (see the module doc)."""
    conditions: list[Any] = [
        Agent.active.is_(True),
        select(AgentChannel.agent_id)
        .where(
            AgentChannel.agent_id == Agent.id,
            AgentChannel.channel.in_(list(queue.channels)),
            AgentChannel.capacity > 0,
        )
        .exists(),
    ]
    last_step: list[dict[str, Any]] = queue.steps[-1]["skills"] if queue.steps else []
    conditions.extend(
        select(AgentSkill.agent_id)
        .join(Skill, Skill.id == AgentSkill.skill_id)
        .where(
            AgentSkill.agent_id == Agent.id,
            Skill.name == req["skill"],
            AgentSkill.level >= req.get("min_level", 1),
        )
        .exists()
        for req in last_step
    )
    return conditions


async def _live(session: AsyncSession, queue: Queue) -> Live:
    waiting = (
        await session.execute(
            select(func.count(), func.min(Contact.enqueued_at)).where(
                Contact.queue_id == queue.id, Contact.status.in_([s.value for s in WAITING])
            )
        )
    ).one()
    rows = (
        await session.execute(
            select(Agent.status, Agent.state, func.count())
            .where(*_agents_of(queue))
            .group_by(Agent.status, Agent.state)
        )
    ).all()
    return Live(
        waiting=int(waiting[0]),
        oldest_enqueued_at=waiting[1],
        agents={(row[0], row[1]): int(row[2]) for row in rows},
    )


async def queue_stats(
    session: AsyncSession,
    *,
    queue: Queue,
    interval: Interval | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> QueueStats:
    """Live figures and interval figures of one queue (raises ``InvalidWindow``)."""
    now = await db_now(session)
    span = window(interval=interval, start=start, end=end, now=now)
    policy = Policy(
        threshold_s=queue.sl_threshold_s,
        target_pct=queue.sl_target_pct,
        counts_abandons=queue.sl_counts_abandons,
        short_abandon_s=queue.short_abandon_s,
    )
    return compute(
        queue_id=queue.id,
        queue_name=queue.name,
        policy=policy,
        span=span,
        live=await _live(session, queue),
        tally=await _tally(session, queue.id, span, policy.threshold_s),
        now=now,
    )
