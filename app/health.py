"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.script import ScriptDirectory
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter(tags=["operations"])

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def migration_heads() -> set[str]:
    """The revisions the code expects the database to be at."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return set(ScriptDirectory.from_config(config).get_heads())


@router.get("/health/live", summary="The process is up")
async def live() -> dict[str, str]:
    """Always 200 while the process serves requests."""
    return {"status": "ok"}


@router.get(
    "/health/ready",
    summary="The database is reachable and migrated",
    responses={503: {"description": "database unreachable or migrations not at head"}},
)
async def ready(request: Request) -> JSONResponse:
    """200 when the database answers and its schema is at the code's migration head."""
    expected: set[str] = request.app.state.migration_heads
    body: dict[str, Any] = {"database": "ok", "migrations": "current"}
    try:
        async with request.app.state.engine.connect() as conn:
            rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
            current = {row[0] for row in rows}
    except Exception as exc:
        body = {"status": "unavailable", "database": f"unreachable: {type(exc).__name__}"}
        return JSONResponse(body, status_code=503)
    if current != expected:
        body.update(migrations="behind", current=sorted(current), expected=sorted(expected))
        return JSONResponse({"status": "unavailable", **body}, status_code=503)
    return JSONResponse({"status": "ok", **body})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Request counts and latencies by route, the timers found held by kind
    (``hotline_timers_found_held_total``) and what each sweep reconciled
    (``hotline_sweeps_reconciled_total``), in the Prometheus text format."""
    rendered: Response = request.app.state.metrics.render()
    return rendered
