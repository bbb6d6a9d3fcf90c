"""Idempotency keys: a retried create returns the first response, never a duplicate.

Theory of operation: the key row is inserted in the same transaction as the resource it
creates. A concurrent retry blocks on the primary key until the first request commits, then
finds the stored response. A retry with the same key but a different payload is refused.

``run_once`` stores the first response and answers retries with it. A create that takes its
key in its own statement (``POST /contacts``, ``app/routing/admission.py``) stores the id of
what it created instead (``resource_id``): a retry is shown that resource as it is now.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, String, func, select, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.errors import Conflict, InvalidInput

MAX_KEY_LENGTH = 200


class IdempotencyKey(Base):
    """The response given to the first request with a key."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[Any] = mapped_column(JSONB, nullable=True)
    resource_id: Mapped[int | None] = mapped_column(
        BigInteger,
        comment="the resource the first request created; a retry is shown it as it is now",
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


def key_reused(key: str) -> Conflict:
    """The refusal of a key already used for another request (409)."""
    return Conflict(f"Idempotency-Key {key!r} was already used with a different request")


def check_key(key: str) -> None:
    """A key a client may use: 1 to ``MAX_KEY_LENGTH`` characters."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")


def fingerprint(payload: Any) -> str:
    """A stable hash of a JSON-able payload."""
    raw = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


async def run_once(
    session: AsyncSession,
    *,
    scope: str,
    key: str | None,
    payload: Any,
    create: Callable[[], Awaitable[tuple[int, Any]]],
) -> tuple[int, Any]:
    """Run ``create`` once per (scope, key); later calls get the stored (status, body)."""
    if key is None:
        return await create()
    check_key(key)
    digest = fingerprint(payload)
    inserted = await session.execute(
        insert(IdempotencyKey)
        .values(scope=scope, key=key, request_hash=digest)
        .on_conflict_do_nothing()
        .returning(IdempotencyKey.key)
    )
    if inserted.first() is None:
        return await _replay(session, scope=scope, key=key, digest=digest)
    status_code, body = await create()
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        .values(status_code=status_code, response=body)
        .execution_options(synchronize_session=False)
    )
    return status_code, body


async def _replay(session: AsyncSession, *, scope: str, key: str, digest: str) -> tuple[int, Any]:
    row = await session.scalar(
        select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
    )
    assert row is not None
    assert row.status_code is not None
    if row.request_hash != digest:
        raise key_reused(key)
    return row.status_code, row.response
