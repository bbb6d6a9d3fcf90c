"""After the menus: the queued caller's wait, and the provider's word that a call is over.

Theory of operation
-------------------

**The wait loop.** A queued caller is held by the provider in a loop the shell drives: each
turn asks ``turn`` where the caller stands, in one statement. The position told is routing's
(``routing.service.announce``: the contacts of the queue due before this one; the turn
counts them in its own statement, and a test holds the two to the same figures), and never
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
contact an agent had answered but the caller was not yet put through to (the redirect to the
agent still to come, or refused) ends unattended (``routing.endings.end_unattended``, the
disposition ``caller_hung_up``): the agent is free at once, not left holding a contact
nobody is on. A contact already ended, or a caller already bridged to the agent (the
conversation is the agent's to complete), is left as it is.

Status callbacks arrive late, twice and out of order: a report for a call already ended
changes nothing, and a status that is not an end (``ringing``, ``in-progress``) is noted on
the call and changes nothing else, so a ``ringing`` that arrives after ``completed`` cannot
bring the call back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import driver_connection, planned_once
from app.events.log import event_row
from app.ivr import advance, calls, machine
from app.ivr.events import IvrEventType
from app.ivr.flow import Flow
from app.ivr.machine import FlowLoop, UnexpectedEvent
from app.ivr.models import CallStatus, IvrCall, Provider
from app.ivr.vocabulary import CallState, Hangup, Outcome, StateError
from app.routing import endings
from app.routing.contact_states import ContactStatus
from app.routing.estimate import (
    RECENT_SAMPLES,
    RECENT_WINDOW,
    estimate_wait,
)
from app.routing.exceptions import ContactNotFound, ContactStateConflict
from app.routing.models import Contact

# What providers report when a call is over (Twilio's words; "hangup" is the JSON event's).
OVER: Final = frozenset({"completed", "busy", "no-answer", "failed", "canceled", "hangup"})
MAX_FOLLOW: Final = 20  # successors followed from a contact (transfers, overflows)
# The disposition of a contact whose caller hung up after an agent answered it but before
# being put through, and the record of it on the call's path.
CALLER_GONE: Final = "caller_hung_up"
DEFAULT_LANGUAGE: Final = "zh-CN"  # a call whose state names no language


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
    call_status: str  # the call's: ``queued`` or ``bridged`` while the caller waits
    step: int  # the steps the call has taken
    position: int | None = None
    estimated_wait_s: int | None = None


# --- the wait loop ---------------------------------------------------------------------------


_QUEUED, _OFFERED = ContactStatus.queued.value, ContactStatus.offered.value
# The contacts that continue contact ``{first}``, up to ``{most}`` successors, by depth.
_CHAIN = """chain (id, next_id, depth) AS (
    SELECT ct.id, ct.next_id, 0 FROM contacts ct WHERE ct.id = {first}
    UNION ALL
    SELECT ct.id, ct.next_id, chain.depth + 1
    FROM chain JOIN contacts ct ON ct.id = chain.next_id
    WHERE chain.depth < {most}
)"""
_CALLS_CONTACT = "(SELECT contact_id FROM ivr_calls WHERE provider = $1 AND call_ref = $2)"
LIVE_CONTACT = f"""
WITH RECURSIVE {_CHAIN.format(first="$1", most="$2")}
SELECT id FROM chain ORDER BY depth DESC LIMIT 1
"""
# One turn in one statement. The facts: the call, the live contact its contact leads to,
# and, for a contact still queued, its place (the queue's contacts due before it, as
# ``routing.service.position_of`` counts them) and the estimate's inputs (as
# ``routing.service._estimate`` reads them). Then the position told, kept lowered.
WAIT_TURN = f"""
WITH RECURSIVE {_CHAIN.format(first=_CALLS_CONTACT, most="$3")},
live AS (
    SELECT ct.* FROM contacts ct
    WHERE ct.id = (SELECT id FROM chain ORDER BY depth DESC LIMIT 1)
),
facts AS (
    SELECT c.id, c.status, c.contact_id, c.step,
    CASE WHEN jsonb_typeof(c.state -> 'language') = 'string'
        THEN c.state ->> 'language' END AS language,
    l.id AS live_id, l.status AS live_status, l.announced_position AS live_told,
    CASE WHEN l.status = '{_QUEUED}' THEN (
        SELECT count(*) + 1 FROM contacts o
        WHERE o.queue_id = l.queue_id AND o.status = '{_QUEUED}'
            AND (o.deadline_at, o.id) < (l.deadline_at, l.id)
    ) END AS position,
    CASE WHEN l.status = '{_QUEUED}' THEN (
        SELECT array_agg(t) FROM (
            SELECT extract(epoch FROM r.completed_at - r.answered_at)::float8 AS t
            FROM contacts r
            WHERE r.queue_id = l.queue_id AND r.completed_at IS NOT NULL
                AND r.answered_at IS NOT NULL AND r.completed_at > now() - $4::interval
            ORDER BY r.completed_at DESC LIMIT $5
        ) recent
    ) END AS handle_times,
    CASE WHEN l.status = '{_QUEUED}' THEN (
        SELECT count(*) FROM agents a JOIN agent_channels ac ON ac.agent_id = a.id
        WHERE a.status = 'available' AND a.active AND ac.channel = l.channel
            AND ac.capacity > 0
    ) END AS staffed
FROM ivr_calls c LEFT JOIN live l ON true
WHERE c.provider = $1 AND c.call_ref = $2
),
-- A caller still queued: the position to tell, never more than the contact was told
-- (``estimate.announce_position``), kept lowered on the contact (as
-- ``routing.service.announce`` keeps it) and on the call. A queued call was heard from, and
-- its caller found waiting, now, whatever its contact's state (ringing at agent after agent,
-- the caller still waits); neither row is held longer than this statement.
told AS (
    SELECT least(f.position, coalesce(f.live_told, f.position)) AS told FROM facts f
    WHERE f.status IN ('{CallStatus.queued.value}', '{CallStatus.bridged.value}')
        AND f.live_status = '{_QUEUED}'
),
lowered AS (
    UPDATE contacts ct SET announced_position = t.told FROM facts f, told t
    WHERE ct.id = f.live_id
        AND (ct.announced_position IS NULL OR ct.announced_position > t.told)
),
called AS (
    UPDATE ivr_calls c
    SET announced_position = least(coalesce(c.announced_position, t.told), t.told),
        heard_at = now(),
        waited_at = now()
    FROM facts f LEFT JOIN told t ON true
    WHERE c.id = f.id AND (t.told IS NOT NULL OR f.status = '{CallStatus.queued.value}')
    RETURNING c.announced_position
)
SELECT f.*, t.told, (SELECT announced_position FROM called) AS lowest
FROM facts f LEFT JOIN told t ON true
"""


async def turn(session: AsyncSession, provider: Provider, call_ref: str) -> Wait | None:
    """Where the queued caller of the call ``call_ref`` stands now; None for a call the IVR
    does not know. One statement on the session's driver connection."""
    async with planned_once(await driver_connection(session)) as conn:
        row = await conn.fetchrow(
            WAIT_TURN, provider.value, call_ref, MAX_FOLLOW, RECENT_WINDOW, RECENT_SAMPLES
        )
    if row is None:
        return None
    language = row["language"] or DEFAULT_LANGUAGE

    def wait(standing: Standing, position: int | None = None, wait_s: int | None = None) -> Wait:
        return Wait(standing, language, row["status"], int(row["step"]), position, wait_s)

    holding = (CallStatus.queued.value, CallStatus.bridged.value)
    if row["status"] not in holding or row["live_id"] is None:
        return wait(Standing.GONE)
    status = row["live_status"]
    if status == _OFFERED:
        return wait(Standing.OFFERED, 0, 0)
    if status != _QUEUED:
        live = status in (ContactStatus.connected.value, ContactStatus.wrap_up.value)
        return wait(Standing.CONNECTED if live else Standing.GONE)
    told = int(row["told"])
    handle_times = [float(t) for t in (row["handle_times"] or [])]
    estimate = estimate_wait(told, handle_times, int(row["staffed"] or 0))
    return wait(Standing.WAITING, int(row["lowest"]), estimate.seconds)


