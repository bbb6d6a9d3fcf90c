"""Check the migrations against the models on a fresh database.

Upgrades to head, runs ``alembic check`` (no difference between models and schema),
downgrades to base and upgrades again (every migration is reversible). Uses the server in
``TEST_DATABASE_URL``, or an embedded one in a temporary folder.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

import asyncpg
from alembic import command
from sqlalchemy.engine import make_url

from app.cli import alembic_config
from app.db import plain_url
from app.embedded import start_embedded

DATABASE = "hotline_migrations_check"


async def _recreate(server: str) -> None:
    conn = await asyncpg.connect(plain_url(server))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await conn.close()


def main() -> int:
    server = os.environ.get("TEST_DATABASE_URL") or start_embedded(
        Path(tempfile.mkdtemp(prefix="hotline-migrations-")), delete_on_exit=True
    )
    asyncio.run(_recreate(server))
    url = make_url(server).set(database=DATABASE).render_as_string(hide_password=False)
    config = alembic_config(url)
    command.upgrade(config, "head")
    command.check(config)
    command.downgrade(config, "base")
    command.upgrade(config, "head")
    sys.stdout.write("migrations: at head, models agree, reversible\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
