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
  ``(type, at)``, each event joined to its queue by ``data->>'queue_id'``: contacts offered
  (``contact.queued``, so a transfer or overflow into the queue counts), answered, abandoned,
  timed out and transferred out, with the wait, handle and wrap-up times the events carry.

The interval is either the current aligned one (``15m`` from the last quarter hour in UTC,
``1d`` from midnight UTC, until now) or ``[from, to)`` cut at now. Rates are per second of
the interval so far. The service-level formula is the queue's (threshold, whether
abandons after the short-abandon cutoff count as missed) and is applied when the figures are
read, so changing it re-rates the interval; whether an abandon was short was decided when it
happened, with the cutoff then in force.

The figures are computed in ``figures`` (pure, from plain records); ``window`` does no I/O
and reads no clock either.

One computation serves every reader: ``GET /queues/{id}/stats`` (``queue_stats``), the
wallboard's live figures (``board``) and the queue reports (``app.routing.reports``) read the
log through the same ``tallies`` (one aggregate grouped by queue and by time bucket, the
buckets given by their boundaries: ``width_bucket``), the waiting contacts through
``waiting`` and the agents through ``agent_profiles`` (agents alike counted together, matched
to each queue by ``figures.serves``), and turn them into figures with the same pure functions.

The wallboard asks every second, so ``board`` keeps the day's tally up to a settled interval
boundary (``DayCache``): only the span after it is read again each time. A boundary settles
``SETTLE`` after it passed (an event is stamped with its transaction's start, so a transaction
still open at the boundary can add to the interval before it until it commits); each time the
settled boundary moves the day is read whole again, so even a later commit is counted within
one interval, and a changed service-level threshold re-rates the day at once.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Float,
    Integer,
    bindparam,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.models import Agent, AgentChannel, AgentSkill, Skill
