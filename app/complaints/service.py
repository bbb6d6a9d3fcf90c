"""The complaint desk's service: register, link, move through the lifecycle, keep the trail.

Theory of operation
-------------------

Every function takes the request's session and ``now`` (the caller's clock, injected), and
never commits: the request's unit of work does, so a complaint, its clocks, its audit
entries and its events are durable together or not at all.

**Registration** checks what the request names (the customer, the contact), then, for a
known customer, takes a transaction-scoped advisory lock on that customer and looks for an
open complaint about the same matter (``same_matter``): the same branch with the two
occurrences within ``LinkRules.window`` (default 7 days) of each other, or descriptions
alike to at least ``LinkRules.similarity`` (difflib's ratio over the case-folded text
without spaces and punctuation, which compares Chinese and English alike without segmenting
words). A match gets the new facts appended to ``linked`` (an audit entry ``linked``; the
answer is the existing reference, ``linked: true``); the lock makes two registrations of one
matter racing through two channels end as one complaint. A registration marked ``separate``
(a different grievance that only looks like the open one) is a new complaint all the same,
and its ``registered`` entry names the open one (``separate_from``). Otherwise a new
complaint gets a reference (``reference.format_reference`` over a sequence), its clocks
(``clocks.policy_for`` over the desk's policies: the acknowledgement, stopped at once since
the reference is the acknowledgement, and the resolution, three calendar days), its first
audit entry, a ``complaint.registered`` event, each running clock's first alert timer (as
``deadlines.reschedule`` would set it) and the complainant's notice (as ``notices``
composes it).

A new complaint is the hot path, so it is written without the ORM, in a few statements on
the driver (``registration_statement``; ``register_on`` runs them on an asyncpg connection
in its transaction): the lock, one statement that reads every fact (and, when nothing can
be linked, takes the id and the reference number), and one that writes every row. Python
computes every value in between from the same functions the rest of the desk uses (the
clocks core, ``deadlines.pending``, ``chain``, ``search_terms``, ``notices.compose``): the
audit entry's hash needs the id and the reference, which is why the numbers are read first.
``register_new`` runs them on the driver pool, in a transaction of its own, with the
request's ``Idempotency-Key`` claimed by the writing statement together with the answer its
retries get; ``register`` runs them on a session's connection, in the session's transaction
(the route's linking path, the tests and any caller holding a session). Linking, which is
rare, stays on the ORM in a session: a registration on the driver that finds the same
matter open writes nothing, and the route registers it again in a session (``register``),
under the same lock, which links it (or, if the open complaint moved on meanwhile, creates).

**Moves** (``transition``) run on a complaint the caller locked (``get_or_raise(...,
for_update=True)``): the lifecycle table decides whether the move is allowed (else
``IllegalMove``, a 409 naming the status, before anything is written), ``lifecycle.missing``
names the facts it lacks (one 422 naming each), and then one handler per verb (``_HANDLERS``,
each a small function) changes the complaint and its clocks. The clocks' histories are the
truth: a pause appends ``{"start", "end": null, "reason"}``, a resume closes it, an extension
appends ``{"days", ...}``, a stop sets ``stopped_at``; after every move each clock's
``due_at`` is recomputed from its history by ``app.complaints.clocks``, and the complaint's
``due_at`` is its resolution clock's. A reopened complaint's resolution clock carries on: the
time between its stop and the reopen is recorded as a pause (``reopened``), so the clock
counts only the time the complaint was being handled.

**The audit trail** gets one entry per registration, link and move, in the same transaction,
chained by ``app.complaints.chain``; the complaint row keeps the head (``audit_seq``,
``audit_hash``), so ``audit_trail`` can tell a verified chain from an altered, reordered or
shortened one. The complainant and the matter enter the chain as a digest of the facts as
registered (``facts_sha256``); a move's facts and reason are written in clear, as the
entry's content, which the chain covers through a digest so that anonymisation can remove it
(``chain.redact``) and the trail still verifies.

Extension points: the assignment engine, the SLA timers (warnings and breaches read
``complaint_clocks``), notifications and the classifier's learning hook into the handlers
and the events recorded here.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import unicodedata
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any, Protocol

import asyncpg
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Text,
    all_,
    any_,
    bindparam,
    cast,
    false,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, TSQUERY
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.models import Agent, Role
from app.agents.permissions import Principal
from app.complaints import affinity, chain, deadlines, lifecycle, notices, search_terms
from app.complaints import registration_statement as rs
from app.complaints.calendar import WorkCalendar, china_calendar
from app.complaints.clocks import (
    DEFAULT_POLICIES,
    ClockError,
    ClockKind,
    ClockPolicy,
    ClockUnit,
    check_extension,
    due_at,
    policy_for,
)
from app.complaints.events import ComplaintEventType, complaint_event
from app.complaints.exceptions import (
    ComplaintNotFound,
    IllegalMove,
    InvalidComplaint,
    UnexpectedFacts,
    missing_for,
)
from app.complaints.lifecycle import ComplaintEvent, ComplaintStatus, EscalationLevel
from app.complaints.models import (
    Complaint,
    ComplaintAudit,
    ComplaintClock,
    end_pause,
    history_of,
    is_running,
    iso,
    policy_of,
    recompute,
    snapshot,
    stop_clock,
)
from app.complaints.reference import format_reference, registration_day
from app.complaints.schemas import ComplaintCreate, Matter, TransitionFacts
from app.config import Settings
from app.customers.identity import DEFAULT_PHONE_REGION
from app.db import DriverPool, driver_connection
from app.errors import AppError
from app.events.log import wake_after_commit
from app.idempotency import key_reused
from app.timers.service import WAKE_HORIZON, wake_worker_after_commit

# --- configuration -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkRules:
    """When a registration is the same matter as an open complaint of the same customer."""

    window: timedelta = timedelta(days=7)
    similarity: float = 0.6


REVIEW_POLICY = ClockPolicy(ClockKind.REVIEW, 3, ClockUnit.CALENDAR_DAYS)
"""A review's own clock: three calendar days, as the mission's rule for an answer."""


@cache
def default_calendar() -> WorkCalendar:
    """Mainland China's working days, from the published schedules the package knows."""
    return china_calendar(range(2004, 2041))


