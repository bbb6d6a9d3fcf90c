"""The ACD's guarantees under load and through the API: no double assignment, order, wake-ups.

The hammer tests drive a real centre (real dispatcher, real timers) from many concurrent
tasks, through one app instance or two on the same database, then check the database with
SQL: the invariants in ``acd.INVARIANTS``, no contact or lease stuck (``acd.LIVENESS``),
every change wrote its event, no offer went to an agent who could not take it (the log's
status changes against the agents' rows as they were, ``acd.agent_history``), and no round
passed over an earlier contact (``acd.order_breaches``, from the log and the rounds noted).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI
from sqlalchemy import make_url, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db import connect_driver
from app.events.log import LoggedEvent
from app.realtime.hub import EventHub
from app.routing.contacts import lock_contact
from app.routing.dispatcher import Dispatcher
from app.routing.endings import abandon
from app.routing.rounds import Made, Rounds, decide
from app.timers.worker import TimerWorker
from tests.conftest import make_settings
from tests.fixtures.factories import ADMIN_PASSWORD, Api, expect
from tests.fixtures.polling import eventually
from tests.routing.acd import (
    LEASE_LATE,
    TERMINAL,
    Happened,
    NotedRound,
    OrderRules,
    Queued,
    agent_history,
    assert_invariants,
    available_agent,
    contact,
    instance,
    lease_bound_s,
    liveness_violations,
    note_rounds,
    offer_for,
    offers_to_unroutable_agents,
    order_breaches,
    order_violations,
    pending_offers,
    queue,
    rows,
    value,
    via,
    violations,
)

SEED = 20261122
QUIET_S = 0.25  # a console with nothing new looks at its contacts again after this
AGENTS = 20
CONTACTS = 150
LAG_TICK_S = 0.05
SKILLED, MIN_LEVEL, UNSKILLED = 5, 3, 1  # the hammer queue's skill: agents' levels, its minimum


# --- no double assignment under load ------------------------------------------------------


@dataclass
class Hammer:
    """A centre under fire: each agent reachable through every instance.

    Agents' consoles are fed by the event hub, as the websocket feeds a real console: each
    agent task wakes on its own events (an offer made to it), or after a short quiet spell,
    and acts through the API of a randomly chosen instance.
    """

    admins: list[Api]
    consoles: list[list[Api]]
    queue: str
    skill: str
    engine: AsyncEngine
    lease_bound_s: float
    contact_ids: list[int] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    news: asyncio.Event = field(default_factory=asyncio.Event)
    inboxes: dict[int, asyncio.Queue[LoggedEvent]] = field(default_factory=dict)
    dispatchers: list[Dispatcher] = field(default_factory=list)
    workers: list[TimerWorker] = field(default_factory=list)
    checks: int = 0
    database_url: str = ""
    worst_lag_s: float = 0.0  # the longest the event loop ran a due wake-up late
    tick_due: float | None = None  # when the lag's measure is next due to wake
    worst_commit_s: float = 0.0  # the longest the database took to commit a trivial write
    committing_since: float | None = None  # when the commit being measured began
    first_late: dict[str, Any] | None = None  # where things stood when a lease first ran late

    def __post_init__(self) -> None:
        self.inboxes = {c[0].me["id"]: asyncio.Queue() for c in self.consoles}

    def on_events(self, batch: Sequence[LoggedEvent]) -> None:
        """Hub listener: each event to the console of the agent it concerns."""
        for event in batch:
            agent = (
                event.subject_id if event.subject_type == "agent" else event.data.get("agent_id")
            )
            inbox = self.inboxes.get(int(agent)) if agent is not None else None
            if inbox is not None:
                inbox.put_nowait(event)
        self.news.set()

    async def create_contacts(self) -> None:
        gate = asyncio.Semaphore(25)

        async def one(n: int) -> None:
            async with gate:
                api = self.admins[n % len(self.admins)]
                created = await contact(api, self.queue, subject=f"hammer {n}")
                self.contact_ids.append(created["id"])

        await asyncio.gather(*(one(n) for n in range(CONTACTS)))

    async def work(self, index: int) -> None:
        """One agent: answers, rejects or ignores offers, completes, goes away and back, and
        now and then loses the queue's skill or is deactivated for a while."""
        rng = random.Random(SEED * 100 + index)
        mine: set[int] = set()
        skilled = active = True
        agent_id = self.consoles[index][0].me["id"]
        inbox = self.inboxes[agent_id]
        while not self.stop.is_set():
            try:
                event: LoggedEvent | None = await asyncio.wait_for(inbox.get(), QUIET_S)
            except TimeoutError:
                event = None
            console = rng.choice(self.consoles[index])
            if not active:  # signed out: its offers are taken back, its contacts wait for it
                active = await self.reinstate(index, rng)
                continue
            if event is not None and event.type == "offer.created":
                await self.answer(console, event, rng, mine)
            for contact_id in sorted(mine):
                if rng.random() < 0.3:
                    body = {"disposition": "resolved"}
                    expect(await console.post(f"/api/v1/contacts/{contact_id}/complete", body), 200)
                    mine.discard(contact_id)
            if rng.random() < 0.05:
                away = rng.random() < 0.5
                status = {"status": "away", "reason": "break"} if away else {"status": "available"}
                expect(await console.post(f"/api/v1/agents/{agent_id}/status", status), 200)
            skilled = await self.retrain(agent_id, skilled, rng)
            active = await self.suspend(agent_id, rng)

    @staticmethod
    async def answer(console: Api, event: LoggedEvent, rng: random.Random, mine: set[int]) -> None:
        """Accept (mostly), reject, or let the offer ring out."""
        roll, offer_id = rng.random(), event.data["offer_id"]
        if roll < 0.7:
            answer = await console.post(f"/api/v1/offers/{offer_id}/accept")
            assert answer.status_code in (200, 409), answer.text
            if answer.status_code == 200:
                mine.add(event.data["contact_id"])
        elif roll < 0.85:
            refusal = await console.post(f"/api/v1/offers/{offer_id}/reject")
            assert refusal.status_code in (200, 409), refusal.text

    async def retrain(self, agent_id: int, skilled: bool, rng: random.Random) -> bool:
        """Now and then a supervisor takes the queue's skill level from an agent (below the
        queue's minimum) and later gives it back; returns whether the agent has it now."""
        if rng.random() >= (0.02 if skilled else 0.3):
            return skilled
        level = UNSKILLED if skilled else SKILLED
        body = {"skills": [{"skill": self.skill, "level": level}]}
        expect(await rng.choice(self.admins).patch(f"/api/v1/agents/{agent_id}", body), 200)
        return not skilled

    async def suspend(self, agent_id: int, rng: random.Random) -> bool:
        """Rarely, a supervisor deactivates the agent; returns whether it is still active."""
        if rng.random() >= 0.01:
            return True
        body = {"active": False}
        expect(await rng.choice(self.admins).patch(f"/api/v1/agents/{agent_id}", body), 200)
        return False

    async def reinstate(self, index: int, rng: random.Random) -> bool:
        """Soon a supervisor reactivates the agent, who signs in again (deactivation revoked
        their tokens) and makes themselves available again."""
        if rng.random() >= 0.3:
            return False
        consoles = self.consoles[index]
        agent_id = consoles[0].me["id"]
        body = {"active": True}
        expect(await rng.choice(self.admins).patch(f"/api/v1/agents/{agent_id}", body), 200)
        consoles[:] = [await c.as_user(c.me["username"]) for c in consoles]
        console = rng.choice(consoles)
        available = {"status": "available"}
        expect(await console.post(f"/api/v1/agents/{agent_id}/status", available), 200)
        return True

    async def hang_up(self) -> None:
        """Customers, as things happen, look at their place in the queue and some leave."""
        rng = random.Random(SEED)
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.news.wait(), QUIET_S)
            self.news.clear()
            if not self.contact_ids or rng.random() < 0.8:
                continue
            api = rng.choice(self.admins)
            contact_id = rng.choice(self.contact_ids)
            seen = expect(await api.get(f"/api/v1/contacts/{contact_id}"), 200)
            if seen["status"] in ("queued", "offered"):
                gone = await api.post(f"/api/v1/contacts/{contact_id}/abandon")
                assert gone.status_code in (200, 409), gone.text

    async def all_ended(self) -> bool:
        if len(self.contact_ids) < CONTACTS:
            return False
        live = await value(
            self.engine,
            "SELECT count(*) FROM contacts WHERE NOT (status = ANY(:terminal))",
            terminal=list(TERMINAL),
        )
        return bool(live == 0)

    async def watch(self) -> None:
        """Check the invariants again and again while the hammering goes on."""
        while not self.stop.is_set():
            broken = await liveness_violations(self.engine, self.bound_s())
            if broken:  # once more, counting a stall that came while it was being checked
                broken = await liveness_violations(self.engine, self.bound_s())
            if broken:
                raise AssertionError(await self.report(f"while hammering: {broken}"))
            if self.first_late is None and await liveness_violations(
                self.engine, self.lease_bound_s / 2, only=LEASE_LATE
            ):  # what held a lease up is gone by the time it outgrows its bound: note it now
                self.first_late = await self.where_things_stand()
            self.checks += 1

    async def report(self, what: str) -> str:
        """``what`` went wrong, then where things stood; the figures that judge it last (a
        long report is cut in its middle)."""
        return (
            f"{what}\nwhere things stood: {await self.where_things_stand()}"
            f"\nwhen a lease first ran late: {self.first_late}"
            f"\n{what}\nbound {self.bound_s():.2f} s = lease bound {self.lease_bound_s} s"
            f" + 2 x (worst loop lag {self.worst_lag_s:.2f} s"
            f" + worst commit {self.worst_commit_s:.2f} s)"
        )

    def bound_s(self) -> float:
        """The lease bound, plus twice the longest the process has stood still so far and
        the longest the database took to commit (an offer's own timer and the sweeps after
        it may each have waited out a stall: a process, a database, or the machine under
        them, that does not run cannot end a lease). A lease that is never ended, or one a
        lock holds up, outgrows it all the same."""
        now = asyncio.get_running_loop().time()
        lag, commit = self.worst_lag_s, self.worst_commit_s
        if self.tick_due is not None:  # a stall going on now
            lag = max(lag, now - self.tick_due)
        if self.committing_since is not None:  # a commit taking long now
            commit = max(commit, now - self.committing_since)
        return self.lease_bound_s + 2 * (lag + commit)

    async def ended(self) -> int:
        return int(
            await value(
                self.engine,
                "SELECT count(*) FROM contacts WHERE status = ANY(:terminal)",
                terminal=list(TERMINAL),
            )
        )

    async def fail_over(self) -> None:
        """Midway, the leading instance's dispatcher dies; another instance must take over."""
        if len(self.dispatchers) < 2:
            return

        async def a_third_ended() -> bool:
            return await self.ended() >= CONTACTS // 3

        await eventually(a_third_ended, within=60, what="a third of the contacts to end")
        leader = next(d for d in self.dispatchers if d.is_leader)
        await leader.stop()
        self.dispatchers.remove(leader)

    async def until_all_ended(self) -> None:
        await self.create_contacts()
        await self.fail_over()
        try:
            await eventually(self.all_ended, within=60, what="every contact to end")
        except AssertionError as exc:
            raise AssertionError(await self.report(str(exc))) from None

    async def where_things_stand(self) -> dict[str, Any]:
        return {
            "contacts": await rows(
                self.engine, "SELECT status, count(*) FROM contacts GROUP BY status"
            ),
            "agents": await rows(
                self.engine,
                "SELECT status, status_reason, state, ready_at > now(), count(*) FROM agents "
                "WHERE role = 'agent' GROUP BY 1, 2, 3, 4",
            ),
            "offers": await rows(self.engine, "SELECT status, count(*) FROM offers GROUP BY 1"),
            "timers": await rows(
                self.engine,
                "SELECT kind, failed_at IS NOT NULL, due_at < now(), count(*) FROM timers "
                "GROUP BY 1, 2, 3",
            ),
            "invariants": await violations(self.engine),
            # What the database's sessions and the timer workers were doing (a stuck timer).
            "sessions": await rows(
                self.engine,
                "SELECT pid, pg_blocking_pids(pid), state, wait_event_type, "
                "now() - xact_start, now() - state_change, left(query, 300) "
                "FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state <> 'idle'",
            ),
            "timer_workers": [where_worker_is(worker) for worker in self.workers],
            "worst_lag_s": self.worst_lag_s,
            "pool": self.engine.pool.status(),
        }

    async def measure_lag(self) -> None:
        """How late this process's event loop wakes a task that is due (the app's instances,
        their timer workers among them, share it with the hammering)."""
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            self.tick_due = due = loop.time() + LAG_TICK_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), LAG_TICK_S)
            self.worst_lag_s = max(self.worst_lag_s, loop.time() - due)
        self.tick_due = None

    async def measure_commits(self) -> None:
        """How long the database takes to commit a transaction that writes (it has a
        transaction id: its commit is flushed), on a connection of its own."""
        loop = asyncio.get_running_loop()
        conn = await connect_driver(self.database_url, application_name="hammer-probe")
        try:
            while not self.stop.is_set():
                self.committing_since = began = loop.time()
                async with conn.transaction():
                    await conn.execute("SELECT pg_current_xact_id()")
                self.worst_commit_s = max(self.worst_commit_s, loop.time() - began)
                self.committing_since = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), 4 * LAG_TICK_S)
        finally:
            await conn.close()

    async def run(self) -> None:
        """Work until every contact has ended; the first failure of any task fails the run."""
        tasks = [asyncio.create_task(self.work(i)) for i in range(len(self.consoles))]
        tasks += [asyncio.create_task(self.hang_up()), asyncio.create_task(self.watch())]
        tasks += [asyncio.create_task(self.measure_lag())]
        tasks += [asyncio.create_task(self.measure_commits())]
        ended = asyncio.create_task(self.until_all_ended())

        try:
            await asyncio.wait([ended, *tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.stop.set()
            await asyncio.wait(tasks)
            if not ended.done():
                ended.cancel()
            await asyncio.gather(ended, return_exceptions=True)
        for task in [*tasks, ended]:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


@pytest.fixture
def settings(db: str) -> Settings:
    """Room for a hammering: more connections per instance than the default tests need."""
    return make_settings(db, db_pool_size=10)


@pytest.fixture
async def instances(request: pytest.FixtureRequest, app: FastAPI, settings: Settings) -> Any:
    """The app fixture, plus as many more instances on the same database as asked."""
    extra: int = request.param - 1
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(instance(settings)) for _ in range(extra)]
        yield clients


async def set_up_hammer(api: Api, apps: list[FastAPI], others: list[Any]) -> Hammer:
    skill = (await api.skill())["name"]
    q = await queue(
        api,
        channels=["chat"],
        ring_timeout_s=1,
        no_answer_delay_s=0,
        reject_delay_s=0,
        max_no_answer=2,
        wrap_up_s=0,
        steps=[{"skills": [{"skill": skill, "min_level": MIN_LEVEL}]}],
    )
    consoles = [
        await available_agent(
            api,
            capacity={"chat": 2},
            name=f"Agent {n}",
            skills=[{"skill": skill, "level": SKILLED}],
        )
        for n in range(AGENTS)
    ]
    clients = [client for _, client in others]
    return Hammer(
        admins=[api, *(via(api, c) for c in clients)],
        consoles=[[console, *(via(console, c) for c in clients)] for console in consoles],
        queue=q["name"],
        skill=skill,
        engine=apps[0].state.engine,
        lease_bound_s=lease_bound_s(apps[0].state.settings),
        database_url=apps[0].state.settings.database_url,
        dispatchers=[a.state.dispatcher for a in apps],
        workers=[a.state.timer_worker for a in apps],
    )


def where_worker_is(worker: TimerWorker) -> dict[str, str]:
    """Each of the worker's tasks (its loops, the sweeps running) and the awaits it is in,
    innermost last."""
    tasks = worker._tasks + list(worker._sweeping.values())  # (its own, read to diagnose)
    found: dict[str, str] = {}
    for task in tasks:
        chain: list[str] = []
        awaited: Any = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        found[task.get_name()] = "done" if task.done() else " > ".join(chain[-5:])
    return found


async def event_mismatches(engine: AsyncEngine) -> dict[str, tuple[int, int]]:
    """Rows whose change has no event (or the reverse): name -> (rows, events)."""
    counts = {
        row.type: row.n
        for row in await rows(engine, "SELECT type, count(*) AS n FROM events GROUP BY type")
    }
    expected = {
        "contact.queued": "SELECT count(*) FROM contacts",
        "offer.created": "SELECT count(*) FROM offers",
        "contact.connected": "SELECT count(*) FROM contacts WHERE answered_at IS NOT NULL",
        **{
            f"offer.{s}": f"SELECT count(*) FROM offers WHERE status = '{s}'"
            for s in ("accepted", "rejected", "expired", "rescinded")
        },
        **{
            f"contact.{s}": f"SELECT count(*) FROM contacts WHERE status = '{s}'"
            for s in ("completed", "abandoned")
        },
    }
    found: dict[str, tuple[int, int]] = {}
    for event_type, sql in expected.items():
        n = int(await value(engine, sql))
        if n != counts.get(event_type, 0):
            found[event_type] = (n, counts.get(event_type, 0))
    return found


class TestNoDoubleAssignment:
    @pytest.mark.parametrize(
        "instances", [1, 2], indirect=True, ids=["one_instance", "two_instances_with_failover"]
    )
    async def test_hammered_centre_never_double_offers_nor_exceeds_capacity(
        self, api: Api, app: FastAPI, instances: list[Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Also: no offer to an agent who was not available, active and skilled; every
        contact ended once; no lease outlived the sweep's bound; no earlier contact passed
        over."""
        engine: AsyncEngine = app.state.engine
        settings: Settings = app.state.settings
        apps = [app, *(other for other, _ in instances)]
        noted = note_rounds(monkeypatch)
        async with agent_history(engine):
            hammer = await set_up_hammer(api, apps, instances)
            app.state.hub.add_listener(hammer.on_events)
            await hammer.run()
            if len(apps) > 1:
                leaders = [d.is_leader for d in hammer.dispatchers]
                assert leaders == [True], "another instance took over"
            unroutable = await offers_to_unroutable_agents(engine)

        assert unroutable == []
        assert await liveness_violations(engine, hammer.bound_s()) == {}
        assert hammer.checks > 10, "the invariants were checked while the hammering went on"
        assert await event_mismatches(engine) == {}
        assert await order_violations(engine, noted, settings) == []
        # The order check had rounds to judge: ones that left no decided pair unwritten.
        assert sum(1 for r in noted if r.offer_ids and not r.skipped) > 10
        offers = await value(engine, "SELECT count(*) FROM offers")
        outcomes = {row.status for row in await rows(engine, "SELECT DISTINCT status FROM offers")}
        # The run really exercised what it claims to: re-offers, every kind of offer outcome.
        assert offers > CONTACTS
        assert {"accepted", "rejected", "expired"} <= outcomes
        assert await value(engine, "SELECT count(*) FROM contacts WHERE status = 'abandoned'")
        assert await value(engine, "SELECT max(load) FROM agent_channels") == 0


class TestDatabaseRefusesDoubleAssignment:
    async def test_second_pending_offer_for_a_contact_is_refused_by_a_unique_index(
        self, api: Api, app: FastAPI
    ) -> None:
        q = await queue(api)
        console = await available_agent(api)
        other = await api.agent()
        created = await contact(api, q["name"])
        await offer_for(console, created["id"])
        insert = text(
            "INSERT INTO offers (contact_id, agent_id, queue_id, channel, status, reason, "
            "expires_at, decided_at) VALUES (:contact, :agent, :queue, 'chat', :status, '{}', "
            "now() + interval '1 minute', :decided)"
        )
        params = {"contact": created["id"], "agent": other["id"], "queue": q["id"]}
        engine: AsyncEngine = app.state.engine
        with pytest.raises(IntegrityError, match="uq_offers_contact_id_pending"):
            async with engine.begin() as conn:
                await conn.execute(insert, {**params, "status": "pending", "decided": None})
        # Only pending offers are unique: the history may hold any number of decided ones.
        async with engine.begin() as conn:
            await conn.execute(
                insert,
                {**params, "status": "rejected", "decided": await value(engine, "SELECT now()")},
            )

    async def test_load_above_capacity_is_refused_by_a_check_constraint(
        self, api: Api, app: FastAPI
    ) -> None:
        agent = await api.agent(capacity={"chat": 2})
        engine: AsyncEngine = app.state.engine
        with pytest.raises(IntegrityError, match="ck_agent_channels_load"):
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "UPDATE agent_channels SET load = capacity + 1 "
                        "WHERE agent_id = :agent AND channel = 'chat'"
                    ),
                    {"agent": agent["id"]},
                )
        load = await value(
            engine,
            "SELECT load FROM agent_channels WHERE agent_id = :agent AND channel = 'chat'",
            agent=agent["id"],
        )
        assert load == 0


async def waiting_for_a_lock(engine: AsyncEngine) -> bool:
    waiting = await value(
        engine,
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    return bool(waiting)


class TestRacingWritesKeepTheAgentsBooks:
    async def test_accept_racing_a_new_offer_to_the_same_agent_keeps_its_work_counts(
        self, api: Api, app: FastAPI
    ) -> None:
        """The accept reads its agent (signing in) before locking it; meanwhile the
        dispatcher offers that agent a second contact. Counts computed from the first read
        would forget the second offer."""
        engine: AsyncEngine = app.state.engine
        q = await queue(api)
        console = await available_agent(api, capacity={"chat": 2})
        first = await contact(api, q["name"])
        offer = await offer_for(console, first["id"])
        async with engine.connect() as blocker:
            await blocker.execute(
                text("SELECT 1 FROM contacts WHERE id = :id FOR UPDATE"), {"id": first["id"]}
            )
            accepting = asyncio.create_task(console.post(f"/api/v1/offers/{offer['id']}/accept"))
            await eventually(lambda: waiting_for_a_lock(engine), what="the accept to block")
            second = await contact(api, q["name"])
            await offer_for(console, second["id"])
            await blocker.rollback()
        expect(await accepting, 200)

        await assert_invariants(engine)
        me = expect(await console.get("/api/v1/agents/me"), 200)
        assert me["state"] == "busy"
        counts = await rows(
            engine,
            "SELECT work_offers, work_contacts FROM agents WHERE id = :id",
            id=console.me["id"],
        )
        assert [tuple(r) for r in counts] == [(1, 1)]


async def backend_waits_for_a_lock(engine: AsyncEngine, pid: int) -> bool:
    waiting = await value(
        engine,
        "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid AND wait_event_type = 'Lock'",
        pid=pid,
    )
    return bool(waiting)


async def write_or_block(
    engine: AsyncEngine, conn: asyncpg.Connection, write: Coroutine[Any, Any, list[Made]]
) -> tuple[asyncio.Task[list[Made]], bool]:
    """Start a round's write and return as soon as it has either finished or is waiting on
    a row lock (whichever comes first), and which: no timing luck either way."""
    writing = asyncio.create_task(write)
    blocked = asyncio.create_task(
        eventually(
            lambda: backend_waits_for_a_lock(engine, conn.get_server_pid()),
            what="the round's write to finish or wait on a lock",
        )
    )
    await asyncio.wait({writing, blocked}, return_when=asyncio.FIRST_COMPLETED)
    waited = not writing.done()
    blocked.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await blocked
    return writing, waited


class TestTheRoundsWriteLocksTheContact:
    async def test_round_skips_a_contact_a_request_holds_and_never_offers_it_once_abandoned(
        self, api: Api, app: FastAPI, settings: Settings
    ) -> None:
        """The round reads and decides with no lock held; an abandon locks the contact
        meanwhile. The write must pass the contact by (``SKIP LOCKED``), neither waiting for
        the request nor offering what the request then ends."""
        await app.state.dispatcher.stop()  # the test runs the rounds itself
        engine: AsyncEngine = app.state.engine
        q = await queue(api)
        console = await available_agent(api)
        created = await contact(api, q["name"])
        assert settings.database_url is not None
        conn = await connect_driver(settings.database_url)
        try:
            rounds = Rounds(conn, settings)
            async with app.state.sessionmaker() as request:
                await lock_contact(request, created["id"])  # an abandon in flight
                plan = await rounds.read()
                matches = decide(plan, settings)
                assert [(m.contact.id, m.agent_id) for m in matches] == [
                    (created["id"], console.me["id"])
                ]
                writing, waited = await write_or_block(engine, conn, rounds.write(plan, matches))
                await abandon(request, contact_id=created["id"], actor="customer")
                await request.commit()
            made = await asyncio.wait_for(writing, 10)
        finally:
            await conn.close()

        # (waited for the request, contacts offered): with the contact unlocked the write
        # waits for the abandon, then offers the contact it ended.
        assert (waited, [m.contact_id for m in made]) == (False, [])
        assert await rows(engine, "SELECT id FROM offers") == []
        shown = expect(await api.get(f"/api/v1/contacts/{created['id']}"), 200)
        assert shown["status"] == "abandoned"
        await assert_invariants(engine)


# --- order, through the API --------------------------------------------------------------


async def accept(console: Api, offer: dict[str, Any]) -> None:
    expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)


async def complete(console: Api, contact_id: int) -> None:
    expect(await console.post(f"/api/v1/contacts/{contact_id}/complete", {}), 200)


class TestOrder:
    async def test_platinum_contact_arriving_later_is_offered_before_standard(
        self, api: Api
    ) -> None:
        skill = await api.skill()
        q = await queue(api, steps=[{"skills": [{"skill": skill["name"], "min_level": 3}]}])
        console = await available_agent(
            api, capacity={"chat": 1}, skills=[{"skill": skill["name"], "level": 5}]
        )
        busy = await contact(api, q["name"])
        await accept(console, await offer_for(console, busy["id"]))
        standard = await contact(
            api, q["name"], customer={"id": (await api.customer(tier="standard"))["id"]}
        )
        platinum = await contact(
            api, q["name"], customer={"id": (await api.customer(tier="platinum"))["id"]}
        )
        assert platinum["position"] == 1

        await complete(console, busy["id"])
        offer = await offer_for(console, platinum["id"])

        assert [o["contact_id"] for o in await pending_offers(console)] == [platinum["id"]]
        shown = expect(await api.get(f"/api/v1/contacts/{platinum['id']}"), 200)
        reason = shown["offers"][0]["reason"]
        assert shown["offers"][0]["id"] == offer["id"]
        assert reason["tier"] == "platinum"
        assert reason["step"] == 0
        assert reason["rule"] == f"steps[0] requires {skill['name']}>=3"
        assert reason["strategy"] == "longest_idle"
        assert reason["contact_tie_break"] == "deadline"
        assert reason["next_contact_id"] == standard["id"]
        waiting = expect(await api.get(f"/api/v1/contacts/{standard['id']}"), 200)
        assert waiting["status"] == "queued"
        assert waiting["offers"] == []

    async def test_longest_idle_agent_is_offered_the_contact_and_the_reason_says_why(
        self, api: Api
    ) -> None:
        q = await queue(api)
        veteran = await available_agent(api)
        newcomer = await available_agent(api)
        created = await contact(api, q["name"])

        offer = await offer_for(veteran, created["id"])

        assert await pending_offers(newcomer) == []
        reason = offer["reason"]
        assert reason["strategy"] == "longest_idle"
        assert reason["tie_break"] == "idle_since"
        assert reason["runner_up_agent_id"] == newcomer.me["id"]
        assert reason["agents_ranked"] == 2
        assert reason["step"] is None
        assert reason["rule"] == "any agent: queue has no routing steps"

    async def test_platinum_customer_gets_their_manager_over_a_longer_idle_agent(
        self, api: Api
    ) -> None:
        q = await queue(api)
        veteran = await available_agent(api)
        manager = await available_agent(api)
        customer = await api.customer(tier="platinum", relationship_manager_id=manager.me["id"])

        created = await contact(api, q["name"], customer={"id": customer["id"]})
        offer = await offer_for(manager, created["id"])

        assert await pending_offers(veteran) == []
        assert offer["reason"]["affinity"] == "relationship_manager"
        assert offer["reason"]["agent_id"] == manager.me["id"]


# --- work conservation without the safety tick -------------------------------------------


@pytest.fixture
async def slow_ticking_app(db: str) -> AsyncIterator[tuple[FastAPI, Api]]:
    """A centre whose dispatcher only moves when woken (its safety tick is a minute)."""
    async with instance(make_settings(db, dispatch_tick_s=60)) as (app, client):
        yield app, await Api.signed_in(client, "admin", ADMIN_PASSWORD)


@pytest.fixture
def slow_ticking(slow_ticking_app: tuple[FastAPI, Api]) -> Api:
    return slow_ticking_app[1]


class TestWakeUps:
    async def test_capacity_freed_mid_conversation_is_used_without_waiting_for_the_tick(
        self, slow_ticking: Api
    ) -> None:
        api = slow_ticking
        q = await queue(api, wrap_up_s=0)
        console = await available_agent(api, capacity={"chat": 2})
        first, second = await contact(api, q["name"]), await contact(api, q["name"])
        await accept(console, await offer_for(console, first["id"]))
        await accept(console, await offer_for(console, second["id"]))
        third = await contact(api, q["name"])

        await complete(console, first["id"])

        await offer_for(console, third["id"], within=5)

    async def test_agent_finishing_wrap_up_is_offered_the_next_contact_without_the_tick(
        self, slow_ticking: Api
    ) -> None:
        api = slow_ticking
        q = await queue(api, wrap_up_s=600)
        console = await available_agent(api, capacity={"chat": 2})
        first, second = await contact(api, q["name"]), await contact(api, q["name"])
        await accept(console, await offer_for(console, first["id"]))
        await accept(console, await offer_for(console, second["id"]))
        await complete(console, first["id"])
        third = await contact(api, q["name"])

        expect(await console.post(f"/api/v1/agents/{console.me['id']}/wrap-up/done"), 200)

        await offer_for(console, third["id"], within=5)

    async def test_pair_skipped_for_a_row_a_request_held_is_tried_again_until_it_is_free(
        self, slow_ticking_app: tuple[FastAPI, Api]
    ) -> None:
        """A request holding the agent's row while the round writes makes it skip the pair;
        the request may end without an event that wakes the dispatcher (an answered offer
        writes none), so the dispatcher keeps coming back to the pair by itself. The
        arrival wakes it once or twice; only its own retries skip the pair four times."""
        app, api = slow_ticking_app
        dispatcher: Dispatcher = app.state.dispatcher
        q = await queue(api)
        console = await available_agent(api)
        engine: AsyncEngine = app.state.engine
        async with engine.connect() as holder:
            await holder.execute(
                text("SELECT 1 FROM agents WHERE id = :id FOR UPDATE"), {"id": console.me["id"]}
            )
            skipped = dispatcher.skipped
            created = await contact(api, q["name"])

            async def retried() -> bool:
                return dispatcher.skipped >= skipped + 4

            await eventually(retried, within=5, what="the dispatcher to try the pair again")
            assert not await pending_offers(console)
            await holder.rollback()  # the request ends: no event, no wake-up

        await offer_for(console, created["id"], within=5)


# --- work conservation across instances --------------------------------------------------

# Far below the dispatcher's tick in these tests (60 s) and its board refresh (30 s): only a
# wake-up crossing instances (the other hub's NOTIFY, or the event log) meets it; either
# takes tens of milliseconds.
CROSS_INSTANCE_BOUND_S = 3.0


class TestWorkConservationAcrossInstances:
    @pytest.mark.parametrize("leader", ["queueing_instance", "freeing_instance"])
    async def test_contact_queued_through_one_instance_meets_an_agent_freed_through_another(
        self, db: str, leader: str
    ) -> None:
        """Two instances on one database, the dispatcher leading on one of them; whichever
        of the two changes comes last happens on the instance that does not lead."""
        settings = make_settings(db, dispatch_tick_s=60)
        async with instance(settings) as (a, client_a), instance(settings) as (b, client_b):
            leading, other = (a, b) if leader == "queueing_instance" else (b, a)
            await other.state.dispatcher.stop()

            async def leads() -> bool:
                return bool(leading.state.dispatcher.is_leader)

            await eventually(leads, what=f"the {leader} to lead")
            api = await Api.signed_in(client_a, "admin", ADMIN_PASSWORD)
            q = await queue(api, wrap_up_s=0)
            console = await available_agent(api, capacity={"chat": 1})
            through_b = via(console, client_b)
            # The agent's first contact comes through the leading instance: only the last
            # change has to cross.
            busy = await contact(api if leading is a else via(api, client_b), q["name"])
            await accept(console, await offer_for(console, busy["id"]))
            if leader == "queueing_instance":
                waiting = await contact(api, q["name"])
                await complete(through_b, busy["id"])
            else:
                await complete(through_b, busy["id"])
                waiting = await contact(api, q["name"])

            await offer_for(console, waiting["id"], within=CROSS_INSTANCE_BOUND_S)


# --- wake-ups while a transaction elsewhere on the server stays open ---------------------


@contextlib.asynccontextmanager
async def transaction_open_elsewhere(url: str) -> AsyncIterator[int]:
    """A writing transaction left open in another database of the same server, as another
    application's long batch would be; yields its transaction id. Transaction ids are
    cluster-wide, so the event log of every database is readable only up to it."""
    elsewhere = make_url(url).set(database="postgres").render_as_string(hide_password=False)
    conn = await connect_driver(elsewhere, idle_tx_timeout_ms=120_000)
    try:
        tx = conn.transaction()
        await tx.start()
        yield int(await conn.fetchval("SELECT pg_current_xact_id()::text"))
        await tx.rollback()
    finally:
        await conn.close()


# Far below the tick (60 s), the board refresh (30 s) and the hub's poll, which cannot read
# past the open transaction however often it looks.
HELD_BACK_BOUND_S = 3.0


class TestWakeUpsWhileTheLogIsHeldBack:
    @pytest.mark.parametrize("freed_through", ["leader", "other_instance"])
    @pytest.mark.parametrize("freed_by", ["completing_a_contact", "coming_back_from_a_break"])
    async def test_agent_freed_is_offered_the_waiting_contact_though_the_log_is_held_back(
        self, db: str, freed_through: str, freed_by: str
    ) -> None:
        """The change that frees the agent commits while a transaction in another database
        is open: its events cannot be read until that transaction ends, yet the leader is
        woken at once, directly on its own instance and by the other instance's NOTIFY."""
        settings = make_settings(db, dispatch_tick_s=60)
        async with instance(settings) as (a, client_a), instance(settings) as (b, client_b):
            await b.state.dispatcher.stop()

            async def leads() -> bool:
                return bool(a.state.dispatcher.is_leader)

            await eventually(leads, what="instance A to lead")
            api = await Api.signed_in(client_a, "admin", ADMIN_PASSWORD)
            q = await queue(api, wrap_up_s=0)
            console = await available_agent(api, capacity={"chat": 1})
            busy = await contact(api, q["name"])
            await accept(console, await offer_for(console, busy["id"]))
            if freed_by == "coming_back_from_a_break":
                await complete(console, busy["id"])
                away = {"status": "away", "reason": "break"}
                expect(await console.post(f"/api/v1/agents/{console.me['id']}/status", away), 200)
            waiting = await contact(api, q["name"])
            # Not offered to the agent, who is still busy or away.
            assert not await pending_offers(console)
            through = console if freed_through == "leader" else via(console, client_b)

            async with transaction_open_elsewhere(db) as held:
                hub: EventHub = a.state.hub
                read_before = hub.cursor
                if freed_by == "completing_a_contact":
                    await complete(through, busy["id"])
                else:
                    me = console.me["id"]
                    available = {"status": "available"}
                    expect(await through.post(f"/api/v1/agents/{me}/status", available), 200)
                freeing_tx = await value(
                    a.state.engine, "SELECT max(tx) FROM events WHERE subject_type = 'agent'"
                )
                assert freeing_tx > held, "the change committed after the open transaction"

                await offer_for(console, waiting["id"], within=HELD_BACK_BOUND_S)

                # The leader's hub has not read the change that freed the agent: the
                # wake-up did not come through the log.
                assert hub.cursor.tx < freeing_tx
                assert hub.cursor.tx <= max(read_before.tx, held)


# --- the order check itself: it flags only what the log decides --------------------------

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
RULES = OrderRules({"standard": 60.0}, "standard", 30.0)


def queued_contact(contact_id: int, deadline_s: float, queue_id: int = 1) -> Queued:
    at = T0 + timedelta(seconds=deadline_s)
    return Queued(contact_id, queue_id, "chat", at, at - timedelta(seconds=60), "standard", False)


def happened(contact_id: int, tx: int, type_: str, offer_id: int | None = None) -> Happened:
    return Happened(contact_id, tx, type_, T0, offer_id, 7 if offer_id else None)


# Contact 1 (earlier deadline) queued in transaction 10 and next offered by round 1; contact 2
# queued in transaction 11 and offered by round 0.
PASSED_OVER = [
    happened(1, 10, "contact.queued"),
    happened(2, 11, "contact.queued"),
    happened(2, 20, "offer.created", offer_id=100),
    happened(1, 30, "offer.created", offer_id=101),
]


class TestOrderBreaches:
    @pytest.mark.parametrize(
        ("rounds", "contacts", "breaches"),
        [
            pytest.param(
                [NotedRound(15, (100,), 0), NotedRound(25, (101,), 0)],
                {1: queued_contact(1, 0), 2: queued_contact(2, 5)},
                1,
                id="earlier-contact-certainly-waited",
            ),
            pytest.param(
                [NotedRound(15, (100,), 1), NotedRound(25, (101,), 0)],
                {1: queued_contact(1, 0), 2: queued_contact(2, 5)},
                0,
                id="round-left-a-pair-it-decided",
            ),
            pytest.param(
                [NotedRound(10, (100,), 0), NotedRound(25, (101,), 0)],
                {1: queued_contact(1, 0), 2: queued_contact(2, 5)},
                0,
                id="earlier-contact-maybe-not-committed-at-the-read",
            ),
            pytest.param(
                [NotedRound(15, (100,), 0), NotedRound(25, (101,), 0)],
                {1: queued_contact(1, 5), 2: queued_contact(2, 0)},
                0,
                id="offered-contact-had-the-earlier-deadline",
            ),
            pytest.param(
                [NotedRound(15, (100,), 0), NotedRound(25, (101,), 0)],
                {1: queued_contact(1, 0), 2: queued_contact(2, 5, queue_id=2)},
                0,
                id="another-queue",
            ),
            pytest.param(
                [NotedRound(15, (100,), 0), NotedRound(25, (101,), 0)],
                {1: queued_contact(1, -100), 2: queued_contact(2, -95)},
                0,
                id="offered-contact-may-have-been-overdue",
            ),
        ],
    )
    def test_flags_only_a_contact_offered_while_an_earlier_one_certainly_waited(
        self, rounds: list[NotedRound], contacts: dict[int, Queued], breaches: int
    ) -> None:
        found = order_breaches(contacts, PASSED_OVER, rounds, {1, 2}, RULES)
        assert len(found) == breaches, found
