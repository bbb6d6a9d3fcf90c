"""Agent presence: the status an agent chooses and the state the system derives.

Theory of operation
-------------------

Presence has two independent halves, as in FreeSWITCH mod_callcenter and Amazon Connect.

**Status** is a choice: ``available`` (send me contacts), ``away`` (with a reason such as
``lunch``) or ``offline``. It is changed by the agent, by a supervisor, or by the system, and
``_STATUS_MOVES`` lists, for every ``(from, to)`` pair, which actors may make that move. The
system only ever puts an agent *away*: with the reserved reason ``no_answer`` after
``max_no_answer`` consecutive unanswered offers (see ``status_after_no_answers``) and with
``disconnected`` when the agent's console has been gone past its grace period. It never moves
an offline agent and never makes anyone available: coming back is the agent's decision.
People may not use the reserved reasons, so a ``no_answer`` in the history always means the
system did it.

``change_status`` validates the request (reason rules first, then the move table) and returns
a ``StatusChange``. Asking for the status and reason the agent already has is not an error but
a no-op: ``changed`` is ``False`` and the caller writes no event. ``away`` to ``away`` with a
different reason is a real change.

**State** is derived, never set. The service keeps a ``Work`` record of counts (live offers
ringing, connected contacts, contacts in after-contact work) and feeds it ``WorkEvent``s;
``_WORK_DELTAS`` says how each event moves the counts. An event that would drive a count below
zero (accepting an offer that does not exist, finishing wrap-up twice) is a table miss in
spirit and raises ``InvalidWorkTransition``. ``derive_state`` then reads the counts with a
fixed precedence: busy > offered > wrap_up > idle, because an agent on a call is busy whatever
else is pending.

Whether the router may offer more work is ``may_receive_offers``: only an *available* agent
whose derived state is not ``wrap_up``. Per-channel capacity is checked by the router, not
here. Note that an agent with a connected contact and another contact still in wrap-up derives
``busy``, so this function alone does not hold offers back for that pending wrap-up.

Nothing here does I/O or reads a clock; callers load, call, write and record events.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "DISCONNECTED_REASON",
    "MAX_REASON_LENGTH",
    "NO_ANSWER_REASON",
    "RESERVED_REASONS",
    "Actor",
    "InvalidStatusChange",
    "InvalidStatusReason",
    "InvalidWorkTransition",
    "PresenceError",
    "State",
    "Status",
    "StatusChange",
    "Work",
    "WorkEvent",
    "apply_work",
    "change_status",
    "derive_state",
    "may_receive_offers",
    "status_after_no_answers",
]


class Status(StrEnum):
    """The agent's own choice."""

    AVAILABLE = "available"
    AWAY = "away"
    OFFLINE = "offline"


class State(StrEnum):
    """What the agent is doing, derived from their work."""

    IDLE = "idle"
    OFFERED = "offered"
    BUSY = "busy"
    WRAP_UP = "wrap_up"


class Actor(StrEnum):
    """Who asks for a status change."""

    SELF = "self"
    SUPERVISOR = "supervisor"
    SYSTEM = "system"


class WorkEvent(StrEnum):
    """Something that happened to the agent's offers or contacts."""

    OFFER_CREATED = "offer_created"
    OFFER_ACCEPTED = "offer_accepted"
    OFFER_REJECTED = "offer_rejected"
    OFFER_EXPIRED = "offer_expired"
    OFFER_RESCINDED = "offer_rescinded"
    CONTACT_ENDED = "contact_ended"
    CONTACT_DROPPED = "contact_dropped"
    WRAP_UP_DONE = "wrap_up_done"


NO_ANSWER_REASON: Final = "no_answer"
DISCONNECTED_REASON: Final = "disconnected"
RESERVED_REASONS: Final = frozenset({NO_ANSWER_REASON, DISCONNECTED_REASON})
MAX_REASON_LENGTH: Final = 64

_PEOPLE: Final = frozenset({Actor.SELF, Actor.SUPERVISOR})
_EVERYONE: Final = frozenset(Actor)

# (from, to) -> who may make the move. Every pair is listed; an actor missing from the set
# is the table miss.
_STATUS_MOVES: Final[dict[tuple[Status, Status], frozenset[Actor]]] = {
    (Status.OFFLINE, Status.OFFLINE): _PEOPLE,
    (Status.OFFLINE, Status.AVAILABLE): _PEOPLE,
    (Status.OFFLINE, Status.AWAY): _PEOPLE,
    (Status.AVAILABLE, Status.AVAILABLE): _PEOPLE,
    (Status.AVAILABLE, Status.AWAY): _EVERYONE,
    (Status.AVAILABLE, Status.OFFLINE): _PEOPLE,
    (Status.AWAY, Status.AWAY): _EVERYONE,
    (Status.AWAY, Status.AVAILABLE): _PEOPLE,
    (Status.AWAY, Status.OFFLINE): _PEOPLE,
}

_REASON_REQUIRED: Final[dict[Status, bool]] = {
    Status.AVAILABLE: False,
    Status.AWAY: True,
    Status.OFFLINE: False,
}

# event -> (offers, contacts, wrap_ups) deltas.
_WORK_DELTAS: Final[dict[WorkEvent, tuple[int, int, int]]] = {
    WorkEvent.OFFER_CREATED: (+1, 0, 0),
    WorkEvent.OFFER_ACCEPTED: (-1, +1, 0),
    WorkEvent.OFFER_REJECTED: (-1, 0, 0),
    WorkEvent.OFFER_EXPIRED: (-1, 0, 0),
    WorkEvent.OFFER_RESCINDED: (-1, 0, 0),
    WorkEvent.CONTACT_ENDED: (0, -1, +1),
    WorkEvent.CONTACT_DROPPED: (0, -1, 0),
    WorkEvent.WRAP_UP_DONE: (0, 0, -1),
}

