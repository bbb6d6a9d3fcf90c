"""Routing benchmark: dispatcher decisions per second and end-to-end offer latency.

Builds a centre of 2,000 agents, 50 skills and 4 customer tiers in a fresh database, then:

1. decisions/s: 2,000 queued contacts are matched by the real dispatcher's rounds (``Rounds``:
   taking the lead reads every agent, then scoring, row locks, offers, loads, timers, events)
   and, on the same data reset, by a bare asyncpg loop doing the same claim transaction with
   the agent chosen in SQL. The ratio of the two is reported.
2. latency: a real server (``hotline serve``, in two layouts: one process, and the API with
   the dispatcher in a process of its own) takes ``POST /api/v1/contacts`` at Poisson arrival
   rates of 100 and 200 contacts/s, while every agent's console is open on ``/ws/agent``
   (2,000 websockets); each contact's latency runs from its POST being sent to its
   ``offer.created`` arriving on the console of the agent it was offered to. p50 and p99
   are reported.

Usage: ``python bench/routing.py`` (embedded PostgreSQL) or with ``BENCH_DATABASE_URL``;
``BENCH_WORKERS=N`` serves the API with N uvicorn workers. Figures go to stdout and to
``bench/RESULTS.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import uvloop
from alembic import command
from sqlalchemy.engine import make_url
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.agents.security import issue_token  # noqa: E402
from app.cli import alembic_config  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import connect_driver, plain_url  # noqa: E402
from app.embedded import start_embedded  # noqa: E402
from app.routing.dispatcher import LEADER_LOCK  # noqa: E402
from app.routing.rounds import Rounds  # noqa: E402
from bench.lean_http import HttpError, LeanClient  # noqa: E402

AGENTS, SKILLS, QUEUES, BACKLOG = 2000, 50, 50, 2000
TIERS = [("platinum", 0.01), ("gold", 0.19), ("silver", 0.30), ("standard", 0.50)]
RATES, PHASE_S = (100, 200), 10.0
WARMUP_S = 3.0  # at the lower rate, before the measured phases: pools, caches, plans
# Each layout is measured this many times, alternating layouts: one run on a shared VM can be
# twice as slow at the tail as the next.
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
PORT = 8765
CONNECTIONS = 100  # keep-alive connections for the POSTs
FAILED: list[dict[str, Any]] = []
KEYS = itertools.count()
ANSWERED: list[float] = []  # POST response times, ms
ADMIN_PASSWORD = "bench-admin-password"
JWT_SECRET = "bench-signing-secret-" + "x" * 32  # the server's, so agents' tokens can be made
rng = random.Random(2026)


async def fresh_database(server: str) -> str:
    conn = await asyncpg.connect(plain_url(server))
    await conn.execute('DROP DATABASE IF EXISTS "hotline_bench" WITH (FORCE)')
    await conn.execute('CREATE DATABASE "hotline_bench"')
    await conn.close()
    url = make_url(server).set(database="hotline_bench").render_as_string(hide_password=False)
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
    return url


async def build_centre(conn: asyncpg.Connection) -> None:
    """Skills, queues (one step each, widening after 5 s), agents, customers, via SQL."""
    await conn.executemany(
        "INSERT INTO skills (name) VALUES ($1)", [(f"skill_{i}",) for i in range(SKILLS)]
    )
    await conn.executemany(
        """INSERT INTO queues (name, channels, strategy, steps, sl_threshold_s, sl_target_pct,
           ring_timeout_s, wrap_up_s) VALUES ($1, ARRAY['chat'], 'longest_idle', $2::jsonb,
           20, 80, 600, 0)""",
        [
            (
                f"q{i}",
                f'[{{"skills": [{{"skill": "skill_{i}", "min_level": 3}}], "expires_after_s": 5}}]',
            )
            for i in range(QUEUES)
        ],
    )
    await conn.executemany(
        """INSERT INTO agents (username, name, password_hash, role, status, site)
           VALUES ($1, $1, 'x', 'agent', 'available', 'bench')""",
        [(f"agent{i}",) for i in range(AGENTS)],
    )
    ids = [r["id"] for r in await conn.fetch("SELECT id FROM agents WHERE site = 'bench'")]
    skill_ids = [r["id"] for r in await conn.fetch("SELECT id FROM skills ORDER BY id")]
    await conn.executemany(
        "INSERT INTO agent_channels (agent_id, channel, capacity) VALUES ($1, 'chat', 3)",
        [(i,) for i in ids],
    )
    rows = [(a, s, rng.randint(1, 10)) for a in ids for s in rng.sample(skill_ids, 3)]
    await conn.executemany(
        "INSERT INTO agent_skills (agent_id, skill_id, level) VALUES ($1, $2, $3)", rows
    )
    customers = [(f"c{i}", f"+86139{i:08d}", pick_tier()) for i in range(1000)]
    await conn.executemany(
        "INSERT INTO customers (name, phone, tier) VALUES ($1, $2, $3)", customers
    )
    # Planner statistics for the bulk-loaded tables, as autovacuum would gather in time: with
    # the empty tables' statistics, plans assume one agent and join accordingly.
    await conn.execute("ANALYZE")


def pick_tier() -> str:
    roll, total = rng.random(), 0.0
    for name, share in TIERS:
        total += share
        if roll < total:
            return name
    return TIERS[-1][0]


async def queue_backlog(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """INSERT INTO contacts (queue_id, channel, status, tier, customer_id, enqueued_at,
               routing_started_at, deadline_at)
           SELECT q.id, 'chat', 'queued', c.tier, c.id, now() - (g % 60) * interval '1 second',
               now() - (g % 60) * interval '1 second', now() + interval '10 seconds'
           FROM generate_series(1, $1) g
           JOIN queues q ON q.name = 'q' || (g % $2)
           JOIN customers c ON c.name = 'c' || (g % 1000)""",
        BACKLOG,
        QUEUES,
    )


async def reset(conn: asyncpg.Connection) -> None:
    await conn.execute("TRUNCATE offers, timers, events, contacts RESTART IDENTITY CASCADE")
    await conn.execute("UPDATE agent_channels SET load = 0")
    await conn.execute(
        "UPDATE agents SET work_offers = 0, work_contacts = 0, work_wrap_ups = 0, "
        "state = 'idle', ready_at = NULL, last_offer_at = NULL"
    )


async def hotline_decisions(url: str) -> tuple[int, float]:
    """The leader's rounds, from taking the lead (reading every agent) until nothing is left."""
    conn = await connect_driver(url)
    settings = Settings(database_url=url)
    made, started = 0, time.perf_counter()
    rounds = Rounds(conn, settings)
    while True:
        result = await rounds.round()
        if not result.offers:
            break
        made += result.offers
    elapsed = time.perf_counter() - started
    await conn.close()
    return made, elapsed


