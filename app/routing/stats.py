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

The figures are computed in ``figures`` (pure, from plain records); ``window`` does no I/O
and reads no clock either; ``queue_stats`` is the only function that queries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.models import Agent, AgentChannel, AgentSkill, Skill
from app.errors import InvalidInput
from app.events.models import Event
from app.routing.contact_states import WAITING
from app.routing.contacts import db_now
from app.routing.events import Abandoned, Completed, ContactPayload
from app.routing.events import ContactEventType as E
from app.routing.figures import (
    DEFAULT_INTERVAL,
    LENGTHS,
    Interval,
    Live,
    Policy,
    Tally,
    Window,
    aligned_start,
    compute,
)
from app.routing.models import Contact, Queue
from app.routing.schemas import QueueStats

# --- the interval asked for ---------------------------------------------------------------


class InvalidWindow(InvalidInput):
    """Query parameters that do not describe an interval; names the parameter."""

    def __init__(self, param: str, detail: str) -> None:
        super().__init__(f"{param}: {detail}", field=param)


def _utc(moment: datetime) -> datetime:
    """A timestamp without a zone is taken as UTC (the API's convention)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


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


# --- queries ------------------------------------------------------------------------------

QUEUED, CONNECTED, ABANDONED = E.QUEUED, E.CONNECTED, E.ABANDONED
TIMED_OUT, TRANSFERRED, COMPLETED = E.TIMED_OUT, E.TRANSFERRED, E.COMPLETED


def _field(payload: type[Any], key: str) -> ColumnElement[Any]:
    """A key of a declared payload in the event's data (a key the type lacks is a bug)."""
    assert key in payload.__required_keys__, f"{payload.__name__} has no {key!r}"
    return Event.data[key]


def _number(payload: type[Any], key: str) -> ColumnElement[float]:
    return cast(_field(payload, key).astext, Float)


def _is(type_: str) -> ColumnElement[bool]:
    return Event.type == type_


async def _tally(session: AsyncSession, queue_id: int, span: Window, threshold_s: float) -> Tally:
    """One aggregate over the queue's contact events in the interval (index on type, at)."""
    wait = _number(ContactPayload, "wait_s")
    work = _number(Completed, "handle_s") + _number(Completed, "wrap_up_s")
    row = (
        await session.execute(
            select(
                func.count().filter(_is(QUEUED)).label("offered"),
                func.count().filter(_is(CONNECTED)).label("answered"),
                func.count().filter(_is(CONNECTED), wait <= threshold_s).label("answered_within"),
                func.count().filter(_is(ABANDONED)).label("abandoned"),
                func.count()
                .filter(_is(ABANDONED), _field(Abandoned, "short").astext == "true")
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
                _field(ContactPayload, "queue_id").astext == str(queue_id),
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
