"""Error bodies: 422 naming fields, 409 by constraint name, idempotent creates, no 500s."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.errors import install_error_handlers
from tests.complaints.test_registration import complaint_body
from tests.fixtures.factories import AGENT_PASSWORD, Api, expect, unique
from tests.routing.acd import queue

SKILLS = "/api/v1/skills"
AGENTS = "/api/v1/agents"
CUSTOMERS = "/api/v1/customers"


def _fields(body: dict[str, Any]) -> list[str]:
    return [f["field"] for f in body["fields"]]


def _agent_body(**overrides: Any) -> dict[str, Any]:
    body = {"name": "Idem Potent", "username": unique("idem"), "password": AGENT_PASSWORD}
    return {**body, **overrides}


def _is_error_body(body: Any) -> bool:
    return (
        isinstance(body, dict)
        and isinstance(body.get("error"), str)
        and isinstance(body.get("detail"), str)
    )


class TestValidationErrorBody:
    @pytest.mark.parametrize(
        ("url", "body", "field"),
        [
            (SKILLS, {"name": 123}, "name"),
            (SKILLS, {"name": "ok", "description": ["a"]}, "description"),
            (AGENTS, _agent_body(skills="credit_card"), "skills"),
            (AGENTS, _agent_body(skills=[{"skill": "x"}]), "skills.0.level"),
            (AGENTS, _agent_body(capacity={"voice": "many"}), "capacity.voice"),
            (AGENTS, _agent_body(capacity=[1]), "capacity"),
            (AGENTS, _agent_body(name=None), "name"),
            (CUSTOMERS, {"name": "X", "relationship_manager_id": "me"}, "relationship_manager_id"),
            (CUSTOMERS, {"name": "X", "phone": 13800138000}, "phone"),
            (
                "/api/v1/agents/1/status",
                {"status": "available", "status_reason": 5},
                "status_reason",
            ),
        ],
        ids=[
            "skill-name-int",
            "description-list",
            "skills-string",
            "level-missing",
            "capacity-string",
            "capacity-list",
            "name-null",
            "manager-string",
            "phone-int",
            "reason-int",
        ],
    )
    async def test_wrong_type_is_a_422_naming_the_field(
        self, api: Api, url: str, body: dict[str, Any], field: str
    ) -> None:
        response = expect(await api.post(url, body), 422)
        assert response["error"] == "ValidationError"
        assert _fields(response) == [field]
        assert response["detail"].startswith(f"{field}: ")

    @pytest.mark.parametrize("url", [SKILLS, AGENTS, CUSTOMERS])
    @pytest.mark.parametrize(
        "raw",
        [b"{", b'{"name": }', b"\xff\xfe", b"", b"null", b"[]", b'"name"'],
        ids=["unclosed", "no-value", "not-utf8", "empty", "null", "array", "string"],
    )
    async def test_malformed_body_is_a_422_not_a_500(self, api: Api, url: str, raw: bytes) -> None:
        headers = {**api.headers, "Content-Type": "application/json"}
        response = await api.client.post(url, content=raw, headers=headers)
        assert response.status_code == 422, response.text
        assert _is_error_body(response.json())

    @pytest.mark.parametrize(
        ("raw", "message"),
        [
            (b'{"name": }', "invalid JSON at line 1 column 10: Expecting value"),
            (b'{\n  "name": "x",\n}', "invalid JSON at line 3 column 1: Expecting property name"),
            (b'{"name": "\xff"}', "not valid UTF-8"),
            (b"[" * 100_000, "JSON nested too deeply to parse"),
            (b'{"name": ' + b"1" * 5000 + b"}", "invalid JSON: a number has too many digits"),
        ],
        ids=["no-value", "trailing-comma", "not-utf8", "nested", "long-number"],
    )
    async def test_malformed_body_is_a_422_naming_the_body_and_what_is_wrong(
        self, api: Api, raw: bytes, message: str
    ) -> None:
        headers = {**api.headers, "Content-Type": "application/json"}
        response = await api.client.post(SKILLS, content=raw, headers=headers)
        body = expect(response, 422)
        assert body["fields"][0]["field"] == "body"
        assert body["fields"][0]["message"].startswith(message), body
        assert body["detail"].startswith(f"body: {message}")

    async def test_form_body_where_json_is_expected_is_a_422(self, api: Api) -> None:
        response = await api.client.post(SKILLS, data={"name": "x"}, headers=api.headers)
        assert response.status_code == 422, response.text
        assert _is_error_body(response.json())

    async def test_json_body_where_the_login_form_is_expected_is_a_422(self, api: Api) -> None:
        response = await api.client.post(
            "/api/v1/auth/token", json={"username": "admin", "password": "x"}
        )
        body = expect(response, 422)
        assert sorted(_fields(body)) == ["password", "username"]

    @pytest.mark.parametrize("url", [AGENTS, CUSTOMERS, "/api/v1/events"])
    @pytest.mark.parametrize("limit", ["abc", "0", "-1", "100000", "1.5", ""])
    async def test_limit_of_the_wrong_type_or_range_is_a_422_naming_limit(
        self, api: Api, url: str, limit: str
    ) -> None:
        body = expect(await api.get(url, params={"limit": limit}), 422)
        assert _fields(body) == ["limit"]

    @pytest.mark.parametrize("url", [AGENTS, CUSTOMERS])
    @pytest.mark.parametrize(
        "cursor",
        ["abc", "-1", "1.5", "1e3", "9" * 41, "99999999999999999999"],
        ids=["letters", "negative", "decimal", "exponent", "too-long", "past-bigint"],
    )
    async def test_bad_cursor_is_a_4xx_not_a_500(self, api: Api, url: str, cursor: str) -> None:
        response = await api.get(url, params={"cursor": cursor})
        assert response.status_code == 422, response.text
        assert _is_error_body(response.json())

    async def test_cursor_of_unicode_digits_is_a_422(self, api: Api) -> None:
        response = await api.get(AGENTS, params={"cursor": "²"})
        assert response.status_code == 422

    @pytest.mark.parametrize("after", ["garbage", "1", "1-", "-1", "a-b", "99999999999999999999-1"])
    async def test_bad_event_cursor_is_a_422(self, api: Api, after: str) -> None:
        response = await api.get("/api/v1/events", params={"after": after})
        assert response.status_code == 422, response.text
        assert _is_error_body(response.json())

    @pytest.mark.parametrize(
        ("url", "body"),
        [
            (AGENTS, _agent_body(name="nul\x00name")),
            (AGENTS, _agent_body(team="a\x00b")),
            (SKILLS, {"name": "nul_description", "description": "\x00"}),
            (CUSTOMERS, {"name": "nul\x00name"}),
        ],
        ids=["agent-name", "agent-team", "skill-description", "customer-name"],
    )
    async def test_text_the_database_cannot_store_is_a_422_not_a_500(
        self, api: Api, url: str, body: dict[str, Any]
    ) -> None:
        response = await api.post(url, body)
        assert response.status_code == 422, response.text
        assert _is_error_body(response.json())

    async def test_a_nul_character_in_a_contact_is_a_422_naming_the_field(self, api: Api) -> None:
        q = await queue(api)
        # a language with a NUL is no language tag, and is refused as one
        for field, said in (("subject", "NUL"), ("language", "language tag")):
            body = {"channel": "chat", "queue": q["name"], field: "a\x00b"}
            refused = expect(await api.post("/api/v1/contacts", body), 422)
            assert _fields(refused) == [field]
            assert said in refused["fields"][0]["message"]
        listed = expect(await api.get("/api/v1/contacts", params={"queue": q["name"]}), 200)
        assert listed["items"] == []

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            (complaint_body(grounds="a\x00b"), "grounds"),
            (
                complaint_body(complainant={**complaint_body()["complainant"], "name": "王\x00芳"}),
                "complainant.name",
            ),
            (
                complaint_body(matter={**complaint_body()["matter"], "description": "\x00"}),
                "matter.description",
            ),
        ],
        ids=["grounds", "complainant-name", "matter-description"],
    )
    async def test_a_nul_character_in_a_complaint_is_a_422_naming_the_field(
        self, api: Api, body: dict[str, Any], field: str
    ) -> None:
        refused = expect(await api.post("/api/v1/complaints", body), 422)
        assert _fields(refused) == [field]

    async def test_a_value_the_database_refuses_on_the_driver_is_a_422_not_a_500(self) -> None:
        # The net under the schemas, for statements run on the driver without SQLAlchemy.
        app = FastAPI()
        install_error_handlers(app)

        @app.post("/refused")
        async def refused() -> None:
            raise asyncpg.CharacterNotInRepertoireError("invalid byte sequence for encoding")

        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post("/refused")
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["error"] == "InvalidInput"
        assert "cannot be stored" in body["detail"]

    async def test_site_query_with_a_nul_character_is_a_422_naming_it(self, api: Api) -> None:
        response = await api.get(AGENTS, params={"site": "a\x00b", "role": "agent"})
        assert response.status_code == 422, response.text
        assert [(e["field"], "NUL" in e["message"]) for e in response.json()["fields"]] == [
            ("site", True)
        ]

    async def test_unknown_route_is_a_404_error_body(self, api: Api) -> None:
        body = expect(await api.get("/api/v1/nowhere"), 404)
        assert body["error"] == "NotFound"

    async def test_wrong_method_is_a_405_error_body(self, api: Api) -> None:
        response = await api.client.delete(SKILLS, headers=api.headers)
        body = expect(response, 405)
        assert body["error"] == "MethodNotAllowed"


class TestIntegrityErrorBody:
    async def test_conflict_names_the_violated_constraint(self, api: Api) -> None:
        await api.agent(username="dupe")
        body = expect(await api.post(AGENTS, _agent_body(username="DUPE")), 409)
        assert body == {
            "error": "Conflict",
            "detail": "an agent with this username already exists",
            "constraint": "uq_agents_username",
        }

    async def test_concurrent_duplicate_usernames_give_one_201_and_one_409(self, api: Api) -> None:
        responses = await asyncio.gather(
            api.post(AGENTS, _agent_body(username="racer")),
            api.post(AGENTS, _agent_body(username="Racer")),
        )
        assert sorted(r.status_code for r in responses) == [201, 409]
        [conflict] = [r.json() for r in responses if r.status_code == 409]
        assert conflict["constraint"] == "uq_agents_username"

    async def test_concurrent_duplicate_skills_give_one_201_and_one_409(self, api: Api) -> None:
        responses = await asyncio.gather(*(api.post(SKILLS, {"name": "racing"}) for _ in range(3)))
        assert sorted(r.status_code for r in responses) == [201, 409, 409]
        assert {r.json().get("constraint") for r in responses if r.status_code == 409} == {
            "uq_skills_name"
        }
        assert [s["name"] for s in expect(await api.get(SKILLS), 200)["items"]] == ["racing"]


def _create_bodies() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(url, body, a different body) for each create route."""
    return [
        (SKILLS, {"name": "idem_skill"}, {"name": "idem_skill", "description": "other"}),
        (AGENTS, _agent_body(username="idem_agent"), _agent_body(username="idem_other")),
        (CUSTOMERS, {"name": "Idem", "phone": "+8613800138000"}, {"name": "Other"}),
    ]


