"""index queued contacts by queue and deadline (positions in a queue)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 10:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_contacts_queued_queue_deadline",
        "contacts",
        ["queue_id", "deadline_at"],
        unique=False,
        postgresql_where=sa.text("status = 'queued'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_contacts_queued_queue_deadline",
        table_name="contacts",
        postgresql_where=sa.text("status = 'queued'"),
    )
