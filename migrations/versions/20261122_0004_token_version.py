"""a password change revokes the agent's earlier tokens

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 12:45:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "agents",
        sa.Column(
            "token_version",
            sa.Integer(),
            server_default="0",
            nullable=False,
            comment="raised by a password change: tokens carrying an older one are refused",
        ),
    )


def downgrade() -> None:
    op.drop_column("agents", "token_version")
