"""The clocks' side of the complaint desk: the alert timer's handler, the recomputation of
open complaints after a policy change, and the admin route that runs it.

Theory of operation
-------------------

``app.complaints.deadlines`` keeps one durable timer per running clock, set to its next
alert. When the timer worker fires it, ``fire``:

1. locks the complaint (``FOR UPDATE NOWAIT``: the worker fires a batch of timers in one
   transaction while holding their rows, and a request holding the complaint may be waiting
   to replace one of those rows; ``without_waiting`` undoes the handler's work and fires it
   again a moment later instead of deadlocking);
2. recomputes the clock's alerts from its history at the worker's ``now`` and reads which
   have fired from the audit trail; the timer's payload is not consulted, so a stale timer
   (set before a resume or an extension moved the alerts) does nothing;
3. for each alert due and not fired, in order: raises the escalation level one step
   (``lifecycle.next_level``; not above head office, and only where the status table allows
   an escalation), appends an audit entry (``sla_warning`` or ``sla_breached``, naming the
   clock, the alert, the run and the levels before and after) and records the declared event
   (``complaint.sla_warning`` or ``complaint.sla_breached``);
4. sets the timer to the next pending alert, or removes it.

All of it happens in the worker's transaction with the complaint locked, so two instances
firing, a retry after a crash, or a timer fired twice write each alert once.

``register`` gives the worker this handler for one timer and ``app.complaints.clock_batch``
for many: the worker fires due clock timers in batches of up to ``clock_batch.BATCH_SIZE``,
set-wise and with the same effects, and falls back to ``fire``, one timer at a time, for a
batch that fails.

**A policy change** (``recompute_open``, run by ``POST /api/v1/complaints/clocks/recompute``,
admin only) re-derives, for every open complaint, the policy each clock that has not stopped
runs under (``clocks.policy_for`` over the desk's policies, with the complaint's categories,
its customer's tier and its channel), records each change of policy in the audit trail
(``clock_policy``, with the policy before and after), recomputes every clock's deadline from
its unchanged history and resets its timer. Complaints are handled in pages, each page locked
in id order; alerts the new policy puts in the past fire at once, each once. Clocks a new
policy would add are not started here; stopped clocks keep the policy they ran under.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.dependencies import CurrentPrincipal
from app.complaints import clock_batch, deadlines, lifecycle, service
from app.complaints.clocks import ClockKind, policy_for
from app.complaints.deadlines import Alert, Fired
from app.complaints.events import complaint_event
from app.complaints.models import (
    Complaint,
    ComplaintAudit,
    ComplaintClock,
    recompute,
    snapshot,
)
from app.complaints.router import CurrentDesk, Now, check
from app.config import Settings
from app.customers.models import Customer
from app.db import Session
from app.openapi import errors, require_json_body
from app.routing.handlers import without_waiting
from app.timers.worker import DueTimer, TimerRegistry

ACTOR: Final = "system"
POLICY_ACTION: Final = "clock_policy"
RECOMPUTE_PAGE: Final = 500

# --- firing ----------------------------------------------------------------------------------


async def _locked(session: AsyncSession, clock_id: int) -> tuple[Complaint, ComplaintClock] | None:
    """The clock and its complaint, the complaint locked without waiting."""
    stmt = (
        select(Complaint, ComplaintClock)
        .join(ComplaintClock, ComplaintClock.complaint_id == Complaint.id)
        .where(ComplaintClock.id == clock_id)
        .with_for_update(of=Complaint, nowait=True)
        .execution_options(populate_existing=True)
    )
    found = (await session.execute(stmt)).first()
    return None if found is None else (found[0], found[1])


def _raise_alert(
    session: AsyncSession,
    complaint: Complaint,
    row: ComplaintClock,
    alert: Alert,
    *,
    deadline: datetime,
    now: datetime,
) -> None:
    before = complaint.escalation_level
    after = deadlines.escalated(complaint.status, before)
    complaint.escalation_level = after
    data = deadlines.alert_data(row, alert, before, after)
    step = service.Step(alert.action, complaint.status, complaint.status, data=data)
    service.write_audit(session, complaint, step, actor=ACTOR, at=now)
    base = {
        "complaint_id": complaint.id,
        "reference": complaint.reference,
        "status": complaint.status,
    }
    payload = deadlines.alert_payload(base, row, alert, deadline, after)
    complaint_event(
        session,
        deadlines.alert_event(alert),
        complaint.id,
        payload,
        actor=ACTOR,
        agent_id=complaint.assignee_id,
    )


async def fire(
    session: AsyncSession, clock_id: int, now: datetime, desk: service.Desk | None = None
) -> list[Alert]:
    """Fire the alerts of clock ``clock_id`` due by ``now`` and not yet fired; set its next
    timer. Returns the alerts fired (none for a stale timer)."""
    found = await _locked(session, clock_id)
    if found is None:
        return []
    complaint, row = found
    calendar = (desk or service.DESK).work_calendar()
    fired = await deadlines.fired_alerts(session, complaint.id)
    due = deadlines.due_now(row, calendar, fired, now)
    if due:
        deadline = deadlines.alerts(row, calendar)[-1].at
        for alert in due:
            _raise_alert(session, complaint, row, alert, deadline=deadline, now=now)
        run = deadlines.run_of(row)
        fired = fired | {(row.kind, run, alert.name) for alert in due}
    await deadlines.schedule_next(session, row, calendar, fired)
    await session.flush()
    return due


def register(
    registry: TimerRegistry,
    settings: Settings,
    *,
    desk: service.Desk | None = None,
    batch_size: int = clock_batch.BATCH_SIZE,
) -> None:
    """Register the clocks' alert timer with the worker: fired in batches of up to
    ``batch_size`` (``clock_batch``), one by one (``fire``) when a batch fails; with the
    settings' desk (``desk_for``) unless given one."""
    desk = desk or service.desk_for(settings)

    async def handle(session: AsyncSession, clock_id: int, now: datetime) -> None:
        await fire(session, clock_id, now, desk)

    async def handle_batch(
        session: AsyncSession, claimed: Sequence[DueTimer], now: datetime
    ) -> None:
        await clock_batch.fire_batch(session, claimed, now, desk)

    registry.register_batch(
        deadlines.KIND, handle_batch, single=without_waiting(handle), size=batch_size
    )
    # Built now (once per process), not by the first alerts to fall due.
    desk.work_calendar()


