"""The admission statement's share lock on its queue: what it costs, measured in the same run.

The admission statement reads the queue it admits into ``FOR SHARE`` (``app.routing.admission``,
"A max wait changed meanwhile"), so a change of the queue's max wait and an admission cannot
pass each other. Share locks do not wait for each other, but each one is written on the
queue's row, and concurrent ones become a multixact. This program admits contacts into one
queue through ``admission.admit`` on a driver pool (the hot path of ``POST /api/v1/contacts``),
``CLIENTS`` at a time for ``PHASE_S`` seconds, with the statement as it is and, as the
baseline, the same statement without the lock; the two alternate ``RUNS`` times, on the same
data (the contacts, their timers and events emptied before each phase). Admissions per
second, p50 and p99, and the ratio of the locked statement's rate to the baseline's.

Usage: ``python bench/admission_lock.py`` (embedded PostgreSQL) or with
``BENCH_DATABASE_URL``. Figures go to stdout only (``bench/RESULTS.md`` quotes them).
``BENCH_QUICK=1`` checks that the program runs.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.config import Settings  # noqa: E402
from app.db import create_driver_pool, plain_url  # noqa: E402
from app.embedded import start_embedded  # noqa: E402
from app.routing import admission  # noqa: E402
from app.routing.admission import Admission, SystemCaller  # noqa: E402
from app.routing.admission_statement import STATEMENT as LOCKED  # noqa: E402
from bench.common import fresh_database  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
DATABASE = "hotline_bench_admission_lock"
CLIENTS = (16, 2)
PHASE_S = 1.0 if QUICK else 6.0
RUNS = 1 if QUICK else 3
LOCK_CLAUSE = "    FOR SHARE OF q\n"
BARE = LOCKED.replace(LOCK_CLAUSE, "")
QUEUE = """
INSERT INTO queues (name, channels, strategy, ring_timeout_s, wrap_up_s, sl_threshold_s,
    sl_target_pct, max_wait_s)
VALUES ('bench', '{chat,voice}', 'longest_idle', 30, 0, 20, 80, 600)
"""


def use(statement: str) -> None:
    """Make ``admission.admit`` run ``statement`` (it reads its module's name at each call)."""
    vars(admission)["STATEMENT"] = statement


async def phase(
    pool: asyncpg.Pool, conn: asyncpg.Connection, statement: str, clients: int, settings: Settings
) -> tuple[float, list[float]]:
    """Admissions per second and each one's time (s), ``clients`` at a time."""
    await conn.execute("TRUNCATE contacts, timers, events CASCADE")
    use(statement)
    caller, times = SystemCaller("bench"), []
    end = time.perf_counter() + PHASE_S

    async def client() -> None:
        while time.perf_counter() < end:
            began = time.perf_counter()
            await admission.admit(
                pool,
                caller=caller,
                admission=Admission(channel="chat", queue="bench"),
                key=None,
                settings=settings,
            )
            times.append(time.perf_counter() - began)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return len(times) / (time.perf_counter() - started), times


def ms(times: list[float], share: float) -> float:
    ordered = sorted(times)
    return 1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def main() -> None:
    assert BARE != LOCKED, "the admission statement no longer has its share lock"
    server = os.environ.get("BENCH_DATABASE_URL") or start_embedded(
        Path(tempfile.mkdtemp(prefix="hotline-bench-")), delete_on_exit=True
    )
    url = await fresh_database(server, DATABASE)
    conn = await asyncpg.connect(plain_url(url))
    await conn.execute(QUEUE)
    settings = Settings(database_url=url)
    pool = await create_driver_pool(url, size=max(CLIENTS))
    print(
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}, PostgreSQL "
        f"{await conn.fetchval('SHOW server_version')}"
    )
    try:
        for clients in CLIENTS:
            await phase(pool, conn, BARE, clients, settings)  # warm: plans, pool, caches
            found: dict[str, list[tuple[float, list[float]]]] = {"bare": [], "locked": []}
            for _ in range(RUNS):
                found["bare"].append(await phase(pool, conn, BARE, clients, settings))
                found["locked"].append(await phase(pool, conn, LOCKED, clients, settings))
            rates = {name: statistics.median(r for r, _ in runs) for name, runs in found.items()}
            for name, runs in found.items():
                each = ", ".join(f"{r:.0f}" for r, _ in runs)
                p50 = statistics.median(ms(t, 0.5) for _, t in runs)
                p99 = statistics.median(ms(t, 0.99) for _, t in runs)
                print(
                    f"{clients:>2} clients, {name:6}: {rates[name]:6.0f}/s (runs {each}), "
                    f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"
                )
            print(f"{clients:>2} clients: locked / bare {rates['locked'] / rates['bare']:.2f}")
    finally:
        use(LOCKED)
        await pool.close()
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
