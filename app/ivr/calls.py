"""A call's steps through the IVR, each taken exactly once, whichever instance gets the webhook.

Theory of operation
-------------------

A webhook is one ``Delivery``: the provider's call id, the step it answers (the number the
shell put in the action URL, or the JSON event's ``step``; 0 for the incoming call), the
provider's idempotency token if it sent one, and the machine event. ``take_step`` runs it in
the request's transaction:

1. **Load and lock.** The call's row is read ``FOR UPDATE`` (an incoming call is inserted
   first, ``ON CONFLICT DO NOTHING``, pinned to the flow version its number has now, and
   returned by that insert). Every delivery for one call queues on this lock, on any
   instance. The flow version's key comes with the row, so a flow this process has parsed
   costs no statement of its own.
2. **Exactly once.** A step already taken (the same step number, or the same idempotency
   token) answers with the response stored for it, and nothing changes: a duplicate
   delivery, or a retry after a lost response, gets the same TwiML. (A delivery of the
   call's current step without a token has nothing stored to find: a step is stored in
   the transaction that moves the call past it.) Behind the lock,
   ``ivr_steps``' unique constraints ``(call_id, seq)`` and ``(call_id, token)`` refuse a
   second row for a step, so two deliveries cannot both advance the call even if the lock
   were missing.
3. **A step that does not fit** changes nothing: a call that has left the IVR
   (``CallNotInIvr``) or a step the call has not reached (``StepOutOfOrder``). The adapter
   decides what the provider hears (a polite goodbye, the wait loop, a 409).
4. **Advance.** The step runs (``app.ivr.advance``: the machine, its lookups, the terminal
   actions), and its rendered response is stored with it (``ivr_steps``): the call's new
   state and the step are written by one statement, in the same transaction.

The step's own statements (the lock, the insert of a new call, the stored step, the write)
are sent on the session's driver connection without the ORM, whose cost per statement was
most of a webhook's; the lookups and the admission a step may run share the transaction.

Nothing slow runs inline: every lookup is one indexed query, and nothing calls the provider.

The JSON webhooks' signatures are remembered here too (``remember_signature``), in the
request's transaction, so a captured request cannot be sent again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import driver_connection
from app.events.log import INSERT_ROWS as INSERT_EVENTS
from app.events.log import event_row, recorded, row_arrays
from app.ivr import machine, service
from app.ivr.advance import ACTOR, Context, Taken, advance
from app.ivr.events import IvrEventType
from app.ivr.exceptions import CallNotFound, CallNotInIvr, NotInService, StepOutOfOrder
from app.ivr.flow import Flow
from app.ivr.models import CallStatus, IvrCall, Provider, TelephonySignature
from app.ivr.vocabulary import CallStarted, Event

__all__ = ["ACTOR", "Context", "Delivery", "Render", "Reply", "Taken", "take_step"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook for a call: the step it answers, the provider's token, the event."""

    provider: Provider
    call_ref: str
    event: Event
    seq: int | None = None  # None: the call's current step (0 for an incoming call)
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """The response to a delivery, and whether it was the stored one of an earlier delivery."""

    body: str
    content_type: str
    replayed: bool = False
    call: IvrCall | None = field(default=None, compare=False)


Render = Callable[[Taken], tuple[str, str]]

# --- load and lock ---------------------------------------------------------------------------
#
# A step's own statements skip the ORM: they run on the session's driver connection, in its
# transaction (``app.db.driver_connection``), and the call they load is a transient
# ``IvrCall`` that no flush writes: ``_finish`` writes it back, with the step, in one
# statement. (``locked`` and ``save`` do the same for a status callback; ``get_call`` is the
# ORM's, for the paths that keep the row in the session.)

_CALL = """c.id, c.provider, c.call_ref, c.caller, c.called, c.flow_id, c.state::text AS state,
    c.step, c.status, c.contact_id, c.announced_position, c.transcript::text AS transcript,
    c.outcome, c.drop_node, c.provider_status, c.started_at, c.left_ivr_at, c.ended_at"""
