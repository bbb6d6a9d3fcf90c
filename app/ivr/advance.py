"""What one step of a call does: the machine's answer, its lookups, its terminal actions.

Theory of operation
-------------------

``advance`` runs on a call its caller has locked (``app.ivr.calls.take_step``). The machine
takes the event (``app.ivr.machine.step``); each ``Lookup`` it asks for is answered
(``app.ivr.lookups``) and fed back, all in this webhook. Terminal actions are applied:
``Enqueue`` admits a voice contact through routing's one admission path as a system caller
(the IVR), ``Callback`` a callback contact; ``Dial`` and ``EndCall`` end the call's time in
the IVR. The new state and the path (transcript) are written to the call's row; when the call
leaves the IVR, ``ivr.call_left`` records the outcome and the time it spent there.

Decisions, and why
------------------

- **Refused admission is no dead end.** A queue that is gone, full to the end of its
  overflow chain, or no longer takes voice calls cannot take the caller: they hear that
  every agent is busy and the call ends politely (outcome ``ended``, with the reason in the
  path), never a stuck caller or a 500. Nothing of the refused admission is written.
- **A damaged state ends the call politely** rather than guessing where the caller was; so
  does an event the machine refuses (``UnexpectedEvent``), which would be the shell's mistake.
- **The contact carries the path's skills.** Admission stores them on the contact, and the
  dispatcher offers it only to an agent who holds them as well as the skills of the queue's
  routing step in force (they never expire with the steps; the queue's max wait still moves
  or ends a contact nobody holds them for). The subject names the flow the call came
  through. A skill deleted since the flow was published refuses the admission like a queue
  that is gone: the caller hears that every agent is busy.
- **Keys are never stored raw.** The path holds what the machine records (an ID masked);
  the step's stored event holds only how many keys were pressed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.complaints.calendar import WorkCalendar
from app.complaints.service import Desk
from app.config import Settings
from app.errors import AppError
from app.events.log import event_row
from app.ivr import lookups, machine, service
from app.ivr.events import IvrEventType
from app.ivr.flow import Flow
from app.ivr.machine import FlowLoop, UnexpectedEvent
from app.ivr.models import CallStatus, IvrCall
from app.ivr.vocabulary import (
    Action,
    Callback,
    CallState,
    Dial,
    EndCall,
    Enqueue,
    Event,
    Lookup,
    Outcome,
    SkillNeed,
    StateError,
    TranscriptEntry,
)
from app.routing import admission, scoring

log = logging.getLogger(__name__)

ACTOR = "ivr"
MAX_LOOKUPS = 8  # lookups answered in one webhook; a flow needs one or two


@dataclass(frozen=True, slots=True)
class Context:
    """What a step runs with besides the call: the clock, the rules, the settings, and the
    limits on complaint-status lookups (``lookups.DEFAULT_LIMITS`` when None)."""

    now: datetime
    settings: Settings
    desk: Desk
    calendar: WorkCalendar
    lookup_limits: lookups.StatusLimits | None = None

    @property
    def region(self) -> str:
        return self.settings.default_phone_region


@dataclass(frozen=True, slots=True)
class Queued:
    """The contact a step admitted, and what the caller is told of their wait."""

    contact_id: int
    queue: str
    position: int | None
    estimated_wait_s: int | None


@dataclass(frozen=True, slots=True)
class Taken:
    """A step just taken, for the adapter to render: the call and the provider's actions."""

    call: IvrCall
    seq: int
    language: str
    actions: tuple[Action, ...]
    queued: Queued | None = None
    refused: str | None = None  # why a queue could not take the caller
    events: tuple[dict[str, Any], ...] = ()  # the step's own events, for the caller to write


async def flow_for(session: AsyncSession, call: IvrCall) -> Flow:
    """The flow version the call started on (activation never changes it)."""
    return await service.flow_by_id(session, call.flow_id)


