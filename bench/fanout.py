"""Websocket fan-out benchmark: event latency to consoles and wallboards, broadcast rate, and
memory per idle connection.

One real server (``hotline serve``: uvicorn serving ``create_app``, one process, on a free
port) runs on a fresh database ``hotline_bench_fanout``, migrated by Alembic. Agents (one per
console, chat capacity enough for every contact of the run, no skills asked) and supervisors
(one per wallboard) are made by SQL; their access tokens are signed with the server's secret
as ``app.agents.security.issue_token`` signs them.

The websocket clients run in a process of their own (``multiprocessing``, uvloop), so that
reading thousands of sockets does not take the event loop of the process that sends the load,
and speak a lean websocket client written here: the handshake a browser makes (offering
``permessage-deflate``, as browsers do, unless ``--no-deflate``), frames read by their headers,
pings answered. A message's payload is decompressed and kept only where it is measured; the
broadcast sockets only count messages. The general ``websockets`` client costs several
times more per message than this, which would be taken from the servers being measured.

1. Memory: the wallboards connect, then the server's resident memory (RSS, psutil) is read;
   the consoles connect, each agent's ``/ws/agent`` with its own token, and it is read again
   once they are idle. The difference divided by the number of consoles is the memory of an
   idle console.
2. Latency: contacts arrive through ``POST /api/v1/contacts`` (the lean keep-alive client of
   ``bench/lean_http.py``, signed in as the admin, as a channel would post them) as a Poisson
   process at ``--rate`` per second for ``--seconds``, after ``--warmup`` seconds that are not
   counted. The dispatcher offers each to an available agent. For every contact posted in the
   measured phase, the time from its offer's commit to its ``offer.created`` arriving on the
   offered agent's console, and to its arrival on every wallboard. The commit time is the
   transaction's commit timestamp when the server keeps them (``track_commit_timestamp``),
   otherwise the offer row's ``created_at``: the clock taken inside the one statement that
   writes the offer, its event and the rest of the round's write, which then commits (so that
   latency also holds the rest of that statement and the commit). Client and database share
   the machine's clock. The hub reads the log only below the oldest transaction running on
   the whole PostgreSQL server, whatever its database: on a server shared with other work, a
   long transaction elsewhere delays every event, so the run reports the longest one it saw.
3. Broadcast: the wallboards close (the consoles stay open, idle: a broadcast event concerns
   no agent); ``--broadcast-clients`` wallboards connect to Hotline and as many sockets to a
   bare ``websockets`` server (uvloop, its own process, ``websockets.asyncio.server.broadcast``).
   In each round, ``--burst`` events are written to Hotline's log in one transaction (copies
   of the run's ``offer.created`` payloads under a type of their own, without an agent, so
   only wallboards follow them) and the hub is woken by ``NOTIFY``, as another instance would
   wake it; then the bare server broadcasts the very
   texts Hotline sent. A round's time runs from the write (or the bare server's order) to the
   last message arriving on the last socket; messages delivered per second is sockets x burst
   / time. Rounds alternate; the median round of each is reported, and the ratio Hotline /
   bare.

Usage: ``python bench/fanout.py`` (full scale: 2,000 consoles, 50 wallboards, 200 contacts/s,
10 s). Every scale has an option, e.g. ``--consoles 100 --wallboards 5 --rate 20 --seconds
10`` for a quick check. The database server: ``--database-url``, else
``HOTLINE_BENCH_DATABASE_URL``, else ``postgresql://postgres@127.0.0.1:5432/postgres``.
``--memory-only`` stops after the first measure. The figures are printed as a section to
paste into ``bench/RESULTS.md``; nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import math
import multiprocessing
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import asyncpg
import psutil
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.agents.security import issue_token  # noqa: E402
from app.db import plain_url  # noqa: E402
from app.realtime.hub import CHANNEL  # noqa: E402
from bench.common import fresh_database  # noqa: E402
from bench.lean_http import HttpError, LeanClient  # noqa: E402
from bench.routing import busy_and_steal, cpu_ticks, machine  # noqa: E402

DATABASE = "hotline_bench_fanout"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
ADMIN_PASSWORD = "bench-admin-password"
JWT_SECRET = "bench-signing-secret-" + "x" * 32  # the server's, so tokens can be made here
QUEUES, CUSTOMERS = 10, 100
RING_S = 600  # offers ring for longer than the run: none expires while it is measured
OPEN_BATCH = 100  # handshakes at a time
POST_CONNECTIONS = 100
DRAIN_S = 10.0  # after the last POST, how long offers may take to arrive
BROADCAST_TYPE = "bench.broadcast"
OFFER_MARK = b'"type":"offer.created"'
rng = random.Random(2026)
KEYS = itertools.count()  # Idempotency-Keys, unique over the run


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consoles", type=int, default=2000, help="agents' consoles (2000)")
    parser.add_argument("--wallboards", type=int, default=50, help="wallboards (50)")
    parser.add_argument("--rate", type=float, default=200.0, help="contacts per second (200)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured phase (10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="uncounted arrivals, s (3)")
    parser.add_argument(
        "--broadcast-clients", type=int, help="sockets per server in the broadcast (consoles)"
    )
    parser.add_argument("--burst", type=int, default=200, help="messages a broadcast round")
    parser.add_argument("--rounds", type=int, default=3, help="broadcast rounds per server")
    parser.add_argument("--no-deflate", action="store_true", help="clients offer no compression")
    parser.add_argument("--database-url", default=None, help="the PostgreSQL server to use")
    parser.add_argument(
        "--memory-only", action="store_true", help="measure memory per idle console, then stop"
    )
    args = parser.parse_args(argv)
    if args.broadcast_clients is None:
        args.broadcast_clients = args.consoles
    return args


def raise_open_files() -> int:
    """Raise this process's open-file limit as far as allowed (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = 1_048_576 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- the lean websocket client (in the clients' process) ---------------------------------------


