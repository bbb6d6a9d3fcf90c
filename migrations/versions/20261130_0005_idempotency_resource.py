"""an idempotency key may name the resource it created instead of storing a response

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 09:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "idempotency_keys",
        sa.Column(
            "resource_id",
            sa.BigInteger(),
            nullable=True,
            comment="the resource the first request created; a retry is shown it as it is now",
        ),
    )


def downgrade() -> None:
    op.drop_column("idempotency_keys", "resource_id")
