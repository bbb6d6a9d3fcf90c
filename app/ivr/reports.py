"""What the IVR did: one call's path, and the outcomes of the calls of a period.

Theory of operation
-------------------

``call_view`` shows one call as the IVR recorded it: the flow version it ran on, each step's
records (node, the caller's input, the prompt played, the result, the outcome; collected
values that identify a person arrive masked from the machine), how it left the IVR and how
long it spent there. The caller's number is masked for a viewer who may not see customers'
numbers in full.

``period`` is the report's ``[from, to)`` as the queue reports default theirs
(docs/reports.md): ``to`` now, ``from`` the start of the day ``to`` falls in, in the centre's
zone (the day before, when ``to`` is its midnight). Explicit values are taken as given.

``outcomes`` counts the calls started in ``[from, to)`` by outcome (``served`` in
self-service, ``enqueued``, ``callback``, ``transferred``, ``hung_up``, the IVR's own
abandonment, ``ended``, and ``in_ivr`` for calls with no outcome yet), the enqueued callers
who then hung up while waiting (their contact abandoned), the drop-off per node (where the
callers who hung up in the IVR left), and the mean time in the IVR of the calls that left it.
Each figure is one aggregate query over ``ivr_calls`` (``ix_ivr_calls_started_at``).

``outcomes_csv`` writes the same report as CSV for a spreadsheet: one ``figure,name,value``
line per figure (UTF-8 with a byte-order mark, so spreadsheets read Chinese node names
right); a cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``) gets a
leading ``'``.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.customers import identity
from app.db import db_now
from app.errors import InvalidInput
from app.ivr import advance, answers, callbacks, service
from app.ivr.document import MenuNode
from app.ivr.exceptions import CallNotFound
from app.ivr.flow import Flow
from app.ivr.models import IvrCall
from app.ivr.schemas import CallOut, CallStep, DropOff, InFlight, OutcomeCount, OutcomeReport
from app.ivr.vocabulary import Outcome
from app.routing.contact_states import ContactStatus
from app.routing.figures import zone_day_start
from app.routing.models import Contact

NO_OUTCOME = "in_ivr"


async def find_call(session: AsyncSession, call_ref: str, provider: str | None) -> IvrCall:
    """The call with this provider's id (of ``provider``, when given), or a 404."""
    stmt = select(IvrCall).where(IvrCall.call_ref == call_ref).order_by(IvrCall.id).limit(1)
    if provider is not None:
        stmt = stmt.where(IvrCall.provider == provider)
    call = await session.scalar(stmt)
    if call is None:
        raise CallNotFound(call_ref)
    return call


async def call_view(
    session: AsyncSession, call: IvrCall, *, unmasked: bool, now: datetime
) -> CallOut:
    """One call's way through the IVR; a step that chose a menu option names it."""
    flow = await service.flow_by_id(session, call.flow_id)  # its document read once a process
    caller = call.caller
    if caller and not unmasked:
        caller = identity.mask_phone(caller)
    language = call.state.get("language") if isinstance(call.state, dict) else None
    return CallOut(
        call_id=call.call_ref,
        provider=call.provider,
        caller=caller,
        called=call.called,
        flow_id=call.flow_id,
        flow=flow.name,
        flow_version=flow.version,
        status=call.status,
        step=call.step,
        outcome=call.outcome,
        drop_node=call.drop_node,
        contact_id=call.contact_id,
        provider_status=call.provider_status,
        language=language if isinstance(language, str) else None,
        started_at=call.started_at,
        left_ivr_at=call.left_ivr_at,
        ended_at=call.ended_at,
        ivr_s=advance.seconds_in_ivr(call, now),
        in_flight=in_flight(call, await db_now(session)),
        path=[_step(flow, entry) for entry in call.transcript],
    )


def in_flight(call: IvrCall, now: datetime) -> InFlight | None:
    """The request the call has in flight at the provider, as its leases record it.

    A lease is cleared when the answer is recorded (or, for an attempt, when a report on it
    came first); one that ran out stays on the row (its instance died, or the call ended
    meanwhile) until its backstop looks, so a lease counts only while it runs by the
    database's clock (``now``), the one that set it."""
    if call.redirecting_until is not None and call.redirecting_until > now:
        return InFlight(request="redirect", attempt=None, until=call.redirecting_until)
    if call.placing_until is not None and call.placing_until > now:
        # While an attempt is being placed, nothing of it is on the path yet.
        attempt = callbacks.attempts(call) + 1
        return InFlight(request="callback", attempt=attempt, until=call.placing_until)
    return None


