"""A channel's API key at work: it queues contacts and reports that a customer left, and
may do nothing else.

Each refusal is checked for its status and for leaving contacts, offers, agents and the
event log exactly as they were. The socket refusals run against a real server.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.main import create_app
from tests.agents.test_api_keys import KEYS, channel, new_key, with_api_keys
from tests.fixtures.factories import Api, expect
from tests.realtime.test_ws import client, serving
from tests.routing.acd import contact, queue, rows, value
from tests.routing.test_contacts_api import snapshot


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = with_api_keys(create_app(settings))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


@pytest.fixture
async def key(api: Api) -> dict[str, Any]:
    """The web channel's key, as its creation showed it."""
    return await new_key(api, "web")


@pytest.fixture
def web(api: Api, key: dict[str, Any]) -> Api:
    return channel(api, key["key"])


async def actor_of(engine: AsyncEngine, event_type: str, contact_id: int) -> Any:
    sql = "SELECT actor FROM events WHERE type = :type AND subject_id = :id"
    return await value(engine, sql, type=event_type, id=str(contact_id))


async def contact_count(engine: AsyncEngine) -> int:
    return int(await value(engine, "SELECT count(*) FROM contacts"))


class TestChannelQueuesContacts:
    async def test_a_key_queues_a_contact_as_its_channel(
        self, api: Api, web: Api, key: dict[str, Any], engine: AsyncEngine
    ) -> None:
        q = await queue(api)

        created = await contact(web, q["name"], subject="card blocked")

        assert (created["status"], created["queue"]) == ("queued", q["name"])
        queued_by = await actor_of(engine, "contact.queued", created["id"])
        assert queued_by == f"integration:{key['id']}"

    async def test_a_retry_with_the_same_idempotency_key_is_the_same_contact(
        self, api: Api, web: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)
        body = {"channel": "chat", "queue": q["name"]}
        retry = {"headers": {"Idempotency-Key": "chat-session-42"}}

        first = expect(await web.post("/api/v1/contacts", body, **retry), 201)
        again = expect(await web.post("/api/v1/contacts", body, **retry), 201)

        assert again["id"] == first["id"]
        assert await contact_count(engine) == 1

    async def test_a_retry_is_answered_with_the_subject_the_first_answer_showed(
        self, api: Api, web: Api
    ) -> None:
        q = await queue(api)
        body = {"channel": "chat", "queue": q["name"], "subject": "call me on 13912345678"}
        retry = {"headers": {"Idempotency-Key": "chat-session-43"}}

        first = expect(await web.post("/api/v1/contacts", body, **retry), 201)
        again = expect(await web.post("/api/v1/contacts", body, **retry), 201)

        assert first["subject"] == body["subject"]
        assert again["subject"] == first["subject"]
        assert {k: v for k, v in again.items() if k != "position"} == {
            k: v for k, v in first.items() if k != "position"
        }

    async def test_an_agents_token_still_queues_contacts_as_the_agent(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)

        created = await contact(api, q["name"])

        assert await actor_of(engine, "contact.queued", created["id"]) == f"agent:{api.me['id']}"

    @pytest.mark.parametrize("token", ["hlk_" + "A" * 43, "hlk_not-a-key"])
    async def test_an_unknown_key_is_401_and_queues_nothing(
        self, api: Api, engine: AsyncEngine, token: str
    ) -> None:
        q = await queue(api)

        response = await channel(api, token).post(
            "/api/v1/contacts", {"channel": "chat", "queue": q["name"]}
        )

        expect(response, 401)
        assert await contact_count(engine) == 0

    async def test_a_revoked_key_queues_nothing_from_the_next_request_on(
        self, api: Api, web: Api, key: dict[str, Any], engine: AsyncEngine
    ) -> None:
        q = await queue(api)
        await contact(web, q["name"])
        expect(await api.post(f"{KEYS}/{key['id']}/revoke"), 200)

        response = await web.post("/api/v1/contacts", {"channel": "chat", "queue": q["name"]})

        expect(response, 401)
        assert await contact_count(engine) == 1


