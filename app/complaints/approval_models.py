"""Two-person approvals on a complaint: their status table, their terms, the table, the errors.

Theory of operation
-------------------

An approval is a second person's consent to something the desk may not do on one person's
word: compensation above the desk's threshold, or an extension of a clock. Someone handling
the complaint asks (``requested_by_id``, with the terms: an amount in CNY, or a clock and a
number of days, and a reason); a supervisor or an admin other than the one who asked
decides (``decided_by_id``); the move it was asked for (``resolve``, ``extend``) names it
and uses it up. ``_MOVES`` is the whole life of one, in the manner of the complaint
lifecycle's table::

    pending ─approve──▶ approved ─use──▶ used
       ├────decline──▶ declined
       └────withdraw─▶ withdrawn

Every status but ``pending`` and ``approved`` is final, and a pair the table lacks raises
``IllegalApprovalMove`` naming the current status (the service answers 409).

Decisions, and why
------------------

**The rule is in the table twice.** The service refuses an approver who asked, and a
resolver who approved the compensation they pay; the checks here (``two_people``,
``payer_not_approver``) refuse the same rows in the database, so no code path, present or
future, can store a one-person approval.

**An approval is used once.** ``used`` is final and records who used it and when: the
compensation of one resolution, or one extension. A reopened complaint resolved again with
compensation above the threshold needs a new approval.

**Withdrawn keeps who withdrew it** in ``decided_by_id``: it is the last decision on the
request, taken by whoever may act on the complaint (the requester among them), which is why
``two_people`` does not apply to it.

**Withdrawing is for pending requests only.** An approved approval nobody needs is simply
never used; taking it back would overwrite who approved it.

Everything here but the model is pure: the enums and the status table, the terms' check
(``checked``: what each kind needs and refuses), what the audit trail and the event log
say of an approval (``terms_of``, ``payload``), and the errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.complaints.clocks import ClockKind
from app.complaints.exceptions import InvalidComplaint
from app.complaints.models import Complaint
from app.db import Base
from app.errors import Conflict, Forbidden, NotFound

CURRENCY: Final = "CNY"


class ApprovalKind(StrEnum):
    """What an approval consents to."""

    compensation = "compensation"  # compensation above the desk's threshold, at resolve
    extension = "extension"  # more days on one clock, at extend


class ApprovalStatus(StrEnum):
    pending = "pending"
    approved = "approved"
    declined = "declined"
    withdrawn = "withdrawn"
    used = "used"


class ApprovalAction(StrEnum):
    approve = "approve"
    decline = "decline"
    withdraw = "withdraw"
    use = "use"


_S, _A = ApprovalStatus, ApprovalAction

# fmt: off
_MOVES: Final[dict[tuple[ApprovalStatus, ApprovalAction], ApprovalStatus]] = {
    (_S.pending, _A.approve):   _S.approved,
    (_S.pending, _A.decline):   _S.declined,
    (_S.pending, _A.withdraw):  _S.withdrawn,
    (_S.approved, _A.use):      _S.used,
}
# fmt: on


class IllegalApprovalMove(Exception):
    """``action`` cannot happen to an approval in ``status``: a miss in the table."""

    def __init__(self, status: ApprovalStatus, action: ApprovalAction) -> None:
        super().__init__(f"cannot {action} an approval that is {status}")
        self.status = status
        self.action = action


def apply(status: ApprovalStatus, action: ApprovalAction) -> ApprovalStatus:
    """The status after ``action``; raises ``IllegalApprovalMove`` if the table lacks it."""
    try:
        return _MOVES[status, action]
    except KeyError:
        raise IllegalApprovalMove(status, action) from None


def moves() -> dict[tuple[ApprovalStatus, ApprovalAction], ApprovalStatus]:
    """A copy of the table, for documentation and tests."""
    return dict(_MOVES)


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


_TERMS = (
    f"(kind = 'compensation' AND amount > 0 AND currency = '{CURRENCY}'"
    " AND clock IS NULL AND days IS NULL)"
    " OR (kind = 'extension' AND clock IS NOT NULL AND days BETWEEN 1 AND 365"
    " AND amount IS NULL AND currency IS NULL)"
)
_DECIDED = "(status = 'pending') = (decided_by_id IS NULL AND decided_at IS NULL)"
_USED = "(status = 'used') = (used_by_id IS NOT NULL AND used_at IS NOT NULL)"
_TWO_PEOPLE = "status IN ('pending', 'withdrawn') OR decided_by_id <> requested_by_id"
_PAYER = "kind <> 'compensation' OR used_by_id IS NULL OR used_by_id <> decided_by_id"


class ComplaintApproval(Base):
    """One request for a second person's approval on a complaint, and its decision."""

    __tablename__ = "complaint_approvals"
    __table_args__ = (
        CheckConstraint(_in("kind", ApprovalKind), name="kind"),
        CheckConstraint(_in("status", ApprovalStatus), name="status"),
        CheckConstraint(_TERMS, name="terms"),
        CheckConstraint(_DECIDED, name="decided"),
        CheckConstraint(_USED, name="used"),
        CheckConstraint(_TWO_PEOPLE, name="two_people"),
        CheckConstraint(_PAYER, name="payer_not_approver"),
        Index("ix_complaint_approvals_complaint_id_id", "complaint_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    amount: Mapped[Decimal | None] = mapped_column(
        Numeric(14, 2), comment="compensation: the most it may be"
    )
    currency: Mapped[str | None] = mapped_column(String(3))
    clock: Mapped[str | None] = mapped_column(String(32), comment="extension: the clock's kind")
    days: Mapped[int | None] = mapped_column(Integer, comment="extension: the days it adds")
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    # No cascade: the people on record cannot be deleted out of it.
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), nullable=False)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    decided_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id"), comment="who approved, declined or withdrew it"
    )
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    used_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id"), comment="who made the move that used it"
    )
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# --- the terms asked for ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Terms:
    """What is asked for: compensation (``amount``) or an extension (``clock``, ``days``)."""

    kind: ApprovalKind
    reason: str
    amount: Decimal | None = None
    currency: str | None = None
    clock: ClockKind | None = None
    days: int | None = None


