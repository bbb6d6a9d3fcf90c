"""Admission: the one way a contact enters a queue.

Theory of operation
-------------------

Every contact of every channel enters a queue here, with one set of rules: a REST contact
from the web and app channels (``POST /api/v1/contacts``, an agent's or a channel's token), an
IVR call (a system caller, no token), a transfer and a max-wait overflow (a continuation of an
earlier contact that keeps its enqueue time, deadline, tier and customer), and later a
callback or a complaint follow-up. The rules are those of the admission statement
(``admission_statement.STATEMENT``), which reads the facts and writes only when they all allow
it: the caller's sign-in (an agent's token still valid; a system caller has none), the
``Idempotency-Key`` (a retry gets the contact the first request created), the queue, the
channel it accepts, the customer, the skills the contact requires (each must exist; a
continuation keeps the earlier contact's), the tier and its deadline, and ``max_length``
with the overflow chain.

``admit`` runs the statement on the driver pool as its own transaction: on the hot path
(queues without a max length) it is one statement. ``admit_within`` runs it on the
connection of a SQLAlchemy session, in that session's transaction, for the services that hold
other locks (a transfer holds the contact being moved).

A queue's max length is a count of its live contacts, and a count on the statement's
snapshot cannot see admissions that commit while it runs: concurrent statements would all
see room. So the statement writes nothing when a queue it counted has a max length whose
admission lock the caller does not hold, and names every queue with a max length that the
overflow chain from the queue asked for can reach. The caller then takes those queues'
transaction-scoped advisory locks, in one order, and runs it again; the statement's READ
COMMITTED snapshot is taken after the locks, so it sees every admission to those queues
committed before, and the next waits until this one commits. ``admit`` does this in a new
transaction each time the statement names a queue it lacked (the set only grows, so this
ends); ``admit_within`` takes the locks in the caller's transaction, so the whole reachable
set is taken at once and in order (a queue's overflow re-pointed between the two runs is the
only way to need a second, out-of-order lock, which PostgreSQL's deadlock detection then
breaks by refusing one of the two).

**A max wait changed meanwhile.** A change of a queue's max wait re-times the contacts
already waiting in it (``service.update_queue``) before it commits. An admission whose
snapshot predates that commit, and whose contact the re-timing did not see, would keep the
old max wait (or none) for ever. So the statement reads the queue it admits into ``FOR
SHARE``: it waits for a change of the queue in flight to commit and then reads the queue as
committed, and a change waits for the admissions holding the queue to commit, so its
re-timing sees their contacts. Admissions do not wait for each other (share locks), and the
contact's foreign key already locks the same row (``FOR KEY SHARE``).

Nothing is written unless everything was allowed, so a refused admission changes nothing.
Python reads the facts in the order a client expects its errors (sign-in, key reused with
another request, unknown queue, channel, customer, unknown skill, full queue) and raises the
first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.dependencies import check_identity
from app.agents.exceptions import UnknownSkill
from app.agents.security import TokenClaims
from app.agents.service import Identity
from app.config import Settings
from app.customers import service as customers
from app.db import DriverPool, driver_connection, planned_once
from app.errors import InvalidInput
from app.events.log import wake_after_commit
from app.idempotency import check_key, fingerprint, key_reused
from app.routing import estimate, scoring, work
from app.routing.admission_statement import KEYS, LOCK, PRIOR, QUEUE_LOCKS, STATEMENT
from app.routing.exceptions import ChannelNotAccepted, QueueFull, UnknownQueue
from app.routing.models import Contact
from app.routing.schemas import ContactCreate
from app.timers.service import wake_worker_after_commit

TIMER_WAKE_HORIZON = timedelta(seconds=1)

__all__ = ["QUEUE_LOCKS"]

# --- who asks, and for what ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentCaller:
    """A signed-in user's token (checked again inside the statement)."""

    claims: TokenClaims

    @property
    def agent_id(self) -> int | None:
        return self.claims.agent_id

    @property
    def name(self) -> str:
        return f"agent:{self.claims.agent_id}"


@dataclass(frozen=True, slots=True)
class SystemCaller:
    """A part of the service that admits on its own authority (the IVR, a transfer, an
    overflow, a channel's service account): ``name`` is recorded as the event's actor and
    scopes its idempotency keys."""

    name: str
    agent_id: None = None


Caller = AgentCaller | SystemCaller


