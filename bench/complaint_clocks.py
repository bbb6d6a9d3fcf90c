"""Complaint clocks benchmark: 10,000 clocks falling due at the same moment, each fired once.

Builds, in a fresh database, ``BENCH_CLOCKS`` (10,000) open complaints whose resolution
clocks (three calendar days) all reach their 50 % warning at the same moment T, a few
seconds ahead, each with its ``complaint.clock`` timer set to T, as registration leaves it.
Then ``BENCH_INSTANCES`` (2) timer workers, each with an engine of its own (two instances of
Hotline), run the real handler (``app.complaints.handlers``) from T on. Measured: the time
from T until every warning is written (``complaint.sla_warning`` events) and every clock's
timer has moved on to its 80 % alert; checked: each clock warned exactly once, and each
complaint went up one level.

Usage: ``python bench/complaint_clocks.py`` (embedded PostgreSQL) or with
``BENCH_DATABASE_URL``. Prints Markdown for ``bench/RESULTS.md``. ``BENCH_QUICK=1`` runs
1,000 clocks to check the program.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
from alembic import command
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.cli import alembic_config  # noqa: E402
from app.complaints import handlers  # noqa: E402
from app.complaints.clocks import DEFAULT_POLICIES  # noqa: E402
from app.complaints.deadlines import KIND  # noqa: E402
from app.complaints.models import snapshot  # noqa: E402
from app.db import create_engine, create_sessionmaker, plain_url  # noqa: E402
from app.embedded import start_embedded  # noqa: E402
from app.timers.worker import TimerRegistry, TimerWorker  # noqa: E402
from tests.conftest import make_settings  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
CLOCKS = int(os.environ.get("BENCH_CLOCKS", "1000" if QUICK else "10000"))
INSTANCES = int(os.environ.get("BENCH_INSTANCES", "2"))
BATCH = int(os.environ.get("BENCH_BATCH", "50"))
LEAD = timedelta(seconds=3)  # T is this far ahead of the end of the build
LIMIT_S = 60.0


async def fresh_database(server: str) -> str:
    conn = await asyncpg.connect(plain_url(server))
    try:
        await conn.execute('DROP DATABASE IF EXISTS "hotline_bench_clocks" WITH (FORCE)')
        await conn.execute('CREATE DATABASE "hotline_bench_clocks"')
    finally:
        await conn.close()
    url = (
        make_url(server).set(database="hotline_bench_clocks").render_as_string(hide_password=False)
    )
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
    return url


COMPLAINTS = """
INSERT INTO complaints (reference, status, channel, complainant_name, complainant_contact,
    complainant_relation, occurred_at, location, branch, description, grounds, request,
    escalation_level, registered_by, registered_at, due_at, audit_seq)
SELECT 'C-BENCH-' || lpad(n::text, 8, '0'), 'in_progress', 'phone', 'Bench', '+8613800000000',
    'self', $1, 'counter', 'branch-' || (n % 50), 'charged twice', 'one order, two charges',
    'refund', 'agent', 'system', $1, $2, 0
