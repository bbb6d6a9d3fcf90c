"""Complaint clocks' alerts fired in batches: what ``handlers.fire`` does, set-wise.

Theory of operation
-------------------

When thousands of clocks fall due at one moment (complaints registered together, a worker
back after an outage, a policy that shortened every target), firing them one timer at a
time costs a savepoint and a dozen statements each. The timer worker instead hands this
module up to ``BATCH_SIZE`` due ``complaint.clock`` timers at once
(``TimerRegistry.register_batch``: claimed ``FOR UPDATE SKIP LOCKED`` and deleted in one
statement, in the claiming transaction), and ``fire_batch``:

1. locks the complaints of the clocks the timers name in one statement, ``FOR UPDATE SKIP
   LOCKED`` (never waiting: a request holding a complaint may be waiting for one of the
   claimed timer rows, exactly the deadlock ``without_waiting`` avoids for one timer). A
   timer whose complaint another transaction holds is set again ``RETRY_AFTER`` from now
   (the single handler's timer keeps its row and its place, but a batch's rows were deleted
   as they were claimed); a timer whose clock no longer exists is dropped;
2. reads which alerts have fired from the locked complaints' audit trails in one statement
   (the truth, as for one timer: a timer fired twice, or by two instances, finds its alerts
   fired);
3. for each clock, in the order the timers were claimed (due time, then id: the order the
   single handler would fire them in), derives its alerts from its history
   (``deadlines.plan``) and, for each due and not fired, in order: raises the complaint's
   escalation level one step (``deadlines.escalated``), appends an audit entry chained in
   Python to the complaint's head as the batch has moved it (``chain.link``; two clocks of
   one complaint in one batch chain one after the other), and records the declared event;
4. writes it all set-wise: one INSERT of the audit entries, one of the events
   (``record_many``), one UPDATE of the complaints' levels and chain heads, and one upsert
   of every clock's next timer (``schedule_many``).

The entries, events, levels and next timers are those the single handler writes for the same
clocks at the same moment: the same helpers of ``deadlines`` build them, and
``tests/complaints/test_clock_batch.py`` compares both paths.

Decisions, and why
------------------

- **Complaints locked, not clocks.** Every change to a clock's history (a pause, a
  resolution) runs on the complaint locked by its request, as the single handler locks it;
  one lock order for everyone.
- **Core statements, no ORM objects.** Loading a thousand complaints into a session and
  flushing them one UPDATE each is what this module exists to avoid; the clocks are read
  into transient ``ComplaintClock`` objects only because ``deadlines`` reads clocks that way.
- **A failed batch falls back to one by one** (the timer worker's rule for batched kinds),
  so a complaint whose data breaks the batch delays its batch once and then fails alone,
  with the usual retries.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    DateTime,
    Integer,
    Row,
    String,
    Text,
    any_,
    bindparam,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.complaints import chain, deadlines, service
from app.complaints.calendar import WorkCalendar
from app.complaints.deadlines import KIND, Alert, Fired
from app.complaints.events import SUBJECT
from app.complaints.models import Complaint, ComplaintAudit, ComplaintClock
from app.db import table_of
from app.events.log import record_many
from app.timers import service as timers
from app.timers.worker import DueTimer

BATCH_SIZE: Final = 1000
RETRY_AFTER: Final = timedelta(milliseconds=50)  # a timer whose complaint is held, set again
ACTOR: Final = "system"

_CLOCKS = table_of(ComplaintClock)
_COMPLAINTS = table_of(Complaint)
_AUDIT = table_of(ComplaintAudit)
_CLOCK_COLUMNS = (
    "complaint_id",
    "kind",
    "policy",
    "started_at",
    "stopped_at",
    "pauses",
    "extensions",
    "due_at",
)
_ENTRY_COLUMNS = (*chain.FIELDS, "prev_hash", "hash")
_INSERT_AUDIT = text(
    f"""
    INSERT INTO complaint_audit ({", ".join(_ENTRY_COLUMNS)})
    SELECT complaint_id, seq, at, actor, action, before, after, reason, data::jsonb, prev_hash,
        hash
    FROM unnest(:complaint_id, :seq, :at, :actor, :action, :before, :after, :reason, :data,
        :prev_hash, :hash) AS entry({", ".join(_ENTRY_COLUMNS)})
    """
).bindparams(
    bindparam("complaint_id", type_=ARRAY(BigInteger)),
    bindparam("seq", type_=ARRAY(Integer)),
    bindparam("at", type_=ARRAY(DateTime(timezone=True))),
    *(
        bindparam(name, type_=ARRAY(Text))
        for name in ("actor", "action", "before", "after", "reason", "data", "prev_hash", "hash")
    ),
)
_UPDATE = text(
    """
    UPDATE complaints
    SET escalation_level = moved.level, audit_seq = moved.seq, audit_hash = moved.hash,
        updated_at = now()
    FROM unnest(:ids, :levels, :seqs, :hashes) AS moved(id, level, seq, hash)
    WHERE complaints.id = moved.id
    """
).bindparams(
    bindparam("ids", type_=ARRAY(BigInteger)),
    bindparam("levels", type_=ARRAY(String)),
    bindparam("seqs", type_=ARRAY(Integer)),
    bindparam("hashes", type_=ARRAY(String)),
)


def _ids(values: Sequence[int]) -> Any:
    return bindparam("ids", list(values), type_=ARRAY(BigInteger))


@dataclass(slots=True)
class _Head:
    """A locked complaint as the batch moves it: its level and its audit chain's head."""

    id: int
    reference: str
    status: str
    level: str
    seq: int
    hash: str | None
    assignee_id: int | None
    moved: bool = False

    def base(self) -> dict[str, Any]:
        return {"complaint_id": self.id, "reference": self.reference, "status": self.status}


