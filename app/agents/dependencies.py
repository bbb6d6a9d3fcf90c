"""Request dependencies: the signed-in principal and role gates.

A bearer token is an agent's JWT or a channel's API key (``hlk_...``,
``app/agents/api_keys.py``), told apart by that mark alone, so a JWT costs what it always
did. A key's principal has the ``integration`` role, which the access model lets create
contacts (and later complaints) and report that a customer left, and nothing else: every
gate here refuses it with 403 (``CurrentPrincipal`` and all built on it, ``SignedToken``),
except ``PersonOrChannel`` and ``ContactCaller``, the dependencies of the routes open to
channels. An unknown or revoked key is a 401, as a revoked token is.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from app.agents import api_keys, service
from app.agents.models import Role
from app.agents.permissions import Principal
from app.agents.security import TokenClaims, TokenError
from app.errors import Forbidden, Unauthorized

DISABLED = "this account is disabled or no longer exists"
REVOKED = "this token was revoked (password, role, site or activation changed): sign in again"
UNKNOWN_KEY = "this API key is unknown or was revoked"
CHANNEL_ONLY = (
    "a channel's API key may only create contacts and complaints and report that a customer left"
)
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


async def key_principal(request: Request, key: str) -> Principal:
    """The channel a live API key belongs to; 401 for an unknown or revoked key."""
    now = datetime.now(UTC)
    principal = await api_keys.authenticate(request.app.state.db_pool, key, now=now)
    if principal is None:
        raise Unauthorized(UNKNOWN_KEY)
    return principal


async def signed_in(request: Request, token: str) -> Principal:
    """Whoever a bearer token signs in: an agent by its JWT, a channel by its API key."""
    if api_keys.is_api_key(token):
        return await key_principal(request, token)
    return await principal_from_token(request, token)


def refuse_channel(principal: Principal) -> Principal:
    """``principal``, unless it is a channel's API key (403)."""
    if principal.role is Role.integration:
        raise Forbidden(CHANNEL_ONLY)
    return principal


async def current_principal(
    request: Request, token: Annotated[str | None, Depends(bearer)]
) -> Principal:
    return refuse_channel(await signed_in(request, token or ""))


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def person_or_channel(
    request: Request, token: Annotated[str | None, Depends(bearer)]
) -> Principal:
    return await signed_in(request, token or "")


PersonOrChannel = Annotated[Principal, Depends(person_or_channel)]
"""A signed-in agent or a channel's API key: for the routes the access model opens to
channels (the route decides what each role may do there)."""


async def signed_token(
    request: Request, token: Annotated[str | None, Depends(bearer)]
) -> TokenClaims:
    """A valid token, not yet checked against the database: for a route whose one statement
    checks the agent itself (``check_identity`` gives its refusals). A live API key is
    refused (403), an unknown one is a 401."""
    if api_keys.is_api_key(token):
        refuse_channel(await key_principal(request, token or ""))
    return token_claims(request, token)


SignedToken = Annotated[TokenClaims, Depends(signed_token)]


async def contact_caller(
    request: Request, token: Annotated[str | None, Depends(bearer)]
) -> TokenClaims | Principal:
    """Who queues a contact: an agent's token, not yet checked against the database (the
    admission statement checks the agent in the same round trip), or a channel's live API
    key, looked up by its hash."""
    if api_keys.is_api_key(token):
        return await key_principal(request, token or "")
    return token_claims(request, token)


ContactCaller = Annotated[TokenClaims | Principal, Depends(contact_caller)]


def require_role(*roles: Role) -> object:
    """A dependency that lets only ``roles`` through."""

    async def check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in roles:
            allowed = " or ".join(r.value for r in roles)
            raise Forbidden(f"this needs the {allowed} role")
        return principal

    return Depends(check)


SupervisorOrAdmin = Annotated[Principal, require_role(Role.supervisor, Role.admin)]
