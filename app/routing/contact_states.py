"""The contact lifecycle: every status a contact can have and every move between them.

Theory of operation
-------------------

A contact is created ``queued`` (``INITIAL``) and ends in exactly one terminal status
(invariant 1). In between it moves only when something happens to it, a ``ContactEvent``,
and ``_MOVES`` is the one list of what may happen in which status and where it leads, in the
manner of h11's "Rule 1": a ``(status, event)`` pair that is not in the table is not allowed,
and ``apply`` raises ``IllegalContactMove`` naming the status and the event. Nothing else
decides whether a move is allowed:

- the services (``contacts``, ``offers``, ``endings``) pass every Python status change through
  ``apply``; a request that asks for a move the table lacks gets the 409 the service maps
  the error to, and a timer whose move is no longer allowed (``allows`` is False) does
  nothing;
- the two SQL statements that write a status, the admission
  (``admission_statement.STATEMENT``, inserting ``INITIAL``) and the round's write
  (``rounds._WRITE``, ``queued`` → ``offered``), are held against this table by a test
  that reads their text.

The moves::

    queued ─offer─▶ offered ─answer─▶ connected ─complete─▶ wrap_up ─end_wrap_up─▶ completed
       ▲               │
       └───────────────┘ reject, expire, rescind: back in the queue, keeping its place
    queued, offered            ─abandon─▶  abandoned   (the customer left)
    queued, offered            ─cancel──▶  canceled    (the service withdrew it)
    queued, offered, connected ─transfer─▶ transferred (continues in another queue)
    queued                     ─time_out─▶ timed_out   (max wait; may continue in the overflow)

A ringing contact cannot time out: the max-wait timer waits for the offer to end and looks
again. Terminal statuses have no way out, so a second ending is always a table miss.

Event values are verbs, so an error reads "cannot abandon a contact that is completed".
Nothing here does I/O; the services lock, call, write and record events.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = [
    "INITIAL",
    "TERMINAL",
    "WAITING",
    "ContactEvent",
    "ContactStatus",
    "IllegalContactMove",
    "allows",
    "apply",
    "moves",
]


class ContactStatus(StrEnum):
    """Where a contact is in its life; the values are the ``contacts.status`` column's."""

    queued = "queued"
    offered = "offered"
    connected = "connected"
    wrap_up = "wrap_up"
    completed = "completed"
    abandoned = "abandoned"
    timed_out = "timed_out"
    transferred = "transferred"
    canceled = "canceled"


class ContactEvent(StrEnum):
    """Something that happens to a contact and may move its status."""

    OFFER = "offer"  # the dispatcher rings an agent
    ANSWER = "answer"  # the agent accepts the offer
    REJECT = "reject"  # the agent declines it
    EXPIRE = "expire"  # nobody answered within the ring timeout
    RESCIND = "rescind"  # the agent stopped being available while it rang
    COMPLETE = "complete"  # the conversation is over: after-contact work begins
    END_WRAP_UP = "end_wrap_up"  # after-contact work is done
    ABANDON = "abandon"  # the customer left before being answered
    CANCEL = "cancel"  # the service withdrew it before it was answered
    TRANSFER = "transfer"  # moved to another queue as a new contact
    TIME_OUT = "time_out"  # the queue's max wait passed


INITIAL: Final = ContactStatus.queued

# (status, event) -> the status after it. Every allowed move is listed; a missing pair is
# the typed error.
_MOVES: Final[dict[tuple[ContactStatus, ContactEvent], ContactStatus]] = {
    (ContactStatus.queued, ContactEvent.OFFER): ContactStatus.offered,
    (ContactStatus.queued, ContactEvent.ABANDON): ContactStatus.abandoned,
    (ContactStatus.queued, ContactEvent.CANCEL): ContactStatus.canceled,
    (ContactStatus.queued, ContactEvent.TRANSFER): ContactStatus.transferred,
    (ContactStatus.queued, ContactEvent.TIME_OUT): ContactStatus.timed_out,
    (ContactStatus.offered, ContactEvent.ANSWER): ContactStatus.connected,
    (ContactStatus.offered, ContactEvent.REJECT): ContactStatus.queued,
    (ContactStatus.offered, ContactEvent.EXPIRE): ContactStatus.queued,
    (ContactStatus.offered, ContactEvent.RESCIND): ContactStatus.queued,
    (ContactStatus.offered, ContactEvent.ABANDON): ContactStatus.abandoned,
    (ContactStatus.offered, ContactEvent.CANCEL): ContactStatus.canceled,
    (ContactStatus.offered, ContactEvent.TRANSFER): ContactStatus.transferred,
    (ContactStatus.connected, ContactEvent.COMPLETE): ContactStatus.wrap_up,
    (ContactStatus.connected, ContactEvent.TRANSFER): ContactStatus.transferred,
    (ContactStatus.wrap_up, ContactEvent.END_WRAP_UP): ContactStatus.completed,
}

TERMINAL: Final = frozenset(
    {
        ContactStatus.completed,
        ContactStatus.abandoned,
        ContactStatus.timed_out,
        ContactStatus.transferred,
        ContactStatus.canceled,
    }
)
# Not yet answered: counted as waiting in their queue.
WAITING: Final = frozenset({ContactStatus.queued, ContactStatus.offered})


class IllegalContactMove(Exception):
    """``event`` cannot happen to a contact in ``status``: a miss in the lifecycle table."""

    def __init__(self, status: ContactStatus, event: ContactEvent) -> None:
        super().__init__(f"cannot {event} a contact that is {status}")
        self.status = status
        self.event = event


def apply(status: ContactStatus, event: ContactEvent) -> ContactStatus:
    """The status after ``event``; raises ``IllegalContactMove`` if the table lacks the move."""
    try:
        return _MOVES[status, event]
    except KeyError:
        raise IllegalContactMove(status, event) from None


def allows(status: ContactStatus, event: ContactEvent) -> bool:
    """Whether ``event`` may happen in ``status`` (timers check before they act)."""
    return (status, event) in _MOVES


def moves() -> dict[tuple[ContactStatus, ContactEvent], ContactStatus]:
    """A copy of the table, for documentation and tests."""
    return dict(_MOVES)
