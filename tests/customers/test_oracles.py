"""Masking an agent cannot undo: no numbers set or changed, lookups limited and recorded.

Each class reproduces one way the masked numbers were unmasked or re-pointed (issue 10,
finding 1 and the customer half of 7) and shows it closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI

from app.accesslog_router import router as access_log_router
from app.config import Settings
from app.main import create_app
from tests.conftest import make_settings
from tests.fixtures.factories import Api, expect

CUSTOMERS = "/api/v1/customers"
ACCESS_LOG = "/api/v1/access-log"
ID_NUMBER = "11010519491231002X"
OTHER_ID_NUMBER = "110105194912310011"
PHONE = "+8613800138000"
MASKED_PHONE = "+86138****8000"
LOOKUP_LIMIT = 3
CONFLICT_BODY = {
    "error": "Conflict",
    "detail": "a customer with this phone number already exists",
    "constraint": "uq_customers_phone",
}


@pytest.fixture
def settings(db: str) -> Settings:
    return make_settings(db, lookup_limit=LOOKUP_LIMIT, lookup_window_s=3600.0)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app, with the access-log route mounted if the app does not mount it itself."""
    application = create_app(settings)
    if not any(getattr(route, "path", None) == ACCESS_LOG for route in application.routes):
        application.include_router(access_log_router)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def agent(api: Api) -> Api:
    return await api.signed_in_as(await api.agent())


@pytest.fixture
async def supervisor(api: Api) -> Api:
    return await api.signed_in_as(await api.supervisor())


@pytest.fixture
async def victim(api: Api) -> dict[str, Any]:
    """A customer whose numbers an agent sees masked."""
    return await api.customer(name="Victim", phone=PHONE, id_number=ID_NUMBER)


async def log_of(api: Api, user: Api, **filters: Any) -> list[dict[str, Any]]:
    """Every access-log entry of ``user``, oldest first (read as admin)."""
    params = {"agent_id": user.me["id"], "limit": 500, **filters}
    return expect(await api.get(ACCESS_LOG, params=params), 200)["items"]  # type: ignore[no-any-return]


def _fields(body: dict[str, Any]) -> list[str]:
    return [f["field"] for f in body["fields"]]


def _phone(n: int) -> str:
    return f"+86137{n:08d}"


class TestIdNumberSweep:
    """Setting candidate ID numbers on a junk customer, watching for the one 409."""

    async def test_agent_setting_an_id_number_on_a_new_customer_is_refused(
        self, api: Api, agent: Api, victim: dict[str, Any]
    ) -> None:
        for candidate in (ID_NUMBER, OTHER_ID_NUMBER):
            body = expect(await agent.post(CUSTOMERS, {"name": "J", "id_number": candidate}), 403)
            assert _fields(body) == ["id_number"]
        assert [c["id"] for c in expect(await api.get(CUSTOMERS), 200)["items"]] == [victim["id"]]

    async def test_agent_setting_an_id_number_on_an_existing_customer_is_refused_alike(
        self, api: Api, agent: Api, victim: dict[str, Any]
    ) -> None:
        junk = expect(await agent.post(CUSTOMERS, {"name": "Junk"}), 201)
        url = f"{CUSTOMERS}/{junk['id']}"
        taken = await agent.patch(url, {"id_number": ID_NUMBER})
        free = await agent.patch(url, {"id_number": OTHER_ID_NUMBER})
        assert (taken.status_code, free.status_code) == (403, 403)
        assert taken.json() == free.json()
        assert _fields(taken.json()) == ["id_number"]
        assert expect(await api.get(url), 200)["id_number"] is None

    async def test_agent_may_not_clear_an_id_number(
        self, api: Api, agent: Api, victim: dict[str, Any]
    ) -> None:
        url = f"{CUSTOMERS}/{victim['id']}"
        expect(await agent.patch(url, {"id_number": None}), 403)
        assert expect(await api.get(url), 200)["id_number"] == ID_NUMBER

    async def test_supervisor_sets_an_id_number(self, api: Api, supervisor: Api) -> None:
        sent = {"name": "S", "id_number": ID_NUMBER}
        created = expect(await supervisor.post(CUSTOMERS, sent), 201)
        assert created["id_number"] == ID_NUMBER
        changed = await supervisor.patch(
            f"{CUSTOMERS}/{created['id']}", {"id_number": OTHER_ID_NUMBER}
        )
        assert expect(changed, 200)["id_number"] == OTHER_ID_NUMBER


