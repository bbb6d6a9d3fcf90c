"""Queue, contact and offer bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, Field, StringConstraints, model_validator

from app.channels import Channel
from app.routing.scoring import Strategy
from app.schemas import StrictModel

QueueName = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z][a-z0-9_\-]{0,63}$")
]
SkillName = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z][a-z0-9_]{0,63}$")
]
Seconds = Annotated[float, Field(ge=0, le=86_400)]


class StepSkill(StrictModel):
    skill: SkillName
    min_level: int = Field(default=1, ge=1, le=10)


class StepIn(StrictModel):
    skills: list[StepSkill] = Field(min_length=1, max_length=20)
    expires_after_s: float | None = Field(
        default=None, gt=0, le=86_400, description="then the next, wider step applies"
    )


class ServiceLevel(StrictModel):
    threshold_s: float = Field(default=20, gt=0, le=3600)
    target_pct: float = Field(default=80, gt=0, le=100)
    counts_abandons: bool = Field(
        default=True, description="abandons after the short-abandon cutoff count as missed"
    )
    short_abandon_s: float = Field(default=5, ge=0, le=600)


def _check_steps(steps: list[StepIn] | None) -> None:
    if not steps:
        return
    for index, step in enumerate(steps[:-1]):
        if step.expires_after_s is None:
            raise ValueError(f"steps.{index}.expires_after_s: only the last step may never expire")


class QueueCreate(StrictModel):
    name: QueueName
    description: str | None = Field(default=None, max_length=500)
    channels: list[Channel] = Field(min_length=1)
    strategy: Strategy = Strategy.LONGEST_IDLE
    steps: list[StepIn] = Field(default_factory=list, max_length=10)
    service_level: ServiceLevel = Field(default_factory=ServiceLevel)
    ring_timeout_s: float = Field(default=20, gt=0, le=600)
    wrap_up_s: Seconds = 10
    reject_delay_s: Seconds = 5
    no_answer_delay_s: Seconds = 10
    max_no_answer: int = Field(default=3, ge=0, le=100, description="0: never set away")
    max_wait_s: float | None = Field(default=None, gt=0, le=86_400)
    max_length: int | None = Field(default=None, ge=1, le=1_000_000)
    overflow_queue: QueueName | None = None

    @model_validator(mode="after")
    def _valid(self) -> Self:
        _check_steps(self.steps)
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels: a channel is listed more than once")
        return self


class QueueUpdate(StrictModel):
    description: str | None = Field(default=None, max_length=500)
    channels: list[Channel] | None = Field(default=None, min_length=1)
    strategy: Strategy | None = None
    steps: list[StepIn] | None = Field(default=None, max_length=10)
    service_level: ServiceLevel | None = None
    ring_timeout_s: float | None = Field(default=None, gt=0, le=600)
    wrap_up_s: Seconds | None = None
    reject_delay_s: Seconds | None = None
    no_answer_delay_s: Seconds | None = None
    max_no_answer: int | None = Field(default=None, ge=0, le=100)
    max_wait_s: float | None = Field(default=None, gt=0, le=86_400)
    max_length: int | None = Field(default=None, ge=1, le=1_000_000)
    overflow_queue: QueueName | None = None

    @model_validator(mode="after")
    def _valid(self) -> Self:
        _check_steps(self.steps)
        return self


class QueueOut(BaseModel):
    id: int
    name: str
    description: str | None
    channels: list[str]
    strategy: Strategy
    steps: list[dict[str, Any]]
    service_level: ServiceLevel
    ring_timeout_s: float
    wrap_up_s: float
    reject_delay_s: float
    no_answer_delay_s: float
    max_no_answer: int
    max_wait_s: float | None
    max_length: int | None
    overflow_queue: str | None
    created_at: datetime


class QueuePage(BaseModel):
    items: list[QueueOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class CustomerRef(StrictModel):
    id: int | None = None
    phone: str | None = Field(default=None, max_length=32)

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.id is None) == (self.phone is None):
            raise ValueError("customer: give exactly one of id or phone")
        return self


class ContactCreate(StrictModel):
    channel: Channel
    queue: QueueName | int = Field(description="queue name or id")
    customer: CustomerRef | None = None
    subject: str | None = Field(default=None, max_length=500)
    language: str | None = Field(default=None, max_length=16)


class OfferOut(BaseModel):
    id: int
    contact_id: int
    agent_id: int
    queue_id: int
    channel: str
    status: str
    reason: dict[str, Any] = Field(description="why this agent and this contact")
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None


class QueueLive(BaseModel):
    """A queue as the wallboard's snapshot shows it."""

    id: int
    name: str
    waiting: int = Field(description="contacts queued or offered")
    oldest_enqueued_at: datetime | None = Field(description="of the longest-waiting contact")


class OfferPage(BaseModel):
    items: list[OfferOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class ContactOut(BaseModel):
    id: int
    status: str
    queue: str
    queue_id: int
    channel: str
    tier: str
    customer_id: int | None
    subject: str | None
    language: str | None
    enqueued_at: datetime
    deadline_at: datetime
    agent_id: int | None
    answered_at: datetime | None
    ended_at: datetime | None
    position: int | None = Field(description="place in the queue; never goes backwards")
    estimated_wait_s: int | None = Field(description="null when data is too thin to say")
    estimate_basis: str | None = None
    short_abandon: bool | None = None
    disposition: str | None = None
    transferred_from: int | None = None
    transferred_to: int | None = None
    caller: str | None = Field(
        default=None,
        description="the caller's number (or handle): masked for the agent role, in full for "
        "supervisors and admins, as a customer's phone is; null in the answer to the POST "
        "that creates the contact",
    )
    notes: str | None = Field(
        default=None,
        description="the handling agent's notes: shown to that agent, supervisors and admins; "
        "null for everyone else",
    )
    offers: list[OfferOut] = Field(default_factory=list)


class TransferIn(StrictModel):
    queue: QueueName | int


class CompleteIn(StrictModel):
    disposition: str | None = Field(default=None, max_length=64)
    notes: str | None = Field(default=None, max_length=10_000)
