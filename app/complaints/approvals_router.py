"""HTTP routes for a complaint's two-person approvals.

Theory of operation
-------------------

``POST /complaints/{id}/approvals`` asks for an approval (compensation: ``amount``, CNY;
extension: ``days`` and ``clock``, the resolution clock unless named; both a ``reason``):
whoever may act on the complaint may ask (its handler, a supervisor of its site, an admin).
An ``Idempotency-Key`` retry is answered with the first answer, so a retried request never
asks twice. ``GET`` lists the complaint's approvals (``status`` filters), oldest first,
paged; the read is recorded in the access log (``complaint.read``) as the desk's other
reads are.

``POST /complaints/{id}/approvals/{approval_id}/approve`` and ``/decline`` (a decline says
why, ``reason``) are for an active supervisor or admin who may act on the complaint and did
not ask: anyone else is a 403 naming why, and a request already decided is a 409 naming its
status. ``/withdraw`` takes a pending request back (whoever may act on the complaint). A
complaint the caller may not see is a 404, as on the desk's other routes.

Every write locks the complaint, then the approval, for the request's transaction
(``app.complaints.approvals``). ``POST /complaints/{id}/approvals`` shares its shape with
the lifecycle's ``POST /complaints/{id}/{verb}``, so the app includes this router before
the desk's.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints

from app.agents.dependencies import CurrentPrincipal
from app.complaints import approvals, service
from app.complaints.approval_models import (
    ApprovalKind,
    ApprovalStatus,
    ComplaintApproval,
    Terms,
)
from app.complaints.clocks import ClockKind
from app.complaints.models import Complaint
from app.complaints.router import ComplaintId, IdempotencyKey, Now, may_act, readable
from app.complaints.schemas import PositiveMoney
from app.db import Session
from app.idempotency import run_once
from app.openapi import errors, require_json_body
from app.pagination import Limit, PageCursor, decode_id_cursor, next_id_cursor
from app.schemas import StrictModel

router = APIRouter(prefix="/api/v1", tags=["complaints"], dependencies=[Depends(require_json_body)])

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2_000)]
ApprovalId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the approval's id")]


class ApprovalCreate(StrictModel):
    kind: ApprovalKind
    amount: PositiveMoney | None = Field(
        default=None,
        description="compensation: the most the resolution may grant, in CNY, at most two "
        "decimals (given back with two)",
    )
    currency: Literal["CNY"] | None = Field(default=None, description="compensation: CNY")
    clock: ClockKind | None = Field(
        default=None, description="extension: the clock (default: resolution)"
    )
    days: int | None = Field(default=None, ge=1, le=365, description="extension: days to add")
    reason: Reason = Field(description="why it is needed, for the approver")


class Decision(StrictModel):
    reason: Reason | None = Field(default=None, description="why; a decline needs one")


class ApprovalOut(BaseModel):
    id: int
    complaint_id: int
    kind: str
    status: str = Field(description="pending, approved, declined, withdrawn or used")
    amount: Decimal | None
    currency: str | None
    clock: str | None
    days: int | None
    reason: str
    requested_by_id: int
    requested_at: datetime
    decided_by_id: int | None = Field(description="who approved, declined or withdrew it")
    decided_at: datetime | None
    decision_reason: str | None
    used_by_id: int | None = Field(description="who made the move that used it")
    used_at: datetime | None


class ApprovalPage(BaseModel):
    items: list[ApprovalOut]
    next_cursor: str | None


def approval_out(row: ComplaintApproval) -> ApprovalOut:
    names = ApprovalOut.model_fields.keys()
    return ApprovalOut.model_validate({name: getattr(row, name) for name in names})


def terms_of(body: ApprovalCreate) -> Terms:
    return Terms(
        kind=body.kind,
        reason=body.reason,
        amount=body.amount,
        currency=body.currency,
        clock=body.clock,
        days=body.days,
    )


async def actionable(session: Session, principal: CurrentPrincipal, complaint_id: int) -> Complaint:
    """The complaint, locked, if the caller may act on it."""
    complaint = await service.get_or_raise(session, complaint_id, for_update=True)
    await may_act(session, principal, complaint)
    return complaint


@router.post(
    "/complaints/{complaint_id}/approvals",
    response_model=ApprovalOut,
    status_code=201,
    responses=errors(403, 409, 422),
)
async def request_approval(
    complaint_id: ComplaintId,
    body: ApprovalCreate,
    session: Session,
    principal: CurrentPrincipal,
    now: Now,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Ask for a second person's approval: compensation (``amount`` in CNY) or an extension
    (``days`` on ``clock``, the resolution clock unless named), with a reason."""
    complaint = await actionable(session, principal, complaint_id)

    async def create() -> tuple[int, Any]:
        row = await approvals.request(
            session, complaint, terms=terms_of(body), principal=principal, now=now
        )
        return 201, approval_out(row).model_dump(mode="json")

    code, payload = await run_once(
        session,
        scope=f"{principal.actor}:complaints:{complaint_id}:approvals",
        key=key,
        payload=body.model_dump(mode="json"),
        create=create,
    )
    return JSONResponse(payload, status_code=code)


