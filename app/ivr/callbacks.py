"""Callbacks (virtual hold): the caller hung up keeping their place; Hotline calls them back.

Theory of operation
-------------------

A caller who chooses a callback leaves a ``callback`` contact in the queue (``advance``)
and hangs up; the contact waits its turn as any other. When an agent accepts its offer,
``app.ivr.bridge`` hands it here: ``first_attempt`` places the outbound call through the
provider (``provider.place``: to the caller's number, from the number they called, TwiML
that ``<Dial>``s the agent's endpoint once the customer answers), with a status callback
URL naming the IVR call and the attempt: ``/telephony/twilio/callback?call=ID&attempt=N``
(signed by the provider like every webhook, so the query is trusted). A caller of the JSON
adapter is called back by its own provider: ``provider.place_json`` asks it to place the
call (to, from, the same word and dial of the agent's endpoint), and the provider reports
each attempt's outcome as a ``callback`` event of the call that asked for it.

Each attempt ends once (``status``): ``answered``/``in-progress``/``completed`` mark it
answered (the conversation is the agent's from there); ``no-answer``, ``busy``, ``failed``
and ``canceled`` mark it unanswered, and the next attempt is due ``callback_retry_s`` later
(the IVR's ``ivr.callback`` timer, subject the call). After ``callback_attempts`` unanswered
attempts the callback ends: the contact is completed with the disposition
``callback_unreachable`` (routing's one ending path, without after-contact work: there was
no conversation), and the agent is free again. A provider that refuses to place the call
counts as an unanswered attempt, recorded with its reason: bounded, never lost.

Every attempt and its end are records of the call's path (``callback_placed``,
``callback_failed``, ``callback_answered``, ``callback_unanswered``,
``callback_unreachable``, each with its ``attempt``): the path is also the callback's state,
read under the call's row lock. Status callbacks arrive twice and out of order: a report
for an attempt that is not the current one, or for an attempt already ended, changes
nothing; a retry timer that finds its attempt already placed does nothing.

**A report that never comes.** Twilio's status callbacks can be lost (refused by a proxy,
a network failure); without one an attempt would stay placed for good, and the agent hold a
contact nobody is on. Each attempt placed through Twilio is asked after
(``ivr.callback_check``, ``REPORT_WITHIN_S`` after it was placed, the customer's phone rung
out well before): if it has not ended by then, Twilio's REST API gives the call's status
(``callback_asked`` on the path), which ends the attempt as its report would have: answered,
or unanswered (a call Twilio does not know, its 404, as ``failed``) and retried. A call
still ringing, or a provider that cannot be reached, is asked after again as long later;
the checks stop once the attempt has ended or the contact is no longer connected (the agent
ended it). Twilio is asked under the call's row lock, as an attempt is placed: a report
arriving meanwhile waits for the answer (at most ``twilio_api_timeout_s``) and then finds
the attempt ended. The JSON adapter's provider cannot be asked: its attempts wait for its
report.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.models import Agent
from app.config import Settings
from app.ivr import advance, calls, provider, twiml, waiting, wire
from app.ivr.models import IvrCall, Provider
from app.routing import endings
from app.routing import handlers as routing_handlers
from app.routing.contact_states import ContactStatus
from app.routing.models import Contact
from app.timers import service as timers
from app.timers.worker import TimerRegistry

log = logging.getLogger(__name__)

CALLBACK_RETRY: Final = "ivr.callback"
CALLBACK_CHECK: Final = "ivr.callback_check"
STATUS_PATH: Final = "/telephony/twilio/callback"
RING_S: Final = 30  # how long the customer's phone rings before it is no answer
# How long after an attempt is placed its outcome is asked after, if unreported (the phone
# rung out, and the report's own retries, well before).
REPORT_WITHIN_S: Final = RING_S + 90
UNREACHABLE: Final = "callback_unreachable"
NOT_ASKED: Final = "unreachable"  # recorded when asking Twilio after an attempt failed
ANSWERED: Final = frozenset({"answered", "in-progress", "completed"})
UNANSWERED: Final = frozenset({"no-answer", "busy", "failed", "canceled"})
TRIED: Final = ("callback_placed", "callback_failed")
ENDED: Final = ("callback_answered", "callback_unanswered")


def voice_of(settings: Settings) -> twiml.Voice:
    return twiml.Voice(
        settings.public_base_url, settings.twilio_voices, settings.ivr_hold_music_url
    )


async def endpoint_of(session: AsyncSession, contact: Contact) -> str | None:
    """The endpoint of the agent the contact is connected to (``sip:``, ``client:``)."""
    if contact.agent_id is None:
        return None
    agent = await session.get(Agent, contact.agent_id)
    return None if agent is None else agent.endpoint


def register(registry: TimerRegistry, settings: Settings) -> None:
    async def handle(session: AsyncSession, call_id: int, now: datetime) -> None:
        await retry(session, call_id=call_id, settings=settings, now=now)

    async def ask(session: AsyncSession, call_id: int, now: datetime) -> None:
        await check(session, call_id=call_id, settings=settings, now=now)

    # Both call the provider: fired apart, so a slow provider holds up no other timer.
    registry.register(CALLBACK_RETRY, routing_handlers.without_waiting(handle), calls_out=True)
    registry.register(CALLBACK_CHECK, routing_handlers.without_waiting(ask), calls_out=True)


# --- the callback's state, as its path records it ----------------------------------------------


def attempts(call: IvrCall) -> int:
    """The attempts made so far (placed, or refused by the provider)."""
    return sum(1 for entry in call.transcript if entry.get("result") in TRIED)


def _entry(call: IvrCall, results: tuple[str, ...], attempt: int) -> dict[str, Any] | None:
    """The first record of ``attempt`` on the call's path with one of ``results``."""
    for entry in call.transcript:
        if entry.get("result") in results and entry.get("attempt") == str(attempt):
            return entry
    return None


