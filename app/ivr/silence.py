"""Calls the provider has gone silent about: asked after, and ended on record when over.

Theory of operation
-------------------

A live call is never silent for long. In the menus every ``<Gather>`` comes back when it
times out (``actionOnEmptyResult``); a queued caller's wait loop comes back after each
announcement and its music. Each such webhook marks the call heard (``ivr_calls.heard_at``,
on the database's clock: the incoming call, each step taken, each turn of the wait loop
while the caller waits). A provider's end-of-call report that never arrives (lost, or
refused on its way) used to leave the call in the menus or in the queue for good: its
contact kept its place, was offered to agents, and counted in the queue's figures.

The sweep (``SWEEP``, every ``ivr_silence_sweep_s`` on every instance) claims the calls
still in the menus or queued (or bridged, their conversation over: below) that nothing has
been heard about for ``ivr_silence_s``, the longest silent first, ``BATCH`` at a time: it
marks them heard as of the asking, so no sweep, on this instance or another, takes them
again until another silence has passed. Then it asks after each:

- **Twilio** holds the call: its REST API says the call's status now (``provider.status``).
  A call that is over (``completed``, ``busy``, ``no-answer``, ``failed``, ``canceled``), or
  one Twilio does not know (its 404: ``not-found``), ends as the lost report would have
  ended it (``waiting.ended_silent``: a caller in the menus hung up at their node, a queued
  caller's contact is abandoned, or ended unattended if an agent had answered it), with
  ``ended_silent`` and the status on its path. A call still live (a long hold music, say)
  is left, heard as of the asking. A provider that cannot be reached leaves the call as it
  is: it is asked after again after another silence.
- **The JSON adapter's provider** cannot be asked. A call in its menus goes silent only if
  the provider lost it (every answer there ends in a ``gather``, whose timeout sends
  ``no_input``, or in a ``hangup``): it ends as hung up in the menus, its status
  ``silent``. A JSON caller in the queue whose provider keeps the ``wait`` loop (a turn of
  it has found the caller queued: ``waited_at``) is heard from as often as Twilio's: gone
  silent, it has been lost, and its contact is abandoned as for a ``hangup``. One whose
  provider never sent a ``wait`` is left alone: the loop is the provider's choice, and a
  provider may hold its callers without a word until it reports the hang-up.

Decisions, and why
------------------

- **Claimed, then asked outside any lock, then ended one call at a time.** The claim is one
  statement (``FOR UPDATE SKIP LOCKED``: a row a webhook holds is being heard), committed at
  once; the provider is asked about the whole batch (at most ``ASKING_AT_ONCE`` requests in
  flight) with no row locked; then each call that is over is locked, ended and committed on
  its own, so the sweep never holds one call's lock while it waits for the provider or for
  another call's lock. With several instances each silent call is asked after once a
  silence, not once per instance.
- **The provider's word wins over the clock.** A call the provider says is over ends even
  if a webhook was heard meanwhile (that webhook is answered as for any ended call); a call
  only silent (the JSON adapter's) ends only if nothing was heard since the claim, as its
  row, locked, says.
- **Calls bridged to an agent are asked after only once their conversation is over.** A
  bridged call is silent for the whole conversation, and its contact is the agent's to end;
  a lost ``completed`` after it would leave the call's own row ``bridged`` for good, shown
  as a live call. Once the contact it leads to has left the agent (after-contact work, or
  ended) and the call has been silent for the silence, it is asked after as the others are
  (the JSON adapter's ends as ``silent``); ending it ends only the call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.complaints import service as complaints
from app.config import Settings
from app.db import database_unavailable, driver_connection
from app.ivr import advance, calls, provider, waiting
from app.ivr.models import CallStatus, Provider
from app.routing.contact_states import ContactStatus
from app.timers.worker import TimerRegistry

log = logging.getLogger(__name__)

SWEEP: Final = "ivr.silent_calls"
BATCH: Final = 100  # calls asked after in one sweep
ASKING_AT_ONCE: Final = 8  # requests to the provider in flight at once
# The provider status of a call ended for its provider's silence, when it cannot be asked
# (the JSON adapter's); one the provider does not know is ``provider.NOT_FOUND``.
SILENT: Final = "silent"

_IN_IVR, _QUEUED, _BRIDGED = (
    CallStatus.in_ivr.value,
    CallStatus.queued.value,
    CallStatus.bridged.value,
)
# Whether the conversation of bridged call ``c`` is over: the contact its contact leads to
# (transferred, overflowed) is no longer waiting or with an agent.
_CONVERSATION_OVER = f"""EXISTS (
    WITH RECURSIVE chain (id, next_id, status, depth) AS (
        SELECT ct.id, ct.next_id, ct.status, 0 FROM contacts ct WHERE ct.id = c.contact_id
        UNION ALL
        SELECT ct.id, ct.next_id, ct.status, chain.depth + 1
        FROM chain JOIN contacts ct ON ct.id = chain.next_id
        WHERE chain.depth < {waiting.MAX_FOLLOW}
    )
    SELECT 1 FROM chain
    WHERE chain.next_id IS NULL AND chain.status NOT IN (
        '{ContactStatus.queued.value}', '{ContactStatus.offered.value}',
        '{ContactStatus.connected.value}'
    )
)"""
# The calls silent since before $1 (``ix_ivr_calls_heard_at`` holds the calls in the menus,
# queued or bridged): in the menus; queued, Twilio's, or the JSON adapter's once their
# provider has taken a turn of the wait loop (``waited_at``); bridged, once their
# conversation is over. At most $2, claimed: marked heard as of the asking ($3), so no sweep
# takes them again, on this instance or another, until another silence has passed. Rows a
# transaction holds (a webhook's, another sweep's) are skipped: they are being heard, or
# asked after.
CLAIM_SILENT = f"""
WITH silent AS (
    SELECT c.id FROM ivr_calls c
    WHERE c.status IN ('{_IN_IVR}', '{_QUEUED}', '{_BRIDGED}')
        AND c.heard_at < $1
        AND (
            c.status = '{_IN_IVR}'
            OR (
                c.status = '{_QUEUED}'
                AND (c.provider = '{Provider.twilio.value}' OR c.waited_at IS NOT NULL)
            )
            OR (c.status = '{_BRIDGED}' AND {_CONVERSATION_OVER})
        )
    ORDER BY c.heard_at, c.id
    LIMIT $2
    FOR UPDATE OF c SKIP LOCKED
)
UPDATE ivr_calls c SET heard_at = $3 FROM silent s WHERE c.id = s.id
RETURNING c.id, c.provider, c.call_ref
"""
HEARD_AT = "SELECT heard_at FROM ivr_calls WHERE id = $1"


@dataclass(frozen=True, slots=True)
class Answer:
    """What asking after a silent call found: the provider's status of it (``SILENT`` for a
    provider that cannot be asked), or None when the provider could not be reached."""

    call_id: int
    provider: Provider
    call_ref: str
    status: str | None


def register(registry: TimerRegistry, settings: Settings, desk: complaints.Desk) -> None:
    registry.register_sweep(SWEEP, sweep_for(settings, desk), every_s=settings.ivr_silence_sweep_s)


def sweep_for(
    settings: Settings, desk: complaints.Desk
) -> Callable[[AsyncSession, datetime], Awaitable[int]]:
    async def run(session: AsyncSession, now: datetime) -> int:
        return await silent_calls(session, now, settings=settings, desk=desk)

    return run


async def silent_calls(
    session: AsyncSession, now: datetime, *, settings: Settings, desk: complaints.Desk
) -> int:
    """Ask after the calls silent for ``ivr_silence_s`` at ``now`` and end those that are
    over (see the module); how many calls ended."""
    since = now - timedelta(seconds=settings.ivr_silence_s)
    conn = await driver_connection(session)
    rows = await conn.fetch(CLAIM_SILENT, since, BATCH, now)
    if not rows:
        return 0
    await session.commit()  # the claim stands; nothing is held while the provider is asked
    limit = asyncio.Semaphore(ASKING_AT_ONCE)

    async def ask(row: asyncpg.Record) -> Answer:
        async with limit:
            return await _ask(settings, row["id"], Provider(row["provider"]), row["call_ref"])

    answers = await asyncio.gather(*(ask(row) for row in rows))
    ctx = advance.Context(now, settings, desk, desk.work_calendar())
    ended = 0
    for answer in answers:
        if answer.status is None:
            continue
        try:
            ended += await _settle(session, answer, answer.status, ctx)
            await session.commit()
        except Exception as exc:
            await session.rollback()
            if database_unavailable(exc):
                raise
            # One call that cannot be settled does not hold up the others behind it.
            log.exception(
                "ending silent call %s failed; it is asked after again after another silence",
                answer.call_id,
            )
    return ended


async def _ask(settings: Settings, call_id: int, held_by: Provider, call_ref: str) -> Answer:
    if held_by is not Provider.twilio:
        return Answer(call_id, held_by, call_ref, SILENT)
    try:
        status = await provider.status(settings, call_ref)
    except provider.ProviderFailed as exc:
        log.warning("asking the provider after silent call %s failed: %s", call_id, exc)
        return Answer(call_id, held_by, call_ref, None)
    return Answer(call_id, held_by, call_ref, provider.NOT_FOUND if status is None else status)


async def _settle(session: AsyncSession, answer: Answer, status: str, ctx: advance.Context) -> int:
    """End the call ``answer`` is about if ``status`` says it is over; a call only silent
    ends if nothing was heard since the claim (``heard_at`` still the claim's ``ctx.now``).
    1 if it ended."""
    silent = status == SILENT
    if not silent and status not in waiting.OVER and status != provider.NOT_FOUND:
        return 0  # live: heard as of the claim
    found = await calls.locked(session, answer.provider, answer.call_ref)
    if found is None:
        return 0
    call, flow = found
    if silent:
        conn = await driver_connection(session)
        if await conn.fetchval(HEARD_AT, call.id) != ctx.now:
            return 0  # heard since the claim
    return int(await waiting.ended_silent(session, call, flow, ctx, status=status))
