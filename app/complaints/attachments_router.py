"""HTTP routes for a complaint's attached files.

Theory of operation
-------------------

``POST /complaints/{id}/attachments`` takes one file as ``multipart/form-data`` (a single
part named ``file``; its file name is kept, its declared type is not consulted: the content
decides, ``app.complaints.attachments``). ``GET`` lists the files (without content), oldest
first, paged; ``GET .../attachments/{attachment_id}`` downloads one, always as an attachment
(``Content-Disposition``) with ``X-Content-Type-Options: nosniff``. Who may is the notes'
rule: whoever may act on the complaint attaches, whoever may read it lists and downloads (a
read of the complaint, recorded in the access log), and a complaint the caller may not see
is a 404.

**Size.** A file is at most ``ArchiveConfig.attachment_max_bytes`` (10 MiB). A request that
declares a larger body (``Content-Length`` past the limit and a small allowance for the
multipart framing) is refused with a 413 before any of it is read; otherwise the body is
read (the body limit of ``app.limits`` bounds what can be, and must allow the attachment
limit on this path) and a file past the limit is a 413 all the same.

Who may attach, and whether the complaint still takes files, is checked first, in a short
read of its own: a refusal (404, 403, or 409 for an archived complaint) comes before any of
the file is read. The body is then read with no transaction open, so a slow upload never
holds the complaint or an idle transaction; only once the file is in hand is the complaint
locked and everything checked again, and the rest runs as a note does: an audit entry with
the file's digest, an event.

These paths share their shape with the lifecycle's ``POST /complaints/{id}/{verb}``, so the
app includes this router before the desk's.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Final
from urllib.parse import quote

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from app.agents.dependencies import CurrentPrincipal
from app.agents.permissions import Principal
from app.complaints import attachments, service
from app.complaints.archive_router import CurrentArchiveConfig
from app.complaints.attachments import ComplaintAttachment, ContentTooLarge
from app.complaints.lifecycle import ComplaintStatus
from app.complaints.notes import READ_ONLY_STATUSES, ComplaintReadOnly
from app.complaints.notes_router import actionable
from app.complaints.router import ComplaintId, IdempotencyKey, Now, may_act, readable
from app.db import Session
from app.errors import InvalidInput
from app.idempotency import run_once
from app.limits import declared_length
from app.openapi import errors
from app.pagination import Limit, PageCursor, decode_id_cursor, next_id_cursor

router = APIRouter(prefix="/api/v1", tags=["complaints"])

FIELD: Final = "file"
MULTIPART_ALLOWANCE: Final = 64 * 1024  # boundaries and part headers around the file
AttachmentId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the attachment's id")]


class AttachmentOut(BaseModel):
    id: int
    complaint_id: int
    name: str = Field(description="the file's name as uploaded (the marker once anonymised)")
    content_type: str = Field(description="what the file's content shows it is")
    size: int = Field(description="bytes")
    sha256: str
    uploaded_by: str
    uploaded_at: datetime


class AttachmentPage(BaseModel):
    items: list[AttachmentOut]
    next_cursor: str | None


def attachment_out(row: ComplaintAttachment) -> AttachmentOut:
    return AttachmentOut(
        id=row.id,
        complaint_id=row.complaint_id,
        name=row.name,
        content_type=row.content_type,
        size=row.size,
        sha256=row.sha256,
        uploaded_by=row.uploaded_by,
        uploaded_at=row.uploaded_at,
    )


UPLOAD_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    "properties": {FIELD: {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}
UPLOAD_RESPONSES: Final = errors(403, 409, 413)


def _not_multipart(detail: str) -> InvalidInput:
    return InvalidInput(
        f"{detail}: send one file as multipart/form-data, in a part named {FIELD!r}", field=FIELD
    )


async def _may_attach(request: Request, principal: Principal, complaint_id: int) -> None:
    """Refuse early, before the body is read, whoever would be refused once it is."""
    async with request.app.state.sessionmaker() as session:
        complaint = await service.get_or_raise(session, complaint_id)
        await may_act(session, principal, complaint)
        if ComplaintStatus(complaint.status) in READ_ONLY_STATUSES:
            raise ComplaintReadOnly(complaint.status)


async def _read_upload(request: Request, limit: int) -> tuple[str | None, bytes]:
    """The file's name and content (at most ``limit`` + 1 bytes of it are read out)."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise _not_multipart("the body is not multipart/form-data")
    try:
        form = await request.form(max_files=1, max_fields=0)
    except HTTPException as exc:
        if exc.status_code != 400:
            raise  # the body limit's 413
        raise _not_multipart(f"the multipart body cannot be read ({exc.detail})") from None
    try:
        others = sorted(k for k in form if k != FIELD)
        if others:
            raise _not_multipart(f"unexpected part(s) {', '.join(others)}")
        upload = form.get(FIELD)
        if not isinstance(upload, UploadFile):
            raise _not_multipart(f"no file in a part named {FIELD!r}")
        return upload.filename, await upload.read(limit + 1)
    finally:
        await form.close()


