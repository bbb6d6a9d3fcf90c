"""Queue, contact and offer bodies, and a queue's statistics."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, Field, StringConstraints, field_validator, model_validator

from app.channels import Channel
from app.customers.schemas import Language, not_null
from app.routing.scoring import Strategy
from app.schemas import NAME_OR_ID, Id, StrictModel

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


MAX_CONTACT_SKILLS = 8


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


def _unique_channels(channels: list[Channel] | None) -> list[Channel] | None:
    if channels is not None and len(set(channels)) != len(channels):
        raise ValueError("a channel is listed more than once")
    return channels


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
    overflow_queue: QueueName | None = Field(
        default=None,
        description="where a contact goes when the queue is full or its max wait passes; "
        "the chain it starts may not loop (come back to a queue already on it)",
    )

    _unique_channels = field_validator("channels")(_unique_channels)

    @model_validator(mode="after")
    def _valid(self) -> Self:
        _check_steps(self.steps)
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
    overflow_queue: QueueName | None = Field(
        default=None,
        description="null: none; the chain it starts may not loop back to this queue or to "
        "any queue already on it",
    )

    _unique_channels = field_validator("channels")(_unique_channels)
    # Only the description, the max wait, the max length and the overflow queue may be
    # cleared; null for any other field is a 422 naming it, never a failed write.
    _no_nulls = field_validator(
        "channels",
        "strategy",
        "steps",
        "service_level",
        "ring_timeout_s",
        "wrap_up_s",
        "reject_delay_s",
        "no_answer_delay_s",
        "max_no_answer",
        mode="before",
    )(not_null)

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
    unserved_channels: list[str] = Field(
        description="channels the queue takes that no active agent can take (capacity on the "
        "channel and the skills of the queue's last routing step): a contact there waits "
        "until max_wait_s, or for ever without it; give an agent the channel, or drop it"
    )


class QueuePage(BaseModel):
    items: list[QueueOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class CustomerRef(StrictModel):
    id: Id | None = None
    phone: str | None = Field(default=None, max_length=32)

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.id is None) == (self.phone is None):
            raise ValueError("customer: give exactly one of id or phone")
        return self


class ContactCreate(StrictModel):
    channel: Channel
    queue: Annotated[QueueName | Id, NAME_OR_ID] = Field(description="queue name or id")
    customer: CustomerRef | None = None
    subject: str | None = Field(default=None, max_length=500)
    language: Language | None = Field(
        default=None,
        max_length=16,
        description="BCP 47 tag, as a customer's language is given (e.g. zh-CN, en, yue-HK, "
        "zh-Hans-CN): a language of 2 or 3 lower-case letters, then subtags of 2 to 8 letters "
        "or digits, each after a -; up to 16 characters; default: the customer's",
    )
    skills: list[StepSkill] = Field(
        default_factory=list,
        max_length=MAX_CONTACT_SKILLS,
        description="skills the agent who takes the contact must hold (existing skill names, "
        "each once), whatever the queue's routing step; the contact waits for such an agent "
        "until the queue's max wait moves or ends it",
    )

    @model_validator(mode="after")
    def _once(self) -> Self:
        names = [s.skill for s in self.skills]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"skills: {', '.join(repeated)} listed more than once")
        return self


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
    tier: str | None = Field(
        description="the tier routing gives it; withheld (null) from an agent who created it "
        "by phone, as whether a number is a customer's is a rate-limited lookup"
    )
    customer_id: int | None
    subject: str | None
    language: str | None
    skills: list[StepSkill] = Field(
        default_factory=list,
        description="skills the agent who takes the contact must hold, besides the queue's "
        "routing step (kept by a transfer or an overflow)",
    )
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
    queue: Annotated[QueueName | Id, NAME_OR_ID]


class CompleteIn(StrictModel):
    disposition: str | None = Field(default=None, max_length=64)
    notes: str | None = Field(default=None, max_length=10_000)


# --- queue statistics ---------------------------------------------------------------------


class AgentsByState(BaseModel):
    idle: int = Field(description="signed-in agents of the queue with nothing to do")
    offered: int = Field(description="signed-in agents with a contact ringing")
    busy: int = Field(description="signed-in agents handling a contact")
    wrap_up: int = Field(description="signed-in agents in after-contact work")


class AgentsByStatus(BaseModel):
    available: int = Field(description="agents of the queue who chose to take contacts")
    away: int = Field(description="agents of the queue who are signed in but away")
    offline: int = Field(description="agents of the queue who are signed out")


class AgentCounts(BaseModel):
    total: int = Field(description="agents of the queue, whatever their status")
    by_state: AgentsByState = Field(
        description="what the agents who are not offline are doing (system-derived state)"
    )
    by_status: AgentsByStatus = Field(description="every agent of the queue by chosen status")


class LiveFigures(BaseModel):
    waiting: int = Field(description="contacts queued or ringing in this queue now")
    longest_wait_s: float = Field(
        description="the oldest waiting contact's wait from its original enqueue time "
        "(kept across transfers); 0 when nobody waits"
    )
    agents: AgentCounts = Field(
        description="agents of the queue: active, with capacity on one of its channels and "
        "the skills of its last routing step (all such agents when it has no steps)"
    )


class ServiceLevelFigure(BaseModel):
    pct: float | None = Field(
        description="the service level in percent (0.1 precision); null when the formula's "
        "denominator is 0"
    )
    threshold_s: float = Field(description="answered within this many seconds counts as met")
    target_pct: float = Field(description="the queue's target for `pct`")
    counts_abandons: bool = Field(
        description="whether abandons after the short-abandon cutoff count as missed"
    )
    short_abandon_s: float = Field(
        description="the queue's short-abandon cutoff now (each abandon was judged short or "
        "not with the cutoff in force when it happened)"
    )
    formula: str = Field(
        description="the formula applied, e.g. "
        "`answered within 20s / (answered + abandoned after 5s)`"
    )


class IntervalFigures(BaseModel):
    name: str | None = Field(
        description="`15m`, `30m`, `1h` or `1d` for the current aligned interval; null for an "
        "explicit from/to"
    )
    start: datetime = Field(serialization_alias="from", description="start of the interval")
    end: datetime = Field(
        serialization_alias="to", description="end of the interval (now at the latest)"
    )
    length_s: float = Field(description="seconds from `from` to `to`: the rates' denominator")
    offered: int = Field(
        description="contacts that entered the queue (`contact.queued`, including transfers "
        "and overflows in)"
    )
    answered: int = Field(description="contacts connected to an agent (`contact.connected`)")
    abandoned: int = Field(
        description="customers who left before an answer (`contact.abandoned`), short included"
    )
    short_abandoned: int = Field(
        description="abandons before the short-abandon cutoff, counted apart"
    )
    timed_out: int = Field(description="contacts that reached the queue's maximum wait")
    transferred_out: int = Field(description="contacts moved from this queue to another")
    service_level_pct: float | None = Field(description="the same as `service_level.pct`")
    service_level: ServiceLevelFigure = Field(
        description="the service level with the formula and settings it was computed with"
    )
    asa_s: float | None = Field(
        description="average speed of answer: mean wait of the answered contacts, from their "
        "original enqueue time; null when none was answered"
    )
    aht_s: float | None = Field(
        description="average handle time: mean of handle plus wrap-up time of the contacts "
        "completed; null when none completed"
    )
    abandon_rate_pct: float | None = Field(
        description="abandons after the short-abandon cutoff / (offered - short abandons), "
        "in percent; null when that denominator is not positive"
    )
    occupancy_pct: float | None = Field(
        description="approximate: handle plus wrap-up time of the contacts completed in the "
        "interval / (agents of the queue available now x interval length), in percent, at "
        "most 100; null when nobody is available or the interval is empty"
    )
    erlang_agents_needed: int | None = Field(
        description="Erlang C agents needed to meet the service-level target at the "
        "interval's arrival rate (offered / length) and AHT; null without an AHT yet or "
        "past 10,000 agents"
    )


class QueueStats(BaseModel):
    queue_id: int = Field(description="the queue's id")
    queue: str = Field(description="the queue's name")
    at: datetime = Field(description="when the figures were read (database time)")
    live: LiveFigures = Field(description="the queue right now")
    interval: IntervalFigures = Field(description="counts and rates over the interval")