LOCK_CALL = f"""
SELECT {_CALL}, f.name AS flow_name, f.version AS flow_version, f.uploaded_at AS flow_uploaded_at
FROM ivr_calls c JOIN ivr_flows f ON f.id = c.flow_id
WHERE c.provider = $1 AND c.call_ref = $2
FOR UPDATE OF c
"""
ANSWERING_KEY = """
SELECT f.id, f.name, f.version, f.uploaded_at
FROM ivr_numbers n JOIN ivr_flows f ON f.id = n.flow_id
WHERE n.number = $1
"""
# The new call and its ``ivr.call_started`` event (data as ``_started`` builds it).
START_CALL = f"""
WITH c AS (
    INSERT INTO ivr_calls (provider, call_ref, caller, called, flow_id, state, step, status,
        started_at)
    VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, 0, '{CallStatus.in_ivr.value}', $7)
    ON CONFLICT (provider, call_ref) DO NOTHING
    RETURNING *
),
logged AS (
    INSERT INTO events (type, subject_type, subject_id, data, actor)
    SELECT '{IvrEventType.CALL_STARTED}', 'ivr_call', c.id::text,
        jsonb_build_object('call_id', c.id, 'provider', c.provider, 'flow_id', c.flow_id,
            'called', c.called),
        '{ACTOR}'
    FROM c
)
SELECT {_CALL} FROM c
"""
STORED_STEP = """
SELECT response, content_type FROM ivr_steps
WHERE call_id = $1 AND (seq = $2 OR token = $3)
ORDER BY seq LIMIT 1
"""
_SET_CALL = """state = $2::text::jsonb, step = $3, status = $4, contact_id = $5,
    announced_position = $6, transcript = $7::text::jsonb, outcome = $8, drop_node = $9,
    left_ivr_at = $10, ended_at = $11, provider_status = $12"""
SAVE_CALL = f"""
WITH moved AS (UPDATE ivr_calls SET {_SET_CALL} WHERE id = $1)
{INSERT_EVENTS.format("$13", "$14", "$15", "$16", "$17")}
"""
FINISH_STEP = f"""
WITH moved AS (UPDATE ivr_calls SET {_SET_CALL}, heard_at = now() WHERE id = $1),
logged AS ({INSERT_EVENTS.format("$19", "$20", "$21", "$22", "$23")})
INSERT INTO ivr_steps (call_id, seq, token, event, response, content_type, at)
VALUES ($1, $13, $14, $15::text::jsonb, $16, $17, $18)
"""
_CALL_FIELDS = (
    "id", "provider", "call_ref", "caller", "called", "flow_id", "step", "status",
    "contact_id", "announced_position", "outcome", "drop_node", "provider_status",
    "started_at", "left_ivr_at", "ended_at",
)  # fmt: skip


def _transient(row: asyncpg.Record) -> IvrCall:
    """The call a row holds, outside the session: nothing the step changes is flushed."""
    return IvrCall(
        **{name: row[name] for name in _CALL_FIELDS},
        state=json.loads(row["state"]),
        transcript=json.loads(row["transcript"]),
    )


async def locked(
    session: AsyncSession, provider: Provider, call_ref: str
) -> tuple[IvrCall, Flow] | None:
    """The call, locked for the session's transaction and freshly read, and its flow; the
    call is transient: ``save`` writes what changed."""
    conn = await driver_connection(session)
    return await _locked_with_flow(session, conn, provider, call_ref)


async def save(session: AsyncSession, call: IvrCall, events: Sequence[dict[str, Any]] = ()) -> None:
    """Write a call read by ``locked`` back, and its ``events`` (``event_row``), in the
    session's transaction."""
    conn = await driver_connection(session)
    await conn.execute(SAVE_CALL, *_call_values(call), *row_arrays(events))
    recorded(session, events)


def _stored_state(call: IvrCall) -> str:
    """The state as it is written: once the call has left the IVR (an outcome, or ended),
    without the values collected from the caller (a resident ID among them), which nothing
    needs any more."""
    state = call.state
    left = call.outcome is not None or call.status == CallStatus.ended.value
    if left and isinstance(state, dict) and (state.get("collected") or state.get("pending")):
        state = {**state, "collected": {}, "pending": None}
    return json.dumps(state)


