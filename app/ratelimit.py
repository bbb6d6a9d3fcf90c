"""Rate limits kept in PostgreSQL, so they hold across every instance of the service.

Theory of operation
-------------------

A ``Limit`` allows ``hits`` per fixed window of ``window_s`` seconds for each key (a
username, a client address, a user id). Its state is one row of ``rate_limits`` per
(limit name, key), changed by one upsert per hit (``INSERT ... ON CONFLICT DO UPDATE ...
RETURNING``): the row lock that statement takes serialises concurrent hits on one key, on
one instance or many, so exactly ``hits`` get through however many arrive at once.

A hit is counted in the current window (a window that has ended starts afresh at this hit).
The hit that goes over the limit is refused, and it blocks the key:

- without back-off (``backoff_s`` 0), until the window ends;
- with back-off, for ``backoff_s``, doubled each time the limit is tripped again (a
  *strike*), up to ``backoff_max_s`` (a maximum below ``backoff_s`` means no growth).
  Tripping leaves the count one short of the limit: once the block ends, one more hit is
  allowed (a person who waited may try again), and the next within the window trips the
  limit again, for twice as long. Strikes are forgotten, with the rest of the row, once a
  whole window has passed since the last block ended.

While a key is blocked every hit is refused and none is counted. A refusal is
``RateLimited``: a 429 whose ``Retry-After`` is the time left in the block, in whole seconds
rounded up.

A hit counts in the transaction it runs in. Pass an engine (``hit(engine, ...)``,
``hit_all``) and it runs in a short transaction of its own, committed before ``RateLimited``
is raised, so that a request that then fails and rolls back (a refusal, a 401, a 409) still
counts; pass a connection or a session and it belongs to that transaction.

The time is the database's ``now()`` (the same clock on every instance), or ``now`` when a
caller gives one (tests do). ``prune`` deletes the rows that mean nothing any more; every
instance runs it periodically (``PRUNE_SWEEP``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import DateTime, Index, Integer, String, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.errors import AppError

MAX_NAME_LENGTH = 100
MAX_KEY_LENGTH = 200
PRUNE_SWEEP = "rate_limits.prune"
PRUNE_EVERY_S = 60.0
PRUNE_BATCH = 1000
# Strikes past this add nothing: the block is at its maximum long before.
_MAX_DOUBLINGS = 60

Bind = AsyncConnection | AsyncSession


class RateLimitRow(Base):
    """One key's count in its current window, and its block if it is blocked."""

    __tablename__ = "rate_limits"
    __table_args__ = (Index("ix_rate_limits_forget_at", "forget_at"),)

    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer, nullable=False, comment="counted in the window")
    strikes: Mapped[int] = mapped_column(
        Integer, nullable=False, server_default="0", comment="times the limit was tripped"
    )
    window_ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    forget_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True),
        nullable=False,
        comment="the window and the block are over, and a window has passed since the block",
    )
    hit_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, comment="the last hit, counted or refused"
    )


@dataclass(frozen=True, slots=True)
class Limit:
    """``hits`` allowed per ``window_s`` for each key; past it, a block (see the module)."""

    name: str
    hits: int
    window_s: float
    backoff_s: float = 0.0
    backoff_max_s: float = 0.0
    label: str = ""  # what is limited, in words: "sign-in attempts for this username"

    def __post_init__(self) -> None:
        if not 0 < len(self.name) <= MAX_NAME_LENGTH:
            raise ValueError(f"a limit's name is 1 to {MAX_NAME_LENGTH} characters")
        if self.hits < 1 or self.window_s <= 0 or self.backoff_s < 0:
            raise ValueError(f"limit {self.name}: hits >= 1, window_s > 0, backoff_s >= 0")

    @property
    def block_cap_s(self) -> float:
        return max(self.backoff_s, self.backoff_max_s)

    @property
    def what(self) -> str:
        return self.label or f"requests ({self.name})"


