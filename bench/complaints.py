"""Complaints at scale: registration latency, the list over a million complaints, and
10,000 clocks falling due at once; each against a bare baseline measured in the same run.

1. **Registration** (here): a real server (``hotline serve``) takes ``POST
   /api/v1/complaints`` at Poisson arrivals of ``RATE`` (100) registrations/s for
   ``PHASE_S`` (10 s) after a warm-up, from the lean HTTP client (``bench/lean_http.py``);
   each registration is a labelled complaint text for one of 1,000 customers (so some are
   linked to an open complaint about the same matter, as in life). p50 and p99 of the
   response time. The baseline, at the same arrivals: one statement on a bare asyncpg pool
   that writes the rows a registration writes (the complaint with its search vector, its
   clock, its first audit entry, its event, its timer).
2. **The list over a million complaints** (``bench/complaint_search.py``): bulk-loaded
   with ``COPY``, then filters and text searches through the HTTP API against the same SQL
   on a bare connection.
3. **10,000 clocks due at once** (``bench/complaint_clocks.py``): two timer workers firing
   them in batches, against SQL alone doing the same writes.

Usage: ``python bench/complaints.py`` (embedded PostgreSQL) or with ``BENCH_DATABASE_URL``;
``BENCH_WORKERS=N`` serves the API with N uvicorn workers.
Prints the figures and writes them as the section "Complaints at scale" of
``bench/RESULTS.md`` (replacing that section only). ``BENCH_QUICK=1`` runs tiny sizes to
check the program runs, and writes nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.complaints import chain, search_terms  # noqa: E402
from app.complaints.classifier import DATA_PATH  # noqa: E402
from app.complaints.clocks import DEFAULT_POLICIES  # noqa: E402
from app.complaints.models import snapshot  # noqa: E402
from app.db import plain_url  # noqa: E402
from app.embedded import start_embedded  # noqa: E402
from bench import complaint_clocks, complaint_search  # noqa: E402
from bench.common import fresh_database  # noqa: E402
from bench.lean_http import HttpError, LeanClient  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
RATE = int(os.environ.get("BENCH_RATE", "20" if QUICK else "100"))
PHASE_S, WARMUP_S = (2.0, 1.0) if QUICK else (10.0, 3.0)
COMPLAINTS = int(os.environ.get("BENCH_COMPLAINTS", "10000" if QUICK else "1000000"))
QUERIES = int(os.environ.get("BENCH_QUERIES", "10" if QUICK else "200"))
CUSTOMERS = 1000
PORT = 8766
ADMIN_PASSWORD = "bench-admin-password"
SECTION = "## Complaints at scale"
rng = random.Random(2026)
KEYS = itertools.count()


# --- the server -------------------------------------------------------------------------------


def start_server(url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "HOTLINE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "HOTLINE_LOG_LEVEL": "WARNING",
        "HOTLINE_ARGON2_TIME_COST": "1",
        "HOTLINE_ARGON2_MEMORY_KIB": "1024",
    }
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(PORT)]
    if os.environ.get("BENCH_WORKERS"):
        command += ["--workers", os.environ["BENCH_WORKERS"]]
    return subprocess.Popen(command, cwd=ROOT, env=env)


async def signed_in(client: LeanClient, server: subprocess.Popen[bytes]) -> dict[str, str]:
    for _ in range(300):
        if server.poll() is not None:
            raise RuntimeError(f"hotline serve exited ({server.returncode}): is {PORT} taken?")
        try:
            if (await client.request("GET", "/health/ready"))[0] == 200:
                break
        except HttpError:
            pass
        await asyncio.sleep(0.1)
    else:
        raise RuntimeError("server did not become ready")
    form = {"username": "admin", "password": ADMIN_PASSWORD}
    _, auth = await client.request("POST", "/api/v1/auth/token", form=form)
    return {"Authorization": f"Bearer {auth['access_token']}"}


async def with_server(
    url: str, work: Callable[[LeanClient, dict[str, str]], Awaitable[Any]]
) -> Any:
    server = start_server(url)
    client = LeanClient("127.0.0.1", PORT, size=50)
    try:
        return await work(client, await signed_in(client, server))
    finally:
        await client.close()
        server.terminate()
        server.wait(timeout=30)


# --- registration -------------------------------------------------------------------------------

TEXTS = [json.loads(line)["text"] for line in DATA_PATH.read_text(encoding="utf-8").splitlines()]
BRANCHES = complaint_search.BRANCHES


def registration_body(customers: list[int]) -> dict[str, Any]:
    return {
        "channel": rng.choice(("phone", "web", "app")),
        "customer": {"id": rng.choice(customers)},
        "complainant": {"name": "王芳", "contact": "+8613800138000", "relation": "self"},
        "matter": {
            "occurred_at": "2026-11-28T10:00:00+08:00",
            "location": rng.choice(complaint_search.PLACES),
            "branch": rng.choice(BRANCHES),
            "description": rng.choice(TEXTS),
        },
        "grounds": rng.choice(complaint_search.GROUNDS["zh"]),
        "request": rng.choice(complaint_search.REQUESTS["zh"]),
    }


async def poisson(
    rate: int, seconds: float, send: Callable[[], Coroutine[Any, Any, float | None]]
) -> list[float]:
    """Start ``send`` at Poisson arrivals for ``seconds``; the latencies (ms) it returned."""
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[float | None]] = []
    end, next_at = loop.time() + seconds, loop.time()
    while next_at < end:
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        tasks.append(asyncio.create_task(send()))
        next_at += rng.expovariate(rate)
    done = await asyncio.gather(*tasks)
    return [d for d in done if d is not None]


@dataclass(frozen=True, slots=True)
class Latency:
    sent: int
    ok: int
    p50_ms: float
    p99_ms: float


def latency(times: list[float], sent: int) -> Latency:
    q = statistics.quantiles(times, n=100) if len(times) >= 2 else [float("nan")] * 99
    return Latency(sent, len(times), q[49], q[98])


async def register_over_http(url: str, customers: list[int]) -> Latency:
    async def work(client: LeanClient, headers: dict[str, str]) -> Latency:
        sent = 0

        async def send() -> float | None:
            nonlocal sent
            sent += 1
            keyed = {**headers, "Idempotency-Key": f"bench-{next(KEYS)}"}
            began = time.perf_counter()
            status, _ = await client.request(
                "POST", "/api/v1/complaints", json_body=registration_body(customers), headers=keyed
            )
            return (time.perf_counter() - began) * 1000 if status in (200, 201) else None

        await poisson(RATE, WARMUP_S, send)
        sent = 0
        return latency(await poisson(RATE, PHASE_S, send), sent)

    result: Latency = await with_server(url, work)
    return result


BARE_REGISTRATION = """
WITH c AS (
    INSERT INTO complaints (reference, status, channel, customer_id, complainant_name,
        complainant_contact, complainant_relation, occurred_at, location, branch, description,
        grounds, request, escalation_level, registered_by, registered_at, due_at, audit_seq,
        audit_hash, search)
    VALUES ($1, 'registered', $2, $3, $4, $5, 'self', now(), $6, $7, $8, $9, $10, 'agent',
        'bench', now(), now() + interval '3 days', 1, $11, $12::tsvector)
    RETURNING id, due_at
), k AS (
    INSERT INTO complaint_clocks (complaint_id, kind, policy, started_at, pauses, extensions,
        due_at)
    SELECT id, 'resolution', $13::jsonb, now(), '[]', '[]', due_at FROM c
    RETURNING id
), a AS (
    INSERT INTO complaint_audit (complaint_id, seq, at, actor, action, after, data, prev_hash,
        hash)
    SELECT id, 1, now(), 'bench', 'registered', 'registered', '{}', $14, $11 FROM c
), e AS (
    INSERT INTO events (type, subject_type, subject_id, data, actor)
    SELECT 'complaint.registered', 'complaint', id::text, '{}', 'bench' FROM c
)
INSERT INTO timers (kind, subject, due_at)
SELECT 'complaint.clock', id::text, now() + interval '36 hours' FROM k
"""


async def register_bare(url: str, customers: list[int]) -> Latency:
    policy = json.dumps(snapshot(DEFAULT_POLICIES[1]))
    pool = await asyncpg.create_pool(plain_url(url), min_size=10, max_size=10)
    assert pool is not None
    sent = 0

    async def send() -> float | None:
        nonlocal sent
        sent += 1
        body = registration_body(customers)
        matter = body["matter"]
        began = time.perf_counter()
        texts = [matter["location"], matter["branch"], matter["description"]]
        reference = f"B-{next(KEYS):09d}"
        vector = search_terms.vector(
            search_terms.terms(reference, *texts, body["grounds"], body["request"])
        )
        await pool.execute(
            BARE_REGISTRATION,
            reference,
            body["channel"],
            body["customer"]["id"],
            body["complainant"]["name"],
            body["complainant"]["contact"],
            *texts,
            body["grounds"],
            body["request"],
            "0" * 64,
            vector,
            policy,
            chain.GENESIS,
        )
        return (time.perf_counter() - began) * 1000

    try:
        await poisson(RATE, WARMUP_S, send)
        sent = 0
        return latency(await poisson(RATE, PHASE_S, send), sent)
    finally:
        await pool.close()


async def customers_for(conn: asyncpg.Connection) -> list[int]:
    await conn.executemany(
        "INSERT INTO customers (name, phone, tier) VALUES ($1, $2, 'standard')",
        [(f"c{i}", f"+86139{i:08d}") for i in range(CUSTOMERS)],
    )
    return [r["id"] for r in await conn.fetch("SELECT id FROM customers")]


# --- the report ---------------------------------------------------------------------------------


def machine(kind: str) -> str:
    load = os.getloadavg()
    return (
        f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PostgreSQL {kind}; load average at the end {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f} (1 / 5 / 15 min)"
    )


def report(
    kind: str,
    ours: Latency,
    bare: Latency,
    spent: dict[str, float],
    listed: list[complaint_search.Timed],
    clocks: complaint_clocks.ClockResult,
) -> str:
    worst = max(t.p99_ms for t in listed)
    lines = [
        SECTION,
        "",
        f"`bench/complaints.py`, {machine(kind)}.",
        "",
        f"### Registration at {RATE}/s (Poisson, {PHASE_S:.0f} s after a {WARMUP_S:.0f} s warm-up)",
        "",
        "| | registered | p50 | p99 |",
        "|---|---|---|---|",
        f"| `POST /api/v1/complaints`, `hotline serve` | {ours.ok}/{ours.sent} | "
        f"{ours.p50_ms:.1f} ms | {ours.p99_ms:.1f} ms |",
        f"| bare asyncpg, the same rows in one statement | {bare.ok}/{bare.sent} | "
        f"{bare.p50_ms:.1f} ms | {bare.p99_ms:.1f} ms |",
        f"| ratio | | {ours.p50_ms / bare.p50_ms:.1f}x | {ours.p99_ms / bare.p99_ms:.1f}x |",
        "",
        f"### The list over {COMPLAINTS:,} complaints",
        "",
        "Bulk load: " + ", ".join(f"{k} {v:.0f} s" for k, v in spent.items()) + ".",
        "",
        *complaint_search.rows(listed),
        "",
        f"### {clocks.clocks:,} clocks due at the same moment",
        "",
        f"Two timer workers (an engine each), batches of {complaint_clocks.BATCH:,}.",
        "",
        *complaint_clocks.rows(clocks),
        "",
        "### Against the targets",
        "",
        f"- Registration p99 under 50 ms at 100/s: {_met(ours.p99_ms < 50)} "
        f"({ours.p99_ms:.1f} ms).",
        f"- List and text search p99 under 200 ms over a million complaints: "
        f"{_met(worst < 200)} (worst p99 {worst:.1f} ms).",
        f"- 10,000 clocks all fired within 10 s, each once: {_met(clocks.ok)} "
        f"({clocks.elapsed_s:.2f} s).",
        "",
    ]
    return "\n".join(lines)


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def write_section(text: str) -> None:
    """Replace this benchmark's section of ``bench/RESULTS.md`` (or add it at the end)."""
    path = ROOT / "bench" / "RESULTS.md"
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    start = current.find(SECTION + "\n")
    if start < 0:
        path.write_text(current.rstrip("\n") + "\n\n" + text, encoding="utf-8")
        return
    after = current.find("\n## ", start + len(SECTION))
    rest = "" if after < 0 else current[after + 1 :]
    path.write_text(current[:start] + text + ("\n" + rest if rest else ""), encoding="utf-8")


