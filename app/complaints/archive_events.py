"""The events the archive, retention and attachments write to the log: names and payloads.

Theory of operation: as ``app.complaints.events``, whose ``ComplaintPayload`` every payload
here extends (the subject is the complaint). The names are declared here, beside the code
that writes them:

- ``complaint.anonymised``: retention removed the complaint's personal data;
- ``complaint.legal_hold_placed`` and ``complaint.legal_hold_lifted``: a legal hold keeps
  the complaint from anonymisation, or no longer does;
- ``complaint.attachment_added``: a file was attached (its id, type and size; never its
  name or content).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, with_config
from sqlalchemy.ext.asyncio import AsyncSession

from app.complaints.events import SUBJECT, ComplaintPayload
from app.complaints.models import Complaint
from app.events.log import record

_CLOSED = ConfigDict(extra="forbid")


class RecordEventType(StrEnum):
    ANONYMISED = "complaint.anonymised"
    LEGAL_HOLD_PLACED = "complaint.legal_hold_placed"
    LEGAL_HOLD_LIFTED = "complaint.legal_hold_lifted"
    ATTACHMENT_ADDED = "complaint.attachment_added"


@with_config(_CLOSED)
class AttachmentAdded(ComplaintPayload):
    attachment_id: int
    content_type: str  # as its content shows it to be
    size: int  # bytes


PAYLOADS: dict[str, type[Any]] = {
    RecordEventType.ANONYMISED: ComplaintPayload,
    RecordEventType.LEGAL_HOLD_PLACED: ComplaintPayload,
    RecordEventType.LEGAL_HOLD_LIFTED: ComplaintPayload,
    RecordEventType.ATTACHMENT_ADDED: AttachmentAdded,
}


def record_event(
    session: AsyncSession,
    type_: RecordEventType,
    complaint: Complaint,
    *,
    actor: str,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Record one of these events on ``complaint``, in the caller's transaction."""
    payload = {
        "complaint_id": complaint.id,
        "reference": complaint.reference,
        "status": complaint.status,
        **(extra or {}),
    }
    record(
        session,
        type=type_,
        subject_type=SUBJECT,
        subject_id=complaint.id,
        data=payload,
        actor=actor,
    )