class RateLimited(AppError):
    """Too many requests for one limit and key: wait ``Retry-After`` seconds."""

    status_code: ClassVar[int] = 429

    def __init__(self, limit: Limit, retry_after_s: int) -> None:
        super().__init__(
            f"too many {limit.what}; try again in {retry_after_s} s",
            limit=limit.name,
            retry_after_s=retry_after_s,
        )
        self.limit = limit
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one hit came to: refused with ``retry_after_s``, or allowed (0)."""

    limit: Limit
    retry_after_s: int

    @property
    def refused(self) -> bool:
        return self.retry_after_s > 0

    def enforce(self) -> None:
        if self.refused:
            raise RateLimited(self.limit, self.retry_after_s)


def storage_key(key: str) -> str:
    """The key as stored: a key too long for the column is stored as its digest."""
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def whole_seconds(seconds: float) -> int:
    """A wait in whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(seconds))


# The clock: the caller's ``now`` if given, else the database's.
_CLOCK = """
    WITH clock AS (
        SELECT coalesce(CAST(:now AS timestamptz), now()) AS at,
               make_interval(secs => CAST(:window_s AS float8)) AS win
    )
"""

# One row's next state, step by step: a row whose every block and window is over starts
# afresh (fresh); a blocked row is left as it is (nothing counted); otherwise the hit counts
# in the current window, or starts a new one (rolled), and going over the limit adds a
# strike and a block and sets the count one short of the limit.
_HIT = text(
    _CLOCK
    + """
    INSERT INTO rate_limits AS r
        (name, key, hits, strikes, window_ends_at, blocked_until, forget_at, hit_at)
    SELECT :name, :key, 1, 0, at + win, NULL, at + win, at FROM clock
    ON CONFLICT (name, key) DO UPDATE SET
        (hits, strikes, window_ends_at, blocked_until, forget_at, hit_at) = (
            SELECT n.hits, n.strikes, n.window_ends_at, n.blocked_until,
                   greatest(n.window_ends_at, n.blocked_until + c.win), c.at
            FROM clock c
            CROSS JOIN LATERAL (SELECT r.forget_at <= c.at AS fresh) f
            CROSS JOIN LATERAL (
                SELECT NOT f.fresh AND coalesce(r.blocked_until > c.at, false) AS blocked,
                       r.window_ends_at <= c.at AS rolled
            ) s
            CROSS JOIN LATERAL (
                SELECT CASE WHEN s.blocked THEN r.hits WHEN s.rolled THEN 1
                            ELSE r.hits + 1 END AS hits,
                       CASE WHEN s.rolled AND NOT s.blocked THEN c.at + c.win
                            ELSE r.window_ends_at END AS window_ends_at,
                       CASE WHEN f.fresh THEN 0 ELSE r.strikes END AS strikes,
                       CASE WHEN f.fresh THEN NULL ELSE r.blocked_until END AS blocked_until
            ) k
            CROSS JOIN LATERAL (SELECT NOT s.blocked AND k.hits > CAST(:hits AS int) AS over) o
            CROSS JOIN LATERAL (
                SELECT CASE WHEN o.over THEN CAST(:hits AS int) - 1 ELSE k.hits END AS hits,
                       k.window_ends_at, k.strikes + o.over::int AS strikes,
                       CASE WHEN NOT o.over THEN k.blocked_until
                            WHEN CAST(:backoff_s AS float8) > 0 THEN c.at + make_interval(
                                secs => least(
                                    CAST(:backoff_s AS float8)
                                    * power(2, least(k.strikes, CAST(:doublings AS int))),
                                    CAST(:cap_s AS float8)))
                            ELSE k.window_ends_at END AS blocked_until
            ) n
        )
    RETURNING extract(epoch FROM r.blocked_until - r.hit_at) AS blocked_s
    """
)

_CHECK = text(
    _CLOCK
    + """
    SELECT extract(epoch FROM r.blocked_until - c.at) AS blocked_s
    FROM rate_limits r, clock c
    WHERE r.name = :name AND r.key = :key AND r.blocked_until > c.at
    """
)

_CLEAR = text("DELETE FROM rate_limits WHERE name = :name AND key = :key")