@dataclass(frozen=True, slots=True)
class Admission:
    """A contact to admit. A continuation (``parent_id`` set) keeps the earlier contact's
    place: its tier, enqueue time and deadline."""

    channel: str
    queue: int | str
    customer_id: int | None = None
    phone: str | None = None  # E.164: the customer is found by it, and it is the caller's
    subject: str | None = None
    language: str | None = None
    caller: str | None = None  # the number the contact comes from, when not ``phone``
    tier: str | None = None
    enqueued_at: datetime | None = None
    deadline_at: datetime | None = None
    parent_id: int | None = None
    avoid: tuple[int, ...] = ()  # queues the overflow chain must not enter
    skills: tuple[scoring.SkillReq, ...] = ()  # what the agent who takes it must hold
    # The channel (its API keys' name) that queued it, or the contact it continues: its keys
    # may report it abandoned. Not part of a request's fingerprint: the caller decides it.
    integration: str | None = None

    @classmethod
    def of(
        cls, data: ContactCreate, settings: Settings, *, integration: str | None = None
    ) -> Admission:
        """A REST request's admission, with its phone number normalised; ``integration``:
        the channel whose key asks (None: a person)."""
        customer = data.customer
        phone = None
        if customer is not None and customer.phone is not None:
            region = settings.default_phone_region
            phone = customers.clean_phone(customer.phone, region=region, field="customer.phone")
        return cls(
            channel=data.channel.value,
            queue=data.queue,
            customer_id=customer.id if customer else None,
            phone=phone,
            subject=data.subject,
            language=data.language,
            skills=tuple(scoring.SkillReq(s.skill, s.min_level) for s in data.skills),
            integration=integration,
        )

    @classmethod
    def continuing(
        cls, contact: Contact, queue: int | str, avoid: frozenset[int] = frozenset()
    ) -> Admission:
        """``contact`` continued in another queue, keeping its place; its overflow chain
        enters neither the queue the contact leaves nor those in ``avoid``."""
        return cls(
            channel=contact.channel,
            queue=queue,
            customer_id=contact.customer_id,
            subject=contact.subject,
            language=contact.language,
            caller=contact.caller,
            tier=contact.tier,
            enqueued_at=contact.enqueued_at,
            deadline_at=contact.deadline_at,
            parent_id=contact.id,
            avoid=(contact.queue_id, *sorted(avoid - {contact.queue_id})),
            skills=scoring.skill_reqs(contact.skills),
            integration=contact.integration,
        )


@dataclass(frozen=True, slots=True)
class Queued:
    """A contact just admitted, with what its caller is told."""

    contact: dict[str, Any]  # the columns ContactOut shows
    queue_name: str
    position: int
    wait: estimate.WaitEstimate
    wakes_timers: bool  # a max-wait timer is due before the worker would look
    caller_role: str | None  # the signed-in caller's role (None: a system caller)


@dataclass(frozen=True, slots=True)
class Retried:
    """The key was used before, for the same request: the contact it created."""

    contact_id: int


def key_scope(caller: Caller) -> str:
    who = caller.agent_id if caller.agent_id is not None else caller.name
    return f"{who}:contacts"


# --- on its own -----------------------------------------------------------------------------


async def warm(conn: asyncpg.Connection, settings: Settings) -> None:
    """Prepare and plan the statement on a new connection, by running it for an agent that
    cannot exist (ids start at 1): every fact is read, nothing is written."""
    nobody, nothing = AgentCaller(TokenClaims(0, 0)), Admission(channel="chat", queue=0)
    await conn.fetchrow(STATEMENT, *_arguments(nobody, nothing, None, "", settings), [])
    await conn.execute(LOCK, QUEUE_LOCKS, [])


async def admit(
    db: DriverPool,
    *,
    caller: Caller,
    admission: Admission,
    key: str | None,
    settings: Settings,
) -> Queued | Retried:
    """Admit a contact in its own transaction (one statement while no queue on the way has a
    max length). The caller wakes the event hub, the dispatcher and the timer worker."""
    digest = ""  # a request without a key is never compared with another
    if key is not None:
        check_key(key)
        digest = fingerprint(_fingerprinted(admission))
    arguments = _arguments(caller, admission, key, digest, settings)
    row = await db.fetchrow(STATEMENT, *arguments, [])
    assert row is not None  # the statement always returns its facts
    held: list[int] = []
    while row["locks"] is not None:
        held = sorted({*held, *row["locks"]})
        async with db.in_transaction() as conn:
            await conn.execute(LOCK, QUEUE_LOCKS, _lock_keys(held))
            # READ COMMITTED: this statement's snapshot, taken after the locks, sees every
            # admission to these queues committed before.
            row = await conn.fetchrow(STATEMENT, *arguments, held)
    retried = _refuse(row, caller=caller, admission=admission, key=key, digest=digest)
    if retried is not None:
        return retried
    if row["id"] is None:
        # A retry that raced the first request: the key is taken now, by a committed request.
        assert key is not None
        return await _retried(db, caller=caller, key=key, digest=digest)
    return _queued(row)


# --- in a session's transaction -------------------------------------------------------------


async def admit_within(
    session: AsyncSession, *, caller: Caller, admission: Admission, settings: Settings
) -> Contact:
    """Admit a contact in ``session``'s transaction (no idempotency key: the caller's own
    request is the unit); the new contact, loaded in the session. Raises as ``admit``."""
    queued = await queue_within(session, caller=caller, admission=admission, settings=settings)
    contact = await session.get(Contact, queued.contact["id"])
    assert contact is not None
    return contact