from app.db import db_now
from app.errors import InvalidInput
from app.events.models import Event
from app.routing.board_figures import Board, QueueFacts, Spans
from app.routing.board_figures import board as board_of
from app.routing.contact_states import WAITING
from app.routing.events import Abandoned, Completed, ContactPayload
from app.routing.events import ContactEventType as E
from app.routing.figures import (
    DEFAULT_INTERVAL,
    LENGTHS,
    AgentProfile,
    Interval,
    Needs,
    Policy,
    Tally,
    Window,
    aligned_start,
    compute,
    live_of,
    zone_aligned_start,
    zone_day_start,
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


# --- the event log: tallies by queue and time bucket --------------------------------------

QUEUED, CONNECTED, ABANDONED = E.QUEUED, E.CONNECTED, E.ABANDONED
TIMED_OUT, TRANSFERRED, COMPLETED = E.TIMED_OUT, E.TRANSFERRED, E.COMPLETED
TALLIED: Final = (QUEUED, CONNECTED, ABANDONED, TIMED_OUT, TRANSFERRED, COMPLETED)


def _field(payload: type[Any], key: str) -> ColumnElement[Any]:
    """A key of a declared payload in the event's data (a key the type lacks is a bug)."""
    assert key in payload.__required_keys__, f"{payload.__name__} has no {key!r}"
    return Event.data[key]


def _number(payload: type[Any], key: str) -> ColumnElement[float]:
    return cast(_field(payload, key).astext, Float)


def _is(type_: str) -> ColumnElement[bool]:
    return Event.type == type_


def _tally_columns() -> list[Any]:
    """The aggregates of a ``Tally``, over contact events joined to their queue."""
    wait = _number(ContactPayload, "wait_s")
    work = _number(Completed, "handle_s") + _number(Completed, "wrap_up_s")
    short = _field(Abandoned, "short").astext == "true"
    within = wait <= Queue.sl_threshold_s  # the queue's threshold now: re-rated when read
    return [
        func.count().filter(_is(QUEUED)).label("offered"),
        func.count().filter(_is(CONNECTED)).label("answered"),
        func.count().filter(_is(CONNECTED), within).label("answered_within"),
        func.count().filter(_is(ABANDONED)).label("abandoned"),
        func.count().filter(_is(ABANDONED), short).label("short_abandoned"),
        func.count().filter(_is(TIMED_OUT)).label("timed_out"),
        func.count().filter(_is(TRANSFERRED)).label("transferred_out"),
        func.coalesce(func.sum(wait).filter(_is(CONNECTED)), 0.0).label("wait_s_total"),
        func.count().filter(_is(COMPLETED)).label("completed"),
        func.coalesce(func.sum(work).filter(_is(COMPLETED)), 0.0).label("work_s_total"),
    ]


async def tallies(
    session: AsyncSession,
    *,
    bounds: Sequence[datetime],
    queue_ids: Collection[int] | None = None,
) -> dict[tuple[int, int], Tally]:
    """What the log says about each queue in each bucket ``[bounds[i-1], bounds[i])``, keyed
    ``(queue_id, i)`` (i from 1); a queue and bucket with no event has no entry. One
    aggregate over the index on ``(type, at)``; ``bounds`` ascending."""
    if len(bounds) < 2 or bounds[0] >= bounds[-1]:
        return {}
    edges = bindparam("edges", list(bounds), type_=ARRAY(DateTime(timezone=True)))
    bucket = func.width_bucket(Event.at, edges, type_=Integer).label("bucket")
    queue_id = cast(_field(ContactPayload, "queue_id").astext, BigInteger)
    stmt = (
        select(Queue.id, bucket, *_tally_columns())
        .select_from(Event)
        .join(Queue, Queue.id == queue_id)
        .where(Event.type.in_(TALLIED), Event.at >= bounds[0], Event.at < bounds[-1])
        .group_by(Queue.id, bucket)
    )
    if queue_ids is not None:
        stmt = stmt.where(Queue.id.in_(list(queue_ids)))
    rows = (await session.execute(stmt)).all()
    return {(row[0], row[1]): Tally(*row[2:]) for row in rows}


# --- now: waiting contacts and agents -----------------------------------------------------


async def waiting(
    session: AsyncSession, queue_ids: Collection[int] | None = None
) -> dict[int, tuple[int, datetime | None]]:
    """Per queue with contacts waiting (queued or ringing): how many, and the oldest one's
    original enqueue time."""
    stmt = (
        select(Contact.queue_id, func.count(), func.min(Contact.enqueued_at))
        .where(Contact.status.in_([s.value for s in WAITING]))
        .group_by(Contact.queue_id)
    )
    if queue_ids is not None:
        stmt = stmt.where(Contact.queue_id.in_(list(queue_ids)))
    return {row[0]: (int(row[1]), row[2]) for row in (await session.execute(stmt)).all()}


async def agent_profiles(session: AsyncSession) -> list[AgentProfile]:
    """Active agents with capacity on a channel, counted by status, state, reason, channels
    and skills (agents alike are one row, however many)."""
    channels = (
        select(func.array_agg(aggregate_order_by(AgentChannel.channel, AgentChannel.channel)))
        .where(AgentChannel.agent_id == Agent.id, AgentChannel.capacity > 0)
        .scalar_subquery()
    )
    skills = (
        select(func.jsonb_object_agg(Skill.name, AgentSkill.level))
        .select_from(AgentSkill)
        .join(Skill, Skill.id == AgentSkill.skill_id)
        .where(AgentSkill.agent_id == Agent.id)
        .scalar_subquery()
    )
    empty = cast(literal("{}"), JSONB)
    each = select(
        Agent.status,
        Agent.state,
        Agent.status_reason,
        channels.label("channels"),
        func.coalesce(skills, empty).label("skills"),
    ).where(Agent.active.is_(True))
    alike = each.subquery()
    stmt = select(*alike.c, func.count()).where(alike.c.channels.is_not(None)).group_by(*alike.c)
    return [
        AgentProfile(
            status=row[0],
            state=row[1],
            reason=row[2],
            channels=frozenset(row[3]),
            skills=row[4],
            count=int(row[5]),
        )
        for row in (await session.execute(stmt)).all()
    ]


def needs_of(queue: Queue) -> Needs:
    """An agent of the queue has capacity on one of its channels and its last step's skills."""
    last_step: list[dict[str, Any]] = queue.steps[-1]["skills"] if queue.steps else []
    return Needs(
        channels=frozenset(queue.channels),
        skills=tuple((req["skill"], int(req.get("min_level", 1))) for req in last_step),
    )


def policy_of(queue: Queue) -> Policy:
    return Policy(
        threshold_s=queue.sl_threshold_s,
        target_pct=queue.sl_target_pct,
        counts_abandons=queue.sl_counts_abandons,
        short_abandon_s=queue.short_abandon_s,
    )


# --- one queue: GET /queues/{id}/stats -----------------------------------------------------


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
    ids = [queue.id]
    count, oldest = (await waiting(session, ids)).get(queue.id, (0, None))
    live = live_of(count, oldest, await agent_profiles(session), needs_of(queue))
    found = await tallies(session, bounds=[span.start, span.end], queue_ids=ids)
    return compute(
        queue_id=queue.id,
        queue_name=queue.name,
        policy=policy_of(queue),
        span=span,
        live=live,
        tally=found.get((queue.id, 1), Tally()),
        now=now,
    )


# --- every queue: the wallboard ------------------------------------------------------------

SETTLE: Final = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class DayCache:
    """The day's tallies by queue over ``[start, until)``, read with these thresholds."""

    start: datetime
    until: datetime
    thresholds: Mapping[int, float]
    tallies: Mapping[int, Tally]


def settled_until(now: datetime, day_start: datetime, length: timedelta) -> datetime:
    """The last interval boundary of the day that passed at least ``SETTLE`` ago (or the
    day's start)."""
    ripe = now - SETTLE
    if ripe <= day_start:
        return day_start
    return ripe - (ripe - day_start) % length


async def _day_cache(
    session: AsyncSession,
    cache: DayCache | None,
    *,
    start: datetime,
    until: datetime,
    thresholds: Mapping[int, float],
) -> DayCache:
    if cache is not None and (cache.start, cache.until, cache.thresholds) == (
        start,
        until,
        thresholds,
    ):
        return cache
    found = await tallies(session, bounds=[start, until])
    return DayCache(start, until, dict(thresholds), {q: t for (q, _), t in found.items()})


async def board(
    session: AsyncSession,
    *,
    interval: Interval,
    zone: ZoneInfo,
    cache: DayCache | None = None,
    now: datetime | None = None,
) -> tuple[Board, DayCache]:
    """Every queue's figures over the current interval and the day, and the centre's; with
    the day's cache to pass back next time. ``now`` is the database's clock unless given."""
    if now is None:
        now = await db_now(session)
    queues = list(await session.scalars(select(Queue).order_by(Queue.name)))
    day_start = zone_day_start(now, zone)
    current = zone_aligned_start(now, LENGTHS[interval], zone)
    thresholds = {q.id: q.sl_threshold_s for q in queues}
    until = settled_until(now, day_start, LENGTHS[interval])
    cache = await _day_cache(session, cache, start=day_start, until=until, thresholds=thresholds)
    bounds = [until, current, now] if until < current else [current, now]
    tail = await tallies(session, bounds=bounds)
    last = len(bounds) - 1
    day = {q: cache.tallies.get(q, Tally()) for q in thresholds}
    for (q, _), tally in tail.items():
        day[q] = day.get(q, Tally()).plus(tally)
    spans = Spans(
        interval=Window(interval, current, now),
        day=Window(Interval.d1, day_start, now),
        interval_tallies={q: t for (q, i), t in tail.items() if i == last},
        day_tallies=day,
    )
    waits = await waiting(session)
    facts = [
        QueueFacts(q.id, q.name, policy_of(q), needs_of(q), *waits.get(q.id, (0, None)))
        for q in queues
    ]
    profiles = await agent_profiles(session)
    return board_of(queues=facts, profiles=profiles, spans=spans, now=now, zone=zone.key), cache
