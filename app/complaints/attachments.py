"""Files attached to a complaint: the table, what a file may be, and the service.

Theory of operation
-------------------

A complaint takes files (a receipt, a statement, a photo) while it is not archived; each is
stored in PostgreSQL (``complaint_attachments``, the content as ``bytea``) with its name as
uploaded (stripped of any folder and of control characters), its size, its SHA-256 and who
uploaded it when. The table is the only place a file lives, so it is backed up, replicated
and anonymised with the complaint.

**What a file may be** is decided by its first bytes, never by the type or the name the
client gives (``sniff``): the signatures in ``SIGNATURES`` (PDF, PNG, JPEG, GIF, WebP), else
plain text, which is UTF-8 (a BOM allowed) without control characters other than tab, line
feed, form feed and carriage return. Anything else is a 422 naming the field ``file`` and
listing what is accepted; so is an empty file; a file past the limit
(``ArchiveConfig.attachment_max_bytes``, 10 MiB) is a 413. The stored type is the one the
content showed, and a download is always sent as an attachment with ``nosniff``, so no
upload is ever rendered as a page by a browser.

``add`` runs on a complaint the caller has locked: an archived complaint is read-only and
takes no file (409 naming its status). It appends an audit entry ``attachment`` holding the
file's digest, size and type (never its name, which may name a person, nor its content) and
records ``complaint.attachment_added``. Nothing here commits.

Anonymisation (``app.complaints.anonymise``) removes each file's content and name; the row
stays, so the trail's entry still names a file the complaint had. A download of a removed
file is a 404 that says so.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    String,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column, undefer

from app.agents.permissions import Principal
from app.complaints import service
from app.complaints.archive_events import RecordEventType, record_event
from app.complaints.lifecycle import ComplaintStatus
from app.complaints.models import Complaint
from app.complaints.notes import READ_ONLY_STATUSES, ComplaintReadOnly
from app.db import Base
from app.errors import AppError, InvalidInput, NotFound

ACTION: Final = "attachment"  # the audit trail's action
TEXT: Final = "text/plain"
MAX_NAME: Final = 255

# (content type, every (offset, bytes) the file must hold there)
# fmt: off
SIGNATURES: Final[tuple[tuple[str, tuple[tuple[int, bytes], ...]], ...]] = (
    ("application/pdf", ((0, b"%PDF-"),)),
    ("image/png",       ((0, b"\x89PNG\r\n\x1a\n"),)),
    ("image/jpeg",      ((0, b"\xff\xd8\xff"),)),
    ("image/gif",       ((0, b"GIF87a"),)),
    ("image/gif",       ((0, b"GIF89a"),)),
    ("image/webp",      ((0, b"RIFF"), (8, b"WEBP"))),
)
# fmt: on
ACCEPTED: Final = tuple(dict.fromkeys([*(kind for kind, _ in SIGNATURES), TEXT]))
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_FOLDERS = re.compile(r"[\\/]")


class ComplaintAttachment(Base):
    """One file attached to a complaint."""

    __tablename__ = "complaint_attachments"
    __table_args__ = (
        CheckConstraint("size > 0", name="size"),
        CheckConstraint("content IS NULL OR octet_length(content) = size", name="content_size"),
        Index("ix_complaint_attachments_complaint_id_id", "complaint_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id"), nullable=False)
    name: Mapped[str] = mapped_column(
        String(MAX_NAME), nullable=False, comment="the file's name, as uploaded"
    )
    content_type: Mapped[str] = mapped_column(
        String(100),
        nullable=False,
        comment="what its first bytes show it is (never the client's word)",
    )
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    # Loaded only for a download: a list of files never reads their content.
    content: Mapped[bytes | None] = mapped_column(
        LargeBinary,
        deferred=True,
        deferred_raiseload=True,
        comment="null once anonymisation removed it",
    )
    uploaded_by: Mapped[str] = mapped_column(
        String(64), nullable=False, comment="the actor who uploaded it: agent:<id>"
    )
    uploaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


# --- refusals ------------------------------------------------------------------------------------


class ContentTooLarge(AppError):
    """A file past the attachment limit."""

    status_code = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"the file is larger than the {limit} bytes a complaint accepts")


class UnsupportedFileType(InvalidInput):
    """A file whose content is none of the accepted types."""

    def __init__(self) -> None:
        super().__init__(
            "the file is none of the accepted types (judged by its content, not its name or "
            f"declared type): {', '.join(ACCEPTED)}",
            field="file",
            accepted=list(ACCEPTED),
        )


class AttachmentNotFound(NotFound):
    def __init__(self, complaint_id: int, attachment_id: int) -> None:
        super().__init__(f"complaint {complaint_id} has no attachment {attachment_id}")


class AttachmentRemoved(NotFound):
    """The file's content was removed when the complaint was anonymised."""

    def __init__(self, attachment_id: int) -> None:
        super().__init__(
            f"attachment {attachment_id} was removed when the complaint was anonymised"
        )


