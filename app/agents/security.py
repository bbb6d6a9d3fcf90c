"""Password hashing (argon2id) and signed, expiring bearer tokens (JWT, HS256)."""

from __future__ import annotations

import functools
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.config import Settings
from app.pagination import is_number

ALGORITHM = "HS256"
# Verified against when the username is unknown, so both failures cost the same time.
_DUMMY_PASSWORD = secrets.token_urlsafe(16)


def make_hasher(settings: Settings) -> PasswordHasher:
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )


async def hash_password(hasher: PasswordHasher, password: str) -> str:
    """Hash off the event loop: argon2 is deliberately slow."""
    return await anyio.to_thread.run_sync(hasher.hash, password)


@functools.cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    """Computed once: hashing per unknown username would make it slower than a known one."""
    return hasher.hash(_DUMMY_PASSWORD)


async def verify_password(hasher: PasswordHasher, password_hash: str | None, password: str) -> bool:
    """True if ``password`` matches; an unknown user still pays the hashing cost."""

    def check() -> bool:
        target = password_hash or _dummy_hash(hasher)
        try:
            return hasher.verify(target, password)
        except (VerificationError, InvalidHashError):
            return False

    ok = await anyio.to_thread.run_sync(check)
    return ok and password_hash is not None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_in: int


def issue_token(
    secret: str, *, agent_id: int, ttl_s: int, version: int = 0, now: datetime | None = None
) -> IssuedToken:
    """A signed token naming the agent and its token version (raised by a password change);
    the role is read from the database on each request."""
    issued = now or datetime.now(UTC)
    claims = {
        "sub": str(agent_id),
        "ver": version,
        "iat": int(issued.timestamp()),
        "exp": int((issued + timedelta(seconds=ttl_s)).timestamp()),
        "typ": "access",
    }
    return IssuedToken(jwt.encode(claims, secret, algorithm=ALGORITHM), ttl_s)


class TokenError(Exception):
    """The token is missing, malformed, forged or expired."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    agent_id: int
    version: int
    expires_at: float = float("inf")  # seconds since the epoch


def read_token(secret: str, token: str) -> TokenClaims:
    """The agent id and token version a valid token names."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token has expired") from exc
    except jwt.PyJWTError as exc:
        raise TokenError("token is not valid") from exc
    subject, version = claims.get("sub"), claims.get("ver", 0)
    if claims.get("typ") != "access" or not isinstance(subject, str) or not is_number(subject):
        raise TokenError("token is not an access token")
    if not isinstance(version, int) or isinstance(version, bool):
        raise TokenError("token is not an access token")
    return TokenClaims(int(subject), version, float(claims["exp"]))


class TokenReader:
    """``read_token`` that remembers the tokens it has verified until they expire.

    A console sends the same token with every request, and checking its signature costs
    more than the rest of signing a request in. Only valid tokens are kept (a forged one is
    checked every time); whether the agent may still use it (active, token version) is
    still read from the database on every request. At most ``max_size`` tokens are kept;
    when full, the memory starts over.
    """

    def __init__(self, secret: str, *, max_size: int = 10_000) -> None:
        self._secret = secret
        self._max_size = max_size
        self._known: dict[str, TokenClaims] = {}

    def read(self, token: str, now: float | None = None) -> TokenClaims:
        """The claims of a valid token; raises ``TokenError`` as ``read_token`` does."""
        clock = time.time() if now is None else now
        known = self._known.get(token)
        if known is not None and clock < known.expires_at:
            return known
        self._known.pop(token, None)
        claims = read_token(self._secret, token)
        if len(self._known) >= self._max_size:
            self._known.clear()
        self._known[token] = claims
        return claims
