"""Routing benchmark: dispatcher decisions per second and end-to-end offer latency.

Builds a centre of 2,000 agents, 50 skills and 4 customer tiers in a fresh database, then:

1. decisions/s: 2,000 queued contacts are matched by the real dispatcher's rounds (``Rounds``:
   taking the lead reads every agent, then scoring, row locks, offers, loads, timers, events)
   and, on the same data reset each time, by two bare asyncpg baselines: the batched round
   (``BATCHED_ROUND``: one statement a round, over each queue's ``dispatch_batch`` most
   urgent contacts, that locks, matches by skill, channel, room and deadline, and writes
   what Hotline's round writes)
   and a claim loop (one contact at a time, a few round trips each, the agent chosen in SQL
   without skills). Hotline and the batched round are measured ``BENCH_DECISION_RUNS`` times
   (3), alternating, and their median runs reported; the claim loop, slow, once. Hotline's
   decisions/s are reported against both: against the batched round it measures what
   Hotline's scoring and explained decisions cost over the bare SQL of the same round;
   against the claim loop, mostly what batching saves.
2. latency: a real server (``hotline serve``, in two layouts: one process, and the API with
   the dispatcher in a process of its own) takes ``POST /api/v1/contacts`` at Poisson arrival
   rates of 100 and 200 contacts/s, while every agent's console is open on ``/ws/agent``
   (2,000 websockets); each contact's latency runs from its POST being sent to its
   ``offer.created`` arriving on the console of the agent it was offered to. p50 and p99
   are reported.

Usage: ``python bench/routing.py`` (embedded PostgreSQL) or with ``BENCH_DATABASE_URL``;
``BENCH_WORKERS=N`` serves the API with N uvicorn workers. Figures go to stdout and to
``bench/RESULTS.md``. ``BENCH_QUICK=1`` checks that the program runs: the same centre, but
one decision run, one latency run of short phases, and nothing written to ``RESULTS.md``.
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
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.agents.security import issue_token  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import connect_driver, plain_url  # noqa: E402
from app.embedded import start_embedded  # noqa: E402
from app.routing.dispatcher import LEADER_LOCK  # noqa: E402
from app.routing.rounds import Rounds  # noqa: E402
from app.runtime import GC_THRESHOLDS  # noqa: E402
from bench.common import fresh_database  # noqa: E402
from bench.lean_http import HttpError, LeanClient  # noqa: E402

AGENTS, SKILLS, QUEUES, BACKLOG = 2000, 50, 50, 2000
TIERS = [("platinum", 0.01), ("gold", 0.19), ("silver", 0.30), ("standard", 0.50)]
# A quick run checks the program end to end; its figures are not a result.
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
RATES, PHASE_S = (100, 200), 2.0 if QUICK else 10.0
WARMUP_S = 1.0 if QUICK else 3.0  # at the lower rate, before the measured phases: pools, plans
# Each layout is measured this many times, alternating layouts: one run on a shared VM can be
# twice as slow at the tail as the next.
RUNS = int(os.environ.get("BENCH_RUNS", "1" if QUICK else "3"))
# The same for the decision runs (Hotline and the batched round, alternating): each lasts well
# under a second, so one pause of the machine would move its figure.
DECISION_RUNS = int(os.environ.get("BENCH_DECISION_RUNS", "1" if QUICK else "3"))
PORT = 8765
CONNECTIONS = 100  # keep-alive connections for the POSTs
FAILED: list[dict[str, Any]] = []
KEYS = itertools.count()
ANSWERED: list[float] = []  # POST response times, ms
ADMIN_PASSWORD = "bench-admin-password"
JWT_SECRET = "bench-signing-secret-" + "x" * 32  # the server's, so agents' tokens can be made
rng = random.Random(2026)


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
    # The backlog's statistics, as build_centre gathers the centre's: a contacts table
    # analysed while empty has the planner expect one contact where a round brings thousands.
    await conn.execute("ANALYZE contacts")


async def reset(conn: asyncpg.Connection) -> None:
    await conn.execute("TRUNCATE offers, timers, events, contacts RESTART IDENTITY CASCADE")
    await conn.execute("UPDATE agent_channels SET load = 0")
    await conn.execute(
        "UPDATE agents SET work_offers = 0, work_contacts = 0, work_wrap_ups = 0, "
        "state = 'idle', ready_at = NULL, last_offer_at = NULL"
    )


async def hotline_decisions(url: str) -> tuple[int, float]:
    """The leader's rounds, from taking the lead (reading every agent) until nothing is left,
    with the garbage collection a server process runs with (``hotline serve`` and ``hotline
    dispatch`` set ``HOTLINE_GC_TUNED``: ``app.runtime.GC_THRESHOLDS``, start-up frozen)."""
    conn = await connect_driver(url)
    settings = Settings(database_url=url)
    previous = gc.get_threshold()
    gc.collect()
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()
    try:
        made, started = 0, time.perf_counter()
        rounds = Rounds(conn, settings)
        while True:
            result = await rounds.round()
            if not result.offers:
                break
            made += result.offers
        elapsed = time.perf_counter() - started
    finally:
        gc.unfreeze()
        gc.set_threshold(*previous)
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


# The bare batched round: what a round of Hotline's dispatcher does, as one statement.
#
# It locks each queue's most urgent queued contacts ($1 of them, by deadline: a window per
# queue, as Hotline's round reads them, so that one queue's backlog nobody free may take
# does not hide another's) without waiting, works out each contact's routing step in force
# from its queue's steps, and groups the contacts by what they ask for (channel and the
# step's skills: a class). Each free agent with room gives each class it is eligible for
# one slot per unit of room, ranked by slot, then longest idle, then id, so a batch is
# spread as Hotline's greedy spreads it; a class's n-th contact by deadline proposes the
# class's n-th slot. The proposed agents are locked without waiting and re-checked (still
# routable; room counted afresh; an agent's proposals kept in deadline order while its room
# lasts): an agent proposed by several classes beyond its room leaves the later contacts
# to the next round, as Hotline's write leaves a pair that changed. Then it writes what
# Hotline's write writes: offers, ring timers, events, contacts, loads, agents.
#
# What Hotline does that it does not: strategies other than longest idle, overdue
# contacts first, relationship-manager and declined-by order, explained reasons. The
# centre here needs none of them; each would only make the baseline slower.
BATCHED_ROUND = """
WITH batch AS (
    SELECT c.* FROM queues q
    CROSS JOIN LATERAL (
        SELECT id, queue_id, channel, tier, enqueued_at, routing_started_at, deadline_at
        FROM contacts
        WHERE queue_id = q.id AND status = 'queued'
        ORDER BY deadline_at, id LIMIT $1
        FOR UPDATE SKIP LOCKED
    ) c
), waiting AS (
    SELECT b.*, q.ring_timeout_s, s.step, coalesce(s.reqs, '[]'::jsonb) AS reqs,
        row_number() OVER (ORDER BY b.deadline_at, b.enqueued_at, b.id) AS ord
    FROM batch b JOIN queues q ON q.id = b.queue_id
    LEFT JOIN LATERAL (
        SELECT x.i - 1 AS step, x.reqs FROM (
            SELECT e.i, e.step -> 'skills' AS reqs, e.step ->> 'expires_after_s' AS ttl,
                sum((e.step ->> 'expires_after_s')::float8) OVER (ORDER BY e.i) AS ends_after
            FROM jsonb_array_elements(q.steps) WITH ORDINALITY e(step, i)
        ) x
        WHERE x.ttl IS NULL OR now() < b.routing_started_at + make_interval(secs => x.ends_after)
        ORDER BY x.i LIMIT 1
    ) s ON true
), classed AS (
    SELECT w.*, dense_rank() OVER (ORDER BY w.channel, w.reqs) AS cls FROM waiting w
), ranked AS (
    SELECT c.*, row_number() OVER (PARTITION BY c.cls ORDER BY c.ord) AS nth FROM classed c
), classes AS (
    SELECT DISTINCT cls, channel, reqs, jsonb_array_length(reqs) AS needs FROM classed
), free AS (
    SELECT a.id, a.idle_since, ac.channel, ac.capacity - ac.load AS room
    FROM agents a JOIN agent_channels ac ON ac.agent_id = a.id
    WHERE a.status = 'available' AND a.active AND a.work_wrap_ups = 0
      AND (a.ready_at IS NULL OR a.ready_at <= now()) AND ac.load < ac.capacity
      AND ac.channel IN (SELECT channel FROM classes)
), eligible AS (
    SELECT c.cls, f.id AS agent_id, f.idle_since, f.room
    FROM classes c JOIN free f ON f.channel = c.channel
    WHERE c.needs = 0
    UNION ALL
    SELECT c.cls, f.id, f.idle_since, f.room
    FROM classes c
    CROSS JOIN LATERAL jsonb_array_elements(c.reqs) r
    JOIN skills k ON k.name = r ->> 'skill'
    JOIN agent_skills s ON s.skill_id = k.id AND s.level >= (r ->> 'min_level')::int
    JOIN free f ON f.id = s.agent_id AND f.channel = c.channel
    WHERE c.needs > 0
    GROUP BY c.cls, c.needs, f.id, f.idle_since, f.room
    HAVING count(*) = c.needs
), slots AS (
    SELECT e.cls, e.agent_id,
        row_number() OVER (PARTITION BY e.cls ORDER BY n, e.idle_since, e.agent_id) AS nth
    FROM eligible e CROSS JOIN LATERAL generate_series(1, e.room) n
), proposed AS (
    SELECT r.id AS contact_id, s.agent_id, r.queue_id, r.channel, r.ord, r.ring_timeout_s,
        jsonb_build_object('queue_id', r.queue_id, 'contact_id', r.id, 'agent_id', s.agent_id,
            'tier', r.tier, 'step', r.step, 'strategy', 'longest_idle',
            'deadline', r.deadline_at,
            'waited_s', extract(epoch FROM now() - r.enqueued_at)) AS reason
    -- One key for the pair (class, rank): the planner, guessing from a few rows, would
    -- otherwise merge on the class alone and filter the rank from every pair of the class.
    FROM ranked r JOIN slots s ON (s.cls << 32) + s.nth = (r.cls << 32) + r.nth
), agent AS (
    SELECT id, work_contacts, state FROM agents
    WHERE id IN (SELECT agent_id FROM proposed) AND status = 'available' AND active
      AND work_wrap_ups = 0 AND (ready_at IS NULL OR ready_at <= now())
    ORDER BY id FOR UPDATE SKIP LOCKED
), possible AS (
    SELECT p.*, a.work_contacts, a.state AS was, ac.capacity - ac.load AS room,
        row_number() OVER (PARTITION BY p.agent_id, p.channel ORDER BY p.ord) AS nth
    FROM proposed p
    JOIN agent a ON a.id = p.agent_id
    JOIN agent_channels ac ON ac.agent_id = p.agent_id AND ac.channel = p.channel
), kept AS (
    SELECT p.*, row_number() OVER (PARTITION BY p.agent_id ORDER BY p.ord) AS first,
        count(*) OVER (PARTITION BY p.agent_id) AS made,
        CASE WHEN p.work_contacts > 0 THEN 'busy' ELSE 'offered' END AS state
    FROM possible p WHERE p.nth <= p.room
), clock AS (
    SELECT clock_timestamp() AS at
), o AS (
    INSERT INTO offers (contact_id, agent_id, queue_id, channel, reason, created_at,
        expires_at)
    SELECT k.contact_id, k.agent_id, k.queue_id, k.channel, k.reason, clock.at,
        clock.at + make_interval(secs => k.ring_timeout_s)
    FROM kept k, clock ORDER BY k.ord
    RETURNING id, contact_id, agent_id, queue_id, channel, reason, expires_at
), offered AS (
    UPDATE contacts c SET status = 'offered', agent_id = k.agent_id, updated_at = now()
    FROM kept k WHERE c.id = k.contact_id
), loaded AS (
    UPDATE agent_channels ac SET load = ac.load + t.n
    FROM (SELECT agent_id, channel, count(*)::int AS n FROM kept GROUP BY 1, 2) t
    WHERE ac.agent_id = t.agent_id AND ac.channel = t.channel
), working AS (
    UPDATE agents a SET work_offers = a.work_offers + k.made, state = k.state,
        state_changed_at = CASE WHEN k.state <> a.state THEN now() ELSE a.state_changed_at END,
        last_offer_at = now(), updated_at = now()
    FROM kept k WHERE a.id = k.agent_id AND k.first = 1
), ringing AS (
    INSERT INTO timers (kind, subject, due_at)
    SELECT 'offer.expire', o.id::text, o.expires_at FROM o
), logged AS (
    INSERT INTO events (type, subject_type, subject_id, data, actor)
    SELECT type, subject_type, subject_id, data, 'system' FROM (
        SELECT k.ord, 0 AS k, 'agent.state_changed' AS type, 'agent' AS subject_type,
            k.agent_id::text AS subject_id,
            jsonb_build_object('agent_id', k.agent_id, 'state', k.state, 'previous', k.was,
                'contact_id', k.contact_id) AS data
        FROM kept k WHERE k.first = 1 AND k.state <> k.was
        UNION ALL
        SELECT k.ord, 1, 'offer.created', 'offer', o.id::text,
            jsonb_build_object('contact_id', o.contact_id, 'agent_id', o.agent_id,
                'queue_id', o.queue_id, 'channel', o.channel, 'reason', o.reason,
                'offer_id', o.id, 'expires_at', o.expires_at)
        FROM kept k JOIN o ON o.contact_id = k.contact_id
    ) e ORDER BY ord, k
)
SELECT o.id, o.contact_id, o.agent_id, o.channel, o.expires_at FROM o
"""


async def batched_decisions(url: str) -> tuple[int, float]:
    """Hotline's batched round in bare asyncpg: one statement per round until none is made."""
    conn = await asyncpg.connect(plain_url(url))
    batch = Settings(database_url=url).dispatch_batch
    made, started = 0, time.perf_counter()
    while True:
        offers = len(await conn.fetch(BATCHED_ROUND, batch))
        if not offers:
            break
        made += offers
    elapsed = time.perf_counter() - started
    await conn.close()
    return made, elapsed