async def queue_within(
    session: AsyncSession, *, caller: Caller, admission: Admission, settings: Settings
) -> Queued:
    """``admit_within`` without loading the contact: its columns, its position and its wait
    as the statement computed them, for a caller that needs no more (the IVR's enqueue)."""
    # The session's changes are flushed first: the log keeps the order they were made in.
    arguments = _arguments(caller, admission, None, "", settings)
    async with planned_once(await driver_connection(session)) as raw:
        row = await raw.fetchrow(STATEMENT, *arguments, [])
        if row["locks"] is not None:
            held = list(row["locks"])
            await raw.execute(LOCK, QUEUE_LOCKS, _lock_keys(held))
            row = await raw.fetchrow(STATEMENT, *arguments, held)
            if row["locks"] is not None:  # the chain changed between the two runs
                held = sorted({*held, *row["locks"]})
                await raw.execute(LOCK, QUEUE_LOCKS, _lock_keys(held))
                row = await raw.fetchrow(STATEMENT, *arguments, held)
    _refuse(row, caller=caller, admission=admission, key=None, digest="")
    assert row["id"] is not None
    queued = _queued(row)
    wake_after_commit(session)
    work.wake_dispatcher(session)
    if queued.wakes_timers:
        wake_worker_after_commit(session)
    return queued


# --- the statement's parameters and answer ------------------------------------------------


def _lock_keys(queue_ids: list[int]) -> list[int]:
    return sorted({i % KEYS for i in queue_ids})


def _fingerprinted(admission: Admission) -> dict[str, Any]:
    return {
        k: v for k, v in asdict(admission).items() if v not in (None, ()) and k != "integration"
    }


def _arguments(
    caller: Caller, admission: Admission, key: str | None, digest: str, settings: Settings
) -> tuple[Any, ...]:
    """The statement's parameters, in the order ``admission_statement`` gives."""
    default = settings.tiers[settings.default_tier]
    queue = admission.queue
    return (
        caller.agent_id,
        caller.claims.version if isinstance(caller, AgentCaller) else None,
        key_scope(caller),
        key,
        queue if isinstance(queue, int) else None,
        queue if isinstance(queue, str) else None,
        admission.customer_id,
        admission.phone,
        list(settings.tiers),
        [float(t.sl_target_s) for t in settings.tiers.values()],
        settings.default_tier,
        float(default.sl_target_s),
        digest,
        admission.channel,
        admission.subject,
        admission.language,
        caller.name,
        admission.caller,
        admission.tier,
        admission.enqueued_at,
        admission.deadline_at,
        admission.parent_id,
        list(admission.avoid),
        [req.skill for req in admission.skills],
        [req.min_level for req in admission.skills],
        admission.integration,
    )


def _refuse(
    row: asyncpg.Record, *, caller: Caller, admission: Admission, key: str | None, digest: str
) -> Retried | None:
    """Raise the first reason the statement wrote nothing, in the order clients expect; a
    retry of an earlier request is no refusal: it gets that request's contact."""
    if isinstance(caller, AgentCaller):
        identity = (
            Identity(
                caller.claims.agent_id,
                row["username"],
                row["role"],
                row["site"],
                row["active"],
                row["token_version"],
            )
            if row["known"]
            else None
        )
        check_identity(caller.claims, identity)
    if row["prior_hash"] is not None:
        if row["prior_hash"] != digest:
            assert key is not None
            raise key_reused(key)
        return Retried(row["prior_id"])
    if row["asked_id"] is None:
        raise UnknownQueue(admission.queue)
    channel = admission.channel
    if channel not in row["asked_channels"]:
        raise ChannelNotAccepted(row["asked_name"], channel, list(row["asked_channels"]))
    if admission.customer_id is not None and row["customer_id"] is None:
        raise InvalidInput(
            f"customer.id: customer {admission.customer_id} does not exist", field="customer"
        )
    if row["unknown_skills"] is not None:
        raise UnknownSkill(list(row["unknown_skills"]))
    if row["queue_id"] is None:
        raise QueueFull(row["full_name"], row["full_length"], asked=row["asked_name"])
    if channel not in row["queue_channels"]:
        raise QueueFull(row["queue_name"], row["queue_max_length"] or 0)
    return None


async def _retried(db: DriverPool, *, caller: Caller, key: str, digest: str) -> Retried:
    prior = await db.fetchrow(PRIOR, key_scope(caller), key)
    assert prior is not None, "a key that blocked the insert is committed"
    if prior["request_hash"] != digest:
        raise key_reused(key)
    return Retried(prior["resource_id"])


def _queued(row: asyncpg.Record) -> Queued:
    position = row["announced_position"] or 1
    wait = estimate.estimate_wait(position, row["handle_times"] or [], row["staffed"])
    contact = {
        "id": row["id"],
        "status": row["status"],
        "queue_id": row["queue_id"],
        "channel": row["channel"],
        "tier": row["tier"],
        "customer_id": row["contact_customer_id"],
        "subject": row["subject"],
        "language": row["language"],
        "skills": row["skills"],
        "enqueued_at": row["enqueued_at"],
        "deadline_at": row["deadline_at"],
    }
    max_wait = row["max_wait_s"]
    soon = datetime.now(UTC) + TIMER_WAKE_HORIZON
    arrived = row["routing_started_at"]
    wakes = max_wait is not None and arrived + timedelta(seconds=max_wait) <= soon
    return Queued(contact, row["queue_name"], position, wait, wakes, row["role"])
