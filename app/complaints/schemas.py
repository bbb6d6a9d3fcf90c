"""Complaint bodies: a registration, a transition's facts, and what the desk answers.

A registration must carry every fact a complaint needs (the complainant and how to reach
them, the matter: when, where, which branch, what happened; the grounds; the request). Each
is a required field that may not be blank, so a request lacking several is one 422 naming
each of them. A transition's body carries the facts its move needs (``lifecycle.needs``);
all are optional here and the service names the missing ones for the move at hand.

The complainant's contact must be one the desk can use: one the notices can be sent to
(``notice_texts.recipient_of``: an e-mail address, or a mobile number) or one the status
lookup can match (``identity.normalise_phone``: any phone number, a landline with its area
code or a service number too), as typed at the desk or by a caller (``13800138000``,
``+86 138 0013 8000``, ``010-6552-8888``). Anything else (``!!!``, a postal address,
``li@example``) is a 422 naming ``complainant.contact`` (``contact_problem``, which the
registration route asks with the service's phone region, the one the status lookup reads
numbers in). Only a registration is checked: a complaint read back shows the contact as it
was stored, masked or not.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, StringConstraints
from pydantic_core import PydanticCustomError

from app.complaints.clocks import ClockKind
from app.complaints.lifecycle import EscalationLevel, ReviewOutcome
from app.complaints.models import Channel, Relation
from app.complaints.notice_texts import recipient_of
from app.customers.identity import InvalidPhone, PhoneProblem, normalise_phone
from app.schemas import NUL_MESSAGE, Id, StrictModel


def _text(max_length: int) -> Any:
    return StringConstraints(strip_whitespace=True, min_length=1, max_length=max_length)


def _cents(amount: Decimal) -> Decimal:
    """An amount in CNY as the desk writes it, with two decimals: ``800``, ``8E+2`` and
    ``800.0`` are all ``800.00``, in the answer, the facts and the audit trail alike."""
    return amount.quantize(Decimal("0.01"))


Money = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2), AfterValidator(_cents)]
"""An amount of CNY: at most two decimals, given back with two."""
PositiveMoney = Annotated[
    Decimal, Field(gt=0, max_digits=14, decimal_places=2), AfterValidator(_cents)
]


def _without_nul(value: str | None) -> str | None:
    if value is not None and "\x00" in value:
        raise PydanticCustomError("string_nul", NUL_MESSAGE)
    return value


NoNul = AfterValidator(_without_nul)
"""For a text query or path parameter: a NUL, which no stored text holds, is a 422 naming
the parameter, as in a body (``StrictModel``), never a database error."""

Short = Annotated[str, _text(200)]
Long = Annotated[str, _text(10_000)]
Category = Annotated[str, _text(64)]
Ref = Annotated[Id, Field(ge=1, le=2**63 - 1)]


class Severity(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class CustomerRef(StrictModel):
    id: Ref = Field(description="the customer's id")


CONTACT_EXPECTED = (
    "a phone number (13800138000, +86 138 0013 8000, 010-6552-8888) or an e-mail address "
    "(name@example.com)"
)


def contact_problem(contact: str, region: str) -> str | None:
    """What is wrong with a registration's complainant contact; None if the notices can be
    sent to it or the status lookup, reading numbers in ``region``, can match it."""
    if recipient_of(contact, region=region) is not None:
        return None
    try:
        normalise_phone(contact, region=region)
    except InvalidPhone as exc:
        # Not even a phone number's characters: no reason about numbers helps.
        why = "" if exc.problem is PhoneProblem.CHARACTERS else f": {exc}"
        return f"should be {CONTACT_EXPECTED}{why}"
    return None


class Complainant(StrictModel):
    name: Short = Field(description="the complainant's real name")
    contact: Short = Field(
        description="how to reach them: a phone number (as dialled in the service's region, "
        "13800138000 or 010-6552-8888 in China, or with + and its country code, +86 138 0013 "
        "8000) or an e-mail address (name@example.com); the status lookup matches the "
        "number, notices go to a mobile number or the address; anything else is a 422"
    )
    relation: Relation = Field(description="the customer themselves, or their authorised agent")


class Matter(StrictModel):
    occurred_at: AwareDatetime = Field(
        description="when it happened: from 1970-01-01 (UTC) to the desk's clock (an hour "
        "ahead at most); else a 422"
    )
    location: Long = Field(description="where it happened")
    branch: Annotated[str, _text(100)] = Field(description="the branch or unit concerned")
    description: Long = Field(description="what happened")


class ComplaintCreate(StrictModel):
    channel: Channel
    customer: CustomerRef | None = Field(
        default=None, description="the customer complained for, when known"
    )
    complainant: Complainant
    matter: Matter
    grounds: Long = Field(description="why the complainant holds it is wrong")
    request: Long = Field(description="the remedy requested")
    contact_id: Ref | None = Field(default=None, description="the contact it came in on")
    separate: bool = Field(
        default=False,
        description="true: a complaint of its own even where an open complaint of the same "
        "customer looks like the same matter (a different grievance at the same branch that "
        "week); the trail names the open one",
    )


class TransitionFacts(StrictModel):
    """The facts a move may carry; which it needs is ``lifecycle.needs(verb)``."""

    categories: list[Category] | None = Field(default=None, max_length=20)
    severity: Severity | None = None
    assignee: Ref | None = Field(default=None, description="an active agent's id")
    reason: Long | None = Field(
        default=None, description="why; for a pause, one of the listed pause reasons"
    )
    approval: Ref | None = Field(
        default=None,
        description="the approved approval the move uses: every extension, and compensation "
        "above the desk's threshold (500.00 CNY by default)",
    )
    days: int | None = Field(default=None, ge=1, le=365, description="an extension's length")
    clock: ClockKind | None = Field(
        default=None, description="the clock an extension applies to (default: resolution)"
    )
    target: EscalationLevel | None = None
    resolution: Long | None = None
    root_cause: Long | None = None
    corrective_action: Long | None = None
    remedy: Long | None = None
    compensation: Money | None = Field(
        default=None, description="in CNY, at most two decimals (given back with two)"
    )
    outcome: ReviewOutcome | None = None
    responsible_unit: Short | None = Field(
        default=None, description="the branch or unit whose act the complaint was about"
    )
    upheld: bool | None = Field(
        default=None, description="whether the complaint was found justified (root-cause figures)"
    )


class ClockOut(BaseModel):
    kind: str
    target: int
    unit: str
    started_at: datetime
    stopped_at: datetime | None
    due_at: datetime
    status: str = Field(description="running, paused, stopped or breached")
    elapsed: float = Field(description="the fraction of the (extended) target used")
    extensions: list[int]
    paused_for: str | None = Field(description="the reason of the pause in course, if any")


class Registered(BaseModel):
    id: int
    reference: str
    status: str
    due_at: datetime | None = Field(description="the resolution clock's due time")
    clocks: list[ClockOut]
    linked: bool = Field(description="true: the same matter was already open; facts added")


class AuditEntryOut(BaseModel):
    seq: int
    at: datetime
    actor: str
    action: str
    before: str | None
    after: str | None
    reason: str | None
    data: dict[str, Any]
    content_sha256: str | None = Field(
        default=None,
        description="set once the entry's reason and data were removed by anonymisation: "
        "the digest of what they were, which the chain still commits to",
    )
    redacted: bool = Field(
        default=False, description="the reason and data were removed by anonymisation"
    )
    prev_hash: str
    hash: str


class ComplaintSummary(BaseModel):
    id: int
    reference: str
    status: str
    channel: str
    customer_id: int | None
    branch: str
    categories: list[str]
    severity: str | None
    escalation_level: str
    assignee_id: int | None
    registered_at: datetime
    due_at: datetime | None = Field(
        description="the resolution clock's deadline as read now: a paused clock's moves on "
        "with the pause"
    )


class ComplaintOut(ComplaintSummary):
    complainant: Complainant
    matter: Matter
    grounds: str
    request: str
    contact_id: int | None
    registered_by: str
    facts: dict[str, Any] = Field(description="the facts the latest move of each kind brought")
    linked: list[dict[str, Any]] = Field(description="the same matter raised again")
    clocks: list[ClockOut]
    timeline: list[AuditEntryOut]


class ComplaintPage(BaseModel):
    items: list[ComplaintSummary]
    next_cursor: str | None


class AuditOut(BaseModel):
    complaint_id: int
    reference: str
    entries: list[AuditEntryOut]
    verified: bool
    first_bad_seq: int | None = Field(description="where the chain breaks, if it does")
