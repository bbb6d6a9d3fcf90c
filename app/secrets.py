"""Instance secrets generated once and shared by every instance through the database."""

from __future__ import annotations

import secrets

from sqlalchemy import String, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class AppSecret(Base):
    __tablename__ = "app_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256), nullable=False)


async def get_or_create(session: AsyncSession, name: str) -> str:
    """The secret ``name``; the first instance to ask generates it, the rest read it."""
    await session.execute(
        insert(AppSecret)
        .values(name=name, value=secrets.token_urlsafe(48))
        .on_conflict_do_nothing()
    )
    value = await session.scalar(select(AppSecret.value).where(AppSecret.name == name))
    assert value is not None
    return value
