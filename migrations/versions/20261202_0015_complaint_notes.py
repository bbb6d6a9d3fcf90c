"""complaint_notes, complaint_feedback; the access log records anonymous public lookups

Notes written on a complaint (internal unless meant for the customer) and the customer's
satisfaction survey (CSAT 1 to 5 and a comment, one per closure): see
``app/complaints/notes.py``. The customer's own status lookup by reference and phone
(``app/complaints/public.py``) is made without signing in, so an access-log entry may name
no agent, and ``complaint.public_lookup`` joins the kinds of access.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 21:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = (
    "customer.lookup_phone",
    "customer.conflict",
    "customer.read",
    "contact.read",
    "complaint.read",
)
_PUBLIC_LOOKUP = "complaint.public_lookup"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _notes() -> None:
    op.create_table(
        "complaint_notes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("complaint_id", sa.BigInteger(), nullable=False),
        sa.Column("author_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column(
            "internal",
            sa.Boolean(),
            server_default=sa.true(),
            nullable=False,
            comment="false: meant for the customer",
        ),
        sa.ForeignKeyConstraint(
            ["complaint_id"],
            ["complaints.id"],
            name=op.f("fk_complaint_notes_complaint_id_complaints"),
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["agents.id"], name=op.f("fk_complaint_notes_author_id_agents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaint_notes")),
    )
    op.create_index("ix_complaint_notes_complaint_id_id", "complaint_notes", ["complaint_id", "id"])


def _feedback() -> None:
    op.create_table(
        "complaint_feedback",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("complaint_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "closure",
            sa.Integer(),
            nullable=False,
            comment="reopen steps before it: 0 for the first closure",
        ),
        sa.Column("csat", sa.SmallInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "recorded_by",
            sa.String(length=64),
            nullable=False,
            comment="the actor who recorded it: agent:<id>, ...",
        ),
        sa.CheckConstraint("csat BETWEEN 1 AND 5", name=op.f("ck_complaint_feedback_csat")),
        sa.ForeignKeyConstraint(
            ["complaint_id"],
            ["complaints.id"],
            name=op.f("fk_complaint_feedback_complaint_id_complaints"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaint_feedback")),
        sa.UniqueConstraint(
            "complaint_id", "closure", name=op.f("uq_complaint_feedback_complaint_id_closure")
        ),
    )


def _access_log_kinds(kinds: tuple[str, ...]) -> None:
    op.drop_constraint(op.f("ck_access_log_kind"), "access_log", type_="check")
    op.create_check_constraint(op.f("ck_access_log_kind"), "access_log", _in("kind", kinds))


def upgrade() -> None:
    _notes()
    _feedback()
    op.alter_column("access_log", "agent_id", existing_type=sa.BigInteger(), nullable=True)
    _access_log_kinds((*_KINDS, _PUBLIC_LOOKUP))


def downgrade() -> None:
    op.execute(
        sa.text("DELETE FROM access_log WHERE agent_id IS NULL OR kind = :kind").bindparams(
            kind=_PUBLIC_LOOKUP
        )
    )
    _access_log_kinds(_KINDS)
    op.alter_column("access_log", "agent_id", existing_type=sa.BigInteger(), nullable=False)
    op.drop_table("complaint_feedback")
    op.drop_index("ix_complaint_notes_complaint_id_id", table_name="complaint_notes")
    op.drop_table("complaint_notes")
