"""The queue and agent reports: what they read from the event log.

Theory of operation
-------------------

Both reports read the log over ``[from, to)``, grouped by time bucket with
``width_bucket(at, bounds)`` (the bounds from ``report_figures.bucket_bounds``), each in a
few statements, and leave every figure to ``app.routing.report_figures``:

- **queues**: ``stats.tallies``, the very aggregate the queue statistics and the wallboard
  read, for every queue (or the one asked for);
- **agents**: one aggregate of the offer events (made, accepted, rejected, expired,
  rescinded) and the completed contacts (handle and wrap-up times) by agent and bucket, named
  by the ``agent_id`` of their declared payloads; and the agents' status changes in the range
  for the time available. The status an agent had at ``from`` is the ``previous`` of its first
  change at or after ``from`` (its status now, when it has not changed since), so nothing
  before ``from`` is read.

Which agents: a supervisor's report covers the agents of their site (as the agents are
now), an admin's every agent. Queues have no site: every supervisor sees every queue.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Float,
    Integer,
    bindparam,
    cast,
    func,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.events import AgentEventType, StatusChanged
from app.agents.models import Agent
from app.errors import InvalidInput
from app.events.models import Event
from app.routing import stats
from app.routing.events import Completed, ContactEventType, OfferEventType, OfferPayload
from app.routing.figures import Interval
from app.routing.models import Queue
from app.routing.report_figures import (
    AgentInfo,
    AgentRow,
    AgentTally,
    QueueInfo,
    QueueRow,
    Range,
    RangeProblem,
    agent_rows,
    available_seconds,
    bucket_bounds,
    queue_rows,
    report_range,
)

ALL_SITES: Final = None
_O, _C = OfferEventType, ContactEventType


def zone(name: str) -> ZoneInfo:
    """The report's zone; an unknown one is a 422 naming ``tz``."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidInput(f"tz: {name!r} is not an IANA time zone", field="tz") from exc


def range_of(
    *,
    start: datetime | None,
    end: datetime | None,
    interval: Interval,
    tz: ZoneInfo,
    now: datetime,
) -> Range:
    """The report's range (``InvalidInput`` naming the parameter when it cannot be)."""
    try:
        return report_range(start=start, end=end, interval=interval, zone=tz, now=now)
    except RangeProblem as exc:
        raise InvalidInput(exc.detail, field=exc.field) from exc


def _field(payload: type[Any], key: str) -> ColumnElement[Any]:
    """A key of a declared payload in the event's data (a key the type lacks is a bug)."""
    assert key in payload.__required_keys__, f"{payload.__name__} has no {key!r}"
    return Event.data[key]


def _bucket(bounds: Sequence[datetime]) -> ColumnElement[int]:
    edges = bindparam("edges", list(bounds), type_=ARRAY(DateTime(timezone=True)))
    return func.width_bucket(Event.at, edges, type_=Integer)


# --- queues ---------------------------------------------------------------------------------


async def queue_report(
    session: AsyncSession, *, span: Range, queue_id: int | None = None
) -> tuple[list[datetime], list[QueueRow]]:
    """The bounds of the buckets, and one row per queue and bucket with any contact event."""
    bounds = bucket_bounds(span)
    stmt = select(Queue).order_by(Queue.name)
    if queue_id is not None:
        stmt = stmt.where(Queue.id == queue_id)
    queues = [QueueInfo(q.id, q.name, stats.policy_of(q)) for q in await session.scalars(stmt)]
    ids = None if queue_id is None else [queue_id]
    found = await stats.tallies(session, bounds=bounds, queue_ids=ids)
    return bounds, queue_rows(bounds, queues, found)


# --- agents ---------------------------------------------------------------------------------


def _agents_in(sites: Collection[str | None] | None, agent_id: int | None) -> list[Any]:
    conditions: list[Any] = [true()]
    if sites is not ALL_SITES:
        conditions.append(Agent.site.in_([s for s in sites if s is not None]))
    if agent_id is not None:
        conditions.append(Agent.id == agent_id)
    return conditions


def _agent_of_event(payload: type[Any]) -> ColumnElement[int]:
    return cast(_field(payload, "agent_id").astext, BigInteger)


