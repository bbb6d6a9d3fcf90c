"""complaints: the complaint desk's complaints, clocks and hash-chained audit trail

``complaint_reference_seq`` numbers references (``app/complaints/reference.py``): NO CYCLE,
so a number is never given twice. ``complaint_audit`` is append-only: a trigger refuses
UPDATE and DELETE of its rows (TRUNCATE, an owner's operation, is left to the owner); the
hash chain (``app/complaints/chain.py``) detects what is done behind the trigger's back.
See ``app/complaints/models.py``.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 18:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_APPEND_ONLY_FUNCTION = """
CREATE FUNCTION complaint_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'complaint_audit is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""
_APPEND_ONLY_TRIGGER = """
CREATE TRIGGER complaint_audit_append_only
    BEFORE UPDATE OR DELETE ON complaint_audit
    FOR EACH ROW EXECUTE FUNCTION complaint_audit_append_only()
"""


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    ]


def _complaints() -> None:
    op.create_table(
        "complaints",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("reference", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("complainant_name", sa.String(length=200), nullable=False),
        sa.Column("complainant_contact", sa.String(length=200), nullable=False),
        sa.Column("complainant_relation", sa.String(length=24), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("branch", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("grounds", sa.Text(), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "categories",
            postgresql.ARRAY(sa.String(length=64)),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("severity", sa.String(length=16), nullable=True),
        sa.Column("escalation_level", sa.String(length=16), server_default="agent", nullable=False),
        sa.Column("assignee_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "registered_by",
            sa.String(length=64),
            nullable=False,
            comment="the actor who registered it: agent:<id>, ...",
        ),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "due_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="the resolution clock's due time (a derived cache)",
        ),
        sa.Column(
            "facts",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
            comment="the facts transitions brought",
        ),
        sa.Column(
            "linked",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
            comment="the same matter raised again",
        ),
        sa.Column(
            "audit_seq",
            sa.Integer(),
            server_default="0",
            nullable=False,
            comment="the audit chain's last seq",
        ),
        sa.Column(
            "audit_hash",
            sa.String(length=64),
            nullable=True,
            comment="the audit chain's last hash (its head)",
        ),
        *_timestamps(),
        sa.CheckConstraint(
            "status IN ('registered', 'classified', 'assigned', 'in_progress', 'paused', "
            "'resolved', 'confirmed', 'closed', 'under_review', 'withdrawn', 'rejected', "
            "'archived')",
            name=op.f("ck_complaints_status"),
        ),
        sa.CheckConstraint(
            "channel IN ('phone', 'web', 'app', 'email', 'letter', 'counter')",
            name=op.f("ck_complaints_channel"),
        ),
        sa.CheckConstraint(
            "complainant_relation IN ('self', 'authorised_agent')",
            name=op.f("ck_complaints_complainant_relation"),
        ),
        sa.CheckConstraint(
            "escalation_level IN ('agent', 'supervisor', 'head_office')",
            name=op.f("ck_complaints_escalation_level"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_complaints_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_complaints_contact_id_contacts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["assignee_id"],
            ["agents.id"],
            name=op.f("fk_complaints_assignee_id_agents"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaints")),
        sa.UniqueConstraint("reference", name=op.f("uq_complaints_reference")),
    )
    op.create_index("ix_complaints_customer_id_status", "complaints", ["customer_id", "status"])
    op.create_index("ix_complaints_status_id", "complaints", ["status", "id"])
    op.create_index("ix_complaints_assignee_id_id", "complaints", ["assignee_id", "id"])
    op.create_index("ix_complaints_branch_id", "complaints", ["branch", "id"])
    op.create_index(
        "ix_complaints_categories", "complaints", ["categories"], postgresql_using="gin"
    )


def _clocks() -> None:
    op.create_table(
        "complaint_clocks",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("complaint_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column(
            "policy",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="the policy it runs under: kind, target, unit, warnings",
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "pauses",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
            comment='[{"start", "end", "reason"}]',
        ),
        sa.Column(
            "extensions",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
            comment='[{"days", "reason", "approver_id"}]',
        ),
        sa.Column(
            "due_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="derived from the history (a cache)",
        ),
        sa.ForeignKeyConstraint(
            ["complaint_id"],
            ["complaints.id"],
            name=op.f("fk_complaint_clocks_complaint_id_complaints"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaint_clocks")),
    )
    op.create_index(
        "ix_complaint_clocks_complaint_id_kind",
        "complaint_clocks",
        ["complaint_id", "kind"],
        unique=True,
    )


def _audit() -> None:
    op.create_table(
        "complaint_audit",
        sa.Column("complaint_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("before", sa.String(length=32), nullable=True),
        sa.Column("after", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "data", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["complaint_id"],
            ["complaints.id"],
            name=op.f("fk_complaint_audit_complaint_id_complaints"),
        ),
        sa.PrimaryKeyConstraint("complaint_id", "seq", name=op.f("pk_complaint_audit")),
    )
    op.execute(_APPEND_ONLY_FUNCTION)
    op.execute(_APPEND_ONLY_TRIGGER)


def upgrade() -> None:
    op.execute("CREATE SEQUENCE complaint_reference_seq AS bigint START 1 NO CYCLE")
    _complaints()
    _clocks()
    _audit()


def downgrade() -> None:
    op.drop_table("complaint_audit")
    op.execute("DROP FUNCTION complaint_audit_append_only()")
    op.drop_table("complaint_clocks")
    op.drop_index("ix_complaints_categories", table_name="complaints")
    op.drop_index("ix_complaints_branch_id", table_name="complaints")
    op.drop_index("ix_complaints_assignee_id_id", table_name="complaints")
    op.drop_index("ix_complaints_status_id", table_name="complaints")
    op.drop_index("ix_complaints_customer_id_status", table_name="complaints")
    op.drop_table("complaints")
    op.execute("DROP SEQUENCE complaint_reference_seq")
