"""Live figures for the wallboards: computed once per instance, pushed to every wallboard.

Theory of operation
-------------------

A wallboard that asks for live figures (``/ws/wallboard?figures=1``) follows this
instance's ``FiguresFeed`` as a ``Follower``. While at least one follows, one task
computes the figures and hands them to every follower; with none, nothing is computed (the
task stops with the last follower, as the revocation watch does).

A computation is one read-only unit of work:

- ``app.routing.stats.board``: every queue's figures over the current interval and the day,
  and the centre's, from the same functions as ``GET /queues/{id}/stats`` (the event log's
  tallies, the waiting contacts, the agent profiles). It keeps the day's tally up to a settled
  boundary between computations (``DayCache``), so a computation reads only the last
  minutes of the log;
- ``app.complaints.wallboard``: the complaints due today, at risk and breached, once per
  *scope* followed (every complaint for admins, one site's for its supervisors), at the desk's
  time (``app.state.complaint_clock`` when set, as the desk's routes).

Each result is encoded to its websocket frame once (``queue.stats`` for everyone, one
``complaints.counts`` per scope) and the same text goes to every follower of it.

**When.** Every ``wallboard_figures_s`` (1 s) at least, and soon after a change: the hub hands
the feed every batch of events it reads, and an event about contacts, offers, agents, queues
or complaints wakes the task. Wake-ups are coalesced: a computation starts at least
``MIN_GAP_S`` (0.2 s) after the previous one started, so a busy centre costs at most five
computations a second per instance, however many events and wallboards.

**Slow sockets never queue figures.** A follower holds only the latest frame of each type;
its socket's pusher sends what is there when it gets to it, so a slow wallboard skips
figures instead of piling them up, and never delays the computation or another socket.

Decisions, and why
------------------

- **Asked for, not imposed**: a wallboard client written for the event stream alone keeps
  receiving exactly that; ``?figures=1`` adds the frames (``ON_BY_DEFAULT``).
- **Figures carry no cursor**: they are a state, not an event; a reconnecting wallboard gets
  a fresh frame within a second, so they are never replayed by ``resume``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.agents.permissions import Principal
from app.complaints import wallboard
from app.complaints.service import Desk
from app.complaints.wallboard import Counter, Scope
from app.config import Settings
from app.db import OutageLog, unit_of_work
from app.errors import InvalidInput
from app.events.log import LoggedEvent
from app.realtime import actions
from app.realtime.hub import EventHub
from app.routing import stats
from app.routing.figures import Interval
from app.routing.stats import DayCache
from app.waiting import wait_for_wake

log = logging.getLogger(__name__)

MIN_GAP_S: Final = 0.2
ON_BY_DEFAULT: Final = False
WAKING: Final = ("contact.", "offer.", "agent.", "queue.", "complaint.")
QUEUE_STATS, COMPLAINT_COUNTS = "queue.stats", "complaints.counts"
_YES, _NO = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off", ""})

Send = Callable[[str], Awaitable[None]]


def frame(kind: str, body: dict[str, Any]) -> str:
    return json.dumps({"type": kind, **body}, separators=(",", ":"), ensure_ascii=False)


def wakes(events: Sequence[LoggedEvent]) -> bool:
    """Whether any of ``events`` may change the figures."""
    return any(event.type.startswith(WAKING) for event in events)


# --- followers ---------------------------------------------------------------------------------


class Follower:
    """One wallboard's view of the feed: the latest frame of each type, until taken."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.fresh = asyncio.Event()
        self._frames: dict[str, str] = {}

    def put(self, kind: str, text: str) -> None:
        self._frames[kind] = text
        self.fresh.set()

    def take(self) -> list[str]:
        """The frames not yet taken (queue figures first); clears ``fresh``."""
        self.fresh.clear()
        frames = [self._frames.pop(k) for k in (QUEUE_STATS, COMPLAINT_COUNTS) if k in self._frames]
        return frames


# --- the feed ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frames:
    """One computation's frames: the queues', and the complaints' by scope."""

    queues: str
    complaints: dict[Scope, str]


