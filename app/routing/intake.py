"""Taking a contact in: ``POST /api/v1/contacts`` in one statement.

Theory of operation
-------------------

Every contact of every channel comes through here, so this is the hottest write path of the
service, and its cost is mostly round trips. One statement (``_INTAKE``, run on the driver
as its own transaction) does the whole job:

1. it reads the facts: whether the token's agent may still sign in, whether the
   ``Idempotency-Key`` was used before, the queue asked for, the customer and the queue the
   contact is admitted to (the one asked for or, while a queue is full, its overflow queue,
   never the same queue twice);
2. only when every fact allows it, it claims the key, inserts the contact (its deadline is
   the enqueue time plus its tier's service-level target; its announced position counts the
   queued contacts of the queue ahead of it), its ``contact.queued`` event and its max-wait
   timer;
3. it returns the facts, the new contact and what its wait estimate needs (the queue's
   recent handle times and, when there are enough of them, the staffed agents).

Nothing is written unless everything was allowed, so a refused request changes nothing.
Python then reads the facts in the order a client expects its errors (sign-in, key reused
with another request, unknown queue, channel, customer, full queue) and raises the first.
The statement commits before this returns: the caller wakes the event hub, the dispatcher
and (for a max wait due soon) the timer worker.

A retry with the same key finds the key and gets the contact it created, as it is now. A
retry racing the first request waits on the key's primary key inside the statement, inserts
nothing, and reads the key again once the first has committed.

A queue's max length is a count of its live contacts, and a count on the statement's
snapshot cannot see admissions that commit while it runs: concurrent statements would all
see room. So the statement also writes nothing when a queue it counted has a max length
whose admission lock the caller does not hold, and names every queue with a max length that
the overflow chain from the queue asked for can reach (whatever their fullness). Python then
runs it again in a transaction that first takes those queues' transaction-scoped advisory
locks, in one order (two admissions never deadlock); the statement's READ COMMITTED snapshot
is taken after the locks, so it sees every admission to those queues committed before, and
the next waits until this one commits. Queues without a max length, the common case, keep
the one statement. (Transfers and max-wait overflow, in ``contacts`` and ``endings``, queue
contacts without looking at a max length at all.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.agents.dependencies import check_identity
from app.agents.security import TokenClaims
from app.agents.service import Identity
from app.channels import Channel
from app.config import Settings
from app.customers import service as customers
from app.db import DriverPool
from app.errors import InvalidInput
from app.idempotency import check_key, fingerprint, key_reused
from app.routing import estimate
from app.routing.contacts import MAX_WAIT
from app.routing.exceptions import ChannelNotAccepted, QueueFull, UnknownQueue
from app.routing.schemas import ContactCreate

TIMER_WAKE_HORIZON = timedelta(seconds=1)
_WINDOW_S = int(
    estimate.RECENT_WINDOW.total_seconds()
)  # as app.timers.service: sooner, wake the worker

# $1 agent id, $2 token version, $3 key scope, $4 key (or NULL), $5 queue id, $6 queue name,
# $7 customer id, $8 phone, $9 tier names, $10 their SL targets, $11 default tier, $12 its
# target, $13 request fingerprint, $14 channel, $15 subject, $16 language, $17 actor, $18 the
# queues whose admission locks the caller holds.
_INTAKE = f"""
WITH RECURSIVE
who AS (
    SELECT active, token_version, username, role, site FROM agents WHERE id = $1::bigint
),
prior AS (
    SELECT request_hash, resource_id FROM idempotency_keys WHERE scope = $3::text AND key = $4::text
),
asked AS (
    SELECT id, name, channels FROM queues WHERE id = $5::bigint OR name = $6::text
),
customer AS (
    SELECT id, tier, language, phone FROM customers WHERE id = $7::bigint OR phone = $8::text
),
-- The queue asked for and, while a queue is full, its overflow queue (never one twice).
chain AS (
    SELECT q.id, q.overflow_queue_id, q.max_length, 1 AS depth, ARRAY[q.id] AS path,
        q.max_length IS NOT NULL AND (
            SELECT count(*) FROM contacts w
            WHERE w.queue_id = q.id AND w.status IN ('queued', 'offered')
        ) >= q.max_length AS is_full
    FROM queues q JOIN asked ON asked.id = q.id
    UNION ALL
    SELECT o.id, o.overflow_queue_id, o.max_length, c.depth + 1, c.path || o.id,
        o.max_length IS NOT NULL AND (
            SELECT count(*) FROM contacts w
            WHERE w.queue_id = o.id AND w.status IN ('queued', 'offered')
        ) >= o.max_length
    FROM chain c JOIN queues o ON o.id = c.overflow_queue_id
    WHERE c.is_full AND o.id <> ALL(c.path)
),
-- Every queue with a max length that an admission from the queue asked for may reach,
-- whatever their fullness now: the overflow chain up to the first queue without one.
reach AS (
    SELECT q.id, q.overflow_queue_id, q.max_length, ARRAY[q.id] AS path
    FROM queues q JOIN asked ON asked.id = q.id
    UNION ALL
    SELECT o.id, o.overflow_queue_id, o.max_length, r.path || o.id
    FROM reach r JOIN queues o ON o.id = r.overflow_queue_id
    WHERE r.max_length IS NOT NULL AND o.id <> ALL(r.path)
),
-- NULL when the caller holds the lock ($18) of every limited queue the chain counted; else
-- the limited queues to lock before counting again.
locks AS (
    SELECT CASE WHEN EXISTS (
        SELECT FROM chain WHERE chain.max_length IS NOT NULL AND chain.id <> ALL($18::bigint[])
    ) THEN (SELECT array_agg(id ORDER BY id) FROM reach WHERE max_length IS NOT NULL)
    END AS ids
),
admitted AS (
    SELECT q.id, q.name, q.channels, q.max_length, q.max_wait_s
    FROM queues q WHERE q.id = (SELECT id FROM chain WHERE NOT is_full ORDER BY depth LIMIT 1)
),
last_full AS (
    SELECT q.name, q.max_length FROM queues q
    WHERE q.id = (SELECT id FROM chain ORDER BY depth DESC LIMIT 1)
),
facts AS (
    SELECT who.active IS NOT NULL AS known, who.active, who.token_version, who.username,
        who.role, who.site,
        prior.request_hash AS prior_hash, prior.resource_id AS prior_id,
        asked.id AS asked_id, asked.name AS asked_name, asked.channels AS asked_channels,
        customer.id AS customer_id, customer.tier AS customer_tier,
        customer.language AS customer_language, customer.phone AS customer_phone,
        admitted.id AS queue_id, admitted.name AS queue_name,
        admitted.channels AS queue_channels, admitted.max_length AS queue_max_length,
        admitted.max_wait_s, last_full.name AS full_name, last_full.max_length AS full_length,
        locks.ids AS locks
    FROM (SELECT) one
    LEFT JOIN who ON true LEFT JOIN prior ON true LEFT JOIN asked ON true
    LEFT JOIN customer ON true LEFT JOIN admitted ON true LEFT JOIN last_full ON true
    LEFT JOIN locks ON true
),
ok AS (
    SELECT f.queue_id, f.max_wait_s, f.customer_id,
        coalesce(f.customer_tier, $11::text) AS tier,
        coalesce($16::text, f.customer_language) AS language,
        coalesce($8::text, f.customer_phone) AS caller,
        coalesce(
            (SELECT t.target FROM unnest($9::text[], $10::float8[]) AS t(name, target)
             WHERE t.name = f.customer_tier),
            $12::float8
        ) AS sl_target_s,
        nextval(pg_get_serial_sequence('contacts', 'id')) AS contact_id
    FROM facts f
    WHERE f.active AND f.token_version = $2::int AND f.prior_hash IS NULL
      AND $14::text = ANY(f.asked_channels) AND $14::text = ANY(f.queue_channels)
      AND ($7::bigint IS NULL OR f.customer_id IS NOT NULL) AND f.locks IS NULL
),
claim AS (
    INSERT INTO idempotency_keys (scope, key, request_hash, status_code, resource_id)
    SELECT $3::text, $4::text, $13::text, 201, ok.contact_id FROM ok WHERE $4::text IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING resource_id
),
ahead AS (
    SELECT count(*) AS n FROM contacts w, ok
    WHERE w.queue_id = ok.queue_id AND w.status = 'queued'
      AND w.deadline_at <= now() + make_interval(secs => ok.sl_target_s)
),
c AS (
    INSERT INTO contacts (id, queue_id, channel, status, customer_id, caller, tier, subject,
        language, enqueued_at, routing_started_at, deadline_at, announced_position)
    SELECT ok.contact_id, ok.queue_id, $14::text, 'queued', ok.customer_id, ok.caller, ok.tier,
        $15::text,
        ok.language, now(), now(), now() + make_interval(secs => ok.sl_target_s), ahead.n + 1
    FROM ok, ahead
    WHERE $4::text IS NULL OR EXISTS (SELECT FROM claim)
    RETURNING *
),
e AS (
    INSERT INTO events (type, subject_type, subject_id, data, actor)
    SELECT 'contact.queued', 'contact', c.id::text,
        jsonb_build_object('contact_id', c.id, 'queue_id', c.queue_id,
            'channel', c.channel, 'tier', c.tier, 'agent_id', NULL, 'wait_s', 0.0,
            'customer_id', c.customer_id),
        $17::text
    FROM c
),
t AS (
    INSERT INTO timers (kind, subject, due_at)
    SELECT '{MAX_WAIT}', c.id::text, c.enqueued_at + make_interval(secs => ok.max_wait_s)
    FROM c, ok WHERE ok.max_wait_s IS NOT NULL
)
SELECT f.*, c.id, c.status, c.channel, c.tier, c.customer_id AS contact_customer_id, c.subject,
    c.language, c.enqueued_at, c.deadline_at, c.announced_position,
    h.times AS handle_times,
    -- Staffing is only worth counting when there are handle times to spread over it.
    CASE WHEN cardinality(h.times) >= {estimate.MIN_SAMPLES} THEN
        (SELECT count(*) FROM agents a JOIN agent_channels ac ON ac.agent_id = a.id
         WHERE a.status = 'available' AND a.active AND ac.channel = c.channel
           AND ac.capacity > 0)
    ELSE 0 END AS staffed
