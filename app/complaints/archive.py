"""The archive: finished complaints archived on time, legal holds, and the records' sweeps.

Theory of operation
-------------------

**Archiving.** A complaint is finished once it is confirmed, closed, withdrawn or rejected
(``lifecycle.FINISHED``). ``archive_after_days`` (30 by default) after the move that finished
it, the archive sweep (``archive_due``, a periodic sweep of the timer worker) archives it
through the lifecycle: ``service.transition`` with the ``archive`` move, made by the desk
itself (``SYSTEM``, named ``system`` in the trail and the log), which writes the audit entry
and the ``complaint.status_changed`` event as any archive does; ``archived_at`` is set to the
same moment. From then on the complaint is read-only (every write refuses it with a 409
naming the status ``archived``), and still listed, searched and exported.

The sweep locks a batch of due complaints, oldest id first, ``FOR UPDATE SKIP LOCKED``, and
archives each in a savepoint of its own: one that fails is logged and left to the next
sweep while the rest of the batch goes on. It is idempotent: an archived complaint is no
longer finished, so a second sweep finds nothing. Two instances sweeping at once never wait
for each other (each skips the rows the other holds) and never archive one complaint twice
(a row the other archived after this one read it is excluded when it is locked: PostgreSQL
checks the condition again on the row's latest version).

A complaint archived by a request (``POST /complaints/{id}/archive``) gets its
``archived_at`` from its ``archive`` audit entry at the next sweep (``stamp``), so retention
counts from the true moment whichever way a complaint was archived.

**Legal holds.** ``place_hold`` puts a complaint (in any status, archived or not) under a
legal hold with a reason; ``lift_hold`` ends it. Each is an audit entry (``legal_hold_placed``
with the reason, ``legal_hold_lifted``) and an event. A held complaint is never anonymised
(the retention sweep passes it over, and a table constraint refuses it besides); lifting the
hold makes it eligible again at the next sweep. An anonymised complaint takes no hold: there
is nothing left to keep.

**Configuration** (``ArchiveConfig``): read from the environment with the service's prefix
(``HOTLINE_COMPLAINT_CLOSE_AFTER_DAYS``, ``HOTLINE_COMPLAINT_ARCHIVE_AFTER_DAYS``,
``HOTLINE_COMPLAINT_RETENTION_YEARS``, ...); the app takes ``app.state.complaint_archive``
instead when it is set (tests inject one). The close sweep (``app.complaints.autoclose``)
is registered here with the archive's, and reads the same configuration.

Decisions, and why
------------------

**When a complaint finished is read from its audit trail**, not kept in a column: the trail
is already the one record of when each move happened, and a column would have to be kept in
step by every move (a reopen and a second closure included). The sweep reads, for each
finished complaint, the latest entry that changed the status (notes and surveys written
after the closure keep the status and are passed over) through the trail's primary key,
walking back from its last entry: a few index reads per finished complaint per sweep.

**Small batches** (``sweep_batch``, 100): a sweep is one transaction, and a long one would
hold the event log back (every reader waits for the oldest open transaction).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Final

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.models import Role
from app.agents.permissions import Principal
from app.complaints import anonymise, lifecycle, retention, service
from app.complaints.archive_events import RecordEventType, record_event
from app.complaints.lifecycle import ComplaintEvent, ComplaintStatus
from app.complaints.models import Complaint, ComplaintAudit, iso
from app.complaints.schemas import TransitionFacts
from app.config import Settings
from app.db import database_unavailable
from app.errors import Conflict
from app.timers.worker import TimerRegistry

log = logging.getLogger(__name__)

ACTOR: Final = anonymise.ACTOR
ARCHIVE_SWEEP: Final = "complaints.archive"
RETENTION_SWEEP: Final = "complaints.retention"
HOLD_PLACED: Final = "legal_hold_placed"  # the audit trail's actions
HOLD_LIFTED: Final = "legal_hold_lifted"
MiB: Final = 1024 * 1024


class ArchiveConfig(BaseSettings):
    """When complaints are archived and anonymised, how the sweeps run, how large a file
    may be attached (``HOTLINE_COMPLAINT_`` and the field's name, upper-cased)."""

    model_config = SettingsConfigDict(
        env_prefix="HOTLINE_COMPLAINT_", env_file=".env", extra="ignore"
    )

    close_after_days: int = Field(
        default=7,
        ge=1,
        description="a resolved complaint the customer has not answered is closed this many "
        "days later",
    )
    archive_after_days: int = Field(
        default=30, ge=0, description="a finished complaint is archived this many days later"
    )
    retention_years: int = Field(
        default=3, ge=1, description="an archived complaint is anonymised this many years later"
    )
    sweep_every_s: float = Field(default=300, gt=0, description="how often the sweeps run")
    sweep_batch: int = Field(default=100, ge=1, description="complaints one sweep takes at most")
    attachment_max_bytes: int = Field(
        default=10 * MiB, ge=1, description="the largest file a complaint takes (413 past it)"
    )


@cache
def default_config() -> ArchiveConfig:
    """The configuration the environment gives, read once."""
    return ArchiveConfig()


@dataclass(frozen=True, slots=True)
class SystemPrincipal(Principal):
    """The desk itself acting (a sweep), named ``system`` in the trail and the log."""

    @property
    def actor(self) -> str:
        return ACTOR


SYSTEM: Final = SystemPrincipal(id=0, username=ACTOR, role=Role.admin, site=None)

# --- archiving -------------------------------------------------------------------------------


def finished_at() -> Any:
    """When the complaint entered its current status: its latest entry that changed it."""
    return (
        select(ComplaintAudit.at)
        .where(
            ComplaintAudit.complaint_id == Complaint.id,
            ComplaintAudit.before.is_distinct_from(ComplaintAudit.after),
        )
        .order_by(ComplaintAudit.seq.desc())
        .limit(1)
        .correlate(Complaint)
        .scalar_subquery()
    )


async def due_for_archive(
    session: AsyncSession, now: datetime, *, archive_after_days: int, limit: int
) -> Sequence[Complaint]:
    """Finished complaints due for the archive, locked; those another holds are skipped."""
    finished = [s.value for s in lifecycle.FINISHED]
    stmt = (
        select(Complaint)
        .where(
            Complaint.status.in_(finished),
            finished_at() <= retention.archive_cutoff(now, archive_after_days),
        )
        .order_by(Complaint.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(stmt)).all()


async def archive_one(
    session: AsyncSession, complaint: Complaint, now: datetime, desk: service.Desk
) -> bool:
    """Archive a locked, finished complaint in a savepoint; False (logged) if it failed."""
    return await sweep_move(
        session, complaint, ComplaintEvent.ARCHIVE, TransitionFacts(), now=now, desk=desk
    )


async def sweep_move(
    session: AsyncSession,
    complaint: Complaint,
    event: ComplaintEvent,
    facts: TransitionFacts,
    *,
    now: datetime,
    desk: service.Desk,
) -> bool:
    """A sweep's move of one complaint it has locked, by the desk's one transition path as
    the system, in a savepoint: False (logged) if it failed, so the sweep goes on with the
    rest and the next sweep tries this one again."""
    complaint_id = complaint.id  # a rolled-back savepoint expires the object
    try:
        async with session.begin_nested():
            await service.transition(
                session, complaint, event=event, facts=facts, principal=SYSTEM, now=now, desk=desk
            )
            await session.flush()
    except Exception as exc:
        if database_unavailable(exc):
            raise
        done = {ComplaintEvent.ARCHIVE: "archived", ComplaintEvent.CLOSE: "closed"}
        log.exception(
            "complaint %s not %s; the next sweep tries again",
            complaint_id,
            done.get(event, f"moved ({event.value})"),
        )
        return False
    return True


def _archive_entry_at() -> Any:
    return (
        select(ComplaintAudit.at)
        .where(
            ComplaintAudit.complaint_id == Complaint.id,
            ComplaintAudit.action == ComplaintEvent.ARCHIVE.value,
        )
        .order_by(ComplaintAudit.seq.desc())
        .limit(1)
        .correlate(Complaint)
        .scalar_subquery()
    )


async def stamp(session: AsyncSession, *, limit: int) -> int:
    """Give complaints archived by a request their ``archived_at``, from the audit trail."""
    unstamped = (
        select(Complaint.id)
        .where(Complaint.status == ComplaintStatus.archived.value, Complaint.archived_at.is_(None))
        .order_by(Complaint.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    stmt = (
        update(Complaint)
        .where(Complaint.id.in_(unstamped.scalar_subquery()))
        .values(archived_at=_archive_entry_at())
        .returning(Complaint.id)
        .execution_options(synchronize_session=False)
    )
    return len((await session.execute(stmt)).all())


async def archive_due(
    session: AsyncSession,
    now: datetime,
    *,
    config: ArchiveConfig | None = None,
    desk: service.Desk = service.DESK,
) -> int:
    """The archive sweep: archive the finished complaints that are due, stamp the ones
    archived by a request; returns how many it archived and stamped."""
    config = config or default_config()
    stamped = await stamp(session, limit=config.sweep_batch)
    due = await due_for_archive(
        session, now, archive_after_days=config.archive_after_days, limit=config.sweep_batch
    )
    archived = [c for c in due if await archive_one(session, c, now, desk)]
    return stamped + len(archived)


# --- legal holds -----------------------------------------------------------------------------


class AlreadyHeld(Conflict):
    def __init__(self, complaint: Complaint) -> None:
        since = iso(complaint.legal_hold_at) if complaint.legal_hold_at else "before"
        super().__init__(
            f"complaint {complaint.id} is already under a legal hold (since {since})",
            legal_hold=True,
        )


class NotHeld(Conflict):
    def __init__(self, complaint: Complaint) -> None:
        super().__init__(f"complaint {complaint.id} is not under a legal hold", legal_hold=False)


class AlreadyAnonymised(Conflict):
    def __init__(self, complaint: Complaint) -> None:
        super().__init__(
            f"complaint {complaint.id} was anonymised: no personal data is left to hold",
            status=complaint.status,
        )


def _trail(
    session: AsyncSession,
    complaint: Complaint,
    action: str,
    reason: str | None,
    *,
    principal: Principal,
    now: datetime,
) -> None:
    step = service.Step(action, complaint.status, complaint.status, reason=reason)
    service.write_audit(session, complaint, step, actor=principal.actor, at=now)


async def place_hold(
    session: AsyncSession,
    complaint: Complaint,
    *,
    reason: str,
    principal: Principal,
    now: datetime,
) -> Complaint:
    """Put a complaint the caller has locked under a legal hold: never anonymised."""
    if complaint.anonymised_at is not None:
        raise AlreadyAnonymised(complaint)
    if complaint.legal_hold:
        raise AlreadyHeld(complaint)
    complaint.legal_hold, complaint.legal_hold_reason = True, reason
    complaint.legal_hold_by, complaint.legal_hold_at = principal.actor, now
    _trail(session, complaint, HOLD_PLACED, reason, principal=principal, now=now)
    record_event(session, RecordEventType.LEGAL_HOLD_PLACED, complaint, actor=principal.actor)
    await session.flush()
    return complaint


async def lift_hold(
    session: AsyncSession, complaint: Complaint, *, principal: Principal, now: datetime
) -> Complaint:
    """End the legal hold of a complaint the caller has locked: retention applies again."""
    if not complaint.legal_hold:
        raise NotHeld(complaint)
    complaint.legal_hold, complaint.legal_hold_reason = False, None
    complaint.legal_hold_by, complaint.legal_hold_at = None, None
    _trail(session, complaint, HOLD_LIFTED, None, principal=principal, now=now)
    record_event(session, RecordEventType.LEGAL_HOLD_LIFTED, complaint, actor=principal.actor)
    await session.flush()
    return complaint


# --- the sweeps --------------------------------------------------------------------------------


def register(
    registry: TimerRegistry,
    settings: Settings,
    *,
    config: ArchiveConfig | None = None,
    desk: service.Desk | None = None,
) -> None:
    """Register the close, archive and retention sweeps with the timer worker (the archive's
    own knobs are ``ArchiveConfig``'s, read from the same environment as ``settings``)."""
    # Imported here: the close sweep builds on this module's configuration and actor.
    from app.complaints import autoclose

    chosen = config or default_config()
    the_desk = desk or service.desk_for(settings)

    async def close(session: AsyncSession, now: datetime) -> int:
        return await autoclose.close_due(session, now, config=chosen, desk=the_desk)

    async def archive(session: AsyncSession, now: datetime) -> int:
        return await archive_due(session, now, config=chosen, desk=the_desk)

    async def retain(session: AsyncSession, now: datetime) -> int:
        return await anonymise.retention_sweep(
            session, now, retention_years=chosen.retention_years, limit=chosen.sweep_batch
        )

    registry.register_sweep(autoclose.CLOSE_SWEEP, close, every_s=chosen.sweep_every_s)
    registry.register_sweep(ARCHIVE_SWEEP, archive, every_s=chosen.sweep_every_s)
    registry.register_sweep(RETENTION_SWEEP, retain, every_s=chosen.sweep_every_s)