def _refuse_others(terms: Terms, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(terms, name) is not None:
            raise InvalidComplaint(name, f"a {terms.kind.value} approval has no {name}")


def checked(terms: Terms) -> Terms:
    """The terms with their defaults, or a 422 naming the field that is missing or extra."""
    if terms.kind is ApprovalKind.compensation:
        _refuse_others(terms, ("clock", "days"))
        if terms.amount is None:
            raise InvalidComplaint("amount", "a compensation approval needs an amount")
        return Terms(terms.kind, terms.reason, amount=terms.amount, currency=CURRENCY)
    _refuse_others(terms, ("amount", "currency"))
    if terms.days is None:
        raise InvalidComplaint("days", "an extension approval needs its days")
    clock = terms.clock or ClockKind.RESOLUTION
    return Terms(terms.kind, terms.reason, clock=clock, days=terms.days)


# --- what the trail and the log say of one ---------------------------------------------------


def money(amount: Decimal) -> str:
    """An amount as the desk writes it: two decimals ("800.00")."""
    return f"{amount:.2f}"


def terms_of(approval: ComplaintApproval) -> dict[str, Any]:
    """What the audit trail records of an approval: its id, kind and terms."""
    terms: dict[str, Any] = {"approval_id": approval.id, "kind": approval.kind}
    if approval.amount is not None:
        terms |= {"amount": money(approval.amount), "currency": approval.currency}
    if approval.clock is not None:
        terms |= {"clock": approval.clock, "days": approval.days}
    return terms


def payload(complaint: Complaint, approval: ComplaintApproval) -> dict[str, Any]:
    """An approval event's payload (``app.complaints.events.ApprovalEvent``)."""
    return {
        "complaint_id": complaint.id,
        "reference": complaint.reference,
        "status": complaint.status,
        "approval_id": approval.id,
        "kind": approval.kind,
        "approval_status": approval.status,
        "amount": None if approval.amount is None else money(approval.amount),
        "clock": approval.clock,
        "days": approval.days,
        "requested_by_id": approval.requested_by_id,
        "decided_by_id": approval.decided_by_id,
    }


# --- errors ----------------------------------------------------------------------------------


class ApprovalNotFound(NotFound):
    def __init__(self, approval_id: int, complaint_id: int) -> None:
        super().__init__(f"approval {approval_id} of complaint {complaint_id} does not exist")


class ApprovalNotOpen(Conflict):
    """The approval's status does not allow this (decided twice, used twice, ...)."""

    def __init__(self, approval: ComplaintApproval, action: ApprovalAction) -> None:
        wanted = "approved" if action is ApprovalAction.use else "pending"
        super().__init__(
            f"approval {approval.id} is {approval.status}, not {wanted}",
            approval_id=approval.id,
            approval_status=approval.status,
        )


class ApprovalsClosed(Conflict):
    """A finished or archived complaint takes no approval requests or decisions."""

    def __init__(self, status: str) -> None:
        super().__init__(
            f"a complaint that is {status} takes no approval requests or decisions", status=status
        )


class NotAnApprover(Forbidden):
    """Who may not give this approval, and why."""
