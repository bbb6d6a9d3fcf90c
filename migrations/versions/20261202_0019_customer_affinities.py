"""customer_affinities, queued_complaints

``customer_affinities``: per customer, the agent their next contacts are offered to first and
for how long after each was queued, with who asked for it (``app.routing.affinity``; the
complaint desk sets it to the handler of the customer's open complaint). The dispatcher's
round reads it by primary key with each waiting contact.

``queued_complaints``: the complaint desk's team queue, the complaints an auto-assignment
found nobody for, drained as agents get room (``app.complaints.team_queue``,
``app.complaints.assign_queue``); the complaints queued before it are put in it.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02 23:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _customer_affinities() -> None:
    op.create_table(
        "customer_affinities",
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("agent_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "hold_s",
            sa.Float(),
            nullable=False,
            comment="a contact goes to the agent first for this long after it queued",
        ),
        sa.Column(
            "source",
            sa.String(length=32),
            nullable=False,
            comment="who asked for it: complaint, ...",
        ),
        sa.Column(
            "source_ref",
            sa.String(length=64),
            nullable=False,
            comment="what of the source's it is for: a complaint id, ...",
        ),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "hold_s > 0 AND hold_s < 'Infinity'::float8",
            name=op.f("ck_customer_affinities_hold_s"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_affinities_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_customer_affinities_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customer_affinities")),
    )


def _queued_complaints() -> None:
    op.create_table(
        "queued_complaints",
        sa.Column("complaint_id", sa.BigInteger(), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["complaint_id"],
            ["complaints.id"],
            name=op.f("fk_queued_complaints_complaint_id_complaints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("complaint_id", name=op.f("pk_queued_complaints")),
    )


# Complaints queued before this revision: the first ``queued`` audit entry after their last
# ``assign`` one, if they may still be assigned.
_ASSIGNABLE = ("registered", "classified", "assigned", "in_progress", "paused", "under_review")
_BACKFILL = f"""
    INSERT INTO queued_complaints (complaint_id, queue, queued_at)
    SELECT DISTINCT ON (q.complaint_id) q.complaint_id,
        COALESCE(q.data->>'queue', 'complaints'), q.at
    FROM complaint_audit q JOIN complaints c ON c.id = q.complaint_id
    WHERE q.action = 'queued'
      AND c.status IN ({", ".join(repr(s) for s in _ASSIGNABLE)})
      AND NOT EXISTS (
          SELECT 1 FROM complaint_audit a
          WHERE a.complaint_id = q.complaint_id AND a.action = 'assign' AND a.seq > q.seq)
    ORDER BY q.complaint_id, q.seq
"""


def upgrade() -> None:
    _customer_affinities()
    _queued_complaints()
    op.execute(sa.text(_BACKFILL))


def downgrade() -> None:
    op.drop_table("queued_complaints")
    op.drop_table("customer_affinities")
