"""The access log: who may read it, how it pages and filters, and when an entry is kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.accesslog import (
    Access,
    AccessKind,
    AccessLogEntry,
    AccessOutcome,
    record_access,
    record_access_apart,
)
from app.accesslog_router import router as access_log_router
from app.agents.models import Role
from app.agents.permissions import Principal
from app.config import Settings
from app.db import unit_of_work
from app.main import create_app
from tests.fixtures.factories import Api, expect

ACCESS_LOG = "/api/v1/access-log"
CUSTOMERS = "/api/v1/customers"


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app, with the access-log route mounted if the app does not mount it itself."""
    application = create_app(settings)
    if not any(getattr(route, "path", None) == ACCESS_LOG for route in application.routes):
        application.include_router(access_log_router)
    async with application.router.lifespan_context(application):
        yield application


async def reads_customer(user: Api, customer: dict[str, Any]) -> None:
    """One ``customer.read`` entry for ``user``."""
    expect(await user.get(f"{CUSTOMERS}/{customer['id']}"), 200)


def agents_of(page: dict[str, Any]) -> list[int]:
    return [entry["agent_id"] for entry in page["items"]]


class TestWhoReadsTheLog:
    async def test_supervisor_reads_only_the_agents_of_their_own_site(self, api: Api) -> None:
        customer = await api.customer()
        here = await api.signed_in_as(await api.agent(site="shanghai"))
        there = await api.signed_in_as(await api.agent(site="beijing"))
        boss = await api.signed_in_as(await api.supervisor(site="shanghai"))
        peer = await api.signed_in_as(await api.supervisor(site="shanghai"))
        for user in (here, there, boss, peer, api):
            await reads_customer(user, customer)

        page = expect(await boss.get(ACCESS_LOG), 200)
        assert agents_of(page) == [here.me["id"]]
        assert page["items"][0]["site"] == "shanghai"
        filtered = expect(await boss.get(ACCESS_LOG, params={"agent_id": there.me["id"]}), 200)
        assert filtered["items"] == []

    async def test_admin_reads_every_entry(self, api: Api) -> None:
        customer = await api.customer()
        here = await api.signed_in_as(await api.agent(site="shanghai"))
        there = await api.signed_in_as(await api.agent(site="beijing"))
        boss = await api.signed_in_as(await api.supervisor(site="shanghai"))
        for user in (here, there, boss, api):
            await reads_customer(user, customer)
        page = expect(await api.get(ACCESS_LOG), 200)
        expected = [here.me["id"], there.me["id"], boss.me["id"], api.me["id"]]
        assert agents_of(page) == expected

    async def test_agent_may_not_read_the_log(self, api: Api) -> None:
        agent = await api.signed_in_as(await api.agent())
        await reads_customer(agent, await api.customer())
        body = expect(await agent.get(ACCESS_LOG), 403)
        assert body["error"] == "Forbidden"

    async def test_without_a_token_it_is_a_401(self, api: Api) -> None:
        expect(await api.client.get(ACCESS_LOG), 401)


class TestListing:
    async def test_filters_by_agent_and_kind(self, api: Api) -> None:
        customer = await api.customer(phone="+8613800138000")
        first = await api.signed_in_as(await api.agent())
        second = await api.signed_in_as(await api.agent())
        await reads_customer(first, customer)
        expect(await first.get(CUSTOMERS, params={"phone": "13800138000"}), 200)
        await reads_customer(second, customer)

        params = {"agent_id": first.me["id"], "kind": "customer.lookup_phone"}
        [entry] = expect(await api.get(ACCESS_LOG, params=params), 200)["items"]
        assert entry["agent_id"] == first.me["id"]
        assert (entry["kind"], entry["outcome"]) == ("customer.lookup_phone", "found")
        assert (entry["subject_id"], entry["query"]) == (customer["id"], "+86138****8000")
        reads = expect(await api.get(ACCESS_LOG, params={"kind": "customer.read"}), 200)
        assert agents_of(reads) == [first.me["id"], second.me["id"]]

    async def test_limit_and_cursor_cover_every_entry_exactly_once(self, api: Api) -> None:
        customer = await api.customer()
        for _ in range(5):
            await reads_customer(api, customer)
        seen: list[int] = []
        params: dict[str, Any] = {"limit": 2}
        while True:
            page = expect(await api.get(ACCESS_LOG, params=params), 200)
            seen.extend(entry["id"] for entry in page["items"])
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
        assert len(seen) == 5
        assert seen == sorted(set(seen))

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"kind": "customer.delete"}, "kind"),
            ({"cursor": "x"}, "cursor"),
            ({"agent_id": 0}, "agent_id"),
        ],
    )
    async def test_bad_parameters_are_a_422_naming_them(
        self, api: Api, params: dict[str, Any], field: str
    ) -> None:
        body = expect(await api.get(ACCESS_LOG, params=params), 422)
        assert [f["field"] for f in body["fields"]] == [field]


class TestWhenAnEntryIsKept:
    @pytest.fixture
    def admin(self, api: Api) -> Principal:
        return Principal(id=api.me["id"], username="admin", role=Role.admin, site=None)

    async def test_an_entry_in_the_requests_transaction_goes_with_its_rollback(
        self, app: FastAPI, admin: Principal
    ) -> None:
        access = Access(AccessKind.customer_read, AccessOutcome.found, subject_id=1)
        async with app.state.sessionmaker() as session:
            await record_access(session, admin, access)
            await session.rollback()
        assert await self._entries(app) == []

    async def test_an_entry_kept_apart_survives_the_requests_rollback(
        self, app: FastAPI, admin: Principal
    ) -> None:
        access = Access(
            AccessKind.customer_lookup_phone, AccessOutcome.limited, query="+86138****8000"
        )
        async with app.state.sessionmaker() as session:
            await record_access(
                session, admin, Access(AccessKind.customer_read, AccessOutcome.found)
            )
            await record_access_apart(app.state.sessionmaker, admin, access)
            await session.rollback()
        [entry] = await self._entries(app)
        assert (entry.kind, entry.outcome, entry.query) == (
            "customer.lookup_phone",
            "limited",
            "+86138****8000",
        )
        assert (entry.agent_id, entry.role, entry.site) == (admin.id, "admin", None)

    @staticmethod
    async def _entries(app: FastAPI) -> list[AccessLogEntry]:
        async with unit_of_work(app.state.sessionmaker) as session:
            return list(await session.scalars(select(AccessLogEntry).order_by(AccessLogEntry.id)))
