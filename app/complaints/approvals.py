"""Two-person approvals on a complaint: asking, deciding, withdrawing, and using one.

Theory of operation
-------------------

Compensation above the desk's threshold (``Desk.compensation_approval_above``, 500.00 CNY
by default) and every clock extension need a second person's approval (the two-person rule
for large sums; an extension needs a supervisor's approval, and the customer a notice). The
record is ``complaint_approvals`` (``app.complaints.approval_models``, where its status
table is).

- **Asking** (``request``): whoever may act on the complaint (its handler, a supervisor of
  its site, an admin) names the terms (compensation: an amount in CNY with two decimals;
  extension: a clock, the resolution clock unless named, and a number of days) and a
  reason. An extension that the clock's policy would refuse now is refused at once (422
  naming ``days`` or ``clock``), so nobody is asked to approve the impossible. Requests are
  taken while the complaint is open (not finished, not archived; else 409 naming its
  status).
- **Deciding** (``decide``): an active supervisor or admin who may act on the complaint
  (of its site; an admin anywhere) and who is not the one who asked approves or declines
  a pending request (a decline says why). Anyone else is a 403 naming why; a request no
  longer pending is a 409 naming its status.
- **Withdrawing** (``withdraw``): whoever may act on the complaint takes back a pending
  request (a wrong amount, a wait that ended).
- **Using** (``for_compensation``, ``for_extension``, called by the ``resolve`` and
  ``extend`` moves of ``app.complaints.service``): the move names the approval (fact
  ``approval``); it must be this complaint's, of the right kind, ``approved``, and cover
  the move (an amount at least the compensation; the same clock and days). It becomes
  ``used`` in the move's transaction. The one who approved a compensation never pays it
  out: a resolver who is its approver is a 403.

Every request, decision and withdrawal runs on the complaint locked by the caller and on
the approval's row locked here (``FOR UPDATE``), in that order everywhere, so of two
approvers at once one decides and the other sees the decision (409). Each writes an entry
in the complaint's hash-chained audit trail (``approval_requested``,
``approval_approved``, ``approval_declined``, ``approval_withdrawn``; the reasons enter as
digests, as notes' texts do) and a declared event. A use is recorded by the move's own
entry: its facts name the approval and its data the approver (``approved_by_id``).

Decisions, and why
------------------

**The approver confirms; the requester never names them.** A move that took an approver's
id from the requester recorded a consent nobody gave. Now the approver acts, signed in, and
the move only points at what they decided.

**An approved amount is a ceiling, an extension exact.** Compensation may end lower than
asked (the customer settles for less) without a second round; more needs a new approval.
An extension's days and clock are what the customer will be told, so they must match.

**An approval named is always used**, even for compensation at or below the threshold: a
caller who names one means it, and an approval left ``approved`` could be spent later.

**A supervisor of another site gets a 404**, as everywhere on the desk: a complaint they
may not see does not exist for them. The 403s name why for those who do see it.

Nothing here commits: the request's unit of work does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.models import Agent, Role
from app.agents.permissions import Principal
from app.complaints import lifecycle, service
from app.complaints.approval_models import (
    ApprovalAction,
    ApprovalKind,
    ApprovalNotFound,
    ApprovalNotOpen,
    ApprovalsClosed,
    ApprovalStatus,
    ComplaintApproval,
    IllegalApprovalMove,
    NotAnApprover,
    Terms,
    apply,
    checked,
    money,
    payload,
    terms_of,
)
from app.complaints.clocks import ClockError, ClockKind, check_extension
from app.complaints.events import ComplaintEventType, complaint_event
from app.complaints.exceptions import InvalidComplaint
from app.complaints.lifecycle import ComplaintEvent, ComplaintStatus
from app.complaints.models import Complaint, history_of, policy_of

APPROVERS: Final = frozenset({Role.supervisor, Role.admin})
AUDIT_ACTIONS: Final = {
    ApprovalAction.approve: "approval_approved",
    ApprovalAction.decline: "approval_declined",
    ApprovalAction.withdraw: "approval_withdrawn",
}
REQUESTED: Final = "approval_requested"

# --- reading ---------------------------------------------------------------------------------


async def list_approvals(
    session: AsyncSession,
    complaint_id: int,
    *,
    status: ApprovalStatus | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> Sequence[ComplaintApproval]:
    """A page of a complaint's approvals, oldest first, after ``after_id``."""
    stmt = select(ComplaintApproval).where(
        ComplaintApproval.complaint_id == complaint_id, ComplaintApproval.id > after_id
    )
    if status is not None:
        stmt = stmt.where(ComplaintApproval.status == status.value)
    return (await session.scalars(stmt.order_by(ComplaintApproval.id).limit(limit))).all()


