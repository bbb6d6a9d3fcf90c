"""HTTP routes of the complaint desk: the notices the customer was sent about a complaint.

Theory of operation
-------------------

``GET /complaints/{id}/notifications`` lists the messages queued for the complainant about
one complaint (``app.complaints.notices``), oldest first, paged by id, each with its
delivery state as the outbox keeps it: ``queued``, ``sending``, ``sent``, ``failed`` (the
provider refused it) or ``dead`` (the attempts ran out), the attempts made, when it was
sent and what last went wrong. ``reachable_by`` says how the complainant can be sent notices
now (``sms``, ``email``, or null: their contact is neither a mobile number nor an e-mail
address, nothing is queued, and the desk must tell them another way).

Who may: whoever may read the complaint (``app.complaints.router.readable``: a complaint the
caller may not see is a 404, and the read is recorded in the access log). What they see of
the customer's data is what they see elsewhere: with the customers' ``unmask`` right
(supervisors, admins) the recipient as it was sent to; without it (agents) the recipient
masked (a phone number keeps its country code, first three and last four digits; an
address its first letter and its domain) and any personal number in the text masked.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from app.agents.access import Action, Resource, allows
from app.agents.dependencies import CurrentPrincipal
from app.agents.permissions import Principal
from app.complaints import notices
from app.complaints.router import ComplaintId, CurrentDesk, readable
from app.db import Session
from app.notifications.adapters import mask_recipient
from app.notifications.models import Channel, Notification
from app.openapi import errors, require_json_body
from app.pagination import Limit, PageCursor, decode_id_cursor, next_id_cursor
from app.redact import mask_personal_numbers

router = APIRouter(prefix="/api/v1", tags=["complaints"], dependencies=[Depends(require_json_body)])


class NotificationOut(BaseModel):
    id: int
    kind: str = Field(description="what it tells: complaint.registered, complaint.resolved, ...")
    channel: str = Field(description="sms or email")
    recipient: str = Field(description="where it goes; masked unless the caller may unmask")
    language: str
    subject: str | None = Field(description="an e-mail's subject line")
    body: str
    status: str = Field(description="queued, sending, sent, failed or dead")
    attempts: int = Field(description="sends tried so far")
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="when the next send is tried")
    sent_at: datetime | None
    last_error: str | None = Field(description="what the last failed send met")


class NotificationPage(BaseModel):
    items: list[NotificationOut]
    next_cursor: str | None
    reachable_by: str | None = Field(
        description="how the complainant can be sent notices: sms, email, or null (their "
        "contact is neither a mobile number nor an e-mail address; nothing is queued)"
    )


def notification_out(row: Notification, *, unmasked: bool) -> NotificationOut:
    """A notice as the viewer may see it."""
    recipient, body = row.recipient, row.body
    if not unmasked:
        recipient = mask_recipient(Channel(row.channel), recipient)
        body = mask_personal_numbers(body)
    return NotificationOut(
        id=row.id,
        kind=row.kind,
        channel=row.channel,
        recipient=recipient,
        language=row.language,
        subject=row.subject,
        body=body,
        status=row.status,
        attempts=row.attempts,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        sent_at=row.sent_at,
        last_error=row.last_error,
    )


def _unmasked(principal: Principal) -> bool:
    return allows(principal, Resource.customers, Action.unmask)


@router.get(
    "/complaints/{complaint_id}/notifications",
    response_model=NotificationPage,
    responses=errors(403),
)
async def list_notifications(
    request: Request,
    complaint_id: ComplaintId,
    session: Session,
    principal: CurrentPrincipal,
    desk: CurrentDesk,
    limit: Limit = 100,
    cursor: PageCursor = None,
) -> NotificationPage:
    """The notices sent (or being sent) to the complainant about a complaint, oldest first,
    with their delivery state; the read is recorded in the access log."""
    complaint = await readable(request, session, principal, complaint_id)
    found = await notices.list_notices(
        session, complaint.id, after_id=decode_id_cursor(cursor), limit=limit
    )
    via = notices.reachable(complaint, region=desk.phone_region)
    unmasked = _unmasked(principal)
    return NotificationPage(
        items=[notification_out(n, unmasked=unmasked) for n in found],
        next_cursor=next_id_cursor([n.id for n in found], limit),
        reachable_by=None if via is None else via.value,
    )