# --- recomputing after a policy change -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recomputed:
    """What a recomputation did: complaints and clocks looked at, policies changed."""

    complaints: int = 0
    clocks: int = 0
    changed: int = 0

    def __add__(self, other: Recomputed) -> Recomputed:
        return Recomputed(
            self.complaints + other.complaints,
            self.clocks + other.clocks,
            self.changed + other.changed,
        )


def _repolicy(
    session: AsyncSession,
    complaint: Complaint,
    row: ComplaintClock,
    policy: dict[str, Any],
    now: datetime,
) -> None:
    data = {"clock": row.kind, "previous": row.policy, "policy": policy}
    step = service.Step(POLICY_ACTION, complaint.status, complaint.status, data=data)
    service.write_audit(session, complaint, step, actor=ACTOR, at=now)
    row.policy = policy


async def _rederive(
    session: AsyncSession,
    complaint: Complaint,
    tier: str | None,
    rows: Sequence[ComplaintClock],
    fired: Fired,
    *,
    desk: service.Desk,
    now: datetime,
) -> Recomputed:
    calendar = desk.work_calendar()
    chosen = policy_for(complaint.categories, tier, complaint.channel, desk.policies)
    running = [row for row in rows if row.stopped_at is None]
    changed = 0
    for row in running:
        policy = chosen.get(ClockKind(row.kind))
        if policy is not None and snapshot(policy) != row.policy:
            _repolicy(session, complaint, row, snapshot(policy), now)
            changed += 1
        recompute(row, calendar, now)
    resolution = [r for r in rows if r.kind == ClockKind.RESOLUTION.value]
    if resolution:
        complaint.due_at = resolution[0].due_at
    await deadlines.reschedule(session, running, calendar, fired=fired)
    return Recomputed(1, len(running), changed)


async def _page(
    session: AsyncSession, after_id: int, limit: int
) -> list[tuple[Complaint, str | None]]:
    open_statuses = [s.value for s in lifecycle.OPEN]
    stmt = (
        select(Complaint, Customer.tier)
        .outerjoin(Customer, Customer.id == Complaint.customer_id)
        .where(Complaint.status.in_(open_statuses), Complaint.id > after_id)
        .order_by(Complaint.id)
        .limit(limit)
        .with_for_update(of=Complaint)
        .execution_options(populate_existing=True)
    )
    return [(c, t) for c, t in (await session.execute(stmt)).all()]


async def _clocks_and_fired(
    session: AsyncSession, ids: list[int]
) -> tuple[dict[int, list[ComplaintClock]], dict[int, Fired]]:
    clocks: dict[int, list[ComplaintClock]] = defaultdict(list)
    stmt = select(ComplaintClock).where(ComplaintClock.complaint_id.in_(ids))
    for row in await session.scalars(stmt.order_by(ComplaintClock.id)):
        clocks[row.complaint_id].append(row)
    entries: dict[int, list[dict[str, Any]]] = defaultdict(list)
    audit = select(ComplaintAudit.complaint_id, ComplaintAudit.data).where(
        ComplaintAudit.complaint_id.in_(ids), ComplaintAudit.action.in_(deadlines.ALERT_ACTIONS)
    )
    for complaint_id, data in await session.execute(audit):
        entries[complaint_id].append(data)
    return clocks, {cid: deadlines.fired_from(e) for cid, e in entries.items()}


async def recompute_open(
    session: AsyncSession,
    now: datetime,
    desk: service.Desk | None = None,
    *,
    page: int = RECOMPUTE_PAGE,
) -> Recomputed:
    """Re-derive every open complaint's clock policies and deadlines, and reset its timers."""
    desk = desk or service.DESK
    done, after_id = Recomputed(), 0
    while found := await _page(session, after_id, page):
        clocks, fired = await _clocks_and_fired(session, [c.id for c, _ in found])
        for complaint, tier in found:
            rows = clocks.get(complaint.id, [])
            done += await _rederive(
                session,
                complaint,
                tier,
                rows,
                fired.get(complaint.id, frozenset()),
                desk=desk,
                now=now,
            )
        await session.flush()
        after_id = found[-1][0].id
    return done


# --- the admin route -------------------------------------------------------------------------

router = APIRouter(prefix="/api/v1", tags=["complaints"], dependencies=[Depends(require_json_body)])


class RecomputedOut(BaseModel):
    """What a recomputation did."""

    complaints: int
    clocks: int
    changed: int


@router.post("/complaints/clocks/recompute", response_model=RecomputedOut, responses=errors(403))
async def recompute_clocks(
    session: Session, principal: CurrentPrincipal, now: Now, desk: CurrentDesk
) -> RecomputedOut:
    """Re-derive every open complaint's clocks under the desk's current policies (after a
    policy change) and reset their timers; admin only."""
    check(principal, "manage")
    done = await recompute_open(session, now, desk)
    return RecomputedOut(complaints=done.complaints, clocks=done.clocks, changed=done.changed)