async def live_contact(session: AsyncSession, contact_id: int) -> Contact:
    """The contact, or the one that continues it in another queue (fresh from the database)."""
    return await _fresh(session, await live_contact_id(session, contact_id))


async def live_contact_id(session: AsyncSession, contact_id: int) -> int:
    """The id of the contact, or of the one that continues it, in one statement."""
    async with planned_once(await driver_connection(session)) as conn:
        live = await conn.fetchval(LIVE_CONTACT, contact_id, MAX_FOLLOW)
    if live is None:
        raise ContactNotFound(contact_id)
    return int(live)


async def _fresh(session: AsyncSession, contact_id: int) -> Contact:
    """The contact as the database has it now, in one read (the session's copy refreshed)."""
    contact = await session.scalar(
        select(Contact).where(Contact.id == contact_id).execution_options(populate_existing=True)
    )
    if contact is None:
        raise ContactNotFound(contact_id)
    return contact


def language_of(call: IvrCall) -> str:
    """The language the caller is spoken to in."""
    language = call.state.get("language") if isinstance(call.state, dict) else None
    return language if isinstance(language, str) and language else DEFAULT_LANGUAGE


# --- the call is over ------------------------------------------------------------------------


async def hang_up(
    session: AsyncSession, *, provider: Provider, call_ref: str, status: str, ctx: advance.Context
) -> IvrCall | None:
    """The provider reports ``status`` for a call: end it once if it is an end (see the
    module); None for a call the IVR does not know."""
    found = await calls.locked(session, provider, call_ref)
    if found is None:
        return None
    call, flow = found
    if call.status == CallStatus.ended.value:
        return call
    call.provider_status = status[:32]
    if status not in OVER:
        await calls.save(session, call)
        return call
    await _end(session, call, flow, ctx)
    return call