@dataclass(frozen=True, slots=True)
class Desk:
    """What the desk runs with: linking rules, clock policies, the working calendar, and the
    compensation (in CNY) above which a resolution needs a second person's approval."""

    link: LinkRules = field(default_factory=LinkRules)
    policies: tuple[ClockPolicy, ...] = (*DEFAULT_POLICIES, REVIEW_POLICY)
    calendar: WorkCalendar | None = None
    compensation_approval_above: Decimal = Decimal("500.00")
    # How long a complainant's new contact is offered to their complaint's handler first
    # (seconds; 0: not at all). See ``app.complaints.affinity``.
    complaint_affinity_s: float = affinity.DEFAULT_HOLD_S
    # Where a complainant's number written without its country code is read (the notices):
    # the service's ``HOTLINE_DEFAULT_PHONE_REGION`` (``desk_for``).
    phone_region: str = DEFAULT_PHONE_REGION

    def __post_init__(self) -> None:
        if not 0 <= self.complaint_affinity_s < float("inf"):  # NaN fails the test too
            raise ValueError("complaint_affinity_s must be a finite number >= 0")

    def work_calendar(self) -> WorkCalendar:
        return self.calendar or default_calendar()


DESK = Desk()


def desk_for(settings: Settings) -> Desk:
    """The desk with its defaults, reading numbers in the service's phone region."""
    return Desk(phone_region=settings.default_phone_region)


STARTED_AT_REGISTRATION = frozenset(ClockKind) - {ClockKind.REVIEW}
STOPPED_AT_REGISTRATION = frozenset({ClockKind.ACKNOWLEDGEMENT})
STOPPED_BY_RESOLUTION = frozenset({ClockKind.RESOLUTION, ClockKind.FIRST_REPLY, ClockKind.DECISION})
OPEN_STATUSES = [s.value for s in lifecycle.OPEN]

# --- reading -------------------------------------------------------------------------------


async def get_or_raise(
    session: AsyncSession, complaint_id: int, *, for_update: bool = False
) -> Complaint:
    """The complaint, locked for the transaction if ``for_update``; else a 404."""
    stmt = select(Complaint).where(Complaint.id == complaint_id)
    complaint = await session.scalar(stmt.with_for_update() if for_update else stmt)
    if complaint is None:
        raise ComplaintNotFound(complaint_id)
    return complaint


async def clocks_of(session: AsyncSession, complaint_id: int) -> list[ComplaintClock]:
    stmt = select(ComplaintClock).where(ComplaintClock.complaint_id == complaint_id)
    return list(await session.scalars(stmt.order_by(ComplaintClock.id)))


async def audit_entries(session: AsyncSession, complaint_id: int) -> list[ComplaintAudit]:
    stmt = select(ComplaintAudit).where(ComplaintAudit.complaint_id == complaint_id)
    return list(await session.scalars(stmt.order_by(ComplaintAudit.seq)))


def entry_of(row: ComplaintAudit) -> dict[str, Any]:
    """An audit row as the chain reads it."""
    names = (*chain.FIELDS, "content_sha256", "prev_hash", "hash")
    return {name: getattr(row, name) for name in names}


async def audit_trail(
    session: AsyncSession, complaint: Complaint
) -> tuple[list[ComplaintAudit], int | None]:
    """The entries, and the seq where the chain breaks (None if it verifies)."""
    rows = await audit_entries(session, complaint.id)
    bad = chain.verify([entry_of(r) for r in rows], head_hash=complaint.audit_hash)
    return rows, None if bad is None else bad + 1


@dataclass(frozen=True, slots=True)
class Filters:
    status: ComplaintStatus | None = None
    category: str | None = None
    assignee_id: int | None = None
    branch: str | None = None
    text: str | None = None
    only_ids: frozenset[int] | None = None  # these complaints only (None: no such limit)
    not_ids: frozenset[int] = frozenset()  # never these