class TestPhoneOverwrite:
    """Re-pointing caller identification (and tier priority) at another person."""

    @pytest.mark.parametrize("phone", ["13900000001", None], ids=["another", "cleared"])
    async def test_agent_may_not_change_an_existing_customers_phone(
        self, api: Api, agent: Api, victim: dict[str, Any], phone: str | None
    ) -> None:
        url = f"{CUSTOMERS}/{victim['id']}"
        body = expect(await agent.patch(url, {"phone": phone}), 403)
        assert _fields(body) == ["phone"]
        assert expect(await api.get(url), 200) == victim

    async def test_agent_may_not_change_the_phone_of_a_customer_they_created(
        self, api: Api, agent: Api
    ) -> None:
        mine = expect(await agent.post(CUSTOMERS, {"name": "Mine", "phone": _phone(1)}), 201)
        expect(await agent.patch(f"{CUSTOMERS}/{mine['id']}", {"phone": _phone(2)}), 403)
        assert expect(await api.get(f"{CUSTOMERS}/{mine['id']}"), 200)["phone"] == _phone(1)

    async def test_supervisor_changes_a_phone(
        self, supervisor: Api, victim: dict[str, Any]
    ) -> None:
        url = f"{CUSTOMERS}/{victim['id']}"
        assert expect(await supervisor.patch(url, {"phone": _phone(3)}), 200)["phone"] == _phone(3)


class TestRelationshipManagerOnCreate:
    """Naming oneself a customer's relationship manager on create (refused on update)."""

    async def test_agent_naming_a_relationship_manager_is_refused(
        self, api: Api, agent: Api
    ) -> None:
        sent = {"name": "X", "phone": PHONE, "relationship_manager_id": agent.me["id"]}
        body = expect(await agent.post(CUSTOMERS, sent), 403)
        assert _fields(body) == ["relationship_manager_id"]
        assert expect(await api.get(CUSTOMERS), 200)["items"] == []

    async def test_every_refused_field_is_named(self, agent: Api) -> None:
        sent = {"name": "X", "id_number": ID_NUMBER, "tier": "gold", "relationship_manager_id": 1}
        body = expect(await agent.post(CUSTOMERS, sent), 403)
        assert _fields(body) == ["id_number", "relationship_manager_id", "tier"]


class TestPhoneSweep:
    """``GET /customers?phone=`` over the hidden digits."""

    async def test_after_the_limit_the_next_lookup_is_429_and_every_attempt_is_logged(
        self, api: Api, agent: Api, victim: dict[str, Any]
    ) -> None:
        for candidate in (_phone(1), _phone(2), PHONE):
            expect(await agent.get(CUSTOMERS, params={"phone": candidate}), 200)
        refused = await agent.get(CUSTOMERS, params={"phone": _phone(4)})
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        entries = await log_of(api, agent)
        assert [(e["kind"], e["outcome"], e["subject_id"]) for e in entries] == [
            ("customer.lookup_phone", "not_found", None),
            ("customer.lookup_phone", "not_found", None),
            ("customer.lookup_phone", "found", victim["id"]),
            ("customer.lookup_phone", "limited", None),
        ]
        assert entries[2]["query"] == MASKED_PHONE
        assert (entries[0]["role"], entries[0]["site"]) == ("agent", "shanghai")

    async def test_over_the_limit_the_right_number_is_refused_like_any_other(
        self, agent: Api, victim: dict[str, Any]
    ) -> None:
        for n in range(LOOKUP_LIMIT):
            expect(await agent.get(CUSTOMERS, params={"phone": _phone(n)}), 200)
        right = await agent.get(CUSTOMERS, params={"phone": PHONE})
        wrong = await agent.get(CUSTOMERS, params={"phone": _phone(99)})
        assert (right.status_code, wrong.status_code) == (429, 429)
        assert PHONE not in right.text

    async def test_the_log_never_holds_a_full_number(
        self, api: Api, agent: Api, victim: dict[str, Any]
    ) -> None:
        searched = [PHONE, "138 0013 8001", "+86 139 0000 0002", "13900000003"]
        for candidate in searched:
            await agent.get(CUSTOMERS, params={"phone": candidate})
        listing = (await api.get(ACCESS_LOG, params={"agent_id": agent.me["id"]})).text
        assert len(await log_of(api, agent)) == len(searched)
        for digits in ("13800138000", "13800138001", "13900000002", "13900000003"):
            assert digits not in listing

    async def test_the_limit_is_each_users_own(self, api: Api, agent: Api) -> None:
        for n in range(LOOKUP_LIMIT):
            expect(await agent.get(CUSTOMERS, params={"phone": _phone(n)}), 200)
        expect(await agent.get(CUSTOMERS, params={"phone": _phone(9)}), 429)
        other = await api.signed_in_as(await api.agent())
        expect(await other.get(CUSTOMERS, params={"phone": _phone(9)}), 200)

    async def test_supervisors_lookups_are_recorded_but_not_limited(
        self, api: Api, supervisor: Api
    ) -> None:
        for n in range(LOOKUP_LIMIT + 2):
            expect(await supervisor.get(CUSTOMERS, params={"phone": _phone(n)}), 200)
        entries = await log_of(api, supervisor)
        assert [e["outcome"] for e in entries] == ["not_found"] * (LOOKUP_LIMIT + 2)

    async def test_a_malformed_number_is_a_422_and_not_counted(self, agent: Api) -> None:
        for _ in range(LOOKUP_LIMIT + 1):
            expect(await agent.get(CUSTOMERS, params={"phone": "call me"}), 422)
        expect(await agent.get(CUSTOMERS, params={"phone": _phone(1)}), 200)

    async def test_listing_without_a_phone_is_neither_counted_nor_recorded(
        self, api: Api, agent: Api
    ) -> None:
        for _ in range(LOOKUP_LIMIT + 1):
            expect(await agent.get(CUSTOMERS), 200)
        assert await log_of(api, agent) == []


