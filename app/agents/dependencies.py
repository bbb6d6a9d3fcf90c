"""Request dependencies: the signed-in principal and role gates."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from app.agents import service
from app.agents.models import Role
from app.agents.permissions import Principal
from app.agents.security import TokenClaims, TokenError
from app.errors import Forbidden, Unauthorized

DISABLED = "this account is disabled or no longer exists"
REVOKED = "this token was revoked (password, role, site or activation changed): sign in again"
bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def token_claims(request: Request, token: str | None) -> TokenClaims:
    """What a bearer token says, once its signature and expiry are checked."""
    if not token:
        raise Unauthorized("a bearer token is required (POST /api/v1/auth/token)")
    try:
        return request.app.state.tokens.read(token)  # type: ignore[no-any-return]
    except TokenError as exc:
        raise Unauthorized(str(exc)) from exc


def check_identity(claims: TokenClaims, identity: service.Identity | None) -> Principal:
    """The principal a token names, if the database still lets it in."""
    if identity is None or not identity.active:
        raise Unauthorized(DISABLED)
    if claims.version != identity.token_version:
        raise Unauthorized(REVOKED)
    return Principal(
        id=identity.id, username=identity.username, role=Role(identity.role), site=identity.site
    )


async def recheck(request: Request, claims: TokenClaims, now: float | None = None) -> Principal:
    """``claims`` checked again after a wait: unexpired, and still let in by the database."""
    if claims.expires_at <= (time.time() if now is None else now):
        raise Unauthorized("token has expired")
    return check_identity(claims, await service.get_identity(request.app.state.db_pool, claims))


async def principal_from_token(request: Request, token: str) -> Principal:
    """The active agent a token names, with the role the database holds now."""
    claims = token_claims(request, token)
    return check_identity(claims, await service.get_identity(request.app.state.db_pool, claims))


async def current_principal(
    request: Request, token: Annotated[str | None, Depends(bearer)]
) -> Principal:
    return await principal_from_token(request, token or "")


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def signed_token(
    request: Request, token: Annotated[str | None, Depends(bearer)]
) -> TokenClaims:
    """A valid token, not yet checked against the database: for a route whose one statement
    checks the agent itself (``check_identity`` gives its refusals)."""
    return token_claims(request, token)


SignedToken = Annotated[TokenClaims, Depends(signed_token)]


def require_role(*roles: Role) -> object:
    """A dependency that lets only ``roles`` through."""

    async def check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in roles:
            allowed = " or ".join(r.value for r in roles)
            raise Forbidden(f"this needs the {allowed} role")
        return principal

    return Depends(check)


SupervisorOrAdmin = Annotated[Principal, require_role(Role.supervisor, Role.admin)]
