"""What the benchmarks share: a database made afresh for a run.

Imported after the program has put the project's root on ``sys.path`` (as each does)."""

from __future__ import annotations

import asyncio

from alembic import command

from app.cli import alembic_config
from app.db import recreate_database


async def fresh_database(server: str, name: str) -> str:
    """Database ``name`` on ``server``, dropped if it was there, made and migrated: its URL."""
    url = await recreate_database(server, name)
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
    return url
