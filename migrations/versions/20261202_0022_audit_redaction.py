"""audit redaction: anonymisation may remove an audit entry's content; the chains re-sealed

``complaint_audit.content_sha256`` holds the digest of a redacted entry's reason and data
(null while it keeps them), and the append-only trigger lets exactly one UPDATE through:
anonymisation's redaction of an entry of an anonymised complaint (content emptied, its
digest stored, nothing else changed).

This migration re-seals the chain: every stored entry's hash is recomputed in the new
scheme (the hash covers the content through its digest, ``app/complaints/chain.py``) and
each complaint's ``audit_hash`` moves to the new head. A chain is re-sealed only as far as
it verifies under the old rule: a chain broken before the migration keeps its entries from
the break on (and its head) as they were, so it stays broken at the same entry. Both rules
are frozen here, so a later change to the chain module cannot change what this did.

The downgrade re-seals the chains in the old scheme, and refuses if any entry is redacted:
the old scheme hashed the content itself, which is gone.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02 23:30:00.000000+00:00
"""

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64
SEALED = ("complaint_id", "seq", "at", "actor", "action", "before", "after")
CONTENT = ("reason", "data")
BATCH = 500

Rule = Callable[[str, Mapping[str, Any]], str]

_REDACTABLE_FUNCTION = """
CREATE OR REPLACE FUNCTION complaint_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The one change allowed: anonymisation empties an entry's content, keeps its digest.
    IF TG_OP = 'UPDATE' THEN
        IF OLD.content_sha256 IS NULL AND NEW.content_sha256 IS NOT NULL
            AND NEW.reason IS NULL AND NEW.data = '{}'::jsonb
            AND (NEW.complaint_id, NEW.seq, NEW.at, NEW.actor, NEW.action, NEW.prev_hash,
                 NEW.hash)
                = (OLD.complaint_id, OLD.seq, OLD.at, OLD.actor, OLD.action, OLD.prev_hash,
                   OLD.hash)
            AND NEW.before IS NOT DISTINCT FROM OLD.before
            AND NEW.after IS NOT DISTINCT FROM OLD.after
            AND EXISTS (SELECT 1 FROM complaints
                        WHERE id = NEW.complaint_id AND anonymised_at IS NOT NULL)
        THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'complaint_audit is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""
_APPEND_ONLY_FUNCTION = """
CREATE OR REPLACE FUNCTION complaint_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'complaint_audit is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


# --- the two rules, frozen -------------------------------------------------------------------


def _plain(value: object) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    raise TypeError(f"{type(value).__name__} has no canonical JSON form")


def _sha256(value: object) -> str:
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def old_hash(previous_hash: str, entry: Mapping[str, Any]) -> str:
    """Before 0022: the hash covers the content itself."""
    return _sha256({**{n: entry[n] for n in (*SEALED, *CONTENT)}, "prev_hash": previous_hash})


def new_hash(previous_hash: str, entry: Mapping[str, Any]) -> str:
    """From 0022: the hash covers the content through its digest (never redacted here)."""
    digest = _sha256({n: entry[n] for n in CONTENT})
    sealed = {n: entry[n] for n in SEALED}
    return _sha256({**sealed, "content_sha256": digest, "prev_hash": previous_hash})


def resealed(
    entries: Sequence[Mapping[str, Any]], head: str | None, *, checked: Rule, sealed: Rule
) -> tuple[list[dict[str, Any]], str | None]:
    """The new ``prev_hash`` and ``hash`` of each entry (by ``seq``) as far as the chain
    verifies under ``checked``, and the new head (the old one if the chain is broken)."""
    previous, previous_sealed = GENESIS, GENESIS
    changes: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        if (entry["seq"], entry["prev_hash"], entry["hash"]) != (
            index + 1,
            previous,
            checked(previous, entry),
        ):
            return changes, head
        fresh = sealed(previous_sealed, entry)
        changes.append({"seq": entry["seq"], "prev_hash": previous_sealed, "hash": fresh})
        previous, previous_sealed = entry["hash"], fresh
    return changes, previous_sealed if head == previous else head


# --- the stored chains -----------------------------------------------------------------------

_ENTRIES = (
    sa.text(
        "SELECT complaint_id, seq, at, actor, action, before, after, reason, data, prev_hash, "
        "hash FROM complaint_audit WHERE complaint_id = ANY(:ids) ORDER BY complaint_id, seq"
    )
    .bindparams(sa.bindparam("ids", type_=postgresql.ARRAY(sa.BigInteger())))
    .columns(at=sa.DateTime(timezone=True), data=postgresql.JSONB())
)
_SET_ENTRY = sa.text(
    "UPDATE complaint_audit SET prev_hash = :prev_hash, hash = :hash "
    "WHERE complaint_id = :complaint_id AND seq = :seq"
)
_SET_HEAD = sa.text("UPDATE complaints SET audit_hash = :head WHERE id = :id")


def _batches(bind: sa.Connection) -> Iterable[list[tuple[int, str | None]]]:
    after = 0
    while True:
        heads = bind.execute(
            sa.text("SELECT id, audit_hash FROM complaints WHERE id > :after ORDER BY id LIMIT :n"),
            {"after": after, "n": BATCH},
        ).all()
        if not heads:
            return
        yield [(int(i), h) for i, h in heads]
        after = int(heads[-1][0])


def _reseal_batch(
    bind: sa.Connection, heads: list[tuple[int, str | None]], checked: Rule, sealed: Rule
) -> None:
    trails: dict[int, list[Mapping[str, Any]]] = {i: [] for i, _ in heads}
    for entry in bind.execute(_ENTRIES, {"ids": list(trails)}).mappings():
        trails[entry["complaint_id"]].append(dict(entry))
    for complaint_id, head in heads:
        changes, new_head = resealed(trails[complaint_id], head, checked=checked, sealed=sealed)
        if changes:
            bind.execute(_SET_ENTRY, [{**c, "complaint_id": complaint_id} for c in changes])
        if new_head != head:
            bind.execute(_SET_HEAD, {"head": new_head, "id": complaint_id})


def _reseal(checked: Rule, sealed: Rule) -> None:
    bind = op.get_bind()
    op.execute("ALTER TABLE complaint_audit DISABLE TRIGGER complaint_audit_append_only")
    for heads in _batches(bind):
        _reseal_batch(bind, heads, checked, sealed)
    op.execute("ALTER TABLE complaint_audit ENABLE TRIGGER complaint_audit_append_only")


def upgrade() -> None:
    op.add_column(
        "complaint_audit",
        sa.Column(
            "content_sha256",
            sa.String(length=64),
            nullable=True,
            comment="redacted: the digest of the reason and data removed; null while they are kept",
        ),
    )
    _reseal(old_hash, new_hash)
    op.execute(_REDACTABLE_FUNCTION)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.scalar(
        sa.text("SELECT count(*) FROM complaint_audit WHERE content_sha256 IS NOT NULL")
    ):
        raise RuntimeError(
            "complaint_audit holds redacted entries: the old scheme hashed their content, "
            "which anonymisation removed, so their chains cannot be re-sealed in it"
        )
    op.execute(_APPEND_ONLY_FUNCTION)
    _reseal(new_hash, old_hash)
    op.drop_column("complaint_audit", "content_sha256")
