"""calls remember when a turn of the wait loop last found their caller queued; bridged
calls are swept too

A JSON provider holds its queued callers itself and may or may not keep the ``wait`` loop;
one that does is heard from every turn, so a queued call of it gone silent has been lost,
like Twilio's. ``waited_at`` tells the silence sweep which calls keep the loop. Calls stored
before have none: they are left to their provider's hang-up, as before.

The sweep also asks after bridged calls whose conversation is over (a lost ``completed``
left them ``bridged`` for good): ``ix_ivr_calls_heard_at`` now holds them too.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-05 20:10:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


CALLS_HEARD = "ix_ivr_calls_heard_at"


def _calls_heard(statuses: str) -> None:
    """``ix_ivr_calls_heard_at`` over the calls whose status is one of ``statuses``."""
    op.drop_index(CALLS_HEARD, table_name="ivr_calls")
    op.create_index(
        CALLS_HEARD, "ivr_calls", ["heard_at"], postgresql_where=sa.text(f"status IN ({statuses})")
    )


def upgrade() -> None:
    _calls_heard("'in_ivr', 'queued', 'bridged'")
    op.add_column(
        "ivr_calls",
        sa.Column(
            "waited_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="when a turn of the wait loop last found the caller queued",
        ),
    )


def downgrade() -> None:
    op.drop_column("ivr_calls", "waited_at")
    _calls_heard("'in_ivr', 'queued'")
