"""calls remember when the provider was last heard from about them

A call whose provider's end-of-call report was lost stayed in the menus or in the queue for
good. ``heard_at`` is when the database last heard a webhook for the call (its start, each
step, each turn of the wait loop); the IVR's silence sweep asks the provider about calls
silent for longer than a live call can be. Calls stored before take their last step's time
(else their start, or their end).

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-05 17:10:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LAST_HEARD = """
    UPDATE ivr_calls c SET heard_at = greatest(
        c.started_at, c.ended_at, (SELECT max(s.at) FROM ivr_steps s WHERE s.call_id = c.id)
    )
"""


def upgrade() -> None:
    op.add_column(
        "ivr_calls",
        sa.Column(
            "heard_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="when a webhook for the call was last heard (the database's clock)",
        ),
    )
    op.execute(LAST_HEARD)
    op.alter_column("ivr_calls", "heard_at", nullable=False, server_default=sa.text("now()"))
    op.create_index(
        "ix_ivr_calls_heard_at",
        "ivr_calls",
        ["heard_at"],
        postgresql_where=sa.text("status IN ('in_ivr', 'queued')"),
    )


def downgrade() -> None:
    op.drop_index("ix_ivr_calls_heard_at", table_name="ivr_calls")
    op.drop_column("ivr_calls", "heard_at")