async def _locked(
    session: AsyncSession, complaint: Complaint, approval_id: int
) -> ComplaintApproval | None:
    stmt = select(ComplaintApproval).where(
        ComplaintApproval.id == approval_id, ComplaintApproval.complaint_id == complaint.id
    )
    found: ComplaintApproval | None = await session.scalar(stmt.with_for_update())
    return found


async def get_or_raise(
    session: AsyncSession, complaint: Complaint, approval_id: int
) -> ComplaintApproval:
    """One of the complaint's approvals, locked for the transaction; else a 404."""
    found = await _locked(session, complaint, approval_id)
    if found is None:
        raise ApprovalNotFound(approval_id, complaint.id)
    return found


# --- asking ----------------------------------------------------------------------------------


async def _extendable(
    session: AsyncSession, complaint: Complaint, clock: ClockKind, days: int
) -> None:
    rows = {row.kind: row for row in await service.clocks_of(session, complaint.id)}
    row = rows.get(clock.value)
    if row is None:
        raise InvalidComplaint("clock", f"the complaint runs no {clock.value} clock")
    try:
        check_extension(policy_of(row), history_of(row), days)
    except ClockError as exc:
        raise InvalidComplaint("days", str(exc)) from None


def _open(complaint: Complaint) -> None:
    if ComplaintStatus(complaint.status) not in lifecycle.OPEN:
        raise ApprovalsClosed(complaint.status)


async def request(
    session: AsyncSession,
    complaint: Complaint,
    *,
    terms: Terms,
    principal: Principal,
    now: datetime,
) -> ComplaintApproval:
    """Ask for a second person's approval on a complaint the caller has locked."""
    _open(complaint)
    terms = checked(terms)
    if terms.clock is not None and terms.days is not None:
        await _extendable(session, complaint, terms.clock, terms.days)
    approval = ComplaintApproval(
        complaint_id=complaint.id,
        kind=terms.kind.value,
        status=ApprovalStatus.pending.value,
        amount=terms.amount,
        currency=terms.currency,
        clock=None if terms.clock is None else terms.clock.value,
        days=terms.days,
        reason=terms.reason,
        requested_by_id=principal.id,
        requested_at=now,
    )
    session.add(approval)
    await session.flush()
    data = {**terms_of(approval), "reason_sha256": service.digest(terms.reason)}
    _record(session, complaint, approval, REQUESTED, data, principal=principal, now=now)
    return approval


# --- deciding --------------------------------------------------------------------------------


async def _check_approver(
    session: AsyncSession, approval: ComplaintApproval, principal: Principal
) -> None:
    if principal.role not in APPROVERS:
        raise NotAnApprover(
            f"an approval is given by a supervisor or an admin, not by {principal.role.value}"
        )
    person = await session.get(Agent, principal.id)
    if person is None or not person.active:
        raise NotAnApprover("an approval is given only by an active supervisor or admin")
    if principal.id == approval.requested_by_id:
        raise NotAnApprover("an approval is never given by the person who asked for it")


def _move(approval: ComplaintApproval, action: ApprovalAction) -> ApprovalStatus:
    try:
        return apply(ApprovalStatus(approval.status), action)
    except IllegalApprovalMove:
        raise ApprovalNotOpen(approval, action) from None


async def decide(
    session: AsyncSession,
    complaint: Complaint,
    approval: ComplaintApproval,
    *,
    approve: bool,
    reason: str | None,
    principal: Principal,
    now: datetime,
) -> ComplaintApproval:
    """Approve or decline a pending request; the complaint and the approval are locked."""
    await _check_approver(session, approval, principal)
    _open(complaint)
    action = ApprovalAction.approve if approve else ApprovalAction.decline
    after = _move(approval, action)
    if not approve and not reason:
        raise InvalidComplaint("reason", "a declined request says why")
    _settle(session, complaint, approval, action, after, reason, principal=principal, now=now)
    return approval


async def withdraw(
    session: AsyncSession,
    complaint: Complaint,
    approval: ComplaintApproval,
    *,
    reason: str | None,
    principal: Principal,
    now: datetime,
) -> ComplaintApproval:
    """Take back a pending request; the complaint and the approval are locked."""
    if ComplaintStatus(complaint.status) in lifecycle.TERMINAL:
        raise ApprovalsClosed(complaint.status)
    after = _move(approval, ApprovalAction.withdraw)
    action = ApprovalAction.withdraw
    _settle(session, complaint, approval, action, after, reason, principal=principal, now=now)
    return approval


def _settle(
    session: AsyncSession,
    complaint: Complaint,
    approval: ComplaintApproval,
    action: ApprovalAction,
    after: ApprovalStatus,
    reason: str | None,
    *,
    principal: Principal,
    now: datetime,
) -> None:
    approval.status = after.value
    approval.decided_by_id, approval.decided_at = principal.id, now
    approval.decision_reason = reason
    data: dict[str, Any] = terms_of(approval)
    if reason:
        data["reason_sha256"] = service.digest(reason)
    _record(session, complaint, approval, AUDIT_ACTIONS[action], data, principal=principal, now=now)


