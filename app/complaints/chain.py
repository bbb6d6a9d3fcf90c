"""The complaint audit trail's hash chain: pure, so the rule is the same wherever it is checked.

Theory of operation
-------------------

Each audit entry of a complaint carries ``seq`` (1, 2, 3, ... with no gaps), the hash of the
entry before it (``prev_hash``; the first entry's is ``GENESIS``) and its own ``hash``. An
entry is written with its ``FIELDS``, of two kinds:

- ``SEALED``: who did what, when, from which status to which (``complaint_id``, ``seq``,
  ``at``, ``actor``, ``action``, ``before``, ``after``), which the hash covers as they are;
- ``CONTENT``: the entry's ``reason`` and ``data``, free text and facts that may concern a
  person, which the hash covers through their digest:

    content_sha256 = sha256(canonical JSON of {"reason", "data"})
    hash           = sha256(canonical JSON of the SEALED fields, content_sha256, prev_hash)

Canonical JSON is one spelling of a value: keys sorted, no spaces, UTF-8 text as it is, and
timestamps as ISO-8601 in UTC with microseconds (what PostgreSQL stores, so an entry read
back hashes as it did when written). An entry therefore commits to its own content and,
through the previous hash, to every entry before it.

**Redaction.** Committing to the content's digest, not to the content, is what lets
anonymisation remove personal text without breaking the chain (``redact``): the entry's
content is emptied (``reason`` null, ``data`` ``{}``) and its digest, which the hash covers,
is stored in its place (``content_sha256``; null while the entry holds its content, since
the digest is then computed from it). Anonymisation then appends an entry of its own
(``REDACTING_ACTION``), so every redaction is on the record.

``verify`` walks the entries in the order they are stored (by ``seq``) and names the first
that breaks the chain:

- an altered entry: its sealed fields or content no longer hash to its ``hash`` (or, if the
  ``hash`` was recomputed too, the next entry's ``prev_hash`` no longer matches it); an
  altered stored digest breaks the hash the same way;
- a deleted entry: the next one's ``seq`` skips a number and its ``prev_hash`` links to an
  entry that is not there;
- reordered entries: a ``seq`` out of place, or content that hashes differently;
- a redaction nobody recorded: a redacted entry with no ``REDACTING_ACTION`` entry after
  it, or one that still holds content (which nothing would vouch for).

The chain alone cannot see its tail removed (the entries left still link). The complaint
therefore records its head, the last entry's ``hash`` (``head_hash``): when it is given, a
chain that ends elsewhere fails at the index just past its end, where an entry is missing.

Tamper-evident is not tamper-proof: whoever rewrites an entry, every hash after it and the
head at once leaves a consistent chain. Publishing or copying heads elsewhere (out of scope
here) closes that gap; the database trigger that refuses UPDATE (but anonymisation's
redaction) and DELETE raises its cost.

**One scheme for every entry.** Entries written before redaction existed hashed their
content directly. Migration 0022 re-sealed every stored chain in this scheme rather than
keep a scheme version per entry: an old-scheme entry could never be redacted, and the oldest
complaints are the first anonymised. The migration re-seals a chain only as far as it
verifies under the old rule, so a chain broken before it stays broken at the same entry;
heads copied elsewhere before the migration no longer match.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Final

GENESIS: Final = "0" * 64
SEALED: Final = ("complaint_id", "seq", "at", "actor", "action", "before", "after")
"""What an entry's hash covers as it is, besides the previous hash."""
CONTENT: Final = ("reason", "data")
"""What an entry's hash covers through its digest: what redaction may remove."""
FIELDS: Final = (*SEALED, *CONTENT)
"""What an entry is written with."""
REDACTING_ACTION: Final = "anonymised"
"""The action of the entry that records the redaction of the entries before it."""


def _plain(value: object) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("audit timestamps must carry a time zone")
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} has no canonical JSON form")


def canonical(value: object) -> bytes:
    """The one byte string a JSON-able value (timestamps included) hashes as."""
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain
    )
    return text.encode("utf-8")


def content_digest(entry: Mapping[str, Any]) -> str:
    """The digest of an entry's ``CONTENT`` as it is now."""
    return hashlib.sha256(canonical({name: entry[name] for name in CONTENT})).hexdigest()


def is_redacted(entry: Mapping[str, Any]) -> bool:
    """Has the entry's content been removed (its digest stored in its place)?"""
    return entry.get("content_sha256") is not None


def entry_hash(previous_hash: str, entry: Mapping[str, Any]) -> str:
    """The hash of ``entry`` after ``previous_hash`` (a missing field is a ``KeyError``)."""
    sealed = {name: entry[name] for name in SEALED}
    sealed["content_sha256"] = (
        entry["content_sha256"] if is_redacted(entry) else content_digest(entry)
    )
    sealed["prev_hash"] = previous_hash
    return hashlib.sha256(canonical(sealed)).hexdigest()


def link(previous_hash: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """``entry`` with its place in the chain: ``prev_hash`` and ``hash``."""
    return {**entry, "prev_hash": previous_hash, "hash": entry_hash(previous_hash, entry)}


def redact(entry: Mapping[str, Any]) -> dict[str, Any]:
    """``entry`` without its content, its digest kept: its hash is unchanged."""
    if is_redacted(entry):
        return dict(entry)
    return {**entry, "reason": None, "data": {}, "content_sha256": content_digest(entry)}


def _redaction_recorded(index: int, entry: Mapping[str, Any], last_record: int) -> bool:
    if not is_redacted(entry):
        return True
    return index < last_record and entry.get("reason") is None and entry.get("data") == {}


def _intact(index: int, previous_hash: str, entry: Mapping[str, Any]) -> bool:
    return (
        entry.get("seq") == index + 1
        and entry.get("prev_hash") == previous_hash
        and entry.get("hash") == entry_hash(previous_hash, entry)
    )


def _last_record(entries: Sequence[Mapping[str, Any]]) -> int:
    found = [i for i, e in enumerate(entries) if e.get("action") == REDACTING_ACTION]
    return found[-1] if found else -1


def verify(entries: Sequence[Mapping[str, Any]], *, head_hash: str | None = None) -> int | None:
    """The index of the first entry that breaks the chain, or None if it is intact.

    With ``head_hash`` (the last hash the complaint recorded), a chain that ends before it
    fails at ``len(entries)``: the place of the first missing entry.
    """
    previous, last_record = GENESIS, _last_record(entries)
    for index, entry in enumerate(entries):
        intact = _intact(index, previous, entry)
        if not (intact and _redaction_recorded(index, entry, last_record)):
            return index
        previous = str(entry["hash"])
    if head_hash is not None and previous != head_hash:
        return len(entries)
    return None