def visible_to(principal: Principal) -> ColumnElement[bool]:
    """The complaints ``principal`` may list: an admin all; a supervisor their site's
    (assigned to its agents, or to nobody yet) and their own; an agent their own."""
    own = or_(Complaint.assignee_id == principal.id, Complaint.registered_by == principal.actor)
    if principal.role is Role.admin:
        return true()
    if principal.role is Role.supervisor:
        site = select(Agent.id).where(Agent.site == principal.site)
        return or_(own, Complaint.assignee_id.is_(None), Complaint.assignee_id.in_(site))
    if principal.role is Role.agent:
        return own
    return false()


def search_words(text: str | None) -> list[str]:
    """The words a ``text`` filter must all match (none for no text, or a blank one); a 422
    naming ``text`` when it has words of no letter or digit."""
    if not text or not text.strip():
        return []
    words = search_terms.query_terms(text)
    if not words:
        raise InvalidComplaint("text", "has no letter or digit to search for")
    return words


def _id_array(name: str, ids: frozenset[int]) -> Any:
    """``ids`` as one array parameter: an ``IN`` list binds one parameter per id, and the
    driver refuses a statement of more than 32,767 (an overdue filter of a large desk)."""
    return bindparam(name, sorted(ids), type_=ARRAY(BigInteger))


def _filtered(stmt: Any, filters: Filters) -> Any:
    if filters.status is not None:
        stmt = stmt.where(Complaint.status == filters.status.value)
    if filters.category is not None:
        stmt = stmt.where(Complaint.categories.any_() == filters.category)
    if filters.assignee_id is not None:
        stmt = stmt.where(Complaint.assignee_id == filters.assignee_id)
    if filters.branch is not None:
        stmt = stmt.where(Complaint.branch == filters.branch)
    if filters.only_ids is not None:
        stmt = stmt.where(Complaint.id == any_(_id_array("only_ids", filters.only_ids)))
    if filters.not_ids:
        stmt = stmt.where(Complaint.id != all_(_id_array("not_ids", filters.not_ids)))
    words = search_words(filters.text)
    if words:
        # Inline, not a parameter: a prepared statement's generic plan would estimate every
        # word alike, and walk the whole table in id order for a rare one.
        query = bindparam("text", search_terms.tsquery(words), Text, literal_execute=True)
        stmt = stmt.where(Complaint.search.bool_op("@@")(cast(query, TSQUERY)))
    return stmt


async def list_complaints(
    session: AsyncSession,
    *,
    principal: Principal,
    filters: Filters,
    after_id: int = 0,
    limit: int = 100,
) -> Sequence[Complaint]:
    """A page of the complaints ``principal`` may see, by id, after ``after_id``."""
    stmt = list_statement(principal=principal, filters=filters, after_id=after_id, limit=limit)
    return (await session.scalars(stmt)).all()


def list_statement(*, principal: Principal, filters: Filters, after_id: int, limit: int) -> Any:
    """The query of ``list_complaints``: what it binds does not grow with the ids filtered."""
    stmt = select(Complaint).where(visible_to(principal), Complaint.id > after_id)
    return _filtered(stmt, filters).order_by(Complaint.id).limit(limit)


def due_now(row: ComplaintClock, calendar: WorkCalendar, now: datetime) -> datetime:
    """A clock's deadline read at ``now``: a paused clock's moves on with its pause, which
    the stored ``due_at`` (as of the last move) does not."""
    return due_at(policy_of(row), history_of(row), calendar, now=max(now, row.started_at))


async def paused_due(
    session: AsyncSession, complaints: Sequence[Complaint], calendar: WorkCalendar, now: datetime
) -> dict[int, datetime]:
    """The resolution deadline at ``now`` of each paused complaint of ``complaints``, by id
    (the others' stored ``due_at`` is their deadline already)."""
    paused = [c.id for c in complaints if c.status == ComplaintStatus.paused.value]
    if not paused:
        return {}
    stmt = select(ComplaintClock).where(
        ComplaintClock.complaint_id.in_(paused),
        ComplaintClock.kind == ClockKind.RESOLUTION.value,
    )
    return {row.complaint_id: due_now(row, calendar, now) for row in await session.scalars(stmt)}


async def agent_site(session: AsyncSession, agent_id: int | None) -> str | None:
    if agent_id is None:
        return None
    return await session.scalar(select(Agent.site).where(Agent.id == agent_id))


# --- clocks ----------------------------------------------------------------------------------


def _new_clock(complaint: Complaint, policy: ClockPolicy, now: datetime) -> ComplaintClock:
    row = ComplaintClock(
        complaint_id=complaint.id,
        kind=policy.kind.value,
        policy=snapshot(policy),
        started_at=now,
        pauses=[],
        extensions=[],
    )
    if policy.kind in STOPPED_AT_REGISTRATION:
        row.stopped_at = now
    return row


def _resolution_due(rows: Sequence[ComplaintClock]) -> datetime | None:
    return next((r.due_at for r in rows if r.kind == ClockKind.RESOLUTION.value), None)


# --- the audit trail and the log ---------------------------------------------------------


def digest(value: object) -> str:
    """The SHA-256 of a value's canonical JSON: facts in the chain without personal data."""
    return hashlib.sha256(chain.canonical(value)).hexdigest()


