"""The classifier at work: suggestions for agents, and learning from what they decide.

Theory of operation
-------------------

**Suggesting.** ``GET /complaints/{id}/suggestion`` (read permission, recorded in the access
log like any read of a complaint) answers the categories, the severity and the explanation
``app.complaints.classifier`` gives for the complaint's text: its matter's description, its
grounds and its request (``complaint_text``). A suggestion is advice and nothing waits on it:
whatever goes wrong inside the classifier (a state that does not load, a bug in ``suggest``)
is logged as a warning and answered 200 with an empty suggestion. The complaint itself is
never touched.

**One model per process, one state for all.** What the desk has learned is one row of
``classifier_state``: the classifier's counts (``state``, JSON; null while nothing has been
learned, meaning the classifier trained on the shipped labelled set), a ``version`` that
every learning step raises, ``learned`` (how many classifications it has taken in) and the
event-log cursor it has read up to. Each process keeps the classifier it last built
(``Model``) with the ``(version, updated_at)`` it was built from; a suggestion first reads
that pair (one primary-key lookup) and rebuilds the classifier, in a worker thread, only when
it moved. So every instance picks up what any instance learned at its next suggestion.

**Learning** is a sweep of the timer worker (``learn_sweep``, registered by ``register``), so
no request waits for it. An agent's ``classify`` move is logged as a
``complaint.status_changed`` event with ``event: classify`` and, in the same transaction, an
audit entry ``classify`` whose facts hold the categories and severity the agent chose. The
sweep:

1. takes the log's readable head (``app.events.log.head``: below the oldest running
   transaction, so no event can later appear behind it);
2. locks the state row ``FOR UPDATE SKIP LOCKED``; if another instance holds it, it does
   nothing this turn (the other one is learning the same events);
3. reads the classify events after its cursor up to that head, at most ``LEARN_BATCH``;
4. pairs each event with its audit entry: moves on one complaint run one at a time (the
   service locks the complaint) and each writes one event and one entry, so the complaint's
   *n*-th classify event (by event id) is its *n*-th classify entry (by seq);
5. teaches a copy of the classifier each (text, categories, severity), and writes the new
   state, the raised version and the advanced cursor in the same transaction.

The cursor and the state commit together, under the row lock: each classification is learned
exactly once, whichever instance runs the sweep, however often, and a sweep that fails learns
nothing and moves nothing. A correction (a second ``classify``) is learned as one more
example; nothing is unlearned.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    SmallInteger,
    func,
    literal,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.agents.dependencies import CurrentPrincipal
from app.complaints.classifier import Classifier, Suggestion, default_classifier
from app.complaints.events import SUBJECT, ComplaintEventType
from app.complaints.lifecycle import ComplaintEvent
from app.complaints.models import Complaint, ComplaintAudit
from app.complaints.router import readable
from app.db import Base, Session
from app.events.log import Cursor, head
from app.events.models import Event
from app.timers.worker import TimerRegistry

log = logging.getLogger(__name__)

STATE_ID = 1
LEARN_SWEEP = "complaints.classifier_learning"
LEARN_EVERY_S = 30.0
LEARN_BATCH = 500
CLASSIFY = ComplaintEvent.CLASSIFY.value

# --- the table -------------------------------------------------------------------------------


class ClassifierState(Base):
    """What the desk's classifier has learned: one row, shared by every instance."""

    __tablename__ = "classifier_state"
    __table_args__ = (CheckConstraint(f"id = {STATE_ID}", name="single_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    state: Mapped[dict[str, Any] | None] = mapped_column(
        JSONB, comment="Classifier.to_state(); null: the shipped model, nothing learned yet"
    )
    version: Mapped[int] = mapped_column(
        BigInteger, nullable=False, server_default="0", comment="raised by every learning step"
    )
    learned: Mapped[int] = mapped_column(
        BigInteger, nullable=False, server_default="0", comment="classifications learned"
    )
    cursor_tx: Mapped[int] = mapped_column(
        BigInteger, nullable=False, server_default="0", comment="event-log cursor: tx"
    )
    cursor_id: Mapped[int] = mapped_column(
        BigInteger, nullable=False, server_default="0", comment="event-log cursor: id"
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


# --- the process's model -----------------------------------------------------------------------

Stamp = tuple[int, datetime | None]
"""Which stored state a classifier was built from: ``(version, updated_at)``."""

SHIPPED: Stamp = (0, None)


@cache
def shipped() -> Classifier:
    """The classifier trained on the shipped labelled set, built once per process (only
    read from: learning starts from a fresh copy)."""
    return default_classifier()


def build(state: Mapping[str, Any] | None) -> Classifier:
    """The classifier a stored state describes, to suggest with (the shipped one for none)."""
    return shipped() if state is None else Classifier.from_state(state)


class Model:
    """The classifier this process suggests with, rebuilt when the stored state moves."""

    def __init__(self) -> None:
        self._stamp: Stamp | None = None
        self._classifier: Classifier | None = None

    def forget(self) -> None:
        self._stamp, self._classifier = None, None

    async def current(self, session: AsyncSession) -> tuple[Stamp, Classifier]:
        """The classifier for the stored state, built again only if the state moved."""
        stamp = await _stamp(session)
        if stamp != self._stamp or self._classifier is None:
            stamp, state = await _stored(session)
            classifier = await asyncio.to_thread(build, state)
            self._stamp, self._classifier = stamp, classifier
        return stamp, self._classifier


MODEL = Model()


async def _stamp(session: AsyncSession) -> Stamp:
    stmt = select(ClassifierState.version, ClassifierState.updated_at)
    row = (await session.execute(stmt.where(ClassifierState.id == STATE_ID))).first()
    return SHIPPED if row is None else (row.version, row.updated_at)


async def _stored(session: AsyncSession) -> tuple[Stamp, dict[str, Any] | None]:
    row = await session.get(ClassifierState, STATE_ID, populate_existing=True)
    return (SHIPPED, None) if row is None else ((row.version, row.updated_at), row.state)


# --- suggesting ------------------------------------------------------------------------------


class Scored(BaseModel):
    name: str
    score: float


class EvidenceOut(BaseModel):
    category: str = Field(description="a suggested category")
    words: list[str] = Field(
        description="the complaint's words that weigh most for it, best first (at most 3; a "
        "single Chinese character is never shown, though it counts); #name is a concept the "
        "classifier knows in Chinese and English (#card, #money, "
        "#delivery, ...); empty: the category's share of past complaints alone"
    )


class SuggestionOut(BaseModel):
    """What the classifier suggests for a complaint; empty when it could not say."""

    complaint_id: int
    categories: list[Scored]
    severity: Scored | None
    explanation: str = Field(
        description="why, in one English line (the same facts as evidence and severity_cues)"
    )
    evidence: list[EvidenceOut] = Field(description="why each category is suggested, in its order")
    severity_cues: list[str] = Field(
        description="the severity cues the text has: fraud, harm, vulnerable, savings, threat, "
        "repeated, authority, and the largest amount as amount_small, amount_medium or "
        "amount_large",
    )
    language: str | None
    model_version: int | None


def complaint_text(complaint: Complaint) -> str:
    """The words a complaint is classified by: what happened, the grounds, the request."""
    return "\n".join((complaint.description, complaint.grounds, complaint.request))


def suggestion_out(complaint_id: int, suggestion: Suggestion, version: int) -> SuggestionOut:
    name, score = suggestion.severity
    return SuggestionOut(
        complaint_id=complaint_id,
        categories=[Scored(name=n, score=s) for n, s in suggestion.categories],
        severity=Scored(name=name, score=score),
        explanation=suggestion.explanation,
        evidence=[
            EvidenceOut(category=e.category, words=list(e.words)) for e in suggestion.evidence
        ],
        severity_cues=list(suggestion.cues),
        language=suggestion.language,
        model_version=version,
    )


def empty(complaint_id: int) -> SuggestionOut:
    return SuggestionOut(
        complaint_id=complaint_id,
        categories=[],
        severity=None,
        explanation="no suggestion: the classifier could not be consulted",
        evidence=[],
        severity_cues=[],
        language=None,
        model_version=None,
    )


async def suggest_for(
    session: AsyncSession, complaint: Complaint, *, model: Model = MODEL
) -> SuggestionOut:
    """The classifier's suggestion for ``complaint``; an empty one if the classifier fails."""
    try:
        (version, _), classifier = await model.current(session)
        suggestion = classifier.suggest(complaint_text(complaint))
    except Exception:
        log.warning("classifier failed on complaint %s", complaint.id, exc_info=True)
        return empty(complaint.id)
    return suggestion_out(complaint.id, suggestion, version)


# --- learning --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lesson:
    """One classification an agent made."""

    complaint_id: int
    text: str
    categories: tuple[str, ...]
    severity: str


async def _claim(session: AsyncSession) -> ClassifierState | None:
    """The state row, locked for this transaction; None while another instance holds it."""
    locked = select(ClassifierState).where(ClassifierState.id == STATE_ID)
    row = await session.scalar(locked.with_for_update(skip_locked=True))
    if row is not None:
        return row
    if await session.get(ClassifierState, STATE_ID) is not None:
        return None
    made = insert(ClassifierState).values(id=STATE_ID).on_conflict_do_nothing()
    if (await session.execute(made.returning(ClassifierState.id))).first() is None:
        return None
    return await session.scalar(locked.with_for_update())


def _classify_events() -> Any:
    return select(Event.id, Event.tx, Event.subject_id).where(
        Event.type == ComplaintEventType.STATUS_CHANGED.value,
        Event.subject_type == SUBJECT,
        Event.data["event"].astext == CLASSIFY,
    )


async def classify_events(
    session: AsyncSession, after: Cursor, upto: Cursor, *, limit: int
) -> list[tuple[Cursor, int, int]]:
    """``(cursor, event id, complaint id)`` of the classify events in ``(after, upto]``."""
    stmt = (
        _classify_events()
        .where(
            tuple_(Event.tx, Event.id) > tuple_(literal(after.tx), literal(after.id)),
            tuple_(Event.tx, Event.id) <= tuple_(literal(upto.tx), literal(upto.id)),
        )
        .order_by(Event.tx, Event.id)
        .limit(limit)
    )
    rows = await session.execute(stmt)
    return [(Cursor(r.tx, r.id), r.id, int(r.subject_id)) for r in rows]


async def _event_ids(session: AsyncSession, ids: set[int]) -> dict[int, list[int]]:
    """Each complaint's classify event ids, in order."""
    stmt = _classify_events().where(Event.subject_id.in_([str(i) for i in ids]))
    found: dict[int, list[int]] = defaultdict(list)
    for row in await session.execute(stmt.order_by(Event.id)):
        found[int(row.subject_id)].append(row.id)
    return found


async def _entries(session: AsyncSession, ids: set[int]) -> dict[int, list[ComplaintAudit]]:
    """Each complaint's classify audit entries, in order."""
    stmt = select(ComplaintAudit).where(
        ComplaintAudit.complaint_id.in_(ids), ComplaintAudit.action == CLASSIFY
    )
    found: dict[int, list[ComplaintAudit]] = defaultdict(list)
    for row in await session.scalars(stmt.order_by(ComplaintAudit.seq)):
        found[row.complaint_id].append(row)
    return found


def _lesson(complaint: Complaint | None, entry: ComplaintAudit | None) -> Lesson | None:
    facts = {} if entry is None else entry.data.get("facts", {})
    if complaint is None or "severity" not in facts:
        return None
    categories = tuple(str(c) for c in facts.get("categories", ()))
    return Lesson(complaint.id, complaint_text(complaint), categories, str(facts["severity"]))


async def lessons(session: AsyncSession, events: Sequence[tuple[Cursor, int, int]]) -> list[Lesson]:
    """What each classify event taught: the complaint's text and the agent's labels."""
    ids = {complaint_id for _, _, complaint_id in events}
    stmt = select(Complaint).where(Complaint.id.in_(ids))
    complaints = {c.id: c for c in await session.scalars(stmt)}
    event_ids, entries = await _event_ids(session, ids), await _entries(session, ids)
    taught: list[Lesson] = []
    for _, event_id, complaint_id in events:
        nth = event_ids[complaint_id].index(event_id)
        listed = entries[complaint_id]
        lesson = _lesson(complaints.get(complaint_id), listed[nth] if nth < len(listed) else None)
        if lesson is None:
            log.warning("classify event %s has no classification to learn from", event_id)
            continue
        taught.append(lesson)
    return taught


def learned_state(state: Mapping[str, Any] | None, taught: Sequence[Lesson]) -> dict[str, Any]:
    """The stored state after learning ``taught`` (a fresh classifier: the shared one is
    never changed in place)."""
    classifier = default_classifier() if state is None else Classifier.from_state(state)
    for lesson in taught:
        try:
            classifier.learn(lesson.text, lesson.categories, lesson.severity)
        except ValueError:
            log.warning("complaint %s: classification not learnable", lesson.complaint_id)
    return classifier.to_state()


async def learn_sweep(session: AsyncSession, now: datetime) -> int:
    """Learn the classifications made since the last sweep; returns how many."""
    upto = await head(session)
    row = await _claim(session)
    if row is None:
        return 0
    after = Cursor(row.cursor_tx, row.cursor_id)
    if upto <= after:
        return 0
    events = await classify_events(session, after, upto, limit=LEARN_BATCH)
    reached = events[-1][0] if len(events) == LEARN_BATCH else upto
    taught = await lessons(session, events)
    if taught:
        row.state = await asyncio.to_thread(learned_state, row.state, taught)
        row.version, row.learned = row.version + 1, row.learned + len(taught)
        row.updated_at = now
    row.cursor_tx, row.cursor_id = reached.tx, reached.id
    await session.flush()
    return len(taught)


def register(registry: TimerRegistry, every_s: float = LEARN_EVERY_S) -> None:
    """Learn from agents' classifications on every instance's timer worker."""
    registry.register_sweep(LEARN_SWEEP, learn_sweep, every_s=every_s)


# --- the route -------------------------------------------------------------------------------

router = APIRouter(prefix="/api/v1", tags=["complaints"])
ComplaintId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the complaint's id")]


@router.get("/complaints/{complaint_id}/suggestion", response_model=SuggestionOut)
async def get_suggestion(
    request: Request, complaint_id: ComplaintId, session: Session, principal: CurrentPrincipal
) -> SuggestionOut:
    """The classifier's suggested categories and severity for the complaint, with why;
    advice only: empty (still 200) when the classifier cannot say."""
    complaint = await readable(request, session, principal, complaint_id)
    return await suggest_for(session, complaint)