@router.get(
    "/complaints/{complaint_id}/approvals", response_model=ApprovalPage, responses=errors(403)
)
async def list_approvals(
    request: Request,
    complaint_id: ComplaintId,
    session: Session,
    principal: CurrentPrincipal,
    status: ApprovalStatus | None = None,
    limit: Limit = 100,
    cursor: PageCursor = None,
) -> ApprovalPage:
    """A complaint's approvals, oldest first; the read is recorded in the access log."""
    complaint = await readable(request, session, principal, complaint_id)
    found = await approvals.list_approvals(
        session, complaint.id, status=status, after_id=decode_id_cursor(cursor), limit=limit
    )
    return ApprovalPage(
        items=[approval_out(a) for a in found],
        next_cursor=next_id_cursor([a.id for a in found], limit),
    )


DECISION_ERRORS = errors(403, 409, 422)


async def _decide(
    complaint_id: int,
    approval_id: int,
    body: Decision | None,
    session: Session,
    principal: CurrentPrincipal,
    now: datetime,
    *,
    approve: bool,
) -> ApprovalOut:
    complaint = await actionable(session, principal, complaint_id)
    approval = await approvals.get_or_raise(session, complaint, approval_id)
    reason = None if body is None else body.reason
    await approvals.decide(
        session,
        complaint,
        approval,
        approve=approve,
        reason=reason,
        principal=principal,
        now=now,
    )
    return approval_out(approval)


@router.post(
    "/complaints/{complaint_id}/approvals/{approval_id}/approve",
    response_model=ApprovalOut,
    responses=DECISION_ERRORS,
)
async def approve(
    complaint_id: ComplaintId,
    approval_id: ApprovalId,
    session: Session,
    principal: CurrentPrincipal,
    now: Now,
    body: Decision | None = None,
) -> ApprovalOut:
    """Approve a pending request: an active supervisor or admin of the complaint's site
    who did not ask for it (else 403); a request already decided is a 409."""
    return await _decide(complaint_id, approval_id, body, session, principal, now, approve=True)


@router.post(
    "/complaints/{complaint_id}/approvals/{approval_id}/decline",
    response_model=ApprovalOut,
    responses=DECISION_ERRORS,
)
async def decline(
    complaint_id: ComplaintId,
    approval_id: ApprovalId,
    session: Session,
    principal: CurrentPrincipal,
    now: Now,
    body: Decision | None = None,
) -> ApprovalOut:
    """Decline a pending request, saying why (``reason``); who may is as for approving."""
    return await _decide(complaint_id, approval_id, body, session, principal, now, approve=False)


@router.post(
    "/complaints/{complaint_id}/approvals/{approval_id}/withdraw",
    response_model=ApprovalOut,
    responses=DECISION_ERRORS,
)
async def withdraw(
    complaint_id: ComplaintId,
    approval_id: ApprovalId,
    session: Session,
    principal: CurrentPrincipal,
    now: Now,
    body: Decision | None = None,
) -> ApprovalOut:
    """Take back a pending request (whoever may act on the complaint); else a 409."""
    complaint = await actionable(session, principal, complaint_id)
    approval = await approvals.get_or_raise(session, complaint, approval_id)
    reason = None if body is None else body.reason
    await approvals.withdraw(
        session, complaint, approval, reason=reason, principal=principal, now=now
    )
    return approval_out(approval)
