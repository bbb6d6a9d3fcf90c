"""What the benchmarks share: a database made afresh for a run.

Imported after the program has put the project's root on ``sys.path`` (as each does)."""

from __future__ import annotations

import asyncio

import asyncpg
from alembic import command
from sqlalchemy.engine import make_url

from app.cli import alembic_config
from app.db import plain_url


async def fresh_database(server: str, name: str) -> str:
    """Database ``name`` on ``server``, dropped if it was there, made and migrated: its URL."""
    conn = await asyncpg.connect(plain_url(server))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
    return url
