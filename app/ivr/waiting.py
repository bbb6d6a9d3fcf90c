"""After the menus: the queued caller's wait, and the provider's word that a call is over.

Theory of operation
-------------------

**The wait loop.** A queued caller is held by the provider in a loop the shell drives: each
turn asks ``wait`` where the caller stands. The position told is routing's
(``routing.service.announce``: the contacts of the queue due before this one), and never
more than the call was told before: the lowest position announced is kept on the call's row
(``ivr_calls.announced_position``), lowered by one conditional ``UPDATE`` that takes no lock
for longer than itself, so the loop never holds up the dispatcher or a webhook, and two
turns racing cannot raise it again. A contact that moved on (transferred, overflowed) is
followed to the contact that continues it. The answer says whether the caller still waits,
is being offered to an agent, is connected (the shell then bridges a caller the provider's
redirect has not reached, ``app.ivr.bridge``), or has nobody left to wait for (the contact
ended: the caller is told goodbye).

**The call is over.** The provider reports the end of a call (Twilio's ``completed``,
``busy``, ``no-answer``, ``failed``, ``canceled``; the JSON adapter's ``hangup``).
``hang_up`` locks the call and ends it once: a caller still in the menus hung up in the IVR
(the machine records it, with the node they left at); a queued caller abandoned their
contact, which routing's one ending path (``routing.endings.abandon``) ends as abandoned. A
contact already answered or ended is left as it is.

Status callbacks arrive late, twice and out of order: a report for a call already ended
changes nothing, and a status that is not an end (``ringing``, ``in-progress``) is noted on
the call and changes nothing else, so a ``ringing`` that arrives after ``completed`` cannot
bring the call back.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.events.log import record
from app.ivr import advance, calls, machine
from app.ivr.events import IvrEventType
from app.ivr.machine import FlowLoop, UnexpectedEvent
from app.ivr.models import CallStatus, IvrCall, Provider
from app.ivr.vocabulary import CallState, Hangup, Outcome, StateError
from app.routing import endings
from app.routing import service as routing
from app.routing.contact_states import ContactStatus
from app.routing.exceptions import ContactNotFound, ContactStateConflict
from app.routing.models import Contact

# What providers report when a call is over (Twilio's words; "hangup" is the JSON event's).
OVER: Final = frozenset({"completed", "busy", "no-answer", "failed", "canceled", "hangup"})
MAX_FOLLOW: Final = 20  # successors followed from a contact (transfers, overflows)


class Standing(StrEnum):
    """Where a queued caller stands."""

    WAITING = "waiting"
    OFFERED = "offered"  # ringing at an agent
    CONNECTED = "connected"
    GONE = "gone"  # the contact ended: nobody to wait for


@dataclass(frozen=True, slots=True)
class Wait:
    """One turn of the wait loop: what the caller hears."""

    standing: Standing
    language: str
    position: int | None = None
    estimated_wait_s: int | None = None


# --- the wait loop ---------------------------------------------------------------------------


async def wait(session: AsyncSession, call: IvrCall) -> Wait:
    """Where the queued caller of ``call`` stands now."""
    language = language_of(call)
    holding = (CallStatus.queued.value, CallStatus.bridged.value)
    if call.status not in holding or call.contact_id is None:
        return Wait(Standing.GONE, language)
    contact = await live_contact(session, call.contact_id)
    status = contact.status
    if status == ContactStatus.offered.value:
        return Wait(Standing.OFFERED, language, 0, 0)
    if status != ContactStatus.queued.value:
        live = status in (ContactStatus.connected.value, ContactStatus.wrap_up.value)
        return Wait(Standing.CONNECTED if live else Standing.GONE, language)
    position, estimate = await routing.announce(session, contact)
    told = await _lowest(session, call, position)
    return Wait(Standing.WAITING, language, told, None if estimate is None else estimate.seconds)


async def live_contact(session: AsyncSession, contact_id: int) -> Contact:
    """The contact, or the one that continues it in another queue (fresh from the database)."""
    contact = await _fresh(session, contact_id)
    for _ in range(MAX_FOLLOW):
        if contact.next_id is None:
            break
        contact = await _fresh(session, contact.next_id)
    return contact


async def _fresh(session: AsyncSession, contact_id: int) -> Contact:
    """The contact as the database has it now, in one read (the session's copy refreshed)."""
    contact = await session.scalar(
        select(Contact).where(Contact.id == contact_id).execution_options(populate_existing=True)
    )
    if contact is None:
        raise ContactNotFound(contact_id)
    return contact


async def _lowest(session: AsyncSession, call: IvrCall, position: int | None) -> int | None:
    """Keep the lowest position told to the caller; the one to tell now."""
    if position is None:
        return call.announced_position
    told = await session.scalar(
        update(IvrCall)
        .where(IvrCall.id == call.id)
        .values(
            announced_position=func.least(
                func.coalesce(IvrCall.announced_position, position), position
            )
        )
        .returning(IvrCall.announced_position)
        .execution_options(synchronize_session=False)
    )
    return position if told is None else int(told)


def language_of(call: IvrCall) -> str:
    """The language the caller is spoken to in."""
    language = call.state.get("language") if isinstance(call.state, dict) else None
    return language if isinstance(language, str) and language else "zh-CN"


# --- the call is over ------------------------------------------------------------------------


async def hang_up(
    session: AsyncSession, *, provider: Provider, call_ref: str, status: str, ctx: advance.Context
) -> IvrCall | None:
    """The provider reports ``status`` for a call: end it once if it is an end (see the
    module); None for a call the IVR does not know."""
    call = await calls.locked_call(session, provider, call_ref)
    if call is None or call.status == CallStatus.ended.value:
        return call
    call.provider_status = status[:32]
    if status not in OVER:
        return call
    before = call.status
    if before == CallStatus.in_ivr.value:
        await _hung_up_in_ivr(session, call, ctx)
    elif before == CallStatus.queued.value and call.contact_id is not None:
        await _abandon(session, call.contact_id)
    call.status, call.ended_at = CallStatus.ended.value, ctx.now
    record(
        session,
        type=IvrEventType.CALL_ENDED,
        subject_type="ivr_call",
        subject_id=call.id,
        data={
            "call_id": call.id,
            "provider_status": call.provider_status,
            "status_before": before,
            "contact_id": call.contact_id,
        },
        actor=advance.ACTOR,
    )
    return call


async def _hung_up_in_ivr(session: AsyncSession, call: IvrCall, ctx: advance.Context) -> None:
    """The caller left in the menus: the machine records where."""
    node: str | None = None
    flow = await advance.flow_for(session, call)
    try:
        state = CallState.from_json(call.state)
        node = state.node
        result = machine.step(flow, state, Hangup(), ctx.now, ctx.calendar)
    except (StateError, UnexpectedEvent, FlowLoop):
        result = None  # the machine cannot say more: the hang-up is recorded all the same
    if result is not None:
        call.state = result.state.to_json()
        advance.append(call, list(result.transcript), call.step, ctx.now)
    if call.outcome is None:
        advance.leave(session, call, Outcome.HUNG_UP.value, node, ctx.now)


async def _abandon(session: AsyncSession, contact_id: int) -> None:
    """The queued caller left: their live contact is abandoned (answered or ended: left be)."""
    contact = await live_contact(session, contact_id)
    # Answered, or ended by routing, before the caller hung up: left as it is.
    with contextlib.suppress(ContactStateConflict):
        await endings.abandon(session, contact_id=contact.id, actor=advance.ACTOR)
