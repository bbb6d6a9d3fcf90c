"""The IVR shell's test app: signatures configured, a public base URL that is not the one
requests arrive at (as behind a proxy), and the IVR's clock injected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.main import create_app
from tests.fixtures.desk_clock import freeze_desk
from tests.ivr.telephony import telephony_settings

START = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)  # a Wednesday, 10:00 in Shanghai


class Clock:
    """The IVR's (and the complaint desk's) injected clock: it moves only when a test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def settings(db: str) -> Settings:
    return telephony_settings(db)


@pytest.fixture
async def app(settings: Settings, clock: Clock) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    application.state.ivr_clock = clock
    freeze_desk(application, clock)  # complaints registered on the IVR's day
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]
