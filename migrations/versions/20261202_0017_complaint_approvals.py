"""complaint_approvals: a second person's approval for compensation and extensions

One row per request for approval on a complaint: its kind (``compensation`` above the desk's
threshold, or a clock ``extension``), its terms (an amount in CNY; a clock and days), who
asked and why, who decided (approved, declined or withdrew it) and why, and who used it in
a ``resolve`` or ``extend`` move: see ``app/complaints/approvals.py``. The checks keep the
two-person rule in the database as well: an approval is never decided by the one who asked,
and a compensation is never paid out by the one who approved it.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 23:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "complaint_approvals"
_CHECKS = {
    "kind": "kind IN ('compensation', 'extension')",
    "status": "status IN ('pending', 'approved', 'declined', 'withdrawn', 'used')",
    "terms": (
        "(kind = 'compensation' AND amount > 0 AND currency = 'CNY'"
        " AND clock IS NULL AND days IS NULL)"
        " OR (kind = 'extension' AND clock IS NOT NULL AND days BETWEEN 1 AND 365"
        " AND amount IS NULL AND currency IS NULL)"
    ),
    "decided": "(status = 'pending') = (decided_by_id IS NULL AND decided_at IS NULL)",
    "used": "(status = 'used') = (used_by_id IS NOT NULL AND used_at IS NOT NULL)",
    "two_people": "status IN ('pending', 'withdrawn') OR decided_by_id <> requested_by_id",
    "payer_not_approver": (
        "kind <> 'compensation' OR used_by_id IS NULL OR used_by_id <> decided_by_id"
    ),
}


def _agent(column: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], ["agents.id"], name=op.f(f"fk_{_TABLE}_{column}_agents")
    )


def upgrade() -> None:
    op.create_table(
        _TABLE,
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("complaint_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "amount",
            sa.Numeric(precision=14, scale=2),
            nullable=True,
            comment="compensation: the most it may be",
        ),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column(
            "clock", sa.String(length=32), nullable=True, comment="extension: the clock's kind"
        ),
        sa.Column("days", sa.Integer(), nullable=True, comment="extension: the days it adds"),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by_id", sa.BigInteger(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "decided_by_id",
            sa.BigInteger(),
            nullable=True,
            comment="who approved, declined or withdrew it",
        ),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column(
            "used_by_id", sa.BigInteger(), nullable=True, comment="who made the move that used it"
        ),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        *(sa.CheckConstraint(sql, name=op.f(f"ck_{_TABLE}_{n}")) for n, sql in _CHECKS.items()),
        sa.ForeignKeyConstraint(
            ["complaint_id"], ["complaints.id"], name=op.f(f"fk_{_TABLE}_complaint_id_complaints")
        ),
        _agent("requested_by_id"),
        _agent("decided_by_id"),
        _agent("used_by_id"),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{_TABLE}")),
    )
    op.create_index(f"ix_{_TABLE}_complaint_id_id", _TABLE, ["complaint_id", "id"])


def downgrade() -> None:
    op.drop_index(f"ix_{_TABLE}_complaint_id_id", table_name=_TABLE)
    op.drop_table(_TABLE)