@dataclass(frozen=True, slots=True)
class Step:
    """One audit entry to write."""

    action: str
    before: str | None
    after: str | None
    reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def chained(complaint: Complaint, step: Step, *, actor: str, at: datetime) -> dict[str, Any]:
    """``step`` as the entry after the complaint's recorded head, with its hashes."""
    entry: dict[str, Any] = {
        "complaint_id": complaint.id,
        "seq": complaint.audit_seq + 1,
        "at": at.astimezone(UTC),
        "actor": actor,
        "action": step.action,
        "before": step.before,
        "after": step.after,
        "reason": step.reason,
        "data": step.data,
    }
    return chain.link(complaint.audit_hash or chain.GENESIS, entry)


def write_audit(
    session: AsyncSession, complaint: Complaint, step: Step, *, actor: str, at: datetime
) -> None:
    """Append ``step`` to the complaint's chain and move its recorded head."""
    linked = chained(complaint, step, actor=actor, at=at)
    session.add(ComplaintAudit(**linked))
    complaint.audit_seq, complaint.audit_hash = linked["seq"], linked["hash"]


async def redact_audit(
    session: AsyncSession, complaint_id: int, *, keep: Collection[str] = ()
) -> int:
    """Remove the content of the complaint's audit entries (but those whose action is in
    ``keep``), keeping each digest; returns how many were redacted. Only for a complaint
    being anonymised: the caller appends the entry that records it (``chain.redact``)."""
    redacted = 0
    for row in await audit_entries(session, complaint_id):
        if row.action in keep or chain.is_redacted(entry_of(row)):
            continue
        done = chain.redact(entry_of(row))
        row.reason, row.data, row.content_sha256 = None, {}, done["content_sha256"]
        redacted += 1
    return redacted


def _due_text(complaint: Complaint) -> str | None:
    return None if complaint.due_at is None else iso(complaint.due_at)


def _base(complaint: Complaint) -> dict[str, Any]:
    return {
        "complaint_id": complaint.id,
        "reference": complaint.reference,
        "status": complaint.status,
    }


# --- registration --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registration:
    complaint: Complaint
    clocks: list[ComplaintClock]
    linked: bool


