"""Helpers for ACD tests: build a centre through the API and wait for the dispatcher."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.main import create_app
from app.routing.rounds import Made, Plan, Rounds
from tests.fixtures.factories import AGENT_PASSWORD, Api, expect, unique
from tests.fixtures.polling import eventually


async def queue(api: Api, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": unique("q-"),
        "channels": ["chat", "voice"],
        "ring_timeout_s": 30,
        "wrap_up_s": 0,
        "reject_delay_s": 0,
        "no_answer_delay_s": 0,
    }
    body.update(overrides)
    return expect(await api.post("/api/v1/queues", body), 201)  # type: ignore[no-any-return]


async def available_agent(api: Api, **overrides: Any) -> Api:
    """An agent signed in on its own client and made available."""
    agent = await api.agent(**overrides)
    console = await api.as_user(agent["username"], AGENT_PASSWORD)
    expect(await console.post(f"/api/v1/agents/{agent['id']}/status", {"status": "available"}), 200)
    return console


async def contact(api: Api, queue_name: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"channel": "chat", "queue": queue_name}
    body.update(overrides)
    return expect(await api.post("/api/v1/contacts", body), 201)  # type: ignore[no-any-return]


async def pending_offers(console: Api) -> list[dict[str, Any]]:
    return expect(await console.get("/api/v1/offers?agent=me"), 200)["items"]  # type: ignore[no-any-return]


async def offer_for(console: Api, contact_id: int, within: float = 10.0) -> dict[str, Any]:
    """Wait until the dispatcher offers ``contact_id`` to this agent."""

    async def check() -> dict[str, Any] | None:
        return next(
            (o for o in await pending_offers(console) if o["contact_id"] == contact_id), None
        )

    return await eventually(check, within=within, what=f"an offer of contact {contact_id}")  # type: ignore[no-any-return]


# --- instances, SQL and the ACD's invariants ---------------------------------------------


@asynccontextmanager
async def instance(settings: Settings) -> AsyncIterator[tuple[FastAPI, AsyncClient]]:
    """Another running app (its own lifespan: hub, timers, dispatcher) on the same database."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client,
    ):
        yield app, client


def via(api: Api, client: AsyncClient) -> Api:
    """The same signed-in principal, talking to another instance."""
    return Api(client, dict(api.headers), dict(api.me))


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def value(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return await conn.scalar(text(sql), params)


def _shown(found: Sequence[Any]) -> str:
    """Rows as tuples, their times of day to the millisecond."""

    def cell(v: Any) -> str:
        return v.strftime("%H:%M:%S.%f")[:-3] if isinstance(v, datetime) else repr(v)

    return ", ".join("(" + ", ".join(cell(v) for v in row) + ")" for row in found)


async def where_routing_stands(app: FastAPI, contact_id: int) -> str:
    """What a routing test's failure shows: the database's clock, the contact, its offers,
    the agents, the timers due or pending, and whether this app's dispatcher leads."""
    engine = app.state.engine
    parts = [
        f"now {_shown([(await value(engine, 'SELECT now()'),)])}",
        f"dispatcher leads: {app.state.dispatcher.is_leader}",
        "contact: "
        + _shown(
            await rows(
                engine, "SELECT status, queue_id FROM contacts WHERE id = :id", id=contact_id
            )
        ),
        "offers (id, agent, status, created, expires, decided): "
        + _shown(
            await rows(
                engine,
                "SELECT id, agent_id, status, created_at, expires_at, decided_at FROM offers"
                " WHERE contact_id = :id ORDER BY id",
                id=contact_id,
            )
        ),
        "agents (id, status, reason, missed, ready): "
        + _shown(
            await rows(
                engine,
                "SELECT id, status, status_reason, consecutive_no_answers, ready_at FROM agents"
                " ORDER BY id",
            )
        ),
        "timers (kind, subject, due, attempts, error, failed): "
        + _shown(
            await rows(
                engine,
                "SELECT kind, subject, due_at, attempts, last_error, failed_at FROM timers"
                " ORDER BY due_at",
            )
        ),
    ]
    return "\n".join(parts)


async def stored_overflow(
    engine: AsyncEngine, queue: dict[str, Any], overflow: dict[str, Any]
) -> None:
    """Point ``queue``'s overflow at ``overflow`` in the database itself, as a chain stored
    before chains were checked may be (the API refuses one that loops)."""
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE queues SET overflow_queue_id = :overflow WHERE id = :queue"),
            {"overflow": overflow["id"], "queue": queue["id"]},
        )


