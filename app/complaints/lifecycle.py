"""The complaint lifecycle: every status a complaint can have and every move between them.

Theory of operation
-------------------

A complaint is created ``registered`` (``INITIAL``) and ends ``archived`` (the only terminal
status: read-only, kept for the retention period). In between it moves only when something
happens to it, a ``ComplaintEvent`` whose value is the verb of its route
(``POST /complaints/{id}/{verb}``), and ``_MOVES`` is the one list of what may happen in which
status and where it leads, in the manner of h11's "Rule 1": a ``(status, event)`` pair that is
not in the table is not allowed, and ``apply`` raises ``IllegalComplaintMove``, which names the
current status and which the service answers with a 409. A timer whose move is no longer
allowed (``allows`` is False) does nothing.

The main line::

    registered ─classify─▶ classified
        │                      │
        └──────────────────────┴──────assign──────▶ assigned
                                                   │ start
                                                   ▼
                          paused ◀────pause──── in_progress
                             └───────resume──────▶ │
                                                   │ resolve
                                                   ▼
                    confirmed ◀──confirm──── resolved ────close────▶ closed
                        │                                              │
                        └─────────archive────────▶ archived ◀──archive─┘

The side paths (``registered … paused`` is registered, classified, assigned, in_progress and
paused: the statuses in which the complaint is being handled)::

    registered … paused          ─withdraw────────▶ withdrawn    (the complainant's choice)
    registered … paused          ─reject──────────▶ rejected     (not a complaint; reason given)
    withdrawn, rejected          ─archive─────────▶ archived
    withdrawn, rejected          ─reopen──────────▶ registered   (handled again from the top,
                                                                  unassigned: see UNHELD)
    resolved, confirmed, closed  ─reopen──────────▶ in_progress  (the handler carries on)
    confirmed, closed            ─request_review──▶ under_review ─conclude_review─▶ closed

Moves that keep the status. The status says where the work stands; these change who holds
it, how urgent it is or how long it may take, never where it stands::

    classify   in classified, assigned, in_progress, paused, under_review  (a correction)
    assign     in assigned, in_progress, paused, under_review              (reassignment)
    escalate   in registered … paused, under_review                        (a level up)
    extend     in assigned, in_progress, paused, under_review              (a clock extension)

Decisions, and why
------------------

**Escalation is an attribute, not a status.** A complaint carries an ``EscalationLevel``
(agent → supervisor → head office) that ``escalate`` raises while the status stays. The
issue's SLA warnings move a complaint up the ladder *while work goes on*: a complaint paused
for an external appraisal and escalated to head office is still paused, and its clock must
still be paused. A status ``escalated`` would have to forget where the work stood (and would
need an escalated twin of every working status to remember it). ``escalate_to`` never lowers
the level, so a warning that fires twice, or a head-office complaint escalated "to a
supervisor", changes nothing; ``next_level`` is the one step up a warning takes.

**Nothing waits on a category.** ``assign`` is allowed from ``registered``: a wrong or
missing classification never blocks handling (invariant 8), and ``classify`` stays allowed
as a correction wherever work is going on.

**Reassignment keeps the status and the clocks.** The new assignee carries on where the work
stands; a paused complaint stays paused, so reassigning never resumes a clock by accident.

**Silence closes.** A ``resolved`` complaint the customer does not answer is closed by the
desk's close sweep (``app.complaints.autoclose``) ``HOTLINE_COMPLAINT_CLOSE_AFTER_DAYS``
after its resolution, with the same ``close`` move a person makes; nothing here reads the
time.

**Withdraw and reject** are open while the complaint is being handled (``registered`` to
``paused``), not after it is resolved: by then the customer confirms, stays silent (``close``)
or asks to reopen. A rejection needs a reason, which the customer is told. Neither is a dead
end: until it is archived (by hand, or by the sweep ``HOTLINE_COMPLAINT_ARCHIVE_AFTER_DAYS``
after it finished) ``reopen`` brings the *same record* back to ``registered``, so a disputed
rejection never becomes a second record raised through another channel (the Taobao
failure). There is no other reopen window.

**Nobody holds a complaint in ``registered`` or ``classified``** (``UNHELD``): it gets a
holder with ``assign``, which takes it to ``assigned``. A move into one of them (a reopen of
a withdrawn or rejected complaint, handled again from the top) therefore lets go of the
holder it had, who could not ``start`` it from there and whom automatic assignment would
pass over as its current assignee; it is assigned afresh. The service records the holder it
let go of as an ``assign`` records the one it replaces.

**Reopen and review are different things.** ``reopen`` (until archived) sends a resolved,
confirmed or closed complaint back to ``in_progress``: the same record and the same handler,
with the clock policy the service configures. ``request_review`` asks, after closure, for a
second look at the decision: ``under_review`` has its own clock (the service starts it), can
be reassigned to a reviewer, escalated and extended, and ends with ``conclude_review`` (an
outcome, ``upheld`` or ``revised``, and its reasons) back in ``closed``. A review never sends
the work back to the handler.

**Extend** changes no status. It is allowed where someone is handling the complaint
(``assigned``, ``in_progress``, ``paused``, ``under_review``): an unassigned complaint that is
running late needs an assignee or an escalation, not more time.

**Archive** takes any finished complaint (``confirmed``, ``closed``, ``withdrawn``,
``rejected``); a ``resolved`` one is still waiting for the customer and must be confirmed or
closed first.

Facts
-----

``needs(event)`` lists the facts (request field names) a move requires; ``missing`` says
which of them a request lacks (absent, ``None``, blank or empty), sorted, so the service can
answer one 422 naming each. ``optional(event)`` lists facts a move may carry. Values with a
closed set of choices are enums here: ``PauseReason`` (a clock pauses only for a listed
reason), ``EscalationLevel`` (``ESCALATION_TARGETS`` are the levels one can escalate to) and
``ReviewOutcome``.

Nothing here does I/O or reads a clock; the service locks, calls, writes and records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sized
from enum import StrEnum
from typing import Any, Final

__all__ = [
    "DEADLINE_STOPPED",
    "ESCALATION_TARGETS",
    "FINISHED",
    "INITIAL",
    "OPEN",
    "TERMINAL",
    "UNHELD",
    "ComplaintEvent",
    "ComplaintStatus",
    "EscalationLevel",
    "IllegalComplaintMove",
    "PauseReason",
    "ReviewOutcome",
    "allows",
    "apply",
    "escalate_to",
    "missing",
    "moves",
    "needs",
    "next_level",
    "optional",
]


class ComplaintStatus(StrEnum):
    """Where a complaint is in its life; the values are the ``complaints.status`` column's."""

    registered = "registered"
    classified = "classified"
    assigned = "assigned"
    in_progress = "in_progress"
    paused = "paused"
    resolved = "resolved"
    confirmed = "confirmed"
    closed = "closed"
    under_review = "under_review"
    withdrawn = "withdrawn"
    rejected = "rejected"
    archived = "archived"


