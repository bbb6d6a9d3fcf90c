"""Channels' API keys: created by admins, shown once, stored hashed, revoked at once.

What each test holds: the key is in the creation's answer and nowhere else (not the list,
not the database, not the idempotency record, not the log); a retry of the creation makes
no second key; only admins manage keys; a key's last use is written at most once a minute
(the clock is injected); revocation refuses the very next request; no person can be given
the ``integration`` role.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.agents import api_keys
from app.agents.keys_router import router as keys_router
from app.agents.models import Role
from app.config import Settings
from app.main import create_app
from tests.fixtures.factories import Api, expect, unique
from tests.routing.acd import queue, rows, value

KEYS = "/api/v1/api-keys"
KEY_SHAPE = re.compile(r"hlk_[A-Za-z0-9_-]{43}")


def with_api_keys(app: FastAPI) -> FastAPI:
    """The app with the API-key routes (included here until the app includes them itself)."""
    if not any(getattr(route, "path", None) == KEYS for route in app.routes):
        app.include_router(keys_router)
    return app


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = with_api_keys(create_app(settings))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


async def new_key(api: Api, name: str | None = None, **kwargs: Any) -> dict[str, Any]:
    body = {"name": name or unique("web-")}
    return expect(await api.post(KEYS, body, **kwargs), 201)  # type: ignore[no-any-return]


def channel(api: Api, key: str) -> Api:
    """A client that signs its requests with a channel's API key."""
    return Api(api.client, {"Authorization": f"Bearer {key}"})


async def stored_text(engine: AsyncEngine) -> str:
    """Every row of the tables a key could leak into, as text."""
    tables = ("api_keys", "idempotency_keys", "events")
    texts = [await rows(engine, f"SELECT t::text FROM {table} t") for table in tables]
    return "\n".join(str(row[0]) for found in texts for row in found)


async def key_count(engine: AsyncEngine) -> int:
    return int(await value(engine, "SELECT count(*) FROM api_keys"))


