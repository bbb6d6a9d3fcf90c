"""Request dependencies: the signed-in principal and role gates."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from app.agents import service
from app.agents.models import Role
from app.agents.permissions import Principal
from app.agents.security import TokenError, read_token
from app.db import Session
from app.errors import Forbidden, Unauthorized

bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


async def principal_from_token(request: Request, session: Session, token: str) -> Principal:
    """The active agent a token names, with the role the database holds now."""
    try:
        claims = read_token(request.app.state.jwt_secret, token)
    except TokenError as exc:
        raise Unauthorized(str(exc)) from exc
    agent = await service.get_identity(session, claims.agent_id)
    if agent is None or not agent.active:
        raise Unauthorized("this account is disabled or no longer exists")
    if claims.version != agent.token_version:
        raise Unauthorized("the password has changed since this token was issued: sign in again")
    return Principal(id=agent.id, username=agent.username, role=Role(agent.role), site=agent.site)


async def current_principal(
    request: Request, session: Session, token: Annotated[str | None, Depends(bearer)]
) -> Principal:
    if not token:
        raise Unauthorized("a bearer token is required (POST /api/v1/auth/token)")
    return await principal_from_token(request, session, token)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_role(*roles: Role) -> object:
    """A dependency that lets only ``roles`` through."""

    async def check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in roles:
            allowed = " or ".join(r.value for r in roles)
            raise Forbidden(f"this needs the {allowed} role")
        return principal

    return Depends(check)


SupervisorOrAdmin = Annotated[Principal, require_role(Role.supervisor, Role.admin)]