class Alike(Protocol):
    """What the same-matter check reads of an open complaint."""

    @property
    def branch(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def description(self) -> str: ...


@dataclass(frozen=True, slots=True)
class OpenComplaint:
    """An open complaint of the customer, as the registration's facts list it."""

    id: int
    branch: str
    occurred_at: datetime
    description: str


def _plain_text(value: str) -> str:
    kept = (c for c in unicodedata.normalize("NFKC", value).casefold() if c.isalnum())
    return "".join(kept)[:2000]


def similarity(a: str, b: str) -> float:
    """How alike two descriptions are, from 0 to 1 (difflib's ratio over plain text)."""
    return difflib.SequenceMatcher(None, _plain_text(a), _plain_text(b)).ratio()


def same_matter(open_one: Alike, matter: Matter, rules: LinkRules) -> bool:
    """Is ``matter`` the one ``open_one`` is about?"""
    same_branch = _plain_text(open_one.branch) == _plain_text(matter.branch)
    near = abs(open_one.occurred_at - matter.occurred_at) <= rules.window
    alike = similarity(open_one.description, matter.description) >= rules.similarity
    return (same_branch and near) or alike


def _facts(data: ComplaintCreate) -> dict[str, Any]:
    return data.model_dump(mode="json", exclude={"customer", "separate"})


async def link(
    session: AsyncSession, complaint: Complaint, *, data: ComplaintCreate, actor: str, now: datetime
) -> None:
    """Add a registration's facts to the open complaint about the same matter."""
    await session.refresh(complaint, with_for_update=True)
    facts = {"at": iso(now), "by": actor, **_facts(data)}
    complaint.linked = [*complaint.linked, facts]
    complaint.search = search_terms.of(complaint)
    data_ = {
        "channel": data.channel.value,
        "index": len(complaint.linked) - 1,
        "facts_sha256": digest(facts),
    }
    step = Step("linked", complaint.status, complaint.status, data=data_)
    write_audit(session, complaint, step, actor=actor, at=now)
    payload = {**_base(complaint), "channel": data.channel.value}
    complaint_event(
        session,
        ComplaintEventType.LINKED,
        complaint.id,
        payload,
        actor=actor,
        agent_id=complaint.assignee_id,
    )


@dataclass(frozen=True, slots=True)
class Keyed:
    """A request's ``Idempotency-Key``: its scope, the key and the request's fingerprint."""

    scope: str
    key: str
    request_hash: str


Answer = Callable[[Registration], tuple[int, Any]]
"""What a new complaint's request answers (status, JSON body): stored with its key."""


@dataclass(frozen=True, slots=True)
class Created:
    """A new complaint, written; ``wakes_timers``: a timer it set is due before the worker
    would look (a registration dated in the past)."""

    registration: Registration
    answer: tuple[int, Any] | None
    wakes_timers: bool


@dataclass(frozen=True, slots=True)
class Replayed:
    """The key was used before, for the same request: the answer stored for it."""

    answer: tuple[int, Any]


@dataclass(frozen=True, slots=True)
class SameMatter:
    """The customer's open complaint about the same matter: the registration links to it."""

    complaint_id: int


Outcome = Created | Replayed | SameMatter


@dataclass(frozen=True, slots=True)
class _New:
    """A new complaint as Python computes it from the facts, before it is written."""

    complaint: Complaint
    clocks: list[ComplaintClock]
    audit: dict[str, Any]
    event: dict[str, Any]
    timers: list[tuple[str, datetime, dict[str, Any]]]  # (clock kind, due, payload)
    notice: notices.Notice | None


def _new_complaint(
    data: ComplaintCreate, actor: str, now: datetime, complaint_id: int, reference: str
) -> Complaint:
    complaint = Complaint(
        id=complaint_id,
        reference=reference,
        status=lifecycle.INITIAL.value,
        channel=data.channel.value,
        customer_id=None if data.customer is None else data.customer.id,
        complainant_name=data.complainant.name,
        complainant_contact=data.complainant.contact,
        complainant_relation=data.complainant.relation.value,
        occurred_at=data.matter.occurred_at,
        location=data.matter.location,
        branch=data.matter.branch,
        description=data.matter.description,
        grounds=data.grounds,
        request=data.request,
        contact_id=data.contact_id,
        categories=[],
        escalation_level=EscalationLevel.agent.value,
        assignee_id=None,
        registered_by=actor,
        registered_at=now,
        facts={},
        linked=[],
        audit_seq=0,
        audit_hash=None,
    )
    complaint.search = search_terms.of(complaint)
    return complaint


def _new_clocks(
    complaint: Complaint, tier: str | None, now: datetime, desk: Desk
) -> list[ComplaintClock]:
    chosen = policy_for((), tier, complaint.channel, desk.policies)
    rows = [
        _new_clock(complaint, p, now) for k, p in chosen.items() if k in STARTED_AT_REGISTRATION
    ]
    for row in rows:
        recompute(row, desk.work_calendar(), now)
    return rows


def _first_alerts(
    rows: Sequence[ComplaintClock], desk: Desk
) -> list[tuple[str, datetime, dict[str, Any]]]:
    """Each running clock's timer, as ``deadlines.reschedule`` sets it (nothing fired yet)."""
    found = []
    for row in rows:
        upcoming = deadlines.pending(row, desk.work_calendar(), frozenset())
        if upcoming:
            found.append((row.kind, upcoming[0].at, deadlines.next_payload(row, upcoming[0])))
    return found


def _build(
    data: ComplaintCreate,
    facts: asyncpg.Record,
    numbers: tuple[int, int],
    *,
    actor: str,
    now: datetime,
    desk: Desk,
    separate_from: int | None = None,
) -> _New:
    """Every row of a new complaint, computed from the registration's facts
    (``separate_from``: the open complaint it was asked to stand apart from)."""
    reference = format_reference(registration_day(now), numbers[1])
    complaint = _new_complaint(data, actor, now, numbers[0], reference)
    clocks = _new_clocks(complaint, facts["customer_tier"], now, desk)
    complaint.due_at = _resolution_due(clocks)
    step_data = {
        "reference": complaint.reference,
        "channel": complaint.channel,
        "customer_id": complaint.customer_id,
        "facts_sha256": digest(_facts(data)),
    }
    if separate_from is not None:
        step_data["separate_from"] = separate_from
    step = Step("registered", None, complaint.status, data=step_data)
    audit = chained(complaint, step, actor=actor, at=now)
    complaint.audit_seq, complaint.audit_hash = audit["seq"], audit["hash"]
    event = {
        **_base(complaint),
        "channel": complaint.channel,
        "customer_id": complaint.customer_id,
        "due_at": _due_text(complaint),
        "agent_id": complaint.assignee_id,
    }
    notice = notices.registered_notice(
        complaint, facts["customer_language"], region=desk.phone_region
    )
    return _New(complaint, clocks, audit, event, _first_alerts(clocks, desk), notice)


def _write_arguments(new: _New, keyed: Keyed | None, answer: tuple[int, Any] | None) -> list[Any]:
    """``registration_statement.WRITE``'s parameters, in its order."""
    c, audit, notice = new.complaint, new.audit, new.notice
    return [
        None if keyed is None else keyed.scope,
        None if keyed is None else keyed.key,
        None if keyed is None else keyed.request_hash,
        None if answer is None else json.dumps(answer[1]),
        c.id,
        c.reference,
        c.status,
        c.channel,
        c.customer_id,
        c.complainant_name,
        c.complainant_contact,
        c.complainant_relation,
        c.occurred_at,
        c.location,
        c.branch,
        c.description,
        c.grounds,
        c.request,
        c.contact_id,
        c.escalation_level,
        c.registered_by,
        c.registered_at,
        c.due_at,
        c.audit_seq,
        c.audit_hash,
        c.search,
        [r.kind for r in new.clocks],
        [json.dumps(r.policy) for r in new.clocks],
        [r.stopped_at for r in new.clocks],
        [r.due_at for r in new.clocks],
        audit["action"],
        audit["before"],
        audit["after"],
        audit["reason"],
        json.dumps(audit["data"]),
        audit["prev_hash"],
        json.dumps(new.event),
        [kind for kind, _, _ in new.timers],
        [due for _, due, _ in new.timers],
        [json.dumps(payload) for _, _, payload in new.timers],
        *(
            [None] * 7
            if notice is None
            else [
                notice.channel.value,
                notice.recipient,
                notice.kind,
                notice.subject,
                notice.body,
                notice.language,
                notice.dedupe_key,
            ]
        ),
    ]


def _stored(request_hash: str, status: int, response: str, keyed: Keyed) -> Replayed:
    """The answer stored for the key; a 409 if it was stored for another request."""
    if request_hash != keyed.request_hash:
        raise key_reused(keyed.key)
    return Replayed((status, json.loads(response)))


def _check(data: ComplaintCreate, facts: asyncpg.Record) -> None:
    """A 422 for the first fact the request names that does not exist."""
    if data.customer is not None and facts["customer_id"] is None:
        raise InvalidComplaint("customer.id", f"customer {data.customer.id} does not exist")
    if data.contact_id is not None and not facts["contact_found"]:
        raise InvalidComplaint("contact_id", f"contact {data.contact_id} does not exist")


def _same_matter(facts: asyncpg.Record, matter: Matter, rules: LinkRules) -> int | None:
    """The newest open complaint of the customer about ``matter``, if any."""
    listed = zip(
        facts["open_ids"] or (),
        facts["branches"] or (),
        facts["occurred"] or (),
        facts["descriptions"] or (),
        strict=True,
    )
    found = (OpenComplaint(*values) for values in listed)
    return next((c.id for c in found if same_matter(c, matter, rules)), None)


async def register_on(
    conn: asyncpg.Connection,
    *,
    data: ComplaintCreate,
    actor: str,
    now: datetime,
    desk: Desk,
    keyed: Keyed | None = None,
    answer: Answer | None = None,
    locked: bool = False,
) -> Outcome:
    """Register on ``conn``, in its transaction: lock (unless ``locked``: the transaction
    began with ``rs.begin_locked``), read the facts, and write a new complaint in one
    statement; or the answer stored for the key, or the open complaint about the same
    matter (written nothing: the caller links)."""
    if data.customer is not None and not locked:
        await conn.execute(rs.LOCK, str(data.customer.id))
    facts = await conn.fetchrow(
        rs.FACTS,
        None if keyed is None else keyed.scope,
        None if keyed is None else keyed.key,
        None if data.customer is None else data.customer.id,
        data.contact_id,
        OPEN_STATUSES,
    )
    if keyed is not None and facts["prior_hash"] is not None:
        return _stored(facts["prior_hash"], facts["prior_status"], facts["prior_response"], keyed)
    _check(data, facts)
    existing = None if facts["open_ids"] is None else _same_matter(facts, data.matter, desk.link)
    if existing is not None and not data.separate:
        return SameMatter(existing)
    numbers = facts if facts["complaint_id"] is not None else await conn.fetchrow(rs.NUMBERS)
    new = _build(
        data,
        facts,
        (numbers["complaint_id"], numbers["number"]),
        actor=actor,
        now=now,
        desk=desk,
        separate_from=existing,
    )
    registration = Registration(new.complaint, new.clocks, linked=False)
    answered = None if answer is None else answer(registration)
    written = await conn.fetchrow(rs.WRITE, *_write_arguments(new, keyed, answered))
    if written["id"] is None:
        # A retry that raced the first request: the key is taken now, by a committed request.
        assert keyed is not None
        prior = await conn.fetchrow(rs.PRIOR, keyed.scope, keyed.key)
        return _stored(prior["request_hash"], prior["status_code"], prior["response"], keyed)
    ids = dict(zip(written["clock_kinds"], written["clock_ids"], strict=True))
    for row in new.clocks:
        row.id = ids[row.kind]
    soon = datetime.now(UTC) + WAKE_HORIZON
    wakes = any(due <= soon for _, due, _ in new.timers)
    return Created(registration, answered, wakes)


async def lock_customer(session: AsyncSession, data: ComplaintCreate) -> None:
    """Take the registration's lock on the customer ``data`` names (if any) now: before
    anything else the transaction locks, such as an idempotency key."""
    if data.customer is not None:
        conn = await driver_connection(session)
        await conn.execute(rs.LOCK, str(data.customer.id))


async def register(
    session: AsyncSession, *, data: ComplaintCreate, actor: str, now: datetime, desk: Desk = DESK
) -> Registration:
    """A new complaint with its clocks started, or the open one about the same matter, in
    the session's transaction."""
    conn = await driver_connection(session)
    outcome = await register_on(conn, data=data, actor=actor, now=now, desk=desk)
    if isinstance(outcome, SameMatter):
        existing = await get_or_raise(session, outcome.complaint_id)
        await link(session, existing, data=data, actor=actor, now=now)
        await notices.after_link(session, existing, now=now, region=desk.phone_region)
        return Registration(existing, await clocks_of(session, existing.id), linked=True)
    assert isinstance(outcome, Created)  # no key: nothing to replay
    wake_after_commit(session)
    if outcome.wakes_timers:
        wake_worker_after_commit(session)
    return outcome.registration


async def register_new(
    db: DriverPool,
    *,
    data: ComplaintCreate,
    actor: str,
    now: datetime,
    desk: Desk = DESK,
    keyed: Keyed | None,
    answer: Answer,
) -> Outcome:
    """Register a new complaint in a transaction of its own on the driver pool. A
    ``SameMatter`` outcome wrote nothing: the caller registers again in a session
    (``register``), which links. The caller wakes the event hub (and the timer worker when
    ``wakes_timers``) after a ``Created``."""
    # The customer's lock goes with the transaction's BEGIN: one round trip fewer.
    begin = None if data.customer is None else rs.begin_locked(data.customer.id)
    async with db.in_transaction(begin) as conn:
        try:
            return await register_on(
                conn,
                data=data,
                actor=actor,
                now=now,
                desk=desk,
                keyed=keyed,
                answer=answer,
                locked=begin is not None,
            )
        except AppError as error:
            # Refused before anything was written: the transaction ends as it would, and
            # the connection, whose state is known, goes back to the pool (an error raised
            # through ``in_transaction`` would close it).
            refused = error
    raise refused


# --- moves -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Move:
    """One transition in the making: what its handler may read and change."""

    session: AsyncSession
    complaint: Complaint
    clocks: dict[ClockKind, ComplaintClock]
    facts: TransitionFacts
    principal: Principal
    now: datetime
    desk: Desk
    data: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Move], Awaitable[None]]