class Group:
    """Sockets opened together: what they received, and a count they are waited on for."""

    def __init__(self, *, keep: bool) -> None:
        self.keep = keep  # keep the offer.created messages (decompressing every message)
        self.sockets: list[Socket] = []
        self.kept: list[tuple[int, float, bytes]] = []  # socket key, arrival, message
        self.captured: list[str] = []  # every message of the first socket, while capturing
        self.capturing = False
        self.target = 0  # messages each socket must receive past its ``base``
        self.done = 0
        self.first_at = self.done_at = 0.0
        self.all_done = asyncio.Event()

    def expect(self, count: int) -> None:
        for sock in self.sockets:
            sock.base = sock.messages
        self.target, self.done, self.first_at, self.done_at = count, 0, 0.0, 0.0
        self.all_done.clear()

    def arrived(self, sock: Socket, now: float, text: bytes | None) -> None:
        if text is not None:
            if self.keep and OFFER_MARK in text:
                self.kept.append((sock.key, now, text))
            if self.capturing and sock is self.sockets[0]:
                self.captured.append(text.decode())
        if self.target and not self.first_at:
            self.first_at = now
        if self.target and sock.messages - sock.base == self.target:
            self.done += 1
            if self.done == len(self.sockets):
                self.done_at = now
                self.all_done.set()


class Socket(asyncio.Protocol):
    """One websocket: the handshake, then server frames read by their headers."""

    def __init__(self, group: Group, key: int, request: bytes, *, decode: bool) -> None:
        self.group, self.key, self.request, self.decode = group, key, request, decode
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.inflate: Any = None  # a zlib decompressor once permessage-deflate is agreed
        self.fresh_inflate = False  # the server keeps no context between messages
        self.fragments: list[bytes] = []
        self.compressed = False
        self.messages = self.base = 0
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"socket {self.key} closed before opening"))

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buffer += data
        if self.upgraded or self._upgrade():
            self._read_frames(now)

    def _upgrade(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = self.buffer[:end].decode("latin-1").split("\r\n")
        del self.buffer[: end + 4]
        if " 101 " not in head[0] + " ":
            self._fail(f"handshake answered {head[0]!r}")
            return False
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-extensions" and "deflate" in value:
                self.inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                self.fresh_inflate = "server_no_context_takeover" in value
        self.upgraded = True
        return True

    def _read_frames(self, now: float) -> None:
        buf, pos = self.buffer, 0
        while len(buf) - pos >= 2:
            size, head = buf[pos + 1] & 0x7F, 2
            if size == 126:
                size, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif size == 127:
                size, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if len(buf) - pos < head + size:
                break
            self._frame(buf[pos], bytes(buf[pos + head : pos + head + size]), now)
            pos += head + size
        del buf[:pos]

    def _frame(self, first: int, payload: bytes, now: float) -> None:
        opcode = first & 0x0F
        if opcode == 0x9:
            self._send(0xA, payload)  # pong
        elif opcode == 0x8:
            self._fail(f"closed by the server: {payload[:2].hex()} {payload[2:]!r}")
        elif opcode in (0x0, 0x1, 0x2):
            if opcode:
                self.compressed = bool(first & 0x40)
            self.fragments.append(payload)
            if first & 0x80:
                self._message(b"".join(self.fragments), now)
                self.fragments = []

    def _message(self, payload: bytes, now: float) -> None:
        self.messages += 1
        text = None
        if self.decode or not self.opened.done():
            text = self._inflated(payload) if self.compressed else payload
        if not self.opened.done():
            self.opened.set_result(None)
        self.group.arrived(self, now, text)

    def _inflated(self, payload: bytes) -> bytes:
        if self.fresh_inflate:
            self.inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        out: bytes = self.inflate.decompress(payload + b"\x00\x00\xff\xff")
        return out

    def _send(self, opcode: int, payload: bytes) -> None:
        """A client frame (short control frames only): masked, as clients must."""
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if self.transport is not None:
            self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def _fail(self, reason: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"socket {self.key}: {reason}"))
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._send(0x8, (1000).to_bytes(2, "big"))
            self.transport.close()


