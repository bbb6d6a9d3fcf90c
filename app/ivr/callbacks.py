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
ended it). The JSON adapter's provider cannot be asked: its attempts wait for its report.

**No transaction open while the provider answers.** One would hold the event feed back
(every console and wallboard waits for the oldest open transaction) and the call's row
with it. Both the placing and the asking are left for after the firing's commit
(``timers.worker.then_outside``), and what the provider said is recorded in a transaction
of its own:

- *Placing*: the call is marked as placing an attempt until a lease ends
  (``placing_until``: the provider's timeout and ``LEASE_MARGIN_S``), with the retry timer
  due at the lease's end as its backstop. The answer is recorded only while the lease is
  still this attempt's (``Placing.record``). A report on the attempt that comes before
  (the provider placed the call and reported on it first) shows it placed: ``status``
  records it so, and the answer, when it comes, finds the lease gone (it only gives the
  record the placed call's id, if the report did not, while its lease lasts:
  ``Placing.name_the_call``). An answer never recorded (the instance died meanwhile)
  leaves the lease to run out: the backstop places the attempt again, so the customer may
  be called twice for it (at least once, as a firing that died before its commit always
  was).
- *Asking*: the next check is scheduled with the asking, as the backstop of an answer lost
  with its instance; the answer is recorded only if the attempt has not ended meanwhile
  (``Asking.record``), and one that ends it cancels that check.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.agents.models import Agent
from app.config import Settings
from app.db import db_now, unit_of_work
from app.ivr import advance, calls, provider, twiml, waiting, wire
from app.ivr.models import IvrCall, Provider
from app.routing import endings
from app.routing import handlers as routing_handlers
from app.routing.contact_states import ContactStatus
from app.routing.models import Contact
from app.timers import service as timers
from app.timers.worker import Outside, TimerRegistry, then_outside

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
# An attempt being placed is waited for the provider's timeout and this much more, then taken
# over by its backstop.
LEASE_MARGIN_S: Final = 5


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
    if attempts(call) == 0 and call.placing_until is None:
        await _place(session, call, contact, 1, settings, now)


async def retry(session: AsyncSession, *, call_id: int, settings: Settings, now: datetime) -> None:
    """The next attempt is due: place it if the last one ended unanswered, or if the one
    being placed outlived its lease unrecorded (the backstop)."""
    call = await calls.locked_row(session, IvrCall.id == call_id, nowait=True)
    if call is None or call.contact_id is None or given_up(call):
        return
    made, unrecorded = attempts(call), call.placing_until is not None
    if call.placing_until is not None:
        if call.placing_until > now:  # in flight: its record decides; its backstop stands
            await timers.schedule(
                session, kind=CALLBACK_RETRY, subject=call.id, due_at=call.placing_until
            )
            return
        call.placing_until = None  # its outcome was never recorded (its instance died)
    elif made == 0 or not ended(call, made) or _answered(call, made):
        return
    contact = await waiting.live_contact(session, call.contact_id)
    if contact.status != ContactStatus.connected.value:
        return  # the agent (or a supervisor) ended it meanwhile
    if unrecorded:
        log.warning("callback %s: attempt %s went unrecorded; placed again", call.id, made + 1)
    await _place(session, call, contact, made + 1, settings, now)


async def _place(
    session: AsyncSession,
    call: IvrCall,
    contact: Contact,
    attempt: int,
    settings: Settings,
    now: datetime,
) -> None:
    """Mark ``attempt`` as being placed (its lease, and the retry timer at the lease's end as
    its backstop) and leave the asking for after the commit."""
    endpoint = await endpoint_of(session, contact)
    number = call.caller if call.caller and call.caller.startswith("+") else None
    if not endpoint or number is None:
        why = "the agent has no endpoint" if not endpoint else "the caller's number is unknown"
        advance.note(
            call, None, "callback_failed", call.step, now, attempt=str(attempt), detail=why
        )
        await _give_up(session, call, contact, now)
        return
    ask: Callable[[], Awaitable[str | None]]
    if call.provider == Provider.json.value:
        ask = _place_json(_json_call(call, contact, attempt, number, endpoint), settings)
        timeout_s = settings.json_provider_timeout_s
    else:
        ask = _place_twilio(call, attempt, number, endpoint, settings)
        timeout_s = settings.twilio_api_timeout_s
    lease = now + timedelta(seconds=timeout_s + LEASE_MARGIN_S)
    call.placing_until = lease
    await timers.schedule(session, kind=CALLBACK_RETRY, subject=call.id, due_at=lease)
    placing = Placing(call.id, contact.id, attempt, lease, now)
    then_outside(session, placing.send(settings, ask))


@dataclass(frozen=True, slots=True)
class Placing:
    """An attempt being placed at the provider, recorded as of ``now`` (its firing)."""

    call_id: int
    contact_id: int
    attempt: int
    lease: datetime
    now: datetime

    def send(self, settings: Settings, ask: Callable[[], Awaitable[str | None]]) -> Outside:
        async def send(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
            placed: str | None = None
            refused: provider.ProviderFailed | None = None
            try:
                placed = await ask()
            except provider.ProviderFailed as exc:
                refused = exc
            async with unit_of_work(sessionmaker) as session:
                await self.record(session, placed, refused, settings)

        return send

    async def record(
        self,
        session: AsyncSession,
        placed: str | None,
        refused: provider.ProviderFailed | None,
        settings: Settings,
    ) -> None:
        """The provider answered (``refused`` None: it placed the call, ``placed`` its id
        if it gave one): on the call, if its lease is still this attempt's; if a report
        recorded it placed first, only the call's id (``name_the_call``)."""
        call = await calls.locked_row(session, IvrCall.id == self.call_id)
        if call is None:
            return
        if call.placing_until != self.lease:
            if refused is None and placed:
                await self.name_the_call(session, call, placed)
            return  # a report recorded it placed, or it outlived its lease (the backstop)
        call.placing_until = None
        await timers.cancel(session, kind=CALLBACK_RETRY, subject=call.id)  # answered
        attempt, now = str(self.attempt), self.now
        if refused is not None:
            log.warning("placing callback %s (attempt %s) failed: %s", call.id, attempt, refused)
            advance.note(
                call, None, "callback_failed", call.step, now, attempt=attempt, detail=str(refused)
            )
            contact = await waiting.live_contact(session, self.contact_id)
            await _after_unanswered(session, call, contact, self.attempt, settings, now)
            return
        await _placed(session, call, self.attempt, placed, now)

    async def name_the_call(self, session: AsyncSession, call: IvrCall, ref: str) -> None:
        """A report on this attempt came before the provider's answer and recorded it
        placed, without the provider's id of the call (a JSON provider's report has none):
        the answer gives it, while this placing's lease lasts. Once it has run out, the
        attempt may have been placed again and the record be the other placing's."""
        entry = _entry(call, ("callback_placed",), self.attempt)
        if entry is None or entry.get("call_ref"):
            return
        if await db_now(session) >= self.lease:
            return
        named = {**entry, "call_ref": ref}
        call.transcript = [named if e is entry else e for e in call.transcript]


async def _placed(
    session: AsyncSession, call: IvrCall, attempt: int, ref: str | None, now: datetime
) -> None:
    """``attempt`` was placed (``ref``: the provider's id of the call, if known): on the
    path; a Twilio attempt is asked after if its report is overdue."""
    placed_ref = {} if ref is None else {"call_ref": ref}
    advance.note(call, None, "callback_placed", call.step, now, attempt=str(attempt), **placed_ref)
    if call.provider == Provider.twilio.value:
        due = now + timedelta(seconds=REPORT_WITHIN_S)
        await timers.schedule(session, kind=CALLBACK_CHECK, subject=call.id, due_at=due)


def _place_twilio(
    call: IvrCall, attempt: int, number: str, endpoint: str, settings: Settings
) -> Callable[[], Awaitable[str]]:
    """Placing the attempt through Twilio, its status callbacks to ``STATUS_PATH``: its sid."""
    voice = voice_of(settings)
    document = twiml.bridge(endpoint, waiting.language_of(call), voice=voice)
    status_callback = voice.url(STATUS_PATH, f"call={call.id}&attempt={attempt}")
    from_ = call.called

    async def place() -> str:
        return await provider.place(
            settings,
            to=number,
            from_=from_,
            document=document,
            status_callback=status_callback,
            ring_s=RING_S,
        )

    return place


def _place_json(
    document: dict[str, Any], settings: Settings
) -> Callable[[], Awaitable[str | None]]:
    """Asking the JSON adapter's provider to place ``document``: the call's id if it gives one."""

    async def place() -> str | None:
        return await provider.place_json(settings, document)

    return place


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
    ref: str | None = None,
) -> None:
    """The provider's word on ``attempt`` of the callback of ``call`` (locked:
    ``calls.locked_row``; ``ref``: the provider's id of the call reported on, if it says).

    A report on the attempt being placed, come before the provider's answer was recorded,
    shows it placed: it is recorded so (the answer, when it comes, finds its lease gone and
    at most names the placed call)."""
    if call.placing_until is not None and attempt == attempts(call) + 1:
        call.placing_until = None
        await timers.cancel(session, kind=CALLBACK_RETRY, subject=call.id)  # its backstop
        await _placed(session, call, attempt, ref, now)
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
    reported, ask Twilio, after the commit, and end the attempt as the report would have
    (see the module)."""
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
    # Asked after again as long later, unless Twilio's answer settles the attempt (also the
    # backstop of an answer lost with its instance).
    due = now + timedelta(seconds=REPORT_WITHIN_S)
    await timers.schedule(session, kind=CALLBACK_CHECK, subject=call.id, due_at=due)
    then_outside(session, Asking(call.id, made, ref, now).send(settings))


@dataclass(frozen=True, slots=True)
class Asking:
    """Twilio asked after ``attempt`` (its call ``ref``), recorded as of ``now`` (the check's
    firing)."""

    call_id: int
    attempt: int
    ref: str
    now: datetime

    def send(self, settings: Settings) -> Outside:
        async def send(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
            try:
                found = await provider.status(settings, self.ref)
            except provider.ProviderFailed as exc:
                log.warning(
                    "asking after callback %s (attempt %s) failed: %s",
                    self.call_id,
                    self.attempt,
                    exc,
                )
                heard, reported = NOT_ASKED, None
            else:
                # A call Twilio does not know was never put through: an unanswered attempt.
                heard, reported = (
                    (provider.NOT_FOUND, "failed") if found is None else (found, found)
                )
            async with unit_of_work(sessionmaker) as session:
                await self.record(session, heard, reported, settings)

        return send

    async def record(
        self, session: AsyncSession, heard: str, reported: str | None, settings: Settings
    ) -> None:
        """What Twilio said, as the path records it, and as the report it stands for; nothing
        if the attempt ended meanwhile (reported, or the contact ended)."""
        call = await calls.locked_row(session, IvrCall.id == self.call_id)
        if call is None or call.contact_id is None or given_up(call):
            return
        if attempts(call) != self.attempt or ended(call, self.attempt):
            return  # reported while Twilio was asked
        contact = await waiting.live_contact(session, call.contact_id)
        if contact.status != ContactStatus.connected.value:
            return
        made, now = self.attempt, self.now
        advance.note(call, None, "callback_asked", call.step, now, attempt=str(made), status=heard)
        if reported in ANSWERED or reported in UNANSWERED:
            await status(session, call, attempt=made, reported=reported, settings=settings, now=now)
        # else still ringing, or not to be asked now: the check scheduled with it stands