class TestConflictOracle:
    """Creating customers with candidate numbers, watching for the one 409."""

    async def test_conflict_answered_to_an_agent_names_nothing_of_the_customer(
        self, agent: Api, victim: dict[str, Any]
    ) -> None:
        response = await agent.post(CUSTOMERS, {"name": "Probe", "phone": "138-0013-8000"})
        assert response.status_code == 409
        assert response.json() == CONFLICT_BODY
        for revealing in (str(victim["id"]), "Victim", "13800138000", "8000", ID_NUMBER[:6]):
            assert revealing not in response.text

    async def test_supervisor_gets_the_same_answer(
        self, supervisor: Api, victim: dict[str, Any]
    ) -> None:
        body = expect(await supervisor.post(CUSTOMERS, {"name": "Y", "phone": PHONE}), 409)
        assert body == CONFLICT_BODY

    async def test_a_create_sweep_is_stopped_though_only_one_candidate_conflicts(
        self, api: Api, agent: Api, victim: dict[str, Any]
    ) -> None:
        for n in range(LOOKUP_LIMIT):
            expect(await agent.post(CUSTOMERS, {"name": "Junk", "phone": _phone(n)}), 201)
        right = await agent.post(CUSTOMERS, {"name": "Junk", "phone": PHONE})
        wrong = await agent.post(CUSTOMERS, {"name": "Junk", "phone": _phone(99)})
        assert (right.status_code, wrong.status_code) == (429, 429), (right.text, wrong.text)
        assert int(right.headers["Retry-After"]) >= 1
        assert right.json()["detail"] == wrong.json()["detail"]
        assert len(expect(await api.get(CUSTOMERS), 200)["items"]) == 1 + LOOKUP_LIMIT

    async def test_conflicts_count_survive_the_rollback_and_are_all_recorded(
        self, api: Api, agent: Api, victim: dict[str, Any]
    ) -> None:
        for _ in range(LOOKUP_LIMIT):
            expect(await agent.post(CUSTOMERS, {"name": "P", "phone": PHONE}), 409)
        expect(await agent.post(CUSTOMERS, {"name": "P", "phone": PHONE}), 429)
        expect(await agent.post(CUSTOMERS, {"name": "P", "phone": _phone(5)}), 429)
        assert [c["id"] for c in expect(await api.get(CUSTOMERS), 200)["items"]] == [victim["id"]]
        entries = await log_of(api, agent, kind="customer.conflict")
        assert [e["outcome"] for e in entries] == ["conflict"] * LOOKUP_LIMIT + ["limited"] * 2
        assert [e["query"] for e in entries] == [MASKED_PHONE] * 4 + ["+86137****0005"]
        assert {e["subject_id"] for e in entries} == {None}

    async def test_creates_without_a_phone_are_not_counted(self, agent: Api) -> None:
        for _ in range(LOOKUP_LIMIT + 1):
            expect(await agent.post(CUSTOMERS, {"name": "C"}), 201)
        expect(await agent.get(CUSTOMERS, params={"phone": _phone(0)}), 200)

    async def test_lookups_and_conflicts_share_one_limit(
        self, agent: Api, victim: dict[str, Any]
    ) -> None:
        for n in range(LOOKUP_LIMIT):
            expect(await agent.get(CUSTOMERS, params={"phone": _phone(n)}), 200)
        expect(await agent.post(CUSTOMERS, {"name": "P", "phone": PHONE}), 429)

    async def test_supervisors_conflicts_are_recorded_but_not_limited(
        self, api: Api, supervisor: Api, victim: dict[str, Any]
    ) -> None:
        other = await api.customer()
        url = f"{CUSTOMERS}/{other['id']}"
        for _ in range(LOOKUP_LIMIT + 1):
            expect(await supervisor.patch(url, {"phone": PHONE}), 409)
        entries = await log_of(api, supervisor)
        assert [(e["kind"], e["outcome"]) for e in entries] == [
            ("customer.conflict", "conflict")
        ] * (LOOKUP_LIMIT + 1)


class TestReadsRecorded:
    async def test_agent_reading_a_customer_is_recorded(
        self, api: Api, agent: Api, victim: dict[str, Any]
    ) -> None:
        expect(await agent.get(f"{CUSTOMERS}/{victim['id']}"), 200)
        expect(await agent.get(f"{CUSTOMERS}/999999"), 404)
        entries = await log_of(api, agent)
        assert [(e["kind"], e["outcome"], e["subject_id"], e["query"]) for e in entries] == [
            ("customer.read", "found", victim["id"], None),
            ("customer.read", "not_found", None, "999999"),
        ]
