"""The registration statements: a new complaint in two statements on the driver.

Every registration runs these (``service.register`` on a session's connection,
``service.register_new`` on the driver pool, in a transaction of its own); this module holds
only their text and the order of their parameters. In one transaction:

1. ``LOCK`` (only for a registration that names a customer): the customer's
   transaction-scoped advisory lock, the one the linking path has always taken, so two
   registrations of one customer run one after the other. It is a statement of its own: a
   READ COMMITTED statement reads the snapshot taken when it starts, so the facts must be
   read by the next statement, after the lock, to see a registration that committed while
   this one waited.
2. ``FACTS`` reads what the registration needs to know: whether the ``Idempotency-Key`` was
   used before (and the answer stored for it), the customer (its tier and language for the
   clocks and the notice), whether the contact exists, and the customer's open complaints
   (the newest 50: what the same-matter check compares, in Python, since its similarity is
   difflib's). Only when every fact allows a new complaint and there is no open complaint to
   compare with does it also take the complaint's id and reference number from their
   sequences; a registration that might be linked takes them later (``NUMBERS``), once
   Python has found no match, so linking never spends a reference number.
3. ``WRITE`` writes what Python computed from those facts (the row, its clocks and their
   due times, the first hash-chained audit entry, which needs the id and the reference
   first, the ``complaint.registered`` event, each running clock's first alert timer, the
   notice) and, for a request with a key, claims the key with the answer to give its
   retries. Nothing is written unless the claim succeeds: a retry that raced the first
   request finds the key taken when the first commits, writes nothing, and is answered from
   the stored answer (``PRIOR``).

JSON values travel as text and are cast in SQL, so the statements read and write the same
on a session's connection (whose codecs SQLAlchemy sets) and on the driver pool's.
"""

from __future__ import annotations

from typing import Final

from app.complaints.deadlines import KIND as CLOCK_TIMER
from app.complaints.events import SUBJECT, ComplaintEventType

LOCK_KEY_PREFIX: Final = "complaints:customer:"
"""The customer's lock is on this prefix and the customer's id (the key the linking path
has always used): ``LOCK`` and ``begin_locked`` must take the same one."""

LOCK: Final = f"SELECT pg_advisory_xact_lock(hashtextextended('{LOCK_KEY_PREFIX}' || $1::text, 0))"
"""$1 the customer's id (as text)."""


def begin_locked(customer_id: int) -> str:
    """``BEGIN`` and ``LOCK`` for ``customer_id`` as one message (``DriverPool.in_transaction``):
    the id is an integer, written into the text as one."""
    key = f"{LOCK_KEY_PREFIX}{int(customer_id)}"
    return f"BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('{key}', 0))"


# $1 key scope, $2 key (NULL: none), $3 customer id, $4 contact id, $5 the open statuses.
FACTS: Final = """
WITH prior AS (
    SELECT request_hash, status_code, response::text AS response FROM idempotency_keys
    WHERE scope = $1::text AND key = $2::text
),
customer AS (SELECT id, tier, language FROM customers WHERE id = $3::bigint),
contact AS (SELECT id FROM contacts WHERE id = $4::bigint),
candidates AS (
    SELECT id, branch, occurred_at, description FROM complaints
    WHERE customer_id = $3::bigint AND status = ANY($5::text[])
    ORDER BY id DESC LIMIT 50
),
open AS (
    SELECT array_agg(id ORDER BY id DESC) AS ids,
        array_agg(branch ORDER BY id DESC) AS branches,
        array_agg(occurred_at ORDER BY id DESC) AS occurred,
        array_agg(description ORDER BY id DESC) AS descriptions
    FROM candidates
),
facts AS (
    SELECT prior.request_hash AS prior_hash, prior.status_code AS prior_status,
        prior.response AS prior_response, customer.id AS customer_id,
        customer.tier AS customer_tier, customer.language AS customer_language,
        contact.id IS NOT NULL AS contact_found, open.ids AS open_ids, open.branches,
        open.occurred, open.descriptions
    FROM (SELECT) one
    LEFT JOIN prior ON true LEFT JOIN customer ON true LEFT JOIN contact ON true
    LEFT JOIN open ON true
)
SELECT facts.*, numbers.complaint_id, numbers.number
FROM facts LEFT JOIN LATERAL (
    SELECT nextval(pg_get_serial_sequence('complaints', 'id')) AS complaint_id,
        nextval('complaint_reference_seq') AS number
    WHERE facts.prior_hash IS NULL
      AND ($3::bigint IS NULL OR facts.customer_id IS NOT NULL)
      AND ($4::bigint IS NULL OR facts.contact_found)
      AND facts.open_ids IS NULL
) numbers ON true
"""