async def main() -> None:
    external = os.environ.get("BENCH_DATABASE_URL")
    server = external or start_embedded(
        Path(tempfile.mkdtemp(prefix="hotline-bench-")), delete_on_exit=True
    )
    clocks = await complaint_clocks.run(
        await fresh_database(server, "hotline_bench_clocks"),
        complaint_clocks.CLOCKS,
    )
    print("\n".join(complaint_clocks.rows(clocks)), flush=True)
    url = await fresh_database(server, "hotline_bench_complaints")
    conn = await asyncpg.connect(plain_url(url))
    customers = await customers_for(conn)
    ours = await register_over_http(url, customers)
    bare = await register_bare(url, customers)
    print(f"registration: {ours}; bare: {bare}", flush=True)
    spent = await complaint_search.load(conn, COMPLAINTS)
    print(f"loaded {COMPLAINTS:,} complaints: {spent}", flush=True)

    async def listing(client: LeanClient, headers: dict[str, str]) -> list[complaint_search.Timed]:
        return await complaint_search.measure(client, headers, conn, QUERIES)

    listed = await with_server(url, listing)
    await conn.close()
    kind = "external (BENCH_DATABASE_URL)" if external else "embedded"
    text = report(kind, ours, bare, spent, listed, clocks)
    print(text)
    if not QUICK:
        write_section(text)


if __name__ == "__main__":
    asyncio.run(main())
