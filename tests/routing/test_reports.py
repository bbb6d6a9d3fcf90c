"""GET /api/v1/reports/queues and /reports/agents: buckets, figures, CSV, refusals, access.

The pure core (``app.routing.report_figures``) is tested from plain records; the routes
through a scripted scenario whose report must equal figures this test computes on its own
from what the API shows of the contacts, offers and status changes (their timestamps, not
the event log).
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from app.routing.figures import Interval
from app.routing.report_figures import (
    AgentRow,
    QueueRow,
    Range,
    RangeProblem,
    available_seconds,
    bucket_bounds,
    csv_cell,
    occupancy,
    report_range,
)
from app.routing.reports_router import router as reports_router
from tests.fixtures.factories import AGENT_PASSWORD, Api, expect
from tests.routing.acd import contact, offer_for, queue

SHANGHAI, BERLIN, UTC_ZONE = ZoneInfo("Asia/Shanghai"), ZoneInfo("Europe/Berlin"), ZoneInfo("UTC")
NOW = datetime(2026, 11, 22, 10, 7, 30, tzinfo=UTC)  # 18:07:30 in Shanghai


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app, with the reports' routes mounted if it does not mount them yet."""
    application = create_app(settings)
    if not any(getattr(r, "path", "").startswith("/api/v1/reports/") for r in application.routes):
        application.include_router(reports_router)
    async with application.router.lifespan_context(application):
        yield application


def at(hour: int, minute: int = 0, *, day: int = 22) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


# --- the pure core --------------------------------------------------------------------------------


class TestBuckets:
    def test_15m_buckets_are_aligned_and_the_ends_cut_to_the_range(self) -> None:
        span = Range(at(9, 5), at(9, 50), Interval.m15, SHANGHAI)
        assert bucket_bounds(span) == [at(9, 5), at(9, 15), at(9, 30), at(9, 45), at(9, 50)]

    def test_days_start_at_local_midnight(self) -> None:
        # Shanghai's midnight is 16:00 UTC the day before.
        span = Range(at(10, day=20), at(10, day=22), Interval.d1, SHANGHAI)
        assert bucket_bounds(span) == [at(10, day=20), at(16, day=20), at(16, day=21), at(10)]

    def test_a_short_day_of_a_zone_that_moves_its_clock_has_23_hours(self) -> None:
        # Berlin springs forward on 29 March 2026: that day is 23 hours long.
        start = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # midnight, 29 March, in Berlin
        span = Range(start, start + timedelta(days=2), Interval.d1, BERLIN)
        bounds = bucket_bounds(span)
        assert [b - a for a, b in itertools.pairwise(bounds)][:1] == [timedelta(hours=23)]

    def test_hours_of_a_half_hour_zone_start_from_its_midnight(self) -> None:
        kolkata = ZoneInfo("Asia/Kolkata")  # UTC+05:30
        span = Range(at(9, 0), at(11, 0), Interval.h1, kolkata)
        assert bucket_bounds(span) == [at(9, 0), at(9, 30), at(10, 30), at(11, 0)]


