"""contacts remember the agents who declined or missed them

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 12:10:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "contacts",
        sa.Column(
            "declined_by",
            postgresql.ARRAY(sa.BigInteger()),
            server_default="{}",
            nullable=False,
            comment="agents who rejected or missed an offer of this contact",
        ),
    )


def downgrade() -> None:
    op.drop_column("contacts", "declined_by")