_FORGIVE = text(
    "UPDATE rate_limits SET hits = hits - 1 WHERE name = :name AND key = :key AND hits > 0"
)

_PRUNE = text(
    """
    DELETE FROM rate_limits WHERE (name, key) IN (
        SELECT name, key FROM rate_limits
        WHERE forget_at <= coalesce(CAST(:now AS timestamptz), now())
        LIMIT CAST(:batch AS int) FOR UPDATE SKIP LOCKED
    )
    """
)


def _params(limit: Limit, key: str, now: datetime | None) -> dict[str, Any]:
    return {
        "name": limit.name,
        "key": storage_key(key),
        "now": now,
        "window_s": limit.window_s,
        "hits": limit.hits,
        "backoff_s": limit.backoff_s,
        "cap_s": limit.block_cap_s,
        "doublings": _MAX_DOUBLINGS,
    }


async def count(conn: Bind, limit: Limit, key: str, *, now: datetime | None = None) -> Verdict:
    """Count one hit in ``conn``'s transaction; the verdict says whether it was refused."""
    blocked_s = (await conn.execute(_HIT, _params(limit, key, now))).scalar_one()
    refused = blocked_s is not None and blocked_s > 0
    return Verdict(limit, whole_seconds(float(blocked_s)) if refused else 0)


async def hit_all(
    bind: AsyncEngine | Bind, hits: Sequence[tuple[Limit, str]], *, now: datetime | None = None
) -> None:
    """Count one hit on each (limit, key) in order, stopping at the first refused, which
    is raised as ``RateLimited``. Given an engine, the counts are committed first."""
    if isinstance(bind, AsyncEngine):
        async with bind.begin() as conn:
            verdict = await _count_until_refused(conn, hits, now)
    else:
        verdict = await _count_until_refused(bind, hits, now)
    if verdict is not None:
        verdict.enforce()


async def _count_until_refused(
    conn: Bind, hits: Sequence[tuple[Limit, str]], now: datetime | None
) -> Verdict | None:
    for limit, key in hits:
        verdict = await count(conn, limit, key, now=now)
        if verdict.refused:
            return verdict
    return None


async def hit(
    conn: AsyncEngine | Bind, limit: Limit, key: str, *, now: datetime | None = None
) -> None:
    """Count one hit; raises ``RateLimited`` when it goes over the limit or the key is
    blocked. Given an engine, the hit is committed in a transaction of its own first."""
    await hit_all(conn, [(limit, key)], now=now)


async def check(conn: Bind, limit: Limit, key: str, *, now: datetime | None = None) -> None:
    """Raise ``RateLimited`` if the key is blocked now; counts nothing."""
    params = {"name": limit.name, "key": storage_key(key), "now": now, "window_s": 0}
    blocked_s = (await conn.execute(_CHECK, params)).scalar_one_or_none()
    if blocked_s is not None:
        raise RateLimited(limit, whole_seconds(float(blocked_s)))


async def clear(conn: Bind, limit: Limit, key: str) -> None:
    """Forget the key's hits, strikes and block (a successful sign-in clears its failures)."""
    await conn.execute(_CLEAR, {"name": limit.name, "key": storage_key(key)})


async def forgive(conn: Bind, limit: Limit, key: str) -> None:
    """Take one hit back (a hit counted before knowing it should not have been)."""
    await conn.execute(_FORGIVE, {"name": limit.name, "key": storage_key(key)})


async def prune(conn: Bind, *, now: datetime | None = None) -> int:
    """Delete up to ``PRUNE_BATCH`` rows whose window and block are over; how many.

    Safe on several instances at once: rows another is deleting are skipped.
    """
    result: Any = await conn.execute(_PRUNE, {"now": now, "batch": PRUNE_BATCH})
    return int(result.rowcount or 0)


async def prune_sweep(session: AsyncSession, now: datetime) -> int:
    """The periodic sweep (``TimerRegistry.register_sweep``) that keeps the table small."""
    return await prune(session, now=now)