_OFFERABLE: Final[frozenset[tuple[Status, State]]] = frozenset(
    {
        (Status.AVAILABLE, State.IDLE),
        (Status.AVAILABLE, State.OFFERED),
        (Status.AVAILABLE, State.BUSY),
    }
)

_ACTOR_NAMES: Final[dict[Actor, str]] = {
    Actor.SELF: "the agent",
    Actor.SUPERVISOR: "a supervisor",
    Actor.SYSTEM: "the system",
}

_MISSING_WORK: Final[dict[str, str]] = {
    "offers": "no live offer",
    "contacts": "no connected contact",
    "wrap_ups": "no contact in wrap-up",
}


class PresenceError(Exception):
    """Base of every presence error."""


class InvalidStatusChange(PresenceError):
    """The actor may not move the agent from the current status to the requested one."""

    def __init__(self, message: str, *, current: Status, requested: Status, actor: Actor) -> None:
        super().__init__(message)
        self.current = current
        self.requested = requested
        self.actor = actor


class InvalidStatusReason(InvalidStatusChange):
    """The reason is missing, not allowed, malformed or reserved for the system."""


class InvalidWorkTransition(PresenceError):
    """A work event that the agent's current work cannot absorb."""

    def __init__(self, message: str, *, work: Work, event: WorkEvent) -> None:
        super().__init__(message)
        self.work = work
        self.event = event


@dataclass(frozen=True, slots=True)
class StatusChange:
    """The outcome of a status request; ``changed`` is False for a no-op."""

    previous: Status
    status: Status
    reason: str | None
    changed: bool


@dataclass(frozen=True, slots=True)
class Work:
    """What the agent holds right now: live offers, connected contacts, wrap-ups."""

    offers: int = 0
    contacts: int = 0
    wrap_ups: int = 0

    def __post_init__(self) -> None:
        if min(self.offers, self.contacts, self.wrap_ups) < 0:
            raise ValueError(f"work counts must be non-negative, got {self}")


def change_status(
    current: Status,
    current_reason: str | None,
    requested: Status,
    reason: str | None,
    *,
    actor: Actor,
) -> StatusChange:
    """Validate a status request and say whether it changes anything."""
    clean = _clean_reason(reason)

    def fail(message: str, error: type[InvalidStatusChange]) -> InvalidStatusChange:
        return error(message, current=current, requested=requested, actor=actor)

    problem = _reason_problem(requested, clean, actor)
    if problem is not None:
        raise fail(problem, InvalidStatusReason)
    if actor not in _STATUS_MOVES[current, requested]:
        message = f"{_ACTOR_NAMES[actor]} cannot change status from {current} to {requested}"
        raise fail(message, InvalidStatusChange)
    changed = (requested, clean) != (current, current_reason)
    return StatusChange(previous=current, status=requested, reason=clean, changed=changed)


def _clean_reason(reason: str | None) -> str | None:
    """Strip a reason; a blank one counts as no reason."""
    if reason is None:
        return None
    return reason.strip() or None


def _reason_problem(requested: Status, reason: str | None, actor: Actor) -> str | None:
    """What is wrong with ``reason`` for ``requested``, or None."""
    if reason is None:
        if _REASON_REQUIRED[requested]:
            return f"status {requested} requires a reason (e.g. break, lunch, training, meeting)"
        return None
    if not _REASON_REQUIRED[requested]:
        return f"status {requested} takes no reason, but reason {reason!r} was given"
    if len(reason) > MAX_REASON_LENGTH:
        return f"reason must be at most {MAX_REASON_LENGTH} characters, got {len(reason)}"
    if not reason.isprintable():
        return "reason must not contain control characters"
    if actor is not Actor.SYSTEM and reason.casefold() in RESERVED_REASONS:
        return f"reason {reason!r} is reserved for the system"
    return None


def apply_work(work: Work, event: WorkEvent) -> Work:
    """The agent's work after ``event``; raises if a count would go negative."""
    d_offers, d_contacts, d_wrap_ups = _WORK_DELTAS[event]
    counts = {
        "offers": work.offers + d_offers,
        "contacts": work.contacts + d_contacts,
        "wrap_ups": work.wrap_ups + d_wrap_ups,
    }
    for name, value in counts.items():
        if value < 0:
            raise InvalidWorkTransition(_work_message(work, event, name), work=work, event=event)
    return Work(**counts)


def _work_message(work: Work, event: WorkEvent, missing: str) -> str:
    return (
        f"cannot apply {event}: the agent has {_MISSING_WORK[missing]} "
        f"(state {derive_state(work)}; offers={work.offers}, contacts={work.contacts}, "
        f"wrap_ups={work.wrap_ups})"
    )


def derive_state(work: Work) -> State:
    """Busy beats offered beats wrap-up beats idle."""
    if work.contacts > 0:
        return State.BUSY
    if work.offers > 0:
        return State.OFFERED
    if work.wrap_ups > 0:
        return State.WRAP_UP
    return State.IDLE


def may_receive_offers(status: Status, state: State) -> bool:
    """Only an available agent outside wrap-up; capacity is checked by the router."""
    return (status, state) in _OFFERABLE


def status_after_no_answers(consecutive_no_answers: int, max_no_answer: int) -> Status | None:
    """``Status.AWAY`` once the no-answer threshold is reached (0 disables it), else None."""
    if consecutive_no_answers < 0 or max_no_answer < 0:
        raise ValueError("no-answer counts must be non-negative")
    if max_no_answer and consecutive_no_answers >= max_no_answer:
        return Status.AWAY
    return None