OUTCOMES: Final = {
    "offers": _O.CREATED,
    "accepted": _O.ACCEPTED,
    "rejected": _O.REJECTED,
    "missed": _O.EXPIRED,
    "rescinded": _O.RESCINDED,
    "handled": _C.COMPLETED,
}
AGENT_EVENTS: Final = tuple(OUTCOMES.values())


async def _agent_tallies(
    session: AsyncSession, bounds: Sequence[datetime], scope: list[Any]
) -> dict[tuple[int, int], AgentTally]:
    bucket = _bucket(bounds).label("bucket")
    done = Event.type == _C.COMPLETED

    def total(key: str) -> ColumnElement[float]:
        value = cast(_field(Completed, key).astext, Float)
        return func.coalesce(func.sum(value).filter(done), 0.0).label(key)

    stmt = (
        select(
            Agent.id.label("agent_id"),
            bucket,
            *(func.count().filter(Event.type == t).label(k) for k, t in OUTCOMES.items()),
            total("handle_s"),
            total("wrap_up_s"),
        )
        .select_from(Event)
        .join(Agent, Agent.id == _agent_of_event(OfferPayload))  # contacts carry it too
        .where(Event.type.in_(AGENT_EVENTS), Event.at >= bounds[0], Event.at < bounds[-1])
        .where(*scope)
        .group_by(Agent.id, bucket)
    )
    found: dict[tuple[int, int], AgentTally] = {}
    for row in (await session.execute(stmt)).mappings():
        values = dict(row)
        key = (values.pop("agent_id"), values.pop("bucket"))
        found[key] = AgentTally(**values)
    return found


async def _status_changes(
    session: AsyncSession, span: Range, scope: list[Any]
) -> tuple[dict[int, list[tuple[datetime, str]]], dict[int, str]]:
    """Each agent's status changes in the range, and the status each had at ``from`` when
    known from a change (the ``previous`` of its first change at or after ``from``)."""
    agent_id = _agent_of_event(StatusChanged)
    status, previous = _field(StatusChanged, "status"), _field(StatusChanged, "previous")
    changed = Event.type == AgentEventType.STATUS_CHANGED
    inside = (
        select(Agent.id, Event.at, status.astext, previous.astext)
        .select_from(Event)
        .join(Agent, Agent.id == agent_id)
        .where(changed, Event.at >= span.start, Event.at < span.end, *scope)
        .order_by(Agent.id, Event.at, Event.id)
    )
    changes: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
    initial: dict[int, str] = {}
    for row in (await session.execute(inside)).all():
        initial.setdefault(row[0], row[3])
        changes[row[0]].append((row[1], row[2]))
    later = (
        select(Agent.id, previous.astext)
        .select_from(Event)
        .join(Agent, Agent.id == agent_id)
        .where(changed, Event.at >= span.end, *scope)
        .order_by(Agent.id, Event.at, Event.id)
        .ext(distinct_on(Agent.id))
    )
    for row in (await session.execute(later)).all():
        initial.setdefault(row[0], row[1])
    return changes, initial


async def agent_report(
    session: AsyncSession,
    *,
    span: Range,
    sites: Collection[str | None] | None = ALL_SITES,
    agent_id: int | None = None,
) -> tuple[list[datetime], list[AgentRow]]:
    """The bounds of the buckets, and one row per agent (of ``sites``, every site when
    ``ALL_SITES``) and bucket with an offer, a contact or time available."""
    bounds = bucket_bounds(span)
    scope = _agents_in(sites, agent_id)
    agents = (
        await session.execute(
            select(Agent.id, Agent.name, Agent.site, Agent.status)
            .where(*scope)
            .order_by(Agent.name, Agent.id)
        )
    ).all()
    changes, initial = await _status_changes(session, span, scope)
    available = {
        a.id: available_seconds(bounds, initial.get(a.id, a.status), changes.get(a.id, ()))
        for a in agents
    }
    tallies = await _agent_tallies(session, bounds, scope)
    infos = [AgentInfo(a.id, a.name, a.site) for a in agents]
    return bounds, agent_rows(bounds, infos, tallies, available)
