"""Helpers for ACD tests: build a centre through the API and wait for the dispatcher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.main import create_app
from tests.fixtures.factories import AGENT_PASSWORD, Api, expect, unique


async def eventually(
    check: Callable[[], Awaitable[Any]], *, within: float = 10.0, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns something truthy, or fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def queue(api: Api, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": unique("q-"),
        "channels": ["chat", "voice"],
        "ring_timeout_s": 30,
        "wrap_up_s": 0,
        "reject_delay_s": 0,
        "no_answer_delay_s": 0,
    }
    body.update(overrides)
    return expect(await api.post("/api/v1/queues", body), 201)  # type: ignore[no-any-return]


async def available_agent(api: Api, **overrides: Any) -> Api:
    """An agent signed in on its own client and made available."""
    agent = await api.agent(**overrides)
    console = await api.as_user(agent["username"], AGENT_PASSWORD)
    expect(await console.post(f"/api/v1/agents/{agent['id']}/status", {"status": "available"}), 200)
    return console


async def contact(api: Api, queue_name: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"channel": "chat", "queue": queue_name}
    body.update(overrides)
    return expect(await api.post("/api/v1/contacts", body), 201)  # type: ignore[no-any-return]


async def pending_offers(console: Api) -> list[dict[str, Any]]:
    return expect(await console.get("/api/v1/offers?agent=me"), 200)  # type: ignore[no-any-return]


async def offer_for(console: Api, contact_id: int, within: float = 10.0) -> dict[str, Any]:
    """Wait until the dispatcher offers ``contact_id`` to this agent."""

    async def check() -> dict[str, Any] | None:
        return next(
            (o for o in await pending_offers(console) if o["contact_id"] == contact_id), None
        )

    return await eventually(check, within=within, what=f"an offer of contact {contact_id}")  # type: ignore[no-any-return]


# --- instances, SQL and the ACD's invariants ---------------------------------------------


@asynccontextmanager
async def instance(settings: Settings) -> AsyncIterator[tuple[FastAPI, AsyncClient]]:
    """Another running app (its own lifespan: hub, timers, dispatcher) on the same database."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client,
    ):
        yield app, client


def via(api: Api, client: AsyncClient) -> Api:
    """The same signed-in principal, talking to another instance."""
    return Api(client, dict(api.headers), dict(api.me))


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def value(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return await conn.scalar(text(sql), params)


async def event_count(engine: AsyncEngine) -> int:
    return int(await value(engine, "SELECT count(*) FROM events"))


# Each query returns the rows that break one guarantee; all run in one snapshot.
INVARIANTS: dict[str, str] = {
    # Invariant 2: a contact is offered to at most one agent at a time. Half-open intervals
    # [created_at, decided_at); a pending offer runs to infinity.
    "two offers of one contact were pending at the same time": """
        SELECT a.contact_id, a.id, b.id FROM offers a
        JOIN offers b ON b.contact_id = a.contact_id AND b.id > a.id
        WHERE a.created_at < COALESCE(b.decided_at, 'infinity')
          AND b.created_at < COALESCE(a.decided_at, 'infinity')
    """,
    "an agent holds more than its capacity on a channel": """
        SELECT agent_id, channel, load, capacity FROM agent_channels
        WHERE load > capacity OR load < 0
    """,
    "channel load is not the agent's offered + connected contacts on it": """
        SELECT ac.agent_id, ac.channel, ac.load, count(c.id) FROM agent_channels ac
        LEFT JOIN contacts c ON c.agent_id = ac.agent_id AND c.channel = ac.channel
                            AND c.status IN ('offered', 'connected')
        GROUP BY ac.agent_id, ac.channel, ac.load
        HAVING ac.load <> count(c.id)
    """,
    "a contact is held on a channel the agent has no capacity row for": """
        SELECT c.id, c.agent_id, c.channel FROM contacts c
        WHERE c.status IN ('offered', 'connected') AND NOT EXISTS (
            SELECT 1 FROM agent_channels ac
            WHERE ac.agent_id = c.agent_id AND ac.channel = c.channel)
    """,
    "an agent's work counters disagree with its offers and contacts": """
        SELECT a.id, a.work_offers, a.work_contacts, a.work_wrap_ups,
               (SELECT count(*) FROM offers o WHERE o.agent_id = a.id AND o.status = 'pending'),
               (SELECT count(*) FROM contacts c WHERE c.agent_id = a.id AND c.status = 'connected'),
               (SELECT count(*) FROM contacts c WHERE c.agent_id = a.id AND c.status = 'wrap_up')
        FROM agents a
        WHERE a.work_offers <> (SELECT count(*) FROM offers o
                                WHERE o.agent_id = a.id AND o.status = 'pending')
           OR a.work_contacts <> (SELECT count(*) FROM contacts c
                                  WHERE c.agent_id = a.id AND c.status = 'connected')
           OR a.work_wrap_ups <> (SELECT count(*) FROM contacts c
                                  WHERE c.agent_id = a.id AND c.status = 'wrap_up')
    """,
    "an agent's state is not the one its work derives": """
        SELECT id, state, work_offers, work_contacts, work_wrap_ups FROM agents
        WHERE state <> CASE WHEN work_contacts > 0 THEN 'busy'
                            WHEN work_offers > 0 THEN 'offered'
                            WHEN work_wrap_ups > 0 THEN 'wrap_up'
                            ELSE 'idle' END
    """,
    # Invariant 1: one status each; terminal ones ended, live ones not.
    "a terminal contact has no ended_at, or a live one has": """
        SELECT id, status, ended_at FROM contacts
        WHERE (status IN ('completed', 'abandoned', 'timed_out', 'transferred', 'canceled'))
              <> (ended_at IS NOT NULL)
    """,
    "an offered contact has not exactly one pending offer, to its agent": """
        SELECT c.id, c.agent_id, count(o.id), min(o.agent_id) FROM contacts c
        LEFT JOIN offers o ON o.contact_id = c.id AND o.status = 'pending'
        WHERE c.status = 'offered'
        GROUP BY c.id, c.agent_id
        HAVING count(o.id) <> 1 OR min(o.agent_id) IS DISTINCT FROM c.agent_id
    """,
    "a pending offer is for a contact that is not offered": """
        SELECT o.id, o.contact_id, c.status FROM offers o JOIN contacts c ON c.id = o.contact_id
        WHERE o.status = 'pending' AND c.status <> 'offered'
    """,
    "a queued contact has an agent": """
        SELECT id, agent_id FROM contacts WHERE status = 'queued' AND agent_id IS NOT NULL
    """,
    "a connected or wrapping-up contact has no agent or no answer time": """
        SELECT id, status FROM contacts
        WHERE status IN ('connected', 'wrap_up') AND (agent_id IS NULL OR answered_at IS NULL)
    """,
    "a decided offer has no decision time, or a pending one has": """
        SELECT id, status, decided_at FROM offers
        WHERE (status = 'pending') = (decided_at IS NOT NULL)
    """,
}


async def violations(engine: AsyncEngine) -> dict[str, list[Any]]:
    """Every broken ACD guarantee, with sample rows (empty when all hold)."""
    found: dict[str, list[Any]] = {}
    async with engine.connect() as conn:
        snapshot = await conn.execution_options(isolation_level="REPEATABLE READ")
        for name, sql in INVARIANTS.items():
            broken = list((await snapshot.execute(text(sql))).all())
            if broken:
                found[name] = broken[:5]
    return found


async def assert_invariants(engine: AsyncEngine) -> None:
    broken = await violations(engine)
    assert not broken, "\n".join(f"{name}: {sample}" for name, sample in broken.items())
