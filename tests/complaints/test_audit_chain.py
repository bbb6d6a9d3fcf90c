"""The audit trail's hash chain: the pure rule (``app.complaints.chain``: content sealed
through its digest, redaction valid only before an anonymisation entry), the migration that
re-sealed stored chains in it, and the stored trail, whose verification names the first
entry altered, deleted or blanked behind the append-only trigger's back (by a superuser who
disables it). Anonymised trails are tested with retention (``test_retention.py``)."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.complaints.chain import (
    GENESIS,
    REDACTING_ACTION,
    canonical,
    content_digest,
    entry_hash,
    link,
    redact,
    verify,
)
from app.db import plain_url
from tests.complaints.test_registration import (
    COMPLAINTS,
    app,
    clock,
    complaint_body,
    engine,
    register,
)
from tests.fixtures.factories import Api, expect

__all__ = ["app", "clock", "engine"]  # fixtures shared with the registration tests

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def chain_of(length: int, complaint_id: int = 7) -> list[dict[str, Any]]:
    """A valid chain of ``length`` entries."""
    entries: list[dict[str, Any]] = []
    previous = GENESIS
    for seq in range(1, length + 1):
        entry = {
            "complaint_id": complaint_id,
            "seq": seq,
            "at": AT + timedelta(minutes=seq),
            "actor": f"agent:{seq}",
            "action": "classify",
            "before": "registered",
            "after": "classified",
            "reason": None,
            "data": {"facts": {"categories": ["payment", "信用卡"]}, "n": seq},
        }
        linked = link(previous, entry)
        entries.append(linked)
        previous = linked["hash"]
    return entries


class TestEntryHash:
    def test_key_order_and_time_zone_do_not_change_the_hash(self) -> None:
        [entry] = chain_of(1)
        shanghai = timezone(timedelta(hours=8))
        shuffled = dict(reversed(list(entry.items())))
        shuffled["at"] = entry["at"].astimezone(shanghai)
        assert entry_hash(GENESIS, shuffled) == entry["hash"]

    def test_the_hash_commits_to_the_previous_hash(self) -> None:
        [entry] = chain_of(1)
        assert entry_hash("f" * 64, entry) != entry["hash"]

    def test_canonical_json_is_sorted_and_compact(self) -> None:
        assert canonical({"b": 1, "a": [AT, "扣款"]}) == (
            '{"a":["2026-12-01T09:00:00.000000+00:00","扣款"],"b":1}'.encode()
        )

    def test_a_naive_timestamp_is_refused(self) -> None:
        with pytest.raises(ValueError, match="time zone"):
            canonical({"at": datetime(2026, 12, 1)})


class TestVerify:
    def test_an_intact_chain_verifies(self) -> None:
        entries = chain_of(5)
        assert verify(entries) is None
        assert verify(entries, head_hash=entries[-1]["hash"]) is None
        assert verify([]) is None

    @given(
        length=st.integers(1, 8),
        data=st.data(),
        field=st.sampled_from(
            ["complaint_id", "at", "actor", "action", "before", "after", "reason", "data"]
        ),
    )
    def test_any_altered_field_is_found_where_it_is(
        self, length: int, data: st.DataObject, field: str
    ) -> None:
        entries = chain_of(length)
        index = data.draw(st.integers(0, length - 1))
        entries[index] = {**entries[index], field: _other(entries[index][field])}
        assert verify(entries) == index

    @given(length=st.integers(2, 8), data=st.data())
    def test_a_deleted_entry_is_found_where_it_was(self, length: int, data: st.DataObject) -> None:
        entries = chain_of(length)
        index = data.draw(st.integers(0, length - 2))
        del entries[index]
        assert verify(entries) == index

    def test_a_deleted_last_entry_is_found_against_the_head(self) -> None:
        entries = chain_of(4)
        head = entries[-1]["hash"]
        assert verify(entries[:-1]) is None  # the chain alone cannot see its tail go
        assert verify(entries[:-1], head_hash=head) == 3

    def test_reordered_entries_are_found(self) -> None:
        entries = chain_of(4)
        entries[1], entries[2] = entries[2], entries[1]
        assert verify(entries) == 1

    def test_renumbered_entries_are_found(self) -> None:
        entries = chain_of(4)
        entries[1], entries[2] = {**entries[2], "seq": 2}, {**entries[1], "seq": 3}
        assert verify(entries) == 1

    def test_an_entry_rewritten_with_a_fresh_hash_breaks_the_next_link(self) -> None:
        entries = chain_of(4)
        forged = {**entries[1], "reason": "never happened"}
        entries[1] = link(entries[0]["hash"], forged)
        assert verify(entries) == 2


def anonymised_chain(length: int) -> list[dict[str, Any]]:
    """A chain of ``length`` entries with free text, then the anonymisation entry, every
    entry before it redacted."""
    entries = chain_of(length)
    for entry in entries:
        entry["reason"] = f"王芳 {entry['seq']}"
    entries = _relinked(entries)
    record = {**entries[-1], "seq": length + 1, "action": REDACTING_ACTION, "reason": None}
    entries.append(link(entries[-1]["hash"], {**record, "data": {"notes": 0}}))
    return [redact(e) for e in entries[:-1]] + entries[-1:]


def _relinked(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    linked, previous = [], GENESIS
    for entry in entries:
        linked.append(link(previous, entry))
        previous = linked[-1]["hash"]
    return linked


class TestRedaction:
    def test_redacting_keeps_the_hash_and_removes_the_content(self) -> None:
        [entry] = chain_of(1)
        redacted = redact(entry)
        assert (redacted["reason"], redacted["data"]) == (None, {})
        assert redacted["content_sha256"] == content_digest(entry)
        assert entry_hash(GENESIS, redacted) == entry["hash"]

    def test_a_redacted_chain_verifies_with_its_anonymisation_entry(self) -> None:
        entries = anonymised_chain(4)
        assert verify(entries, head_hash=entries[-1]["hash"]) is None
        assert all(e["reason"] is None for e in entries)

    @pytest.mark.parametrize("index", [0, 2])
    def test_a_redaction_without_an_anonymisation_entry_is_found(self, index: int) -> None:
        entries = chain_of(4)
        entries[index] = redact(entries[index])
        assert verify(entries) == index

    def test_a_redaction_after_the_anonymisation_entry_is_found(self) -> None:
        entries = anonymised_chain(3)
        entries.append(link(entries[-1]["hash"], {**chain_of(5)[4], "seq": 5}))
        assert verify(entries) is None
        entries[4] = redact(entries[4])
        assert verify(entries) == 4

    def test_removing_the_anonymisation_entry_names_the_first_redacted_entry(self) -> None:
        entries = anonymised_chain(3)
        assert verify(entries[:-1]) == 0

    @pytest.mark.parametrize(
        "change",
        [
            {"content_sha256": "c" * 64},  # an altered digest
            {"reason": "王芳"},  # text put back where nothing vouches for it
            {"data": {"facts": {"reason": "王芳"}}},
            {"content_sha256": None},  # an un-redacted entry: empty content, other digest
            {"actor": "agent:999"},
        ],
    )
    def test_an_altered_redacted_entry_is_found(self, change: dict[str, Any]) -> None:
        entries = anonymised_chain(4)
        entries[1] = {**entries[1], **change}
        assert verify(entries) == 1

    def test_an_altered_anonymisation_entry_is_found(self) -> None:
        entries = anonymised_chain(3)
        entries[3] = {**entries[3], "data": {"notes": 9}}
        assert verify(entries) == 3


def _other(value: Any) -> Any:
    if isinstance(value, datetime):
        return value + timedelta(microseconds=1)
    if isinstance(value, int):
        return value + 1
    if isinstance(value, dict):
        return {**value, "tampered": True}
    return f"{value}!"


# --- the migration that re-sealed the stored chains -----------------------------------------


def _migration() -> ModuleType:
    [path] = Path(__file__).parents[2].glob("migrations/versions/*_0022_audit_redaction.py")
    spec = importlib.util.spec_from_file_location("audit_redaction", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def old_chain(length: int, old_hash: Any) -> list[dict[str, Any]]:
    """``chain_of(length)`` as it was sealed before the migration."""
    entries, previous = [], GENESIS
    for entry in chain_of(length):
        entries.append({**entry, "prev_hash": previous, "hash": old_hash(previous, entry)})
        previous = entries[-1]["hash"]
    return entries


def migrated(
    entries: list[dict[str, Any]], head: str | None, migration: ModuleType
) -> tuple[list[dict[str, Any]], str | None]:
    changes, new_head = migration.resealed(
        entries, head, checked=migration.old_hash, sealed=migration.new_hash
    )
    by_seq = {c["seq"]: c for c in changes}
    return [{**e, **by_seq.get(e["seq"], {})} for e in entries], new_head


@pytest.fixture
def migration() -> ModuleType:
    return _migration()


class TestTheMigration:
    def test_the_old_rule_is_the_one_the_chains_were_sealed_with(
        self, migration: ModuleType
    ) -> None:
        # Hashes the old chain module gave these entries (hard-coded: the rule is history).
        entries = old_chain(2, migration.old_hash)
        assert [e["hash"][:12] for e in entries] == ["15a04d0214e7", "22d803b08051"]

    def test_an_intact_chain_is_resealed_and_verifies(self, migration: ModuleType) -> None:
        entries = old_chain(5, migration.old_hash)
        assert verify(entries) == 0  # the new rule refuses the old seal
        resealed, head = migrated(entries, entries[-1]["hash"], migration)
        assert verify(resealed, head_hash=head) is None
        assert resealed == chain_of(5)

    @pytest.mark.parametrize("index", [0, 2, 4])
    def test_a_chain_broken_before_stays_broken_at_the_same_entry(
        self, migration: ModuleType, index: int
    ) -> None:
        entries = old_chain(5, migration.old_hash)
        entries[index] = {**entries[index], "reason": "tampered"}
        resealed, head = migrated(entries, entries[-1]["hash"], migration)
        assert verify(resealed, head_hash=head) == index

    def test_a_chain_missing_its_tail_stays_short_of_its_head(self, migration: ModuleType) -> None:
        entries = old_chain(5, migration.old_hash)
        resealed, head = migrated(entries[:-1], entries[-1]["hash"], migration)
        assert verify(resealed, head_hash=head) == 4

    def test_the_downgrade_reseals_in_the_old_rule(self, migration: ModuleType) -> None:
        changes, head = migration.resealed(
            chain_of(3),
            chain_of(3)[-1]["hash"],
            checked=migration.new_hash,
            sealed=migration.old_hash,
        )
        assert [c["hash"] for c in changes] == [e["hash"] for e in old_chain(3, migration.old_hash)]
        assert head == changes[-1]["hash"]


# --- the stored trail ---------------------------------------------------------------------


@pytest.fixture
async def superuser(db: str) -> AsyncIterator[asyncpg.Connection]:
    """A superuser's own connection to the test database."""
    conn = await asyncpg.connect(plain_url(db))
    try:
        yield conn
    finally:
        await conn.close()