class ComplaintEvent(StrEnum):
    """Something done to a complaint; the value is the verb of its route."""

    CLASSIFY = "classify"  # categories and severity set or corrected
    ASSIGN = "assign"  # given to an agent or a team queue, or given to another
    START = "start"  # the assignee begins work
    PAUSE = "pause"  # waiting for a listed reason; the clocks stop
    RESUME = "resume"  # the wait is over; the clocks run again
    EXTEND = "extend"  # an approved clock extension
    ESCALATE = "escalate"  # one or more levels up the ladder
    RESOLVE = "resolve"  # resolution, root cause, corrective action, remedy
    CONFIRM = "confirm"  # the customer accepts the resolution
    CLOSE = "close"  # closed without confirmation (after the silence period: by the sweep)
    ARCHIVE = "archive"  # read-only from now on
    WITHDRAW = "withdraw"  # the complainant withdraws the complaint
    REJECT = "reject"  # not a complaint; the customer is told why
    REOPEN = "reopen"  # the same record is handled again, until it is archived
    REQUEST_REVIEW = "request_review"  # a second look at the decision after closure
    CONCLUDE_REVIEW = "conclude_review"  # the review's outcome


class PauseReason(StrEnum):
    """The only reasons a complaint's clocks may stop."""

    waiting_for_customer = "waiting_for_customer"
    external_appraisal = "external_appraisal"
    third_party_response = "third_party_response"
    legal_proceedings = "legal_proceedings"


class EscalationLevel(StrEnum):
    """Who answers for the complaint, lowest first."""

    agent = "agent"
    supervisor = "supervisor"
    head_office = "head_office"


class ReviewOutcome(StrEnum):
    """What a review decided about the original decision."""

    upheld = "upheld"
    revised = "revised"


INITIAL: Final = ComplaintStatus.registered

_S, _E = ComplaintStatus, ComplaintEvent

