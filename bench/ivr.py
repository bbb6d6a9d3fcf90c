"""IVR benchmark: signed Twilio-style webhooks walking the demo flows, against a bare handler.

A real server (``hotline serve``) on a fresh database, with the demo centre made through the
API (skills, the demo flows' queues, two customers) and the demo flows uploaded and active.
Simulated calls walk the flows exactly as Twilio drives them: the incoming call, each
``<Gather>``'s answer posted to its ``action`` URL, a few turns of the wait loop for the callers
who reach a queue, then the ``completed`` status callback; every request is a form signed
with the ``twilio`` package's ``RequestValidator`` for the public URL. The calls: the
complaint hotline (an agent, a callback, hanging up in the menus) and the credit-card centre
(an agent), each from a number of its own.

1. latency: webhooks arrive as a Poisson process at ``RATE`` per second (300): each arrival
   is the next webhook of a call waiting for its turn, or a new call when none waits. Each
   webhook's time runs from its request being sent to its whole answer read. p50 and p99,
   after a warm-up not counted.
2. throughput: ``CONCURRENCY`` clients each walk calls one webhook after another as fast as
   the server answers, for ``SATURATE_S``; then the same clients post a signed voice webhook
   to a bare Starlette handler (run here, under uvicorn, as ``hotline serve`` runs) that
   checks the same signature with the same validator and answers a fixed TwiML. Webhooks
   answered per second, Hotline's against the bare handler's.
3. the floor: the same clients, the same signed webhook, to a handler that also runs a
   minimal transaction of the shape a webhook keeping the call's state in PostgreSQL has:
   on an asyncpg pool, the call's row made if new and locked, then the step and an event
   written (five round trips with ``BEGIN`` and ``COMMIT``). What Hotline's own work costs
   beyond that, and what such a transaction costs beyond the bare handler.
4. a repeated delivery: the same clients each send one incoming call's webhook again and
   again to Hotline; after the first, each is a duplicate (the call's row locked, the stored
   answer found and sent, nothing advanced). Its CPU time is what every webhook costs Hotline
   before its step's own work (the request's way through the framework, the session, the
   form and its signature), to set beside the floor's.

Usage: ``python bench/ivr.py`` (embedded PostgreSQL) or with ``BENCH_DATABASE_URL``.
Figures go to stdout and to the section "IVR webhooks" of ``bench/RESULTS.md`` (the rest of
the file is left as it is). ``BENCH_QUICK=1`` checks that the program runs: short phases,
nothing written.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import asyncpg
import uvloop
import yaml
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.db import plain_url  # noqa: E402
from app.embedded import start_embedded  # noqa: E402
from bench.common import fresh_database  # noqa: E402
from bench.lean_http import HttpError, LeanClient, _read_response  # noqa: E402
from bench.routing import busy_and_steal, cpu_ticks, machine  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
RATE = 300  # webhooks per second
WARMUP_S, PHASE_S = (1.0, 2.0) if QUICK else (3.0, 10.0)
SATURATE_S = 2.0 if QUICK else 8.0
CONCURRENCY = 32
WAIT_TURNS = 2  # wait-loop turns a queued caller stays for, then hangs up
PORT, BARE_PORT, FLOOR_PORT = 8766, 8767, 8768
DATABASE = "hotline_bench_ivr"
PUBLIC = "https://ivr.bench.example"
TOKEN = "bench-twilio-auth-token"
ACCOUNT = "AC" + "b" * 32
ADMIN_PASSWORD = "bench-admin-password"
FLOWS = ROOT / "app" / "ivr" / "flows"
SECTION = "## IVR webhooks"
# The walks: the number called and the keys pressed at each <Gather>, in order.
WALKS = [
    ("95561", ("1", "0")),  # complaint hotline: Mandarin, an agent
    ("95561", ("1", "9")),  # a callback
    ("95561", ("1",)),  # hangs up at the main menu
    ("+864008895561", ("1", "0")),  # credit-card centre: Mandarin, an agent
]
FIXED_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Gather action="'
    + PUBLIC
    + '/telephony/twilio/voice?step=1" input="dtmf"><Say>Hello</Say></Gather></Response>'
)
rng = random.Random(2026)
numbers = itertools.count(10_000_000)
validator = RequestValidator(TOKEN)


# --- the server and its centre ------------------------------------------------------------------


def start_server(url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "HOTLINE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "HOTLINE_LOG_LEVEL": "WARNING",
        "HOTLINE_ARGON2_TIME_COST": "1",
        "HOTLINE_ARGON2_MEMORY_KIB": "1024",
        "HOTLINE_PUBLIC_BASE_URL": PUBLIC,
        "HOTLINE_TWILIO_AUTH_TOKEN": TOKEN,
        "HOTLINE_TWILIO_ACCOUNT_SID": ACCOUNT,
    }
    command_line = [sys.executable, "-m", "app.cli", "serve", "--port", str(PORT)]
    return subprocess.Popen(command_line, cwd=ROOT, env=env)


def start_bare() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--bare"], cwd=ROOT)


def start_floor(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--floor", url], cwd=ROOT)


async def wait_ready(client: Webhooks, path: str) -> None:
    for _ in range(300):
        try:
            if (await client.send("GET", path, b""))[0] in (200, 405):
                return
        except HttpError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no answer on {path}")


async def build_centre(client: LeanClient) -> None:
    """What the demo flows name, through the API, and the flows uploaded and activated."""
    form = {"username": "admin", "password": ADMIN_PASSWORD}
    _, auth = await client.request("POST", "/api/v1/auth/token", form=form)
    headers = {"Authorization": f"Bearer {auth['access_token']}"}

    async def post(path: str, body: object) -> object:
        status, answer = await client.request("POST", path, json_body=body, headers=headers)
        if status not in (200, 201):
            raise RuntimeError(f"{path}: {status} {answer}")
        return answer

    for skill in ("credit_card", "complaints"):
        await post("/api/v1/skills", {"name": skill, "description": "bench"})
    steps = {
        "credit-cards": [{"skills": [{"skill": "credit_card", "min_level": 3}]}],
        "complaints": [{"skills": [{"skill": "complaints", "min_level": 5}]}],
        "general": [],
    }
    for name, queue_steps in steps.items():
        channels = ["voice", "callback", "chat"]
        await post("/api/v1/queues", {"name": name, "channels": channels, "steps": queue_steps})
    for name in ("credit_card_centre", "complaint_hotline_95561"):
        document = yaml.safe_load((FLOWS / f"{name}.yaml").read_text())
        flow = await post("/api/v1/ivr/flows", document)
        assert isinstance(flow, dict)
        await post(f"/api/v1/ivr/flows/{flow['id']}/activate", {})


# --- webhooks -----------------------------------------------------------------------------------


class Webhooks(LeanClient):
    """The lean keep-alive client, for forms and answers that are not JSON."""

    async def send(
        self, method: str, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}:{self._port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        conn = await self._take()
        reader, writer = conn
        try:
            writer.write(head + body)
            status, payload, keep = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            await self._drop(conn)
            raise HttpError(str(exc) or type(exc).__name__) from exc
        await (self._give_back(conn) if keep else self._drop(conn))
        return status, payload

    async def twilio(self, url: str, params: dict[str, str]) -> tuple[int, bytes]:
        """POST ``params`` to a public URL, signed as Twilio signs it."""
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": validator.compute_signature(url, params),
        }
        return await self.send("POST", path, urlencode(params).encode(), headers)


@dataclass
class Call:
    """One simulated call: where Twilio posts next, the keys left to press."""

    called: str
    keys: deque[str]
    sid: str = field(default_factory=lambda: f"CA{rng.getrandbits(128):032x}")
    caller: str = field(default_factory=lambda: f"+86139{next(numbers):08d}")
    next_url: str = f"{PUBLIC}/telephony/twilio/voice"
    started: bool = False
    turns: int = 0
    done: bool = False

    def fields(self, **extra: str) -> dict[str, str]:
        base = {
            "AccountSid": ACCOUNT,
            "CallSid": self.sid,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            "From": self.caller,
            "To": self.called,
        }
        return {**base, **extra}

    def next_webhook(self) -> tuple[str, dict[str, str]]:
        if not self.started:
            return self.next_url, self.fields(CallStatus="ringing")
        if self.next_url.endswith("/wait") and self.turns < WAIT_TURNS:
            return self.next_url, self.fields()
        if "/voice?step=" in self.next_url and self.keys:
            return self.next_url, self.fields(Digits=self.keys.popleft())
        return f"{PUBLIC}/telephony/twilio/status", self.fields(CallStatus="completed")

    def answered(self, url: str, document: bytes) -> None:
        self.started = True
        if url.endswith("/status"):
            self.done = True
            return
        if url.endswith("/wait"):
            self.turns += 1
        self.next_url = ""
        for verb in ET.fromstring(document):
            if verb.tag == "Gather":
                self.next_url = verb.attrib.get("action", "")
                break
            if verb.tag == "Redirect":
                self.next_url = (verb.text or "").strip()
                break


def new_call() -> Call:
    called, keys = rng.choice(WALKS)
    return Call(called, deque(keys))


@dataclass
class Tally:
    times_ms: list[float] = field(default_factory=list)
    failed: int = 0


async def step(client: Webhooks, call: Call, tally: Tally) -> None:
    url, params = call.next_webhook()
    t0 = time.perf_counter()
    try:
        status, body = await client.twilio(url, params)
    except HttpError:
        tally.failed += 1
        call.done = True
        return
    tally.times_ms.append((time.perf_counter() - t0) * 1000)
    if status != 200:
        tally.failed += 1
        call.done = True
        return
    call.answered(url, body)


# --- the phases ---------------------------------------------------------------------------------


@dataclass
class Phase:
    webhooks: int
    failed: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    busy_pct: float
    steal_pct: float


async def open_loop(client: Webhooks, seconds: float) -> Phase:
    """Webhooks at ``RATE``/s (Poisson), each the next of a waiting call or a new call's."""
    ready: deque[Call] = deque()
    tally, tasks = Tally(), []
    loop = asyncio.get_running_loop()

    async def one(call: Call) -> None:
        await step(client, call, tally)
        if not call.done:
            ready.append(call)

    ticks = cpu_ticks()
    end, next_at = loop.time() + seconds, loop.time()
    while next_at < end:
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        tasks.append(asyncio.create_task(one(ready.popleft() if ready else new_call())))
        next_at += rng.expovariate(RATE)
    await asyncio.gather(*tasks)
    busy, steal = busy_and_steal(ticks, cpu_ticks())
    times = sorted(tally.times_ms)
    q = statistics.quantiles(times, n=100) if len(times) >= 2 else [float("nan")] * 99
    return Phase(len(times), tally.failed, q[49], q[98], max(times), busy, steal)


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) process ``pid`` has used; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_pids() -> list[int]:
    """The machine's PostgreSQL processes: its backends and its background workers."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "postgres":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@dataclass(frozen=True)
class Load:
    """A closed loop: webhooks a second, the machine busy, and the CPU time a webhook cost
    the server and PostgreSQL (ms)."""

    rate: float
    busy: float
    server_ms: float
    postgres_ms: float


async def closed_loop(client: Webhooks, seconds: float, *, bare: bool, pid: int) -> Load:
    """Webhooks answered per second by ``CONCURRENCY`` clients sending back to back; how
    busy the machine was; and the CPU time each webhook cost the server (process ``pid``)
    and PostgreSQL (whoever else used it meanwhile: nothing else runs)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    answered = 0
    voice = f"{PUBLIC}/telephony/twilio/voice"

    async def worker() -> None:
        nonlocal answered
        call = new_call()
        tally = Tally()
        while loop.time() < end:
            if bare:
                status, _ = await client.twilio(voice, call.fields(CallStatus="ringing"))
                answered += status == 200
                continue
            if call.done:
                call = new_call()
            before = len(tally.times_ms)
            await step(client, call, tally)
            answered += len(tally.times_ms) - before

    ticks, postgres = cpu_ticks(), postgres_pids()
    server_s, postgres_s = cpu_seconds(pid), sum(map(cpu_seconds, postgres))
    started = loop.time()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    busy, _ = busy_and_steal(ticks, cpu_ticks())
    server_s = cpu_seconds(pid) - server_s
    postgres_s = sum(map(cpu_seconds, postgres)) - postgres_s
    per = 1000 / max(answered, 1)
    return Load(answered / (loop.time() - started), busy, server_s * per, postgres_s * per)