async def event_count(engine: AsyncEngine) -> int:
    return int(await value(engine, "SELECT count(*) FROM events"))


# Each query returns the rows that break one guarantee; all run in one snapshot.
INVARIANTS: dict[str, str] = {
    # Invariant 2: a contact is offered to at most one agent at a time. Half-open intervals
    # [created_at, decided_at); a pending offer runs to infinity.
    "two offers of one contact were pending at the same time": """
        SELECT a.contact_id, a.id, b.id FROM offers a
        JOIN offers b ON b.contact_id = a.contact_id AND b.id > a.id
        WHERE a.created_at < COALESCE(b.decided_at, 'infinity')
          AND b.created_at < COALESCE(a.decided_at, 'infinity')
    """,
    "an agent holds more than its capacity on a channel": """
        SELECT agent_id, channel, load, capacity FROM agent_channels
        WHERE load > capacity OR load < 0
    """,
    "channel load is not the agent's offered + connected contacts on it": """
        SELECT ac.agent_id, ac.channel, ac.load, count(c.id) FROM agent_channels ac
        LEFT JOIN contacts c ON c.agent_id = ac.agent_id AND c.channel = ac.channel
                            AND c.status IN ('offered', 'connected')
        GROUP BY ac.agent_id, ac.channel, ac.load
        HAVING ac.load <> count(c.id)
    """,
    "a contact is held on a channel the agent has no capacity row for": """
        SELECT c.id, c.agent_id, c.channel FROM contacts c
        WHERE c.status IN ('offered', 'connected') AND NOT EXISTS (
            SELECT 1 FROM agent_channels ac
            WHERE ac.agent_id = c.agent_id AND ac.channel = c.channel)
    """,
    "an agent's work counters disagree with its offers and contacts": """
        SELECT a.id, a.work_offers, a.work_contacts, a.work_wrap_ups,
               (SELECT count(*) FROM offers o WHERE o.agent_id = a.id AND o.status = 'pending'),
               (SELECT count(*) FROM contacts c WHERE c.agent_id = a.id AND c.status = 'connected'),
               (SELECT count(*) FROM contacts c WHERE c.agent_id = a.id AND c.status = 'wrap_up')
        FROM agents a
        WHERE a.work_offers <> (SELECT count(*) FROM offers o
                                WHERE o.agent_id = a.id AND o.status = 'pending')
           OR a.work_contacts <> (SELECT count(*) FROM contacts c
                                  WHERE c.agent_id = a.id AND c.status = 'connected')
           OR a.work_wrap_ups <> (SELECT count(*) FROM contacts c
                                  WHERE c.agent_id = a.id AND c.status = 'wrap_up')
    """,
    "an agent's state is not the one its work derives": """
        SELECT id, state, work_offers, work_contacts, work_wrap_ups FROM agents
        WHERE state <> CASE WHEN work_contacts > 0 THEN 'busy'
                            WHEN work_offers > 0 THEN 'offered'
                            WHEN work_wrap_ups > 0 THEN 'wrap_up'
                            ELSE 'idle' END
    """,
    # Invariant 1: one status each; terminal ones ended, live ones not.
    "a terminal contact has no ended_at, or a live one has": """
        SELECT id, status, ended_at FROM contacts
        WHERE (status IN ('completed', 'abandoned', 'timed_out', 'transferred', 'canceled'))
              <> (ended_at IS NOT NULL)
    """,
    "an offered contact has not exactly one pending offer, to its agent": """
        SELECT c.id, c.agent_id, count(o.id), min(o.agent_id) FROM contacts c
        LEFT JOIN offers o ON o.contact_id = c.id AND o.status = 'pending'
        WHERE c.status = 'offered'
        GROUP BY c.id, c.agent_id
        HAVING count(o.id) <> 1 OR min(o.agent_id) IS DISTINCT FROM c.agent_id
    """,
    "a pending offer is for a contact that is not offered": """
        SELECT o.id, o.contact_id, c.status FROM offers o JOIN contacts c ON c.id = o.contact_id
        WHERE o.status = 'pending' AND c.status <> 'offered'
    """,
    "a queued contact has an agent": """
        SELECT id, agent_id FROM contacts WHERE status = 'queued' AND agent_id IS NOT NULL
    """,
    "a connected or wrapping-up contact has no agent or no answer time": """
        SELECT id, status FROM contacts
        WHERE status IN ('connected', 'wrap_up') AND (agent_id IS NULL OR answered_at IS NULL)
    """,
    "a decided offer has no decision time, or a pending one has": """
        SELECT id, status, decided_at FROM offers
        WHERE (status = 'pending') = (decided_at IS NOT NULL)
    """,
}


