"""Live figures on ``/ws/wallboard?figures=1``: a real server, real websockets.

A scripted scenario (contacts created, offered, accepted, completed, abandoned, left waiting)
runs through the API; the pushed ``queue.stats`` frame must equal figures this test computes
on its own from the contacts as the API shows them (their timestamps, not the event log).
The figures survive a restart (a new app on the same database pushes the same day), follow a
change within moments (the periodic push is set far away, so only the change can bring the
frame in time), and are computed once per instance however many wallboards follow them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from websockets.asyncio.client import ClientConnection, connect

from app.config import Settings
from app.db import db_now, unit_of_work
from app.events.log import record
from app.main import create_app
from app.realtime.figures_feed import FiguresFeed
from app.routing import stats
from app.routing.figures import Interval, zone_aligned_start, zone_day_start
from app.routing.stats import DayCache, settled_until
from tests.conftest import make_settings
from tests.fixtures.desk_clock import freeze_desk
from tests.fixtures.factories import ADMIN_PASSWORD, Api, expect
from tests.fixtures.polling import eventually
from tests.realtime.test_ws import HANDSHAKE_S, serving, token_of
from tests.routing.acd import available_agent, contact, offer_for, queue

WITHIN_S = 10.0
ZONE = ZoneInfo("Asia/Shanghai")  # the settings' centre zone
SL_20S = {"threshold_s": 20, "target_pct": 80, "counts_abandons": True, "short_abandon_s": 5}


# --- a running app, and a wallboard ------------------------------------------------------------


@dataclass
class Running:
    app: FastAPI
    api: Api
    base: str  # ws:// URL


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Running]:
    """An app with its lifespan, served on a real port, and the admin signed in."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http,
        serving(app) as base,
    ):
        yield Running(app, await Api.signed_in(http, "admin", ADMIN_PASSWORD), base)


@dataclass
class Board:
    """A wallboard socket that reads frames within a deadline."""

    conn: ClientConnection

    async def next(self, within: float = WITHIN_S) -> dict[str, Any]:
        async with asyncio.timeout(within):
            message: dict[str, Any] = json.loads(await self.conn.recv())
        return message

    async def frame(
        self,
        kind: str,
        matching: Callable[[dict[str, Any]], bool] = lambda _: True,
        within: float = WITHIN_S,
    ) -> dict[str, Any]:
        """The next frame of ``kind`` that satisfies ``matching`` (everything else skipped)."""
        async with asyncio.timeout(within):
            while True:
                message = await self.next(within)
                if message["type"] == kind and matching(message):
                    return message


@asynccontextmanager
async def wallboard(base: str, api: Api, figures: str | None = "1") -> AsyncIterator[Board]:
    query = f"?token={token_of(api)}" + ("" if figures is None else f"&figures={figures}")
    async with connect(f"{base}/ws/wallboard{query}", open_timeout=HANDSHAKE_S) as conn:
        board = Board(conn)
        assert (await board.next())["type"] == "snapshot"
        yield board


def settings_for(db: str, **overrides: object) -> Settings:
    return make_settings(db, **overrides)


# --- the scenario, and the figures computed from it ----------------------------------------