# --- using -----------------------------------------------------------------------------------


async def _usable(
    session: AsyncSession, complaint: Complaint, approval_id: int, kind: ApprovalKind
) -> ComplaintApproval:
    approval = await _locked(session, complaint, approval_id)
    if approval is None:
        raise InvalidComplaint(
            "approval", f"approval {approval_id} is not one of this complaint's approvals"
        )
    if approval.kind != kind.value:
        raise InvalidComplaint(
            "approval", f"approval {approval_id} is for {approval.kind}, not {kind.value}"
        )
    _move(approval, ApprovalAction.use)
    return approval


def _use(approval: ComplaintApproval, principal: Principal, now: datetime) -> ComplaintApproval:
    approval.status = _move(approval, ApprovalAction.use).value
    approval.used_by_id, approval.used_at = principal.id, now
    return approval


async def for_compensation(
    session: AsyncSession,
    complaint: Complaint,
    *,
    approval_id: int | None,
    amount: Decimal | None,
    threshold: Decimal,
    principal: Principal,
    now: datetime,
) -> ComplaintApproval | None:
    """The approval a resolution's compensation uses, marked used; None when it needs none
    and names none. An approval named is always checked and used, even under the threshold."""
    if approval_id is None:
        if amount is not None and amount > threshold:
            raise InvalidComplaint(
                "approval",
                f"compensation of {money(amount)} needs a second person's approval "
                f"above {money(threshold)}",
            )
        return None
    if amount is None:
        raise InvalidComplaint(
            "approval", f"approval {approval_id} is for compensation, but the move grants none"
        )
    approval = await _usable(session, complaint, approval_id, ApprovalKind.compensation)
    assert approval.amount is not None
    if amount > approval.amount:
        raise InvalidComplaint(
            "approval",
            f"compensation of {money(amount)} is more than approval {approval_id} allows "
            f"({money(approval.amount)})",
        )
    if principal.id == approval.decided_by_id:
        raise NotAnApprover("an approval is never used by the person who gave it")
    return _use(approval, principal, now)


async def for_extension(
    session: AsyncSession,
    complaint: Complaint,
    *,
    approval_id: int,
    clock: ClockKind,
    days: int,
    principal: Principal,
    now: datetime,
) -> ComplaintApproval:
    """The approval an extension uses, marked used: it must grant these days on this clock."""
    approval = await _usable(session, complaint, approval_id, ApprovalKind.extension)
    if (approval.clock, approval.days) != (clock.value, days):
        raise InvalidComplaint(
            "approval",
            f"approval {approval_id} grants {approval.days} days on the {approval.clock} "
            f"clock, not {days} on the {clock.value} clock",
        )
    return _use(approval, principal, now)


async def for_move(move: service.Move, event: ComplaintEvent) -> int | None:
    """The approver of the approval an ``extend`` or ``resolve`` move uses (marked used and
    noted in the move's audit data), or None for a resolution that needs and names none."""
    facts = move.facts
    used: ComplaintApproval | None
    if event is ComplaintEvent.EXTEND:
        assert facts.approval is not None
        assert facts.days is not None
        used = await for_extension(
            move.session,
            move.complaint,
            approval_id=facts.approval,
            clock=facts.clock or ClockKind.RESOLUTION,
            days=facts.days,
            principal=move.principal,
            now=move.now,
        )
    else:
        used = await for_compensation(
            move.session,
            move.complaint,
            approval_id=facts.approval,
            amount=facts.compensation,
            threshold=move.desk.compensation_approval_above,
            principal=move.principal,
            now=move.now,
        )
    if used is None:
        return None
    move.data["approved_by_id"] = used.decided_by_id
    return used.decided_by_id


# --- the trail and the log -------------------------------------------------------------------


def _record(
    session: AsyncSession,
    complaint: Complaint,
    approval: ComplaintApproval,
    action: str,
    data: dict[str, Any],
    *,
    principal: Principal,
    now: datetime,
) -> None:
    step = service.Step(action, complaint.status, complaint.status, data=data)
    service.write_audit(session, complaint, step, actor=principal.actor, at=now)
    type_ = _EVENTS[approval.status]
    complaint_event(
        session,
        type_,
        complaint.id,
        payload(complaint, approval),
        actor=principal.actor,
        agent_id=complaint.assignee_id,
    )


_EVENTS: Final = {
    ApprovalStatus.pending.value: ComplaintEventType.APPROVAL_REQUESTED,
    ApprovalStatus.approved.value: ComplaintEventType.APPROVAL_DECIDED,
    ApprovalStatus.declined.value: ComplaintEventType.APPROVAL_DECIDED,
    ApprovalStatus.withdrawn.value: ComplaintEventType.APPROVAL_WITHDRAWN,
}
