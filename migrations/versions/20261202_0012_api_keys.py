"""api_keys: channels' service accounts (the web and app backends), by a hashed API key

A key is shown once, when an admin creates it; only its SHA-256 is kept (``key_hash``), with
its first characters (``prefix``) so admins can tell keys apart. A revoked key keeps its row
(events name it as their actor), and its name may be given to a new key. See
``app/agents/api_keys.py``.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 16:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "name", sa.String(length=64), nullable=False, comment="the channel: web, app, ..."
        ),
        sa.Column(
            "prefix",
            sa.String(length=16),
            nullable=False,
            comment="the key's first characters, shown to tell keys apart",
        ),
        sa.Column(
            "key_hash", sa.String(length=64), nullable=False, comment="SHA-256 of the key, hex"
        ),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "last_used_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="moved at most once a minute",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["agents.id"],
            name=op.f("fk_api_keys_created_by_agents"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(
        "uq_api_keys_live_name",
        "api_keys",
        ["name"],
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_api_keys_live_name", table_name="api_keys")
    op.drop_table("api_keys")
