"""The demo centre seeds once and a second run changes nothing."""

from __future__ import annotations

from sqlalchemy import func, select

from app.agents.models import Agent, Skill
from app.config import Settings
from app.customers.models import Customer
from app.db import create_engine, create_sessionmaker
from app.demo import AGENTS, CUSTOMERS, QUEUES, SKILLS, seed
from app.routing.models import Queue


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