def _call_values(call: IvrCall) -> tuple[Any, ...]:
    return (
        call.id,
        _stored_state(call),
        call.step,
        call.status,
        call.contact_id,
        call.announced_position,
        json.dumps(call.transcript),
        call.outcome,
        call.drop_node,
        call.left_ivr_at,
        call.ended_at,
        call.provider_status,
    )


async def _locked_with_flow(
    session: AsyncSession, conn: asyncpg.Connection, provider: Provider, call_ref: str
) -> tuple[IvrCall, Flow] | None:
    """The call, locked and freshly read, and the flow it runs on: the version's key comes
    with the row, so a flow this process has parsed costs no statement of its own."""
    row = await conn.fetchrow(LOCK_CALL, provider.value, call_ref)
    if row is None:
        return None
    key = (row["flow_id"], row["flow_name"], row["flow_version"], row["flow_uploaded_at"])
    return _transient(row), await service.flow_by_key(session, key)


async def _start(
    session: AsyncSession,
    conn: asyncpg.Connection,
    delivery: Delivery,
    started: CallStarted,
    ctx: Context,
) -> tuple[IvrCall, Flow] | None:
    """Insert the call on its number's active flow version; None if a concurrent delivery
    inserted it first (this one then waits for its row's lock)."""
    called = service.number_key(started.called, ctx.region)
    key = await conn.fetchrow(ANSWERING_KEY, called)
    if key is None:
        raise NotInService(started.called)
    flow_id = key[0]
    flow = await service.flow_by_key(session, (key[0], key[1], key[2], key[3]))
    row = await conn.fetchrow(
        START_CALL,
        delivery.provider.value,
        delivery.call_ref,
        service.number_key(started.caller, ctx.region)[:32] or None,
        called[:32],
        flow_id,
        json.dumps(machine.new_call(flow).to_json()),
        ctx.now,
    )
    if row is None:
        return None
    call = _transient(row)
    recorded(session, [_started(call)])
    return call, flow


def _started(call: IvrCall) -> dict[str, Any]:
    """The event ``START_CALL`` writes with the call."""
    data = {"call_id": call.id, "provider": call.provider, "flow_id": call.flow_id}
    return event_row(
        IvrEventType.CALL_STARTED,
        subject_type="ivr_call",
        subject_id=call.id,
        data={**data, "called": call.called},
        actor=ACTOR,
    )


@dataclass(frozen=True, slots=True)
class _Loaded:
    call: IvrCall
    flow: Flow
    inserted: bool  # by this delivery: no step of it can be stored yet


async def _load(
    session: AsyncSession, conn: asyncpg.Connection, delivery: Delivery, ctx: Context
) -> _Loaded:
    found = await _locked_with_flow(session, conn, delivery.provider, delivery.call_ref)
    if found is None and isinstance(delivery.event, CallStarted):
        started = await _start(session, conn, delivery, delivery.event, ctx)
        if started is not None:
            return _Loaded(*started, inserted=True)
        found = await _locked_with_flow(session, conn, delivery.provider, delivery.call_ref)
    if found is None:
        raise CallNotFound(delivery.call_ref)
    return _Loaded(*found, inserted=False)


async def _finish(
    conn: asyncpg.Connection,
    call: IvrCall,
    delivery: Delivery,
    seq: int,
    reply: Reply,
    at: datetime,
    events: Sequence[dict[str, Any]],
) -> None:
    """Write the call as the step left it, the step with its response, and the step's
    events, in one statement."""
    await conn.execute(
        FINISH_STEP,
        *_call_values(call),
        seq,
        delivery.token or f"step:{seq}",
        json.dumps(event_json(delivery.event)),
        reply.body,
        reply.content_type,
        at,
        *row_arrays(events),
    )


# --- one step --------------------------------------------------------------------------------