async def advance(
    session: AsyncSession,
    call: IvrCall,
    event: Event,
    seq: int,
    ctx: Context,
    *,
    flow: Flow | None = None,
) -> Taken:
    """Take step ``seq`` of a locked call in the IVR: the new state, path and actions
    (``flow``: the call's flow when the caller has it already)."""
    if flow is None:
        flow = await flow_for(session, call)
    try:
        state = CallState.from_json(call.state)
        state, actions, entries = await _run(session, flow, state, event, call, ctx)
    except (StateError, UnexpectedEvent, FlowLoop) as exc:
        log.warning("IVR call %s cannot go on: %s: %s", call.id, type(exc).__name__, exc)
        return _cannot_go_on(call, seq, ctx)
    taken = Taken(call, seq, state.language, actions)
    taken = await _apply(session, taken, state, ctx)
    call.state = state.to_json()
    append(call, entries, seq, ctx.now)
    if taken.refused is not None:
        note(call, state.node, "queue_refused", seq, ctx.now, detail=taken.refused)
        return replace(taken, events=(leave(call, Outcome.ENDED.value, state.node, ctx.now),))
    if state.outcome is not None and call.outcome is None:
        return replace(taken, events=(leave(call, state.outcome.value, state.node, ctx.now),))
    return taken


async def _run(
    session: AsyncSession,
    flow: Flow,
    state: CallState,
    event: Event,
    call: IvrCall,
    ctx: Context,
) -> tuple[CallState, tuple[Action, ...], list[TranscriptEntry]]:
    """Feed the event, then each lookup's answer, until the machine asks for nothing more."""
    actions: list[Action] = []
    entries: list[TranscriptEntry] = []
    for _ in range(MAX_LOOKUPS + 1):
        result = machine.step(flow, state, event, ctx.now, ctx.calendar)
        state = result.state
        entries += result.transcript
        wanted = [a for a in result.actions if isinstance(a, Lookup)]
        actions += [a for a in result.actions if not isinstance(a, Lookup)]
        if not wanted:
            break
        event = await lookups.answer(
            session,
            wanted[0],
            caller=call.caller or "",
            languages=flow.languages,
            region=ctx.region,
            desk=ctx.desk,
            now=ctx.now,
            limits=ctx.lookup_limits,
        )
    return state, tuple(actions), entries


def _cannot_go_on(call: IvrCall, seq: int, ctx: Context) -> Taken:
    """A state that cannot be read, or an event the machine cannot take: the call ends
    politely, on record, rather than guessing where the caller was."""
    events = end_on_record(call, "cannot_continue", seq, ctx.now)
    language = str(call.state.get("language", "")) if isinstance(call.state, dict) else ""
    return Taken(call, seq, language or "zh-CN", (EndCall(),), events=events)


def end_on_record(
    call: IvrCall, result: str, seq: int, now: datetime, node: str | None = None
) -> tuple[dict[str, Any], ...]:
    """The IVR ends the call politely: ``result`` in its path, the call ended, and the event
    of it leaving the IVR (outcome ``ended``, at ``node``) if it had not left."""
    note(call, None, result, seq, now)
    call.status, call.ended_at = CallStatus.ended.value, now
    return () if call.outcome is not None else (leave(call, Outcome.ENDED.value, node, now),)


def append(call: IvrCall, entries: list[TranscriptEntry], seq: int, now: datetime) -> None:
    """Add the step's records to the call's path, with the step and the time."""
    if entries:
        at = now.isoformat()
        call.transcript = [
            *call.transcript,
            *({**e.to_json(), "step": seq, "at": at} for e in entries),
        ]


def note(
    call: IvrCall, node: str | None, result: str, seq: int, now: datetime, **extra: str
) -> None:
    """Add a record of the shell's own to the call's path (a refusal, a damaged state)."""
    entry = {"node": node, "input": None, "prompt": None, "result": result, "outcome": None}
    call.transcript = [*call.transcript, {**entry, **extra, "step": seq, "at": now.isoformat()}]


