"""Registering complaints: every fact required, a reference at once, clocks started, retries
and repeats of one matter never make a second complaint.

Also the helpers the other complaint API tests share: the app with the complaint routes
mounted, an injected clock, a complete registration body and row counts.
"""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.complaints.router import router as complaints_router
from app.config import Settings
from app.main import create_app
from tests.conftest import make_settings
from tests.fixtures.desk_clock import freeze_desk
from tests.fixtures.factories import Api, expect

COMPLAINTS = "/api/v1/complaints"
START = datetime(2026, 12, 1, 17, 30, tzinfo=UTC)  # 2 December, 01:30 in Shanghai


class Clock:
    """The desk's injected clock: it moves only when a test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, span: timedelta) -> datetime:
        self.now += span
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
async def app(settings: Settings, clock: Clock) -> AsyncIterator[FastAPI]:
    """The app with the complaint routes mounted (if it does not mount them) and the clock."""
    application = create_app(settings)
    if not any(getattr(r, "path", None) == COMPLAINTS for r in application.routes):
        application.include_router(complaints_router)
    freeze_desk(application, clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


def complaint_body(**overrides: Any) -> dict[str, Any]:
    """A registration with every fact a complaint needs."""
    body: dict[str, Any] = {
        "channel": "phone",
        "complainant": {"name": "王芳", "contact": "+8613800138000", "relation": "self"},
        "matter": {
            "occurred_at": "2026-11-28T10:00:00+08:00",
            "location": "浦东支行营业厅",
            "branch": "Pudong",
            "description": "我的信用卡被重复扣款两次而柜台拒绝处理",
        },
        "grounds": "同一笔消费被扣款两次",
        "request": "退还重复扣除的款项",
    }
    body.update(overrides)
    return body


async def register(api: Api, body: dict[str, Any], status: int = 201, **kw: Any) -> Any:
    return expect(await api.post(COMPLAINTS, body, **kw), status)


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return await conn.scalar(text(sql), params)


async def written(engine: AsyncEngine) -> tuple[int, int, int, int]:
    """Complaints, clocks, audit entries and complaint events in the database."""
    return (
        await scalar(engine, "SELECT count(*) FROM complaints"),
        await scalar(engine, "SELECT count(*) FROM complaint_clocks"),
        await scalar(engine, "SELECT count(*) FROM complaint_audit"),
        await scalar(engine, "SELECT count(*) FROM events WHERE type LIKE 'complaint.%'"),
    )


def without(body: dict[str, Any], dotted: str) -> dict[str, Any]:
    trimmed = copy.deepcopy(body)
    *parents, leaf = dotted.split(".")
    target = trimmed
    for name in parents:
        target = target[name]
    del target[leaf]
    return trimmed


REQUIRED = [
    "channel",
    "complainant",
    "complainant.name",
    "complainant.contact",
    "complainant.relation",
    "matter",
    "matter.occurred_at",
    "matter.location",
    "matter.branch",
    "matter.description",
    "grounds",
    "request",
]


class TestRegistration:
    async def test_answers_a_reference_at_once_and_starts_the_clocks(self, api: Api) -> None:
        body = await register(api, complaint_body())
        assert re.fullmatch(r"C-20261202-\d{6}", body["reference"])
        assert body["status"] == "registered"
        assert body["linked"] is False
        assert datetime.fromisoformat(body["due_at"]) == START + timedelta(days=3)
        clocks = {c["kind"]: c for c in body["clocks"]}
        assert clocks["acknowledgement"]["status"] == "stopped"
        assert clocks["resolution"]["status"] == "running"
        assert datetime.fromisoformat(clocks["resolution"]["due_at"]) == START + timedelta(days=3)

    async def test_a_matter_that_has_not_happened_yet_is_refused(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        before = await written(engine)
        ahead = (START + timedelta(hours=2)).isoformat()
        matter = {**complaint_body()["matter"], "occurred_at": ahead}
        refused = await register(api, complaint_body(matter=matter), status=422)
        assert [f["field"] for f in refused["fields"]] == ["matter.occurred_at"]
        assert "future" in refused["fields"][0]["message"]
        assert await written(engine) == before
        # A clock running a little fast is not a matter from the future.
        matter["occurred_at"] = (START + timedelta(minutes=30)).isoformat()
        await register(api, complaint_body(matter=matter))

    @pytest.mark.parametrize(
        "occurred_at", ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+08:00", "1969-12-31T23:59Z"]
    )
    async def test_a_matter_dated_before_1970_is_refused_naming_the_date(
        self, api: Api, engine: AsyncEngine, occurred_at: str
    ) -> None:
        customer = await api.customer()
        before = await written(engine)
        matter = {**complaint_body()["matter"], "occurred_at": occurred_at}
        body = complaint_body(matter=matter, customer={"id": customer["id"]})
        refused = await register(api, body, status=422)
        assert [f["field"] for f in refused["fields"]] == ["matter.occurred_at"]
        assert "1970-01-01" in refused["fields"][0]["message"]
        assert await written(engine) == before
        # The customer's next complaint registers, and the desk reads it back.
        done = await register(api, complaint_body(customer={"id": customer["id"]}))
        expect(await api.get(f"{COMPLAINTS}/{done['id']}"), 200)

    async def test_the_complaint_reads_back_with_its_first_audit_entry(self, api: Api) -> None:
        done = await register(api, complaint_body())
        complaint = expect(await api.get(f"{COMPLAINTS}/{done['id']}"), 200)
        assert complaint["reference"] == done["reference"]
        assert complaint["complainant"]["relation"] == "self"
        [entry] = complaint["timeline"]
        assert (entry["seq"], entry["action"], entry["after"]) == (1, "registered", "registered")
        assert entry["actor"] == f"agent:{api.me['id']}"

    @pytest.mark.parametrize("fact", REQUIRED)
    async def test_each_missing_fact_is_a_422_naming_it_and_nothing_is_written(
        self, api: Api, engine: AsyncEngine, fact: str
    ) -> None:
        body = expect(await api.post(COMPLAINTS, without(complaint_body(), fact)), 422)
        assert [f["field"] for f in body["fields"]] == [fact]
        assert await written(engine) == (0, 0, 0, 0)

    async def test_every_missing_fact_is_named_at_once(self, api: Api) -> None:
        body = complaint_body(grounds="   ")
        for fact in ("complainant.contact", "matter.branch", "request"):
            body = without(body, fact)
        answer = expect(await api.post(COMPLAINTS, body), 422)
        named = sorted(f["field"] for f in answer["fields"])
        assert named == ["complainant.contact", "grounds", "matter.branch", "request"]

    async def test_an_unknown_customer_is_a_422_naming_it(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        body = expect(await api.post(COMPLAINTS, complaint_body(customer={"id": 999999})), 422)
        assert [f["field"] for f in body["fields"]] == ["customer.id"]
        assert await written(engine) == (0, 0, 0, 0)

    async def test_an_idempotent_retry_returns_the_same_complaint(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        key = {"Idempotency-Key": "complaint-retry-1"}
        first = await register(api, complaint_body(), headers=key)
        again = await register(api, complaint_body(), headers=key)
        assert again == first
        assert await scalar(engine, "SELECT count(*) FROM complaints") == 1

    async def test_concurrent_registrations_get_distinct_references(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        answers = await asyncio.gather(*(api.post(COMPLAINTS, complaint_body()) for _ in range(20)))
        references = [expect(a, 201)["reference"] for a in answers]
        assert len(set(references)) == 20
        assert await scalar(engine, "SELECT count(DISTINCT reference) FROM complaints") == 20

    async def test_a_read_by_an_agent_is_in_the_access_log(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        agent = await api.signed_in_as(await api.agent())
        done = await register(agent, complaint_body())
        expect(await agent.get(f"{COMPLAINTS}/{done['id']}"), 200)
        logged = await scalar(
            engine,
            "SELECT count(*) FROM access_log WHERE kind = 'complaint.read' "
            "AND agent_id = :agent AND subject_id = :id AND outcome = 'found'",
            agent=agent.me["id"],
            id=done["id"],
        )
        assert logged == 1

    async def test_another_agents_complaint_reads_as_missing(self, api: Api) -> None:
        done = await register(api, complaint_body())
        stranger = await api.signed_in_as(await api.agent())
        expect(await stranger.get(f"{COMPLAINTS}/{done['id']}"), 404)
        assert expect(await stranger.get(COMPLAINTS), 200)["items"] == []


# Contacts the desk can reach, as people type them: the status lookup matches the numbers,
# the notices go to the mobile numbers and the addresses.
REACHABLE = [
    "+8613800138000",
    "13800138000",
    "+86 138 0013 8000",
    "0086 138-0013-8000",
    "\uff11\uff13\uff18\uff10\uff10\uff11\uff13\uff18\uff10\uff10\uff10",  # full-width (an IME)
    "010-6552-8888",  # a landline: looked up, never texted
    "(010) 6552 8888",
    "95561",  # a service number of the region
    "+852 9123 4567",
    "+1 650 253 0000",
    "wang.fang@example.com",
]
UNREACHABLE = {
    "punctuation": "!!!",
    "words": "call me",
    "address": "上海市浦东新区世纪大道100号",
    "address-no-domain": "li@example",
    "two-ats": "li@@example.com",
    "space-in-address": "li fang@example.com",
    "no-such-mobile": "12345678901",
    "landline-without-area-code": "6552 8888",
    "country-code-not-in-use": "+999 1234 5678",
    "too-short": "+86 138",
}


class TestComplainantContact:
    @pytest.mark.parametrize("contact", REACHABLE)
    async def test_a_number_or_an_address_is_registered_as_typed(
        self, api: Api, contact: str
    ) -> None:
        body = complaint_body()
        body["complainant"]["contact"] = contact
        done = await register(api, body)
        complaint = expect(await api.get(f"{COMPLAINTS}/{done['id']}"), 200)
        assert complaint["complainant"]["contact"] == contact

    @pytest.mark.parametrize("contact", UNREACHABLE.values(), ids=UNREACHABLE.keys())
    async def test_a_contact_the_desk_cannot_reach_is_a_422_naming_it(
        self, api: Api, engine: AsyncEngine, contact: str
    ) -> None:
        body = complaint_body()
        body["complainant"]["contact"] = contact
        refused = await register(api, body, status=422)
        assert [f["field"] for f in refused["fields"]] == ["complainant.contact"]
        message = refused["fields"][0]["message"]
        assert "phone number" in message
        assert "e-mail address" in message
        assert await written(engine) == (0, 0, 0, 0)

    async def test_a_numbers_problem_is_said(self, api: Api) -> None:
        body = complaint_body()
        body["complainant"]["contact"] = "12345678901"
        refused = await register(api, body, status=422)
        assert "not a valid +86 number" in refused["fields"][0]["message"]


class TestComplainantContactInAnotherRegion:
    @pytest.fixture
    def settings(self, db: str) -> Settings:
        return make_settings(db, default_phone_region="HK")

    async def test_a_local_number_of_the_services_region_is_taken(self, api: Api) -> None:
        body = complaint_body()
        body["complainant"]["contact"] = "9123 4567"
        done = await register(api, body)
        complaint = expect(await api.get(f"{COMPLAINTS}/{done['id']}"), 200)
        assert complaint["complainant"]["contact"] == "9123 4567"


class TestTheSameMatterAgain:
    async def test_another_channel_is_linked_to_the_open_complaint(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        customer = await api.customer()
        first = await register(api, complaint_body(customer={"id": customer["id"]}))
        matter = {**complaint_body()["matter"], "occurred_at": "2026-11-30T15:00:00+08:00"}
        matter["description"] = "Charged twice for one purchase on my card"
        again = complaint_body(channel="web", customer={"id": customer["id"]}, matter=matter)
        linked = await register(api, again, status=200)
        assert (linked["id"], linked["reference"], linked["linked"]) == (
            first["id"],
            first["reference"],
            True,
        )
        assert await scalar(engine, "SELECT count(*) FROM complaints") == 1
        complaint = expect(await api.get(f"{COMPLAINTS}/{first['id']}"), 200)
        assert [f["channel"] for f in complaint["linked"]] == ["web"]
        assert complaint["linked"][0]["matter"]["description"] == matter["description"]
        assert [e["action"] for e in complaint["timeline"]] == ["registered", "linked"]

    async def test_a_similar_description_links_across_branches(self, api: Api) -> None:
        customer = await api.customer()
        first = await register(api, complaint_body(customer={"id": customer["id"]}))
        matter = {
            **complaint_body()["matter"],
            "branch": "Head office",
            "occurred_at": "2026-10-01T10:00:00+08:00",
        }
        matter["description"] = "我的信用卡被重复扣款两次而柜台拒绝处理。"
        again = complaint_body(channel="email", customer={"id": customer["id"]}, matter=matter)
        assert (await register(api, again, status=200))["id"] == first["id"]

    async def test_a_different_matter_is_a_new_complaint(self, api: Api) -> None:
        customer = await api.customer()
        first = await register(api, complaint_body(customer={"id": customer["id"]}))
        matter = {
            "occurred_at": "2026-10-01T10:00:00+08:00",
            "location": "网上银行",
            "branch": "Online",
            "description": "理财产品的收益说明与实际不符",
        }
        again = complaint_body(channel="app", customer={"id": customer["id"]}, matter=matter)
        other = await register(api, again)
        assert other["id"] != first["id"]

    async def test_a_registration_marked_separate_is_a_complaint_of_its_own(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        customer = await api.customer()
        first = await register(api, complaint_body(customer={"id": customer["id"]}))
        matter = {**complaint_body()["matter"], "description": "ATM吞卡而网点无人处理"}
        other = complaint_body(customer={"id": customer["id"]}, matter=matter, separate=True)
        second = await register(api, other)
        assert (second["linked"], second["id"] != first["id"]) == (False, True)
        assert await scalar(engine, "SELECT count(*) FROM complaints") == 2
        trail = expect(await api.get(f"{COMPLAINTS}/{second['id']}/audit"), 200)
        [registered] = trail["entries"]
        assert registered["data"]["separate_from"] == first["id"]
        untouched = expect(await api.get(f"{COMPLAINTS}/{first['id']}"), 200)
        assert untouched["linked"] == []

    async def test_separate_on_a_matter_with_nothing_open_names_nothing(self, api: Api) -> None:
        customer = await api.customer()
        done = await register(api, complaint_body(customer={"id": customer["id"]}, separate=True))
        trail = expect(await api.get(f"{COMPLAINTS}/{done['id']}/audit"), 200)
        assert "separate_from" not in trail["entries"][0]["data"]

    async def test_another_customers_matter_is_never_linked(self, api: Api) -> None:
        one, two = await api.customer(), await api.customer()
        first = await register(api, complaint_body(customer={"id": one["id"]}))
        second = await register(api, complaint_body(customer={"id": two["id"]}))
        assert second["id"] != first["id"]

    async def test_two_channels_racing_with_one_matter_make_one_complaint(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        customer = await api.customer()
        bodies = [
            complaint_body(channel=channel, customer={"id": customer["id"]})
            for channel in ("phone", "web", "app", "email")
        ]
        answers = await asyncio.gather(*(api.post(COMPLAINTS, b) for b in bodies))
        assert sorted(a.status_code for a in answers) == [200, 200, 200, 201]
        assert len({a.json()["reference"] for a in answers}) == 1
        assert await scalar(engine, "SELECT count(*) FROM complaints") == 1