# --- the bare handler and the floor -------------------------------------------------------------

FLOOR_TABLES = """
CREATE SCHEMA IF NOT EXISTS bench_floor;
CREATE TABLE IF NOT EXISTS bench_floor.calls (
    sid text PRIMARY KEY, step integer NOT NULL DEFAULT 0, path jsonb NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS bench_floor.events (
    id bigserial PRIMARY KEY, sid text NOT NULL, data jsonb NOT NULL
);
"""
FLOOR_NEW = "INSERT INTO bench_floor.calls (sid) VALUES ($1) ON CONFLICT (sid) DO NOTHING"
FLOOR_LOCK = "SELECT step, path FROM bench_floor.calls WHERE sid = $1 FOR UPDATE"
FLOOR_WRITE = (
    "WITH written AS (UPDATE bench_floor.calls SET step = step + 1, path = $2::jsonb"
    " WHERE sid = $1) INSERT INTO bench_floor.events (sid, data) VALUES ($1, $3::jsonb)"
)


def serve_reference(floor_url: str | None) -> None:
    """A Starlette app that checks a Twilio signature as Hotline does and answers fixed TwiML:
    the bare handler; with ``floor_url``, the floor, which first makes, locks and writes the
    call's row in one transaction on that database."""
    import contextlib
    from collections.abc import AsyncIterator

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    pools: list[asyncpg.Pool] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if floor_url is None:
            yield
            return
        pool = await asyncpg.create_pool(plain_url(floor_url), min_size=10, max_size=10)
        await pool.execute(FLOOR_TABLES)
        pools.append(pool)
        yield
        await pool.close()

    async def voice(request: Request) -> Response:
        body = await request.body()
        params = dict(parse_qsl(body.decode(), keep_blank_values=True))
        url = PUBLIC + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        signature = request.headers.get("X-Twilio-Signature", "")
        if not validator.validate(url, params, signature):
            return Response(status_code=403)
        if pools:
            sid = params["CallSid"]
            async with pools[0].acquire() as conn, conn.transaction():
                await conn.execute(FLOOR_NEW, sid)
                row = await conn.fetchrow(FLOOR_LOCK, sid)
                path = f'[{{"step": {row["step"]}}}]'
                await conn.execute(FLOOR_WRITE, sid, path, '{"type": "ivr.step"}')
        return Response(FIXED_TWIML, media_type="application/xml")

    async def ready(request: Request) -> Response:
        return Response("ok")

    app = Starlette(
        routes=[
            Route("/telephony/twilio/voice", voice, methods=["POST"]),
            Route("/health/ready", ready),
        ],
        lifespan=lifespan,
    )
    port = BARE_PORT if floor_url is None else FLOOR_PORT
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# --- the report ---------------------------------------------------------------------------------