def ended(call: IvrCall, attempt: int) -> bool:
    """Whether ``attempt`` has ended (answered or not)."""
    return _entry(call, (*ENDED, "callback_failed"), attempt) is not None


def given_up(call: IvrCall) -> bool:
    return any(entry.get("result") == UNREACHABLE for entry in call.transcript)


def placed_as(call: IvrCall, attempt: int) -> str | None:
    """The provider's id of the call placed for ``attempt``, if it gave one."""
    entry = _entry(call, ("callback_placed",), attempt)
    ref = None if entry is None else entry.get("call_ref")
    return ref if isinstance(ref, str) and ref else None


# --- attempts ----------------------------------------------------------------------------------


async def first_attempt(
    session: AsyncSession, call: IvrCall, contact: Contact, *, settings: Settings, now: datetime
) -> None:
    """An agent accepted the callback: call the customer (once, whoever asks twice)."""
    if attempts(call) == 0:
        await _place(session, call, contact, 1, settings, now)


async def retry(session: AsyncSession, *, call_id: int, settings: Settings, now: datetime) -> None:
    """The next attempt is due: place it if the last one ended unanswered."""
    call = await calls.locked_row(session, IvrCall.id == call_id, nowait=True)
    if call is None or call.contact_id is None or given_up(call):
        return
    made = attempts(call)
    if made == 0 or not ended(call, made) or _answered(call, made):
        return
    contact = await waiting.live_contact(session, call.contact_id)
    if contact.status != ContactStatus.connected.value:
        return  # the agent (or a supervisor) ended it meanwhile
    await _place(session, call, contact, made + 1, settings, now)


async def _place(
    session: AsyncSession,
    call: IvrCall,
    contact: Contact,
    attempt: int,
    settings: Settings,
    now: datetime,
) -> None:
    endpoint = await endpoint_of(session, contact)
    number = call.caller if call.caller and call.caller.startswith("+") else None
    if not endpoint or number is None:
        why = "the agent has no endpoint" if not endpoint else "the caller's number is unknown"
        advance.note(
            call, None, "callback_failed", call.step, now, attempt=str(attempt), detail=why
        )
        await _give_up(session, call, contact, now)
        return
    try:
        if call.provider == Provider.json.value:
            placed = await provider.place_json(
                settings, _json_call(call, contact, attempt, number, endpoint)
            )
        else:
            placed = await _place_twilio(call, attempt, number, endpoint, settings)
    except provider.ProviderFailed as exc:
        log.warning("placing callback %s (attempt %s) failed: %s", call.id, attempt, exc)
        advance.note(
            call, None, "callback_failed", call.step, now, attempt=str(attempt), detail=str(exc)
        )
        await _after_unanswered(session, call, contact, attempt, settings, now)
        return
    placed_ref = {} if placed is None else {"call_ref": placed}
    advance.note(call, None, "callback_placed", call.step, now, attempt=str(attempt), **placed_ref)
    if call.provider == Provider.twilio.value:
        due = now + timedelta(seconds=REPORT_WITHIN_S)
        await timers.schedule(session, kind=CALLBACK_CHECK, subject=call.id, due_at=due)


async def _place_twilio(
    call: IvrCall, attempt: int, number: str, endpoint: str, settings: Settings
) -> str:
    """Place the attempt through Twilio, its status callbacks to ``STATUS_PATH``; its sid."""
    voice = voice_of(settings)
    return await provider.place(
        settings,
        to=number,
        from_=call.called,
        document=twiml.bridge(endpoint, waiting.language_of(call), voice=voice),
        status_callback=voice.url(STATUS_PATH, f"call={call.id}&attempt={attempt}"),
        ring_s=RING_S,
    )


