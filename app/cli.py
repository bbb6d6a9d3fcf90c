"""The ``hotline`` command: serve, migrate, seed-demo."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from alembic import command
from alembic.config import Config

from app.config import get_settings
from app.embedded import resolve_database_url
from app.health import MIGRATIONS_DIR


def database_url() -> str:
    """The configured database, or the embedded server started for this process."""
    settings = get_settings()
    url = resolve_database_url(settings.database_url, settings.data_dir)
    os.environ["DATABASE_URL"] = url  # uvicorn workers and Alembic inherit it
    get_settings.cache_clear()
    return url


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logging"] = False
    return config


def migrate(url: str) -> None:
    command.upgrade(alembic_config(url), "head")
    print("database migrated to head")


def seed_demo() -> None:
    from app.demo import seed

    asyncio.run(seed(get_settings()))


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=get_settings().log_level.lower(),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="serve the API, console and wallboard")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--workers", type=int, default=1)
    run.add_argument("--migrate", action="store_true", help="migrate the database first")
    run.add_argument("--seed-demo", action="store_true", help="seed the demo centre first")
    sub.add_parser("migrate", help="bring the database schema to the latest revision")
    sub.add_parser("seed-demo", help="create the demo centre (idempotent)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    url = database_url()
    if args.command == "migrate" or getattr(args, "migrate", False):
        migrate(url)
    if args.command == "seed-demo" or getattr(args, "seed_demo", False):
        seed_demo()
    if args.command == "serve":
        serve(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
