"""Connecting a phone contact to the agent who answered it: the live caller, or a callback.

Theory of operation
-------------------

Routing knows when an agent accepts an offer; the IVR, above it, must then connect the
caller. Routing never calls up: ``routing.offers.accept_offer`` schedules
``contact.phone_answered`` (subject: the contact) for a voice or callback contact, due at
once and in the same transaction as the answer, and the commit wakes this instance's timer
worker. ``answered`` is that kind's handler:

- **A queued caller** (the call's status ``queued``, its contact the one answered, or one
  the contact was transferred or overflowed to): the live call is redirected through the
  provider's REST API to ``<Dial>`` the agent's endpoint (``provider.redirect``), and the
  call moves to ``bridged``, with the agent and the way it was bridged in its path. A
  caller of the JSON adapter is held by its provider, which Hotline cannot call: the
  provider's next ``wait`` event is answered with the ``dial`` (``put_through_in_loop``).
- **A callback** (the call ended with outcome ``callback``, its contact a callback
  contact): Hotline places the outbound call (``app.ivr.callbacks``).

**The wait loop is the fallback.** A redirect the provider refused, or one that never ran,
still reaches the caller: each turn of the wait loop asks routing where the contact stands,
and a contact already connected to an agent whose call is not bridged yet is bridged by the
turn's own answer (``bridge_in_loop``). Whichever comes first wins under the call's row
lock; the other finds the call bridged and does nothing.

A provider failure is recorded on the call's path (``bridge_failed``) and retried by the
IVR's own ``ivr.bridge`` timer, ``BRIDGE_RETRIES`` times, a little later each time; the
wait loop covers the rest. A refusal that says the call is no longer in progress
(``provider.CallOver``) is not retried: the caller has gone, and no wait loop will come back
for them (the provider's ``completed`` may have been lost). The call ends there, and the
contact ends unattended (``waiting.caller_gone``), so the agent is not left holding it.

Decisions, and why
------------------

- **A timer, not a sweep of the log.** The timer is written with the answer, in one
  transaction, so it cannot be missed; it is due at once and the commit wakes the worker, so
  the redirect leaves within the worker's wake-up, far inside the second the caller may
  wait. A cursor over the log would be as durable but only as quick as its poll interval.
- **The call's row is locked without waiting** (``NOWAIT``, as routing's handlers do): a
  handler that waited for a row a webhook holds would hold one of the worker's few
  calling-out slots meanwhile. Locked: it fires again a moment later.
- **The provider is called with no transaction open.** A transaction open while Twilio
  answers would hold the event feed back (it has a transaction id: every console and
  wallboard would wait for Twilio). The handler marks the call as being redirected until a
  lease ends (``redirecting_until``: the provider's timeout and ``LEASE_MARGIN_S``),
  schedules the ``ivr.bridge`` timer for the lease's end as its backstop, and commits; the
  redirect is then asked of Twilio (``timers.worker.then_outside``), and its outcome is
  recorded in a transaction of its own, only if the call's lease is still this redirect's
  (a redirect that outlived its lease has been taken over by the backstop). A wait-loop
  turn arriving while a redirect is in flight does not bridge the caller a second time:
  the caller keeps holding, and the redirect takes the call. A process that dies with a
  redirect in flight leaves the lease to run out: the backstop redirects again, and the
  wait loop bridges the caller meanwhile. The kinds are registered as calling out
  (``calls_out``): the timer worker fires each of their timers apart from the claim of the
  other kinds, so a slow provider holds up the redirect and nothing else (an offer's ring
  timeout, a contact's max wait, a complaint's clock).
- **An agent without an endpoint** cannot be dialled: the path says so
  (``no_endpoint``) and the caller keeps hearing "please hold" until the agent or a
  supervisor ends the contact; nothing is retried, as retrying cannot help.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import DateTime, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import db_now, unit_of_work
from app.events.log import record_many
from app.ivr import advance, callbacks, provider, twiml, waiting
from app.ivr.models import CallStatus, IvrCall, Provider
from app.ivr.vocabulary import Outcome
from app.routing import handlers as routing_handlers
from app.routing.contact_states import ContactStatus
from app.routing.models import Contact
from app.routing.offers import PHONE_ANSWERED
from app.timers import service as timers
from app.timers.worker import Outside, TimerRegistry, then_outside

log = logging.getLogger(__name__)

BRIDGE_RETRY: Final = "ivr.bridge"
BRIDGE_RETRIES: Final = 3
MAX_BACK: Final = 20  # parents followed back from an answered contact (transfers, overflows)
# A redirect in flight is waited for the provider's timeout and this much more, then taken
# over by its backstop.
LEASE_MARGIN_S: Final = 5


async def call_of_contact(
    session: AsyncSession, contact_id: int, *, nowait: bool = False, lock: bool = True
) -> IvrCall | None:
    """The IVR call whose contact is ``contact_id`` or continues in it, locked (unless
    ``lock`` is False: a read)."""
    chain = [contact_id]
    for _ in range(MAX_BACK):
        stmt = select(IvrCall).where(IvrCall.contact_id == chain[-1])
        if lock:
            stmt = stmt.with_for_update(nowait=nowait)
        call = await session.scalar(stmt.execution_options(populate_existing=True))
        if call is not None:
            return call
        before = await session.scalar(select(Contact.parent_id).where(Contact.id == chain[-1]))
        if before is None or before in chain:
            return None
        chain.append(before)
    return None


def register(registry: TimerRegistry, settings: Settings) -> None:
    """The IVR's timer kinds: routing's answered phone contact, its own retries."""
    handler = routing_handlers.without_waiting(_answered(settings))
    # Both call the provider: fired apart, so a slow provider holds up no other timer.
    registry.register(PHONE_ANSWERED, handler, calls_out=True)
    registry.register(BRIDGE_RETRY, handler, calls_out=True)
    callbacks.register(registry, settings)


def _answered(settings: Settings) -> Callable[[AsyncSession, int, datetime], Awaitable[None]]:
    async def handle(session: AsyncSession, contact_id: int, now: datetime) -> None:
        await answered(session, contact_id=contact_id, settings=settings, now=now)

    return handle


async def answered(
    session: AsyncSession, *, contact_id: int, settings: Settings, now: datetime
) -> None:
    """An agent answered phone contact ``contact_id``: connect its caller (see the module)."""
    call = await call_of_contact(session, contact_id, nowait=True)
    if call is None:
        return  # a phone contact that did not come through the IVR
    contact = await waiting.live_contact(session, contact_id)
    if contact.status != ContactStatus.connected.value:
        return  # ended or back in the queue before this ran
    if call.status == CallStatus.queued.value:
        if call.provider == Provider.twilio.value:
            await _redirect(session, call, contact, settings, now)
        # A caller of the JSON adapter is held by its provider, which puts them through
        # when its next ``wait`` event hears of the answer (``put_through_in_loop``).
    elif call.outcome == Outcome.CALLBACK.value and contact.channel == "callback":
        await callbacks.first_attempt(session, call, contact, settings=settings, now=now)


async def _redirect(
    session: AsyncSession, call: IvrCall, contact: Contact, settings: Settings, now: datetime
) -> None:
    endpoint = await callbacks.endpoint_of(session, contact)
    if not endpoint:
        if not _noted(call, "no_endpoint"):
            advance.note(call, None, "no_endpoint", call.step, now, agent=str(contact.agent_id))
        return
    if call.redirecting_until is not None and call.redirecting_until > now:
        # One is in flight: its outcome is recorded when Twilio answers; its backstop stands.
        until = call.redirecting_until
        await timers.schedule(session, kind=BRIDGE_RETRY, subject=contact.id, due_at=until)
        return
    document = twiml.bridge(endpoint, waiting.language_of(call), voice=callbacks.voice_of(settings))
    lease = now + timedelta(seconds=settings.twilio_api_timeout_s + LEASE_MARGIN_S)
    call.redirecting_until = lease
    await timers.schedule(session, kind=BRIDGE_RETRY, subject=contact.id, due_at=lease)
    redirect = Redirect(call.id, call.call_ref, document, lease, contact.id, contact.agent_id)
    then_outside(session, redirect.send(settings))


@dataclass(frozen=True, slots=True)
class Redirect:
    """A redirect of a queued caller to their agent, in flight at the provider."""

    call_id: int
    call_ref: str
    document: str
    lease: datetime
    contact_id: int
    agent_id: int | None

    def send(self, settings: Settings) -> Outside:
        async def send(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
            refused: provider.ProviderFailed | None = None
            try:
                await provider.redirect(settings, self.call_ref, self.document)
            except provider.ProviderFailed as exc:  # CallOver among them
                refused = exc
            async with unit_of_work(sessionmaker) as session:
                await self.record(session, refused)

        return send

    async def record(self, session: AsyncSession, refused: provider.ProviderFailed | None) -> None:
        """Twilio answered the redirect (``refused`` None: it took it): on the call, if its
        lease is still this redirect's."""
        call = await session.scalar(
            select(IvrCall)
            .where(IvrCall.id == self.call_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if call is None or call.redirecting_until != self.lease:
            return  # it outlived its lease: the backstop took over
        call.redirecting_until = None
        # The redirect has its answer: its backstop goes (a failure schedules the retry).
        await timers.cancel(session, kind=BRIDGE_RETRY, subject=self.contact_id)
        now = await db_now(session)
        if call.status != CallStatus.queued.value:  # the caller hung up meanwhile
            return
        if refused is None:
            bridged(call, self.agent_id, via="redirect", now=now)
        elif isinstance(refused, provider.CallOver):
            log.info("call %s is over: its caller was not put through to the agent", call.id)
            advance.note(call, None, "bridge_failed", call.step, now, detail=str(refused))
            await _call_over(
                session, call, await waiting.live_contact(session, self.contact_id), now
            )
        else:
            failures = _count(call, "bridge_failed") + 1
            log.warning("redirecting call %s to its agent failed: %s", call.id, refused)
            advance.note(call, None, "bridge_failed", call.step, now, detail=str(refused))
            if failures < BRIDGE_RETRIES:
                due = now + timedelta(seconds=failures)
                await timers.schedule(
                    session, kind=BRIDGE_RETRY, subject=self.contact_id, due_at=due
                )


async def _call_over(session: AsyncSession, call: IvrCall, contact: Contact, now: datetime) -> None:
    """The provider says the queued caller's call is over: it ends, on record, as a status
    callback would have ended it, and the answered contact ends unattended."""
    before = call.status
    call.status, call.ended_at = CallStatus.ended.value, now
    await waiting.caller_gone(session, call, contact.id, now)
    await record_many(session, [waiting.call_ended(call, before)])


def bridged(call: IvrCall, agent_id: int | None, *, via: str, now: datetime) -> None:
    """The caller is connected to the contact's agent: on the call and in its path."""
    call.status = CallStatus.bridged.value
    advance.note(call, None, "bridged", call.step, now, agent=str(agent_id), via=via)


async def bridge_in_loop(
    session: AsyncSession, call: IvrCall, settings: Settings, now: datetime
) -> str | None:
    """The wait loop's fallback: the TwiML bridging a caller whose contact an agent answered
    but whose call is not bridged yet; None if there is nothing to bridge."""
    found = await put_through_in_loop(session, call, now)
    if found is None:
        return None
    _, endpoint = found
    return twiml.bridge(endpoint, waiting.language_of(call), voice=callbacks.voice_of(settings))


async def put_through_in_loop(
    session: AsyncSession, call: IvrCall, now: datetime
) -> tuple[Contact, str] | None:
    """A turn of the wait loop finds the caller's contact answered: the contact and the
    agent's endpoint to put them through to (the call marked bridged, ``via: wait_loop``,
    if it was not); None if there is nothing to put through (not answered, no endpoint)."""
    await session.refresh(call, with_for_update=True)
    if call.status not in (CallStatus.queued.value, CallStatus.bridged.value):
        return None
    if call.redirecting_until is not None and await _in_flight(session, call.redirecting_until):
        return None  # a redirect is in flight: it puts the caller through, not this turn
    if call.contact_id is None:
        return None
    contact = await waiting.live_contact(session, call.contact_id)
    if contact.status != ContactStatus.connected.value:
        return None
    endpoint = await callbacks.endpoint_of(session, contact)
    if not endpoint:
        return None
    if call.status == CallStatus.queued.value:
        bridged(call, contact.agent_id, via="wait_loop", now=now)
    return contact, endpoint


async def _in_flight(session: AsyncSession, lease: datetime) -> bool:
    """Whether a redirect's lease still runs, by the database's clock (the one it was set
    by: a webhook's ``now`` may be another, a test's)."""
    return bool(await session.scalar(select(func.now() < literal(lease, DateTime(timezone=True)))))


def _count(call: IvrCall, result: str) -> int:
    return sum(1 for entry in call.transcript if entry.get("result") == result)


def _noted(call: IvrCall, result: str) -> bool:
    return _count(call, result) > 0
