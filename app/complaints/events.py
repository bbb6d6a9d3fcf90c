"""The events the complaint desk writes to the log: their names and payload shapes.

Theory of operation: as ``app.routing.events``. The service names every event it records by
``ComplaintEventType`` and builds its payload with the keys of the ``TypedDict`` that
``PAYLOADS`` maps the name to; a test holds each logged payload against its type. The
subject of every event is the complaint (``subject_type`` ``"complaint"``, its id).

Every event names the complaint's holder after it as ``agent_id`` (null when nobody holds
it): ``complaint_event`` adds it, so the holder's console hears of the complaint at once
(``GET /api/v1/events`` and ``/ws/agent`` show an agent the events that name them). A move
also names the holder before it as ``previous_agent_id``, so a reassignment reaches the
agent it takes the complaint from, whose console then drops it. Payloads carry ids,
statuses, times and figures, never free text (no names, descriptions, reasons or notes):
the consoles read the complaint itself, under its own access rules, for anything more.

- ``complaint.registered``: a new complaint, with its reference and resolution due time;
- ``complaint.linked``: the same matter raised again (another channel) and added to it;
- ``complaint.status_changed``: a lifecycle move (``event`` is the verb), including the
  moves that keep the status (a reassignment, an escalation, an extension);
- ``complaint.sla_warning`` and ``complaint.sla_breached``: declared for the clocks' durable
  timers, which fire them;
- ``complaint.note_added`` and ``complaint.feedback_recorded``: a note written on it, a
  satisfaction survey recorded (``app.complaints.notes``).

- ``complaint.queued``: nobody may take it now; it waits in the team queue (``queue``)
  with its holder, if any, unchanged (``app.complaints.assign``).

- ``complaint.approval_requested``, ``complaint.approval_decided`` (approved or declined:
  ``approval_status``) and ``complaint.approval_withdrawn``: a second person's approval
  asked for, given or refused, taken back (``app.complaints.approvals``). Its use shows as
  the ``resolve`` or ``extend`` move that names it.

Payload values are JSON: timestamps are ISO-8601 strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict

from app.events.log import record

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

_CLOSED = ConfigDict(extra="forbid")
SUBJECT = "complaint"


class ComplaintEventType(StrEnum):
    REGISTERED = "complaint.registered"
    LINKED = "complaint.linked"
    STATUS_CHANGED = "complaint.status_changed"
    SLA_WARNING = "complaint.sla_warning"
    SLA_BREACHED = "complaint.sla_breached"
    QUEUED = "complaint.queued"
    NOTE_ADDED = "complaint.note_added"
    FEEDBACK_RECORDED = "complaint.feedback_recorded"
    APPROVAL_REQUESTED = "complaint.approval_requested"
    APPROVAL_DECIDED = "complaint.approval_decided"
    APPROVAL_WITHDRAWN = "complaint.approval_withdrawn"


@with_config(_CLOSED)
class ComplaintPayload(TypedDict):
    """What every complaint event says about the complaint."""

    complaint_id: int
    reference: str
    status: str


@with_config(_CLOSED)
class HeldPayload(ComplaintPayload):
    """What every event of the desk says: the complaint, and who holds it after the event."""

    agent_id: int | None  # the assignee after the event; None: nobody


@with_config(_CLOSED)
class Registered(HeldPayload):
    channel: str
    customer_id: int | None
    due_at: str | None


@with_config(_CLOSED)
class Linked(HeldPayload):
    channel: str  # the channel the matter came in again through


@with_config(_CLOSED)
class StatusChanged(HeldPayload):
    event: str  # the lifecycle verb
    previous: str
    assignee_id: int | None  # the same as agent_id
    previous_agent_id: int | None  # the assignee before the move
    escalation_level: str
    due_at: str | None


@with_config(_CLOSED)
class ClockEvent(HeldPayload):
    clock: str  # the clock's kind
    due_at: str
    level: float | None  # the warning's fraction of the target; None for a breach
    escalation_level: str


@with_config(_CLOSED)
class NoteAdded(HeldPayload):
    note_id: int
    internal: bool  # false: a note meant for the customer (shown in the public timeline)


@with_config(_CLOSED)
class FeedbackRecorded(HeldPayload):
    csat: int  # 1 to 5
    closure: int  # reopen steps before it: 0 for the first closure


@with_config(_CLOSED)
class Queued(HeldPayload):
    queue: str  # the team queue it waits in
    assignee_id: int | None  # its holder, unchanged


@with_config(_CLOSED)
class ApprovalEvent(HeldPayload):
    approval_id: int
    kind: str  # compensation or extension
    approval_status: str  # pending, approved, declined or withdrawn
    amount: str | None  # compensation: the most it may be, in CNY ("800.00")
    clock: str | None  # extension: the clock's kind
    days: int | None  # extension: the days it adds
    requested_by_id: int
    decided_by_id: int | None  # who approved, declined or withdrew it


PAYLOADS: dict[str, type[Any]] = {
    ComplaintEventType.REGISTERED: Registered,
    ComplaintEventType.LINKED: Linked,
    ComplaintEventType.STATUS_CHANGED: StatusChanged,
    ComplaintEventType.SLA_WARNING: ClockEvent,
    ComplaintEventType.SLA_BREACHED: ClockEvent,
    ComplaintEventType.QUEUED: Queued,
    ComplaintEventType.NOTE_ADDED: NoteAdded,
    ComplaintEventType.FEEDBACK_RECORDED: FeedbackRecorded,
    ComplaintEventType.APPROVAL_REQUESTED: ApprovalEvent,
    ComplaintEventType.APPROVAL_DECIDED: ApprovalEvent,
    ComplaintEventType.APPROVAL_WITHDRAWN: ApprovalEvent,
}


def complaint_event(
    session: AsyncSession,
    type_: ComplaintEventType,
    complaint_id: int,
    payload: Mapping[str, Any],
    *,
    actor: str,
    agent_id: int | None,
) -> None:
    """Record one of the desk's events on the complaint, in the caller's transaction;
    ``agent_id`` is the complaint's assignee after the event."""
    record(
        session,
        type=type_,
        subject_type=SUBJECT,
        subject_id=complaint_id,
        data={**payload, "agent_id": agent_id},
        actor=actor,
    )