async def violations(engine: AsyncEngine) -> dict[str, list[Any]]:
    """Every broken ACD guarantee, with sample rows (empty when all hold)."""
    found: dict[str, list[Any]] = {}
    async with engine.connect() as conn:
        snapshot = await conn.execution_options(isolation_level="REPEATABLE READ")
        for name, sql in INVARIANTS.items():
            broken = list((await snapshot.execute(text(sql))).all())
            if broken:
                found[name] = broken[:5]
    return found


async def assert_invariants(engine: AsyncEngine) -> None:
    broken = await violations(engine)
    assert not broken, "\n".join(f"{name}: {sample}" for name, sample in broken.items())


# --- leases and endings ------------------------------------------------------------------

TERMINAL = ("completed", "abandoned", "timed_out", "transferred", "canceled")


def lease_bound_s(settings: Settings) -> float:
    """How far past its expiry an offer may still be pending: its grace, plus two of the
    lease sweep's intervals. A sweep leaves an offer whose row another transaction holds at
    that moment (its own ring timer firing, on this instance or another) to the next sweep
    (``app/routing/handlers.py``), so an offer can wait for a second one."""
    sweep = float(getattr(settings, "lease_sweep_s", 5.0))
    return 2 * sweep + float(getattr(settings, "lease_grace_s", 2.0))


LEASE_LATE = "an offer was pending longer past its expiry than the lease sweep allows"
_ENDINGS = ", ".join(f"'contact.{status}'" for status in TERMINAL)
_TERMINAL_STATUSES = ", ".join(f"'{status}'" for status in TERMINAL)

# Each query returns what is stuck; :bound is ``lease_bound_s``. With ``INVARIANTS`` (an
# offered contact has exactly one pending offer, a queued one none) they say that every
# contact ended in exactly one terminal state or is legitimately waiting or being served.
LIVENESS: dict[str, str] = {
    "a contact has not exactly one ending event, of its terminal status (a live one has one)": f"""
        SELECT c.id, c.status, array_agg(e.type) FILTER (WHERE e.id IS NOT NULL)
        FROM contacts c
        LEFT JOIN events e ON e.subject_type = 'contact' AND e.subject_id = c.id::text
                          AND e.type IN ({_ENDINGS})
        GROUP BY c.id, c.status
        HAVING count(e.id) <> CASE WHEN c.status IN ({_TERMINAL_STATUSES}) THEN 1 ELSE 0 END
            OR (count(e.id) = 1 AND min(e.type) <> 'contact.' || c.status)
    """,
    "a live contact is neither waiting nor being served": f"""
        SELECT id, status FROM contacts
        WHERE status NOT IN ({_TERMINAL_STATUSES}, 'queued', 'offered', 'connected', 'wrap_up')
    """,
    # With the offer's own timer as it stands (gone once fired), to tell its lateness from
    # the sweep's.
    # Times in seconds from the snapshot's now (the expiry's and the timer's negative).
    LEASE_LATE: """
        SELECT o.id, o.contact_id, o.status,
               round(extract(epoch FROM o.expires_at - now()), 2) AS expiry_s,
               round(extract(epoch FROM COALESCE(o.decided_at, now()) - o.expires_at), 2)
                   AS late_s,
               round(extract(epoch FROM t.due_at - now()), 2) AS timer_due_s,
               t.attempts AS timer_attempts, t.failed_at AS timer_failed_at,
               t.last_error AS timer_error
        FROM offers o
        LEFT JOIN timers t ON t.kind = 'offer.expire' AND t.subject = o.id::text
        WHERE COALESCE(o.decided_at, now()) > o.expires_at + make_interval(secs => :bound)
    """,
}


async def liveness_violations(
    engine: AsyncEngine, bound_s: float, *, only: str | None = None
) -> dict[str, list[Any]]:
    """Every contact and lease stuck beyond its bound, and every broken invariant, all read
    in one snapshot (empty when all hold); ``only``: that one check of ``LIVENESS``."""
    found: dict[str, list[Any]] = {}
    checks: list[tuple[str, str, dict[str, float]]] = []
    if only is None:
        checks += [(n, q, {}) for n, q in INVARIANTS.items()]
    checks += [(n, q, {"bound": bound_s}) for n, q in LIVENESS.items() if only in (None, n)]
    async with engine.connect() as conn:
        snapshot = await conn.execution_options(isolation_level="REPEATABLE READ")
        for name, sql, params in checks:
            broken = list((await snapshot.execute(text(sql), params)).all())
            if broken:
                found[name] = broken[:5]
    return found


