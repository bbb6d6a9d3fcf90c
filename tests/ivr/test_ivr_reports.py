"""The IVR outcome report: counts per outcome, callers who left while queued, drop-off per
node, over a period; JSON and CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient

from tests.fixtures.factories import Api, expect
from tests.ivr import live
from tests.ivr.conftest import START, Clock
from tests.ivr.live import menus_to
from tests.ivr.telephony import HOTLINE, TwilioCall, centre, upload

URL = "/api/v1/ivr/reports/outcomes"
PERIOD = {"from": "2026-12-02T00:00:00Z", "to": "2026-12-03T00:00:00Z"}

# The live-call app (IVR handlers registered, the fake Twilio API) for every test here.
app, settings, twilio_api = live.app, live.settings, live.twilio_api


@pytest.fixture
async def day(api: Api, client: AsyncClient) -> None:
    """A day on the complaint hotline: two enqueued (one hangs up waiting), one callback, two
    hang up in the menus (one at the language menu, one at the main menu)."""
    await centre(api)
    await upload(api, "complaint_hotline_95561")
    stays = TwilioCall(client, "+8613933330001", HOTLINE)
    await menus_to(stays, "0")
    leaves = TwilioCall(client, "+8613933330002", HOTLINE)
    await menus_to(leaves, "0")
    await leaves.redirect()
    assert (await leaves.status("completed")).status_code == 200
    back = TwilioCall(client, "+8613933330003", HOTLINE)
    await menus_to(back, "9")
    at_language = TwilioCall(client, "+8613933330004", HOTLINE)
    await at_language.start()
    assert (await at_language.status("completed")).status_code == 200
    at_main = TwilioCall(client, "+8613933330005", HOTLINE)
    await at_main.start()
    await at_main.press("1")
    assert (await at_main.status("no-answer")).status_code == 200


def counts(report: dict[str, Any]) -> dict[str, int]:
    return {o["outcome"]: o["calls"] for o in report["outcomes"]}


@pytest.mark.usefixtures("day")
class TestOutcomeReport:
    async def test_counts_per_outcome_and_drop_off_per_node(self, api: Api) -> None:
        report = expect(await api.get(URL, params=PERIOD), 200)
        assert report["calls"] == 5
        assert counts(report) == {"enqueued": 2, "callback": 1, "hung_up": 2}
        assert report["abandoned_in_queue"] == 1
        assert sorted((d["node"], d["calls"]) for d in report["drop_off"]) == [
            ("language", 1),
            ("main", 1),
        ]

    async def test_the_same_report_as_csv(self, api: Api) -> None:
        response = await api.get(URL, params={**PERIOD, "format": "csv"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        text = response.content.decode("utf-8")
        assert text.startswith("\ufeff")
        rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
        assert rows[0] == ["figure", "name", "value"]
        figures = {(r[0], r[1]): r[2] for r in rows[1:]}
        assert figures[("calls", "")] == "5"
        assert figures[("outcome", "enqueued")] == "2"
        assert figures[("outcome", "callback")] == "1"
        assert figures[("outcome", "hung_up")] == "2"
        assert figures[("abandoned_in_queue", "")] == "1"
        assert figures[("drop_off", "language")] == "1"
        assert figures[("drop_off", "main")] == "1"
        headers = {**api.headers, "Accept": "text/csv"}
        by_accept = await api.client.get(URL, params=PERIOD, headers=headers)
        assert by_accept.content == response.content

    async def test_a_period_without_calls_and_bad_parameters(self, api: Api) -> None:
        empty = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"}
        assert expect(await api.get(URL, params=empty), 200)["calls"] == 0
        backwards = await api.get(URL, params={"from": PERIOD["to"], "to": PERIOD["from"]})
        assert backwards.status_code == 422
        assert "to" in backwards.text
        unknown = await api.get(URL, params={**PERIOD, "format": "xlsx"})
        assert unknown.status_code == 422
        assert "format" in unknown.text


@pytest.mark.usefixtures("day")
class TestDefaultPeriod:
    """Left out, the period is the queue reports' (docs/reports.md): ``to`` now, ``from`` the
    start of the day ``to`` falls in, in the centre's zone (Asia/Shanghai here)."""

    async def test_left_out_it_is_today_so_far_in_the_centre_s_zone(
        self, api: Api, clock: Clock
    ) -> None:
        clock.now = START + timedelta(minutes=5)  # the day's calls started at START
        report = expect(await api.get(URL), 200)
        assert moment(report["from"]) == datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
        assert moment(report["to"]) == clock.now
        assert report["calls"] == 5

    async def test_the_next_day_starts_afresh_at_the_centre_s_midnight(
        self, api: Api, clock: Clock
    ) -> None:
        clock.now = START + timedelta(days=1)
        report = expect(await api.get(URL, params={"format": "json"}), 200)
        assert moment(report["from"]) == datetime(2026, 12, 2, 16, 0, tzinfo=UTC)
        assert report["calls"] == 0

    async def test_to_alone_reports_its_day_and_a_midnight_the_day_before(self, api: Api) -> None:
        noon = expect(await api.get(URL, params={"to": "2026-12-02T04:00:00Z"}), 200)
        assert moment(noon["from"]) == datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
        assert noon["calls"] == 5
        midnight = expect(await api.get(URL, params={"to": "2026-12-02T16:00:00Z"}), 200)
        assert moment(midnight["from"]) == datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
        assert midnight["calls"] == 5

    async def test_from_alone_reports_until_now(self, api: Api, clock: Clock) -> None:
        clock.now = START + timedelta(hours=1)
        report = expect(await api.get(URL, params={"from": "2026-12-02T00:00:00Z"}), 200)
        assert moment(report["to"]) == clock.now
        assert report["calls"] == 5

    async def test_a_from_not_before_now_with_to_left_out_is_refused_naming_from(
        self, api: Api
    ) -> None:
        answer = await api.get(URL, params={"from": "2026-12-03T00:00:00Z"})
        assert answer.status_code == 422
        assert [f["field"] for f in answer.json()["fields"]] == ["from"]

    async def test_a_to_too_early_for_a_default_from_is_refused_naming_to(self, api: Api) -> None:
        answer = await api.get(URL, params={"to": "0001-01-01T00:00:00Z"})
        assert answer.status_code == 422
        assert [f["field"] for f in answer.json()["fields"]] == ["to"]


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value)