Decisions = tuple[int, float]  # offers made, seconds


def per_second(run: Decisions) -> float:
    return run[0] / run[1]


def median_run(runs: list[Decisions]) -> Decisions:
    return sorted(runs, key=per_second)[len(runs) // 2]


async def decision_runs(conn: asyncpg.Connection, url: str) -> tuple[Decisions, ...]:
    """Hotline's rounds and the batched bare round, alternating, then the claim loop, each
    from the same backlog: the median runs of the first two, and the claim loop's run."""
    ours: list[Decisions] = []
    batched: list[Decisions] = []
    for _ in range(DECISION_RUNS):
        for name, measure, runs in (
            ("hotline", hotline_decisions, ours),
            ("bare batched round", batched_decisions, batched),
        ):
            await reset(conn)
            await queue_backlog(conn)
            runs.append(await measure(url))
            print(f"{name}: {runs[-1][0]} decisions in {runs[-1][1]:.2f} s")
    await reset(conn)
    await queue_backlog(conn)
    claims = await bare_decisions(url)
    print(f"bare claim loop: {claims[0]} decisions in {claims[1]:.2f} s")
    return median_run(ours), median_run(batched), claims


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


def decisions_table(ours: Decisions, batched: Decisions, claims: Decisions) -> list[str]:
    rows = [
        ("Hotline dispatcher rounds", ours),
        ("bare asyncpg batched round (one statement a round)", batched),
        ("bare asyncpg claim loop (one contact a transaction)", claims),
    ]
    return [
        "| implementation | decisions | seconds | decisions/s |",
        "|---|---|---|---|",
        *(f"| {name} | {x[0]} | {x[1]:.2f} | {per_second(x):.0f} |" for name, x in rows),
    ]


def report(
    server: str, ours: Decisions, batched: Decisions, claims: Decisions, lat: list[Summary]
) -> str:
    versus_batched = per_second(ours) / per_second(batched)
    versus_claims = per_second(ours) / per_second(claims)
    lines = [
        "# Benchmark results",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python bench/routing.py`"
        + (" (`BENCH_QUICK=1`: a check that it runs, not a result)." if QUICK else "."),
        f"Machine: {machine()}.",
        f"Database: {server}.",
        "",
        f"Centre: {AGENTS} agents (chat capacity 3, 3 random skills each), {SKILLS} skills, "
        f"{QUEUES} queues, tiers {', '.join(f'{n} {s:.0%}' for n, s in TIERS)}.",
        "",
        "## Dispatcher decisions per second",
        "",
        f"{BACKLOG} queued contacts matched to {AGENTS} agents, from taking the lead (or, "
        "for the bare baselines, from the first statement) until nothing is left. The batched "
        "round does in one SQL statement what a Hotline round does (locks with `SKIP LOCKED`, "
        "eligibility by skill, channel and room, earliest deadline first, longest idle, "
        "offers, ring timers, events, contacts, loads, agents), without Hotline's other "
        "strategies, affinities and explained reasons; the claim loop offers one contact at "
        "a time in a few round trips, choosing the agent without skills. Hotline and the "
        f"batched round: the median of {DECISION_RUNS} runs, alternating; the claim loop: "
        "one run. Hotline's rounds run with the garbage collection its server processes use "
        "(`HOTLINE_GC_TUNED`, set by `hotline serve` and `hotline dispatch`).",
        "",
        *decisions_table(ours, batched, claims),
        "",
        f"Ratio Hotline / bare batched round: **{versus_batched:.2f}**. "
        f"Ratio Hotline / bare claim loop: **{versus_claims:.2f}** (mostly batching).",
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
        "This machine's speed varies over a day: the bare baselines above, measured in the "
        "same run, show how fast it was.",
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
    ratio_ok = versus_batched >= 0.5
    best = min((s.median for s in lat if s.median.rate == 200), key=lambda x: x.p99_ms)
    lines += [
        "",
        "## Against the targets",
        "",
        f"- Decisions per second at least half the bare batched round's: "
        f"{'met' if ratio_ok else 'not met'} ({versus_batched:.2f}).",
        f"- p99 under 50 ms at 200 contacts/s: {'met' if best.p99_ms < 50 else 'not met'} "
        f"(best median: {best.p99_ms:.0f} ms, {best.layout}).",
    ]
    return "\n".join(lines) + "\n"


async def main() -> None:
    server = os.environ.get("BENCH_DATABASE_URL") or start_embedded(
        Path(tempfile.mkdtemp(prefix="hotline-bench-")), delete_on_exit=True
    )
    url = await fresh_database(server, "hotline_bench")
    conn = await asyncpg.connect(plain_url(url))
    await build_centre(conn)
    ours, batched, claims = await decision_runs(conn, url)
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
    text = report(f"PostgreSQL, {kind}", ours, batched, claims, lat)
    if not QUICK:
        (ROOT / "bench" / "RESULTS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    # The load generator runs on uvloop, as the server does: the default loop would take
    # more of the cores the server is measured on, and add its own delays to the timings.
    uvloop.run(main())