def _step(flow: Flow, entry: dict[str, Any]) -> CallStep:
    step = CallStep.model_validate(entry)
    node = flow.nodes.get(step.node or "")
    if step.result == "option" and isinstance(node, MenuNode):
        option = answers.option_chosen(node, step.input)
        if option is not None:
            step.choice = {
                language: phrases[0] for language, phrases in option.phrases.items() if phrases
            } or None
    return step


def period(
    *, start: datetime | None, end: datetime | None, now: datetime, zone: ZoneInfo
) -> tuple[datetime, datetime]:
    """The report's ``[from, to)``, the parameters left out filled in (see the module)."""
    until = now if end is None else end
    if start is not None:
        if end is None and start >= until:
            raise InvalidInput("from: must be before `to` (default: now)", field="from")
        return start, until
    try:
        first = zone_day_start(until, zone)
        return (first if first < until else zone_day_start(until - _SECOND, zone)), until
    except (OverflowError, ValueError) as exc:
        raise InvalidInput(
            "to: out of range for working out a default `from` (give `from` too)", field="to"
        ) from exc


_SECOND = timedelta(seconds=1)


async def outcomes(session: AsyncSession, *, start: datetime, end: datetime) -> OutcomeReport:
    """The IVR's outcomes for the calls started in ``[start, end)``."""
    if end <= start:
        raise InvalidInput("to: must be after from", field="to")
    period = (IvrCall.started_at >= start, IvrCall.started_at < end)
    by_outcome = await _counts(session, IvrCall.outcome, *period)
    drops = await _counts(
        session, IvrCall.drop_node, *period, IvrCall.outcome == Outcome.HUNG_UP.value
    )
    abandoned = await session.scalar(
        select(func.count())
        .select_from(IvrCall)
        .join(Contact, Contact.id == IvrCall.contact_id)
        .where(*period, IvrCall.outcome == Outcome.ENQUEUED.value)
        .where(Contact.status == ContactStatus.abandoned.value)
    )
    seconds = func.extract("epoch", IvrCall.left_ivr_at - IvrCall.started_at)
    mean = await session.scalar(
        select(func.avg(seconds)).where(*period, IvrCall.left_ivr_at.is_not(None))
    )
    return OutcomeReport.model_validate(
        {
            "from": start,
            "to": end,
            "calls": sum(by_outcome.values()),
            "outcomes": [
                OutcomeCount(outcome=name or NO_OUTCOME, calls=count)
                for name, count in sorted(by_outcome.items(), key=_by_count)
            ],
            "abandoned_in_queue": int(abandoned or 0),
            "drop_off": [
                DropOff(node=node or "", calls=count)
                for node, count in sorted(drops.items(), key=_by_count)
            ],
            "mean_ivr_s": None if mean is None else round(float(mean), 3),
        }
    )


def _by_count(item: tuple[str | None, int]) -> tuple[int, str]:
    return -item[1], item[0] or ""


async def _counts(session: AsyncSession, column: Any, *where: Any) -> dict[str | None, int]:
    rows = (
        await session.execute(select(column, func.count()).where(*where).group_by(column))
    ).all()
    return {row[0]: int(row[1]) for row in rows}


CSV_HEADER = ("figure", "name", "value")


def outcomes_csv(report: OutcomeReport) -> str:
    """The outcome report as CSV lines (see the module)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    writer.writerow(("from", "", report.from_.isoformat()))
    writer.writerow(("to", "", report.to.isoformat()))
    writer.writerow(("calls", "", report.calls))
    for outcome in report.outcomes:
        writer.writerow(("outcome", _cell(outcome.outcome), outcome.calls))
    writer.writerow(("abandoned_in_queue", "", report.abandoned_in_queue))
    for drop in report.drop_off:
        writer.writerow(("drop_off", _cell(drop.node), drop.calls))
    writer.writerow(("mean_ivr_s", "", "" if report.mean_ivr_s is None else report.mean_ivr_s))
    return "\ufeff" + out.getvalue()


def _cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