FROM generate_series(1, $3) AS n
"""
CLOCKS_SQL = """
INSERT INTO complaint_clocks (complaint_id, kind, policy, started_at, pauses, extensions, due_at)
SELECT id, 'resolution', $1::jsonb, $2, '[]', '[]', $3 FROM complaints
"""
TIMERS = """
INSERT INTO timers (kind, subject, due_at, payload)
SELECT $1, id::text, $2, '{"clock": "resolution", "alert": "0.5"}' FROM complaint_clocks
"""


async def build(conn: asyncpg.Connection, at: datetime) -> None:
    """Complaints registered 36 h before ``at``: their 50 % warnings all fall due at ``at``."""
    started = at - timedelta(hours=36)
    due = started + timedelta(days=3)
    policy = json.dumps(snapshot(DEFAULT_POLICIES[1]))
    await conn.execute(COMPLAINTS, started, due, CLOCKS)
    await conn.execute(CLOCKS_SQL, policy, started, due)
    await conn.execute(TIMERS, KIND, at)
    await conn.execute("ANALYZE")


async def counts(conn: asyncpg.Connection, at: datetime) -> tuple[int, int]:
    warned = await conn.fetchval("SELECT count(*) FROM events WHERE type = 'complaint.sla_warning'")
    due = await conn.fetchval(
        "SELECT count(*) FROM timers WHERE kind = $1 AND due_at <= $2", KIND, at
    )
    return int(warned), int(due)


async def run(url: str) -> dict[str, object]:
    conn = await asyncpg.connect(plain_url(url))
    now = await conn.fetchval("SELECT now()")
    at = now + LEAD + timedelta(seconds=CLOCKS / 2000)
    await build(conn, at)
    settings = make_settings(url, timer_batch_size=BATCH)
    engines, workers = [], []
    for _ in range(INSTANCES):
        engine = create_engine(url, pool_size=4)
        registry = TimerRegistry()
        handlers.register(registry, settings)
        worker = TimerWorker(
            create_sessionmaker(engine),
            registry,
            poll_interval_s=0.5,
            batch_size=BATCH,
            max_attempts=5,
        )
        engines.append(engine)
        workers.append(worker)
    for worker in workers:
        worker.start()
    try:
        wait = (at - await conn.fetchval("SELECT now()")).total_seconds()
        await asyncio.sleep(max(wait, 0))  # the bench waits for T; the workers do not poll it
        began = time.perf_counter()
        while True:
            warned, due = await counts(conn, at)
            if warned >= CLOCKS and due == 0:
                break
            if time.perf_counter() - began > LIMIT_S:
                raise SystemExit(f"only {warned} of {CLOCKS} warned within {LIMIT_S} s")
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - began
    finally:
        for worker in workers:
            await worker.stop()
        for engine in engines:
            await engine.dispose()
    once = await conn.fetchval(
        "SELECT count(*) = count(DISTINCT subject_id) FROM events "
        "WHERE type = 'complaint.sla_warning'"
    )
    levels = await conn.fetch(
        "SELECT escalation_level, count(*) FROM complaints GROUP BY 1 ORDER BY 1"
    )
    next_alerts = await conn.fetchval(
        "SELECT count(*) FROM timers WHERE kind = $1 AND payload->>'alert' = '0.8'", KIND
    )
    await conn.close()
    return {
        "elapsed_s": elapsed,
        "each_once": bool(once),
        "levels": {r[0]: r[1] for r in levels},
        "next_alerts": next_alerts,
    }


def report(kind: str, result: dict[str, object]) -> str:
    elapsed = float(result["elapsed_s"])  # type: ignore[arg-type]
    return "\n".join(
        [
            "## Complaint clocks: 10,000 falling due at once",
            "",
            f"{platform.platform()}, Python {platform.python_version()}, {kind}; "
            f"{INSTANCES} instances (a timer worker and an engine each), batches of {BATCH}.",
            "",
            "| clocks due at T | all warned after T | per second | each once | "
            "levels after | next alerts scheduled |",
            "|---|---|---|---|---|---|",
            f"| {CLOCKS} | {elapsed:.2f} s | {CLOCKS / elapsed:.0f} | {result['each_once']} | "
            f"{result['levels']} | {result['next_alerts']} |",
            "",
        ]
    )


async def main() -> None:
    server = os.environ.get("BENCH_DATABASE_URL") or start_embedded(
        Path(tempfile.mkdtemp(prefix="hotline-bench-")), delete_on_exit=True
    )
    url = await fresh_database(server)
    result = await run(url)
    kind = "external (BENCH_DATABASE_URL)" if os.environ.get("BENCH_DATABASE_URL") else "embedded"
    print(report(f"PostgreSQL, {kind}", result))
    if float(result["elapsed_s"]) > 10 or not result["each_once"]:  # type: ignore[arg-type]
        raise SystemExit("the clocks did not all fire within 10 s, each once")


if __name__ == "__main__":
    asyncio.run(main())
