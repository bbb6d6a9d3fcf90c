"""The complaint audit trail's hash chain: pure, so the rule is the same wherever it is checked.

Theory of operation
-------------------

Each audit entry of a complaint carries ``seq`` (1, 2, 3, ... with no gaps), the hash of the
entry before it (``prev_hash``; the first entry's is ``GENESIS``) and its own ``hash``:

    hash = sha256(canonical JSON of the entry's ``FIELDS`` and the previous hash)

Canonical JSON is one spelling of a value: keys sorted, no spaces, UTF-8 text as it is, and
timestamps as ISO-8601 in UTC with microseconds (what PostgreSQL stores, so an entry read
back hashes as it did when written). An entry therefore commits to its own content and,
through the previous hash, to every entry before it.

``verify`` walks the entries in the order they are stored (by ``seq``) and names the first
that breaks the chain:

- an altered entry: its content no longer hashes to its ``hash`` (or, if the ``hash`` was
  recomputed too, the next entry's ``prev_hash`` no longer matches it);
- a deleted entry: the next one's ``seq`` skips a number and its ``prev_hash`` links to an
  entry that is not there;
- reordered entries: a ``seq`` out of place, or content that hashes differently.

The chain alone cannot see its tail removed (the entries left still link). The complaint
therefore records its head, the last entry's ``hash`` (``head_hash``): when it is given, a
chain that ends elsewhere fails at the index just past its end, where an entry is missing.

Tamper-evident is not tamper-proof: whoever rewrites an entry, every hash after it and the
head at once leaves a consistent chain. Publishing or copying heads elsewhere (out of scope
here) closes that gap; the database trigger that refuses UPDATE and DELETE raises its cost.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Final

GENESIS: Final = "0" * 64
FIELDS: Final = (
    "complaint_id",
    "seq",
    "at",
    "actor",
    "action",
    "before",
    "after",
    "reason",
    "data",
)
"""What an entry's hash covers, besides the previous hash."""


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


def entry_hash(previous_hash: str, entry: Mapping[str, Any]) -> str:
    """The hash of ``entry`` (its ``FIELDS``; a missing one is a ``KeyError``) after
    ``previous_hash``."""
    content = {name: entry[name] for name in FIELDS}
    content["prev_hash"] = previous_hash
    return hashlib.sha256(canonical(content)).hexdigest()


def link(previous_hash: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """``entry`` with its place in the chain: ``prev_hash`` and ``hash``."""
    return {**entry, "prev_hash": previous_hash, "hash": entry_hash(previous_hash, entry)}


def _intact(index: int, previous_hash: str, entry: Mapping[str, Any]) -> bool:
    return (
        entry.get("seq") == index + 1
        and entry.get("prev_hash") == previous_hash
        and entry.get("hash") == entry_hash(previous_hash, entry)
    )


def verify(entries: Sequence[Mapping[str, Any]], *, head_hash: str | None = None) -> int | None:
    """The index of the first entry that breaks the chain, or None if it is intact.

    With ``head_hash`` (the last hash the complaint recorded), a chain that ends before it
    fails at ``len(entries)``: the place of the first missing entry.
    """
    previous = GENESIS
    for index, entry in enumerate(entries):
        if not _intact(index, previous, entry):
            return index
        previous = str(entry["hash"])
    if head_hash is not None and previous != head_hash:
        return len(entries)
    return None
