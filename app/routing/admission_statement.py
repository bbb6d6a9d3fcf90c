"""The admission statement: one SQL statement that admits a contact to a queue.

Every way a contact enters a queue runs this statement (``admission`` says who calls it and
how); this module holds only its text and the order of its parameters. The statement:

1. reads the facts: the calling agent's sign-in (no agent for a system caller), whether the
   ``Idempotency-Key`` was used before, the queue asked for, the customer, the skills the
   contact requires that do not exist, and the queue the contact is admitted to (the one
   asked for or, while a queue is full, its overflow queue, never the same queue twice, and
   never a queue the caller excludes);
2. only when every fact allows it, claims the key, inserts the contact (its deadline is the
   enqueue time plus its tier's service-level target, unless it continues an earlier contact
   and keeps that one's enqueue time and deadline; its announced position counts the queued
   contacts of the queue that are due before it; it carries the skills it requires and
   names the channel whose key queued it, or the one its first contact's did), its
   ``contact.queued`` event and its max-wait timer, counted from its arrival in this queue;
3. returns the facts, the new contact and what its wait estimate needs (the queue's recent
   handle times and, when there are enough of them, the staffed agents).

A queue's max length is a count of its live contacts on the statement's snapshot, which
cannot see admissions that commit while it runs. So the statement writes nothing when a queue
it counted has a max length whose admission lock the caller does not hold, and names (in
``locks``) every queue with a max length that the overflow chain from the queue asked for can
reach; the caller takes those locks and runs it again (``admission._admit``).
"""

from __future__ import annotations

from app.routing import estimate
from app.routing.contacts import MAX_WAIT
from app.routing.events import ContactEventType

_WINDOW_S = int(estimate.RECENT_WINDOW.total_seconds())

