"""access_log: who looked up or read personal data, when, and what came of it

Lookups that could unmask a customer's numbers (by phone, uniqueness conflicts) and reads of
customers are recorded, one row per attempt, refused attempts included; what was searched is
kept only masked. See ``app/accesslog.py``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 14:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = (
    "customer.lookup_phone",
    "customer.conflict",
    "customer.read",
    "contact.read",
    "complaint.read",
)
_OUTCOMES = ("found", "not_found", "conflict", "limited")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "access_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("agent_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column(
            "site", sa.String(length=64), nullable=True, comment="the user's site at the time"
        ),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column(
            "subject_id",
            sa.BigInteger(),
            nullable=True,
            comment="the record reached (a customer's id for customer.*), if any",
        ),
        sa.Column(
            "query",
            sa.String(length=40),
            nullable=True,
            comment="what was asked for, with any number masked",
        ),
        sa.CheckConstraint(_in("kind", _KINDS), name=op.f("ck_access_log_kind")),
        sa.CheckConstraint(_in("outcome", _OUTCOMES), name=op.f("ck_access_log_outcome")),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_access_log_agent_id_agents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_log")),
    )
    op.create_index("ix_access_log_site_id", "access_log", ["site", "id"], unique=False)
    op.create_index("ix_access_log_agent_id_id", "access_log", ["agent_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_access_log_agent_id_id", table_name="access_log")
    op.drop_index("ix_access_log_site_id", table_name="access_log")
    op.drop_table("access_log")