class TestCreate:
    async def test_key_is_shown_in_the_answer_and_stored_only_as_its_hash(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        created = await new_key(api, "web")

        assert set(created) == {"id", "name", "prefix", "key", "created_at"}
        assert KEY_SHAPE.fullmatch(created["key"])
        assert created["prefix"] == created["key"][:12]
        stored = await rows(engine, "SELECT name, prefix, key_hash FROM api_keys")
        digest = hashlib.sha256(created["key"].encode()).hexdigest()
        assert [tuple(r) for r in stored] == [("web", created["prefix"], digest)]
        assert created["key"] not in await stored_text(engine)

    async def test_list_shows_keys_but_never_the_key(self, api: Api) -> None:
        created = await new_key(api)

        response = await api.get(KEYS)

        page = expect(response, 200)
        assert [item["id"] for item in page["items"]] == [created["id"]]
        assert "key" not in page["items"][0]
        assert page["items"][0]["prefix"] == created["prefix"]
        assert page["items"][0]["created_by"] == api.me["id"]
        assert created["key"] not in response.text

    async def test_list_pages_by_id(self, api: Api) -> None:
        ids = [(await new_key(api))["id"] for _ in range(3)]

        first = expect(await api.get(KEYS, params={"limit": 2}), 200)
        rest = expect(await api.get(KEYS, params={"cursor": first["next_cursor"]}), 200)

        assert [k["id"] for k in first["items"] + rest["items"]] == ids
        assert rest["next_cursor"] is None

    async def test_retry_with_the_same_idempotency_key_is_409_and_makes_no_second_key(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        retry = {"headers": {"Idempotency-Key": "create-web-key"}}
        created = await new_key(api, "web", **retry)

        body = expect(await api.post(KEYS, {"name": "web"}, **retry), 409)

        assert body["error"] == "KeyShownOnce"
        assert (body["id"], body["prefix"]) == (created["id"], created["prefix"])
        assert created["key"] not in str(body)
        assert await key_count(engine) == 1
        assert created["key"] not in await stored_text(engine)

    async def test_a_live_name_is_taken_until_its_key_is_revoked(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        first = await new_key(api, "app")

        body = expect(await api.post(KEYS, {"name": "app"}), 409)
        assert body["constraint"] == api_keys.LIVE_NAME_INDEX
        assert await key_count(engine) == 1
        expect(await api.post(f"{KEYS}/{first['id']}/revoke"), 200)
        second = await new_key(api, "app")
        assert second["id"] != first["id"]

    async def test_a_name_that_is_no_channel_name_is_422(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        body = expect(await api.post(KEYS, {"name": "Web Site"}), 422)

        assert body["fields"][0]["field"] == "name"
        assert await key_count(engine) == 0

    async def test_creation_and_revocation_are_logged_without_the_key(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        created = await new_key(api, "web")
        expect(await api.post(f"{KEYS}/{created['id']}/revoke"), 200)

        logged = await rows(
            engine,
            "SELECT type, subject_id, actor, data FROM events "
            "WHERE subject_type = 'api_key' ORDER BY id",
        )

        data = {"name": "web", "prefix": created["prefix"]}
        actor = f"agent:{api.me['id']}"
        assert [tuple(r) for r in logged] == [
            ("api_key.created", str(created["id"]), actor, data),
            ("api_key.revoked", str(created["id"]), actor, data),
        ]


class TestOnlyAdmins:
    @pytest.mark.parametrize("role", ["agent", "supervisor"])
    async def test_others_may_not_create_list_or_revoke_keys(
        self, api: Api, engine: AsyncEngine, role: str
    ) -> None:
        created = await new_key(api)
        other = await api.signed_in_as(await api.agent(role=role))

        expect(await other.post(KEYS, {"name": "rogue"}), 403)
        expect(await other.get(KEYS), 403)
        expect(await other.post(f"{KEYS}/{created['id']}/revoke"), 403)

        assert await key_count(engine) == 1
        assert await value(engine, "SELECT revoked_at FROM api_keys") is None

    async def test_a_key_may_not_manage_keys(self, api: Api, engine: AsyncEngine) -> None:
        created = await new_key(api)
        web = channel(api, created["key"])

        expect(await web.post(KEYS, {"name": "rogue"}), 403)
        expect(await web.get(KEYS), 403)
        expect(await web.post(f"{KEYS}/{created['id']}/revoke"), 403)

        assert await key_count(engine) == 1
        assert await value(engine, "SELECT revoked_at FROM api_keys") is None


class TestRevoke:
    async def test_the_next_request_with_a_revoked_key_is_401(self, api: Api) -> None:
        q = await queue(api)
        web = channel(api, (created := await new_key(api))["key"])
        expect(await web.post("/api/v1/contacts", {"channel": "chat", "queue": q["name"]}), 201)

        revoked = expect(await api.post(f"{KEYS}/{created['id']}/revoke"), 200)

        assert revoked["revoked_at"] is not None
        body = expect(
            await web.post("/api/v1/contacts", {"channel": "chat", "queue": q["name"]}), 401
        )
        assert body["error"] == "Unauthorized"

    async def test_revoking_twice_changes_nothing(self, api: Api) -> None:
        created = await new_key(api)
        first = expect(await api.post(f"{KEYS}/{created['id']}/revoke"), 200)

        second = expect(await api.post(f"{KEYS}/{created['id']}/revoke"), 200)

        assert second == first

    async def test_revoking_an_unknown_key_is_404(self, api: Api) -> None:
        expect(await api.post(f"{KEYS}/999/revoke"), 404)


class TestAuthenticate:
    async def test_a_live_key_signs_in_as_its_channel(self, app: FastAPI, api: Api) -> None:
        created = await new_key(api, "web")

        principal = await api_keys.authenticate(
            app.state.db_pool, created["key"], now=datetime.now(UTC)
        )

        assert principal is not None
        assert (principal.id, principal.username) == (created["id"], "web")
        assert (principal.role, principal.site) == (Role.integration, None)
        assert principal.actor == f"integration:{created['id']}"

    @pytest.mark.parametrize(
        "token", ["hlk_" + "A" * 43, "hlk_short", "hlk_" + "A" * 42 + "!", "hlk_" + "A" * 44]
    )
    async def test_unknown_or_malformed_keys_sign_nobody_in(
        self, app: FastAPI, api: Api, token: str
    ) -> None:
        await new_key(api)

        assert await api_keys.authenticate(app.state.db_pool, token, now=datetime.now(UTC)) is None

    async def test_last_use_is_written_at_most_once_a_minute(
        self, app: FastAPI, api: Api, engine: AsyncEngine
    ) -> None:
        key = (await new_key(api))["key"]
        start = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)

        async def used_at(now: datetime) -> datetime:
            assert await api_keys.authenticate(app.state.db_pool, key, now=now) is not None
            return await value(engine, "SELECT last_used_at FROM api_keys")  # type: ignore[no-any-return]

        assert await used_at(start) == start
        assert await used_at(start + timedelta(seconds=59)) == start
        assert await used_at(start + timedelta(seconds=60)) == start + timedelta(seconds=60)


class TestNoPersonIsAChannel:
    async def test_an_agent_cannot_be_created_with_the_integration_role(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        before = await value(engine, "SELECT count(*) FROM agents")
        body = {"name": "Bot", "username": unique("bot"), "password": "a-long-password-1"}

        refused = expect(await api.post("/api/v1/agents", {**body, "role": "integration"}), 422)

        assert refused["fields"][0]["field"] == "role"
        assert await value(engine, "SELECT count(*) FROM agents") == before

    async def test_an_agent_cannot_be_given_the_integration_role(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        agent = await api.agent()

        refused = expect(
            await api.patch(f"/api/v1/agents/{agent['id']}", {"role": "integration"}), 422
        )

        assert refused["fields"][0]["field"] == "role"
        sql = "SELECT role FROM agents WHERE id = :id"
        assert await value(engine, sql, id=agent["id"]) == "agent"

    async def test_the_database_refuses_an_agent_row_with_the_integration_role(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        agent = await api.agent()

        with pytest.raises(IntegrityError, match="ck_agents_role"):
            async with engine.begin() as conn:
                await conn.execute(
                    text("UPDATE agents SET role = 'integration' WHERE id = :id"),
                    {"id": agent["id"]},
                )