FROM facts f
LEFT JOIN c ON true
LEFT JOIN LATERAL (
    SELECT array_agg(t) AS times FROM (
        SELECT extract(epoch FROM d.completed_at - d.answered_at)::float8 AS t
        FROM contacts d
        WHERE d.queue_id = c.queue_id AND d.completed_at IS NOT NULL
          AND d.answered_at IS NOT NULL
          AND d.completed_at > now() - interval '{_WINDOW_S} seconds'
        ORDER BY d.completed_at DESC LIMIT {estimate.RECENT_SAMPLES}) recent
) h ON c.id IS NOT NULL
"""

_PRIOR = "SELECT request_hash, resource_id FROM idempotency_keys WHERE scope = $1 AND key = $2"

# Transaction-scoped, so a commit or a rollback (or a lost connection) releases them. The
# function scan yields the keys in array order, so they are taken in that order.
_LOCK = "SELECT pg_advisory_xact_lock($1::int, k) FROM unnest($2::int[]) AS k"
QUEUE_LOCKS = 0x484C5141  # "HLQA": the class of the queues' admission locks (two-key form)
_KEYS = 2**31  # queue ids above this share keys: more waiting, never a wrong count


@dataclass(frozen=True, slots=True)
class Queued:
    """A contact just taken in, with what its caller is told."""

    contact: dict[str, Any]  # the columns ContactOut shows
    queue_name: str
    position: int
    wait: estimate.WaitEstimate
    wakes_timers: bool  # a max-wait timer is due before the worker would look


@dataclass(frozen=True, slots=True)
class Retried:
    """The key was used before, for the same request: the contact it created."""

    contact_id: int


def key_scope(agent_id: int) -> str:
    return f"{agent_id}:contacts"


async def warm(conn: asyncpg.Connection, settings: Settings) -> None:
    """Prepare and plan the intake statement on a new connection, by running it for an
    agent that cannot exist (ids start at 1): every fact is read, nothing is written."""
    nobody, nothing = TokenClaims(0, 0), ContactCreate(channel=Channel.chat, queue=0)
    await conn.fetchrow(_INTAKE, *_arguments(nobody, nothing, None, "", settings), [])
    await conn.execute(_LOCK, QUEUE_LOCKS, [])


async def take_in(
    db: DriverPool,
    *,
    claims: TokenClaims,
    data: ContactCreate,
    key: str | None,
    settings: Settings,
) -> Queued | Retried:
    """Queue a contact from any channel, with the customer's tier looked up (one statement)."""
    digest = ""  # a request without a key is never compared with another
    if key is not None:
        check_key(key)
        digest = fingerprint(data.model_dump(mode="json"))
    row = await _admit(db, _arguments(claims, data, key, digest, settings))
    retried = _refuse(row, claims=claims, data=data, key=key, digest=digest)
    if retried is not None:
        return retried
    if row["id"] is None:
        # A retry that raced the first request: the key is taken now, by a committed request.
        assert key is not None
        return await _retried(db, agent_id=claims.agent_id, key=key, digest=digest)
    return _queued(row)