def leave(call: IvrCall, outcome: str, node: str | None, now: datetime) -> dict[str, Any]:
    """The call leaves the IVR with ``outcome``: its time in the IVR ends; the event that
    records it, for the caller to write with the call."""
    call.outcome, call.left_ivr_at = outcome, now
    if outcome == Outcome.HUNG_UP.value:
        call.drop_node = node
    return event_row(
        IvrEventType.CALL_LEFT,
        subject_type="ivr_call",
        subject_id=call.id,
        data={
            "call_id": call.id,
            "outcome": outcome,
            "node": node,
            "contact_id": call.contact_id,
            "ivr_s": seconds_in_ivr(call, now),
        },
        actor=ACTOR,
    )


def seconds_in_ivr(call: IvrCall, now: datetime) -> float:
    end = call.left_ivr_at or call.ended_at or now
    return round(max((end - call.started_at).total_seconds(), 0.0), 3)


# --- terminal actions ------------------------------------------------------------------------


async def _apply(session: AsyncSession, taken: Taken, state: CallState, ctx: Context) -> Taken:
    call = taken.call
    for action in taken.actions:
        if isinstance(action, Enqueue | Callback):
            return await _admit(session, taken, action, state, ctx)
        if isinstance(action, Dial | EndCall):
            call.status = CallStatus.ended.value
            call.ended_at = ctx.now
    return taken


async def _admit(
    session: AsyncSession, taken: Taken, action: Enqueue | Callback, state: CallState, ctx: Context
) -> Taken:
    call = taken.call
    flow_name = state.flow
    try:
        admitted = await admission.queue_within(
            session,
            caller=admission.SystemCaller(ACTOR),
            admission=_admission(call, action, flow_name),
            settings=ctx.settings,
        )
    except AppError as exc:
        return _refused(taken, exc.detail, ctx)
    contact_id = int(admitted.contact["id"])
    call.contact_id = contact_id
    if isinstance(action, Callback):
        call.status, call.ended_at = CallStatus.ended.value, ctx.now
        return _with(taken, Queued(contact_id, action.queue, None, None))
    call.status = CallStatus.queued.value
    # The admission statement's own figures: the position it stored on the contact, and
    # the wait estimated from the same facts routing's announcement reads.
    call.announced_position = admitted.position
    return _with(taken, Queued(contact_id, action.queue, admitted.position, admitted.wait.seconds))


def _with(taken: Taken, queued: Queued) -> Taken:
    return Taken(taken.call, taken.seq, taken.language, taken.actions, queued=queued)


def _admission(call: IvrCall, action: Enqueue | Callback, flow: str) -> admission.Admission:
    number = call.caller if call.caller and call.caller.startswith("+") else None
    by_phone = action.customer_id is None and number is not None
    return admission.Admission(
        channel="callback" if isinstance(action, Callback) else "voice",
        queue=action.queue,
        customer_id=action.customer_id,
        phone=number if by_phone else None,
        subject=subject(flow),
        language=action.language,
        caller=None if by_phone else call.caller,
        tier=action.tier,
        skills=required_skills(action.skills),
    )


def subject(flow: str) -> str:
    """The contact's subject: the flow it came through."""
    return f"IVR {flow}"


def required_skills(needs: tuple[SkillNeed, ...]) -> tuple[scoring.SkillReq, ...]:
    """The path's skills as the contact carries them, each once: a skill the node lists
    twice needs the higher level, at its first place."""
    levels: dict[str, int] = {}
    for need in needs:
        levels[need.skill] = max(need.min_level, levels.get(need.skill, 0))
    return tuple(scoring.SkillReq(skill, level) for skill, level in levels.items())


def _refused(taken: Taken, why: str, ctx: Context) -> Taken:
    """The queue cannot take the caller: they hear that agents are busy; the call ends."""
    call = taken.call
    call.status, call.ended_at = CallStatus.ended.value, ctx.now
    kept = tuple(a for a in taken.actions if not isinstance(a, Enqueue | Callback | EndCall))
    return Taken(call, taken.seq, taken.language, (*kept, EndCall()), refused=why)