CREATES = _create_bodies()
CREATE_IDS = ["skills", "agents", "customers"]


async def _count(api: Api, url: str) -> int:
    body = expect(await api.get(url, params={"limit": 500}), 200)
    items = body if isinstance(body, list) else body["items"]
    return len(items)


class TestIdempotencyKey:
    @pytest.mark.parametrize(("url", "body", "other"), CREATES, ids=CREATE_IDS)
    async def test_retry_with_the_same_key_returns_the_same_resource(
        self, api: Api, url: str, body: dict[str, Any], other: dict[str, Any]
    ) -> None:
        before = await _count(api, url)
        key = {"Idempotency-Key": unique("key-")}
        first = expect(await api.post(url, body, headers=key), 201)
        again = expect(await api.post(url, body, headers=key), 201)
        assert again == first
        assert await _count(api, url) == before + 1

    @pytest.mark.parametrize(("url", "body", "other"), CREATES, ids=CREATE_IDS)
    async def test_same_key_with_a_different_body_is_a_409(
        self, api: Api, url: str, body: dict[str, Any], other: dict[str, Any]
    ) -> None:
        key = {"Idempotency-Key": unique("key-")}
        expect(await api.post(url, body, headers=key), 201)
        before = await _count(api, url)
        conflict = expect(await api.post(url, other, headers=key), 409)
        assert conflict["error"] == "Conflict"
        assert "Idempotency-Key" in conflict["detail"]
        assert await _count(api, url) == before

    @pytest.mark.parametrize(("url", "body", "other"), CREATES, ids=CREATE_IDS)
    async def test_concurrent_requests_with_the_same_key_create_one_resource(
        self, api: Api, url: str, body: dict[str, Any], other: dict[str, Any]
    ) -> None:
        before = await _count(api, url)
        key = {"Idempotency-Key": unique("key-")}
        responses = await asyncio.gather(*(api.post(url, body, headers=key) for _ in range(4)))
        assert [r.status_code for r in responses] == [201] * 4, [r.text for r in responses]
        first, *others = (r.json() for r in responses)
        assert all(body == first for body in others)
        assert await _count(api, url) == before + 1

    async def test_without_a_key_each_request_creates(self, api: Api) -> None:
        expect(await api.post(CUSTOMERS, {"name": "A"}), 201)
        expect(await api.post(CUSTOMERS, {"name": "A"}), 201)
        assert await _count(api, CUSTOMERS) == 2

    async def test_the_same_key_from_two_users_creates_two_resources(self, api: Api) -> None:
        other = await api.signed_in_as(await api.supervisor())
        key = {"Idempotency-Key": "shared-key"}
        mine = expect(await api.post(CUSTOMERS, {"name": "A"}, headers=key), 201)
        theirs = expect(await other.post(CUSTOMERS, {"name": "A"}, headers=key), 201)
        assert mine["id"] != theirs["id"]

    async def test_a_failed_create_does_not_use_up_the_key(self, api: Api) -> None:
        key = {"Idempotency-Key": unique("key-")}
        expect(await api.post(CUSTOMERS, {"name": "A", "tier": "diamond"}, headers=key), 422)
        created = expect(await api.post(CUSTOMERS, {"name": "A", "tier": "gold"}, headers=key), 201)
        assert created["tier"] == "gold"

    @pytest.mark.parametrize("key", ["", "k" * 201], ids=["empty", "too-long"])
    async def test_malformed_key_is_a_422(self, api: Api, key: str) -> None:
        response = await api.post(SKILLS, {"name": "keyed"}, headers={"Idempotency-Key": key})
        body = expect(response, 422)
        assert "Idempotency-Key" in body["detail"]
        assert await _count(api, SKILLS) == 0
