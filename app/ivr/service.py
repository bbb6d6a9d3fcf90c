"""IVR flows: upload (validated), read, activate for numbers, and the flow a call runs on.

Theory of operation
-------------------

**Upload.** ``upload`` parses the document (``app.ivr.flow.parse_flow``: shape and graph,
every problem naming its node), then checks what only the database knows: every queue and
skill the flow names exists, an ``enqueue`` node's queue takes voice calls and a
``callback`` node's queue takes callbacks, and the numbers it declares are phone numbers.
Everything wrong is reported at once (``InvalidFlow``, a 422 whose ``fields`` name each node
and field). The stored document is the parsed flow written back as JSON (defaults filled
in), so what a call runs on is exactly what was checked. ``(name, version)`` names a
version once: the same document uploaded again is the same version (a retry), another
document under a version already taken is a 409.

**Activation.** ``activate`` points numbers at a version (the numbers the document declares
unless others are given). A call keeps the version it started on (``ivr_calls.flow_id``),
so activation changes only the calls that start after it.

**Numbers** are compared as ``number_key`` writes them: E.164, or a service number's bare
digits (``95561``), so ``+86 21 9556 1000`` and ``021-95561000`` are one number, and a
service number a provider reports with its country code (``+8695561``) is the short one.

**The flow of a call** is parsed from its stored document once per process and kept
(``flow_by_id``, ``flow_by_key``): a stored version never changes, so the copy is never
stale. A webhook reads only the version's key (id, name, version, upload time); the document
itself is read the first time this process meets the version. The key holds the upload time
as well as the id, so a database made anew under a running process (its ids counting from 1
again) is never answered with another database's flow.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import phonenumbers
from phonenumbers import shortnumberinfo
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents import service as agents
from app.agents.exceptions import UnknownSkill
from app.customers import identity
from app.errors import InvalidInput
from app.events.log import record
from app.ivr.events import IvrEventType
from app.ivr.exceptions import FlowNotFound, FlowVersionTaken, InvalidFlow
from app.ivr.flow import (
    DEMO_FLOWS,
    CallbackNode,
    EnqueueNode,
    Flow,
    FlowError,
    Problem,
    Reference,
    parse_flow,
    references,
)
from app.ivr.models import IvrFlow, IvrNumber
from app.routing import service as routing

# Parsed flows by stored version: a version never changes. Bounded: cleared when full.
_FLOWS: dict[tuple[int, str, int, datetime], Flow] = {}
_FLOWS_KEPT: Final = 256
_SEPARATORS = re.compile(r"[\s\-().]")
DEMO_ACTOR: Final = "system"


# --- numbers ---------------------------------------------------------------------------------


def number_key(value: str, region: str) -> str:
    """A called or calling number as the IVR compares it (see the module's docstring)."""
    try:
        return identity.normalise_phone(value, region=region)
    except identity.InvalidPhone:
        compact = _SEPARATORS.sub("", value.strip())[:32]
    prefix = f"+{phonenumbers.country_code_for_region(region)}"
    rest = compact.removeprefix(prefix)
    if compact.startswith(prefix) and _is_short(rest, region):
        return rest
    return compact


def callable_number(value: str, region: str) -> str:
    """The caller's number as it can be called back (E.164); "" when it is withheld
    (``anonymous``, a provider's placeholder such as ``+266696687``) or no number at all."""
    try:
        return identity.normalise_phone(value, region=region)
    except identity.InvalidPhone:
        return ""


def _is_short(digits: str, region: str) -> bool:
    try:
        number = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return False
    return bool(shortnumberinfo.is_valid_short_number_for_region(number, region))


# --- upload ----------------------------------------------------------------------------------


def parse(document: str | bytes) -> Flow:
    """The flow a document describes, or ``InvalidFlow`` naming every problem."""
    try:
        return parse_flow(document)
    except FlowError as exc:
        raise InvalidFlow(exc.problems) from exc


async def catalogue_problems(session: AsyncSession, flow: Flow) -> list[Problem]:
    """What the flow names that the centre lacks, or cannot use, each naming its node."""
    found: list[Problem] = []
    queues: dict[str, list[str] | None] = {}
    for ref in references(flow):
        if ref.kind == "skill":
            found += await _skill_problem(session, ref)
            continue
        if ref.name not in queues:
            queue = await routing.get_queue(session, ref.name)
            queues[ref.name] = None if queue is None else list(queue.channels)
        found += _queue_problem(flow, ref, queues[ref.name])
    return found


async def _skill_problem(session: AsyncSession, ref: Reference) -> list[Problem]:
    try:
        await agents.skill_ids(session, [ref.name])
    except UnknownSkill:
        return [Problem(ref.node, ref.field, f"skill {ref.name!r} does not exist")]
    return []


def _queue_problem(flow: Flow, ref: Reference, channels: list[str] | None) -> list[Problem]:
    if channels is None:
        return [Problem(ref.node, ref.field, f"queue {ref.name!r} does not exist")]
    node = flow.nodes.get(ref.node)
    needs = (
        "voice"
        if isinstance(node, EnqueueNode)
        else "callback"
        if isinstance(node, CallbackNode)
        else None
    )
    if needs is not None and needs not in channels:
        message = (
            f"queue {ref.name!r} does not take {needs} contacts (it takes {', '.join(channels)})"
        )
        return [Problem(ref.node, ref.field, message)]
    return []


def number_problems(flow: Flow, region: str) -> list[Problem]:
    found = []
    for index, number in enumerate(flow.numbers):
        try:
            identity.normalise_phone(number, region=region)
        except identity.InvalidPhone as exc:
            found.append(Problem(None, f"numbers.{index}", str(exc)))
    return found


async def upload(
    session: AsyncSession, *, document: str | bytes, actor: str, region: str
) -> tuple[IvrFlow, bool]:
    """Store a validated flow version; the stored row and whether it is new (False: the same
    document was uploaded before under this name and version)."""
    flow = parse(document)
    problems = number_problems(flow, region) + await catalogue_problems(session, flow)
    if problems:
        raise InvalidFlow(problems)
    stored = flow.model_dump(mode="json")
    numbers = sorted({number_key(n, region) for n in flow.numbers})
    inserted = await session.scalar(
        insert(IvrFlow)
        .values(
            name=flow.name,
            version=flow.version,
            document=stored,
            numbers=numbers,
            uploaded_by=actor,
        )
        .on_conflict_do_nothing(index_elements=["name", "version"])
        .returning(IvrFlow.id)
    )
    if inserted is None:
        return await _same_upload(session, flow, stored), False
    row = await get_or_raise(session, inserted)
    _record_flow(session, IvrEventType.FLOW_UPLOADED, row, actor)
    return row, True


async def _same_upload(session: AsyncSession, flow: Flow, stored: dict[str, Any]) -> IvrFlow:
    row = await session.scalar(
        select(IvrFlow).where(IvrFlow.name == flow.name, IvrFlow.version == flow.version)
    )
    assert row is not None  # the insert conflicted with it
    if row.document != stored:
        raise FlowVersionTaken(flow.name, flow.version)
    return row


def _record_flow(
    session: AsyncSession, kind: IvrEventType, row: IvrFlow, actor: str, **extra: Any
) -> None:
    data = {"flow_id": row.id, "name": row.name, "version": row.version, **extra}
    record(session, type=kind, subject_type="ivr_flow", subject_id=row.id, data=data, actor=actor)


# --- reading ---------------------------------------------------------------------------------


async def get_or_raise(session: AsyncSession, flow_id: int) -> IvrFlow:
    row = await session.get(IvrFlow, flow_id)
    if row is None:
        raise FlowNotFound(flow_id)
    return row


async def list_flows(session: AsyncSession, *, after_id: int, limit: int) -> Sequence[IvrFlow]:
    """Flow versions by id, after ``after_id`` (a page of ``limit``)."""
    stmt = select(IvrFlow).where(IvrFlow.id > after_id).order_by(IvrFlow.id).limit(limit)
    return (await session.scalars(stmt)).all()


async def active_numbers(session: AsyncSession, flow_ids: Sequence[int]) -> dict[int, list[str]]:
    """The numbers each of these flow versions answers now."""
    rows = (
        await session.execute(
            select(IvrNumber.flow_id, IvrNumber.number)
            .where(IvrNumber.flow_id.in_(flow_ids))
            .order_by(IvrNumber.number)
        )
    ).all()
    found: dict[int, list[str]] = {flow_id: [] for flow_id in flow_ids}
    for row in rows:
        found[row.flow_id].append(row.number)
    return found


# What names a stored version in the parsed-flow cache: read without the document, which is
# fetched (and parsed) only when this process has not parsed that version yet.
_KEY_COLUMNS = (IvrFlow.id, IvrFlow.name, IvrFlow.version, IvrFlow.uploaded_at)


FlowKey = tuple[int, str, int, datetime]


async def flow_by_id(session: AsyncSession, flow_id: int) -> Flow:
    """The parsed flow of a stored version (its document read only the first time)."""
    row = (await session.execute(select(*_KEY_COLUMNS).where(IvrFlow.id == flow_id))).one()
    return await flow_by_key(session, (row[0], row[1], row[2], row[3]))


async def flow_by_key(session: AsyncSession, key: FlowKey) -> Flow:
    """The parsed flow of the version ``key`` names; its document is read on a miss only."""
    flow = _FLOWS.get(key)
    if flow is not None:
        return flow
    document = await session.scalar(select(IvrFlow.document).where(IvrFlow.id == key[0]))
    if document is None:  # a version is never deleted; should its row be gone, say so
        raise FlowNotFound(key[0])
    return _keep(key, document)


def _keep(key: FlowKey, document: dict[str, Any]) -> Flow:
    if len(_FLOWS) >= _FLOWS_KEPT:
        _FLOWS.clear()
    flow = _FLOWS[key] = parse_flow(document)
    return flow


# --- activation ------------------------------------------------------------------------------


async def activate(
    session: AsyncSession,
    *,
    flow_id: int,
    numbers: Sequence[str] | None,
    actor: str,
    region: str,
    now: datetime,
) -> IvrFlow:
    """Point ``numbers`` (default: the ones the flow declares) at this version."""
    row = await get_or_raise(session, flow_id)
    keys = (
        row.numbers
        if numbers is None
        else [_activation_key(n, i, region) for i, n in enumerate(numbers)]
    )
    if not keys:
        raise InvalidInput(
            "numbers: the flow declares none; name the numbers to activate", field="numbers"
        )
    for key in sorted(set(keys)):
        await session.execute(
            insert(IvrNumber)
            .values(number=key, flow_id=row.id, activated_by=actor, activated_at=now)
            .on_conflict_do_update(
                index_elements=["number"],
                set_={"flow_id": row.id, "activated_by": actor, "activated_at": now},
            )
        )
    _record_flow(session, IvrEventType.FLOW_ACTIVATED, row, actor, numbers=sorted(set(keys)))
    return row


async def _demo_may_take(session: AsyncSession, row: IvrFlow, number: str, region: str) -> bool:
    """Whether the demo's version ``row`` may answer ``number``: nothing answers it, or an
    earlier version of the same flow that the demo itself activated."""
    answering = (
        await session.execute(
            select(IvrFlow.name, IvrFlow.version, IvrNumber.activated_by)
            .join(IvrNumber, IvrNumber.flow_id == IvrFlow.id)
            .where(IvrNumber.number == number_key(number, region))
        )
    ).first()
    if answering is None:
        return True
    name, version, activated_by = answering
    return bool(name == row.name and version < row.version and activated_by == DEMO_ACTOR)


def _activation_key(number: str, index: int, region: str) -> str:
    try:
        identity.normalise_phone(number, region=region)
    except identity.InvalidPhone as exc:
        raise InvalidInput(f"numbers.{index}: {exc}", field=f"numbers.{index}") from exc
    return number_key(number, region)


# --- the demo --------------------------------------------------------------------------------


async def install_demo_flows(session: AsyncSession, *, region: str, now: datetime) -> list[IvrFlow]:
    """Upload the demo flows (``app/ivr/flows/*.yaml``) and activate each for the numbers it
    declares that no flow answers yet, or that an earlier version of the same demo flow
    answers because the demo activated it: a database set up by an earlier demo moves to the
    new version, but a version an operator activated stays. Idempotent: run again, it
    changes nothing."""
    installed = []
    for path in sorted(DEMO_FLOWS.glob("*.yaml")):
        row, _ = await upload(session, document=path.read_bytes(), actor=DEMO_ACTOR, region=region)
        free = [n for n in row.numbers if await _demo_may_take(session, row, n, region)]
        if free:
            await activate(
                session, flow_id=row.id, numbers=free, actor=DEMO_ACTOR, region=region, now=now
            )
        installed.append(row)
    return installed