def moment(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


async def answered_and_completed(api: Api, console: Api, queue_name: str) -> None:
    created = await contact(api, queue_name)
    offer = await offer_for(console, created["id"])
    expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
    expect(await console.post(f"/api/v1/contacts/{created['id']}/complete", {}), 200)


async def abandoned(api: Api, queue_name: str) -> None:
    created = await contact(api, queue_name)
    expect(await api.post(f"/api/v1/contacts/{created['id']}/abandon"), 200)


@dataclass
class Scenario:
    cards: dict[str, Any]  # the queue with two answered, two abandoned and one waiting
    loans: dict[str, Any]  # one answered, one waiting
    agent_id: int


async def script(api: Api) -> Scenario:
    """Cards: 2 answered, 1 short and 1 long abandon, 1 waiting. Loans: 1 answered, 1
    waiting. One agent serves both and ends away for lunch."""
    cards = await queue(api, service_level=SL_20S)
    loans = await queue(api, service_level={**SL_20S, "threshold_s": 30})
    console = await available_agent(api)
    for _ in range(2):
        await answered_and_completed(api, console, cards["name"])
    await answered_and_completed(api, console, loans["name"])
    away = {"status": "away", "reason": "lunch"}
    expect(await console.post(f"/api/v1/agents/{console.me['id']}/status", away), 200)
    await abandoned(api, cards["name"])
    patch = {"service_level": {**SL_20S, "short_abandon_s": 0}}
    expect(await api.patch(f"/api/v1/queues/{cards['id']}", patch), 200)
    await abandoned(api, cards["name"])
    await contact(api, cards["name"])
    await contact(api, loans["name"])
    return Scenario(cards, loans, console.me["id"])


async def contacts_of(api: Api) -> list[dict[str, Any]]:
    """Every contact, as the API shows it (ids are dense from 1 in a fresh database)."""
    found: list[dict[str, Any]] = []
    contact_id = 1
    while (response := await api.get(f"/api/v1/contacts/{contact_id}")).status_code == 200:
        found.append(response.json())
        contact_id += 1
    return found


@dataclass
class Expected:
    """Figures over one span, computed from the contacts' own timestamps."""

    offered: int = 0
    answered: int = 0
    within: int = 0
    abandoned: int = 0
    short: int = 0
    waits: float = 0.0
    completed: int = 0
    work: float = 0.0

    @classmethod
    def of(
        cls, contacts: list[dict[str, Any]], threshold_s: float, start: datetime, end: datetime
    ) -> Expected:
        def inside(value: str | None) -> bool:
            at = moment(value)
            return at is not None and start <= at < end

        e = cls()
        for c in contacts:
            enqueued, answered, ended = (
                moment(c[k]) for k in ("enqueued_at", "answered_at", "ended_at")
            )
            e.offered += inside(c["enqueued_at"])
            if answered is not None and enqueued is not None and inside(c["answered_at"]):
                wait = (answered - enqueued).total_seconds()
                e.answered, e.waits = e.answered + 1, e.waits + wait
                e.within += wait <= threshold_s
            if c["status"] == "abandoned" and inside(c["ended_at"]):
                e.abandoned, e.short = e.abandoned + 1, e.short + bool(c["short_abandon"])
            if c["status"] == "completed" and inside(c["ended_at"]) and answered and ended:
                e.completed, e.work = e.completed + 1, e.work + (ended - answered).total_seconds()
        return e

    def plus(self, other: Expected) -> Expected:
        return Expected(
            *(a + b for a, b in zip(vars(self).values(), vars(other).values(), strict=True))
        )

    @property
    def sl_parts(self) -> tuple[int, int]:
        return self.within, self.answered + self.abandoned - self.short


def pct(part: float, whole: float) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def check(figures: dict[str, Any], e: Expected, sl_parts: tuple[int, int]) -> None:
    """The pushed figures of one span against the test's own."""
    counts = ("offered", "answered", "abandoned", "short_abandoned")
    assert [figures[k] for k in counts] == [e.offered, e.answered, e.abandoned, e.short]
    assert figures["service_level_pct"] == pct(*sl_parts)
    assert figures["abandon_rate_pct"] == pct(e.abandoned - e.short, e.offered - e.short)
    asa = e.waits / e.answered if e.answered else None
    aht = e.work / e.completed if e.completed else None
    for key, value in (("asa_s", asa), ("aht_s", aht)):
        assert (figures[key] is None) == (value is None)
        if value is not None:
            assert figures[key] == pytest.approx(value, abs=0.003)


def span(figures: dict[str, Any]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(figures["from"]), datetime.fromisoformat(figures["to"])


def check_board(frame: dict[str, Any], contacts: list[dict[str, Any]], s: Scenario) -> None:
    """Every queue's interval and day, and the centre's, against the test's own figures."""
    queues = {q["queue_id"]: q for q in frame["queues"]}
    thresholds = {s.cards["id"]: 20.0, s.loans["id"]: 30.0}
    for name in ("interval", "day"):
        total, parts = Expected(), (0, 0)
        for queue_id, threshold in thresholds.items():
            figures = queues[queue_id][name]
            mine = [c for c in contacts if c["queue_id"] == queue_id]
            e = Expected.of(mine, threshold, *span(figures))
            check(figures, e, e.sl_parts)
            total = total.plus(e)
            parts = (parts[0] + e.sl_parts[0], parts[1] + e.sl_parts[1])
        check(frame["overall"][name], total, parts)  # Σ within / Σ denominators
    waiting = [c for c in contacts if c["status"] in ("queued", "offered")]
    live = frame["overall"]["live"]
    oldest = min(datetime.fromisoformat(c["enqueued_at"]) for c in waiting)
    at = datetime.fromisoformat(frame["at"])
    assert live["waiting"] == len(waiting) == 2
    assert live["longest_wait_s"] == pytest.approx((at - oldest).total_seconds(), abs=0.002)
    assert live["agents"]["total"] == 1  # serves both queues, counted once
    assert live["agents"]["by_status"] == {"available": 0, "away": 1, "offline": 0}
    assert live["agents"]["away_reasons"] == {"lunch": 1}
    for q in (s.cards, s.loans):
        assert queues[q["id"]]["live"]["waiting"] == 1
        assert queues[q["id"]]["live"]["agents"]["away_reasons"] == {"lunch": 1}


def settled(s: Scenario) -> Callable[[dict[str, Any]], bool]:
    """A frame that shows the whole scenario (both waiting contacts, 7 offered today)."""

    def test(frame: dict[str, Any]) -> bool:
        overall = frame["overall"]
        return bool(overall["live"]["waiting"] == 2 and overall["day"]["offered"] == 7)

    return test


# --- tests ----------------------------------------------------------------------------------------


class TestFiguresFromTheScenario:
    async def test_pushed_figures_equal_the_scenarios_and_survive_a_restart(self, db: str) -> None:
        settings = settings_for(db)
        async with running(settings) as first:
            s = await script(first.api)
            contacts = await contacts_of(first.api)
            async with wallboard(first.base, first.api) as board:
                before = await board.frame("queue.stats", settled(s))
            check_board(before, contacts, s)
            day_before = before["overall"]["day"]
        # A new app on the same database: nothing of the first one's memory is left.
        async with running(settings) as second:
            async with wallboard(second.base, second.api) as board:
                after = await board.frame("queue.stats", settled(s))
            check_board(after, await contacts_of(second.api), s)
            same = ("offered", "answered", "abandoned", "short_abandoned", "service_level_pct")
            if after["overall"]["day"]["from"] == day_before["from"]:  # not past midnight
                assert [after["overall"]["day"][k] for k in same] == [day_before[k] for k in same]

    async def test_overall_service_level_is_a_sum_not_an_average_of_percentages(
        self, db: str
    ) -> None:
        async with running(settings_for(db)) as r:
            s = await script(r.api)
            async with wallboard(r.base, r.api) as board:
                frame = await board.frame("queue.stats", settled(s))
        by_id = {q["queue_id"]: q["day"] for q in frame["queues"]}
        cards, loans = by_id[s.cards["id"]], by_id[s.loans["id"]]
        assert (cards["service_level_pct"], loans["service_level_pct"]) == (66.7, 100.0)
        assert frame["overall"]["day"]["service_level_pct"] == 75.0  # 3 / (3 + 1), not 83.3
        assert frame["overall"]["day"]["erlang_agents_needed"] == (
            cards["erlang_agents_needed"] + loans["erlang_agents_needed"]
        )


class TestWhenFiguresArePushed:
    async def test_a_change_is_pushed_promptly_not_at_the_next_period(self, db: str) -> None:
        # The period is far away: only the change's wake-up can bring the frame in time.
        async with running(settings_for(db, wallboard_figures_s=60)) as r:
            q = await queue(r.api)
            async with wallboard(r.base, r.api) as board:
                await board.frame("queue.stats")  # the first, at once
                loop = asyncio.get_running_loop()
                await contact(r.api, q["name"])
                started = loop.time()

                def shows_it(frame: dict[str, Any]) -> bool:
                    return bool(frame["overall"]["live"]["waiting"] == 1)

                # Well before the period; the deadline allows for the log's feed being held
                # back by transactions open elsewhere on a shared server.
                await board.frame("queue.stats", shows_it, within=WITHIN_S)
                assert loop.time() - started < WITHIN_S

    async def test_figures_are_pushed_every_period_without_changes(self, db: str) -> None:
        async with (
            running(settings_for(db, wallboard_figures_s=0.3)) as r,
            wallboard(r.base, r.api) as board,
        ):
            first = await board.frame("queue.stats")
            second = await board.frame("queue.stats", within=3.0)
        assert datetime.fromisoformat(second["at"]) > datetime.fromisoformat(first["at"])

    async def test_one_computation_serves_every_wallboard_and_none_runs_without_one(
        self, db: str
    ) -> None:
        async with running(settings_for(db, wallboard_figures_s=0.2)) as r:
            async with (
                wallboard(r.base, r.api) as a,
                wallboard(r.base, r.api) as b,
                wallboard(r.base, r.api) as c,
            ):
                feed: FiguresFeed = r.app.state.figures_feed
                assert len(feed) == 3
                start = feed.computed
                for board in (a, b, c):
                    for _ in range(4):
                        await board.frame("queue.stats")
                # 12 frames were sent; computing per socket would have taken at least 12.
                assert feed.computed - start < 9
            await eventually(lambda: asyncio.sleep(0, result=not feed.running), what="the stop")
            stopped_at = feed.computed
            await r.api.get("/api/v1/queues")  # time passes, nobody follows
            assert feed.computed == stopped_at

    async def test_without_asking_a_wallboard_gets_only_the_stream(self, db: str) -> None:
        async with (
            running(settings_for(db, wallboard_figures_s=0.2)) as r,
            wallboard(r.base, r.api, figures=None) as board,
        ):
            await board.conn.send(json.dumps({"type": "ping"}))
            while (message := await board.next())["type"] == "event":
                pass
            assert message == {"type": "pong"}
            assert getattr(r.app.state, "figures_feed", None) is None

    async def test_a_bad_figures_value_is_an_error_naming_it(self, db: str) -> None:
        async with (
            running(settings_for(db)) as r,
            wallboard(r.base, r.api, figures="maybe") as board,
        ):
            while (message := await board.next())["type"] == "event":
                pass
        assert (message["type"], message["status"]) == ("error", 422)
        assert message["detail"].startswith("figures: ")
        assert [f["field"] for f in message["body"]["fields"]] == ["figures"]


# --- the day's cache ---------------------------------------------------------------------------


async def queued_at(app: FastAPI, queue_id: int, at: datetime) -> None:
    """A ``contact.queued`` of ``queue_id`` written straight to the log, stamped ``at``:
    only its type, time and queue count in a tally."""
    data = {
        "contact_id": 0,
        "queue_id": queue_id,
        "channel": "chat",
        "tier": "standard",
        "agent_id": None,
        "wait_s": 0.0,
        "customer_id": None,
        "parent_id": None,
    }
    async with unit_of_work(app.state.sessionmaker) as session:
        event = record(
            session, type="contact.queued", subject_type="contact", subject_id=0, data=data
        )
        event.at = at


async def day_board(
    app: FastAPI, cache: DayCache | None, now: datetime
) -> tuple[dict[str, Any], DayCache]:
    async with unit_of_work(app.state.sessionmaker) as session:
        board, kept = await stats.board(
            session, interval=Interval.m15, zone=ZONE, cache=cache, now=now
        )
    return board.model_dump(mode="json", by_alias=True), kept


def offered(board: dict[str, Any], queue_id: int, span: str) -> int:
    [found] = [q[span]["offered"] for q in board["queues"] if q["queue_id"] == queue_id]
    return int(found)


class TestDayCache:
    async def test_the_day_is_the_settled_part_kept_plus_the_rest_read_again(
        self, app: FastAPI, api: Api
    ) -> None:
        q = await queue(api)
        # One moment for every read, so that no interval boundary passes between them.
        async with unit_of_work(app.state.sessionmaker) as session:
            now = await db_now(session)
        day_start = zone_day_start(now, ZONE)
        until = settled_until(now, day_start, timedelta(minutes=15))
        if until <= day_start:
            pytest.skip("the day's first quarter hour: nothing of it has settled yet")
        current = zone_aligned_start(now, timedelta(minutes=15), ZONE)
        lately = current + (now - current) / 2  # in the current interval, before now
        await queued_at(app, q["id"], until - timedelta(seconds=1))  # settled
        await queued_at(app, q["id"], lately)
        first, kept = await day_board(app, None, now)
        assert (offered(first, q["id"], "day"), offered(first, q["id"], "interval")) == (2, 1)
        assert (kept.start, kept.until, kept.tallies[q["id"]].offered) == (day_start, until, 1)
        await queued_at(app, q["id"], lately)
        again, still = await day_board(app, kept, now)
        assert still is kept  # the settled part is not read again
        assert (offered(again, q["id"], "day"), offered(again, q["id"], "interval")) == (3, 2)
        patch = {"service_level": {**SL_20S, "threshold_s": 5}}
        expect(await api.patch(f"/api/v1/queues/{q['id']}", patch), 200)
        _, renewed = await day_board(app, kept, now)
        assert renewed is not kept  # a new threshold re-rates the whole day


# --- complaints -----------------------------------------------------------------------------------

NOW = datetime(2026, 12, 5, 18, 0, tzinfo=UTC)  # 6 December, 02:00 in Shanghai
T0 = NOW - timedelta(days=3, hours=12)


class DeskClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def complaint_body(n: int) -> dict[str, Any]:
    return {
        "channel": "web",
        "complainant": {"name": "王芳", "contact": f"wang{n}@example.com", "relation": "self"},
        "matter": {
            "occurred_at": "2026-11-28T10:00:00+08:00",
            "location": "online",
            "branch": f"branch-{n}",
            "description": f"case number {n}: charged twice",
        },
        "grounds": "one order, two charges",
        "request": "refund the second charge",
    }


async def register(api: Api, clock: DeskClock, at: datetime, n: int) -> dict[str, Any]:
    clock.now = at
    return expect(await api.post("/api/v1/complaints", complaint_body(n)), 201)  # type: ignore[no-any-return]


class TestComplaintCounts:
    async def test_due_today_at_risk_and_breached_as_the_desk_reads_the_clocks(
        self, db: str
    ) -> None:
        """Registered 3.5, 2.5 and 1.5 days before now (three-day clocks): one breached, one
        at 83 % and due at 14:00 today, one at 50 % and due tomorrow."""
        async with running(settings_for(db)) as r:
            clock = DeskClock(T0)
            freeze_desk(r.app, clock)
            late = await register(r.api, clock, T0, 1)
            risky = await register(r.api, clock, T0 + timedelta(days=1), 2)
            await register(r.api, clock, T0 + timedelta(days=2), 3)
            beijing = await r.api.agent(site="beijing")
            assign = {"assignee": beijing["id"]}
            classify = {"categories": ["payment"], "severity": "high"}
            expect(await r.api.post(f"/api/v1/complaints/{late['id']}/classify", classify), 200)
            expect(await r.api.post(f"/api/v1/complaints/{late['id']}/assign", assign), 200)
            clock.now = NOW
            boss = await r.api.signed_in_as(await r.api.supervisor(site="shanghai"))
            async with wallboard(r.base, r.api) as admin, wallboard(r.base, boss) as shanghai:
                everything = await admin.frame("complaints.counts")
                site = await shanghai.frame("complaints.counts")
        assert (everything["due_today"], everything["at_risk"], everything["breached"]) == (1, 1, 1)
        [listed] = everything["at_risk_list"]
        assert listed["reference"] == risky["reference"]
        assert listed["elapsed"] == pytest.approx(2.5 / 3, abs=1e-4)
        assert datetime.fromisoformat(listed["due_at"]) == T0 + timedelta(days=4)
        assert (listed["assignee_id"], listed["assignee"]) == (None, None)
        assert datetime.fromisoformat(everything["day_ends_at"]) == datetime(
            2026, 12, 6, 16, 0, tzinfo=UTC
        )
        # The breached complaint is a Beijing agent's: not on a Shanghai supervisor's board.
        assert (site["due_today"], site["at_risk"], site["breached"]) == (1, 1, 0)