BARE_CLAIM = """
WITH agent AS (
    SELECT a.id FROM agents a
    JOIN agent_channels ac ON ac.agent_id = a.id AND ac.channel = 'chat'
    WHERE a.status = 'available' AND a.work_wrap_ups = 0 AND ac.load < ac.capacity
    ORDER BY a.idle_since, a.id LIMIT 1 FOR UPDATE OF a SKIP LOCKED
)
SELECT id FROM agent
"""


async def bare_decisions(url: str) -> tuple[int, float]:
    """The same claim transaction in bare asyncpg: no scoring, agent chosen by SQL."""
    conn = await asyncpg.connect(plain_url(url))
    made, started = 0, time.perf_counter()
    while True:
        async with conn.transaction():
            contacts = await conn.fetch(
                "SELECT id, queue_id FROM contacts WHERE status = 'queued' "
                "ORDER BY deadline_at, id LIMIT 500 FOR UPDATE SKIP LOCKED"
            )
            for contact in contacts:
                made += await bare_claim(conn, contact["id"], contact["queue_id"])
        if not contacts:
            break
    elapsed = time.perf_counter() - started
    await conn.close()
    return made, elapsed


async def bare_claim(conn: asyncpg.Connection, contact_id: int, queue_id: int) -> int:
    agent_id = await conn.fetchval(BARE_CLAIM)
    if agent_id is None:
        await conn.execute("UPDATE contacts SET status = 'canceled' WHERE id = $1", contact_id)
        return 0
    offer_id = await conn.fetchval(
        "INSERT INTO offers (contact_id, agent_id, queue_id, channel, reason, expires_at) "
        "VALUES ($1, $2, $3, 'chat', '{}', now() + interval '10 minutes') RETURNING id",
        contact_id,
        agent_id,
        queue_id,
    )
    await conn.execute(
        "UPDATE contacts SET status = 'offered', agent_id = $2 WHERE id = $1", contact_id, agent_id
    )
    await conn.execute(
        "UPDATE agent_channels SET load = load + 1 WHERE agent_id = $1 AND channel = 'chat'",
        agent_id,
    )
    await conn.execute(
        "UPDATE agents SET work_offers = work_offers + 1, state = 'offered', last_offer_at = now()"
        " WHERE id = $1",
        agent_id,
    )
    await conn.execute(
        "INSERT INTO timers (kind, subject, due_at) VALUES ('offer.expire', $1, "
        "now() + interval '10 minutes')",
        str(offer_id),
    )
    await conn.execute(
        "INSERT INTO events (type, subject_type, subject_id, data) VALUES "
        "('offer.created', 'offer', $1, '{}'), ('agent.state_changed', 'agent', $2, '{}')",
        str(offer_id),
        str(agent_id),
    )
    return 1