class TestAbandon:
    async def test_the_channel_reports_that_the_customer_left(
        self, api: Api, web: Api, key: dict[str, Any], engine: AsyncEngine
    ) -> None:
        waiting = await contact(web, (await queue(api))["name"])

        left = expect(await web.post(f"/api/v1/contacts/{waiting['id']}/abandon"), 200)

        assert left["status"] == "abandoned"
        assert await actor_of(engine, "contact.abandoned", waiting["id"]) == (
            f"integration:{key['id']}"
        )

    async def test_a_channel_may_not_end_nor_read_a_contact_it_did_not_queue(
        self, api: Api, web: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)
        theirs = await contact(api, q["name"], subject="call me on 13912345678")
        other_channel = channel(api, (await new_key(api, "app"))["key"])
        other = await contact(other_channel, q["name"])
        before = await snapshot(engine)

        for waiting in (theirs, other):
            response = await web.post(f"/api/v1/contacts/{waiting['id']}/abandon")

            assert expect(response, 404) == expect(
                await web.post("/api/v1/contacts/999999/abandon"), 404
            ) | {"detail": f"contact {waiting['id']} does not exist"}
        assert await snapshot(engine) == before

    async def test_a_channel_ends_its_contact_after_a_transfer_and_a_new_key(
        self, api: Api, web: Api, key: dict[str, Any]
    ) -> None:
        q, other = await queue(api), await queue(api)
        waiting = await contact(web, q["name"])
        url = f"/api/v1/contacts/{waiting['id']}/transfer"
        moved = expect(await api.post(url, {"queue": other["name"]}), 200)
        expect(await api.post(f"{KEYS}/{key['id']}/revoke"), 200)
        renewed = channel(api, (await new_key(api, "web"))["key"])

        left = expect(await renewed.post(f"/api/v1/contacts/{moved['id']}/abandon"), 200)

        assert (left["id"], left["status"]) == (moved["id"], "abandoned")

    async def test_a_supervisor_may_end_a_waiting_contact(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        waiting = await contact(api, (await queue(api))["name"])
        supervisor = await api.signed_in_as(await api.supervisor())

        left = expect(await supervisor.post(f"/api/v1/contacts/{waiting['id']}/abandon"), 200)

        assert left["status"] == "abandoned"
        by = await actor_of(engine, "contact.abandoned", waiting["id"])
        assert by == f"agent:{supervisor.me['id']}"

    async def test_an_agent_may_not_end_a_waiting_contact(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        waiting = await contact(api, (await queue(api))["name"])
        agent = await api.signed_in_as(await api.agent())
        before = await snapshot(engine)

        response = await agent.post(f"/api/v1/contacts/{waiting['id']}/abandon")

        expect(response, 403)
        assert await snapshot(engine) == before

    async def test_an_agent_learns_nothing_of_a_contact_that_does_not_exist(self, api: Api) -> None:
        agent = await api.signed_in_as(await api.agent())

        expect(await agent.post("/api/v1/contacts/999/abandon"), 403)


class TestChannelSeesNothingElse:
    @pytest.mark.parametrize(
        "path",
        [
            "/api/v1/contacts/{contact}",
            "/api/v1/offers",
            "/api/v1/queues",
            "/api/v1/queues/{queue}",
            "/api/v1/queues/{queue}/stats",
            "/api/v1/customers?phone=%2B8613912345678",
            "/api/v1/agents",
            "/api/v1/agents/me",
            "/api/v1/skills",
            "/api/v1/events",
            "/api/v1/api-keys",
        ],
    )
    async def test_reads_are_403(self, api: Api, web: Api, path: str) -> None:
        q = await queue(api)
        waiting = await contact(web, q["name"])

        response = await web.get(path.format(contact=waiting["id"], queue=q["name"]))

        expect(response, 403)

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/api/v1/contacts/{contact}/cancel", None),
            ("/api/v1/contacts/{contact}/transfer", {"queue": "{queue}"}),
            ("/api/v1/contacts/{contact}/complete", {"disposition": "resolved"}),
            ("/api/v1/queues", {"name": "rogue", "channels": ["chat"]}),
            ("/api/v1/customers", {"name": "Rogue", "phone": "+8613912345678"}),
            ("/api/v1/skills", {"name": "rogue"}),
            ("/api/v1/agents/1/status", {"status": "away"}),
        ],
    )
    async def test_changes_are_403_and_change_nothing(
        self, api: Api, web: Api, engine: AsyncEngine, path: str, body: Any
    ) -> None:
        q = await queue(api)
        waiting = await contact(web, q["name"])
        before = await snapshot(engine)
        customers = await rows(engine, "SELECT id FROM customers")
        if body is not None:
            body = {k: v.format(queue=q["name"]) if k == "queue" else v for k, v in body.items()}

        response = await web.post(path.format(contact=waiting["id"]), body)

        expect(response, 403)
        assert await snapshot(engine) == before
        assert await rows(engine, "SELECT id FROM customers") == customers

    @pytest.mark.parametrize("path", ["/ws/agent", "/ws/wallboard"])
    async def test_sockets_close_with_4403(
        self, app: FastAPI, key: dict[str, Any], path: str
    ) -> None:
        async with serving(app) as base, client(base, path, key["key"]) as ws:
            assert await ws.close_code() == 4403


def migration(name: str) -> ModuleType:
    """A migration's module, loaded from its file."""
    path = next((Path(__file__).parents[2] / "migrations" / "versions").glob(f"*_{name}.py"))
    spec = importlib.util.spec_from_file_location(f"migration_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestContactsQueuedBeforeTheyNamedTheirChannel:
    async def test_the_upgrade_names_them_as_the_admission_does(
        self, api: Api, web: Api, engine: AsyncEngine
    ) -> None:
        """Contacts stored before the column are named from the key that queued them (its
        ``contact.queued`` event), a continuation from its first contact."""
        q, other = await queue(api), await queue(api)
        first = await contact(web, q["name"])
        url = f"/api/v1/contacts/{first['id']}/transfer"
        moved = expect(await api.post(url, {"queue": other["name"]}), 200)
        again = expect(
            await api.post(f"/api/v1/contacts/{moved['id']}/transfer", {"queue": q["name"]}), 200
        )
        a_persons = await contact(api, q["name"])
        the_apps = await contact(channel(api, (await new_key(api, "app"))["key"]), q["name"])
        named = "SELECT id, integration FROM contacts ORDER BY id"
        admitted = dict(await rows(engine, named))
        assert admitted == {
            first["id"]: "web",
            moved["id"]: "web",
            again["id"]: "web",
            a_persons["id"]: None,
            the_apps["id"]: "app",
        }

        upgrade = migration("0026_contact_integration")
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE contacts SET integration = NULL"))
            await conn.execute(text(upgrade.FIRST_CONTACTS))
            await conn.execute(text(upgrade.CONTINUATIONS))

        assert dict(await rows(engine, named)) == admitted