# --- who was offered what, against the agents' rows as they were -------------------------

# A record of every write to an agent's row or skills, made in the writing transaction while
# it holds the agent's row lock (any write to the row takes it; skills change under it, see
# ``PATCH /agents``). So the records of one agent come in the order its transactions really
# happened, which the log's (transaction id, id) order is not: a timer handler takes its
# transaction id when it claims its timer, before it waits for the agent.
_HISTORY = [
    "CREATE SCHEMA acd_audit",
    """CREATE TABLE acd_audit.agent_rows (
        seq bigserial PRIMARY KEY,
        agent_id bigint NOT NULL,
        tx bigint NOT NULL DEFAULT (pg_current_xact_id()::text)::bigint,
        active boolean NOT NULL,
        skills jsonb NOT NULL)""",
    """CREATE FUNCTION acd_audit.note_agent(agent bigint) RETURNS void
    LANGUAGE sql VOLATILE AS $$
        INSERT INTO acd_audit.agent_rows (agent_id, active, skills)
        SELECT a.id, a.active, COALESCE((
            SELECT jsonb_object_agg(k.name, s.level)
            FROM public.agent_skills s JOIN public.skills k ON k.id = s.skill_id
            WHERE s.agent_id = a.id), '{}'::jsonb)
        FROM public.agents a WHERE a.id = agent
    $$""",
    """CREATE FUNCTION acd_audit.agent_written() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM acd_audit.note_agent(NEW.id);
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION acd_audit.skills_written() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            PERFORM acd_audit.note_agent(OLD.agent_id);
        ELSE
            PERFORM acd_audit.note_agent(NEW.agent_id);
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER acd_audit_agents AFTER INSERT OR UPDATE ON public.agents
    FOR EACH ROW EXECUTE FUNCTION acd_audit.agent_written()""",
    """CREATE TRIGGER acd_audit_agent_skills AFTER INSERT OR UPDATE OR DELETE
    ON public.agent_skills FOR EACH ROW EXECUTE FUNCTION acd_audit.skills_written()""",
]


@asynccontextmanager
async def agent_history(engine: AsyncEngine) -> AsyncIterator[None]:
    """Record the agents' rows as they change (see ``OFFERS_TO_UNROUTABLE_AGENTS``)."""
    async with engine.begin() as conn:
        await conn.execute(text(_DROP_HISTORY))  # left by a run that could not drop it
        for statement in _HISTORY:
            await conn.execute(text(statement))
    try:
        yield
    finally:
        await _drop_history(engine)


_DROP_HISTORY = "DROP SCHEMA IF EXISTS acd_audit CASCADE"
DEADLOCK = "40P01"


async def _drop_history(engine: AsyncEngine, tries: int = 5) -> None:
    """Drop the history and its triggers while the centre still runs. Its transactions write
    an agent's row before its skills, so the tables are locked in that order first; a
    transaction that reads them the other way round can still make the drop the victim of a
    deadlock, which is then tried again."""
    for attempt in range(1, tries + 1):
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text("LOCK TABLE public.agents, public.agent_skills IN ACCESS EXCLUSIVE MODE")
                )
                await conn.execute(text(_DROP_HISTORY))
            return
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != DEADLOCK or attempt == tries:
                raise


