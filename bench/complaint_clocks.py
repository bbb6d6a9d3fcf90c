"""Complaint clocks at scale: 10,000 clocks falling due at the same moment, each fired once.

The third part of ``bench/complaints.py`` (which runs it and writes the figures); it also
runs alone. In a fresh database it builds ``BENCH_CLOCKS`` (10,000) open complaints whose
resolution clocks (three calendar days) all reach their 50 % warning at the same moment T, a
few seconds ahead, each with its ``complaint.clock`` timer set to T, as registration leaves
it. Then ``BENCH_INSTANCES`` (2) timer workers, each with an engine of its own (two
instances of Hotline), fire them from T on with the registered handlers
(``app.complaints.handlers.register``: batches of ``BENCH_BATCH``, 1,000, by
``app.complaints.clock_batch``). Measured: the time from T until every warning is written
(``complaint.sla_warning`` events) and no clock's timer is due any more; checked: each clock
warned exactly once, each complaint went up one level and has its next alert (80 %)
scheduled, and every complaint's audit chain verifies.

The baseline, measured on the same rows before the run, is SQL alone doing the same writes
set-wise in one transaction (rolled back): one UPDATE of the complaints' levels and chain
heads, one INSERT of the audit entries, one of the events, one UPDATE of the timers. What it
cannot do is what the handler is for: derive each alert from the clock's history, read what
fired, and chain each entry to the one before.

Usage: ``python bench/complaint_clocks.py`` (embedded PostgreSQL) or with
``BENCH_DATABASE_URL``; prints the figures. ``BENCH_QUICK=1`` runs 500 clocks.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.complaints import chain, handlers  # noqa: E402
from app.complaints.clocks import DEFAULT_POLICIES  # noqa: E402
from app.complaints.deadlines import KIND  # noqa: E402
from app.complaints.models import snapshot  # noqa: E402
from app.db import create_engine, create_sessionmaker, plain_url  # noqa: E402
from app.embedded import start_embedded  # noqa: E402
from app.timers.worker import TimerRegistry, TimerWorker  # noqa: E402
from bench.common import fresh_database  # noqa: E402
from tests.conftest import make_settings  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
CLOCKS = int(os.environ.get("BENCH_CLOCKS", "500" if QUICK else "10000"))
INSTANCES = int(os.environ.get("BENCH_INSTANCES", "2"))
BATCH = int(os.environ.get("BENCH_BATCH", "1000"))
LEAD = timedelta(seconds=3)  # T is this far ahead of the end of the build
LIMIT_S = 120.0
TARGET_S = 10.0


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
# The baseline: what firing writes, set-wise, with no history read and no chain computed.
BASELINE = [
    """UPDATE complaints SET escalation_level = 'supervisor', audit_seq = audit_seq + 1,
       audit_hash = md5(id::text) || md5(reference)""",
    """INSERT INTO complaint_audit (complaint_id, seq, at, actor, action, before, after, data,
       prev_hash, hash)
       SELECT id, audit_seq, now(), 'system', 'sla_warning', status, status,
              jsonb_build_object('clock', 'resolution', 'alert', '0.5'), $1, audit_hash
       FROM complaints""",
    """INSERT INTO events (type, subject_type, subject_id, data, actor)
       SELECT 'complaint.sla_warning', 'complaint', id::text,
              jsonb_build_object('complaint_id', id, 'reference', reference), 'system'
       FROM complaints""",
    """UPDATE timers SET due_at = due_at + interval '21.6 hours',
       payload = '{"clock": "resolution", "alert": "0.8"}' WHERE kind = 'complaint.clock'""",
]


@dataclass(frozen=True, slots=True)
class ClockResult:
    clocks: int
    elapsed_s: float
    baseline_s: float
    each_once: bool
    levels: dict[str, int]
    next_alerts: int
    verified: bool

    @property
    def ok(self) -> bool:
        return self.elapsed_s <= TARGET_S and self.each_once and self.verified


async def build(conn: asyncpg.Connection, at: datetime, count: int) -> None:
    """Complaints registered 36 h before ``at``: their 50 % warnings all fall due at ``at``."""
    started = at - timedelta(hours=36)
    due = started + timedelta(days=3)
    policy = json.dumps(snapshot(DEFAULT_POLICIES[1]))
    await conn.execute(COMPLAINTS, started, due, count)
    await conn.execute(CLOCKS_SQL, policy, started, due)
    await conn.execute(TIMERS, KIND, at)
    await conn.execute("ANALYZE")


async def baseline(conn: asyncpg.Connection) -> float:
    """Seconds SQL alone takes to write what firing every clock writes (rolled back)."""
    tx = conn.transaction()
    await tx.start()
    try:
        began = time.perf_counter()
        for index, sql in enumerate(BASELINE):
            await (conn.execute(sql, chain.GENESIS) if index == 1 else conn.execute(sql))
        return time.perf_counter() - began
    finally:
        await tx.rollback()


async def counts(conn: asyncpg.Connection, at: datetime) -> tuple[int, int]:
    warned = await conn.fetchval("SELECT count(*) FROM events WHERE type = 'complaint.sla_warning'")
    due = await conn.fetchval(
        "SELECT count(*) FROM timers WHERE kind = $1 AND due_at <= $2", KIND, at
    )
    return int(warned), int(due)


def _workers(url: str) -> tuple[list[AsyncEngine], list[TimerWorker]]:
    settings = make_settings(url)
    engines: list[AsyncEngine] = []
    workers = []
    for _ in range(INSTANCES):
        engine = create_engine(url, pool_size=4)
        registry = TimerRegistry()
        handlers.register(registry, settings, batch_size=BATCH)
        workers.append(
            TimerWorker(
                create_sessionmaker(engine),
                registry,
                poll_interval_s=0.5,
                batch_size=settings.timer_batch_size,
                max_attempts=5,
            )
        )
        engines.append(engine)
    return engines, workers


async def _until_all_fired(conn: asyncpg.Connection, at: datetime, count: int) -> float:
    wait = (at - await conn.fetchval("SELECT now()")).total_seconds()
    await asyncio.sleep(max(wait, 0))  # the bench waits for T; the workers do not poll it
    began = time.perf_counter()
    while True:
        warned, due = await counts(conn, at)
        if warned >= count and due == 0:
            return time.perf_counter() - began
        if time.perf_counter() - began > LIMIT_S:
            raise SystemExit(f"only {warned} of {count} warned within {LIMIT_S} s")
        await asyncio.sleep(0.02)


async def chains_verify(conn: asyncpg.Connection) -> bool:
    """Every complaint's audit chain verifies to its recorded head (``chain.verify``)."""
    entries: dict[int, list[dict[str, Any]]] = {}
    for row in await conn.fetch(
        "SELECT complaint_id, seq, at, actor, action, before, after, reason, data, prev_hash, "
        "hash FROM complaint_audit ORDER BY complaint_id, seq"
    ):
        entry = {**dict(row), "data": json.loads(row["data"])}
        entries.setdefault(row["complaint_id"], []).append(entry)
    heads = await conn.fetch("SELECT id, audit_hash FROM complaints")
    return all(
        chain.verify(entries.get(h["id"], []), head_hash=h["audit_hash"]) is None for h in heads
    )