async def _admit(db: DriverPool, arguments: tuple[Any, ...]) -> asyncpg.Record:
    """The intake statement's facts and contact: on its own while no queue on the way has a
    max length, else under the locks of every such queue (a new transaction each time the
    statement names a queue whose lock it lacked: the set only grows, so this ends)."""
    row = await db.fetchrow(_INTAKE, *arguments, [])
    assert row is not None  # the statement always returns its facts
    held: list[int] = []
    while row["locks"] is not None:
        held = sorted({*held, *row["locks"]})
        async with db.in_transaction() as conn:
            await conn.execute(_LOCK, QUEUE_LOCKS, sorted({i % _KEYS for i in held}))
            # READ COMMITTED: this statement's snapshot, taken after the locks, sees every
            # admission to these queues committed before.
            row = await conn.fetchrow(_INTAKE, *arguments, held)
    return row


def _arguments(
    claims: TokenClaims, data: ContactCreate, key: str | None, digest: str, settings: Settings
) -> tuple[Any, ...]:
    """The intake statement's parameters, in the order its comment gives."""
    default = settings.tiers[settings.default_tier]
    customer = data.customer
    return (
        claims.agent_id,
        claims.version,
        key_scope(claims.agent_id),
        key,
        data.queue if isinstance(data.queue, int) else None,
        data.queue if isinstance(data.queue, str) else None,
        customer.id if customer else None,
        customers.clean_phone(
            customer.phone, region=settings.default_phone_region, field="customer.phone"
        )
        if customer
        else None,
        list(settings.tiers),
        [float(t.sl_target_s) for t in settings.tiers.values()],
        settings.default_tier,
        float(default.sl_target_s),
        digest,
        data.channel.value,
        data.subject,
        data.language,
        f"agent:{claims.agent_id}",
    )


