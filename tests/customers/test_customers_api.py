"""Customers through the HTTP API: validation, lookup, masking and tier changes."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import Settings
from tests.conftest import make_settings
from tests.fixtures.factories import Api, expect

CUSTOMERS = "/api/v1/customers"
ID_NUMBER = "11010519491231002X"
MASKED_ID_NUMBER = "110105********002X"
PHONE = "+8613800138000"
MASKED_PHONE = "+86138****8000"
LANDLINE = "+861065528888"


def _fields(body: dict[str, Any]) -> list[str]:
    return [f["field"] for f in body["fields"]]


@pytest.fixture
async def agent(api: Api) -> Api:
    return await api.signed_in_as(await api.agent())


@pytest.fixture
async def supervisor(api: Api) -> Api:
    return await api.signed_in_as(await api.supervisor())


class TestCreateCustomer:
    async def test_phone_and_id_number_are_stored_normalised(self, api: Api) -> None:
        sent = {"name": "Zhang San", "phone": "138 0013 8000", "id_number": "11010519491231002x"}
        created = expect(await api.post(CUSTOMERS, sent), 201)
        read = expect(await api.get(f"{CUSTOMERS}/{created['id']}"), 200)
        assert read == created
        assert (read["phone"], read["id_number"]) == (PHONE, ID_NUMBER)
        assert (read["tier"], read["language"], read["relationship_manager_id"]) == (
            "standard",
            "zh-CN",
            None,
        )

    async def test_supervisor_sets_tier_language_and_relationship_manager(
        self, api: Api, supervisor: Api
    ) -> None:
        manager = await api.agent()
        sent = {
            "name": "Li Si",
            "phone": PHONE,
            "tier": "platinum",
            "language": "yue-HK",
            "relationship_manager_id": manager["id"],
        }
        created = expect(await supervisor.post(CUSTOMERS, sent), 201)
        assert (created["tier"], created["language"]) == ("platinum", "yue-HK")
        assert created["relationship_manager_id"] == manager["id"]

    @pytest.mark.parametrize(
        "id_number",
        [
            "110105194912310021",  # check character does not match
            "110105194902300011",  # 30 February
            "110105209912310011",  # born in the future
            "11010519491231002",  # 17 characters
            "1101051949123100211",  # 19 characters
            "11010519491231002Y",  # check character is neither a digit nor X
            "",
        ],
        ids=["check-char", "bad-date", "future", "short", "long", "bad-char", "empty"],
    )
    async def test_bad_id_number_is_a_422_naming_id_number(self, api: Api, id_number: str) -> None:
        body = expect(await api.post(CUSTOMERS, {"name": "X", "id_number": id_number}), 422)
        assert _fields(body) == ["id_number"]
        assert body["detail"].startswith("id_number: ")

    @pytest.mark.parametrize(
        "phone",
        ["abc", "9556", "12345678901", "6552 8888", "+0123456789", "+86 95561", "", "1" * 40],
    )
    async def test_bad_phone_is_a_422_naming_phone(self, api: Api, phone: str) -> None:
        body = expect(await api.post(CUSTOMERS, {"name": "X", "phone": phone}), 422)
        assert _fields(body) == ["phone"]

    async def test_mobile_prefix_not_in_use_is_refused_as_not_a_valid_number(
        self, api: Api
    ) -> None:
        body = expect(await api.post(CUSTOMERS, {"name": "X", "phone": "12345678901"}), 422)
        assert body["detail"] == (
            "phone: phone number is not a valid +86 number (a landline needs its area code)"
        )

    @pytest.mark.parametrize(
        ("sent", "stored"),
        [
            ("010-6552-8888", LANDLINE),
            ("(0755) 8888 8888", "+8675588888888"),
            ("+852 9123 4567", "+85291234567"),
            ("955 61", "95561"),
        ],
    )
    async def test_landlines_foreign_and_service_numbers_are_stored_normalised(
        self, api: Api, sent: str, stored: str
    ) -> None:
        created = expect(await api.post(CUSTOMERS, {"name": "X", "phone": sent}), 201)
        assert expect(await api.get(f"{CUSTOMERS}/{created['id']}"), 200)["phone"] == stored

    @pytest.mark.parametrize(
        ("first", "second"),
        [
            ("010-6552-8888", "+86 10 6552 8888"),
            ("+86 10 6552 8888", "0086 10 6552 8888"),
            ("(010) 65528888", "86 10 6552 8888"),
        ],
    )
    async def test_one_landline_typed_two_ways_is_one_customer(
        self, api: Api, first: str, second: str
    ) -> None:
        expect(await api.post(CUSTOMERS, {"name": "X", "phone": first}), 201)
        body = expect(await api.post(CUSTOMERS, {"name": "Y", "phone": second}), 409)
        assert body["constraint"] == "uq_customers_phone"

    async def test_unknown_tier_is_a_422_listing_the_configured_tiers(self, api: Api) -> None:
        body = expect(await api.post(CUSTOMERS, {"name": "X", "tier": "diamond"}), 422)
        assert _fields(body) == ["tier"]
        assert "'diamond'" in body["detail"]
        assert "platinum, gold, silver, standard" in body["detail"]

    async def test_missing_name_and_unknown_field_are_each_named(self, api: Api) -> None:
        body = expect(await api.post(CUSTOMERS, {"phone": PHONE, "vip": True}), 422)
        assert sorted(_fields(body)) == ["name", "vip"]

    @pytest.mark.parametrize(
        "language", ["Chinese!", "zh-Hans-CN-abcdefgh"], ids=["words", "past-16-characters"]
    )
    async def test_bad_language_is_a_422_naming_language(self, api: Api, language: str) -> None:
        body = expect(await api.post(CUSTOMERS, {"name": "X", "language": language}), 422)
        assert _fields(body) == ["language"]
        assert expect(await api.get(CUSTOMERS), 200)["items"] == []

    async def test_a_language_that_is_no_tag_is_said_in_words(self, api: Api) -> None:
        body = expect(await api.post(CUSTOMERS, {"name": "X", "language": "Chinese!"}), 422)
        assert "should be a language tag such as zh-CN, en or yue-HK" in body["detail"]

    @pytest.mark.parametrize(
        "other_format", [PHONE, "138-0013-8000", "0086 138 0013 8000"], ids=["same", "local", "00"]
    )
    async def test_duplicate_phone_is_a_409(self, api: Api, other_format: str) -> None:
        await api.customer(phone=PHONE)
        body = expect(await api.post(CUSTOMERS, {"name": "Y", "phone": other_format}), 409)
        assert body["constraint"] == "uq_customers_phone"
        assert body["detail"] == "a customer with this phone number already exists"

    async def test_duplicate_id_number_is_a_409(self, api: Api) -> None:
        await api.customer(id_number=ID_NUMBER)
        body = expect(await api.post(CUSTOMERS, {"name": "Y", "id_number": ID_NUMBER}), 409)
        assert body["constraint"] == "uq_customers_id_number"

    @pytest.mark.parametrize("manager_id", [999999, 0, 2**63], ids=["unknown", "zero", "huge"])
    async def test_relationship_manager_that_does_not_exist_is_a_422(
        self, api: Api, manager_id: int
    ) -> None:
        sent = {"name": "X", "relationship_manager_id": manager_id}
        body = expect(await api.post(CUSTOMERS, sent), 422)
        assert _fields(body) == ["relationship_manager_id"]

    async def test_deactivated_relationship_manager_is_a_422(self, api: Api) -> None:
        manager = await api.agent()
        expect(await api.patch(f"/api/v1/agents/{manager['id']}", {"active": False}), 200)
        sent = {"name": "X", "relationship_manager_id": manager["id"]}
        body = expect(await api.post(CUSTOMERS, sent), 422)
        assert _fields(body) == ["relationship_manager_id"]

    async def test_agent_creates_a_customer_and_sees_it_masked(self, api: Api, agent: Api) -> None:
        created = expect(await agent.post(CUSTOMERS, {"name": "Wang Wu", "phone": PHONE}), 201)
        assert (created["phone"], created["id_number"]) == (MASKED_PHONE, None)
        url = f"{CUSTOMERS}/{created['id']}"
        expect(await api.patch(url, {"id_number": ID_NUMBER}), 200)
        read = expect(await agent.get(url), 200)
        assert (read["phone"], read["id_number"]) == (MASKED_PHONE, MASKED_ID_NUMBER)
        full = expect(await api.get(f"{CUSTOMERS}/{created['id']}"), 200)
        assert (full["phone"], full["id_number"]) == (PHONE, ID_NUMBER)

    @pytest.mark.parametrize("tier", ["platinum", "standard"])
    async def test_agent_may_not_set_the_tier(self, api: Api, agent: Api, tier: str) -> None:
        body = expect(await agent.post(CUSTOMERS, {"name": "X", "phone": PHONE, "tier": tier}), 403)
        assert "tier" in body["detail"]
        assert expect(await api.get(CUSTOMERS), 200)["items"] == []

    async def test_creating_a_customer_writes_customer_created(self, api: Api) -> None:
        cursor = await api.event_cursor()
        created = await api.customer(tier="gold")
        subject = {"type": "customer", "id": str(created["id"])}

        def created_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [e for e in events if e["subject"] == subject]

        [event] = created_events(await api.events_until(cursor, created_events))
        assert (event["type"], event["data"]) == ("customer.created", {"tier": "gold"})


class TestListCustomers:
    @pytest.mark.parametrize(
        "lookup",
        [
            "13800138000",
            "138 0013 8000",
            "+86 138-0013-8000",
            "008613800138000",
            "86.138.0013.8000",
        ],
    )
    async def test_lookup_by_phone_in_another_format_finds_the_customer(
        self, api: Api, lookup: str
    ) -> None:
        await api.customer(phone="+8613900000000")
        created = await api.customer(phone=PHONE)
        page = expect(await api.get(CUSTOMERS, params={"phone": lookup}), 200)
        assert [c["id"] for c in page["items"]] == [created["id"]]

    @pytest.mark.parametrize(
        "lookup",
        [
            "010-6552-8888",
            "(010) 6552 8888",
            "01065528888",
            "+86 10 6552 8888",
            "+86 (0)10 6552 8888",
            "0086 10 6552 8888",
            "861065528888",
        ],
    )
    async def test_lookup_by_a_landline_typed_any_way_finds_the_customer(
        self, api: Api, lookup: str
    ) -> None:
        await api.customer(phone="010-6552-8889")
        created = await api.customer(phone="+86 10 6552 8888")
        page = expect(await api.get(CUSTOMERS, params={"phone": lookup}), 200)
        assert [c["id"] for c in page["items"]] == [created["id"]]

    async def test_lookup_by_a_service_number_finds_the_customer(self, api: Api) -> None:
        created = await api.customer(phone="95561")
        page = expect(await api.get(CUSTOMERS, params={"phone": "955 61"}), 200)
        assert [c["id"] for c in page["items"]] == [created["id"]]

    async def test_lookup_of_an_unknown_phone_finds_nothing(self, api: Api) -> None:
        await api.customer(phone=PHONE)
        page = expect(await api.get(CUSTOMERS, params={"phone": "13900000000"}), 200)
        assert page == {"items": [], "next_cursor": None}

    @pytest.mark.parametrize("lookup", ["call me", "12345678901", "6552 8888"])
    async def test_lookup_by_a_malformed_phone_is_a_422_naming_phone(
        self, api: Api, lookup: str
    ) -> None:
        body = expect(await api.get(CUSTOMERS, params={"phone": lookup}), 422)
        assert _fields(body) == ["phone"]

    async def test_agent_looking_up_by_phone_sees_it_masked(self, api: Api, agent: Api) -> None:
        await api.customer(phone=PHONE, id_number=ID_NUMBER)
        page = expect(await agent.get(CUSTOMERS, params={"phone": PHONE}), 200)
        [found] = page["items"]
        assert (found["phone"], found["id_number"]) == (MASKED_PHONE, MASKED_ID_NUMBER)

    async def test_tier_filter_lists_only_that_tier(self, api: Api) -> None:
        gold = await api.customer(tier="gold")
        await api.customer(tier="silver")
        page = expect(await api.get(CUSTOMERS, params={"tier": "gold"}), 200)
        assert [c["id"] for c in page["items"]] == [gold["id"]]

    async def test_limit_and_cursor_cover_every_customer_exactly_once(self, api: Api) -> None:
        created = [(await api.customer())["id"] for _ in range(5)]
        seen: list[int] = []
        params: dict[str, Any] = {"limit": 2}
        while True:
            page = expect(await api.get(CUSTOMERS, params=params), 200)
            seen.extend(c["id"] for c in page["items"])
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
        assert seen == created


class TestGetCustomer:
    @pytest.mark.parametrize(
        ("role", "masked"), [("agent", True), ("supervisor", False), ("admin", False)]
    )
    async def test_phone_and_id_number_are_masked_for_agents_only(
        self, api: Api, role: str, masked: bool
    ) -> None:
        created = await api.customer(phone=PHONE, id_number=ID_NUMBER)
        reader = api if role == "admin" else await api.signed_in_as(await api.agent(role=role))
        body = expect(await reader.get(f"{CUSTOMERS}/{created['id']}"), 200)
        expected = (MASKED_PHONE, MASKED_ID_NUMBER) if masked else (PHONE, ID_NUMBER)
        assert (body["phone"], body["id_number"]) == expected

    async def test_unknown_customer_is_a_404(self, api: Api) -> None:
        body = expect(await api.get(f"{CUSTOMERS}/999999"), 404)
        assert body == {"error": "CustomerNotFound", "detail": "customer 999999 does not exist"}

    @pytest.mark.parametrize("customer_id", ["0", "9223372036854775808", "abc"])
    async def test_impossible_id_is_a_422(self, api: Api, customer_id: str) -> None:
        body = expect(await api.get(f"{CUSTOMERS}/{customer_id}"), 422)
        assert _fields(body) == ["customer_id"]


class TestUpdateCustomer:
    async def test_partial_update_changes_only_the_fields_sent(self, api: Api) -> None:
        created = await api.customer(phone=PHONE, id_number=ID_NUMBER, tier="gold")
        url = f"{CUSTOMERS}/{created['id']}"
        updated = expect(await api.patch(url, {"language": "en", "phone": "139 0000 0000"}), 200)
        assert (updated["language"], updated["phone"]) == ("en", "+8613900000000")
        assert (updated["id_number"], updated["tier"], updated["name"]) == (
            ID_NUMBER,
            "gold",
            created["name"],
        )
        assert expect(await api.get(url), 200) == updated

    async def test_phone_and_id_number_can_be_cleared(self, api: Api) -> None:
        created = await api.customer(phone=PHONE, id_number=ID_NUMBER)
        url = f"{CUSTOMERS}/{created['id']}"
        updated = expect(await api.patch(url, {"phone": None, "id_number": None}), 200)
        assert (updated["phone"], updated["id_number"]) == (None, None)

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"phone": "abc"}, "phone"),
            ({"id_number": "110105194912310021"}, "id_number"),
            ({"tier": "diamond"}, "tier"),
            ({"relationship_manager_id": 999999}, "relationship_manager_id"),
            ({"name": None}, "name"),
            ({"tier": None}, "tier"),
            ({"language": None}, "language"),
            ({"name": ""}, "name"),
            ({"vip": True}, "vip"),
        ],
        ids=[
            "phone",
            "id-number",
            "tier",
            "manager",
            "null-name",
            "null-tier",
            "null-language",
            "empty-name",
            "unknown-field",
        ],
    )
    async def test_bad_change_is_a_422_naming_the_field(
        self, api: Api, change: dict[str, Any], field: str
    ) -> None:
        created = await api.customer(tier="gold")
        url = f"{CUSTOMERS}/{created['id']}"
        body = expect(await api.patch(url, change), 422)
        assert _fields(body) == [field]
        assert expect(await api.get(url), 200) == created

    async def test_phone_of_another_customer_is_a_409(self, api: Api) -> None:
        await api.customer(phone=PHONE)
        other = await api.customer()
        body = expect(await api.patch(f"{CUSTOMERS}/{other['id']}", {"phone": PHONE}), 409)
        assert body["constraint"] == "uq_customers_phone"

    @pytest.mark.parametrize(
        "change",
        [{"tier": "platinum"}, {"tier": "standard"}, {"relationship_manager_id": None}],
        ids=["tier-up", "tier-same", "manager"],
    )
    async def test_agent_may_not_change_tier_or_manager(
        self, api: Api, agent: Api, change: dict[str, Any]
    ) -> None:
        created = await api.customer()
        url = f"{CUSTOMERS}/{created['id']}"
        expect(await agent.patch(url, change), 403)
        assert expect(await api.get(url), 200) == created

    async def test_agent_changes_the_name_and_sees_the_numbers_masked(
        self, api: Api, agent: Api
    ) -> None:
        created = await api.customer(phone=PHONE)
        body = expect(await agent.patch(f"{CUSTOMERS}/{created['id']}", {"name": "New"}), 200)
        assert (body["name"], body["phone"]) == ("New", MASKED_PHONE)

    async def test_supervisor_changing_the_tier_writes_customer_tier_changed(
        self, api: Api, supervisor: Api
    ) -> None:
        created = await api.customer()
        subject = {"type": "customer", "id": str(created["id"])}
        cursor = await api.event_cursor()

        expect(await supervisor.patch(f"{CUSTOMERS}/{created['id']}", {"name": "Renamed"}), 200)
        body = expect(await supervisor.patch(f"{CUSTOMERS}/{created['id']}", {"tier": "gold"}), 200)
        assert body["tier"] == "gold"

        def tier_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [
                e
                for e in events
                if e["type"] == "customer.tier_changed" and e["subject"] == subject
            ]

        [event] = tier_events(await api.events_until(cursor, tier_events))
        assert event["data"] == {"tier": "gold", "previous": "standard"}
        assert event["actor"] == f"agent:{supervisor.me['id']}"

    async def test_unknown_customer_is_a_404(self, api: Api) -> None:
        expect(await api.patch(f"{CUSTOMERS}/999999", {"name": "X"}), 404)


class TestDefaultPhoneRegion:
    @pytest.fixture
    def settings(self, db: str) -> Settings:
        return make_settings(db, default_phone_region="HK")

    async def test_numbers_without_a_country_code_are_read_in_the_configured_region(
        self, api: Api
    ) -> None:
        created = expect(await api.post(CUSTOMERS, {"name": "X", "phone": "9123 4567"}), 201)
        url = f"{CUSTOMERS}/{created['id']}"
        assert expect(await api.get(url), 200)["phone"] == "+85291234567"
        updated = expect(await api.patch(url, {"phone": "6123-4567"}), 200)
        assert updated["phone"] == "+85261234567"

    async def test_a_chinese_national_number_is_refused_outside_china(self, api: Api) -> None:
        body = expect(await api.post(CUSTOMERS, {"name": "X", "phone": "010-6552-8888"}), 422)
        assert _fields(body) == ["phone"]
        assert "+852" in body["detail"]