async def _nothing(_: Move) -> None:
    return None


async def _classify(move: Move) -> None:
    move.complaint.categories = list(dict.fromkeys(move.facts.categories or ()))
    move.complaint.severity = None if move.facts.severity is None else move.facts.severity.value


async def _active_person(session: AsyncSession, agent_id: int) -> Agent | None:
    agent = await session.get(Agent, agent_id)
    return agent if agent is not None and agent.active else None


async def _assign(move: Move) -> None:
    assert move.facts.assignee is not None
    if await _active_person(move.session, move.facts.assignee) is None:
        raise InvalidComplaint(
            "assignee", f"agent {move.facts.assignee} does not exist or is not active"
        )
    move.data["previous_assignee_id"] = move.complaint.assignee_id
    move.complaint.assignee_id = move.facts.assignee


def pause_reason(value: str | None) -> lifecycle.PauseReason:
    """The listed reason ``value`` names; else a 422 listing them."""
    try:
        return lifecycle.PauseReason(value or "")
    except ValueError:
        listed = ", ".join(r.value for r in lifecycle.PauseReason)
        raise InvalidComplaint(
            "reason", f"a pause needs one of the listed reasons: {listed}"
        ) from None


async def _pause(move: Move) -> None:
    reason = pause_reason(move.facts.reason)
    for row in move.clocks.values():
        if is_running(row) and reason in policy_of(row).pause_reasons:
            row.pauses = [
                *row.pauses,
                {"start": iso(move.now), "end": None, "reason": reason.value},
            ]


