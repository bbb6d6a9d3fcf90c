"""contacts carry the skills they require

A contact may require skills of the agent who takes it (its IVR path's, or those its creator
named), whatever the queue's routing step: the dispatcher reads them with each waiting
contact and its write re-checks them. Contacts already stored require none.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-03 04:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "contacts",
        sa.Column(
            "skills",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
            comment="skills an agent must hold to take it: [{skill, min_level}]",
        ),
    )


def downgrade() -> None:
    op.drop_column("contacts", "skills")