class FiguresFeed:
    """Computes the live figures while wallboards follow them, and hands them out."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        desk_now: Callable[[], datetime],
        desk: Callable[[], Desk],
    ) -> None:
        self._sessionmaker = sessionmaker
        self._period_s = settings.wallboard_figures_s
        self._interval = Interval(settings.wallboard_interval)
        self._zone = ZoneInfo(settings.centre_zone)
        self._limit = settings.wallboard_at_risk_list
        self._desk_now, self._desk = desk_now, desk
        self._followers: set[Follower] = set()
        self._counters: dict[Scope, Counter] = {}
        self._day: DayCache | None = None
        self._last: Frames | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._outage = OutageLog(log, "wallboard figures")
        self.hub: EventHub | None = None
        self.computed = 0  # computations made (for tests and metrics)

    def __len__(self) -> int:
        return len(self._followers)

    @property
    def running(self) -> bool:
        """Whether the computing task runs (only while someone follows)."""
        return self._task is not None

    def follow(self, hub: EventHub) -> None:
        """Be woken by the events ``hub`` reads from now on."""
        self.hub = hub
        hub.add_listener(self.on_events)

    def on_events(self, events: Sequence[LoggedEvent]) -> None:
        if self._followers and wakes(events):
            self._wake.set()

    @contextlib.contextmanager
    def open(self, scope: Scope) -> Iterator[Follower]:
        """A follower of the figures of ``scope`` while the block runs."""
        follower = Follower(scope)
        self._followers.add(follower)
        if self._last is not None and scope in self._last.complaints:
            self._hand(follower, self._last)  # the latest at once; fresher ones follow
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="wallboard-figures")
        try:
            yield follower
        finally:
            self._followers.discard(follower)
            if not self._followers and self._task is not None:
                self._task.cancel()
                self._task, self._last = None, None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            self._wake.clear()
            await self._tick()
            woken = await wait_for_wake(self._wake, max(started + self._period_s - loop.time(), 0))
            gap = started + MIN_GAP_S - loop.time()
            if woken and gap > 0:
                await asyncio.sleep(gap)  # coalesce a burst of changes into one computation

    async def _tick(self) -> None:
        try:
            frames = await self.compute({f.scope for f in self._followers})
        except Exception as exc:
            self._outage.failed(exc, "wallboard figures not computed; retrying")
            return
        self._outage.ok()
        self._last = frames
        for follower in tuple(self._followers):
            self._hand(follower, frames)

    @staticmethod
    def _hand(follower: Follower, frames: Frames) -> None:
        follower.put(QUEUE_STATS, frames.queues)
        text = frames.complaints.get(follower.scope)
        if text is not None:
            follower.put(COMPLAINT_COUNTS, text)

    async def compute(self, scopes: set[Scope]) -> Frames:
        """The frames of every queue and of each scope's complaints, computed once."""
        self._counters = {s: self._counters.get(s) or Counter() for s in scopes}
        async with unit_of_work(self._sessionmaker) as session:
            board, self._day = await stats.board(
                session, interval=self._interval, zone=self._zone, cache=self._day
            )
            now, desk = self._desk_now(), self._desk()
            complaints = {
                scope: await counter.counts(
                    session, now=now, scope=scope, zone=self._zone, desk=desk, limit=self._limit
                )
                for scope, counter in self._counters.items()
            }
        self.computed += 1
        return Frames(
            queues=frame(QUEUE_STATS, board.model_dump(mode="json", by_alias=True)),
            complaints={
                s: frame(COMPLAINT_COUNTS, c.model_dump(mode="json")) for s, c in complaints.items()
            },
        )


def feed_of(state: Any) -> FiguresFeed:
    """The app's feed (``state`` is ``app.state``): made on first use, following its hub."""
    feed: FiguresFeed | None = getattr(state, "figures_feed", None)
    if feed is None or feed.hub is not state.hub:
        feed = FiguresFeed(
            state.sessionmaker,
            state.settings,
            desk_now=lambda: _desk_now(state),
            desk=lambda: state.complaint_desk,
        )
        feed.follow(state.hub)
        state.figures_feed = feed
    return feed


def _desk_now(state: Any) -> datetime:
    clock: Callable[[], datetime] | None = getattr(state, "complaint_clock", None)
    return clock() if clock is not None else datetime.now(UTC)


# --- one wallboard socket ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ask:
    """What a wallboard socket asked for: ``figures`` as its URL gave it, and who it is."""

    figures: str | None
    scope: Scope


def ask(figures: str | None, principal: Principal) -> Ask:
    """A wallboard's request, from its ``?figures=`` and its signed-in user."""
    return Ask(figures=figures, scope=wallboard.scope_of(principal))


def wanted(value: str | None) -> bool:
    """Whether ``?figures=`` asks for the figures; ``InvalidInput`` for a value that is
    neither yes nor no."""
    if value is None:
        return ON_BY_DEFAULT
    text = value.strip().lower()
    if text in _YES or text in _NO:
        return text in _YES
    raise InvalidInput(f"figures: expected 1 or 0, not {value[:20]!r}", field="figures")


async def alongside(
    serve: Callable[[], Awaitable[None]], send: Send, state: Any, request: Ask
) -> None:
    """Run ``serve`` (the socket's stream), pushing the live figures beside it if asked."""
    try:
        on = wanted(request.figures)
    except InvalidInput as exc:
        await send(actions.refusal_text(exc))  # the shape of every error frame
        on = False
    if not on:
        await serve()
        return
    with feed_of(state).open(request.scope) as follower:
        pusher = asyncio.create_task(push(follower, send), name="ws-figures")
        try:
            await serve()
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher


async def push(follower: Follower, send: Send) -> None:
    """Send the follower's frames as they come; a socket that fails to send ends it (the
    stream ends the socket)."""
    try:
        while True:
            await follower.fresh.wait()
            for text in follower.take():
                await send(text)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.debug("wallboard figures no longer sent", exc_info=True)