# (status, event) -> the status after it. Every allowed move is listed; a missing pair is
# the typed error.
# fmt: off
_MOVES: Final[dict[tuple[ComplaintStatus, ComplaintEvent], ComplaintStatus]] = {
    (_S.registered, _E.CLASSIFY):          _S.classified,
    (_S.registered, _E.ASSIGN):            _S.assigned,
    (_S.registered, _E.ESCALATE):          _S.registered,
    (_S.registered, _E.WITHDRAW):          _S.withdrawn,
    (_S.registered, _E.REJECT):            _S.rejected,
    (_S.classified, _E.CLASSIFY):          _S.classified,
    (_S.classified, _E.ASSIGN):            _S.assigned,
    (_S.classified, _E.ESCALATE):          _S.classified,
    (_S.classified, _E.WITHDRAW):          _S.withdrawn,
    (_S.classified, _E.REJECT):            _S.rejected,
    (_S.assigned, _E.CLASSIFY):            _S.assigned,
    (_S.assigned, _E.ASSIGN):              _S.assigned,
    (_S.assigned, _E.START):               _S.in_progress,
    (_S.assigned, _E.EXTEND):              _S.assigned,
    (_S.assigned, _E.ESCALATE):            _S.assigned,
    (_S.assigned, _E.WITHDRAW):            _S.withdrawn,
    (_S.assigned, _E.REJECT):              _S.rejected,
    (_S.in_progress, _E.CLASSIFY):         _S.in_progress,
    (_S.in_progress, _E.ASSIGN):           _S.in_progress,
    (_S.in_progress, _E.PAUSE):            _S.paused,
    (_S.in_progress, _E.EXTEND):           _S.in_progress,
    (_S.in_progress, _E.ESCALATE):         _S.in_progress,
    (_S.in_progress, _E.RESOLVE):          _S.resolved,
    (_S.in_progress, _E.WITHDRAW):         _S.withdrawn,
    (_S.in_progress, _E.REJECT):           _S.rejected,
    (_S.paused, _E.CLASSIFY):              _S.paused,
    (_S.paused, _E.ASSIGN):                _S.paused,
    (_S.paused, _E.RESUME):                _S.in_progress,
    (_S.paused, _E.EXTEND):                _S.paused,
    (_S.paused, _E.ESCALATE):              _S.paused,
    (_S.paused, _E.WITHDRAW):              _S.withdrawn,
    (_S.paused, _E.REJECT):                _S.rejected,
    (_S.resolved, _E.CONFIRM):             _S.confirmed,
    (_S.resolved, _E.CLOSE):               _S.closed,
    (_S.resolved, _E.REOPEN):              _S.in_progress,
    (_S.confirmed, _E.REOPEN):             _S.in_progress,
    (_S.confirmed, _E.REQUEST_REVIEW):     _S.under_review,
    (_S.confirmed, _E.ARCHIVE):            _S.archived,
    (_S.closed, _E.REOPEN):                _S.in_progress,
    (_S.closed, _E.REQUEST_REVIEW):        _S.under_review,
    (_S.closed, _E.ARCHIVE):               _S.archived,
    (_S.under_review, _E.CLASSIFY):        _S.under_review,
    (_S.under_review, _E.ASSIGN):          _S.under_review,
    (_S.under_review, _E.EXTEND):          _S.under_review,
    (_S.under_review, _E.ESCALATE):        _S.under_review,
    (_S.under_review, _E.CONCLUDE_REVIEW): _S.closed,
    (_S.withdrawn, _E.REOPEN):             _S.registered,
    (_S.withdrawn, _E.ARCHIVE):            _S.archived,
    (_S.rejected, _E.REOPEN):              _S.registered,
    (_S.rejected, _E.ARCHIVE):             _S.archived,
}
# fmt: on

TERMINAL: Final = frozenset({ComplaintStatus.archived})
# Handling is over; the complaint waits for its archive (or a reopen, or a review).
FINISHED: Final = frozenset(
    {
        ComplaintStatus.confirmed,
        ComplaintStatus.closed,
        ComplaintStatus.withdrawn,
        ComplaintStatus.rejected,
    }
)
# Nobody holds a complaint in these: a move into one leaves it unassigned.
UNHELD: Final = frozenset({ComplaintStatus.registered, ComplaintStatus.classified})
# Neither finished nor archived: the same matter raised again is linked to one of these.
OPEN: Final = frozenset(ComplaintStatus) - FINISHED - TERMINAL
# The open statuses a complaint reaches only through ``resolve``, which stops its resolution
# clock (a review that follows has a clock of its own).
DEADLINE_STOPPED: Final = frozenset({ComplaintStatus.resolved, ComplaintStatus.under_review})

