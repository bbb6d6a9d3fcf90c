"""contacts name the channel that queued them

A channel's API keys may report (abandon) only the contacts their channel queued and the
contacts those continue. The contact now names that channel (its keys' name), as the
admission writes it; contacts already stored are named from their ``contact.queued`` event,
whose actor is the key that queued them, and a continuation takes its first contact's.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-05 07:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIRST_CONTACTS = """
    UPDATE contacts c SET integration = k.name
    FROM events e JOIN api_keys k ON e.actor = 'integration:' || k.id::text
    WHERE c.parent_id IS NULL AND e.type = 'contact.queued'
      AND e.subject_type = 'contact' AND e.subject_id = c.id::text
"""
CONTINUATIONS = """
    WITH RECURSIVE tree AS (
        SELECT id, integration FROM contacts
        WHERE parent_id IS NULL AND integration IS NOT NULL
        UNION ALL
        SELECT c.id, tree.integration FROM contacts c JOIN tree ON c.parent_id = tree.id
    )
    UPDATE contacts c SET integration = tree.integration
    FROM tree WHERE c.id = tree.id AND c.parent_id IS NOT NULL
"""


def upgrade() -> None:
    op.add_column(
        "contacts",
        sa.Column(
            "integration",
            sa.String(64),
            nullable=True,
            comment="the channel (its API keys' name) that queued it, or the contact it continues",
        ),
    )
    op.execute(FIRST_CONTACTS)
    op.execute(CONTINUATIONS)


def downgrade() -> None:
    op.drop_column("contacts", "integration")