@dataclass(slots=True)
class _Writes:
    """What the batch writes, gathered in firing order."""

    audit: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    next_due: list[tuple[int, datetime]] = field(default_factory=list)
    next_payloads: list[dict[str, Any]] = field(default_factory=list)


# --- reading and locking ---------------------------------------------------------------------


async def _lock(session: AsyncSession, clock_ids: Sequence[int]) -> Sequence[Any]:
    """The clocks whose complaints this transaction could lock, with those complaints."""
    c = _COMPLAINTS.c
    stmt = (
        select(
            _CLOCKS.c.id.label("clock_id"),
            *(_CLOCKS.c[name] for name in _CLOCK_COLUMNS),
            c.reference,
            c.status,
            c.escalation_level,
            c.audit_seq,
            c.audit_hash,
            c.assignee_id,
        )
        .join(_COMPLAINTS, c.id == _CLOCKS.c.complaint_id)
        .where(_CLOCKS.c.id == any_(_ids(clock_ids)))
        .order_by(c.id)
        .with_for_update(of=_COMPLAINTS, skip_locked=True)
    )
    return (await session.execute(stmt)).all()


async def _existing(session: AsyncSession, clock_ids: Sequence[int]) -> set[int]:
    if not clock_ids:
        return set()
    stmt = select(_CLOCKS.c.id).where(_CLOCKS.c.id == any_(_ids(clock_ids)))
    return set(await session.scalars(stmt))


async def _fired(session: AsyncSession, complaint_ids: Sequence[int]) -> dict[int, Fired]:
    """The alerts fired for each complaint, as their audit trails record them."""
    stmt = select(_AUDIT.c.complaint_id, _AUDIT.c.data).where(
        _AUDIT.c.complaint_id == any_(_ids(complaint_ids)),
        _AUDIT.c.action.in_(deadlines.ALERT_ACTIONS),
    )
    entries: dict[int, list[dict[str, Any]]] = {}
    for complaint_id, data in await session.execute(stmt):
        entries.setdefault(complaint_id, []).append(data)
    return {cid: deadlines.fired_from(found) for cid, found in entries.items()}


def _clock_of(row: Row[Any]) -> ComplaintClock:
    """The clock as ``deadlines`` reads it (transient: never added to the session)."""
    values = {name: getattr(row, name) for name in _CLOCK_COLUMNS}
    return ComplaintClock(id=row.clock_id, **values)


def _head_of(row: Row[Any]) -> _Head:
    return _Head(
        row.complaint_id,
        row.reference,
        row.status,
        row.escalation_level,
        row.audit_seq,
        row.audit_hash,
        row.assignee_id,
    )


# --- firing ----------------------------------------------------------------------------------