NUMBERS: Final = """
SELECT nextval(pg_get_serial_sequence('complaints', 'id')) AS complaint_id,
    nextval('complaint_reference_seq') AS number
"""

# The parameters, in order (``service._write_arguments`` builds them):
#  $1 key scope, $2 key (NULL: none), $3 request fingerprint, $4 the answer (JSON text),
#  $5..$25 the complaint: id, reference, status, channel, customer id, complainant name,
#  contact and relation, occurred at, location, branch, description, grounds, request,
#  contact id, escalation level, actor (who registered it), registered at (the desk's now),
#  due at, the audit head's seq and hash; $26 its search vector (a tsvector literal);
#  $27 clock kinds, $28 their policies (JSON text), $29 their stops, $30 their due times;
#  $31 the audit entry's action, $32 before, $33 after, $34 reason, $35 data (JSON text),
#  $36 previous hash; $37 the event's data (JSON text);
#  $38 the kinds of the clocks with a timer, $39 its due time, $40 its payload (JSON text);
#  $41 the notice's channel (NULL: no notice), $42 recipient, $43 kind, $44 subject,
#  $45 body, $46 language, $47 dedupe key.
WRITE: Final = f"""
WITH claim AS (
    INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response)
    SELECT $1::text, $2::text, $3::text, 201, $4::text::jsonb WHERE $2::text IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING key
),
c AS (
    INSERT INTO complaints (id, reference, status, channel, customer_id, complainant_name,
        complainant_contact, complainant_relation, occurred_at, location, branch, description,
        grounds, request, contact_id, categories, escalation_level, registered_by,
        registered_at, due_at, facts, linked, audit_seq, audit_hash, search)
    SELECT $5::bigint, $6::text, $7::text, $8::text, $9::bigint, $10::text, $11::text,
        $12::text, $13::timestamptz, $14::text, $15::text, $16::text, $17::text, $18::text,
        $19::bigint, '{{}}', $20::text, $21::text, $22::timestamptz, $23::timestamptz,
        '{{}}'::jsonb, '[]'::jsonb, $24::int, $25::text, $26::text::tsvector
    WHERE $2::text IS NULL OR EXISTS (SELECT FROM claim)
    RETURNING id
),
k AS (
    INSERT INTO complaint_clocks (complaint_id, kind, policy, started_at, stopped_at, pauses,
        extensions, due_at)
    SELECT c.id, x.kind, x.policy::jsonb, $22::timestamptz, x.stopped_at, '[]', '[]', x.due_at
    FROM c, unnest($27::text[], $28::text[], $29::timestamptz[], $30::timestamptz[])
        WITH ORDINALITY AS x(kind, policy, stopped_at, due_at, n)
    ORDER BY x.n
    RETURNING id, kind
),
a AS (
    INSERT INTO complaint_audit (complaint_id, seq, at, actor, action, before, after, reason,
        data, prev_hash, hash)
    SELECT c.id, $24::int, $22::timestamptz, $21::text, $31::text, $32::text, $33::text,
        $34::text, $35::text::jsonb, $36::text, $25::text
    FROM c
),
e AS (
    INSERT INTO events (type, subject_type, subject_id, data, actor)
    SELECT '{ComplaintEventType.REGISTERED}', '{SUBJECT}', c.id::text, $37::text::jsonb,
        $21::text
    FROM c
),
t AS (
    INSERT INTO timers (kind, subject, due_at, payload)
    SELECT '{CLOCK_TIMER}', k.id::text, x.due_at, x.payload::jsonb
    FROM k JOIN unnest($38::text[], $39::timestamptz[], $40::text[]) AS x(kind, due_at, payload)
        ON x.kind = k.kind
    ON CONFLICT ON CONSTRAINT uq_timers_kind_subject DO UPDATE
    SET due_at = excluded.due_at, payload = excluded.payload, attempts = 0,
        last_error = NULL, failed_at = NULL
),
n AS (
    INSERT INTO notifications (channel, recipient, kind, subject, body, language,
        subject_type, subject_id, dedupe_key, status, next_attempt_at)
    SELECT $41::text, $42::text, $43::text, $44::text, $45::text, $46::text, '{SUBJECT}',
        c.id::text, $47::text, 'queued', now()
    FROM c WHERE $41::text IS NOT NULL
    ON CONFLICT ON CONSTRAINT uq_notifications_subject_type_subject_id_kind_dedupe_key
    DO NOTHING
)
SELECT c.id, (SELECT array_agg(k.kind) FROM k) AS clock_kinds,
    (SELECT array_agg(k.id) FROM k) AS clock_ids
FROM (SELECT) one LEFT JOIN c ON true
"""

PRIOR: Final = (
    "SELECT request_hash, status_code, response::text AS response FROM idempotency_keys "
    "WHERE scope = $1 AND key = $2"
)