async def behind_the_trigger(conn: asyncpg.Connection, sql: str, *args: Any) -> None:
    """Run ``sql`` with the append-only trigger disabled, then enable it again."""
    async with conn.transaction():
        await conn.execute(
            "ALTER TABLE complaint_audit DISABLE TRIGGER complaint_audit_append_only"
        )
        await conn.execute(sql, *args)
        await conn.execute("ALTER TABLE complaint_audit ENABLE TRIGGER complaint_audit_append_only")


@pytest.fixture
async def handled(api: Api) -> dict[str, Any]:
    """A complaint with five audit entries."""
    agent = await api.agent()
    done = await register(api, complaint_body())
    cid = done["id"]
    for verb, facts in (
        ("classify", {"categories": ["payment"], "severity": "high"}),
        ("assign", {"assignee": agent["id"]}),
        ("start", None),
        ("pause", {"reason": "external_appraisal"}),
    ):
        expect(await api.post(f"{COMPLAINTS}/{cid}/{verb}", facts), 200)
    return done  # type: ignore[no-any-return]


async def audit(api: Api, complaint_id: int) -> dict[str, Any]:
    return expect(await api.get(f"{COMPLAINTS}/{complaint_id}/audit"), 200)  # type: ignore[no-any-return]


ALTERATIONS = {
    "at": "at = at + interval '1 second'",
    "actor": "actor = 'agent:999'",
    "action": "action = 'resolve'",
    "before": "before = 'paused'",
    "after": "after = 'resolved'",
    "reason": "reason = 'tampered'",
    "data": "data = data || '{\"tampered\": true}'",
    "prev_hash": "prev_hash = repeat('a', 64)",
    "hash": "hash = repeat('b', 64)",
}


