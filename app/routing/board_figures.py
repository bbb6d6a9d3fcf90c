"""The wallboard's figures: every queue over the current interval and the day, and the centre.

Theory of operation
-------------------

``stats.board`` reads, in one transaction, what every queue's figures need (their policies,
waiting contacts, the agent profiles, and the event log's tallies over the current interval
and over the day so far) and hands them here as plain records. Each queue's figures are the
very functions ``GET /queues/{id}/stats`` answers with (``figures.live_of``,
``figures.interval_figures``), once for the interval and once for the day; this module only
adds the away reasons and the centre as a whole (``overall``).

The centre's figures are sums, never averages of the queues' percentages:

- counts (offered, answered, abandoned, ...) are the queues' sums: a contact transferred or
  overflowed counts in each queue it entered, as it does in each queue's own figures;
- service level = Σ answered within each queue's threshold / Σ each queue's denominator
  (answered, plus the abandons after the cutoff where the queue counts them);
- ASA = Σ waits / Σ answered; AHT = Σ (handle + wrap-up) / Σ completed; abandon rate =
  Σ abandons after the cutoff / Σ (offered - short abandons);
- agents are counted once, however many queues they serve (an agent of at least one queue);
  occupancy = Σ work / (those agents available now x the interval so far);
- Erlang C agents needed: the sum of the queues' needs (each queue staffed on its own; agents
  shared between queues make this an upper bound).

Nothing here does I/O or reads a clock.

Decisions, and why
------------------

- **One body for the interval and the day.** The day is ``IntervalFigures`` named ``1d``
  over the centre's day (local midnight in its zone): a client reads both the same way.
- **Away reasons beside the counts** (``away_reasons``): the reason an agent gave (or the
  system's ``no_answer`` / ``disconnected``) is what a supervisor acts on; ``""`` counts away
  agents who gave none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from pydantic import BaseModel, Field

from app.routing.figures import (
    AgentProfile,
    Live,
    Needs,
    Policy,
    Tally,
    Window,
    abandon_rate_pct,
    add_tallies,
    agent_counts,
    agents_needed,
    available,
    interval_figures,
    live_figures,
    live_of,
    mean,
    occupancy_pct,
    ratio_pct,
    serves,
    service_level_parts,
    staff,
)
from app.routing.schemas import AgentCounts, IntervalFigures

OVERALL_FORMULA: Final = (
    "Σ answered within each queue's threshold / "
    "Σ (answered + abandons after each queue's cutoff, where the queue counts them)"
)


# --- bodies -------------------------------------------------------------------------------


class BoardAgents(AgentCounts):
    away_reasons: dict[str, int] = Field(
        description='away agents by the reason given (`""`: none given), e.g. '
        '`{"lunch": 2, "no_answer": 1}`'
    )


class BoardLive(BaseModel):
    waiting: int = Field(description="contacts queued or ringing now")
    longest_wait_s: float = Field(description="the oldest waiting contact's wait (0: none)")
    agents: BoardAgents


class QueueBoard(BaseModel):
    queue_id: int
    queue: str = Field(description="the queue's name")
    live: BoardLive
    interval: IntervalFigures = Field(description="the current interval so far")
    day: IntervalFigures = Field(description="the centre's day so far (`name`: `1d`)")


class OverallServiceLevel(BaseModel):
    pct: float | None = Field(description="null when the denominator is 0")
    formula: str


class OverallFigures(BaseModel):
    name: str | None
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    length_s: float
    offered: int
    answered: int
    abandoned: int
    short_abandoned: int
    timed_out: int
    transferred_out: int
    service_level_pct: float | None
    service_level: OverallServiceLevel
    asa_s: float | None
    aht_s: float | None
    abandon_rate_pct: float | None
    occupancy_pct: float | None
    erlang_agents_needed: int | None = Field(description="the sum of the queues' needs")


class Overall(BaseModel):
    live: BoardLive = Field(description="agents counted once, whatever queues they serve")
    interval: OverallFigures
    day: OverallFigures


class Board(BaseModel):
    at: datetime = Field(description="when the figures were read (database time)")
    zone: str = Field(description="the zone whose midnight starts the day")
    queues: list[QueueBoard] = Field(description="every queue, by name")
    overall: Overall


# --- records ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueFacts:
    """One queue as the board reads it."""

    queue_id: int
    name: str
    policy: Policy
    needs: Needs
    waiting: int = 0
    oldest_enqueued_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Spans:
    """The two spans a board shows, with the log's tally of each, by queue id."""

    interval: Window
    day: Window
    interval_tallies: Mapping[int, Tally]
    day_tallies: Mapping[int, Tally]


