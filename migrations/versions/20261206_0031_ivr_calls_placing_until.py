"""calls remember a callback attempt in flight at the provider (``placing_until``)

A callback attempt is placed with no transaction open (an open one would hold the event
feed back while the provider answers): the call is marked as having an attempt being
placed until a lease ends, and the attempt's outcome is recorded only while the lease is
still that attempt's.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-06 06:45:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0031"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "ivr_calls",
        sa.Column(
            "placing_until",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="a callback attempt is being placed at the provider until then (its lease)",
        ),
    )


def downgrade() -> None:
    op.drop_column("ivr_calls", "placing_until")