LAYOUTS = {False: "one process", True: "API + dispatcher process"}


@dataclass
class Latency:
    layout: str
    rate: int
    sent: int
    offered: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    post_p50_ms: float
    post_p99_ms: float
    busy_pct: float  # of the machine's cores, during the phase
    steal_pct: float  # taken by the host from this machine's cores, during the phase


def cpu_ticks() -> list[int]:
    """The machine's CPU time so far (/proc/stat): user, nice, system, idle, iowait, irq,
    softirq, steal."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    return [int(f) for f in fields]


def busy_and_steal(before: list[int], after: list[int]) -> tuple[float, float]:
    spent = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(spent) or 1
    idle = spent[3] + spent[4]
    return 100 * (total - idle) / total, 100 * spent[7] / total


def start_server(url: str, *, split: bool) -> subprocess.Popen[bytes]:
    """``hotline serve``; ``split``: with the dispatcher in a process of its own."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "HOTLINE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "HOTLINE_JWT_SECRET": JWT_SECRET,
        "HOTLINE_LOG_LEVEL": "WARNING",
        "HOTLINE_ARGON2_TIME_COST": "1",
        "HOTLINE_ARGON2_MEMORY_KIB": "1024",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--port",
            str(PORT),
            *(["--dispatcher-process"] if split else []),
            *(
                ["--workers", os.environ["BENCH_WORKERS"]]
                if os.environ.get("BENCH_WORKERS")
                else []
            ),
        ],
        cwd=ROOT,
        env=env,
    )


async def wait_leader(url: str) -> None:
    """Until some process holds the dispatcher's lock (the child may start after the API)."""
    conn = await asyncpg.connect(plain_url(url))
    try:
        for _ in range(300):
            held = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND ((classid::bigint << 32) | objid::bigint) = $1",
                LEADER_LOCK,
            )
            if held:
                return
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    raise RuntimeError("no dispatcher took the lead")


async def wait_ready(client: LeanClient) -> None:
    for _ in range(200):
        try:
            if (await client.request("GET", "/health/ready"))[0] == 200:
                return
        except HttpError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("server did not become ready")


class Consoles:
    """Every bench agent's console: a websocket to ``/ws/agent``, as the agent's browser
    would hold, noting when each ``offer.created`` arrives (by contact)."""

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}
        self._sockets: list[ClientConnection] = []
        self._readers: list[asyncio.Task[None]] = []

    async def open(self, agent_ids: list[int]) -> None:
        for start in range(0, len(agent_ids), 100):  # a hundred handshakes at a time
            batch = agent_ids[start : start + 100]
            self._sockets += await asyncio.gather(*(self._connect(a) for a in batch))
        self._readers = [asyncio.create_task(self._read(ws)) for ws in self._sockets]

    async def _connect(self, agent_id: int) -> ClientConnection:
        token = issue_token(JWT_SECRET, agent_id=agent_id, ttl_s=3600).access_token
        ws = await connect(
            f"ws://127.0.0.1:{PORT}/ws/agent?token={token}", ping_interval=None, open_timeout=60
        )
        first = json.loads(await ws.recv())
        if first.get("type") != "snapshot":
            raise RuntimeError(f"console of agent {agent_id} began with {first!r}")
        return ws

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                now = time.perf_counter()
                message = json.loads(raw)
                if message["type"] != "event":
                    continue
                event = message["event"]
                if event["type"] == "offer.created":
                    self.seen.setdefault(event["data"]["contact_id"], now)

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self._sockets), return_exceptions=True)
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


async def send_contact(client: LeanClient, headers: dict[str, str], sent: dict[int, float]) -> None:
    body = {
        "channel": "chat",
        "queue": f"q{rng.randrange(QUEUES)}",
        "customer": {"id": rng.randint(1, 1000)},
    }
    t0 = time.perf_counter()
    # A retry with the same key cannot create a second contact.
    keyed = {**headers, "Idempotency-Key": f"bench-{next(KEYS)}"}
    response = None
    for _ in range(3):
        try:
            response = await client.request(
                "POST", "/api/v1/contacts", json_body=body, headers=keyed
            )
            break
        except HttpError:
            continue
    if response is None:
        FAILED.append(body)
        return
    status, created = response
    if status == 201:
        sent[created["id"]] = t0
        ANSWERED.append((time.perf_counter() - t0) * 1000)
    else:
        FAILED.append(body)