async def _resume(move: Move) -> None:
    for row in move.clocks.values():
        if row.stopped_at is None:
            end_pause(row, move.now)


async def _check_approver(move: Move, event: ComplaintEvent) -> int | None:
    """The approver of the approval ``event`` uses, checked, locked and marked used by
    ``app.complaints.approvals``; None for a resolution that needs and names none."""
    # Imported here: the approvals build on this module's audit trail.
    from app.complaints import approvals

    return await approvals.for_move(move, event)


async def _extend(move: Move) -> None:
    kind = move.facts.clock or ClockKind.RESOLUTION
    row = move.clocks.get(kind)
    if row is None:
        raise InvalidComplaint("clock", f"the complaint runs no {kind.value} clock")
    assert move.facts.days is not None
    try:
        check_extension(policy_of(row), history_of(row), move.facts.days)
    except ClockError as exc:
        raise InvalidComplaint("days", str(exc)) from None
    approver_id = await _check_approver(move, ComplaintEvent.EXTEND)
    extension = {
        "days": move.facts.days,
        "reason": move.facts.reason,
        "approval_id": move.facts.approval,
        "approver_id": approver_id,
        "requested_by": move.principal.actor,
        "at": iso(move.now),
    }
    row.extensions = [*row.extensions, extension]
    move.data["clock"] = kind.value


async def _escalate(move: Move) -> None:
    assert move.facts.target is not None
    current = EscalationLevel(move.complaint.escalation_level)
    try:
        move.complaint.escalation_level = lifecycle.escalate_to(current, move.facts.target).value
    except ValueError as exc:
        raise InvalidComplaint("target", str(exc)) from None


async def _resolve(move: Move) -> None:
    await _check_approver(move, ComplaintEvent.RESOLVE)
    for kind in STOPPED_BY_RESOLUTION & move.clocks.keys():
        stop_clock(move.clocks[kind], move.now)