def _json_call(
    call: IvrCall, contact: Contact, attempt: int, number: str, endpoint: str
) -> dict[str, Any]:
    """What the JSON provider is asked to place: the call to ``number`` that puts the
    customer through to the agent; its outcome comes back as a ``callback`` event of the
    call that asked for it (``call_id``)."""
    return {
        "call_id": call.call_ref,
        "attempt": attempt,
        "to": number,
        "from": call.called,
        "ring_s": RING_S,
        "actions": wire.put_through(waiting.language_of(call), contact.agent_id, endpoint),
    }


def _answered(call: IvrCall, attempt: int) -> bool:
    return _entry(call, ("callback_answered",), attempt) is not None


async def _after_unanswered(
    session: AsyncSession,
    call: IvrCall,
    contact: Contact,
    attempt: int,
    settings: Settings,
    now: datetime,
) -> None:
    if attempt < settings.callback_attempts:
        due = now + timedelta(seconds=settings.callback_retry_s)
        await timers.schedule(session, kind=CALLBACK_RETRY, subject=call.id, due_at=due)
    else:
        await _give_up(session, call, contact, now)


async def _give_up(session: AsyncSession, call: IvrCall, contact: Contact, now: datetime) -> None:
    """No attempt reached the customer: the contact completes as unreachable."""
    advance.note(call, None, UNREACHABLE, call.step, now, attempts=str(attempts(call)))
    # Ended by the agent meanwhile: left as it is.
    await endings.end_unattended(
        session,
        contact_id=contact.id,
        disposition=UNREACHABLE,
        notes=f"no answer after {attempts(call)} attempts",
        now=now,
        actor=advance.ACTOR,
    )


# --- the provider's word on an attempt ---------------------------------------------------------


async def status(
    session: AsyncSession,
    call: IvrCall,
    *,
    attempt: int,
    reported: str,
    settings: Settings,
    now: datetime,
) -> None:
    """The provider's word on ``attempt`` of the callback of ``call`` (locked:
    ``calls.locked_row``)."""
    if call.contact_id is None or attempt != attempts(call) or ended(call, attempt):
        return  # no callback, a late report of an earlier attempt, or this one already over
    if reported in ANSWERED or reported in UNANSWERED:
        await timers.cancel(session, kind=CALLBACK_CHECK, subject=call.id)  # heard: not asked
    if reported in ANSWERED:
        advance.note(call, None, "callback_answered", call.step, now, attempt=str(attempt))
    elif reported in UNANSWERED:
        advance.note(
            call, None, "callback_unanswered", call.step, now, attempt=str(attempt), detail=reported
        )
        contact = await waiting.live_contact(session, call.contact_id)
        if contact.status == ContactStatus.connected.value:
            await _after_unanswered(session, call, contact, attempt, settings, now)


async def check(session: AsyncSession, *, call_id: int, settings: Settings, now: datetime) -> None:
    """The outcome of the callback's current attempt was due by now: if it has not been
    reported, ask Twilio and end the attempt as the report would have (see the module)."""
    call = await calls.locked_row(session, IvrCall.id == call_id, nowait=True)
    if call is None or call.contact_id is None or given_up(call):
        return
    made = attempts(call)
    ref = placed_as(call, made) if made else None
    if ref is None or ended(call, made) or call.provider != Provider.twilio.value:
        return  # reported meanwhile, or nothing to ask about
    contact = await waiting.live_contact(session, call.contact_id)
    if contact.status != ContactStatus.connected.value:
        return  # the agent (or a supervisor) ended it: nobody waits for the outcome
    # What Twilio said, as the path records it, and as the report it stands for.
    try:
        found = await provider.status(settings, ref)
    except provider.ProviderFailed as exc:
        log.warning("asking after callback %s (attempt %s) failed: %s", call.id, made, exc)
        heard, reported = NOT_ASKED, None
    else:
        # A call Twilio does not know was never put through: an unanswered attempt.
        heard, reported = (provider.NOT_FOUND, "failed") if found is None else (found, found)
    advance.note(call, None, "callback_asked", call.step, now, attempt=str(made), status=heard)
    if reported in ANSWERED or reported in UNANSWERED:
        await status(session, call, attempt=made, reported=reported, settings=settings, now=now)
    else:  # still ringing, or not to be asked now: asked again as long later
        due = now + timedelta(seconds=REPORT_WITHIN_S)
        await timers.schedule(session, kind=CALLBACK_CHECK, subject=call.id, due_at=due)
