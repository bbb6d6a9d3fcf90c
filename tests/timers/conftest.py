"""The timer tests' database: an engine of their own on the test database, and its sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db import create_engine, create_sessionmaker


@pytest.fixture
async def engine(db: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db, pool_size=10)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)
