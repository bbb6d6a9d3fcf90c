"""HTTP routes for a complaint's notes and its satisfaction survey.

Theory of operation
-------------------

``POST /complaints/{id}/notes`` writes a note (internal unless ``internal`` is false: then
it is meant for the customer and shows in the public timeline); ``GET`` lists them, oldest
first, paged. ``POST /complaints/{id}/feedback`` records the customer's CSAT (1 to 5) and
comment, once the desk has answered (``resolved``, ``confirmed``, ``closed``) and once per
closure. Who may is the desk's own rule (``app.complaints.router``): whoever may act on the
complaint writes notes and records feedback, whoever may read it reads its notes, and a
complaint the caller may not see is a 404. A read of the notes is a read of the complaint,
recorded in the access log (``complaint.read``) as the desk's other reads are.

Writes lock the complaint for the request's transaction: each appends to its audit chain.
These paths share their shape with the lifecycle's ``POST /complaints/{id}/{verb}``, so the
app includes this router before the desk's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints

from app.agents.dependencies import CurrentPrincipal
from app.complaints import notes, service
from app.complaints.models import Complaint
from app.complaints.router import ComplaintId, IdempotencyKey, Now, may_act, readable
from app.db import Session
from app.idempotency import run_once
from app.openapi import errors, require_json_body
from app.pagination import Limit, PageCursor, decode_id_cursor, next_id_cursor
from app.schemas import StrictModel

router = APIRouter(prefix="/api/v1", tags=["complaints"], dependencies=[Depends(require_json_body)])

NoteText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)]
Comment = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2_000)]


class NoteCreate(StrictModel):
    text: NoteText
    internal: bool = Field(default=True, description="false: a note meant for the customer")


class NoteOut(BaseModel):
    id: int
    complaint_id: int
    author_id: int
    at: datetime
    text: str
    internal: bool


class NotePage(BaseModel):
    items: list[NoteOut]
    next_cursor: str | None


class FeedbackCreate(StrictModel):
    csat: int = Field(ge=1, le=5, description="satisfaction, 1 (very poor) to 5 (very good)")
    comment: Comment | None = None


class FeedbackOut(BaseModel):
    id: int
    complaint_id: int
    closure: int
    csat: int
    comment: str | None
    at: datetime
    recorded_by: str


def note_out(note: notes.ComplaintNote) -> NoteOut:
    return NoteOut(
        id=note.id,
        complaint_id=note.complaint_id,
        author_id=note.author_id,
        at=note.at,
        text=note.text,
        internal=note.internal,
    )


def feedback_out(row: notes.ComplaintFeedback) -> FeedbackOut:
    return FeedbackOut(
        id=row.id,
        complaint_id=row.complaint_id,
        closure=row.closure,
        csat=row.csat,
        comment=row.comment,
        at=row.at,
        recorded_by=row.recorded_by,
    )


async def actionable(session: Session, principal: CurrentPrincipal, complaint_id: int) -> Complaint:
    """The complaint, locked, if the caller may act on it."""
    complaint = await service.get_or_raise(session, complaint_id, for_update=True)
    await may_act(session, principal, complaint)
    return complaint


@router.post(
    "/complaints/{complaint_id}/notes",
    response_model=NoteOut,
    status_code=201,
    responses=errors(403, 409),
)
async def add_note(
    complaint_id: ComplaintId,
    body: NoteCreate,
    session: Session,
    principal: CurrentPrincipal,
    now: Now,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Write a note on a complaint: internal unless ``internal`` is false (then it is shown
    to the customer in the public timeline). An archived complaint takes none (409)."""
    complaint = await actionable(session, principal, complaint_id)

    async def create() -> tuple[int, Any]:
        note = await notes.add_note(
            session, complaint, text=body.text, internal=body.internal, principal=principal, now=now
        )
        return 201, note_out(note).model_dump(mode="json")

    code, payload = await run_once(
        session,
        scope=f"{principal.actor}:complaints:{complaint_id}:notes",
        key=key,
        payload=body.model_dump(mode="json"),
        create=create,
    )
    return JSONResponse(payload, status_code=code)


@router.get("/complaints/{complaint_id}/notes", response_model=NotePage, responses=errors(403))
async def list_notes(
    request: Request,
    complaint_id: ComplaintId,
    session: Session,
    principal: CurrentPrincipal,
    limit: Limit = 100,
    cursor: PageCursor = None,
) -> NotePage:
    """A complaint's notes, oldest first; the read is recorded in the access log."""
    complaint = await readable(request, session, principal, complaint_id)
    found = await notes.list_notes(
        session, complaint.id, after_id=decode_id_cursor(cursor), limit=limit
    )
    return NotePage(
        items=[note_out(n) for n in found], next_cursor=next_id_cursor([n.id for n in found], limit)
    )


@router.post(
    "/complaints/{complaint_id}/feedback",
    response_model=FeedbackOut,
    status_code=201,
    responses=errors(403, 409),
)
async def record_feedback(
    complaint_id: ComplaintId,
    body: FeedbackCreate,
    session: Session,
    principal: CurrentPrincipal,
    now: Now,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Record the customer's satisfaction survey (CSAT 1-5 and a comment): only once the
    complaint is resolved, confirmed or closed, and once per closure (else 409; a retry with
    the same ``Idempotency-Key`` gets the first answer)."""
    complaint = await actionable(session, principal, complaint_id)

    async def create() -> tuple[int, Any]:
        row = await notes.record_feedback(
            session, complaint, csat=body.csat, comment=body.comment, principal=principal, now=now
        )
        return 201, feedback_out(row).model_dump(mode="json")

    code, payload = await run_once(
        session,
        scope=f"{principal.actor}:complaints:{complaint_id}:feedback",
        key=key,
        payload=body.model_dump(mode="json"),
        create=create,
    )
    return JSONResponse(payload, status_code=code)