async def run(url: str, count: int = CLOCKS) -> ClockResult:
    conn = await asyncpg.connect(plain_url(url))
    now = await conn.fetchval("SELECT now()")
    at = now + LEAD + timedelta(seconds=count / 2000)
    await build(conn, at, count)
    bare = await baseline(conn)
    engines, workers = _workers(url)
    for worker in workers:
        worker.start()
    try:
        elapsed = await _until_all_fired(conn, at, count)
    finally:
        for worker in workers:
            await worker.stop()
        for engine in engines:
            await engine.dispose()
    once = await conn.fetchval(
        "SELECT count(*) = count(DISTINCT subject_id) FROM events "
        "WHERE type = 'complaint.sla_warning'"
    )
    levels = await conn.fetch("SELECT escalation_level, count(*) FROM complaints GROUP BY 1")
    next_alerts = await conn.fetchval(
        "SELECT count(*) FROM timers WHERE kind = $1 AND payload->>'alert' = '0.8'", KIND
    )
    verified = await chains_verify(conn)
    await conn.close()
    return ClockResult(
        count, elapsed, bare, bool(once), {r[0]: r[1] for r in levels}, int(next_alerts), verified
    )


def rows(result: ClockResult) -> list[str]:
    """The Markdown table of the clocks' figures."""
    r = result
    return [
        "| clocks due at T | all fired after T | alerts/s | bare SQL, same writes | ratio | "
        "each once | levels after | next alerts set | chains verify |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {r.clocks:,} | {r.elapsed_s:.2f} s | {r.clocks / r.elapsed_s:,.0f} | "
        f"{r.baseline_s:.2f} s | {r.elapsed_s / r.baseline_s:.1f}x | {r.each_once} | "
        f"{r.levels} | {r.next_alerts:,} | {r.verified} |",
    ]


async def main() -> None:
    server = os.environ.get("BENCH_DATABASE_URL") or start_embedded(
        Path(tempfile.mkdtemp(prefix="hotline-bench-")), delete_on_exit=True
    )
    result = await run(await fresh_database(server, "hotline_bench_clocks"))
    print("\n".join(rows(result)))
    if not result.ok:
        raise SystemExit("the clocks did not all fire within 10 s, each once")


if __name__ == "__main__":
    asyncio.run(main())
