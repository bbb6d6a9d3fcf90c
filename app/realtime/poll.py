"""HTTP access to the event log: read forward from a cursor, optionally waiting.

It pages like every list (``limit`` and ``cursor`` in, ``items`` and ``next_cursor`` out), with
one difference a log implies: the log never ends, so ``next_cursor`` is always given (the
place to read on from, even after an empty page). ``after`` and the response's ``cursor``,
the names this route had before, are still read and sent.

Who reads what is the access table's answer (``app/agents/access.py``): ``events list`` lets a
role poll at all (an agent: the events that concern them, a list that filters and never
refuses), and ``events stream`` lets it see every event. An event concerns a principal when
it is about them (subject ``agent``, their id) or its data names them as ``agent_id`` or
``previous_agent_id``: a complaint event names the complaint's assignee after it and, for a
move, the one before it (``app.complaints.events``), so an agent hears of the complaints they
are given and of those taken from them, and of no other complaint.

A long poll signs in when it arrives, like every request, and waits up to 30 s: a request
that waited checks its token again (expiry, and its agent's row) before it answers, so a
token revoked or expired while it waited is answered 401 and never given the events that
woke it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from app.agents.access import Action, Resource, allows, require
from app.agents.dependencies import CurrentPrincipal, SignedToken, recheck
from app.agents.permissions import Principal
from app.agents.security import TokenClaims
from app.errors import InvalidInput
from app.events.log import Cursor, LoggedEvent, head, read_after
from app.openapi import errors
from app.realtime.hub import concerned_agents

router = APIRouter(prefix="/api/v1", tags=["events"])


class EventOut(BaseModel):
    cursor: str
    event: dict[str, Any]


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str = Field(
        description="pass as `cursor` to read on; never null (the log goes on), never backwards"
    )
    cursor: str = Field(description="the same as `next_cursor`", deprecated=True)


EventCursor = Annotated[
    str | None,
    Query(
        max_length=64,
        description="the `next_cursor` of the previous page; omitted: the current head",
    ),
]


def visible_to(principal: Principal, event: LoggedEvent) -> bool:
    """A role with ``events stream`` sees the whole log; others see what concerns them."""
    if allows(principal, Resource.events, Action.stream):
        return True
    return str(principal.id) in concerned_agents(event)


@router.get("/events", response_model=EventPage, responses=errors(403))
async def list_events(
    request: Request,
    claims: SignedToken,
    principal: CurrentPrincipal,
    cursor: EventCursor = None,
    after: Annotated[
        str | None, Query(max_length=64, description="the former name of `cursor`", deprecated=True)
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    wait_s: Annotated[
        float, Query(ge=0, le=30, description="wait up to this long for the first event")
    ] = 0,
) -> EventPage:
    """Events after a cursor, in commit-safe log order, gapless; long-polls with `wait_s`."""
    require(principal, Resource.events, Action.list, owner_ids=(principal.id,))
    # No transaction stays open while the poll waits (an open transaction would hold every
    # reader of the log back): each read below is a statement of its own.
    engine = request.app.state.engine
    given = cursor if cursor is not None else after
    async with engine.connect() as conn:
        position = _parse_cursor(given) if given is not None else await head(conn)
    signed_in = (claims, principal)
    items, position = await _poll(request, signed_in, position, limit=limit, wait_s=wait_s)
    return EventPage(
        items=[EventOut(cursor=str(e.cursor), event=e.as_message()) for e in items],
        next_cursor=str(position),
        cursor=str(position),
    )


def _parse_cursor(value: str) -> Cursor:
    try:
        return Cursor.parse(value)
    except InvalidInput as exc:
        raise InvalidInput(exc.detail, field="cursor") from exc


async def _poll(
    request: Request,
    signed_in: tuple[TokenClaims, Principal],
    cursor: Cursor,
    *,
    limit: int,
    wait_s: float,
) -> tuple[list[LoggedEvent], Cursor]:
    """The visible events of the first non-empty batch after ``cursor`` (waiting up to
    ``wait_s`` for one), and the cursor to read on from."""
    claims, principal = signed_in
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    hub = request.app.state.hub
    more = hub.watch()
    waited = False
    try:
        while True:
            more.clear()
            batch = await _batch(request, cursor, limit)
            items = [e for e in batch if visible_to(principal, e)]
            cursor = batch[-1].cursor if batch else cursor
            remaining = deadline - loop.time()
            if items or remaining <= 0 or (batch and len(batch) == limit):
                if waited:
                    await recheck(request, claims)  # raises if revoked meanwhile
                return items, cursor
            waited = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await more.wait()
    finally:
        hub.unwatch(more)


async def _batch(request: Request, cursor: Cursor, limit: int) -> Sequence[LoggedEvent]:
    """Up to ``limit`` events after ``cursor``: close followers are served from what the hub
    has read; others read the log."""
    batch: Sequence[LoggedEvent] | None = request.app.state.hub.since(cursor, limit)
    if batch is None:
        async with request.app.state.engine.connect() as conn:
            batch = await read_after(conn, cursor, limit=limit)
    return batch
