"""Request dependencies of the customers routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.agents.dependencies import CurrentPrincipal
from app.customers.lookups import LookupGuard
from app.db import Session


async def lookup_guard(
    request: Request, session: Session, principal: CurrentPrincipal
) -> LookupGuard:
    """The request's guard over lookups, on its own session and signed-in user."""
    state = request.app.state
    return LookupGuard(session, state.engine, state.sessionmaker, principal, state.settings)


Guard = Annotated[LookupGuard, Depends(lookup_guard)]
