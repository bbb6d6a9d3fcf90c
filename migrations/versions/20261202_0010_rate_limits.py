"""rate_limits: hits per (limit, key) in a window, and blocks with growing back-off

Sign-in attempts (per username and per client address) and customer lookups are counted
here, so a limit holds across every instance (``app/ratelimit.py``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 14:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False, comment="counted in the window"),
        sa.Column(
            "strikes",
            sa.Integer(),
            server_default="0",
            nullable=False,
            comment="times the limit was tripped",
        ),
        sa.Column("window_ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "forget_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="the window and the block are over, and a window has passed since the block",
        ),
        sa.Column(
            "hit_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="the last hit, counted or refused",
        ),
        sa.PrimaryKeyConstraint("name", "key", name=op.f("pk_rate_limits")),
    )
    op.create_index("ix_rate_limits_forget_at", "rate_limits", ["forget_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_rate_limits_forget_at", table_name="rate_limits")
    op.drop_table("rate_limits")