@router.post(
    "/complaints/{complaint_id}/attachments",
    response_model=AttachmentOut,
    status_code=201,
    responses=UPLOAD_RESPONSES,
    openapi_extra=UPLOAD_BODY,
)
async def add_attachment(
    request: Request,
    complaint_id: ComplaintId,
    session: Session,
    principal: CurrentPrincipal,
    now: Now,
    config: CurrentArchiveConfig,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Attach a file (PDF, PNG, JPEG, GIF, WebP or UTF-8 text, judged by its content; at
    most 10 MiB by default) to a complaint; an archived complaint takes none (409). A retry
    with the same ``Idempotency-Key`` and file gets the first answer."""
    limit = config.attachment_max_bytes
    declared = declared_length(request.headers)
    if declared is not None and declared > limit + MULTIPART_ALLOWANCE:
        raise ContentTooLarge(limit)
    await _may_attach(request, principal, complaint_id)
    name, content = await _read_upload(request, limit)
    kind = attachments.check_file(content, limit=limit)
    complaint = await actionable(session, principal, complaint_id)

    async def create() -> tuple[int, Any]:
        row = await attachments.add(
            session,
            complaint,
            name=name,
            content=content,
            content_type=kind,
            principal=principal,
            now=now,
        )
        return 201, attachment_out(row).model_dump(mode="json")

    code, payload = await run_once(
        session,
        scope=f"{principal.actor}:complaints:{complaint_id}:attachments",
        key=key,
        payload={"name": name, "sha256": hashlib.sha256(content).hexdigest()},
        create=create,
    )
    return JSONResponse(payload, status_code=code)


@router.get(
    "/complaints/{complaint_id}/attachments",
    response_model=AttachmentPage,
    responses=errors(403),
)
async def list_attachments(
    request: Request,
    complaint_id: ComplaintId,
    session: Session,
    principal: CurrentPrincipal,
    limit: Limit = 100,
    cursor: PageCursor = None,
) -> AttachmentPage:
    """A complaint's files (without their content), oldest first; the read is recorded in
    the access log."""
    complaint = await readable(request, session, principal, complaint_id)
    found = await attachments.list_attachments(
        session, complaint.id, after_id=decode_id_cursor(cursor), limit=limit
    )
    return AttachmentPage(
        items=[attachment_out(a) for a in found],
        next_cursor=next_id_cursor([a.id for a in found], limit),
    )


def content_disposition(name: str) -> str:
    """``attachment`` with the name: an ASCII fallback and the UTF-8 name (RFC 6266)."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _media_type(content_type: str) -> str:
    return f"{content_type}; charset=utf-8" if content_type == attachments.TEXT else content_type


@router.get(
    "/complaints/{complaint_id}/attachments/{attachment_id}",
    response_class=Response,
    responses={
        200: {"description": "the file's content", "content": {"application/octet-stream": {}}},
        **errors(403),
    },
)
async def download_attachment(
    request: Request,
    complaint_id: ComplaintId,
    attachment_id: AttachmentId,
    session: Session,
    principal: CurrentPrincipal,
) -> Response:
    """Download a file of the complaint, always as an attachment; the read is recorded in
    the access log. A file removed by anonymisation is a 404 that says so."""
    complaint = await readable(request, session, principal, complaint_id)
    row, content = await attachments.get_with_content(session, complaint.id, attachment_id)
    headers = {
        "Content-Disposition": content_disposition(row.name),
        "X-Content-Type-Options": "nosniff",
    }
    return Response(content, media_type=_media_type(row.content_type), headers=headers)
