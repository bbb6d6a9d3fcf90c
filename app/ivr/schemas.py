"""Request and response bodies of the IVR's routes and of the telephony webhooks."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from app.schemas import StrictModel

# What Twilio sends: ids of letters and digits, numbers or client names, keys.
CallRef = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-.:]{1,64}$")]
Party = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)]
Keys = Annotated[str, StringConstraints(pattern=r"^[0-9*#]{0,64}$")]
Spoken = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]
Number = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=32)]


# --- flows -----------------------------------------------------------------------------------


class FlowSummary(BaseModel):
    """A flow version without its document."""

    id: int
    name: str
    version: int
    numbers: list[str] = Field(description="the called numbers the document declares")
    active_numbers: list[str] = Field(description="the numbers this version answers now")
    uploaded_by: str
    uploaded_at: datetime


class FlowOut(FlowSummary):
    """A flow version with its document, as validated (defaults filled in)."""

    document: dict[str, Any]


class FlowPage(BaseModel):
    items: list[FlowSummary]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class Activation(StrictModel):
    """The numbers to answer with a flow version (default: those the document declares)."""

    numbers: list[Number] | None = Field(default=None, min_length=1, max_length=50)


# --- calls and reports -----------------------------------------------------------------------


class CallStep(BaseModel):
    """One record of a call's path."""

    model_config = ConfigDict(extra="allow")

    step: int | None = None
    at: datetime | None = None
    node: str | None
    input: str | None
    prompt: str | None
    result: str
    outcome: str | None = None
    choice: dict[str, str] | None = Field(
        default=None,
        description="the menu option the answer chose, by its first phrase in each of the "
        'flow\'s languages (`{"zh-CN": "信用卡", "en-US": "credit card"}`); null for '
        "a step that chose no option",
    )


class InFlight(BaseModel):
    """A request Hotline has made of the telephony provider and is waiting on."""

    request: Literal["redirect", "callback"] = Field(
        description="`redirect`: the live call being put through to the agent who accepted its "
        "contact (Twilio's REST API); `callback`: a callback attempt being placed"
    )
    attempt: int | None = Field(
        description="the callback attempt being placed (1 for the first); null for a redirect"
    )
    until: datetime = Field(
        description="how long Hotline waits for the provider's answer (the provider's timeout "
        "and 5 s): the answer is recorded before then, or the request is made again after"
    )


class CallOut(BaseModel):
    """A call's way through the IVR: its path, its outcome, its time in the IVR."""

    call_id: str = Field(description="the provider's id of the call (Twilio's CallSid)")
    provider: str
    caller: str | None
    called: str
    flow_id: int
    flow: str
    flow_version: int
    status: str
    step: int = Field(description="steps taken")
    outcome: str | None
    drop_node: str | None = Field(description="where the caller hung up, if in the IVR")
    contact_id: int | None
    provider_status: str | None = Field(description="the last status the provider reported")
    language: str | None
    started_at: datetime
    left_ivr_at: datetime | None
    ended_at: datetime | None
    ivr_s: float = Field(description="seconds in the IVR (so far, while the call is in it)")
    in_flight: InFlight | None = Field(
        description="what Hotline has asked the provider for and not yet heard back on (a "
        "redirect to the agent, a callback attempt being placed); null when nothing is. Its "
        "outcome joins the path once the answer is recorded"
    )
    path: list[CallStep]


class OutcomeCount(BaseModel):
    outcome: str
    calls: int


class DropOff(BaseModel):
    node: str
    calls: int = Field(description="callers who hung up at this node")


class OutcomeReport(BaseModel):
    """IVR outcomes of the calls started in ``[from, to)``."""

    from_: datetime = Field(alias="from", serialization_alias="from")
    to: datetime
    calls: int
    outcomes: list[OutcomeCount] = Field(
        description="served, enqueued, callback, transferred, hung_up (abandoned in the IVR), "
        "ended, in_ivr (no outcome yet)"
    )
    abandoned_in_queue: int = Field(description="enqueued calls whose caller hung up waiting")
    drop_off: list[DropOff]
    mean_ivr_s: float | None


# --- the webhooks ----------------------------------------------------------------------------


class TwilioVoice(BaseModel):
    """The fields of Twilio's voice webhook the IVR reads (others are ignored)."""

    CallSid: CallRef
    From: Party = ""
    To: Party = ""
    Digits: Keys = ""
    SpeechResult: Spoken = ""
    Confidence: float = Field(default=0.0, ge=0, le=1)
    CallStatus: Annotated[str, StringConstraints(max_length=32)] = ""
    AccountSid: Annotated[str, StringConstraints(max_length=64)] = ""


class TwilioStatus(BaseModel):
    """The fields of Twilio's status callback the IVR reads."""

    CallSid: CallRef
    CallStatus: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    AccountSid: Annotated[str, StringConstraints(max_length=64)] = ""


def form_errors(exc: ValidationError) -> list[dict[str, str]]:
    """A form's validation errors as ``{"field", "message"}`` pairs."""
    return [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
    ]


class EventKind(StrEnum):
    incoming = "incoming"
    digits = "digits"
    speech = "speech"
    no_input = "no_input"
    hangup = "hangup"
    wait = "wait"  # a queued caller's provider asks where they stand
    callback = "callback"  # the outcome of a call placed to call the caller back


class AttemptStatus(StrEnum):
    """Where a call placed to call a caller back stands (Twilio's call statuses)."""

    initiated = "initiated"
    ringing = "ringing"
    answered = "answered"
    in_progress = "in-progress"
    completed = "completed"
    no_answer = "no-answer"
    busy = "busy"
    failed = "failed"
    canceled = "canceled"


class JsonEvent(StrictModel):
    """A JSON webhook: what happened on the call."""

    event: EventKind
    call: CallRef | None = Field(
        default=None,
        description="the call the event is for; when given it must be the URL's, so the "
        "signature covers the call too (recommended)",
    )
    from_: Party | None = Field(default=None, alias="from", description="the caller (incoming)")
    to: Party | None = Field(default=None, description="the number called (incoming)")
    digits: Keys | None = Field(default=None, description="the keys pressed (digits)")
    speech: Spoken | None = Field(default=None, description="what was said (speech)")
    confidence: float | None = Field(default=None, ge=0, le=1)
    step: int | None = Field(
        default=None, ge=0, le=100_000, description="the `step` of the answer this event answers"
    )
    attempt: int | None = Field(
        default=None, ge=1, le=100, description="the callback's attempt (callback)"
    )
    status: AttemptStatus | None = Field(
        default=None, description="where the attempt's call stands (callback)"
    )

    model_config = ConfigDict(populate_by_name=True)


class Waiting(BaseModel):
    """Where a queued caller stands (the answer to a ``wait`` event)."""

    standing: Literal["waiting", "offered", "connected", "gone"] = Field(
        description="waiting, offered (ringing at an agent), connected (answered: the "
        "actions put the caller through, or hold them while the agent has no endpoint), "
        "gone (the contact ended: the actions say goodbye)"
    )
    position: int | None = Field(description="the place in the queue told, never a later one")
    estimated_wait_s: int | None


class JsonActions(BaseModel):
    """The JSON adapter's answer."""

    call_id: str
    step: int = Field(description="send it back with the event that answers these actions")
    status: str
    actions: list[dict[str, Any]]
    waiting: Waiting | None = Field(
        default=None, description="where a queued caller stands (only for a `wait` event)"
    )
