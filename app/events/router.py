"""HTTP access to the event log: read forward from a cursor, optionally waiting."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from app.agents.dependencies import CurrentPrincipal
from app.agents.models import Role
from app.agents.permissions import Principal
from app.events.log import Cursor, LoggedEvent, head, read_after

router = APIRouter(prefix="/api/v1", tags=["events"])


class EventOut(BaseModel):
    cursor: str
    event: dict[str, Any]


class EventPage(BaseModel):
    items: list[EventOut]
    cursor: str = Field(description="pass as `after` to continue; it never moves backwards")


def visible_to(principal: Principal, event: LoggedEvent) -> bool:
    """Supervisors and admins see the whole log; agents see what concerns them."""
    if principal.role is not Role.agent:
        return True
    mine = str(principal.id)
    if event.subject_type == "agent" and event.subject_id == mine:
        return True
    return str(event.data.get("agent_id")) == mine


@router.get("/events", response_model=EventPage)
async def list_events(
    request: Request,
    principal: CurrentPrincipal,
    after: Annotated[
        str | None, Query(description="cursor; omitted: start from the current head")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    wait_s: Annotated[
        float, Query(ge=0, le=30, description="wait up to this long for the first event")
    ] = 0,
) -> EventPage:
    """Events after a cursor, in commit-safe log order, gapless; long-polls with `wait_s`."""
    # No transaction stays open while the poll waits (an open transaction would hold every
    # reader of the log back): each read below is a statement of its own.
    engine = request.app.state.engine
    async with engine.connect() as conn:
        cursor = Cursor.parse(after) if after is not None else await head(conn)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    hub = request.app.state.hub
    more = hub.watch()
    try:
        while True:
            more.clear()
            # Close followers are served from what the hub has read; others read the log.
            batch = hub.since(cursor, limit)
            if batch is None:
                async with engine.connect() as conn:
                    batch = await read_after(conn, cursor, limit=limit)
            items = [e for e in batch if visible_to(principal, e)]
            cursor = batch[-1].cursor if batch else cursor
            remaining = deadline - loop.time()
            if items or remaining <= 0 or (batch and len(batch) == limit):
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await more.wait()
    finally:
        hub.unwatch(more)
    return EventPage(
        items=[EventOut(cursor=str(e.cursor), event=e.as_message()) for e in items],
        cursor=str(cursor),
    )