# Offers made to an agent who, when the offer was written, was not available (by the last
# ``agent.status_changed`` in the log before it), not active, or short of a skill of the
# offer's routing step (by the agent's rows as recorded). "Before" is the agent's own order
# of transactions (``agent_history``): an offer's write updates its agent's row.
OFFERS_TO_UNROUTABLE_AGENTS = """
    WITH pos AS (
        SELECT agent_id, tx, min(seq) AS seq FROM acd_audit.agent_rows GROUP BY agent_id, tx
    ), offered AS (
        SELECT (e.data->>'offer_id')::bigint AS offer_id, (e.data->>'agent_id')::bigint AS agent_id,
            (e.data->>'queue_id')::bigint AS queue_id, (e.data->'reason'->>'step')::int AS step,
            p.seq
        FROM events e
        LEFT JOIN pos p ON p.agent_id = (e.data->>'agent_id')::bigint AND p.tx = e.tx
        WHERE e.type = 'offer.created'
    )
    SELECT o.offer_id, o.agent_id, st.status, r.active, r.skills, o.step, lacking.skills
    FROM offered o
    LEFT JOIN LATERAL (
        SELECT e.data->>'status' AS status
        FROM events e JOIN pos p ON p.agent_id = o.agent_id AND p.tx = e.tx
        WHERE e.type = 'agent.status_changed' AND e.subject_type = 'agent'
          AND e.subject_id = o.agent_id::text AND p.seq < o.seq
        ORDER BY p.seq DESC, e.id DESC LIMIT 1
    ) st ON true
    LEFT JOIN LATERAL (
        SELECT r.active, r.skills FROM acd_audit.agent_rows r
        WHERE r.agent_id = o.agent_id AND r.seq < o.seq
        ORDER BY r.seq DESC LIMIT 1
    ) r ON true
    LEFT JOIN LATERAL (
        SELECT array_agg(req->>'skill') AS skills
        FROM queues q, jsonb_array_elements(q.steps -> o.step -> 'skills') req
        WHERE q.id = o.queue_id
          AND COALESCE((r.skills->>(req->>'skill'))::int, 0) < (req->>'min_level')::int
    ) lacking ON true
    WHERE o.seq IS NULL OR st.status IS DISTINCT FROM 'available' OR r.active IS NOT TRUE
       OR lacking.skills IS NOT NULL
"""


async def offers_to_unroutable_agents(engine: AsyncEngine) -> list[Any]:
    """Offers (with the agent as it was) that went to an agent who could not take them."""
    return await rows(engine, OFFERS_TO_UNROUTABLE_AGENTS)


# --- order: no contact passed over while an earlier one waited ---------------------------


@dataclass(frozen=True, slots=True)
class NotedRound:
    """One dispatcher round as it ran: every transaction below ``xmin`` had ended before it
    read, it wrote ``offer_ids``, and its write left ``skipped`` decided pairs (a row a
    request held, or that changed meanwhile)."""

    xmin: int
    offer_ids: tuple[int, ...]
    skipped: int


_XMIN = "SELECT (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint"


def note_rounds(monkeypatch: pytest.MonkeyPatch) -> list[NotedRound]:
    """Note every round any dispatcher in this process runs, in the order they run (one
    leader at a time, each round's write done before the next round reads)."""
    noted: list[NotedRound] = []
    xmins: dict[int, int] = {}
    read, write = Rounds.read, Rounds.write

    async def noting_read(self: Rounds) -> Plan:
        xmins[id(self)] = await self._conn.fetchval(_XMIN)
        return await read(self)

    async def noting_write(self: Rounds, *args: Any, **kwargs: Any) -> list[Made]:
        made = await write(self, *args, **kwargs)
        matches = args[1] if len(args) > 1 else kwargs["matches"]
        offer_ids = tuple(m.offer_id for m in made)
        xmin = xmins.pop(id(self), None)
        if xmin is not None:  # (None: a round already reading when the noting began)
            noted.append(NotedRound(xmin, offer_ids, len(matches) - len(made)))
        return made

    monkeypatch.setattr(Rounds, "read", noting_read)
    monkeypatch.setattr(Rounds, "write", noting_write)
    return noted


@dataclass(frozen=True, slots=True)
class Queued:
    id: int
    queue_id: int
    channel: str
    deadline_at: datetime
    enqueued_at: datetime
    tier: str
    with_manager: bool

    @property
    def order(self) -> tuple[datetime, int]:
        return self.deadline_at, self.id


@dataclass(frozen=True, slots=True)
class Happened:
    """An event about a contact, in log order."""

    contact_id: int
    tx: int
    type: str
    at: datetime
    offer_id: int | None
    agent_id: int | None


@dataclass(frozen=True, slots=True)
class OrderRules:
    """What makes a contact overdue (it then goes before earlier deadlines)."""

    sl_target_s: dict[str, float]
    default_tier: str
    starvation_bound_s: float

    @classmethod
    def of(cls, settings: Settings) -> OrderRules:
        targets = {name: t.sl_target_s for name, t in settings.tiers.items()}
        return cls(targets, settings.default_tier, settings.starvation_bound_s)

    def may_be_overdue(self, contact: Queued, at: datetime) -> bool:
        target = self.sl_target_s.get(contact.tier, self.sl_target_s[self.default_tier])
        return (at - contact.enqueued_at).total_seconds() > target + self.starvation_bound_s