class TestRange:
    def test_defaults_are_the_day_of_now_until_now(self) -> None:
        found = report_range(start=None, end=None, interval=Interval.h1, zone=SHANGHAI, now=NOW)
        assert (found.start, found.end) == (at(16, day=21), NOW)

    def test_to_at_midnight_defaults_from_to_the_day_before(self) -> None:
        found = report_range(
            start=None, end=at(16, day=21), interval=Interval.h1, zone=SHANGHAI, now=NOW
        )
        assert found.start == at(16, day=20)

    def test_naive_times_are_the_zones_and_to_is_cut_at_now(self) -> None:
        found = report_range(
            start=datetime(2026, 11, 22, 9, 0),
            end=datetime(2026, 11, 23, 0, 0),
            interval=Interval.m15,
            zone=SHANGHAI,
            now=NOW,
        )
        assert (found.start, found.end) == (at(1), NOW)

    @pytest.mark.parametrize(
        ("start", "end", "interval", "field"),
        [
            pytest.param(at(9), at(8), Interval.h1, "to", id="reversed"),
            pytest.param(at(9), at(9), Interval.h1, "to", id="empty"),
            pytest.param(at(11), None, Interval.h1, "from", id="future"),
            pytest.param(at(9) - timedelta(days=32), at(9), Interval.m15, "from", id="15m-32d"),
            pytest.param(at(9) - timedelta(days=93), at(9), Interval.h1, "from", id="1h-93d"),
            pytest.param(datetime(1, 1, 1, tzinfo=UTC), at(9), Interval.d1, "from", id="year-1"),
            pytest.param(at(9), datetime(9999, 12, 31, tzinfo=UTC), Interval.d1, "to", id="9999"),
        ],
    )
    def test_impossible_ranges_name_the_parameter(
        self, start: datetime, end: datetime | None, interval: Interval, field: str
    ) -> None:
        with pytest.raises(RangeProblem) as raised:
            report_range(start=start, end=end, interval=interval, zone=SHANGHAI, now=NOW)
        assert raised.value.field == field
        assert raised.value.detail.startswith(f"{field}: ")

    def test_31_days_of_15m_buckets_is_the_most(self) -> None:
        start = at(9) - timedelta(days=31)
        found = report_range(start=start, end=at(9), interval=Interval.m15, zone=UTC_ZONE, now=NOW)
        assert len(bucket_bounds(found)) == 31 * 96 + 1


class TestAvailableTime:
    BOUNDS = (at(9), at(10), at(11))

    @pytest.mark.parametrize(
        ("initial", "changes", "expected"),
        [
            pytest.param("offline", [], [0.0, 0.0], id="never"),
            pytest.param("available", [], [3600.0, 3600.0], id="throughout"),
            pytest.param(
                "offline",
                [(at(9, 30), "available"), (at(10, 15), "away")],
                [1800.0, 900.0],
                id="across-a-boundary",
            ),
            pytest.param(
                "available",
                [(at(9, 10), "away"), (at(9, 20), "available"), (at(10, 50), "offline")],
                [3000.0, 3000.0],
                id="a-break",
            ),
            pytest.param(
                "away", [(at(9, 10), "away"), (at(10, 30), "available")], [0.0, 1800.0], id="reason"
            ),
        ],
    )
    def test_available_spells_are_cut_into_buckets(
        self, initial: str, changes: list[tuple[datetime, str]], expected: list[float]
    ) -> None:
        assert available_seconds(self.BOUNDS, initial, changes) == expected

    @pytest.mark.parametrize(
        ("work", "available", "pct"),
        [(0.0, 0.0, None), (30.0, 0.0, None), (30.0, 120.0, 25.0), (500.0, 100.0, 100.0)],
    )
    def test_occupancy_is_work_over_time_available_at_most_100(
        self, work: float, available: float, pct: float | None
    ) -> None:
        assert occupancy(work, available) == pct