async def latency_phase(
    client: LeanClient,
    headers: dict[str, str],
    consoles: Consoles,
    rate: int,
    layout: str,
    duration: float = PHASE_S,
) -> Latency:
    sent: dict[int, float] = {}
    tasks: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    # The load generator collects its garbage between phases: a collection in the middle of
    # one (it holds thousands of websockets) would stall the clock that times the server.
    gc.collect()
    gc.disable()
    ticks = cpu_ticks()
    try:
        end, next_at = loop.time() + duration, loop.time()
        while next_at < end:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            tasks.append(asyncio.create_task(send_contact(client, headers, sent)))
            next_at += rng.expovariate(rate)
        await asyncio.gather(*tasks)
        deadline = loop.time() + 10
        seen = consoles.seen
        busy, steal = busy_and_steal(ticks, cpu_ticks())
        while loop.time() < deadline and not set(sent) <= set(seen):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    finally:
        gc.enable()
    delays = sorted((seen[c] - t0) * 1000 for c, t0 in sent.items() if c in seen)
    posts = sorted(ANSWERED)
    ANSWERED.clear()
    pq = statistics.quantiles(posts, n=100) if len(posts) >= 2 else [float("nan")] * 99
    q = statistics.quantiles(delays, n=100) if len(delays) >= 2 else [float("nan")] * 99
    return Latency(
        layout,
        rate,
        len(sent),
        len(delays),
        q[49],
        q[98],
        max(delays, default=float("nan")),
        pq[49],
        pq[98],
        busy,
        steal,
    )


async def latency(url: str, agent_ids: list[int], *, split: bool) -> list[Latency]:
    server = start_server(url, split=split)
    client = LeanClient("127.0.0.1", PORT, size=CONNECTIONS)
    consoles = Consoles()
    try:
        await wait_ready(client)
        await wait_leader(url)
        _, auth = await client.request(
            "POST", "/api/v1/auth/token", form={"username": "admin", "password": ADMIN_PASSWORD}
        )
        headers = {"Authorization": f"Bearer {auth['access_token']}"}
        await consoles.open(agent_ids)
        phases = [(RATES[0], WARMUP_S), *((rate, PHASE_S) for rate in RATES)]
        measured = [
            await latency_phase(client, headers, consoles, rate, LAYOUTS[split], seconds)
            for rate, seconds in phases
        ]
        return measured[1:]  # the warm-up is not counted
    finally:
        await consoles.close()
        await client.close()
        server.terminate()
        server.wait(timeout=30)


@dataclass
class Summary:
    """The run with the median p99 of one layout and rate, and the spread over the runs."""

    median: Latency
    runs: int
    p99_low_ms: float
    p99_high_ms: float


