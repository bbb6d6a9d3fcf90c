"""Start-up work done once per deployment: the signing secret and the first admin."""

from __future__ import annotations

import secrets
import sys

from argon2 import PasswordHasher
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app import secrets as app_secrets
from app.agents import service as agents
from app.agents.security import hash_password
from app.config import Settings

_ADMIN_LOCK = 0x686F746C  # advisory lock key: one instance creates the first admin


async def jwt_secret(session: AsyncSession, settings: Settings) -> str:
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    return await app_secrets.get_or_create(session, "jwt_secret")


async def first_admin(session: AsyncSession, settings: Settings, hasher: PasswordHasher) -> None:
    """Create the first admin if there is none; print a generated password once."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADMIN_LOCK})
    configured = settings.admin_password
    password = configured.get_secret_value() if configured else secrets.token_urlsafe(12)
    _, created = await agents.ensure_admin(
        session,
        username=settings.admin_username,
        password_hash=await hash_password(hasher, password),
    )
    if created and configured is None:
        banner = (
            f"\n  First admin created: username {settings.admin_username!r}, "
            f"password {password!r}\n  (shown once; set HOTLINE_ADMIN_PASSWORD to choose it)\n"
        )
        sys.stdout.write(banner)
        sys.stdout.flush()
