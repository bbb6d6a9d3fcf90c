"""The events routing writes to the log: their names and the shape of their payloads.

Theory of operation: every event routing records, from Python (``contacts.contact_event``,
``offers.offer_event``, ``work.state_event``, the queue service) or from SQL (the admission
statement's ``contact.queued``, the round write's ``offer.created`` and
``agent.state_changed``), has its name in one of the enums below and its payload declared by
the ``TypedDict`` that ``PAYLOADS`` maps the name to. Producers name events by these enums and
build payloads with these keys; readers (the dispatcher's wake-ups, the figures, the realtime
layer) read them by the same names. A test drives every producer and holds each logged
payload, the SQL-built ones included, against its declared type (no key missing, none extra,
each value of its type).

Payload values are JSON: timestamps are ISO-8601 strings, durations seconds as floats.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict

_CLOSED = ConfigDict(extra="forbid")


class ContactEventType(StrEnum):
    QUEUED = "contact.queued"
    REQUEUED = "contact.requeued"
    CONNECTED = "contact.connected"
    WRAP_UP = "contact.wrap_up"
    COMPLETED = "contact.completed"
    ABANDONED = "contact.abandoned"
    CANCELED = "contact.canceled"
    TRANSFERRED = "contact.transferred"
    TIMED_OUT = "contact.timed_out"


class OfferEventType(StrEnum):
    CREATED = "offer.created"
    ACCEPTED = "offer.accepted"
    REJECTED = "offer.rejected"
    EXPIRED = "offer.expired"
    RESCINDED = "offer.rescinded"


class AgentWorkEventType(StrEnum):
    """Routing's events about an agent: the state derived from their work."""

    STATE_CHANGED = "agent.state_changed"


class QueueEventType(StrEnum):
    CREATED = "queue.created"
    UPDATED = "queue.updated"


# --- contacts -----------------------------------------------------------------------------


@with_config(_CLOSED)
class ContactPayload(TypedDict):
    """What every contact event says about the contact."""

    contact_id: int
    queue_id: int
    channel: str
    tier: str
    agent_id: int | None
    wait_s: float  # since the contact first entered a queue, to its answer or to now


@with_config(_CLOSED)
class RequiredSkill(TypedDict):
    """A skill a contact requires of its agent, at least at ``min_level``."""

    skill: str
    min_level: int


@with_config(_CLOSED)
class Queued(ContactPayload):
    customer_id: int | None
    parent_id: int | None  # the contact this one continues (a transfer or an overflow)
    skills: list[RequiredSkill]  # what the agent who takes it must hold (maybe nothing)


@with_config(_CLOSED)
class Requeued(ContactPayload):
    cause: Literal["rejected", "no_answer", "agent_unavailable"]


@with_config(_CLOSED)
class WrapUp(ContactPayload):
    until: str
    disposition: str | None  # the one the conversation ended with


@with_config(_CLOSED)
class Completed(ContactPayload):
    handle_s: float
    wrap_up_s: float
    disposition: str | None


@with_config(_CLOSED)
class Abandoned(ContactPayload):
    short: bool  # left within the short-abandon threshold (not held against the service level)


@with_config(_CLOSED)
class Transferred(ContactPayload):
    to_contact_id: int
    to_queue_id: int


@with_config(_CLOSED)
class TimedOut(ContactPayload):
    overflow_contact_id: int | None
    overflow_queue_id: int | None


# --- offers, agents' work, queues ---------------------------------------------------------


@with_config(_CLOSED)
class OfferPayload(TypedDict):
    offer_id: int
    contact_id: int
    agent_id: int
    queue_id: int
    channel: str


@with_config(_CLOSED)
class OfferCreated(OfferPayload):
    reason: dict[str, Any]  # why this agent and this contact (the offer's ``reason``)
    expires_at: str


@with_config(_CLOSED)
class StateChanged(TypedDict):
    agent_id: int
    state: str
    previous: str
    contact_id: int | None


@with_config(_CLOSED)
class QueueCreated(TypedDict):
    name: str


@with_config(_CLOSED)
class QueueUpdated(TypedDict):
    fields: list[str]


PAYLOADS: dict[str, type[Any]] = {
    ContactEventType.QUEUED: Queued,
    ContactEventType.REQUEUED: Requeued,
    ContactEventType.CONNECTED: ContactPayload,
    ContactEventType.WRAP_UP: WrapUp,
    ContactEventType.COMPLETED: Completed,
    ContactEventType.ABANDONED: Abandoned,
    ContactEventType.CANCELED: ContactPayload,
    ContactEventType.TRANSFERRED: Transferred,
    ContactEventType.TIMED_OUT: TimedOut,
    OfferEventType.CREATED: OfferCreated,
    OfferEventType.ACCEPTED: OfferPayload,
    OfferEventType.REJECTED: OfferPayload,
    OfferEventType.EXPIRED: OfferPayload,
    OfferEventType.RESCINDED: OfferPayload,
    AgentWorkEventType.STATE_CHANGED: StateChanged,
    QueueEventType.CREATED: QueueCreated,
    QueueEventType.UPDATED: QueueUpdated,
}
