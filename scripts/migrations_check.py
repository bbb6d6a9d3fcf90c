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

from alembic import command

from app.cli import alembic_config
from app.db import recreate_database
from app.embedded import start_embedded

DATABASE = "hotline_migrations_check"


def main() -> int:
    server = os.environ.get("TEST_DATABASE_URL") or start_embedded(
        Path(tempfile.mkdtemp(prefix="hotline-migrations-")), delete_on_exit=True
    )
    url = asyncio.run(recreate_database(server, DATABASE))
    config = alembic_config(url)
    command.upgrade(config, "head")
    command.check(config)
    command.downgrade(config, "base")
    command.upgrade(config, "head")
    sys.stdout.write("migrations: at head, models agree, reversible\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
