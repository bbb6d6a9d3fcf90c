"""Password hashing (argon2id), sign-in limits, and signed, expiring bearer tokens (JWT, HS256).

Hashing is bounded. argon2id is meant to cost a core's worth of time and memory; left
unbounded, a burst of sign-ins (a few wrong passwords a second) would take every core and
starve routing and every other request. Each process runs at most ``hash_concurrency``
hashes at once (an ``asyncio.Semaphore``, one by default, so another core stays free),
each in a worker thread. A few more may wait their turn (``HASH_QUEUE_PER_SLOT`` per slot);
past that, a hash is refused at once (``HashingBusy``, a 503 with ``Retry-After``) rather
than piling up behind the others.

Sign-ins are also limited per username and per client address (``sign_in_limits``, counted
in PostgreSQL by ``app/ratelimit.py``, so every instance shares them); the sign-in route
counts an attempt before it hashes anything.

Tokens name the agent (``sub``) and its token version (``ver``). ``read_token`` refuses any
token whose claims are not what ``issue_token`` writes (an id outside the agents' id range,
a version that is not a small whole number, an expiry that is not a plausible time) with a
``TokenError``, whatever the token's signature: every caller (the HTTP routes, the
websockets) then answers 401, never a 500.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio
import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.config import Settings
from app.errors import ServiceUnavailable
from app.pagination import is_number
from app.ratelimit import Limit
from app.schemas import MAX_BIGINT

ALGORITHM = "HS256"
# Verified against when the username is unknown, so both failures cost the same time.
_DUMMY_PASSWORD = secrets.token_urlsafe(16)
# Hashes that may wait for a free slot, per slot, before more are refused.
HASH_QUEUE_PER_SLOT = 4
HASH_RETRY_AFTER_S = 1

# The claims' ranges: agent ids are BIGINTs, token versions INTEGERs, times before 10000.
MAX_TOKEN_VERSION = 2**31 - 1
MAX_EXPIRY = 253_402_300_799  # 9999-12-31T23:59:59Z

_T = TypeVar("_T")


class HashingBusy(ServiceUnavailable):
    """Every hashing slot is taken and the queue is full: try again shortly."""

    def __init__(self) -> None:
        super().__init__(
            "too many sign-ins and password changes at once; try again shortly",
            retry_after_s=HASH_RETRY_AFTER_S,
        )


class HashGate:
    """At most ``slots`` hashes at once; at most ``queue`` more waiting for a slot."""

    def __init__(self, slots: int, queue: int) -> None:
        self.slots, self.queue = slots, queue
        self._free = asyncio.Semaphore(slots)
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Hashes waiting for a slot now."""
        return self._waiting

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot; raises ``HashingBusy`` at once if the queue is full."""
        if self._free.locked() and self._waiting >= self.queue:
            raise HashingBusy()
        self._waiting += 1
        try:
            await self._free.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._free.release()


class BoundedHasher(PasswordHasher):
    """argon2id behind a ``HashGate``: ``hash_password`` and ``verify_password`` wait for it."""

    def __init__(self, gate: HashGate, **parameters: Any) -> None:
        super().__init__(**parameters)
        self.gate = gate


def make_hasher(settings: Settings) -> BoundedHasher:
    slots = settings.hash_concurrency
    return BoundedHasher(
        HashGate(slots, HASH_QUEUE_PER_SLOT * slots),
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )


async def _in_thread(hasher: PasswordHasher, work: Callable[[], _T]) -> _T:
    """Run ``work`` off the event loop, in a slot of the hasher's gate if it has one."""
    if not isinstance(hasher, BoundedHasher):
        return await anyio.to_thread.run_sync(work)
    async with hasher.gate.slot():
        return await anyio.to_thread.run_sync(work)


async def hash_password(hasher: PasswordHasher, password: str) -> str:
    """Hash off the event loop: argon2 is deliberately slow."""
    return await _in_thread(hasher, functools.partial(hasher.hash, password))


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

    ok = await _in_thread(hasher, check)
    return ok and password_hash is not None


@dataclass(frozen=True, slots=True)
class SignInLimits:
    """Failed sign-ins allowed per username and per client address."""

    user: Limit
    address: Limit


def sign_in_limits(settings: Settings) -> SignInLimits:
    """The sign-in limits: each blocks for ``login_backoff_s``, doubling when tripped again."""
    return SignInLimits(
        user=_sign_in_limit(
            settings, "login.user", settings.login_failures_per_user, "this username"
        ),
        address=_sign_in_limit(
            settings, "login.address", settings.login_failures_per_address, "this address"
        ),
    )


def _sign_in_limit(settings: Settings, name: str, hits: int, whose: str) -> Limit:
    return Limit(
        name,
        hits=hits,
        window_s=settings.login_window_s,
        backoff_s=settings.login_backoff_s,
        backoff_max_s=settings.login_backoff_max_s,
        label=f"failed sign-ins for {whose}",
    )


def password_fingerprint(secret: str, password: str) -> str:
    """A keyed digest of a password, to tell two requests' passwords apart (idempotency
    fingerprints) without storing anything a fast offline guess could be checked against."""
    key = hmac.new(secret.encode(), b"hotline password fingerprint", hashlib.sha256).digest()
    return hmac.new(key, password.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


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
    claims = _decode(secret, token)
    if claims.get("typ") != "access":
        raise TokenError("token is not an access token")
    return TokenClaims(_subject(claims), _version(claims), _expiry(claims))


def _decode(secret: str, token: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token has expired") from exc
    # The library checks the time claims with int(), which can raise more than its own errors.
    except (jwt.PyJWTError, TypeError, ValueError, OverflowError) as exc:
        raise TokenError("token is not valid") from exc
    return claims


def _subject(claims: dict[str, Any]) -> int:
    subject = claims.get("sub")
    if isinstance(subject, str) and is_number(subject) and len(subject) <= 19:
        agent_id = int(subject)
        if 1 <= agent_id <= MAX_BIGINT:
            return agent_id
    raise TokenError("token's subject (sub) is not an agent id")


def _version(claims: dict[str, Any]) -> int:
    version = claims.get("ver", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        version = -1
    if 0 <= version <= MAX_TOKEN_VERSION:
        return version
    raise TokenError("token's version (ver) is not a whole number from 0 to 2147483647")


def _expiry(claims: dict[str, Any]) -> float:
    expiry = claims.get("exp")
    if isinstance(expiry, bool) or not isinstance(expiry, int | float):
        expiry = math.nan
    # Compared before it is made a float: a huge whole number would overflow one.
    if 0 < expiry <= MAX_EXPIRY:
        return float(expiry)
    raise TokenError("token's expiry (exp) is not a time before the year 10000")


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