def median_runs(runs: list[Latency]) -> list[Summary]:
    groups: dict[tuple[str, int], list[Latency]] = {}
    for x in runs:
        groups.setdefault((x.layout, x.rate), []).append(x)
    summaries = []
    for group in groups.values():
        ordered = sorted(group, key=lambda x: x.p99_ms)
        summaries.append(
            Summary(ordered[len(ordered) // 2], len(ordered), ordered[0].p99_ms, ordered[-1].p99_ms)
        )
    return summaries


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_kb / 1024 / 1024:.0f} GiB, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def report(
    server: str, ours: tuple[int, float], bare: tuple[int, float], lat: list[Summary]
) -> str:
    ours_rate, bare_rate = ours[0] / ours[1], bare[0] / bare[1]
    lines = [
        "# Benchmark results",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python bench/routing.py`.",
        f"Machine: {machine()}.",
        f"Database: {server}.",
        "",
        f"Centre: {AGENTS} agents (chat capacity 3, 3 random skills each), {SKILLS} skills, "
        f"{QUEUES} queues, tiers {', '.join(f'{n} {s:.0%}' for n, s in TIERS)}.",
        "",
        "## Dispatcher decisions per second",
        "",
        f"{BACKLOG} queued contacts matched to {AGENTS} agents.",
        "",
        "| implementation | decisions | seconds | decisions/s |",
        "|---|---|---|---|",
        f"| Hotline dispatcher round | {ours[0]} | {ours[1]:.2f} | {ours_rate:.0f} |",
        f"| bare asyncpg claim transaction | {bare[0]} | {bare[1]:.2f} | {bare_rate:.0f} |",
        "",
        f"Ratio Hotline / bare: **{ours_rate / bare_rate:.2f}**.",
        "",
        "## End-to-end latency: POST /api/v1/contacts → offer.created on the agent's console",
        "",
        f"Requests that failed: {len(FAILED)}.",
        "",
        "Layouts: `hotline serve` (one process: API and dispatcher on one event loop) and "
        "`hotline serve --dispatcher-process` (the dispatcher in a process of its own). "
        f"Every agent's console is open on `/ws/agent` ({AGENTS} websockets); a contact's "
        "latency runs from its POST being sent to its `offer.created` arriving on the console "
        "of the agent it was offered to. The load generator is one process: a lean keep-alive "
        "HTTP client (`bench/lean_http.py`) and the websocket clients; the server, "
        "PostgreSQL and the load generator share the machine's cores. Each layout gets "
        f"{WARMUP_S:.0f} s of arrivals at {RATES[0]}/s first, not counted (connections, "
        f"statement caches); each measured phase lasts {PHASE_S:.0f} s. Each layout is run "
        f"{RUNS} times, alternating; the table shows the run with the median p99 and the "
        "range of p99 over the runs. Machine busy: the share of both cores in use during "
        "that run's phase (server, database, load generator); steal: the share the host took. "
        "This machine's speed varies over a day: the bare claim loop above, measured in the "
        "same run, shows how fast it was.",
        "",
        "| layout | arrivals/s (Poisson) | contacts | offered | p50 ms | p99 ms "
        "| p99 over the runs, ms | max ms | POST answered p50 ms | POST p99 ms "
        "| machine busy | steal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {x.layout} | {x.rate} | {x.sent} | {x.offered} | {x.p50_ms:.1f} | {x.p99_ms:.1f} "
        f"| {s.p99_low_ms:.0f} to {s.p99_high_ms:.0f} ({s.runs} runs) | {x.max_ms:.1f} "
        f"| {x.post_p50_ms:.1f} | {x.post_p99_ms:.1f} | {x.busy_pct:.0f} % | {x.steal_pct:.1f} % |"
        for s in lat
        for x in [s.median]
    ]
    ratio_ok = ours_rate / bare_rate >= 0.5
    best = min((s.median for s in lat if s.median.rate == 200), key=lambda x: x.p99_ms)
    lines += [
        "",
        "## Against the targets",
        "",
        f"- Throughput at least half the bare implementation's: "
        f"{'met' if ratio_ok else 'not met'} ({ours_rate / bare_rate:.2f}).",
        f"- p99 under 50 ms at 200 contacts/s: {'met' if best.p99_ms < 50 else 'not met'} "
        f"(best median: {best.p99_ms:.0f} ms, {best.layout}).",
    ]
    return "\n".join(lines) + "\n"


async def main() -> None:
    server = os.environ.get("BENCH_DATABASE_URL") or start_embedded(
        Path(tempfile.mkdtemp(prefix="hotline-bench-")), delete_on_exit=True
    )
    url = await fresh_database(server)
    conn = await asyncpg.connect(plain_url(url))
    await build_centre(conn)
    await queue_backlog(conn)
    ours = await hotline_decisions(url)
    print(f"hotline: {ours[0]} decisions in {ours[1]:.2f} s")
    await reset(conn)
    await queue_backlog(conn)
    bare = await bare_decisions(url)
    print(f"bare: {bare[0]} decisions in {bare[1]:.2f} s")
    agent_ids = [r["id"] for r in await conn.fetch("SELECT id FROM agents WHERE site = 'bench'")]
    runs: list[Latency] = []
    for run in range(RUNS):
        for split in LAYOUTS:
            await reset(conn)
            measured = await latency(url, agent_ids, split=split)
            for x in measured:
                print(
                    f"run {run + 1}, {x.layout}, {x.rate}/s: {x.offered}/{x.sent} offered, "
                    f"p50 {x.p50_ms:.1f}, p99 {x.p99_ms:.1f} ms"
                )
            runs += measured
    await conn.close()
    lat = median_runs(runs)
    kind = "external (BENCH_DATABASE_URL)" if os.environ.get("BENCH_DATABASE_URL") else "embedded"
    text = report(f"PostgreSQL, {kind}", ours, bare, lat)
    (ROOT / "bench" / "RESULTS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    # The load generator runs on uvloop, as the server does: the default loop would take
    # more of the cores the server is measured on, and add its own delays to the timings.
    uvloop.run(main())
