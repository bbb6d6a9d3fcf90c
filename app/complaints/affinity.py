"""What a complaint's handling asks of routing: its holder first when the customer calls.

Theory of operation
-------------------

A customer with a complaint being handled who phones or chats again should reach the
person handling it. Routing keeps, per customer, the agent their contacts are offered to
first and for how long after each contact queued (``app.routing.affinity``); the desk writes
it there through routing's service, so routing never reads a complaint.

``after_move`` runs after every move of a complaint (``service.transition``), the complaint
locked and its new status and holder written. For a move that can change who handles the
customer's complaints (``CHANGES_HANDLER``: any ``assign``, and every move into or out of
``HANDLED``) it works out the customer's answer afresh: among the customer's complaints in
``HANDLED`` with a holder, the one assigned most recently (by its latest ``assign`` entry;
then the highest id). If there is one, routing is asked to prefer its holder for
``Desk.complaint_affinity_s`` (60 s by default; 0 turns the affinity off), with the source
``complaint`` and the complaint's id as the reference; if there is none, the desk's own
preference is released. So a resolved, withdrawn, rejected, closed or archived complaint
gives the customer back to another handled complaint of theirs, or to the normal rules.
The same hook first keeps the team queue true (``team_queue.after_move``).

Decisions, and why
------------------

**Handled means someone is working it**: ``assigned``, ``in_progress``, ``paused`` and
``under_review``. A resolved complaint waits for the customer's answer; its handler's work
is done, and a caller who rings about something new should get the normal rules.

**Worked out afresh, under a lock per customer.** Two complaints of one customer can move
at once in two transactions. Each takes a transaction-scoped advisory lock on the customer
(``complaints:affinity:<id>``) before it reads, so the later one reads after the earlier
one committed and its answer stands: the row always ends as the customer's complaints say,
never as the last writer happened to leave it. The lock is taken only by moves that can
change the answer, at the end of the move, and nothing after it in a move waits for
another complaint, so two movers never wait for each other in a cycle.

**Most recently assigned wins** with two handled complaints: the customer most likely calls
about what moved last, and a reassignment (the complaint now has a new holder) is news to
them as well.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Final

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.complaints import lifecycle, team_queue
from app.complaints.lifecycle import ComplaintEvent, ComplaintStatus
from app.complaints.models import Complaint, ComplaintAudit
from app.routing import affinity as routing

if TYPE_CHECKING:
    from app.complaints.service import Desk

SOURCE: Final = "complaint"
DEFAULT_HOLD_S: Final = 60.0
HANDLED: Final = frozenset(
    {
        ComplaintStatus.assigned,
        ComplaintStatus.in_progress,
        ComplaintStatus.paused,
        ComplaintStatus.under_review,
    }
)
# Moves that can change who handles a customer's complaints: an assignment, or a move into
# or out of ``HANDLED`` (derived from the lifecycle table, so a new move is not forgotten).
CHANGES_HANDLER: Final = frozenset(
    {ComplaintEvent.ASSIGN}
    | {
        event
        for (before, event), after in lifecycle.moves().items()
        if (before in HANDLED) != (after in HANDLED)
    }
)

_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended('complaints:affinity:' || :id, 0))")


async def handler_of(session: AsyncSession, customer_id: int) -> tuple[int, int] | None:
    """(complaint id, holder) of the customer's handled complaint assigned most recently."""
    assigned_at = func.max(ComplaintAudit.at)
    stmt = (
        select(Complaint.id, Complaint.assignee_id)
        .join(ComplaintAudit, ComplaintAudit.complaint_id == Complaint.id)
        .where(
            Complaint.customer_id == customer_id,
            Complaint.status.in_([s.value for s in HANDLED]),
            Complaint.assignee_id.is_not(None),
            ComplaintAudit.action == ComplaintEvent.ASSIGN.value,
        )
        .group_by(Complaint.id)
        .order_by(assigned_at.desc(), Complaint.id.desc())
        .limit(1)
    )
    row = (await session.execute(stmt)).first()
    if row is None or row.assignee_id is None:
        return None
    return row.id, row.assignee_id


async def _release_ours(session: AsyncSession, customer_id: int) -> None:
    current = await routing.preferred(session, customer_id)
    if current is not None and current.source == SOURCE:
        await routing.release(
            session, customer_id=customer_id, source=SOURCE, ref=current.source_ref
        )


async def refresh(session: AsyncSession, customer_id: int, *, hold_s: float, now: datetime) -> None:
    """Make routing's preference for the customer what their handled complaints say."""
    await session.execute(_LOCK, {"id": str(customer_id)})
    found = await handler_of(session, customer_id) if hold_s > 0 else None
    if found is None:
        await _release_ours(session, customer_id)
        return
    complaint_id, agent_id = found
    current = await routing.preferred(session, customer_id)
    wanted = (agent_id, hold_s, SOURCE, str(complaint_id))
    if current is not None and wanted == (
        current.agent_id,
        current.hold_s,
        current.source,
        current.source_ref,
    ):
        return
    await routing.prefer_agent(
        session,
        customer_id=customer_id,
        agent_id=agent_id,
        hold_s=hold_s,
        source=SOURCE,
        ref=str(complaint_id),
        now=now,
    )


async def after_move(
    session: AsyncSession,
    complaint: Complaint,
    event: ComplaintEvent,
    previous_assignee: int | None,
    now: datetime,
    desk: Desk | None = None,
) -> None:
    """A move was made and recorded (the complaint holds its new status and assignee)."""
    await team_queue.after_move(session, complaint, event, previous_assignee)
    if complaint.customer_id is not None and event in CHANGES_HANDLER:
        hold_s = DEFAULT_HOLD_S if desk is None else desk.complaint_affinity_s
        await refresh(session, complaint.customer_id, hold_s=hold_s, now=now)
