"""classifier_state: what the complaint classifier has learned, shared by every instance

One row (``id = 1``): the learned counts as JSON (null until the first classification is
learned: the classifier trained on the shipped labelled set), a version raised by every
learning step, how many classifications were learned, and the event-log cursor the learning
sweep has read up to, kept in the same row so the state and the cursor commit together. The
sweep creates the row when it is missing. See ``app/complaints/suggestions.py``.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 22:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "classifier_state",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column(
            "state",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=True,
            comment="Classifier.to_state(); null: the shipped model, nothing learned yet",
        ),
        sa.Column(
            "version",
            sa.BigInteger(),
            server_default="0",
            nullable=False,
            comment="raised by every learning step",
        ),
        sa.Column(
            "learned",
            sa.BigInteger(),
            server_default="0",
            nullable=False,
            comment="classifications learned",
        ),
        sa.Column(
            "cursor_tx",
            sa.BigInteger(),
            server_default="0",
            nullable=False,
            comment="event-log cursor: tx",
        ),
        sa.Column(
            "cursor_id",
            sa.BigInteger(),
            server_default="0",
            nullable=False,
            comment="event-log cursor: id",
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("id = 1", name=op.f("ck_classifier_state_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_classifier_state")),
    )
    op.execute("INSERT INTO classifier_state (id) VALUES (1)")


def downgrade() -> None:
    op.drop_table("classifier_state")
