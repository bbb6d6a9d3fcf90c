"""The demo centre seeds once and a second run changes nothing."""

from __future__ import annotations

from sqlalchemy import func, select, text

from app.agents.models import Agent, Skill
from app.config import Settings
from app.customers.models import Customer
from app.db import create_engine, create_sessionmaker
from app.demo import AGENTS, CUSTOMERS, DEMO_CAPACITY, QUEUES, SKILLS, seed
from app.routing.models import Queue


async def capacities(settings: Settings, username: str) -> dict[str, int]:
    assert settings.database_url is not None
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT c.channel, c.capacity FROM agent_channels c "
                    "JOIN agents a ON a.id = c.agent_id WHERE a.username = :u"
                ),
                {"u": username},
            )
            return {row.channel: row.capacity for row in rows}
    finally:
        await engine.dispose()


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
                for model in (Skill, Agent, Queue, Customer)
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
        assert settings.database_url is not None
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(text("SELECT phone, language FROM customers"))
                stored: dict[str, str] = {row.phone: row.language for row in rows}
        finally:
            await engine.dispose()
        assert stored == {phone: language for _, phone, _, _, _, language in CUSTOMERS}
        assert stored["+442071234567"] == "en-GB"
