"""contacts by customer: the customer card's recent contacts, newest first

``GET /api/v1/contacts?customer=`` pages a customer's contacts by enqueue time and id; without
this index it would scan the whole table.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02 23:45:00.000000+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_contacts_customer_id_enqueued",
        "contacts",
        ["customer_id", "enqueued_at", "id"],
        postgresql_where="customer_id IS NOT NULL",
    )


def downgrade() -> None:
    op.drop_index("ix_contacts_customer_id_enqueued", table_name="contacts")
