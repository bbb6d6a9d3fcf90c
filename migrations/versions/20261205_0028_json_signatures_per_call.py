"""a JSON webhook's signature is remembered for the call it was sent for

The signature covers the timestamp and the body, and the body need not name the call: two
calls whose provider sent the same event in the same second (every caller pressing 1 at the
first menu, every queued caller's ``wait``, two hang-ups) carried the same signature, and the
second was refused as a replay. A signature is now refused again only for the same call.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-05 17:40:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "telephony_signatures",
        sa.Column(
            "call_ref",
            sa.String(64),
            nullable=False,
            server_default="",
            comment="the call the request was sent for (the URL's call id)",
        ),
    )
    op.alter_column("telephony_signatures", "call_ref", server_default=None)
    op.drop_constraint("pk_telephony_signatures", "telephony_signatures", type_="primary")
    op.create_primary_key(
        "pk_telephony_signatures", "telephony_signatures", ["signature", "call_ref"]
    )


def downgrade() -> None:
    # Rows differing only in their call would collide: keep one per signature.
    op.execute(
        "DELETE FROM telephony_signatures t USING telephony_signatures o "
        "WHERE t.signature = o.signature AND t.call_ref > o.call_ref"
    )
    op.drop_constraint("pk_telephony_signatures", "telephony_signatures", type_="primary")
    op.create_primary_key("pk_telephony_signatures", "telephony_signatures", ["signature"])
    op.drop_column("telephony_signatures", "call_ref")