class TestCsvCells:
    @pytest.mark.parametrize(
        ("value", "cell"),
        [
            ("=1+2", "'=1+2"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("cards", "cards"),
            (-1, "-1"),  # a number is a number
            (None, ""),
            (at(9), "2026-11-22T17:00:00+08:00"),
        ],
    )
    def test_formulas_are_neutralised_and_times_are_in_the_zone(
        self, value: object, cell: str
    ) -> None:
        assert csv_cell(value, SHANGHAI) == cell


# --- the scenario through the API -----------------------------------------------------------------


def moment(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def inside(value: str | datetime | None, start: datetime, end: datetime) -> bool:
    found = moment(value) if isinstance(value, str) or value is None else value
    return found is not None and start <= found < end


@dataclass
class Scenario:
    cards: dict[str, Any]
    loans: dict[str, Any]
    shanghai: dict[str, Any]  # the agent (site shanghai)
    beijing: dict[str, Any]
    available: dict[int, list[tuple[datetime, str]]]  # status changes, as the API answered
    started: datetime


async def set_status(console: Api, agent_id: int, **body: Any) -> tuple[datetime, str]:
    answer = expect(await console.post(f"/api/v1/agents/{agent_id}/status", body), 200)
    return datetime.fromisoformat(answer["status_changed_at"]), answer["status"]


async def signed_in_agent(api: Api, **overrides: Any) -> tuple[dict[str, Any], Api]:
    agent = await api.agent(**overrides)
    return agent, await api.as_user(agent["username"], AGENT_PASSWORD)


async def script(api: Api) -> Scenario:
    """Cards: one answered and completed, one rejected and abandoned. Loans: one answered and
    completed. Li (Shanghai) works cards and goes to lunch; Wang (Beijing) then works loans
    and stays available."""
    cards = await queue(api, reject_delay_s=600)
    loans = await queue(api)
    li, li_console = await signed_in_agent(api, name="=Li Lei")  # a formula, for the CSV
    wang, wang_console = await signed_in_agent(api, name="Wang Fang", site="beijing")
    started = datetime.fromisoformat(li["created_at"])
    changes: dict[int, list[tuple[datetime, str]]] = {li["id"]: [], wang["id"]: []}
    changes[li["id"]].append(await set_status(li_console, li["id"], status="available"))
    await work(api, li_console, cards["name"])
    rejected = await contact(api, cards["name"])
    offer = await offer_for(li_console, rejected["id"])
    expect(await li_console.post(f"/api/v1/offers/{offer['id']}/reject"), 200)
    expect(await api.post(f"/api/v1/contacts/{rejected['id']}/abandon"), 200)
    lunch = await set_status(li_console, li["id"], status="away", reason="lunch")
    changes[li["id"]].append(lunch)
    changes[wang["id"]].append(await set_status(wang_console, wang["id"], status="available"))
    await work(api, wang_console, loans["name"])
    return Scenario(cards, loans, li, wang, changes, started)


async def work(api: Api, console: Api, queue_name: str) -> None:
    created = await contact(api, queue_name)
    offer = await offer_for(console, created["id"])
    expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
    expect(await console.post(f"/api/v1/contacts/{created['id']}/complete", {}), 200)


async def contacts_of(api: Api) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    contact_id = 1
    while (response := await api.get(f"/api/v1/contacts/{contact_id}")).status_code == 200:
        found.append(response.json())
        contact_id += 1
    return found


def expected_queue(
    contacts: list[dict[str, Any]], start: datetime, end: datetime
) -> dict[str, Any]:
    """A queue's counts over [start, end), from its contacts' own timestamps."""
    answered = [c for c in contacts if inside(c["answered_at"], start, end)]
    ended = [c for c in contacts if inside(c["ended_at"], start, end)]
    abandoned = [c for c in ended if c["status"] == "abandoned"]
    waits = [seconds(c["enqueued_at"], c["answered_at"]) for c in answered]
    return {
        "offered": sum(inside(c["enqueued_at"], start, end) for c in contacts),
        "answered": len(answered),
        "answered_within": sum(w <= 20 for w in waits),
        "abandoned": len(abandoned),
        "short_abandoned": sum(bool(c["short_abandon"]) for c in abandoned),
        "completed": sum(c["status"] == "completed" for c in ended),
        "asa_s": sum(waits) / len(waits) if waits else None,
    }


def expected_agent(
    agent_id: int,
    contacts: list[dict[str, Any]],
    changes: list[tuple[datetime, str]],
    start: datetime,
    end: datetime,
    initial: str,
) -> dict[str, Any]:
    """An agent's figures over [start, end), from offers, contacts and status changes."""
    offers = [o for c in contacts for o in c["offers"] if o["agent_id"] == agent_id]
    decided = [o for o in offers if inside(o["decided_at"], start, end)]
    done = [
        c
        for c in contacts
        if c["agent_id"] == agent_id
        and c["status"] == "completed"
        and inside(c["ended_at"], start, end)
    ]
    handle = sum(seconds(c["answered_at"], c["ended_at"]) for c in done)
    available, status, since = 0.0, initial, start
    for when, new in [*[(max(w, start), s) for w, s in changes if w < end], (end, "")]:
        if status == "available":
            available += max((min(when, end) - max(since, start)).total_seconds(), 0.0)
        status, since = new or status, when
    return {
        "offers": sum(inside(o["created_at"], start, end) for o in offers),
        "accepted": sum(o["status"] == "accepted" for o in decided),
        "rejected": sum(o["status"] == "rejected" for o in decided),
        "missed": sum(o["status"] == "expired" for o in decided),
        "handled": len(done),
        "handle_s": handle,
        "available_s": available,
    }


def check_agent_row(row: dict[str, Any], expected: dict[str, Any]) -> None:
    counts = ("offers", "accepted", "rejected", "missed", "handled")
    assert {k: row[k] for k in counts} == {k: expected[k] for k in counts}
    assert row["handle_s"] == pytest.approx(expected["handle_s"], abs=0.003)
    assert row["available_s"] == pytest.approx(expected["available_s"], abs=0.003)
    work = row["handle_s"] + row["wrap_up_s"]
    assert row["occupancy_pct"] == occupancy(work, row["available_s"])


def bucket(row: dict[str, Any]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(row["bucket_start"]), datetime.fromisoformat(row["bucket_end"])


async def report(api: Api, kind: str, **params: Any) -> dict[str, Any]:
    return expect(await api.get(f"/api/v1/reports/{kind}", params=params), 200)  # type: ignore[no-any-return]


def since(s: Scenario) -> dict[str, str]:
    return {"from": (s.started - timedelta(seconds=1)).isoformat(), "interval": "1h", "tz": "UTC"}


class TestQueueReport:
    async def test_rows_equal_the_figures_of_the_contacts(self, api: Api) -> None:
        s = await script(api)
        contacts = await contacts_of(api)
        body = await report(api, "queues", **since(s))
        assert body["tz"] == "UTC"
        assert body["interval"] == "1h"
        assert body["formulas"]["service_level_pct"].startswith("answered within")
        totals: dict[int, int] = {}
        for row in body["rows"]:
            mine = [c for c in contacts if c["queue_id"] == row["queue_id"]]
            expected = expected_queue(mine, *bucket(row))
            asa = expected.pop("asa_s")
            assert {k: row[k] for k in expected} == expected
            assert row["asa_s"] == (None if asa is None else pytest.approx(asa, abs=0.002))
            totals[row["queue_id"]] = totals.get(row["queue_id"], 0) + row["offered"]
        assert totals == {s.cards["id"]: 2, s.loans["id"]: 1}  # no row missing

    async def test_one_queue_and_csv_with_a_header_row(self, api: Api) -> None:
        s = await script(api)
        params = {**since(s), "queue_id": s.cards["id"]}
        headers = {**api.headers, "Accept": "text/csv"}
        response = await api.client.get("/api/v1/reports/queues", params=params, headers=headers)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        lines = list(csv.reader(io.StringIO(response.text.removeprefix("\ufeff"))))
        assert lines[0] == list(QueueRow.__dataclass_fields__)
        assert {line[lines[0].index("queue")] for line in lines[1:]} == {s.cards["name"]}
        assert sum(int(line[lines[0].index("offered")]) for line in lines[1:]) == 2


class TestAgentReport:
    async def test_rows_equal_the_figures_of_offers_contacts_and_statuses(self, api: Api) -> None:
        s = await script(api)
        contacts = await contacts_of(api)
        body = await report(api, "agents", **since(s))
        seen: dict[int, int] = {}
        for row in body["rows"]:
            changes = s.available[row["agent_id"]]
            expected = expected_agent(row["agent_id"], contacts, changes, *bucket(row), "offline")
            check_agent_row(row, expected)
            seen[row["agent_id"]] = seen.get(row["agent_id"], 0) + row["offers"]
        assert seen == {s.shanghai["id"]: 2, s.beijing["id"]: 1}

    async def test_the_status_at_from_comes_from_the_next_change_or_the_agent_now(
        self, api: Api
    ) -> None:
        s = await script(api)
        contacts = await contacts_of(api)
        (li_on, _), (lunch, _) = s.available[s.shanghai["id"]]
        (wang_on, _) = s.available[s.beijing["id"]][0]
        middle = li_on + (lunch - li_on) / 2
        tick = timedelta(milliseconds=1)
        cases = (
            (middle, None, s.shanghai),  # the lunch, in the range, says Li was available
            (li_on + tick, middle, s.shanghai),  # the lunch, after the range, says so too
            (wang_on + tick, None, s.beijing),  # no change since: Wang's status now
        )
        for start, end, agent in cases:
            params = {"from": start.isoformat(), "interval": "1d", "tz": "UTC"}
            if end is not None:
                params["to"] = end.isoformat()
            params["agent_id"] = agent["id"]
            rows = (await report(api, "agents", **params))["rows"]
            assert rows, f"no row for {agent['name']} from {start}"
            changes = [c for c in s.available[agent["id"]] if c[0] >= start]
            for row in rows:
                figures = expected_agent(
                    agent["id"], contacts, changes, *bucket(row), initial="available"
                )
                assert figures["available_s"] > 0
                check_agent_row(row, figures)

    async def test_csv_neutralises_a_name_that_is_a_formula(self, api: Api) -> None:
        s = await script(api)
        params = {**since(s), "format": "csv", "agent_id": s.shanghai["id"]}
        response = await api.get("/api/v1/reports/agents", params=params)
        lines = list(csv.reader(io.StringIO(response.text.removeprefix("\ufeff"))))
        assert lines[0] == list(AgentRow.__dataclass_fields__)
        assert {line[lines[0].index("agent")] for line in lines[1:]} == {"'=Li Lei"}


class TestRefusals:
    @pytest.mark.parametrize(
        ("params", "field"),
        [
            pytest.param(
                {"from": "2026-11-22T10:00:00Z", "to": "2026-11-22T09:00:00Z"}, "to", id="reversed"
            ),
            pytest.param(
                {"from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
                "from",
                id="too-long",
            ),
            pytest.param({"from": "2999-01-01T00:00:00Z"}, "from", id="future"),
            pytest.param({"from": "yesterday"}, "from", id="malformed"),
            pytest.param({"interval": "7m"}, "interval", id="interval"),
            pytest.param({"tz": "Mars/Olympus"}, "tz", id="zone"),
            pytest.param({"queue_id": "0"}, "queue_id", id="queue-id"),
        ],
    )
    async def test_bad_parameters_are_422_naming_them(
        self, api: Api, params: dict[str, str], field: str
    ) -> None:
        body = expect(await api.get("/api/v1/reports/queues", params=params), 422)
        assert field in [f["field"] for f in body["fields"]]

    async def test_unknown_queue_and_agent_are_404(self, api: Api) -> None:
        expect(await api.get("/api/v1/reports/queues", params={"queue_id": 999999}), 404)
        expect(await api.get("/api/v1/reports/agents", params={"agent_id": 999999}), 404)


class TestAccess:
    async def test_agents_and_channels_may_not_and_anonymous_must_sign_in(self, api: Api) -> None:
        _, console = await signed_in_agent(api)
        made = expect(await api.post("/api/v1/api-keys", {"name": "web-chat"}), 201)
        channel = Api(api.client, {"Authorization": f"Bearer {made['key']}"})
        for kind in ("queues", "agents"):
            expect(await console.get(f"/api/v1/reports/{kind}"), 403)
            expect(await channel.get(f"/api/v1/reports/{kind}"), 403)
            expect(await api.client.get(f"/api/v1/reports/{kind}"), 401)

    async def test_a_supervisor_sees_every_queue_and_only_their_sites_agents(
        self, api: Api
    ) -> None:
        s = await script(api)
        boss = await api.signed_in_as(await api.supervisor(site="shanghai"))
        agents = {r["agent_id"] for r in (await report(boss, "agents", **since(s)))["rows"]}
        assert agents == {s.shanghai["id"]}
        everyone = {r["agent_id"] for r in (await report(api, "agents", **since(s)))["rows"]}
        assert everyone == {s.shanghai["id"], s.beijing["id"]}
        queues = {r["queue_id"] for r in (await report(boss, "queues", **since(s)))["rows"]}
        assert queues == {s.cards["id"], s.loans["id"]}
        other = {**since(s), "agent_id": s.beijing["id"]}
        expect(await boss.get("/api/v1/reports/agents", params=other), 403)
