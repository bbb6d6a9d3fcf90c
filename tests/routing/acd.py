"""Helpers for ACD tests: build a centre through the API and wait for the dispatcher."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

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
