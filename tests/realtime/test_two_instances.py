"""Two instances on one database: a socket on one hears, promptly, what the other wrote.

Both instances are ``hotline serve`` processes (``tests/fixtures/served.py``) with their
dispatchers and timer workers, as the app runs; the clients are real websocket clients.
Neither instance polls the event log during the test (``event_poll_interval_s`` is an hour),
so an event written on one instance reaches the other's sockets only because its hub was
woken by the writer's ``NOTIFY``.

B starts first and takes the dispatcher lock; A, started next, stands by. So the offer is
B's write too: from the agent going available to its accepting, A writes nothing and nothing
local wakes A's hub.

A hub woken by a notification reads again for about a second while the events are still
held back (``_next_recheck`` in ``app/realtime/hub.py``); a transaction left open longer
anywhere on the server (another test's database) holds them back until the next
notification, which here, with no poll, is the writing instance's next write. So a wait that
has heard nothing for ``NUDGE_S`` has the writing instance record a harmless event (a new
queue), whose notification wakes the reader again. On a quiet server the scenario's own
notification is enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from app.db import plain_url
from app.routing.dispatcher import LEADER_LOCK
from tests.fixtures.factories import ADMIN_PASSWORD, Api, expect
from tests.fixtures.polling import eventually
from tests.fixtures.served import Served, served
from tests.realtime.test_ws import Client, following, token_of
from tests.routing.acd import contact, queue

WITHIN_S = 30.0  # the log waits for the server's oldest open transaction, in any database
NUDGE_S = 2.0  # longer than a woken hub keeps reading again
NO_POLL = {"event_poll_interval_s": 3600}

Event = dict[str, Any]
Nudge = Callable[[], Awaitable[object]]

# The server process holding the dispatcher lock in this database.
_LEADER = """
    SELECT pid FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 1
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND ((classid::bigint << 32) | objid::bigint) = $1
"""


async def leader(db: str) -> int | None:
    """The backend process id of the dispatcher leader's session, if any."""
    conn = await asyncpg.connect(plain_url(db))
    try:
        pid: int | None = await conn.fetchval(_LEADER, LEADER_LOCK)
    finally:
        await conn.close()
    return pid


async def hear(ws: Client, wanted: Collection[str], contact_id: int, nudge: Nudge) -> list[Event]:
    """The events about ``contact_id`` that ``ws`` receives until it has had one of each
    ``wanted`` type, in order; ``nudge`` is called each ``NUDGE_S`` without them."""
    heard: list[Event] = []

    async def listen() -> None:
        while not set(wanted) <= {e["type"] for e in heard}:
            message = json.loads(await ws.conn.recv())
            assert message["type"] == "event", message
            if message["event"]["data"].get("contact_id") == contact_id:
                heard.append(message["event"])

    listening = asyncio.create_task(listen())
    try:
        async with asyncio.timeout(WITHIN_S):
            while not (await asyncio.wait({listening}, timeout=NUDGE_S))[0]:
                await nudge()
    except TimeoutError:
        got = [e["type"] for e in heard]
        raise AssertionError(f"wanted {sorted(wanted)} within {WITHIN_S} s; got {got}") from None
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
    return heard


def of(events: list[Event], *kinds: str) -> list[str]:
    """The types of ``events`` that are among ``kinds``, in the order received."""
    return [e["type"] for e in events if e["type"] in kinds]


async def accept(console: Client, offer_id: int) -> Event:
    """Accept the offer on the console's socket; the ``ack``."""
    await console.send({"type": "accept", "request_id": "accept-1", "offer_id": offer_id})
    while (message := await console.next())["type"] == "event":
        pass
    assert message["type"] == "ack", message
    assert message["request_id"] == "accept-1", message
    return message


@asynccontextmanager
async def b_then_a(db: str) -> AsyncIterator[tuple[Served, Served]]:
    """Instance B, then instance A once B leads the dispatcher (A stands by); neither polls."""
    async with served(db, **NO_POLL) as b:
        await eventually(lambda: leader(db), within=WITHIN_S, what="B to lead the dispatcher")
        async with served(db, **NO_POLL) as a:
            yield b, a


@dataclass
class Centre:
    """Who is signed in where, and the queue the contact comes in on."""

    admin_on_a: Api
    admin_on_b: Api
    supervisor: Api
    agent: Api
    queue_name: str

    @classmethod
    async def on(cls, on_a: httpx.AsyncClient, on_b: httpx.AsyncClient) -> Centre:
        """Built through B; the agent signs in on B."""
        admin = await Api.signed_in(on_b, "admin", ADMIN_PASSWORD)
        return cls(
            admin_on_a=await Api.signed_in(on_a, "admin", ADMIN_PASSWORD),
            admin_on_b=admin,
            supervisor=await admin.as_user((await admin.supervisor())["username"]),
            agent=await admin.as_user((await admin.agent())["username"]),
            queue_name=(await queue(admin, ring_timeout_s=120))["name"],
        )

    async def nudge_a(self) -> None:
        await queue(self.admin_on_a)

    async def nudge_b(self) -> None:
        await queue(self.admin_on_b)


class TestTwoInstances:
    async def test_a_console_is_offered_and_accepts_a_contact_another_instance_took_in(
        self, db: str
    ) -> None:
        async with (
            b_then_a(db) as (b, a),
            httpx.AsyncClient(base_url=a.http, timeout=WITHIN_S) as on_a,
            httpx.AsyncClient(base_url=b.http, timeout=WITHIN_S) as on_b,
        ):
            b_leads = await leader(db)
            centre = await Centre.on(on_a, on_b)
            agent = centre.agent
            async with (
                following(a.ws, "/ws/agent", token_of(agent)) as (console, _),
                following(a.ws, "/ws/wallboard", token_of(centre.supervisor)) as (board_a, _),
                following(b.ws, "/ws/wallboard", token_of(centre.admin_on_b)) as (board_b, _),
            ):
                # On B: the agent goes available and a contact comes in for them.
                status = {"status": "available"}
                expect(await agent.post(f"/api/v1/agents/{agent.me['id']}/status", status), 200)
                taken = await contact(centre.admin_on_b, centre.queue_name)

                offered = await hear(console, ["offer.created"], taken["id"], centre.nudge_b)
                offer = next(e["data"] for e in offered if e["type"] == "offer.created")
                assert offer["agent_id"] == agent.me["id"]
                wanted = ["contact.queued", "offer.created"]
                seen_on_a = await hear(board_a, wanted, taken["id"], centre.nudge_b)
                assert of(seen_on_a, *wanted) == wanted
                assert await leader(db) == b_leads  # B decided the offer: A wrote nothing

                # On A: the agent accepts; B's wallboard hears it.
                ack = await accept(console, offer["offer_id"])
                assert ack["result"]["status"] == "accepted"
                wanted = ["offer.accepted", "contact.connected"]
                seen_on_b = await hear(board_b, wanted, taken["id"], centre.nudge_a)
                assert of(seen_on_b, *wanted) == wanted