def _raise_alert(
    writes: _Writes,
    head: _Head,
    clock: ComplaintClock,
    alert: Alert,
    deadline: datetime,
    now: datetime,
) -> None:
    before = head.level
    head.level = deadlines.escalated(head.status, before)
    entry = {
        "complaint_id": head.id,
        "seq": head.seq + 1,
        "at": now.astimezone(UTC),
        "actor": ACTOR,
        "action": alert.action,
        "before": head.status,
        "after": head.status,
        "reason": None,
        "data": deadlines.alert_data(clock, alert, before, head.level),
    }
    linked = chain.link(head.hash or chain.GENESIS, entry)
    head.seq, head.hash, head.moved = linked["seq"], linked["hash"], True
    writes.audit.append(linked)
    payload = deadlines.alert_payload(head.base(), clock, alert, deadline, head.level)
    payload["agent_id"] = head.assignee_id  # as ``events.complaint_event`` adds it
    writes.events.append(
        {
            "type": deadlines.alert_event(alert),
            "subject_type": SUBJECT,
            "subject_id": head.id,
            "data": payload,
            "actor": ACTOR,
        }
    )


def _fire_clock(
    writes: _Writes,
    head: _Head,
    clock: ComplaintClock,
    calendar: WorkCalendar,
    fired: dict[int, Fired],
    now: datetime,
) -> int:
    """Fire one clock's due alerts and note its next timer; how many fired."""
    done = fired.get(head.id, frozenset())
    plan = deadlines.plan(clock, calendar, done, now)
    if plan.due:
        assert plan.deadline is not None
        for alert in plan.due:
            _raise_alert(writes, head, clock, alert, plan.deadline, now)
        run = deadlines.run_of(clock)
        fired[head.id] = done | {(clock.kind, run, alert.name) for alert in plan.due}
    if plan.next is not None:
        writes.next_due.append((clock.id, plan.next.at))
        writes.next_payloads.append(deadlines.next_payload(clock, plan.next))
    return len(plan.due)


async def _write(session: AsyncSession, writes: _Writes, heads: Sequence[_Head]) -> None:
    if writes.audit:
        columns = {name: [e[name] for e in writes.audit] for name in _ENTRY_COLUMNS}
        columns["data"] = [json.dumps(d, ensure_ascii=False) for d in columns["data"]]
        await session.execute(_INSERT_AUDIT, columns)
    await record_many(session, writes.events)
    moved = [h for h in heads if h.moved]
    if moved:
        await session.execute(
            _UPDATE,
            {
                "ids": [h.id for h in moved],
                "levels": [h.level for h in moved],
                "seqs": [h.seq for h in moved],
                "hashes": [h.hash for h in moved],
            },
        )
    await timers.schedule_many(
        session, kind=KIND, due=writes.next_due, payloads=writes.next_payloads
    )


async def _again_soon(session: AsyncSession, held: Sequence[DueTimer]) -> None:
    """Set timers whose complaint another transaction holds again in a moment."""
    if not held:
        return
    clock: datetime | None = await session.scalar(select(func.clock_timestamp()))
    assert clock is not None
    await timers.schedule_many(
        session,
        kind=KIND,
        due=[(t.subject, clock + RETRY_AFTER) for t in held],
        payloads=[t.payload for t in held],
    )


async def fire_batch(
    session: AsyncSession,
    claimed: Sequence[DueTimer],
    now: datetime,
    desk: service.Desk | None = None,
) -> int:
    """Fire the due alerts of the clocks the claimed (and deleted) timers name, set each
    clock's next timer; returns how many alerts fired."""
    by_clock = {int(t.subject): t for t in claimed}
    rows = await _lock(session, list(by_clock))
    locked = {row.clock_id: row for row in rows}
    held = await _existing(session, [i for i in by_clock if i not in locked])
    await _again_soon(session, [by_clock[i] for i in by_clock if i in held])
    heads = {row.complaint_id: _head_of(row) for row in rows}
    fired = await _fired(session, list(heads))
    calendar = (desk or service.DESK).work_calendar()
    writes, count = _Writes(), 0
    for clock_id in by_clock:
        row = locked.get(clock_id)
        if row is not None:
            count += _fire_clock(
                writes, heads[row.complaint_id], _clock_of(row), calendar, fired, now
            )
    await _write(session, writes, list(heads.values()))
    return count
