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
   actions), and its rendered response is stored with it (``ivr_steps``), in the same
   transaction as the call's new state.

Nothing slow runs inline: every lookup is one indexed query, and nothing calls the provider.

The JSON webhooks' signatures are remembered here too (``remember_signature``), in the
request's transaction, so a captured request cannot be sent again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.events.log import record
from app.ivr import machine, service
from app.ivr.advance import ACTOR, Context, Taken, advance
from app.ivr.events import IvrEventType
from app.ivr.exceptions import CallNotFound, CallNotInIvr, NotInService, StepOutOfOrder
from app.ivr.flow import Flow
from app.ivr.models import CallStatus, IvrCall, IvrFlow, IvrStep, Provider, TelephonySignature
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


async def locked_call(session: AsyncSession, provider: Provider, call_ref: str) -> IvrCall | None:
    """The call's row, locked for this transaction and freshly read."""
    await session.flush()
    return await session.scalar(
        select(IvrCall)
        .where(IvrCall.provider == provider.value, IvrCall.call_ref == call_ref)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def _locked_with_flow(
    session: AsyncSession, provider: Provider, call_ref: str
) -> tuple[IvrCall, Flow] | None:
    """The call's row, locked and freshly read, and the flow it runs on: the version's key
    comes with the row, so a flow this process has parsed costs no statement of its own."""
    await session.flush()
    row = (
        await session.execute(
            select(IvrCall, IvrFlow.name, IvrFlow.version, IvrFlow.uploaded_at)
            .join(IvrFlow, IvrFlow.id == IvrCall.flow_id)
            .where(IvrCall.provider == provider.value, IvrCall.call_ref == call_ref)
            .with_for_update(of=IvrCall)
            .execution_options(populate_existing=True)
        )
    ).first()
    if row is None:
        return None
    call = row[0]
    return call, await service.flow_by_key(session, (call.flow_id, row[1], row[2], row[3]))


async def _start(
    session: AsyncSession, delivery: Delivery, started: CallStarted, ctx: Context
) -> tuple[IvrCall, Flow] | None:
    """Insert the call on its number's active flow version; None if a concurrent delivery
    inserted it first (this one then waits for its row's lock)."""
    key = await service.answering_key(session, started.called, ctx.region)
    if key is None:
        raise NotInService(started.called)
    flow_id = key[0]
    flow = await service.flow_by_key(session, key)
    called = service.number_key(started.called, ctx.region)[:32]
    call = await session.scalar(
        insert(IvrCall)
        .values(
            provider=delivery.provider.value,
            call_ref=delivery.call_ref,
            caller=service.number_key(started.caller, ctx.region)[:32] or None,
            called=called,
            flow_id=flow_id,
            state=machine.new_call(flow).to_json(),
            step=0,
            status=CallStatus.in_ivr.value,
            started_at=ctx.now,
        )
        .on_conflict_do_nothing(index_elements=["provider", "call_ref"])
        .returning(IvrCall)
    )
    if call is None:
        return None
    data = {
        "call_id": call.id,
        "provider": delivery.provider.value,
        "flow_id": flow_id,
        "called": called,
    }
    record(
        session,
        type=IvrEventType.CALL_STARTED,
        subject_type="ivr_call",
        subject_id=call.id,
        data=data,
        actor=ACTOR,
    )
    return call, flow


@dataclass(frozen=True, slots=True)
class _Loaded:
    call: IvrCall
    flow: Flow
    inserted: bool  # by this delivery: no step of it can be stored yet


async def _load(session: AsyncSession, delivery: Delivery, ctx: Context) -> _Loaded:
    found = await _locked_with_flow(session, delivery.provider, delivery.call_ref)
    if found is None and isinstance(delivery.event, CallStarted):
        started = await _start(session, delivery, delivery.event, ctx)
        if started is not None:
            return _Loaded(*started, inserted=True)
        found = await _locked_with_flow(session, delivery.provider, delivery.call_ref)
    if found is None:
        raise CallNotFound(delivery.call_ref)
    return _Loaded(*found, inserted=False)


async def _stored(
    session: AsyncSession, call: IvrCall, seq: int, token: str | None
) -> IvrStep | None:
    match = IvrStep.seq == seq if token is None else or_(IvrStep.seq == seq, IvrStep.token == token)
    return await session.scalar(
        select(IvrStep).where(IvrStep.call_id == call.id, match).order_by(IvrStep.seq).limit(1)
    )


# --- one step --------------------------------------------------------------------------------


async def take_step(
    session: AsyncSession, *, delivery: Delivery, ctx: Context, render: Render
) -> Reply:
    """Take the delivery's step once; a duplicate gets the stored response (see the module)."""
    loaded = await _load(session, delivery, ctx)
    call = loaded.call
    seq = _seq(call, delivery)
    # Under the row's lock a step is stored only once the call has moved past it, so a
    # delivery of the current step without a token needs no look-up.
    if not loaded.inserted and (delivery.token is not None or seq < call.step):
        stored = await _stored(session, call, seq, delivery.token)
        if stored is not None:
            return Reply(stored.response, stored.content_type, replayed=True, call=call)
    if call.status != CallStatus.in_ivr.value:
        raise CallNotInIvr(call.call_ref, call.status)
    if seq != call.step:
        raise StepOutOfOrder(call.call_ref, seq, call.step)
    taken = await advance(session, call, delivery.event, seq, ctx, flow=loaded.flow)
    body, content_type = render(taken)
    session.add(
        IvrStep(
            call_id=call.id,
            seq=seq,
            token=delivery.token or f"step:{seq}",
            event=event_json(delivery.event),
            response=body,
            content_type=content_type,
            at=ctx.now,
        )
    )
    call.step = seq + 1
    await session.flush()
    return Reply(body, content_type, call=call)


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
    session: AsyncSession, signature: str, *, now: datetime, window_s: float
) -> bool:
    """Note a JSON webhook's signature; False if it was seen before (a replay). Signatures
    older than twice the replay window are forgotten: their timestamps are refused anyway."""
    await session.execute(
        delete(TelephonySignature).where(
            TelephonySignature.seen_at < now - timedelta(seconds=2 * window_s)
        )
    )
    new = await session.scalar(
        insert(TelephonySignature)
        .values(signature=signature, seen_at=now)
        .on_conflict_do_nothing(index_elements=["signature"])
        .returning(TelephonySignature.signature)
    )
    return new is not None


async def get_call(session: AsyncSession, provider: Provider, call_ref: str) -> IvrCall | None:
    """The call's row as it is now, without a lock."""
    await session.flush()
    return await session.scalar(
        select(IvrCall)
        .where(IvrCall.provider == provider.value, IvrCall.call_ref == call_ref)
        .execution_options(populate_existing=True)
    )