def factory(sock: Socket) -> Callable[[], Socket]:
    return lambda: sock


def handshake(host: str, port: int, path: str, *, deflate: bool) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if deflate:  # what a browser offers
        lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Clients:
    """The clients' process: answers the benchmark's commands, one at a time, over a pipe."""

    def __init__(self, conn: Connection, *, deflate: bool) -> None:
        self.conn, self.deflate = conn, deflate
        self.groups: dict[str, Group] = {}

    async def serve(self) -> None:
        while True:
            # A thread waits on the pipe: uvloop's add_reader would make it non-blocking,
            # and a large command would then be read in part.
            name, *args = await asyncio.to_thread(self.conn.recv)
            if name == "quit":
                return
            try:
                answer: dict[str, Any] = {"ok": await getattr(self, name)(*args)}
            except Exception as exc:
                answer = {"error": f"{name}: {exc!r}"}
            self.conn.send(answer)

    async def open(self, name: str, port: int, paths: list[tuple[int, str]], keep: bool) -> int:
        """Open a socket for each (key, path); each counts once its first message arrived."""
        group = self.groups.setdefault(name, Group(keep=keep))
        loop = asyncio.get_running_loop()
        for start in range(0, len(paths), OPEN_BATCH):
            batch = paths[start : start + OPEN_BATCH]
            made = [
                Socket(
                    group,
                    key,
                    handshake("127.0.0.1", port, path, deflate=self.deflate),
                    decode=keep or (start + i == 0),
                )  # the first socket can capture
                for i, (key, path) in enumerate(batch)
            ]
            await asyncio.gather(
                *(loop.create_connection(factory(s), "127.0.0.1", port) for s in made)
            )
            group.sockets += made
            async with asyncio.timeout(120):
                await asyncio.gather(*(s.opened for s in made))
        return len(group.sockets)

    async def close(self, name: str) -> None:
        group = self.groups.pop(name)
        for sock in group.sockets:
            sock.close()

    async def kept(self, name: str) -> int:
        return len(self.groups[name].kept)

    async def take(self, name: str) -> list[tuple[int, float, int, int, int]]:
        """The offer.created messages kept so far, parsed: (socket key, arrival, event id,
        contact id, offered agent id); forgotten here."""
        group = self.groups[name]
        rows = []
        for key, at, text in group.kept:
            event = json.loads(text)["event"]
            data = event["data"]
            rows.append((key, at, event["id"], data["contact_id"], data["agent_id"]))
        group.kept = []
        return rows

    async def expect(self, name: str, count: int, capture: bool) -> None:
        group = self.groups[name]
        group.expect(count)
        group.capturing, group.captured = capture, []

    async def wait(self, name: str, within: float) -> tuple[float, float, int, list[str]]:
        """When the first message arrived, when the last socket had its expected count (0.0
        if not all did ``within`` s), how many messages arrived, and the first socket's
        messages if captured."""
        group = self.groups[name]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await group.all_done.wait()
        delivered = sum(s.messages - s.base for s in group.sockets)
        group.capturing = False
        return group.first_at, group.done_at, delivered, group.captured


def clients_main(conn: Connection, deflate: bool) -> None:
    raise_open_files()
    uvloop.run(Clients(conn, deflate=deflate).serve())


