"""The events the IVR writes to the log: their names and the shape of their payloads.

Theory of operation: every event the IVR records has its name in ``IvrEventType`` and its
payload declared by the ``TypedDict`` that ``PAYLOADS`` maps the name to, as the other
domains declare theirs (``app/routing/events.py``). A call entering a queue is routing's
``contact.queued`` (the admission writes it); the IVR's own events say what the queue's
cannot: a flow uploaded or activated, a call started and how it left the IVR.

Payload values are JSON: durations are seconds as floats.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict

_CLOSED = ConfigDict(extra="forbid")


class IvrEventType(StrEnum):
    FLOW_UPLOADED = "ivr.flow_uploaded"
    FLOW_ACTIVATED = "ivr.flow_activated"
    CALL_STARTED = "ivr.call_started"
    CALL_LEFT = "ivr.call_left"
    CALL_ENDED = "ivr.call_ended"


@with_config(_CLOSED)
class FlowUploaded(TypedDict):
    flow_id: int
    name: str
    version: int


@with_config(_CLOSED)
class FlowActivated(TypedDict):
    flow_id: int
    name: str
    version: int
    numbers: list[str]


@with_config(_CLOSED)
class CallStarted(TypedDict):
    call_id: int
    provider: str
    flow_id: int
    called: str


@with_config(_CLOSED)
class CallLeft(TypedDict):
    """The call left the IVR: enqueued, called back, transferred, served or ended."""

    call_id: int
    outcome: str
    node: str | None
    contact_id: int | None
    ivr_s: float


@with_config(_CLOSED)
class CallEnded(TypedDict):
    """The provider reported the call over (the caller hung up, or it never connected), or,
    asked after a silence, said it was over or knew no such call (``not-found``); a call the
    provider cannot be asked about ends after a silence as ``silent`` (``app.ivr.silence``)."""

    call_id: int
    provider_status: str
    status_before: str
    contact_id: int | None


PAYLOADS: dict[str, Any] = {
    IvrEventType.FLOW_UPLOADED: FlowUploaded,
    IvrEventType.FLOW_ACTIVATED: FlowActivated,
    IvrEventType.CALL_STARTED: CallStarted,
    IvrEventType.CALL_LEFT: CallLeft,
    IvrEventType.CALL_ENDED: CallEnded,
}