# --- what a file may be ----------------------------------------------------------------------


def _matches(content: bytes, marks: tuple[tuple[int, bytes], ...]) -> bool:
    return all(content[at : at + len(mark)] == mark for at, mark in marks)


def is_text(content: bytes) -> bool:
    """UTF-8 (a BOM allowed) without control characters but tab, LF, FF and CR."""
    if _CONTROL.search(content) is not None:
        return False
    try:
        content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return False
    return True


def sniff(content: bytes) -> str | None:
    """The accepted type ``content`` is, by its first bytes; None if it is none of them."""
    for kind, marks in SIGNATURES:
        if _matches(content, marks):
            return kind
    return TEXT if is_text(content) else None


def check_file(content: bytes, *, limit: int) -> str:
    """The type of an acceptable file; else the refusal (empty, too large, unsupported)."""
    if not content:
        raise InvalidInput("the file is empty", field="file")
    if len(content) > limit:
        raise ContentTooLarge(limit)
    kind = sniff(content)
    if kind is None:
        raise UnsupportedFileType()
    return kind


def clean_name(raw: str | None) -> str:
    """The name a file is kept under: no folders, no control characters, at most 255."""
    base = _FOLDERS.split(unicodedata.normalize("NFC", raw or ""))[-1]
    kept = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip()
    return kept[:MAX_NAME] or "attachment"


# --- the service ---------------------------------------------------------------------------------


async def add(
    session: AsyncSession,
    complaint: Complaint,
    *,
    name: str | None,
    content: bytes,
    content_type: str,
    principal: Principal,
    now: datetime,
) -> ComplaintAttachment:
    """Attach a checked file to a complaint the caller has locked: row, audit entry, event."""
    if ComplaintStatus(complaint.status) in READ_ONLY_STATUSES:
        raise ComplaintReadOnly(complaint.status)
    row = ComplaintAttachment(
        complaint_id=complaint.id,
        name=clean_name(name),
        content_type=content_type,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        content=content,
        uploaded_by=principal.actor,
        uploaded_at=now,
    )
    session.add(row)
    await session.flush()
    data = {
        "attachment_id": row.id,
        "sha256": row.sha256,
        "size": row.size,
        "content_type": row.content_type,
    }
    step = service.Step(ACTION, complaint.status, complaint.status, data=data)
    service.write_audit(session, complaint, step, actor=principal.actor, at=now)
    extra = {"attachment_id": row.id, "content_type": row.content_type, "size": row.size}
    record_event(
        session, RecordEventType.ATTACHMENT_ADDED, complaint, actor=principal.actor, extra=extra
    )
    await session.flush()
    return row


async def list_attachments(
    session: AsyncSession, complaint_id: int, *, after_id: int = 0, limit: int = 100
) -> Sequence[ComplaintAttachment]:
    """A page of a complaint's files (without their content), oldest first."""
    stmt = (
        select(ComplaintAttachment)
        .where(ComplaintAttachment.complaint_id == complaint_id, ComplaintAttachment.id > after_id)
        .order_by(ComplaintAttachment.id)
        .limit(limit)
    )
    return (await session.scalars(stmt)).all()


async def get_with_content(
    session: AsyncSession, complaint_id: int, attachment_id: int
) -> tuple[ComplaintAttachment, bytes]:
    """A file of the complaint and its content; 404 if there is none, or it was removed."""
    stmt = (
        select(ComplaintAttachment)
        .where(
            ComplaintAttachment.complaint_id == complaint_id,
            ComplaintAttachment.id == attachment_id,
        )
        .options(undefer(ComplaintAttachment.content))
    )
    row = await session.scalar(stmt)
    if row is None:
        raise AttachmentNotFound(complaint_id, attachment_id)
    if row.content is None:
        raise AttachmentRemoved(attachment_id)
    return row, row.content