async def _stop_all(move: Move) -> None:
    for row in move.clocks.values():
        stop_clock(row, move.now)


async def _archive(move: Move) -> None:
    move.complaint.archived_at = move.now


async def _reopen(move: Move) -> None:
    row = move.clocks.get(ClockKind.RESOLUTION)
    if row is None or row.stopped_at is None:
        return
    gap = {"start": iso(row.stopped_at), "end": iso(move.now), "reason": "reopened"}
    row.pauses = [*row.pauses, gap]
    row.stopped_at = None


async def _request_review(move: Move) -> None:
    chosen = policy_for(move.complaint.categories, None, move.complaint.channel, move.desk.policies)
    policy = chosen.get(ClockKind.REVIEW)
    if policy is None:
        return
    row = move.clocks.get(ClockKind.REVIEW)
    if row is None:
        row = _new_clock(move.complaint, policy, move.now)
        move.session.add(row)
        move.clocks[ClockKind.REVIEW] = row
    row.policy, row.started_at, row.stopped_at = snapshot(policy), move.now, None
    row.pauses, row.extensions = [], []


async def _conclude_review(move: Move) -> None:
    row = move.clocks.get(ClockKind.REVIEW)
    if row is not None:
        stop_clock(row, move.now)


_E = ComplaintEvent
_HANDLERS: dict[ComplaintEvent, Handler] = {
    _E.CLASSIFY: _classify,
    _E.ASSIGN: _assign,
    _E.START: _nothing,
    _E.PAUSE: _pause,
    _E.RESUME: _resume,
    _E.EXTEND: _extend,
    _E.ESCALATE: _escalate,
    _E.RESOLVE: _resolve,
    _E.CONFIRM: _nothing,
    _E.CLOSE: _nothing,
    _E.ARCHIVE: _archive,
    _E.WITHDRAW: _stop_all,
    _E.REJECT: _stop_all,
    _E.REOPEN: _reopen,
    _E.REQUEST_REVIEW: _request_review,
    _E.CONCLUDE_REVIEW: _conclude_review,
}


def _let_go(move: Move) -> None:
    """Unassign a complaint moving where nobody holds one, recorded as an ``assign`` records
    the holder it replaces."""
    move.data["previous_assignee_id"] = move.complaint.assignee_id
    move.complaint.assignee_id = None


def _next_status(complaint: Complaint, event: ComplaintEvent) -> ComplaintStatus:
    try:
        return lifecycle.apply(ComplaintStatus(complaint.status), event)
    except lifecycle.IllegalComplaintMove as exc:
        raise IllegalMove(exc) from None


async def transition(
    session: AsyncSession,
    complaint: Complaint,
    *,
    event: ComplaintEvent,
    facts: TransitionFacts,
    principal: Principal,
    now: datetime,
    desk: Desk = DESK,
) -> Complaint:
    """Move a complaint the caller has locked: check, apply, update clocks, audit, log."""
    after = _next_status(complaint, event)
    given = facts.model_dump(mode="json", exclude_none=True)
    missing = lifecycle.missing(event, given)
    if missing:
        raise missing_for(event, missing)
    extra = lifecycle.unexpected(event, given)
    if extra:
        raise UnexpectedFacts(extra, what=event.value)
    rows = await clocks_of(session, complaint.id)
    move = Move(
        session, complaint, {ClockKind(r.kind): r for r in rows}, facts, principal, now, desk
    )
    previous_assignee = complaint.assignee_id
    await _HANDLERS[event](move)
    if after in lifecycle.UNHELD and complaint.assignee_id is not None:
        _let_go(move)
    before = complaint.status
    complaint.status = after.value
    complaint.facts = {**complaint.facts, event.value: given}
    for row in move.clocks.values():
        recompute(row, desk.work_calendar(), now)
    complaint.due_at = _resolution_due(list(move.clocks.values()))
    _log_move(session, complaint, event, before, given, move)
    await session.flush()
    await deadlines.reschedule(session, list(move.clocks.values()), desk.work_calendar())
    await notices.after_move(session, complaint, event, given, now, region=desk.phone_region)
    await affinity.after_move(session, complaint, event, previous_assignee, now, desk)
    return complaint


def _log_move(
    session: AsyncSession,
    complaint: Complaint,
    event: ComplaintEvent,
    before: str,
    given: dict[str, Any],
    move: Move,
) -> None:
    actor = move.principal.actor
    data = {"facts": given, **move.data}
    step = Step(event.value, before, complaint.status, reason=given.get("reason"), data=data)
    write_audit(session, complaint, step, actor=actor, at=move.now)
    payload = {
        **_base(complaint),
        "event": event.value,
        "previous": before,
        "assignee_id": complaint.assignee_id,
        "escalation_level": complaint.escalation_level,
        "due_at": _due_text(complaint),
    }
    previous_agent_id = move.data.get("previous_assignee_id", complaint.assignee_id)
    complaint_event(
        session,
        ComplaintEventType.STATUS_CHANGED,
        complaint.id,
        {**payload, "previous_agent_id": previous_agent_id},
        actor=actor,
        agent_id=complaint.assignee_id,
    )
