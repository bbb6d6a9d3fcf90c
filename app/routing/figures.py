"""The figures of a queue's statistics, from plain records: the pure core of ``stats``.

Theory of operation: ``compute`` turns what ``stats`` read (the queue's service-level
``Policy``, the ``Live`` rows, the ``Tally`` of the event log over a ``Window``) into the
response body, with every formula here. It does no I/O and reads no clock: ``now`` and the
window come in, so each formula is tested from plain records (``tests/routing/test_stats_pure.py``).
The interval is either the current aligned one (``aligned_start``: ``15m`` from the last
quarter hour in UTC, ``1d`` from midnight UTC) or an explicit one; rates are per second of
the interval so far.

The wallboard and the reports cut time in the centre's zone instead (``zone_day_start``,
``zone_aligned_start``): a day from local midnight, intervals from the local day's start.
A ``Tally`` is additive (``Tally.plus``, ``add_tallies``), so a day is the sum of its
intervals and the centre the sum of its queues. Who counts as an agent of a queue is decided
here too (``serves``): agents are read once as profiles (``AgentProfile``: agents alike in
status, state, reason, channels and skills, counted together), and each queue's ``Needs``
picks its own from them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

from app.agents.presence import State, Status
from app.routing import erlang
from app.routing.schemas import (
    AgentCounts,
    AgentsByState,
    AgentsByStatus,
    IntervalFigures,
    LiveFigures,
    QueueStats,
    ServiceLevelFigure,
)

# --- the interval -------------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class Window:
    name: Interval | None
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def aligned_start(now: datetime, length: timedelta) -> datetime:
    """The start of the interval of ``length`` that contains ``now``, aligned in UTC."""
    return now - (now - _EPOCH) % length


def zone_day_start(moment: datetime, zone: ZoneInfo) -> datetime:
    """Local midnight of the day in ``zone`` that contains ``moment`` (in UTC)."""
    local = moment.astimezone(zone)
    midnight = datetime(local.year, local.month, local.day, tzinfo=zone)
    return midnight.astimezone(UTC)


def zone_aligned_start(moment: datetime, length: timedelta, zone: ZoneInfo) -> datetime:
    """The start of the interval of ``length`` containing ``moment``, counted from local
    midnight in ``zone`` (a day's intervals are whole, whatever the zone's offset)."""
    day = zone_day_start(moment, zone)
    if length >= timedelta(days=1):
        return day
    return moment.astimezone(UTC) - (moment - day) % length


# --- the figures --------------------------------------------------------------------------


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

    def plus(self, other: Tally) -> Tally:
        """Both tallies together (every field is a count or a sum)."""
        return Tally(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(Tally)))


def add_tallies(tallies: Iterable[Tally]) -> Tally:
    total = Tally()
    for tally in tallies:
        total = total.plus(tally)
    return total


@dataclass(frozen=True, slots=True)
class Live:
    """The queue now: waiting contacts, agent counts by ``(status, state)`` and the away
    agents by reason."""

    waiting: int = 0
    oldest_enqueued_at: datetime | None = None
    agents: Mapping[tuple[str, str], int] = field(default_factory=dict)
    reasons: Mapping[str, int] = field(default_factory=dict)


# --- who is an agent of a queue -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentProfile:
    """``count`` active agents alike in everything a queue's figures look at."""

    status: str
    state: str
    reason: str | None
    channels: frozenset[str]  # the channels they have capacity on
    skills: Mapping[str, int]  # skill name -> level
    count: int


@dataclass(frozen=True, slots=True)
class Needs:
    """What makes an agent one of a queue's: capacity on one of its channels and the skills
    of its last routing step (``(skill, min_level)``; none when the queue has no steps)."""

    channels: frozenset[str]
    skills: tuple[tuple[str, int], ...] = ()


def serves(profile: AgentProfile, needs: Needs) -> bool:
    """Whether agents of ``profile`` are agents of a queue with ``needs``."""
    if profile.channels.isdisjoint(needs.channels):
        return False
    return all(profile.skills.get(skill, 0) >= level for skill, level in needs.skills)


def staff(profiles: Iterable[AgentProfile]) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """Agent counts by ``(status, state)``, and the away agents by reason (``""``: none)."""
    agents: dict[tuple[str, str], int] = {}
    reasons: dict[str, int] = {}
    for p in profiles:
        agents[(p.status, p.state)] = agents.get((p.status, p.state), 0) + p.count
        if p.status == Status.AWAY:
            reasons[p.reason or ""] = reasons.get(p.reason or "", 0) + p.count
    return agents, reasons


def live_of(
    waiting: int, oldest: datetime | None, profiles: Iterable[AgentProfile], needs: Needs
) -> Live:
    """A queue's ``Live`` record from its waiting contacts and every agent profile."""
    agents, reasons = staff(p for p in profiles if serves(p, needs))
    return Live(waiting=waiting, oldest_enqueued_at=oldest, agents=agents, reasons=reasons)


def available(agents: Mapping[tuple[str, str], int]) -> int:
    """The agents counted who are available (the staffed agents of occupancy)."""
    return sum(n for (status, _), n in agents.items() if status == Status.AVAILABLE)


def _pct(part: float, whole: float) -> float:
    return round(100 * part / whole, 1)


def _secs(value: float) -> str:
    return f"{value:g}s"


def service_level_parts(tally: Tally, policy: Policy) -> tuple[int, int]:
    """The service level's numerator and denominator: answered within the threshold, and
    answered plus the abandons the policy counts (those after the short-abandon cutoff)."""
    missed = tally.abandoned - tally.short_abandoned if policy.counts_abandons else 0
    return tally.answered_within, tally.answered + missed


def ratio_pct(part: float, whole: float) -> float | None:
    """``part / whole`` in percent (0.1 precision); None when ``whole`` is 0."""
    return _pct(part, whole) if whole else None


def service_level_pct(tally: Tally, policy: Policy) -> float | None:
    """Answered within the threshold / (answered + counted abandons), in percent."""
    return ratio_pct(*service_level_parts(tally, policy))


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
    staffed = available(live.agents)
    return QueueStats(
        queue_id=queue_id,
        queue=queue_name,
        at=now,
        live=live_figures(live, now),
        interval=interval_figures(tally, policy, span, staffed),
    )