class Remote:
    """A child process that answers commands over a pipe (the clients, the bare server)."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, theirs = context.Pipe()
        self.process = context.Process(target=target, args=(theirs, *args), daemon=True)
        self.process.start()

    async def ask(self, *command: Any) -> Any:
        self.conn.send(command)
        answer: dict[str, Any] = await asyncio.to_thread(self.conn.recv)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer["ok"]

    def send(self, *command: Any) -> None:
        self.conn.send(command)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(("quit",))
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=10)


# --- the bare websockets server (in a process of its own) ----------------------------------


def bare_main(conn: Connection, port: int) -> None:
    uvloop.run(serve_bare(conn, port))


async def serve_bare(conn: Connection, port: int) -> None:
    """Every connection is held open; on ``go`` the loaded texts are broadcast to all."""
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    clients: set[ServerConnection] = set()
    texts: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        clients.add(ws)
        try:
            await ws.send('{"type":"snapshot"}')
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    async with serve(handler, "127.0.0.1", port, max_size=None):
        while True:
            try:
                name, *args = await asyncio.to_thread(conn.recv)
            except EOFError:  # the benchmark is gone
                return
            if name == "quit":
                return
            if name == "load":
                texts[:] = args[0]
            elif name == "go":
                for text in texts:
                    broadcast(clients, text)
            conn.send({"ok": len(clients)})


# --- the server and its centre --------------------------------------------------------------


async def build_centre(conn: asyncpg.Connection, args: argparse.Namespace) -> Centre:
    """Queues that ask no skill, available agents with room for every contact of the run,
    supervisors for the wallboards, customers."""
    contacts = args.rate * (args.warmup + args.seconds)
    capacity = min(100, max(3, math.ceil(1.5 * contacts / max(args.consoles, 1))))
    await conn.executemany(
        """INSERT INTO queues (name, channels, strategy, steps, sl_threshold_s, sl_target_pct,
           ring_timeout_s, wrap_up_s) VALUES ($1, ARRAY['chat'], 'longest_idle', '[]', 20, 80,
           $2, 0)""",
        [(f"q{i}", RING_S) for i in range(QUEUES)],
    )
    people = [(f"agent{i}", "agent", "available") for i in range(args.consoles)]
    people += [(f"supervisor{i}", "supervisor", "offline") for i in range(args.wallboards)]
    await conn.executemany(
        """INSERT INTO agents (username, name, password_hash, role, status, site)
           VALUES ($1, $1, 'x', $2, $3, 'bench')""",
        people,
    )
    rows = await conn.fetch("SELECT id, role FROM agents WHERE site = 'bench' ORDER BY id")
    agents = [r["id"] for r in rows if r["role"] == "agent"]
    await conn.executemany(
        "INSERT INTO agent_channels (agent_id, channel, capacity) VALUES ($1, 'chat', $2)",
        [(a, capacity) for a in agents],
    )
    await conn.executemany(
        "INSERT INTO customers (name, phone, tier) VALUES ($1, $2, 'standard')",
        [(f"c{i}", f"+86139{i:08d}") for i in range(CUSTOMERS)],
    )
    await conn.execute("ANALYZE")
    customers = [r["id"] for r in await conn.fetch("SELECT id FROM customers")]
    supervisors = [r["id"] for r in rows if r["role"] == "supervisor"]
    return Centre(agents, supervisors, customers, capacity)


@dataclass
class Centre:
    agents: list[int]
    supervisors: list[int]
    customers: list[int]
    capacity: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(url: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "HOTLINE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "HOTLINE_JWT_SECRET": JWT_SECRET,
        "HOTLINE_LOG_LEVEL": "WARNING",
        "HOTLINE_ARGON2_TIME_COST": "1",
        "HOTLINE_ARGON2_MEMORY_KIB": "1024",
    }
    line = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    return subprocess.Popen(line, cwd=ROOT, env=env)


async def wait_ready(client: LeanClient, server: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if server.poll() is not None:
            raise RuntimeError(f"the server exited ({server.returncode})")
        with contextlib.suppress(HttpError):
            if (await client.request("GET", "/health/ready"))[0] == 200:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError("server did not become ready")


def token_paths(path: str, people: list[int]) -> list[tuple[int, str]]:
    """(person, path with that person's token) for each person."""
    return [
        (p, f"{path}?token={issue_token(JWT_SECRET, agent_id=p, ttl_s=7200).access_token}")
        for p in people
    ]


# --- 1. memory per idle console -------------------------------------------------------------


@dataclass
class Memory:
    before: int
    after: int
    consoles: int

    @property
    def per_console(self) -> float:
        return (self.after - self.before) / max(self.consoles, 1)


async def settled_rss(pid: int, pause: float = 2.0) -> int:
    """The server's RSS once it has been idle for ``pause`` (sign-in work finished)."""
    await asyncio.sleep(pause)
    rss: int = psutil.Process(pid).memory_info().rss
    return rss


async def open_consoles(clients: Remote, pid: int, port: int, centre: Centre) -> Memory:
    wallboards = token_paths("/ws/wallboard", centre.supervisors)
    await clients.ask("open", "wallboards", port, wallboards, True)
    before = await settled_rss(pid)
    consoles = token_paths("/ws/agent", centre.agents)
    await clients.ask("open", "consoles", port, consoles, True)
    return Memory(before, await settled_rss(pid), len(consoles))


# --- 2. latency ----------------------------------------------------------------------------


@dataclass
class Load:
    """The contacts posted in a phase: contact id -> the time its POST was sent."""

    sent: dict[int, float] = field(default_factory=dict)
    failed: Counter[str] = field(default_factory=Counter)  # why: a status or an error


async def post_contact(
    client: LeanClient, headers: dict[str, str], centre: Centre, load: Load
) -> None:
    body = {
        "channel": "chat",
        "queue": f"q{rng.randrange(QUEUES)}",
        "customer": {"id": rng.choice(centre.customers)},
    }
    keyed = {**headers, "Idempotency-Key": f"fanout-{next(KEYS)}"}
    t0 = time.time()
    why = ""
    for _ in range(3):  # the same key: a retry cannot create a second contact
        try:
            status, created = await client.request(
                "POST", "/api/v1/contacts", json_body=body, headers=keyed
            )
        except HttpError as exc:
            why = f"connection: {exc}"
            continue
        if status == 201:
            load.sent[created["id"]] = t0
            return
        why = f"{status} {created.get('error', '') if isinstance(created, dict) else ''}"
        break
    load.failed[why.strip()] += 1


async def arrivals(
    client: LeanClient, headers: dict[str, str], centre: Centre, rate: float, seconds: float
) -> Load:
    """Contacts posted as a Poisson process at ``rate`` per second for ``seconds``."""
    load, tasks = Load(), []
    loop = asyncio.get_running_loop()
    end, next_at = loop.time() + seconds, loop.time()
    while next_at < end:
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        tasks.append(asyncio.create_task(post_contact(client, headers, centre, load)))
        next_at += rng.expovariate(rate)
    await asyncio.gather(*tasks)
    return load


async def drain(clients: Remote, db: asyncpg.Connection, wallboards: int) -> None:
    """Until every offer made has reached its console and every wallboard (or ``DRAIN_S``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_S
    while loop.time() < deadline:
        offers = await db.fetchval("SELECT count(*) FROM offers")
        on_consoles = await clients.ask("kept", "consoles")
        on_wallboards = await clients.ask("kept", "wallboards")
        if on_consoles >= offers and on_wallboards >= offers * wallboards:
            return
        await asyncio.sleep(0.1)


async def commit_times(db: asyncpg.Connection, event_ids: list[int]) -> dict[int, float]:
    """Each offer.created event's commit time (seconds since the epoch): see the module's
    docstring for which clock."""
    if await db.fetchval("SHOW track_commit_timestamp") == "on":
        sql = """SELECT id, extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 AS at
                 FROM events WHERE id = ANY($1::bigint[])"""
    else:
        sql = """SELECT e.id, extract(epoch FROM o.created_at)::float8 AS at
                 FROM events e JOIN offers o ON o.id = (e.data ->> 'offer_id')::bigint
                 WHERE e.id = ANY($1::bigint[])"""
    return {r["id"]: r["at"] for r in await db.fetch(sql, event_ids)}


@dataclass
class Latency:
    contacts: int
    failed: Counter[str]
    offered: int  # measured contacts whose offer reached the offered agent's console
    wrong_console: int  # offers seen on a console not the offered agent's (must be 0)
    console_ms: list[float]
    wallboard_ms: list[float]
    wallboard_expected: int
    busy_pct: float
    steal_pct: float
    reference: str
    others_open_s: float  # the longest write transaction of another database seen open


# The hub reads the log only below the oldest transaction running on the whole server (the
# snapshot's xmin counts every database): another database's long transaction delays events.
OTHERS_OPEN = """
    SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0)::float8
    FROM pg_stat_activity
    WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database()
