"""Test set-up: a real PostgreSQL, migrated once per run, truncated between tests.

Without ``TEST_DATABASE_URL`` the controlling pytest process starts an embedded server in a
temporary folder and hands its URL to the xdist workers. Each worker gets a database of its
own, built by running the migrations.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from app.cli import alembic_config
from app.config import Settings
from app.db import drop_database, plain_url, recreate_database
from app.main import create_app
from tests.fixtures.factories import ADMIN_PASSWORD, Api

# The suite runs two workers, a browser and the server on two cores: a starved worker's
# task can sit inside its transaction for seconds before its turn comes. The server ending
# such sessions after the service's 10 s would fail the test with a 503 (which
# tests/test_database_loss.py tests on purpose), so the suite's instances, in this process and
# in the ones it serves from, allow a minute.
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault(
        "HOTLINE_IDLE_IN_TRANSACTION_TIMEOUT_MS", str(IDLE_IN_TRANSACTION_TIMEOUT_MS)
    )
    if hasattr(config, "workerinput") or os.environ.get("TEST_DATABASE_URL"):
        return
    from app.embedded import start_embedded

    folder = Path(tempfile.mkdtemp(prefix="hotline-test-"))
    os.environ["TEST_DATABASE_URL"] = start_embedded(folder, delete_on_exit=True)


def _database_url_for(worker: str) -> str:
    server = os.environ["TEST_DATABASE_URL"]
    return (
        make_url(server)
        .set(database=f"hotline_test_{worker}")
        .render_as_string(hide_password=False)
    )


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """This process's own database, freshly migrated, dropped at the end of the run.

    The name carries the process id, so runs sharing one server never touch each other's.
    """
    from alembic import command

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    url = _database_url_for(f"{worker}_{os.getpid()}")
    name = make_url(url).database or ""
    asyncio.run(recreate_database(os.environ["TEST_DATABASE_URL"], name))
    command.upgrade(alembic_config(url), "head")
    yield url
    asyncio.run(drop_database(os.environ["TEST_DATABASE_URL"], name))


async def truncate_all(url: str) -> None:
    conn = await asyncpg.connect(plain_url(url))
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'"
        )
        names = ", ".join(f'"{row["tablename"]}"' for row in tables)
        await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


def make_settings(url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": url,
        "admin_password": SecretStr(ADMIN_PASSWORD),
        "jwt_secret": SecretStr("test-secret-" + "x" * 32),
        "argon2_time_cost": 1,
        "argon2_memory_kib": 64,
        "argon2_parallelism": 1,
        "event_poll_interval_s": 0.05,
        "timer_poll_interval_s": 0.05,
        "db_pool_size": 5,
        "driver_pool_size": 2,
        "idle_in_transaction_timeout_ms": IDLE_IN_TRANSACTION_TIMEOUT_MS,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
async def db(database_url: str) -> str:
    """An empty, migrated database (every table truncated)."""
    await truncate_all(database_url)
    return database_url


@pytest.fixture
def settings(db: str) -> Settings:
    return make_settings(db)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """A running app (lifespan entered: hub, timer worker, first admin)."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        yield http


@pytest.fixture
async def api(client: AsyncClient) -> Api:
    """The HTTP client signed in as the first admin, with factory helpers."""
    return await Api.signed_in(client, "admin", ADMIN_PASSWORD)
