"""Token login (POST /api/v1/auth/token) and bearer-token checks on protected routes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.agents.security import ALGORITHM, issue_token
from tests.fixtures.factories import ADMIN_PASSWORD, AGENT_PASSWORD, Api, expect

TOKEN_URL = "/api/v1/auth/token"
ME_URL = "/api/v1/agents/me"


async def _login(client: AsyncClient, username: str, password: str) -> tuple[int, dict[str, str]]:
    response = await client.post(TOKEN_URL, data={"username": username, "password": password})
    return response.status_code, response.json()


async def _me_with(client: AsyncClient, token: str) -> int:
    response = await client.get(ME_URL, headers={"Authorization": f"Bearer {token}"})
    if response.status_code == 401:
        body = response.json()
        assert set(body) >= {"error", "detail"}
        assert response.headers["www-authenticate"] == "Bearer"
    return response.status_code


class TestToken:
    async def test_right_password_issues_a_bearer_token_that_expires(
        self, api: Api, app: FastAPI
    ) -> None:
        agent = await api.agent()
        status, body = await _login(api.client, agent["username"], AGENT_PASSWORD)
        assert status == 200
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == app.state.settings.token_ttl_s
        claims = jwt.decode(body["access_token"], app.state.jwt_secret, algorithms=[ALGORITHM])
        assert claims["sub"] == str(agent["id"])
        assert claims["exp"] - claims["iat"] == body["expires_in"]
        assert await _me_with(api.client, body["access_token"]) == 200

    async def test_username_is_matched_without_regard_to_case(self, api: Api) -> None:
        agent = await api.agent(username="MixedCase")
        status, _ = await _login(api.client, "mixedCASE", AGENT_PASSWORD)
        assert agent["username"] == "mixedcase"
        assert status == 200

    async def test_wrong_password_unknown_user_and_deactivated_agent_get_the_same_401(
        self, api: Api
    ) -> None:
        agent = await api.agent()
        gone = await api.agent()
        expect(await api.patch(f"/api/v1/agents/{gone['id']}", {"active": False}), 200)

        wrong_password = await _login(api.client, agent["username"], "not-the-password")
        unknown_user = await _login(api.client, "nobody-here", AGENT_PASSWORD)
        deactivated = await _login(api.client, gone["username"], AGENT_PASSWORD)

        assert wrong_password[0] == unknown_user[0] == deactivated[0] == 401
        assert wrong_password[1] == unknown_user[1] == deactivated[1]
        assert wrong_password[1]["detail"] == "invalid username or password"

    async def test_missing_form_fields_are_named_in_a_422(self, client: AsyncClient) -> None:
        response = await client.post(TOKEN_URL, data={"username": "admin"})
        body = expect(response, 422)
        assert [f["field"] for f in body["fields"]] == ["password"]

    async def test_seeded_admin_signs_in_with_the_configured_password(
        self, client: AsyncClient
    ) -> None:
        status, body = await _login(client, "admin", ADMIN_PASSWORD)
        assert status == 200
        assert await _me_with(client, body["access_token"]) == 200


class TestBearerToken:
    async def test_missing_token_is_rejected_with_401(self, client: AsyncClient) -> None:
        response = await client.get(ME_URL)
        body = expect(response, 401)
        assert body["error"] == "Unauthorized"
        assert "bearer token is required" in body["detail"]

    async def test_expired_token_is_rejected_with_401(self, api: Api, app: FastAPI) -> None:
        an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
        issued = issue_token(app.state.jwt_secret, agent_id=api.me["id"], ttl_s=60, now=an_hour_ago)
        assert await _me_with(api.client, issued.access_token) == 401

    async def test_token_signed_with_another_secret_is_rejected_with_401(
        self, api: Api, app: FastAPI
    ) -> None:
        now = datetime.now(UTC)
        genuine = issue_token(app.state.jwt_secret, agent_id=api.me["id"], ttl_s=600, now=now)
        forged = issue_token(
            "another-secret-" + "y" * 32, agent_id=api.me["id"], ttl_s=600, now=now
        )
        assert await _me_with(api.client, genuine.access_token) == 200
        assert await _me_with(api.client, forged.access_token) == 401

    @pytest.mark.parametrize(
        "token",
        [
            "garbage",
            "a.b.c",
            jwt.encode({"sub": "1", "exp": 4102444800, "typ": "access"}, None, algorithm="none"),
        ],
        ids=["not-a-jwt", "three-garbage-parts", "unsigned"],
    )
    async def test_garbage_token_is_rejected_with_401(
        self, client: AsyncClient, token: str
    ) -> None:
        assert await _me_with(client, token) == 401

    @pytest.mark.parametrize(
        ("extra", "status"),
        [
            pytest.param({"typ": "refresh"}, 401, id="not-an-access-token"),
            pytest.param({"typ": "access", "ver": "0"}, 401, id="malformed-version"),
            pytest.param({"typ": "access", "ver": True}, 401, id="boolean-version"),
            pytest.param({"typ": "access"}, 200, id="issued-before-versions-counts-as-0"),
        ],
    )
    async def test_signed_claims_are_checked(
        self, api: Api, app: FastAPI, extra: dict[str, object], status: int
    ) -> None:
        claims = {"sub": str(api.me["id"]), "exp": 4102444800, **extra}
        token = jwt.encode(claims, app.state.jwt_secret, algorithm=ALGORITHM)
        assert await _me_with(api.client, token) == status

    async def test_deactivated_agents_existing_token_stops_working(self, api: Api) -> None:
        agent = await api.agent()
        session = await api.signed_in_as(agent)
        expect(await session.get(ME_URL), 200)

        expect(await api.patch(f"/api/v1/agents/{agent['id']}", {"active": False}), 200)

        body = expect(await session.get(ME_URL), 401)
        assert body["error"] == "Unauthorized"

    async def test_password_change_revokes_earlier_tokens_only(self, api: Api) -> None:
        agent = await api.agent()
        phone, laptop = await api.signed_in_as(agent), await api.signed_in_as(agent)
        other = await api.signed_in_as(await api.agent())
        url = f"/api/v1/agents/{agent['id']}"
        expect(await phone.patch(url, {"password": "a-brand-new-password"}), 200)

        for stale in (phone, laptop):
            body = expect(await stale.get(ME_URL), 401)
            assert "revoked" in body["detail"]
        expect(await other.get(ME_URL), 200)
        status, fresh = await _login(api.client, agent["username"], "a-brand-new-password")
        assert status == 200
        assert await _me_with(api.client, fresh["access_token"]) == 200

    async def test_changes_other_than_the_password_keep_tokens(self, api: Api) -> None:
        agent = await api.agent()
        session = await api.signed_in_as(agent)
        expect(await api.patch(f"/api/v1/agents/{agent['id']}", {"team": "night"}), 200)
        expect(await session.get(ME_URL), 200)

    async def test_a_role_change_revokes_earlier_tokens_and_the_new_role_applies(
        self, api: Api
    ) -> None:
        agent = await api.agent()
        session = await api.signed_in_as(agent)
        expect(await session.post("/api/v1/skills", {"name": "before_promotion"}), 403)

        expect(await api.patch(f"/api/v1/agents/{agent['id']}", {"role": "supervisor"}), 200)

        assert "revoked" in expect(await session.get(ME_URL), 401)["detail"]
        promoted = await api.signed_in_as(agent)
        expect(await promoted.post("/api/v1/skills", {"name": "after_promotion"}), 201)