_NEEDS: Final[dict[ComplaintEvent, frozenset[str]]] = {
    _E.CLASSIFY: frozenset({"categories", "severity"}),
    _E.ASSIGN: frozenset({"assignee"}),
    _E.START: frozenset(),
    _E.PAUSE: frozenset({"reason"}),
    _E.RESUME: frozenset(),
    _E.EXTEND: frozenset({"reason", "approval", "days"}),
    _E.ESCALATE: frozenset({"target"}),
    _E.RESOLVE: frozenset({"resolution", "root_cause", "corrective_action", "remedy"}),
    _E.CONFIRM: frozenset(),
    _E.CLOSE: frozenset(),
    _E.ARCHIVE: frozenset(),
    _E.WITHDRAW: frozenset(),
    _E.REJECT: frozenset({"reason"}),
    _E.REOPEN: frozenset({"reason"}),
    _E.REQUEST_REVIEW: frozenset({"reason"}),
    _E.CONCLUDE_REVIEW: frozenset({"outcome", "reason"}),
}

_OPTIONAL: Final[dict[ComplaintEvent, frozenset[str]]] = {
    _E.RESOLVE: frozenset({"compensation", "responsible_unit", "upheld", "approval"}),
    _E.EXTEND: frozenset({"clock"}),
    _E.ESCALATE: frozenset({"reason"}),
    _E.WITHDRAW: frozenset({"reason"}),
}

# Why, on any move: kept with the move's other facts on its audit entry.
ANY_MOVE: Final = frozenset({"reason"})

_RANK: Final[dict[EscalationLevel, int]] = {
    EscalationLevel.agent: 0,
    EscalationLevel.supervisor: 1,
    EscalationLevel.head_office: 2,
}
_LADDER: Final = tuple(sorted(EscalationLevel, key=_RANK.__getitem__))
ESCALATION_TARGETS: Final = frozenset(_LADDER[1:])


class IllegalComplaintMove(Exception):
    """``event`` cannot happen to a complaint in ``status``: a miss in the lifecycle table."""

    def __init__(self, status: ComplaintStatus, event: ComplaintEvent) -> None:
        super().__init__(f"cannot {event} a complaint that is {status}")
        self.status = status
        self.event = event


def apply(status: ComplaintStatus, event: ComplaintEvent) -> ComplaintStatus:
    """The status after ``event``; raises ``IllegalComplaintMove`` if the table lacks the move."""
    try:
        return _MOVES[status, event]
    except KeyError:
        raise IllegalComplaintMove(status, event) from None


def allows(status: ComplaintStatus, event: ComplaintEvent) -> bool:
    """Whether ``event`` may happen in ``status`` (timers check before they act)."""
    return (status, event) in _MOVES


def moves() -> dict[tuple[ComplaintStatus, ComplaintEvent], ComplaintStatus]:
    """A copy of the table, for documentation and tests."""
    return dict(_MOVES)


def needs(event: ComplaintEvent) -> frozenset[str]:
    """The facts (request field names) ``event`` requires."""
    return _NEEDS[event]


def optional(event: ComplaintEvent) -> frozenset[str]:
    """The facts ``event`` may carry besides the ones it needs."""
    return _OPTIONAL.get(event, frozenset())


def missing(event: ComplaintEvent, facts: Mapping[str, Any]) -> tuple[str, ...]:
    """The needed facts that ``facts`` lacks or leaves blank, sorted by name."""
    return tuple(sorted(name for name in _NEEDS[event] if _is_blank(facts.get(name))))


def unexpected(event: ComplaintEvent, facts: Mapping[str, Any]) -> tuple[str, ...]:
    """The facts given that ``event`` neither needs nor may carry, sorted by name."""
    taken = _NEEDS[event] | _OPTIONAL.get(event, frozenset()) | ANY_MOVE
    return tuple(sorted(name for name in facts if name not in taken))


def _is_blank(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, Sized):
        return len(value) == 0
    return value is None


def escalate_to(current: EscalationLevel, target: EscalationLevel) -> EscalationLevel:
    """The level after escalating to ``target``: the higher of the two, never lower."""
    if target not in ESCALATION_TARGETS:
        raise ValueError(f"a complaint can be escalated only to {_targets()}, not to {target}")
    return max(current, target, key=_RANK.__getitem__)


def next_level(current: EscalationLevel) -> EscalationLevel | None:
    """One step up the ladder (what an SLA warning does), or None at the top."""
    rank = _RANK[current] + 1
    return _LADDER[rank] if rank < len(_LADDER) else None


def _targets() -> str:
    return " or ".join(level.value for level in _LADDER if level in ESCALATION_TARGETS)