class TestTheStoredTrail:
    async def test_an_untouched_trail_verifies(self, api: Api, handled: dict[str, Any]) -> None:
        trail = await audit(api, handled["id"])
        assert (trail["verified"], trail["first_bad_seq"]) == (True, None)
        assert [e["action"] for e in trail["entries"]] == [
            "registered",
            "classify",
            "assign",
            "start",
            "pause",
        ]

    @pytest.mark.parametrize("column", sorted(ALTERATIONS))
    @pytest.mark.parametrize("seq", [1, 3, 5])
    async def test_altering_any_stored_entry_fails_verification_naming_it(
        self,
        api: Api,
        handled: dict[str, Any],
        superuser: asyncpg.Connection,
        column: str,
        seq: int,
    ) -> None:
        sql = (
            f"UPDATE complaint_audit SET {ALTERATIONS[column]} WHERE complaint_id = $1 AND seq = $2"
        )
        await behind_the_trigger(superuser, sql, handled["id"], seq)
        trail = await audit(api, handled["id"])
        assert (trail["verified"], trail["first_bad_seq"]) == (False, seq)

    @pytest.mark.parametrize("seq", [1, 3, 5])
    async def test_deleting_an_entry_fails_verification_naming_it(
        self, api: Api, handled: dict[str, Any], superuser: asyncpg.Connection, seq: int
    ) -> None:
        sql = "DELETE FROM complaint_audit WHERE complaint_id = $1 AND seq = $2"
        await behind_the_trigger(superuser, sql, handled["id"], seq)
        trail = await audit(api, handled["id"])
        assert (trail["verified"], trail["first_bad_seq"]) == (False, seq)
        assert len(trail["entries"]) == 4

    async def test_another_complaints_trail_is_untouched(
        self, api: Api, handled: dict[str, Any], superuser: asyncpg.Connection
    ) -> None:
        other = await register(api, complaint_body(channel="letter"))
        sql = "UPDATE complaint_audit SET reason = 'x' WHERE complaint_id = $1 AND seq = 2"
        await behind_the_trigger(superuser, sql, handled["id"])
        assert (await audit(api, other["id"]))["verified"] is True

    @pytest.mark.parametrize(
        "sql",
        [
            "UPDATE complaint_audit SET reason = 'x' WHERE complaint_id = $1",
            "DELETE FROM complaint_audit WHERE complaint_id = $1",
        ],
    )
    async def test_the_trigger_refuses_update_and_delete(
        self, api: Api, handled: dict[str, Any], superuser: asyncpg.Connection, sql: str
    ) -> None:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await superuser.execute(sql, handled["id"])
        assert (await audit(api, handled["id"]))["verified"] is True

    @pytest.mark.parametrize("seq", [1, 4, 5])
    @pytest.mark.parametrize("keep_digest", [False, True], ids=["blanked", "digest_stored"])
    async def test_blanking_an_entry_without_an_anonymisation_entry_fails_naming_it(
        self,
        api: Api,
        handled: dict[str, Any],
        superuser: asyncpg.Connection,
        seq: int,
        keep_digest: bool,
    ) -> None:
        entry = (await audit(api, handled["id"]))["entries"][seq - 1]
        digest = content_digest(entry) if keep_digest else None
        sql = (
            "UPDATE complaint_audit SET reason = NULL, data = '{}', content_sha256 = $3"
            " WHERE complaint_id = $1 AND seq = $2"
        )
        await behind_the_trigger(superuser, sql, handled["id"], seq, digest)
        trail = await audit(api, handled["id"])
        assert (trail["verified"], trail["first_bad_seq"]) == (False, seq)

    async def test_the_trigger_refuses_a_redaction_of_a_complaint_not_anonymised(
        self, api: Api, handled: dict[str, Any], superuser: asyncpg.Connection
    ) -> None:
        entry = (await audit(api, handled["id"]))["entries"][4]
        sql = (
            "UPDATE complaint_audit SET reason = NULL, data = '{}', content_sha256 = $2"
            " WHERE complaint_id = $1 AND seq = 5"
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await superuser.execute(sql, handled["id"], content_digest(entry))
        assert (await audit(api, handled["id"]))["entries"][4] == entry