"""


async def watch_others(url: str, seen: list[float]) -> None:
    """Note, every 0.2 s, how long other databases' oldest write transaction has been open."""
    conn = await asyncpg.connect(plain_url(url))
    try:
        while True:
            seen.append(await conn.fetchval(OTHERS_OPEN))
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


def percentile(values: list[float], p: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[p - 1]


async def latency_phase(
    clients: Remote,
    db: asyncpg.Connection,
    client: LeanClient,
    centre: Centre,
    args: argparse.Namespace,
    url: str,
) -> Latency:
    _, auth = await client.request(
        "POST", "/api/v1/auth/token", form={"username": "admin", "password": ADMIN_PASSWORD}
    )
    headers = {"Authorization": f"Bearer {auth['access_token']}"}
    await arrivals(client, headers, centre, args.rate, args.warmup)  # not counted
    ticks, others = cpu_ticks(), [0.0]
    watch = asyncio.create_task(watch_others(url, others))
    load = await arrivals(client, headers, centre, args.rate, args.seconds)
    busy, steal = busy_and_steal(ticks, cpu_ticks())
    watch.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watch
    await drain(clients, db, len(centre.supervisors))
    on_consoles = await clients.ask("take", "consoles")
    on_wallboards = await clients.ask("take", "wallboards")
    ids = list({row[2] for row in on_consoles + on_wallboards})
    committed = await commit_times(db, ids)
    tracked = await db.fetchval("SHOW track_commit_timestamp") == "on"
    measured = [r for r in on_consoles if r[3] in load.sent]
    right = [r for r in measured if r[0] == r[4]]
    walls = [r for r in on_wallboards if r[3] in load.sent]
    return Latency(
        contacts=len(load.sent),
        failed=load.failed,
        offered=len({r[3] for r in right}),
        wrong_console=len(measured) - len(right),
        console_ms=sorted((at - committed[e]) * 1000 for _, at, e, _, _ in right),
        wallboard_ms=sorted((at - committed[e]) * 1000 for _, at, e, _, _ in walls),
        wallboard_expected=len(load.sent) * len(centre.supervisors),
        busy_pct=busy,
        steal_pct=steal,
        reference="commit timestamp" if tracked else "offer row's created_at",
        others_open_s=max(others),
    )


# --- 3. broadcast --------------------------------------------------------------------------


async def broadcast_payloads(db: asyncpg.Connection, burst: int) -> list[str]:
    """``burst`` payloads copied from the run's offer.created events, without their agent."""
    rows = await db.fetch(
        "SELECT data::text FROM events WHERE type = 'offer.created' ORDER BY id LIMIT $1", burst
    )
    if not rows:
        raise RuntimeError("no offer.created events to copy")
    payloads = []
    for row in itertools.islice(itertools.cycle(rows), burst):
        data = json.loads(row["data"])
        data.pop("agent_id", None)
        payloads.append(json.dumps(data))
    return payloads


INSERT_BROADCAST = f"""
    INSERT INTO events (type, subject_type, subject_id, data, actor)
    SELECT '{BROADCAST_TYPE}', 'bench', n::text, d, 'system'
    FROM unnest($1::jsonb[]) WITH ORDINALITY AS u(d, n) ORDER BY n
"""


@dataclass
class Round:
    seconds: float  # from the write (or the order) to the last message
    spread: float  # from the first message to the last
    delivered: int

    @property
    def per_second(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else float("nan")

    @property
    def spread_per_second(self) -> float:
        return self.delivered / self.spread if self.spread > 0 else float("nan")


def measured_round(t0: float, first_at: float, done_at: float, delivered: int) -> Round:
    if not done_at:  # not every socket had every message
        return Round(float("inf"), float("inf"), delivered)
    return Round(done_at - t0, done_at - first_at, delivered)


async def hotline_round(
    clients: Remote, db: asyncpg.Connection, payloads: list[str], *, capture: bool
) -> tuple[Round, list[str]]:
    await clients.ask("expect", "hotline", len(payloads), capture)
    t0 = time.time()
    async with db.transaction():
        await db.execute(INSERT_BROADCAST, payloads)
        await db.execute(f"NOTIFY {CHANNEL}")  # wakes the hub now, as another instance would
    first_at, done_at, delivered, texts = await clients.ask("wait", "hotline", 30.0)
    return measured_round(t0, first_at, done_at, delivered), texts


async def bare_round(clients: Remote, bare: Remote, count: int) -> Round:
    await clients.ask("expect", "bare", count, False)
    t0 = time.time()
    await bare.ask("go")
    first_at, done_at, delivered, _ = await clients.ask("wait", "bare", 30.0)
    return measured_round(t0, first_at, done_at, delivered)


@dataclass
class Broadcast:
    sockets: int
    burst: int
    hotline: list[Round]
    bare: list[Round]
    message_bytes: float


def median_round(rounds: list[Round]) -> Round:
    return sorted(rounds, key=lambda r: r.per_second)[len(rounds) // 2]


async def broadcast_phase(
    clients: Remote, db: asyncpg.Connection, port: int, centre: Centre, args: argparse.Namespace
) -> Broadcast:
    # The consoles stay open (a broadcast event concerns no agent): closing them would end
    # their agents' offers, whose events would reach the broadcast's wallboards meanwhile.
    await clients.ask("close", "wallboards")
    payloads = await broadcast_payloads(db, args.burst)
    people = itertools.islice(itertools.cycle(centre.supervisors), args.broadcast_clients)
    await clients.ask("open", "hotline", port, token_paths("/ws/wallboard", list(people)), False)
    bare_port = free_port()
    bare = Remote(bare_main, bare_port)
    try:
        await wait_port(bare_port)
        paths = [(i, "/") for i in range(args.broadcast_clients)]
        await clients.ask("open", "bare", bare_port, paths, False)
        ours, theirs, texts = [], [], []
        for n in range(args.rounds):
            measured, captured = await hotline_round(clients, db, payloads, capture=n == 0)
            ours.append(measured)
            if n == 0:  # the bare server sends the very texts Hotline sent
                texts = captured
                await bare.ask("load", texts)
            theirs.append(await bare_round(clients, bare, len(texts)))
            print(
                f"broadcast round {n + 1}: Hotline {ours[-1].per_second:.0f}/s, "
                f"bare {theirs[-1].per_second:.0f}/s"
            )
        await clients.ask("close", "bare")
    finally:
        bare.stop()
    size = statistics.fmean(len(t.encode()) for t in texts) if texts else 0.0
    return Broadcast(args.broadcast_clients, len(payloads), ours, theirs, size)


async def wait_port(port: int) -> None:
    for _ in range(300):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


# --- the report ----------------------------------------------------------------------------


def verdict(met: bool) -> str:
    return "met" if met else "not met"


def report(
    args: argparse.Namespace,
    pg: str,
    files: int,
    memory: Memory,
    lat: Latency,
    cast: Broadcast,
    centre: Centre,
) -> str:
    ours, theirs = median_round(cast.hotline), median_round(cast.bare)
    ratio = ours.per_second / theirs.per_second
    kib = memory.per_console / 1024
    full = (args.consoles, args.wallboards, args.rate, args.seconds) == (2000, 50, 200.0, 10.0)
    lines = [
        "## Websocket fan-out",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python bench/fanout.py"
        + (
            ""
            if full
            else f" --consoles {args.consoles} --wallboards {args.wallboards} "
            f"--rate {args.rate:g} --seconds {args.seconds:g}"
        )
        + "`"
        + ("." if full else " (a reduced scale, not the full benchmark)."),
        f"Machine: {machine()}. Database: PostgreSQL {pg}. Open-file limit: {files}.",
        "",
        f"One `hotline serve` process; {args.consoles} agents' consoles on `/ws/agent` (each "
        f"signed in as its own agent, available, chat capacity {centre.capacity}) and "
        f"{args.wallboards} wallboards on `/ws/wallboard` (supervisors). The websocket clients "
        "run in a process of their own (a lean client: the browser's handshake"
        + (", no compression offered" if args.no_deflate else ", permessage-deflate offered")
        + "); the server, PostgreSQL and the clients share the machine's cores.",
        "",
        "### Event latency: commit to arrival",
        "",
        f"Contacts posted to `POST /api/v1/contacts` as a Poisson process at {args.rate:g}/s "
        f"for {args.seconds:g} s, after {args.warmup:g} s not counted. For each contact's "
        "`offer.created`: from its commit to its arrival on the offered agent's console, and "
        f"on every wallboard. Commit time: the {lat.reference}"
        + (
            "."
            if lat.reference == "commit timestamp"
            else " (taken in the statement that writes the offer and its event, which then "
            "commits; `track_commit_timestamp` is off)."
        ),
        "",
        "| to | arrivals | expected | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|",
        latency_row("offered agent's console", lat.console_ms, lat.contacts),
        latency_row("every wallboard", lat.wallboard_ms, lat.wallboard_expected),
        "",
        f"Contacts posted: {lat.contacts} (failed POSTs: {failures(lat.failed)}); offers seen "
        f"on the offered agent's console: {lat.offered}; on another console: {lat.wrong_console}. "
        f"Machine busy during the phase: {lat.busy_pct:.0f} % (steal {lat.steal_pct:.1f} %). "
        "Longest write transaction of another database on the server seen open during the "
        f"phase: {lat.others_open_s:.2f} s (the hub reads the log only below the oldest "
        "transaction running on the whole server: any such transaction delays every event; "
        "figures are only clean when this is near 0).",
        "",
        "### Broadcast: Hotline's hub against a bare websockets server",
        "",
        f"{cast.sockets} sockets on each server; a round is {cast.burst} messages (about "
        f"{cast.message_bytes:.0f} bytes each: the run's `offer.created` payloads, as event "
        "messages) to every socket, written to the log in one transaction and the hub woken by "
        "`NOTIFY`; the bare server (`websockets` "
        f"{websockets_version()}, uvloop, one process) broadcasts the same texts with "
        "`broadcast()`. From the write (or the bare server's order) to the last message on the "
        f"last socket; {len(cast.hotline)} rounds each, alternating, the median shown.",
        "",
        "| server | messages delivered | seconds | messages/s | from the first message: "
        "seconds | messages/s |",
        "|---|---|---|---|---|---|",
        broadcast_row("Hotline hub (`/ws/wallboard`)", ours),
        broadcast_row("bare `websockets` server", theirs),
        "",
        f"Ratio Hotline / bare: **{ratio:.2f}** (from the first message to the last: "
        f"{ours.spread_per_second / theirs.spread_per_second:.2f}; Hotline's time from the "
        "write also holds the commit, the wake-up and the hub's read of the log).",
        "",
        "### Memory per idle connection",
        "",
        f"The server's RSS with the wallboards connected: {memory.before / 2**20:.1f} MiB; "
        f"after {memory.consoles} consoles connected and idle: {memory.after / 2**20:.1f} MiB; "
        f"**{kib:.1f} KiB** a console.",
        "",
        "### Against the targets",
        "",
        f"- Broadcast at least half the bare server's messages/s: {verdict(ratio >= 0.5)} "
        f"({ratio:.2f}).",
        f"- Memory per idle connection under 50 KB: {verdict(memory.per_console < 50_000)} "
        f"({memory.per_console / 1000:.1f} KB).",
        f"- Commit to the console it concerns, p99 under 100 ms: "
        f"{verdict(percentile(lat.console_ms, 99) < 100)} (p50 / p99 "
        f"{percentile(lat.console_ms, 50):.1f} / {percentile(lat.console_ms, 99):.1f} ms); "
        f"to every wallboard p50 / p99 {percentile(lat.wallboard_ms, 50):.1f} / "
        f"{percentile(lat.wallboard_ms, 99):.1f} ms.",
    ]
    return "\n".join(lines) + "\n"


def broadcast_row(name: str, r: Round) -> str:
    return (
        f"| {name} | {r.delivered} | {r.seconds:.3f} | {r.per_second:.0f} | {r.spread:.3f} "
        f"| {r.spread_per_second:.0f} |"
    )


def failures(failed: Counter[str]) -> str:
    if not failed:
        return "0"
    reasons = ", ".join(f"{why}: {n}" for why, n in failed.most_common())
    return f"{sum(failed.values())}, {reasons}"


def latency_row(to: str, values: list[float], expected: int) -> str:
    return (
        f"| {to} | {len(values)} | {expected} | {percentile(values, 50):.1f} "
        f"| {percentile(values, 99):.1f} | {max(values, default=float('nan')):.1f} |"
    )


def websockets_version() -> str:
    from websockets.version import version

    return version


# --- the run ---------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    files = raise_open_files()
    server_url = (
        args.database_url or os.environ.get("HOTLINE_BENCH_DATABASE_URL") or (DEFAULT_SERVER)
    )
    url = await fresh_database(server_url, DATABASE)
    db = await asyncpg.connect(plain_url(url))
    pg = await db.fetchval("SHOW server_version")
    centre = await build_centre(db, args)
    port = free_port()
    server = start_server(url, port)
    client = LeanClient("127.0.0.1", port, size=POST_CONNECTIONS)
    clients = Remote(clients_main, not args.no_deflate)
    try:
        await wait_ready(client, server)
        memory = await open_consoles(clients, server.pid, port, centre)
        print(f"memory: {memory.per_console / 1024:.1f} KiB per idle console")
        if args.memory_only:
            return
        lat = await latency_phase(clients, db, client, centre, args, url)
        print(
            f"latency: console p99 {percentile(lat.console_ms, 99):.1f} ms, "
            f"wallboard p99 {percentile(lat.wallboard_ms, 99):.1f} ms"
        )
        cast = await broadcast_phase(clients, db, port, centre, args)
    finally:
        clients.stop()
        await client.close()
        server.terminate()
        server.wait(timeout=30)
        await db.close()
    print(report(args, pg, files, memory, lat, cast, centre))


if __name__ == "__main__":
    uvloop.run(main(options()))