async def ended_silent(
    session: AsyncSession, call: IvrCall, flow: Flow, ctx: advance.Context, *, status: str
) -> bool:
    """``call`` (locked), in the menus, queued or bridged, is over though its provider never
    reported it (``app.ivr.silence``): it ends as the lost report would have ended it, with
    ``ended_silent`` and ``status`` on its path: the provider's status when asked, or
    ``silence.SILENT`` for a provider that cannot be asked. A bridged call's contact is the
    agent's and has ended already: only the call ends. False, with nothing changed, for a call
    already ended."""
    if call.status not in (
        CallStatus.in_ivr.value,
        CallStatus.queued.value,
        CallStatus.bridged.value,
    ):
        return False
    call.provider_status = status[:32]
    advance.note(call, None, "ended_silent", call.step, ctx.now, status=call.provider_status)
    await _end(session, call, flow, ctx)
    return True


async def _end(session: AsyncSession, call: IvrCall, flow: Flow, ctx: advance.Context) -> None:
    """The caller of ``call`` has gone: the call ends, and what it held with it."""
    before = call.status
    events = []
    if before == CallStatus.in_ivr.value:
        events += _hung_up_in_ivr(call, flow, ctx)
    elif before == CallStatus.queued.value and call.contact_id is not None:
        advance.note(call, None, "hung_up_in_queue", call.step, ctx.now)
        await _caller_left(session, call, call.contact_id, ctx.now)
    call.status, call.ended_at = CallStatus.ended.value, ctx.now
    await calls.save(session, call, [*events, call_ended(call, before)])


def call_ended(call: IvrCall, before: str) -> dict[str, Any]:
    """The event of ``call`` ending, having been ``before``, for the caller to write."""
    data = {
        "call_id": call.id,
        "provider_status": call.provider_status,
        "status_before": before,
        "contact_id": call.contact_id,
    }
    return event_row(
        IvrEventType.CALL_ENDED,
        subject_type="ivr_call",
        subject_id=call.id,
        data=data,
        actor=advance.ACTOR,
    )


async def end_unreadable(
    session: AsyncSession, *, provider: Provider, call_ref: str, ctx: advance.Context
) -> IvrCall | None:
    """A webhook for a call in the IVR whose fields cannot be read: the call ends politely
    and on record (outcome ``ended``, ``unreadable_webhook`` in its path), so the provider's
    ``completed`` after the goodbye is not taken for the caller hanging up. None for a call
    the IVR does not know; a call out of the IVR is left as it is."""
    found = await calls.locked(session, provider, call_ref)
    if found is None:
        return None
    call, _ = found
    if call.status != CallStatus.in_ivr.value:
        return call
    try:
        node = CallState.from_json(call.state).node
    except StateError:
        node = None
    left = advance.end_on_record(call, "unreadable_webhook", call.step, ctx.now, node)
    await calls.save(session, call, left)
    return call


def _hung_up_in_ivr(call: IvrCall, flow: Flow, ctx: advance.Context) -> list[dict[str, Any]]:
    """The caller left in the menus: the machine records where; the event of the call
    leaving the IVR, if it had not left."""
    node: str | None = None
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
        return [advance.leave(call, Outcome.HUNG_UP.value, node, ctx.now)]
    return []


async def _caller_left(
    session: AsyncSession, call: IvrCall, contact_id: int, now: datetime
) -> None:
    """The queued caller left: their live contact is abandoned if it still waited (or rang
    an agent); answered by an agent they were not yet put through to, it ends unattended."""
    live = await live_contact_id(session, contact_id)
    try:
        await endings.abandon(session, contact_id=live, actor=advance.ACTOR)
    except ContactStateConflict:
        await caller_gone(session, call, live, now)


async def caller_gone(session: AsyncSession, call: IvrCall, contact_id: int, now: datetime) -> bool:
    """The caller of ``call`` has gone before being put through to the agent who answered
    ``contact_id``: the contact ends unattended (``CALLER_GONE``), on the call's path too.
    False, with nothing changed, for a contact no longer connected (ended meanwhile)."""
    ended = await endings.end_unattended(
        session,
        contact_id=contact_id,
        disposition=CALLER_GONE,
        notes="the caller hung up before being put through to the agent",
        now=now,
        actor=advance.ACTOR,
    )
    if ended:
        advance.note(call, None, CALLER_GONE, call.step, now, contact=str(contact_id))
    return ended