def _refuse(
    row: asyncpg.Record, *, claims: TokenClaims, data: ContactCreate, key: str | None, digest: str
) -> Retried | None:
    """Raise the first reason the statement wrote nothing, in the order clients expect; a
    retry of an earlier request is no refusal: it gets that request's contact."""
    identity = (
        Identity(
            claims.agent_id,
            row["username"],
            row["role"],
            row["site"],
            row["active"],
            row["token_version"],
        )
        if row["known"]
        else None
    )
    check_identity(claims, identity)
    if row["prior_hash"] is not None:
        if row["prior_hash"] != digest:
            assert key is not None
            raise key_reused(key)
        return Retried(row["prior_id"])
    if row["asked_id"] is None:
        raise UnknownQueue(data.queue)
    channel = data.channel.value
    if channel not in row["asked_channels"]:
        raise ChannelNotAccepted(row["asked_name"], channel, list(row["asked_channels"]))
    if data.customer is not None and data.customer.id is not None and row["customer_id"] is None:
        raise InvalidInput(
            f"customer.id: customer {data.customer.id} does not exist", field="customer"
        )
    if row["queue_id"] is None:
        raise QueueFull(row["full_name"], row["full_length"])
    if channel not in row["queue_channels"]:
        raise QueueFull(row["queue_name"], row["queue_max_length"] or 0)
    return None


async def _retried(db: DriverPool, *, agent_id: int, key: str, digest: str) -> Retried:
    prior = await db.fetchrow(_PRIOR, key_scope(agent_id), key)
    assert prior is not None, "a key that blocked the insert is committed"
    if prior["request_hash"] != digest:
        raise key_reused(key)
    return Retried(prior["resource_id"])


def _queued(row: asyncpg.Record) -> Queued:
    position = row["announced_position"] or 1
    wait = estimate.estimate_wait(position, row["handle_times"] or [], row["staffed"])
    contact = {
        "id": row["id"],
        "status": row["status"],
        "queue_id": row["queue_id"],
        "channel": row["channel"],
        "tier": row["tier"],
        "customer_id": row["contact_customer_id"],
        "subject": row["subject"],
        "language": row["language"],
        "enqueued_at": row["enqueued_at"],
        "deadline_at": row["deadline_at"],
    }
    max_wait = row["max_wait_s"]
    soon = datetime.now(UTC) + TIMER_WAKE_HORIZON
    wakes = max_wait is not None and row["enqueued_at"] + timedelta(seconds=max_wait) <= soon
    return Queued(contact, row["queue_name"], position, wait, wakes)
