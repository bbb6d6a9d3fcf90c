"""Writing and reading the event log.

Theory of operation: ``record`` adds an ``events`` row to the caller's transaction, so the
event exists exactly when the change it describes does. Event ids come from a sequence but
transactions commit in any order, so "id > last seen" could skip a row that an older
transaction commits later. Each row therefore carries its transaction id ``tx``; a reader
takes rows with ``(tx, id)`` after its cursor and ``tx`` below the snapshot's ``xmin`` (the
oldest transaction still running). Every transaction below ``xmin`` has finished, so nothing
can appear behind the cursor afterwards: the feed is gapless and totally ordered, at the cost
of waiting for the oldest open transaction (kept short by ``idle_in_transaction_session_timeout``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.db import after_commit, table_of
from app.errors import InvalidInput
from app.events.models import Event
from app.pagination import is_number

WAKE_CALLBACK_KEY = "events_wake"
# ``session.info[RECORD_WATCH_KEY]``, when set: called with each event's type and data as it
# is recorded; a callback it returns runs once the transaction commits. The runtime uses it to
# wake this instance's dispatcher at the commit of an event that may let a contact be offered,
# without waiting for the feed, which any transaction still open on the server holds back.
RECORD_WATCH_KEY = "events_watch"
RecordWatch = Callable[[str, dict[str, Any]], Callable[[], None] | None]
BIGINT = 2**63 - 1  # transaction ids and event ids are bigints


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """A position in the log: after the event ``(tx, id)``."""

    tx: int
    id: int

    def __str__(self) -> str:
        return f"{self.tx}-{self.id}"

    @classmethod
    def parse(cls, value: str) -> Cursor:
        """Parse ``"<tx>-<id>"``; anything else is a client error."""
        tx, sep, id_ = value.partition("-")
        if not sep or not is_number(tx) or not is_number(id_) or max(int(tx), int(id_)) > BIGINT:
            raise InvalidInput(f"cursor {value!r} is not a valid event cursor")
        return cls(int(tx), int(id_))


ORIGIN = Cursor(0, 0)


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """An event as readers see it."""

    id: int
    cursor: Cursor
    type: str
    subject_type: str
    subject_id: str
    data: dict[str, Any]
    actor: str | None
    at: datetime

    def as_message(self) -> dict[str, Any]:
        """The websocket/API form."""
        return {
            "id": self.id,
            "type": self.type,
            "subject": {"type": self.subject_type, "id": self.subject_id},
            "at": self.at.isoformat(),
            "actor": self.actor,
            "data": self.data,
        }


def record(
    session: AsyncSession,
    *,
    type: str,  # noqa: A002 - the event vocabulary calls it "type"
    subject_type: str,
    subject_id: str | int,
    data: dict[str, Any] | None = None,
    actor: str | None = None,
) -> Event:
    """Append an event to the session's transaction."""
    row = _row(type, subject_type, subject_id, data, actor)
    event = Event(**row)
    session.add(event)
    wake_after_commit(session)
    _watch(session, [row])
    return event


def _row(
    type_: str,
    subject_type: str,
    subject_id: str | int,
    data: dict[str, Any] | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    return {
        "type": type_,
        "subject_type": subject_type,
        "subject_id": str(subject_id),
        "data": data or {},
        "actor": actor,
    }


def wake_after_commit(session: AsyncSession) -> None:
    """Events were written in this transaction: wake the hub once it commits."""
    wake = session.info.get(WAKE_CALLBACK_KEY)
    if wake is not None:
        after_commit(session, wake)


# Rows a caller writes in a statement of its own (``row_arrays``' five arrays as the
# parameters put in the ``{}``, in order): their ids follow the order of the rows.
INSERT_ROWS = """
INSERT INTO events (type, subject_type, subject_id, data, actor)
SELECT x.type, x.subject_type, x.subject_id, x.data::jsonb, x.actor
FROM unnest({}::text[], {}::text[], {}::text[], {}::text[], {}::text[])
    WITH ORDINALITY AS x(type, subject_type, subject_id, data, actor, n)
ORDER BY x.n
"""


def event_row(
    type_: str,
    *,
    subject_type: str,
    subject_id: str | int,
    data: dict[str, Any] | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """An event to write, as ``record`` takes it."""
    return _row(type_, subject_type, subject_id, data, actor)


def row_arrays(rows: Sequence[dict[str, Any]]) -> tuple[list[Any], ...]:
    """``rows`` as the five arrays ``INSERT_ROWS`` takes."""
    return (
        [r["type"] for r in rows],
        [r["subject_type"] for r in rows],
        [r["subject_id"] for r in rows],
        [json.dumps(r["data"]) for r in rows],
        [r["actor"] for r in rows],
    )


def recorded(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Events the caller wrote with a statement of its own (``INSERT_ROWS``) in the
    session's transaction: the hub and the watcher learn of them as of ``record``'s."""
    if rows:
        wake_after_commit(session)
        _watch(session, rows)


async def record_many(session: AsyncSession, events: Sequence[dict[str, Any]]) -> None:
    """Append several events in one statement, in the given order (keys as ``record``'s
    arguments). For hot paths that write many events in one transaction."""
    if not events:
        return
    rows = [
        _row(e["type"], e["subject_type"], e["subject_id"], e.get("data"), e.get("actor"))
        for e in events
    ]
    await session.execute(insert(table_of(Event)), rows)
    wake_after_commit(session)
    _watch(session, rows)


def _watch(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Tell the session's watcher (``RECORD_WATCH_KEY``) what was recorded."""
    watch: RecordWatch | None = session.info.get(RECORD_WATCH_KEY)
    if watch is None:
        return
    for row in rows:
        callback = watch(row["type"], row["data"])
        if callback is not None:
            after_commit(session, callback)


# The read, in the driver's form ($1 tx, $2 id, $3 limit): the hub runs it directly.
READ_SQL = """
    SELECT id, tx, type, subject_type, subject_id, data, actor, at
    FROM events
    WHERE (tx, id) > ($1, $2)
      AND tx < (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint
    ORDER BY tx, id
    LIMIT $3
"""
_READ_SQL = text(READ_SQL.replace("$1", ":tx").replace("$2", ":id").replace("$3", ":limit"))

_HEAD_SQL = text(
    """
    SELECT tx, id FROM events
    WHERE tx < (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint
    ORDER BY tx DESC, id DESC
    LIMIT 1
    """
)


async def read_after(
    conn: AsyncConnection | AsyncSession, cursor: Cursor, *, limit: int = 500
) -> Sequence[LoggedEvent]:
    """Events after ``cursor`` that can no longer be preceded by a late commit."""
    result = await conn.execute(_READ_SQL, {"tx": cursor.tx, "id": cursor.id, "limit": limit})
    return [
        LoggedEvent(
            id=row.id,
            cursor=Cursor(row.tx, row.id),
            type=row.type,
            subject_type=row.subject_type,
            subject_id=row.subject_id,
            data=row.data,
            actor=row.actor,
            at=row.at,
        )
        for row in result
    ]


async def head(conn: AsyncConnection | AsyncSession) -> Cursor:
    """The cursor after the last readable event (the origin for an empty log)."""
    row = (await conn.execute(_HEAD_SQL)).first()
    return Cursor(row.tx, row.id) if row else ORIGIN
