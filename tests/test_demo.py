"""The demo centre seeds once and a second run changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.models import Agent, Skill
from app.complaints import search_terms
from app.complaints.models import Complaint
from app.complaints.schemas import ComplaintCreate
from app.complaints.service import register
from app.config import Settings
from app.customers.models import Customer
from app.db import create_engine, create_sessionmaker, unit_of_work
from app.demo import AGENTS, COMPLAINTS, CUSTOMERS, DEMO_CAPACITY, QUEUES, SKILLS, seed
from app.ivr import service as ivr
from app.routing.models import Queue

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
ONE_OF_THEIR_OWN = ComplaintCreate.model_validate(
    {
        "channel": "counter",
        "complainant": {"name": "Ma Li", "contact": "+8613900000009", "relation": "self"},
        "matter": {
            "occurred_at": "2026-11-30T10:00:00+08:00",
            "location": "counter 3",
            "branch": "Hongkou",
            "description": "the queue ticket machine skipped my number",
        },
        "grounds": "served out of turn",
        "request": "an apology",
    }
)


async def rows(settings: Settings, sql: str, **params: object) -> list[tuple[Any, ...]]:
    """What ``sql`` reads from the settings' database."""
    assert settings.database_url is not None
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in await conn.execute(text(sql), params)]
    finally:
        await engine.dispose()


async def capacities(settings: Settings, username: str) -> dict[str, int]:
    found = await rows(
        settings,
        "SELECT c.channel, c.capacity FROM agent_channels c "
        "JOIN agents a ON a.id = c.agent_id WHERE a.username = :u",
        u=username,
    )
    return dict(found)


async def run(settings: Settings, sql: str) -> None:
    assert settings.database_url is not None
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


async def counts(settings: Settings) -> dict[str, int]:
    assert settings.database_url is not None
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session:
            return {
                model.__tablename__: int(
                    await session.scalar(select(func.count()).select_from(model)) or 0
                )
                for model in (Skill, Agent, Queue, Customer, Complaint)
            }
    finally:
        await engine.dispose()


class TestSeed:
    async def test_seeding_twice_creates_the_centre_once(self, settings: Settings) -> None:
        await seed(settings)
        first = await counts(settings)
        await seed(settings)
        assert await counts(settings) == first
        assert first == {
            "skills": len(SKILLS),
            "agents": len(AGENTS),
            "queues": len(QUEUES),
            "customers": len(CUSTOMERS),
            "complaints": len(COMPLAINTS),
        }

    async def test_an_agent_of_an_older_seed_gets_the_channels_it_lacks(
        self, settings: Settings
    ) -> None:
        await seed(settings)
        await run(
            settings,
            "DELETE FROM agent_channels WHERE channel <> 'voice' AND agent_id = "
            "(SELECT id FROM agents WHERE username = 'wang.wei')",
        )
        await run(
            settings,
            "UPDATE agent_channels SET capacity = 2 WHERE agent_id = "
            "(SELECT id FROM agents WHERE username = 'wang.wei')",
        )
        await seed(settings)
        wanted = {channel.value: n for channel, n in DEMO_CAPACITY.items()}
        assert await capacities(settings, "wang.wei") == {**wanted, "voice": 2}

    async def test_complaints_are_added_only_to_a_desk_that_has_none(
        self, settings: Settings
    ) -> None:
        await seed(settings)
        await run(settings, "TRUNCATE complaints CASCADE")
        await seed(settings)  # an empty desk: the demo's complaints again
        assert (await counts(settings))["complaints"] == len(COMPLAINTS)
        await run(settings, "TRUNCATE complaints CASCADE")
        assert settings.database_url is not None
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            async with unit_of_work(create_sessionmaker(engine)) as session:
                await register(session, data=ONE_OF_THEIR_OWN, actor="system", now=NOW)
        finally:
            await engine.dispose()
        await seed(settings)  # a desk in use: nothing made up is added
        assert (await counts(settings))["complaints"] == 1


class TestTheSeedsTransaction:
    async def test_it_has_the_configured_idle_timeout_and_the_dictionary_already_read(
        self, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The seed is one transaction on a loaded machine too: the server gives it the idle
        time the settings give the service's own, and jieba's dictionary (seconds on a busy
        machine) is not read inside it."""
        seen: dict[str, object] = {}
        install = ivr.install_demo_flows

        async def watched(session: AsyncSession, **given: Any) -> None:
            shown = await session.scalar(text("SHOW idle_in_transaction_session_timeout"))
            seen["idle timeout"] = shown
            seen["dictionary read"] = search_terms._segmenter.cache_info().currsize == 1
            await install(session, **given)

        monkeypatch.setattr(ivr, "install_demo_flows", watched)
        search_terms._segmenter.cache_clear()
        await seed(settings.model_copy(update={"idle_in_transaction_timeout_ms": 45_000}))
        assert seen == {"idle timeout": "45s", "dictionary read": True}


class TestTheDemoCentre:
    def test_every_channel_of_every_queue_has_an_agent_who_can_take_it(self) -> None:
        """A contact on a channel no demo agent holds would wait unoffered."""
        for queue in QUEUES:
            steps = queue["steps"]
            assert isinstance(steps, list)
            last = {need["skill"]: need["min_level"] for need in steps[-1]["skills"]}
            for channel in queue["channels"]:  # type: ignore[attr-defined]
                takers = [
                    username
                    for username, _, _, _, skills, capacity in AGENTS
                    if (capacity or DEMO_CAPACITY).get(channel, 0) > 0
                    and all(skills.get(s, 0) >= level for s, level in last.items())
                ]
                assert takers, f"queue {queue['name']}: nobody takes {channel}"

    async def test_each_customer_is_spoken_to_in_their_own_language(
        self, settings: Settings
    ) -> None:
        await seed(settings)
        stored = dict(await rows(settings, "SELECT phone, language FROM customers"))
        assert stored == {phone: language for _, phone, _, _, _, language in CUSTOMERS}
        assert stored["+442071234567"] == "en-GB"

    async def test_the_complaints_stand_where_their_moves_left_them(
        self, settings: Settings
    ) -> None:
        """One waits to be classified, one is assigned to a supervisor, one is being worked
        on by an agent, who started it; each has its clocks running and its trail."""
        await seed(settings)
        stored = await rows(
            settings,
            "SELECT c.status, c.categories, a.username, c.due_at IS NOT NULL AS due,"
            " (SELECT count(*) FROM complaint_audit u WHERE u.complaint_id = c.id) AS trail"
            " FROM complaints c LEFT JOIN agents a ON a.id = c.assignee_id ORDER BY c.id",
        )
        trail = await rows(
            settings,
            "SELECT u.action, a.username FROM complaint_audit u"
            " JOIN agents a ON u.actor = 'agent:' || a.id"
            " WHERE u.complaint_id = (SELECT max(id) FROM complaints) ORDER BY u.seq",
        )
        assert [(status, categories, who) for status, categories, who, _, _ in stored] == [
            ("registered", [], None),
            ("assigned", ["wealth_management", "information_asymmetry"], "li.na"),
            ("in_progress", ["loans"], "chen.jie"),
        ]
        assert all(due for _, _, _, due, _ in stored)
        assert [trail for *_, trail in stored] == [1 + len(moves) for *_, moves in COMPLAINTS]
        assert trail == [
            ("registered", "li.na"),
            ("classify", "li.na"),
            ("assign", "li.na"),
            ("start", "chen.jie"),
        ]