# The parameters, in order (``admission._arguments`` builds them):
#  $1 agent id (NULL: a system caller), $2 token version, $3 key scope, $4 key (or NULL),
#  $5 queue id, $6 queue name, $7 customer id, $8 phone to find the customer by,
#  $9 tier names, $10 their SL targets, $11 default tier, $12 its target,
#  $13 request fingerprint, $14 channel, $15 subject, $16 language, $17 actor,
#  $18 caller number (NULL: the phone, else the customer's), $19 tier (NULL: the customer's),
#  $20 enqueue time and $21 deadline (NULL: now, and now plus the tier's target),
#  $22 parent contact (a continuation), $23 queues the overflow chain must not enter,
#  $24 the names and $25 the minimum levels of the skills the contact requires (in order),
#  $26 the channel (its API keys' name) that queued it, or the contact it continues,
#  $27 the queues whose admission locks the caller holds (last: it changes between runs).
STATEMENT = f"""
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
-- The skills the contact requires, as stored, and those of them that do not exist (none
-- required, the usual case: two empty arrays, no table read). A continuation's were checked
-- when its first contact was admitted: a transfer or an overflow is never refused for them.
needs AS (
    SELECT coalesce(jsonb_agg(jsonb_build_object('skill', n.skill, 'min_level', n.level)
            ORDER BY n.ord), '[]'::jsonb) AS skills,
        array_agg(n.skill ORDER BY n.ord) FILTER (WHERE $22::bigint IS NULL
            AND NOT EXISTS (SELECT FROM skills k WHERE k.name = n.skill)) AS unknown
    FROM unnest($24::text[], $25::int[]) WITH ORDINALITY AS n(skill, level, ord)
),
-- The queue asked for and, while a queue is full, its overflow queue (never one twice).
chain AS (
    SELECT q.id, q.overflow_queue_id, q.max_length, 1 AS depth, ARRAY[q.id] || $23::bigint[]
            AS path,
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
    SELECT q.id, q.overflow_queue_id, q.max_length, ARRAY[q.id] || $23::bigint[] AS path
    FROM queues q JOIN asked ON asked.id = q.id
    UNION ALL
    SELECT o.id, o.overflow_queue_id, o.max_length, r.path || o.id
    FROM reach r JOIN queues o ON o.id = r.overflow_queue_id
    WHERE r.max_length IS NOT NULL AND o.id <> ALL(r.path)
),
-- NULL when the caller holds the lock ($27) of every limited queue the chain counted; else
-- the limited queues to lock before counting again.
locks AS (
    SELECT CASE WHEN EXISTS (
        SELECT FROM chain WHERE chain.max_length IS NOT NULL AND chain.id <> ALL($27::bigint[])
    ) THEN (SELECT array_agg(id ORDER BY id) FROM reach WHERE max_length IS NOT NULL)
    END AS ids
),
-- Share-locked: a change of the queue's max wait in flight is waited for and read (see
-- ``app.routing.admission``, "A max wait changed meanwhile").
admitted AS (
    SELECT q.id, q.name, q.channels, q.max_length, q.max_wait_s
    FROM queues q WHERE q.id = (SELECT id FROM chain WHERE NOT is_full ORDER BY depth LIMIT 1)
    FOR SHARE OF q
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
        locks.ids AS locks, needs.skills AS needs, needs.unknown AS unknown_skills
    FROM (SELECT) one
    LEFT JOIN who ON true LEFT JOIN prior ON true LEFT JOIN asked ON true
    LEFT JOIN customer ON true LEFT JOIN admitted ON true LEFT JOIN last_full ON true
    LEFT JOIN locks ON true LEFT JOIN needs ON true
),
ok AS (
    SELECT f.queue_id, f.max_wait_s, f.customer_id, f.needs, tier.name AS tier,
        coalesce($16::text, f.customer_language) AS language,
        coalesce($18::text, $8::text, f.customer_phone) AS caller,
        coalesce($20::timestamptz, now()) AS enqueued_at,
        coalesce(
            $21::timestamptz,
            now() + make_interval(secs => coalesce(
                (SELECT t.target FROM unnest($9::text[], $10::float8[]) AS t(name, target)
                 WHERE t.name = tier.name),
                $12::float8
            ))
        ) AS deadline_at,
        nextval(pg_get_serial_sequence('contacts', 'id')) AS contact_id
    FROM facts f, LATERAL (SELECT coalesce($19::text, f.customer_tier, $11::text) AS name) tier
    WHERE ($1::bigint IS NULL OR (f.active AND f.token_version = $2::int))
      AND f.prior_hash IS NULL
      AND $14::text = ANY(f.asked_channels) AND $14::text = ANY(f.queue_channels)
      AND ($7::bigint IS NULL OR f.customer_id IS NOT NULL) AND f.locks IS NULL
      AND f.unknown_skills IS NULL
),
claim AS (
    INSERT INTO idempotency_keys (scope, key, request_hash, status_code, resource_id)
    SELECT $3::text, $4::text, $13::text, 201, ok.contact_id FROM ok WHERE $4::text IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING resource_id
),
ahead AS (
    SELECT count(*) AS n FROM contacts w, ok
    WHERE w.queue_id = ok.queue_id AND w.status = 'queued' AND w.deadline_at <= ok.deadline_at
),
c AS (
    INSERT INTO contacts (id, queue_id, channel, status, customer_id, caller, tier, subject,
        language, enqueued_at, routing_started_at, deadline_at, announced_position, parent_id,
        skills, integration)
    SELECT ok.contact_id, ok.queue_id, $14::text, 'queued', ok.customer_id, ok.caller, ok.tier,
        $15::text, ok.language, ok.enqueued_at, now(), ok.deadline_at, ahead.n + 1,
        $22::bigint, ok.needs, $26::text
    FROM ok, ahead
    WHERE $4::text IS NULL OR EXISTS (SELECT FROM claim)
    RETURNING *
),
e AS (
    INSERT INTO events (type, subject_type, subject_id, data, actor)
    SELECT '{ContactEventType.QUEUED}', 'contact', c.id::text,
        jsonb_build_object('contact_id', c.id, 'queue_id', c.queue_id,
            'channel', c.channel, 'tier', c.tier, 'agent_id', NULL,
            'wait_s', round(extract(epoch FROM greatest(now() - c.enqueued_at,
                interval '0'))::numeric, 3)::float8,
            'customer_id', c.customer_id, 'parent_id', c.parent_id, 'skills', c.skills),
        $17::text
    FROM c
),
t AS (
    INSERT INTO timers (kind, subject, due_at)
    SELECT '{MAX_WAIT}', c.id::text, c.routing_started_at + make_interval(secs => ok.max_wait_s)
    FROM c, ok WHERE ok.max_wait_s IS NOT NULL
)
SELECT f.*, c.id, c.status, c.channel, c.tier, c.customer_id AS contact_customer_id, c.subject,
    c.language, c.skills, c.enqueued_at, c.routing_started_at, c.deadline_at,
    c.announced_position,
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

# Transaction-scoped, so a commit or a rollback (or a lost connection) releases them. The
# function scan yields the keys in array order, so they are taken in that order.
LOCK = "SELECT pg_advisory_xact_lock($1::int, k) FROM unnest($2::int[]) AS k"
QUEUE_LOCKS = 0x484C5141  # "HLQA": the class of the queues' admission locks (two-key form)
KEYS = 2**31  # queue ids above this share keys: more waiting, never a wrong count

PRIOR = "SELECT request_hash, resource_id FROM idempotency_keys WHERE scope = $1 AND key = $2"