def _waits(events: Sequence[Happened], round_of: dict[int, int]) -> Iterator[tuple[int, int, int]]:
    """(contact, the transaction that queued it, the round that next offered it) for each
    time a contact waited and was next offered by a noted round, nothing else between."""
    for i, queued in enumerate(events):
        if queued.type not in ("contact.queued", "contact.requeued"):
            continue
        following = next((e for e in events[i + 1 :] if e.tx != queued.tx), None)
        if following is not None and following.type == "offer.created":
            until = round_of.get(following.offer_id or 0)
            if until is not None:
                yield queued.contact_id, queued.tx, until


def order_breaches(
    contacts: dict[int, Queued],
    events: Sequence[Happened],
    noted: Sequence[NotedRound],
    fixed_rule_queues: set[int],
    rules: OrderRules,
) -> list[str]:
    """Offers of a contact made while an earlier-deadline contact of the same queue and
    channel certainly waited, by a round that left no decided pair unwritten.

    Only what the log decides: the earlier contact was queued by a transaction that had
    ended before the round read (below its ``xmin``) and was next offered by a later round;
    the queue's routing rule does not change with waiting (no step expires); neither contact
    has a relationship manager; the later one was not overdue. The agent could then take
    the earlier contact (same queue, channel and rule, and room, being matched anyway), and
    the round, contacts in order, would have offered it to someone.
    """
    round_of = {offer: k for k, r in enumerate(noted) for offer in r.offer_ids}
    offers = {e.offer_id: e for e in events if e.type == "offer.created"}
    by_contact: dict[int, list[Happened]] = {}
    for event in events:
        by_contact.setdefault(event.contact_id, []).append(event)
    breaches: list[str] = []
    for contact_events in by_contact.values():
        for waiting_id, since_tx, until in _waits(contact_events, round_of):
            waiting = contacts.get(waiting_id)
            if waiting is None or waiting.queue_id not in fixed_rule_queues:
                continue
            for k in range(until):
                if noted[k].skipped or since_tx >= noted[k].xmin:
                    continue
                for offer_id in noted[k].offer_ids:
                    offer = offers.get(offer_id)
                    later = None if offer is None else contacts.get(offer.contact_id)
                    if offer is None or later is None or not _comparable(waiting, later):
                        continue
                    if waiting.order < later.order and not rules.may_be_overdue(later, offer.at):
                        breaches.append(
                            f"round {k} offered contact {later.id} to agent {offer.agent_id} "
                            f"while contact {waiting.id} (earlier deadline) waited"
                        )
    return breaches


def _comparable(one: Queued, other: Queued) -> bool:
    return (
        one.queue_id == other.queue_id
        and one.channel == other.channel
        and not (one.with_manager or other.with_manager)
    )


async def order_violations(
    engine: AsyncEngine, noted: Sequence[NotedRound], settings: Settings
) -> list[str]:
    """``order_breaches`` of everything the database holds and the rounds noted."""
    contacts = {
        r.id: Queued(
            r.id, r.queue_id, r.channel, r.deadline_at, r.enqueued_at, r.tier, r.with_manager
        )
        for r in await rows(
            engine,
            "SELECT c.id, c.queue_id, c.channel, c.deadline_at, c.enqueued_at, c.tier, "
            "cu.relationship_manager_id IS NOT NULL AS with_manager FROM contacts c "
            "LEFT JOIN customers cu ON cu.id = c.customer_id",
        )
    }
    events = [
        Happened(r.contact_id, r.tx, r.type, r.at, r.offer_id, r.agent_id)
        for r in await rows(
            engine,
            "SELECT CASE WHEN subject_type = 'contact' THEN subject_id::bigint "
            "ELSE (data->>'contact_id')::bigint END AS contact_id, tx, type, at, "
            "(data->>'offer_id')::bigint AS offer_id, (data->>'agent_id')::bigint AS agent_id "
            "FROM events WHERE subject_type = 'contact' OR type LIKE 'offer.%' ORDER BY tx, id",
        )
    ]
    fixed = {
        r.id
        for r in await rows(
            engine,
            "SELECT id FROM queues q WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements("
            "q.steps) s WHERE jsonb_typeof(s->'expires_after_s') = 'number')",
        )
    }
    return order_breaches(contacts, events, noted, fixed, OrderRules.of(settings))
