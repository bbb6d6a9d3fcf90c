"""Exporting complaints: CSV that Excel opens (BOM, header) with formulas neutralised, JSON
with the same keys, the list's filters and visibility, streamed in pages, and every export
on record with its filters and the number of complaints it sent."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.complaints import export
from tests.complaints.test_archive import (
    START,
    app,
    archive_sweep,
    clock,
    engine,
    finished,
    no_failed_complaint,
)
from tests.complaints.test_registration import (
    COMPLAINTS,
    Clock,
    complaint_body,
    register,
    scalar,
)
from tests.complaints.test_transitions import move
from tests.fixtures.factories import Api, expect

__all__ = ["app", "clock", "engine", "no_failed_complaint"]  # fixtures of the archive tests

EXPORT = f"{COMPLAINTS}/export"
# What a complainant may type that a spreadsheet would run: each cell must come out as text.
HOSTILE = complaint_body(
    complainant={"name": "=cmd|' /C calc'!A0", "contact": "+8613800138000", "relation": "self"},
    matter={
        "occurred_at": "2030-03-01T10:00:00+08:00",
        "location": '\uff1dHYPERLINK("http://evil.example")',
        "branch": "Pudong",
        "description": '=HYPERLINK("http://evil.example","点我")',
    },
    grounds="-2+3",
    request="@SUM(A1:A9)",
)


async def exported(caller: Api, **params: Any) -> Response:
    response = await caller.get(EXPORT, params=params)
    assert response.status_code == 200, response.text
    return response


def complaints(response: Response) -> list[dict[str, Any]]:
    return json.loads(response.content)["complaints"]  # type: ignore[no-any-return]


def csv_rows(response: Response) -> list[list[str]]:
    body = response.content
    assert body.startswith(b"\xef\xbb\xbf"), body[:10]
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


class TestCsv:
    async def test_has_a_bom_a_header_and_a_row_per_complaint(self, api: Api) -> None:
        ids = [(await register(api, complaint_body()))["id"] for _ in range(3)]
        response = await exported(api, format="csv")
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["content-disposition"].startswith("attachment; filename=")
        header, *rows = csv_rows(response)
        assert tuple(header) == export.HEADER
        assert [int(r[0]) for r in rows] == ids
        first = dict(zip(header, rows[0], strict=True))
        assert (first["complainant_name"], first["description"]) == (
            "王芳",
            "我的信用卡被重复扣款两次而柜台拒绝处理",
        )
        assert response.content.count(b"\r\n") == 4

    async def test_every_cell_that_would_be_a_formula_is_text(self, api: Api) -> None:
        await register(api, HOSTILE)
        header, values = csv_rows(await exported(api, format="csv"))
        row = dict(zip(header, values, strict=True))
        assert row["complainant_name"] == "'=cmd|' /C calc'!A0"
        assert row["complainant_contact"] == "'+8613800138000"
        assert row["location"] == '\'\uff1dHYPERLINK("http://evil.example")'
        assert row["description"] == '\'=HYPERLINK("http://evil.example","点我")'
        assert (row["grounds"], row["request"]) == ("'-2+3", "'@SUM(A1:A9)")
        assert row["branch"] == "Pudong"

    async def test_accept_text_csv_asks_for_csv(self, api: Api) -> None:
        await register(api, complaint_body())
        headers = {**api.headers, "Accept": "text/csv"}
        response = await api.client.get(EXPORT, headers=headers)
        assert response.headers["content-type"].startswith("text/csv")
        assert tuple(csv_rows(response)[0]) == export.HEADER


class TestJson:
    async def test_an_array_with_the_same_keys_and_nothing_prefixed(self, api: Api) -> None:
        made = await register(api, HOSTILE)
        await move(api, made["id"], "classify", {"categories": ["fees", "card"], "severity": "low"})
        response = await exported(api)
        assert response.headers["content-type"] == "application/json"
        [item] = complaints(response)
        assert tuple(item) == export.HEADER
        assert (item["id"], item["categories"], item["legal_hold"]) == (
            made["id"],
            ["fees", "card"],
            False,
        )
        assert item["complainant_name"] == HOSTILE["complainant"]["name"]

    async def test_the_customers_tier_is_exported_and_kept_once_unlinked(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        gold = await api.customer(tier="gold")
        linked = await register(api, complaint_body(customer={"id": gold["id"]}))
        anonymous = await register(api, complaint_body())
        kept = await register(api, complaint_body())
        async with engine.begin() as conn:  # as anonymisation leaves a complaint
            await conn.execute(
                text("UPDATE complaints SET customer_tier = 'platinum' WHERE id = :id"),
                {"id": kept["id"]},
            )
        tiers = {i["id"]: i["customer_tier"] for i in complaints(await exported(api))}
        assert tiers == {linked["id"]: "gold", anonymous["id"]: None, kept["id"]: "platinum"}
        header, *rows = csv_rows(await exported(api, format="csv"))
        column = header.index("customer_tier")
        assert [r[column] for r in rows] == ["gold", "", "platinum"]

    async def test_the_document_names_its_record_and_filters_even_when_empty(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        document = json.loads((await exported(api, branch="无此网点")).content)
        recorded = await scalar(engine, "SELECT max(id) FROM complaint_exports")
        assert document == {
            "export_id": recorded,
            "filters": {"branch": "无此网点"},
            "complaints": [],
        }

    async def test_read_in_pages_every_complaint_once_in_order(
        self, api: Api, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(export, "PAGE", 2)
        ids = [(await register(api, complaint_body()))["id"] for _ in range(5)]
        assert [i["id"] for i in complaints(await exported(api))] == ids
        _, *rows = csv_rows(await exported(api, format="csv"))
        assert [int(r[0]) for r in rows] == ids


class TestFilters:
    async def test_status_branch_and_registration_period(
        self, api: Api, app: FastAPI, clock: Clock
    ) -> None:
        archived = await finished(api)
        clock.advance(timedelta(days=1))
        other_branch = (
            await register(api, complaint_body(matter={**HOSTILE["matter"], "branch": "Minhang"}))
        )["id"]
        clock.advance(timedelta(days=1))
        late = (await register(api, complaint_body()))["id"]
        await archive_sweep(app, START + timedelta(days=31))

        async def ids(**params: Any) -> list[int]:
            return [i["id"] for i in complaints(await exported(api, **params))]

        assert await ids(status="archived") == [archived]
        assert await ids(branch="Minhang") == [other_branch]
        day = START + timedelta(days=1)
        assert await ids(
            **{"from": day.isoformat(), "to": (day + timedelta(days=1)).isoformat()}
        ) == [other_branch]
        assert await ids(**{"from": (day + timedelta(days=1)).isoformat()}) == [late]
        wrong = await api.get(EXPORT, params={"from": day.isoformat(), "to": day.isoformat()})
        assert [f["field"] for f in expect(wrong, 422)["fields"]] == ["to"]
        naive = await api.get(EXPORT, params={"from": "2030-03-04T00:00:00"})
        expect(naive, 422)
        expect(await api.get(EXPORT, params={"format": "xlsx"}), 422)

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"text": "!!!"}, "text"),
            ({"from": "0001-01-01T00:00:00+05:00"}, "from"),
            ({"to": "9999-12-31T23:59:59-05:00"}, "to"),
            ({"from": "1969-12-31T23:59:59Z"}, "from"),
            ({"branch": "Pudong\x00"}, "branch"),
            ({"category": "\x00"}, "category"),
        ],
    )
    async def test_a_filter_it_cannot_use_is_a_422_naming_it_before_anything_is_sent(
        self, api: Api, engine: AsyncEngine, params: dict[str, str], field: str
    ) -> None:
        await register(api, complaint_body())
        refused = expect(await api.get(EXPORT, params=params), 422)
        assert [f["field"] for f in refused["fields"]] == [field]
        assert await scalar(engine, "SELECT count(*) FROM complaint_exports") == 0


class TestWhoMayExport:
    async def test_supervisors_their_site_admins_all_agents_none(self, api: Api) -> None:
        shanghai = await api.agent(site="shanghai")
        beijing = await api.agent(site="beijing")
        ours = (await register(api, complaint_body()))["id"]
        await move(api, ours, "assign", {"assignee": shanghai["id"]})
        theirs = (await register(api, complaint_body()))["id"]
        await move(api, theirs, "assign", {"assignee": beijing["id"]})
        unassigned = (await register(api, complaint_body()))["id"]
        supervisor = await api.signed_in_as(await api.supervisor(site="shanghai"))
        seen = [i["id"] for i in complaints(await exported(supervisor))]
        assert seen == [ours, unassigned]
        assert len(complaints(await exported(api))) == 3
        agent = await api.signed_in_as(shanghai)
        expect(await agent.get(EXPORT), 403)


class TestOnRecord:
    async def test_every_export_is_on_the_access_log_with_its_filters_and_count(
        self, api: Api, engine: AsyncEngine, clock: Clock
    ) -> None:
        for _ in range(3):
            await register(api, complaint_body())
        await exported(api, format="csv", branch="Pudong")
        await exported(api, status="archived")
        async with engine.connect() as conn:
            logged = (
                await conn.execute(
                    text(
                        "SELECT a.agent_id, a.outcome, a.query, e.format, e.filters, e.rows, "
                        "e.finished_at FROM access_log a JOIN complaint_exports e "
                        "ON e.id = a.subject_id WHERE a.kind = 'complaint.export' ORDER BY a.id"
                    )
                )
            ).all()
        me = api.me["id"]
        assert [tuple(r) for r in logged] == [
            (me, "found", "branch=Pudong", "csv", {"branch": "Pudong"}, 3, clock.now),
            (me, "found", "status=archived", "json", {"status": "archived"}, 0, clock.now),
        ]