# --- the figures --------------------------------------------------------------------------


def board_live(live: Live, now: datetime) -> BoardLive:
    figures = live_figures(live, now)
    return BoardLive(
        waiting=figures.waiting,
        longest_wait_s=figures.longest_wait_s,
        agents=BoardAgents(
            **agent_counts(live.agents).model_dump(),
            away_reasons=dict(sorted(live.reasons.items())),
        ),
    )


def queue_board(q: QueueFacts, live: Live, spans: Spans, now: datetime) -> QueueBoard:
    staffed = available(live.agents)
    return QueueBoard(
        queue_id=q.queue_id,
        queue=q.name,
        live=board_live(live, now),
        interval=interval_figures(
            spans.interval_tallies.get(q.queue_id, Tally()), q.policy, spans.interval, staffed
        ),
        day=interval_figures(
            spans.day_tallies.get(q.queue_id, Tally()), q.policy, spans.day, staffed
        ),
    )


def overall_figures(
    queues: Sequence[QueueFacts], tallies: Mapping[int, Tally], span: Window, staffed: int
) -> OverallFigures:
    """The centre over ``span``: sums of the queues' tallies (see the module doc)."""
    per_queue = [(q.policy, tallies.get(q.queue_id, Tally())) for q in queues]
    total = add_tallies(t for _, t in per_queue)
    parts = [service_level_parts(t, p) for p, t in per_queue]
    sl = ratio_pct(sum(n for n, _ in parts), sum(d for _, d in parts))
    return OverallFigures(
        name=span.name.value if span.name is not None else None,
        start=span.start,
        end=span.end,
        length_s=round(span.seconds, 3),
        offered=total.offered,
        answered=total.answered,
        abandoned=total.abandoned,
        short_abandoned=total.short_abandoned,
        timed_out=total.timed_out,
        transferred_out=total.transferred_out,
        service_level_pct=sl,
        service_level=OverallServiceLevel(pct=sl, formula=OVERALL_FORMULA),
        asa_s=mean(total.wait_s_total, total.answered),
        aht_s=mean(total.work_s_total, total.completed),
        abandon_rate_pct=abandon_rate_pct(total),
        occupancy_pct=occupancy_pct(total.work_s_total, staffed, span.seconds),
        erlang_agents_needed=_needed(per_queue, span),
    )


def _needed(per_queue: Iterable[tuple[Policy, Tally]], span: Window) -> int | None:
    needs = [
        agents_needed(t.offered, span.seconds, mean(t.work_s_total, t.completed), p)
        for p, t in per_queue
    ]
    known = [n for n in needs if n is not None]
    return sum(known) if known else None


def overall_live(
    queues: Sequence[QueueFacts], profiles: Sequence[AgentProfile], now: datetime
) -> Live:
    """Every queue's waiting contacts; the agents of at least one queue, each counted once."""
    oldest = [q.oldest_enqueued_at for q in queues if q.oldest_enqueued_at is not None]
    agents, reasons = staff(p for p in profiles if any(serves(p, q.needs) for q in queues))
    return Live(
        waiting=sum(q.waiting for q in queues),
        oldest_enqueued_at=min(oldest) if oldest else None,
        agents=agents,
        reasons=reasons,
    )


def board(
    *,
    queues: Sequence[QueueFacts],
    profiles: Sequence[AgentProfile],
    spans: Spans,
    now: datetime,
    zone: str,
) -> Board:
    """Every queue's figures and the centre's, from plain records."""
    lives = [live_of(q.waiting, q.oldest_enqueued_at, profiles, q.needs) for q in queues]
    centre = overall_live(queues, profiles, now)
    staffed = available(centre.agents)
    return Board(
        at=now,
        zone=zone,
        queues=[queue_board(q, live, spans, now) for q, live in zip(queues, lives, strict=True)],
        overall=Overall(
            live=board_live(centre, now),
            interval=overall_figures(queues, spans.interval_tallies, spans.interval, staffed),
            day=overall_figures(queues, spans.day_tallies, spans.day, staffed),
        ),
    )
