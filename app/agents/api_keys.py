"""Channels' service accounts: long-lived API keys for the web and app backends.

Theory of operation
-------------------

An admin creates a key for a channel (``name``: ``web``, ``app``). The key is
``hlk_`` followed by 43 URL-safe base64 characters (``secrets.token_urlsafe(32)``: 256
random bits), shown once in the answer to its creation and never again: only its SHA-256
(``key_hash``) is kept, with its first characters (``prefix``) so admins can tell keys
apart in a list. The ``hlk_`` mark lets the server tell a key from an agent's JWT by
looking at it, without trying both, and lets log masking find keys whatever they are
called.

A fast hash is the right one here. Slow, salted password hashes (argon2) exist because
passwords are guessable: they make each guess of a low-entropy secret expensive. A key of
256 random bits cannot be guessed, however cheap a guess is, so SHA-256 loses nothing;
it needs no salt (no two keys share a value to hide, and no table of precomputed hashes
covers a 256-bit space); and it keeps the hot path fast: a request with a key costs one
hash of microseconds and one indexed statement, where argon2 would cost every request tens
of milliseconds of CPU and would need a per-key salt, hence a lookup by something other
than the hash.

A request with a key is signed in by ``authenticate``: one statement finds the live key by
its hash (a unique index) and, at most once a minute, moves its ``last_used_at`` in the same
statement, so a busy channel does not write a row on every request. There is no cache in
front of it: revocation commits before its answer is sent, and the next request's statement
sees it, on every instance. A key's principal has the ``integration`` role, the key's id and
name, and no site; the routes that the access model opens to channels (creating contacts,
reporting that a customer left) accept it, every other route refuses it
(``app/agents/dependencies.py``). Its actor in the event log is ``integration:<id>``.

A revoked key keeps its row (events name it as their actor, and admins see when it was
revoked); its name is free again, so a channel can be given a new key under the same name.
Only one live key holds a name at a time (a partial unique index backs the check against
races).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg
from pydantic import ConfigDict, with_config
from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, Index, String, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from typing_extensions import TypedDict

from app.agents.models import Role
from app.agents.permissions import Principal
from app.db import Base, db_now
from app.errors import Conflict, NotFound, register_constraint
from app.events.log import record

PREFIX = "hlk_"
SHOWN_CHARACTERS = 12  # "hlk_" and 8 random characters: 48 bits, enough to tell keys apart
TOUCH_EVERY = timedelta(minutes=1)
_WELL_FORMED = re.compile(r"hlk_[A-Za-z0-9_-]{43}")
LIVE_NAME_INDEX = "uq_api_keys_live_name"


class ApiKey(Base):
    """A channel's API key: its hash, never the key itself."""

    __tablename__ = "api_keys"
    __table_args__ = (
        Index(
            LIVE_NAME_INDEX,
            "name",
            unique=True,
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(
        String(64), nullable=False, comment="the channel: web, app, ..."
    )
    prefix: Mapped[str] = mapped_column(
        String(16), nullable=False, comment="the key's first characters, shown to tell keys apart"
    )
    key_hash: Mapped[str] = mapped_column(
        String(64), nullable=False, unique=True, comment="SHA-256 of the key, hex"
    )
    created_by: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("agents.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), comment="moved at most once a minute"
    )


# --- events ---------------------------------------------------------------------------------

_CLOSED = ConfigDict(extra="forbid")


class ApiKeyEventType(StrEnum):
    CREATED = "api_key.created"
    REVOKED = "api_key.revoked"


@with_config(_CLOSED)
class KeyEvent(TypedDict):
    name: str
    prefix: str


PAYLOADS: dict[str, type[Any]] = {
    ApiKeyEventType.CREATED: KeyEvent,
    ApiKeyEventType.REVOKED: KeyEvent,
}


# --- errors ---------------------------------------------------------------------------------


class ApiKeyNotFound(NotFound):
    def __init__(self, key_id: int) -> None:
        super().__init__(f"API key {key_id} does not exist")


class ApiKeyNameTaken(Conflict):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"a live API key is already named {name!r}: revoke it first, or use another name",
            constraint=LIVE_NAME_INDEX,
        )


register_constraint(LIVE_NAME_INDEX, "a live API key already has this name")


# --- keys -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key as it is issued: the secret, shown once, and what is kept of it."""

    key: str
    prefix: str
    key_hash: str


def issue() -> NewKey:
    """A fresh random key."""
    key = PREFIX + secrets.token_urlsafe(32)
    return NewKey(key=key, prefix=key[:SHOWN_CHARACTERS], key_hash=hash_key(key))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def is_api_key(token: str | None) -> bool:
    """Whether a bearer token is meant as an API key (a JWT never starts with ``hlk_``)."""
    return token is not None and token.startswith(PREFIX)


def well_formed(key: str) -> bool:
    """Whether ``key`` has the shape of an issued key (checked before any statement)."""
    return _WELL_FORMED.fullmatch(key) is not None


def principal_of(key_id: int, name: str) -> Principal:
    """The principal a live key signs a request in as."""
    return Principal(id=key_id, username=name, role=Role.integration, site=None)


# --- service --------------------------------------------------------------------------------


async def create(session: AsyncSession, *, name: str, actor: Principal) -> tuple[ApiKey, str]:
    """A new live key named ``name`` and its secret; writes ``api_key.created``."""
    taken = select(ApiKey.id).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
    if await session.scalar(taken) is not None:
        raise ApiKeyNameTaken(name)
    new = issue()
    row = ApiKey(name=name, prefix=new.prefix, key_hash=new.key_hash, created_by=actor.id)
    session.add(row)
    await session.flush()
    await session.refresh(row)
    _record(session, ApiKeyEventType.CREATED, row, actor)
    return row, new.key


async def list_keys(session: AsyncSession, *, after_id: int, limit: int) -> Sequence[ApiKey]:
    """Keys by id, revoked ones included, after ``after_id`` (a page of ``limit``)."""
    stmt = select(ApiKey).where(ApiKey.id > after_id).order_by(ApiKey.id).limit(limit)
    return (await session.scalars(stmt)).all()


async def get_or_raise(session: AsyncSession, key_id: int, *, for_update: bool = False) -> ApiKey:
    stmt = select(ApiKey).where(ApiKey.id == key_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    row = await session.scalar(stmt)
    if row is None:
        raise ApiKeyNotFound(key_id)
    return row


async def revoke(session: AsyncSession, *, key_id: int, actor: Principal) -> ApiKey:
    """Revoke a key from now on; revoking a revoked key changes nothing."""
    row = await get_or_raise(session, key_id, for_update=True)
    if row.revoked_at is not None:
        return row
    row.revoked_at = await db_now(session)
    await session.flush()
    _record(session, ApiKeyEventType.REVOKED, row, actor)
    return row


def _record(session: AsyncSession, kind: ApiKeyEventType, row: ApiKey, actor: Principal) -> None:
    data: KeyEvent = {"name": row.name, "prefix": row.prefix}
    record(
        session,
        type=kind,
        subject_type="api_key",
        subject_id=row.id,
        data=dict(data),
        actor=actor.actor,
    )


# One statement per request: the live key by its hash, and its last use moved if it is older
# than $3 ($2 is now). The update sees the key the select found (same snapshot), so a key
# revoked meanwhile is at worst marked used once more.
_AUTHENTICATE = """
    WITH live AS (
        SELECT id, name FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL
    ), touched AS (
        UPDATE api_keys SET last_used_at = $2::timestamptz
        WHERE id = (SELECT id FROM live)
          AND (last_used_at IS NULL OR last_used_at <= $2::timestamptz - $3::interval)
    )
    SELECT id, name FROM live
"""


async def authenticate(
    db: asyncpg.Pool | asyncpg.Connection, key: str, *, now: datetime
) -> Principal | None:
    """The principal of a live key; None for a key that is malformed, unknown or revoked."""
    if not well_formed(key):
        return None
    row = await db.fetchrow(_AUTHENTICATE, hash_key(key), now, TOUCH_EVERY)
    return None if row is None else principal_of(row["id"], row["name"])