def section(
    run: Phase, hotline: Load, reference: Load, least: Load, repeated: Load, server: str
) -> str:
    ours, bare, floor = hotline.rate, reference.rate, least.rate
    ratio = ours / bare if bare else float("nan")
    floor_ratio = floor / bare if bare else float("nan")
    of_floor = ours / floor if floor else float("nan")
    lines = [
        SECTION,
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python bench/ivr.py`"
        + (" (`BENCH_QUICK=1`: a check that it runs, not a result)." if QUICK else ".")
        + f" Machine: {machine()}. Database: {server}.",
        "",
        "Simulated calls walk the demo flows (complaint hotline: an agent, a callback, hanging "
        "up in the menus; credit-card centre: an agent) through signed Twilio-style webhooks "
        f"on `hotline serve`: the incoming call, each `<Gather>` answer, {WAIT_TURNS} turns of "
        "the wait loop for queued callers, the `completed` status callback. Webhooks arrive "
        f"as a Poisson process at {RATE}/s (the next webhook of a waiting call, or a new "
        f"call); {WARMUP_S:.0f} s of warm-up are not counted, the phase lasts {PHASE_S:.0f} s. "
        "A webhook's time runs from its request sent to its answer read. The server, "
        "PostgreSQL and the load generator share the machine (machine busy: the share of "
        "all cores in use during the phase, whoever used it).",
        "",
        "| arrivals/s | webhooks | failed | p50 ms | p99 ms | max ms | machine busy | steal |",
        "|---|---|---|---|---|---|---|---|",
        f"| {RATE} | {run.webhooks} | {run.failed} | {run.p50_ms:.1f} | {run.p99_ms:.1f} "
        f"| {run.max_ms:.1f} | {run.busy_pct:.0f} % | {run.steal_pct:.1f} % |",
        "",
        f"Throughput, {CONCURRENCY} clients back to back for {SATURATE_S:.0f} s each: Hotline "
        f"walking calls **{ours:.0f}** webhooks/s (machine busy {hotline.busy:.0f} %); a bare "
        "Starlette handler under uvicorn that checks the same signature with the same "
        f"validator and answers a fixed TwiML **{bare:.0f}**/s (busy {reference.busy:.0f} %), "
        f"measured in the same run. Ratio **{ratio:.2f}**.",
        "",
        "The floor, in the same run: the bare handler plus a minimal transaction of the shape "
        "a webhook keeping the call's state in PostgreSQL has (on an asyncpg pool: the call's "
        "row made if new and locked, the step and an event written; five round trips with "
        f"`BEGIN` and `COMMIT`) **{floor:.0f}**/s (busy {least.busy:.0f} %), "
        f"{floor_ratio:.2f} of the bare handler's; Hotline does {of_floor:.2f} of the floor's.",
        "",
        "The CPU time a webhook cost in those runs (each process's counters, read before and "
        "after): Hotline's server "
        f"{hotline.server_ms:.2f} ms and PostgreSQL {hotline.postgres_ms:.2f} ms; the bare "
        f"handler {reference.server_ms:.2f} ms; the floor's server {least.server_ms:.2f} ms "
        f"and PostgreSQL {least.postgres_ms:.2f} ms.",
        "",
        "A repeated delivery, in the same run: the same clients each sending one incoming "
        "call's webhook again and again (after the first, a duplicate: the call's row locked, "
        f"the stored answer found and sent, nothing advanced) **{repeated.rate:.0f}**/s, "
        f"Hotline's server {repeated.server_ms:.2f} ms and PostgreSQL "
        f"{repeated.postgres_ms:.2f} ms a webhook: what every webhook costs Hotline before "
        "its step's own work, against the floor's "
        f"{least.server_ms:.2f} and {least.postgres_ms:.2f} ms.",
        "",
        f"- p99 under 50 ms at {RATE} webhooks/s: "
        f"{'met' if run.p99_ms < 50 else 'not met'} ({run.p99_ms:.0f} ms).",
        f"- Throughput at least a quarter of the bare handler's: "
        f"{'met' if ratio >= 0.25 else 'not met'} ({ratio:.2f}).",
    ]
    return "\n".join(lines) + "\n"


COMMENTARY = "### Reading the figures"


def write_section(text: str) -> None:
    """Replace the section "IVR webhooks" of RESULTS.md (or add it), leaving the rest, and
    the section's own ``COMMENTARY``, written by hand, as it is."""
    path = ROOT / "bench" / "RESULTS.md"
    current = path.read_text() if path.exists() else ""
    start = current.find(SECTION)
    if start < 0:
        path.write_text(current.rstrip("\n") + "\n\n" + text)
        return
    end = current.find("\n## ", start + len(SECTION))
    old = current[start : end + 1] if end >= 0 else current[start:]
    kept = old.find(COMMENTARY)
    if kept >= 0:
        text += "\n" + old[kept:].rstrip("\n") + "\n"
    rest = current[end + 1 :] if end >= 0 else ""
    path.write_text(current[:start] + text + ("\n" + rest if rest else ""))


async def main() -> None:
    server = os.environ.get("BENCH_DATABASE_URL") or start_embedded(
        Path(tempfile.mkdtemp(prefix="hotline-bench-")), delete_on_exit=True
    )
    url = await fresh_database(server, DATABASE)
    hotline, bare, floor = start_server(url), start_bare(), start_floor(url)
    client = Webhooks("127.0.0.1", PORT, size=CONCURRENCY * 4)
    bare_client = Webhooks("127.0.0.1", BARE_PORT, size=CONCURRENCY * 4)
    floor_client = Webhooks("127.0.0.1", FLOOR_PORT, size=CONCURRENCY * 4)
    try:
        await wait_ready(client, "/health/ready")
        await wait_ready(bare_client, "/health/ready")
        await wait_ready(floor_client, "/health/ready")
        await build_centre(client)
        await open_loop(client, WARMUP_S)
        run = await open_loop(client, PHASE_S)
        print(f"{RATE}/s: {run.webhooks} webhooks, p50 {run.p50_ms:.1f}, p99 {run.p99_ms:.1f} ms")
        ours = await closed_loop(client, SATURATE_S, bare=False, pid=hotline.pid)
        repeated = await closed_loop(client, SATURATE_S, bare=True, pid=hotline.pid)
        theirs = await closed_loop(bare_client, SATURATE_S, bare=True, pid=bare.pid)
        least = await closed_loop(floor_client, SATURATE_S, bare=True, pid=floor.pid)
        print(
            f"throughput: Hotline {ours.rate:.0f}/s, bare {theirs.rate:.0f}/s, "
            f"floor {least.rate:.0f}/s, repeated {repeated.rate:.0f}/s"
        )
    finally:
        await client.close()
        await bare_client.close()
        await floor_client.close()
        for process in (hotline, bare, floor):
            process.terminate()
            process.wait(timeout=30)
    kind = "external (BENCH_DATABASE_URL)" if os.environ.get("BENCH_DATABASE_URL") else "embedded"
    text = section(run, ours, theirs, least, repeated, f"PostgreSQL, {kind}")
    if not QUICK:
        write_section(text)
    print(text)


if __name__ == "__main__":
    if sys.argv[1:] == ["--bare"]:
        serve_reference(None)
    elif sys.argv[1:2] == ["--floor"]:
        serve_reference(sys.argv[2])
    else:
        uvloop.run(main())
