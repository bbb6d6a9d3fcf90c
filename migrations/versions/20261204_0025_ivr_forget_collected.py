"""calls that have left the IVR keep none of the values collected from their callers

A call's state held what the caller keyed in (a resident ID among them) for good; the IVR
now writes it without them once the call has left (enqueued, called back, served, ended,
hung up). This clears them from the calls stored before. Nothing to undo: the values are
needed by no call that has left the IVR, and cannot be brought back.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-04 14:10:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


FORGET = sa.text(
    """
    UPDATE ivr_calls
    SET state = state || '{"collected": {}, "pending": null}'::jsonb
    WHERE (outcome IS NOT NULL OR status = 'ended')
      AND (state -> 'collected' <> '{}'::jsonb OR state ->> 'pending' IS NOT NULL)
    """
)


def forget(connection: sa.Connection) -> int:
    """Clear the collected values of every call that has left the IVR; how many calls."""
    return connection.execute(FORGET).rowcount


def upgrade() -> None:
    forget(op.get_bind())


def downgrade() -> None:
    pass