async def take_step(
    session: AsyncSession, *, delivery: Delivery, ctx: Context, render: Render
) -> Reply:
    """Take the delivery's step once; a duplicate gets the stored response (see the module)."""
    conn = await driver_connection(session)
    loaded = await _load(session, conn, delivery, ctx)
    call = loaded.call
    seq = _seq(call, delivery)
    # Under the row's lock a step is stored only once the call has moved past it, so a
    # delivery of the current step without a token needs no look-up.
    if not loaded.inserted and (delivery.token is not None or seq < call.step):
        token = delivery.token if delivery.token is not None else f"step:{seq}"
        stored = await conn.fetchrow(STORED_STEP, call.id, seq, token)
        if stored is not None:
            return Reply(stored[0], stored[1], replayed=True, call=call)
    if call.status != CallStatus.in_ivr.value:
        raise CallNotInIvr(call.call_ref, call.status)
    if seq != call.step:
        raise StepOutOfOrder(call.call_ref, seq, call.step)
    taken = await advance(
        session, call, _for_machine(delivery.event, ctx), seq, ctx, flow=loaded.flow
    )
    body, content_type = render(taken)
    call.step = seq + 1
    reply = Reply(body, content_type, call=call)
    # The step's lookups and admission may have left changes in the session: they go first.
    conn = await driver_connection(session)
    await _finish(conn, call, delivery, seq, reply, ctx.now, taken.events)
    recorded(session, taken.events)
    return reply


def _for_machine(event: Event, ctx: Context) -> Event:
    """The event as the machine takes it: a new call's caller only if they can be called
    back (a withheld number is "", so a callback node knows it cannot promise one)."""
    if isinstance(event, CallStarted):
        return CallStarted(service.callable_number(event.caller, ctx.region), event.called)
    return event


def _seq(call: IvrCall, delivery: Delivery) -> int:
    if delivery.seq is not None:
        return delivery.seq
    return 0 if isinstance(delivery.event, CallStarted) else call.step


def event_json(event: Event) -> dict[str, Any]:
    """The event as stored with its step: its kind and, for keys and speech, how much (never
    the keys themselves: they may be an ID number)."""
    data: dict[str, Any] = {"kind": type(event).__name__}
    digits = getattr(event, "digits", None)
    if isinstance(digits, str):
        data["keys"] = len(digits)
    confidence = getattr(event, "confidence", None)
    if isinstance(confidence, float):
        data["confidence"] = confidence
    return data


# --- the JSON webhooks' signatures -------------------------------------------------------------


async def remember_signature(
    session: AsyncSession, signature: str, *, call_ref: str, now: datetime, window_s: float
) -> bool:
    """Note a JSON webhook's signature for the call ``call_ref``; False if it was seen before
    for that call (a replay). Another call's request may carry the same signature: the body
    it covers need not name the call, and two calls' providers may send the same event in the
    same second. Signatures older than twice the replay window are forgotten: their
    timestamps are refused anyway."""
    await session.execute(
        delete(TelephonySignature).where(
            TelephonySignature.seen_at < now - timedelta(seconds=2 * window_s)
        )
    )
    new = await session.scalar(
        insert(TelephonySignature)
        .values(signature=signature, call_ref=call_ref, seen_at=now)
        .on_conflict_do_nothing(index_elements=["signature", "call_ref"])
        .returning(TelephonySignature.signature)
    )
    return new is not None


async def locked_row(
    session: AsyncSession, *where: ColumnElement[bool], nowait: bool = False
) -> IvrCall | None:
    """The IVR call ``where`` picks, in the session, locked for its transaction and freshly
    read (``nowait``: a row another transaction holds raises at once, for a timer's handler);
    ``locked`` reads it as a transient call with its flow, for a step."""
    return await session.scalar(
        select(IvrCall)
        .where(*where)
        .with_for_update(nowait=nowait)
        .execution_options(populate_existing=True)
    )


async def get_call(session: AsyncSession, provider: Provider, call_ref: str) -> IvrCall | None:
    """The call's row as it is now, without a lock."""
    await session.flush()
    return await session.scalar(
        select(IvrCall)
        .where(IvrCall.provider == provider.value, IvrCall.call_ref == call_ref)
        .execution_options(populate_existing=True)
    )
