"""HTTP route for the access log: supervisors read their site's agents' entries, admins all.

The entries are written by the routes that look personal data up (``app/accesslog.py``);
this route only reads them, paged like every list and filtered by agent and kind. Who may
read is the access table's answer (``access_log list``, ``app/agents/access.py``): a supervisor
their own site's entries, an admin all; which entries a supervisor sees is ``list_access``'s
filter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from app.accesslog import AccessKind, AccessLogEntry, AccessOutcome, list_access
from app.agents.access import Action, Resource, require
from app.agents.dependencies import CurrentPrincipal
from app.db import Session
from app.openapi import errors
from app.pagination import Limit, PageCursor, decode_id_cursor, next_id_cursor

router = APIRouter(prefix="/api/v1", tags=["access log"])


class AccessLogEntryOut(BaseModel):
    id: int
    at: datetime
    agent_id: int | None = Field(description="null for a lookup made without signing in")
    role: str
    site: str | None
    kind: AccessKind
    outcome: AccessOutcome
    subject_id: int | None
    query: str | None


class AccessLogPage(BaseModel):
    items: list[AccessLogEntryOut]
    next_cursor: str | None


def entry_out(entry: AccessLogEntry) -> AccessLogEntryOut:
    return AccessLogEntryOut(
        id=entry.id,
        at=entry.at,
        agent_id=entry.agent_id,
        role=entry.role,
        site=entry.site,
        kind=AccessKind(entry.kind),
        outcome=AccessOutcome(entry.outcome),
        subject_id=entry.subject_id,
        query=entry.query,
    )


@router.get("/access-log", response_model=AccessLogPage, responses=errors(403))
async def read_access_log(
    session: Session,
    principal: CurrentPrincipal,
    agent_id: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="one user's")] = None,
    kind: Annotated[AccessKind | None, Query(description="one kind of access")] = None,
    limit: Limit = 100,
    cursor: PageCursor = None,
) -> AccessLogPage:
    """Who looked up or read personal data, oldest first: a supervisor sees their site's
    agents' entries, an admin every entry."""
    require(principal, Resource.access_log, Action.list, sites=(principal.site,))
    entries = await list_access(
        session,
        principal=principal,
        agent_id=agent_id,
        kind=kind,
        after_id=decode_id_cursor(cursor),
        limit=limit,
    )
    return AccessLogPage(
        items=[entry_out(e) for e in entries],
        next_cursor=next_id_cursor([e.id for e in entries], limit),
    )
