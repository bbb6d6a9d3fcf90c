"""complaint archive: archive and retention columns, legal holds, attachments, exports

``complaints`` gains when it was archived and anonymised, the customer's tier (kept when
anonymisation unlinks the customer) and a legal hold (reason, who, when); constraints keep a
held complaint from ever being anonymised and anonymisation to archived complaints; two
partial indexes serve the sweeps (``app/complaints/archive.py``,
``app/complaints/anonymise.py``). ``complaint_attachments`` holds uploaded files in the
database (``app/complaints/attachments.py``); their content is stored uncompressed
(``STORAGE EXTERNAL``): PDFs and images are compressed already. ``complaint_exports``
records every export with its filters and the rows it sent (``app/complaints/export.py``),
and ``complaint.export`` joins the access log's kinds.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 23:00:00.000000+00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = (
    "customer.lookup_phone",
    "customer.conflict",
    "customer.read",
    "contact.read",
    "complaint.read",
    "complaint.public_lookup",
)
_EXPORT = "complaint.export"
_CHECKS = {
    "anonymised_archived": "anonymised_at IS NULL OR status = 'archived'",
    "held_kept": "NOT (legal_hold AND anonymised_at IS NOT NULL)",
    "legal_hold_at": "legal_hold = (legal_hold_at IS NOT NULL)",
}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _complaint_columns() -> None:
    moment = sa.DateTime(timezone=True)
    columns: list[sa.Column[Any]] = [
        sa.Column(
            "archived_at",
            moment,
            nullable=True,
            comment="when it was archived (its audit entry's time)",
        ),
        sa.Column(
            "anonymised_at",
            moment,
            nullable=True,
            comment="when retention removed its personal data",
        ),
        sa.Column(
            "customer_tier",
            sa.String(length=32),
            nullable=True,
            comment="the customer's tier, kept when anonymisation unlinks the customer",
        ),
        sa.Column(
            "legal_hold",
            sa.Boolean(),
            server_default=sa.false(),
            nullable=False,
            comment="true: never anonymised",
        ),
        sa.Column("legal_hold_reason", sa.Text(), nullable=True),
        sa.Column(
            "legal_hold_by",
            sa.String(length=64),
            nullable=True,
            comment="the actor who placed the hold: agent:<id>",
        ),
        sa.Column("legal_hold_at", moment, nullable=True),
    ]
    for column in columns:
        op.add_column("complaints", column)
    for name, condition in _CHECKS.items():
        op.create_check_constraint(op.f(f"ck_complaints_{name}"), "complaints", condition)
    op.create_index(
        "ix_complaints_retention_due",
        "complaints",
        ["archived_at"],
        postgresql_where=sa.text("anonymised_at IS NULL AND NOT legal_hold"),
    )
    op.create_index(
        "ix_complaints_archive_unstamped",
        "complaints",
        ["id"],
        postgresql_where=sa.text("status = 'archived' AND archived_at IS NULL"),
    )


def _attachments() -> None:
    op.create_table(
        "complaint_attachments",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("complaint_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "name", sa.String(length=255), nullable=False, comment="the file's name, as uploaded"
        ),
        sa.Column(
            "content_type",
            sa.String(length=100),
            nullable=False,
            comment="what its first bytes show it is (never the client's word)",
        ),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "content",
            sa.LargeBinary(),
            nullable=True,
            comment="null once anonymisation removed it",
        ),
        sa.Column(
            "uploaded_by",
            sa.String(length=64),
            nullable=False,
            comment="the actor who uploaded it: agent:<id>",
        ),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("size > 0", name=op.f("ck_complaint_attachments_size")),
        sa.CheckConstraint(
            "content IS NULL OR octet_length(content) = size",
            name=op.f("ck_complaint_attachments_content_size"),
        ),
        sa.ForeignKeyConstraint(
            ["complaint_id"],
            ["complaints.id"],
            name=op.f("fk_complaint_attachments_complaint_id_complaints"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaint_attachments")),
    )
    op.create_index(
        "ix_complaint_attachments_complaint_id_id",
        "complaint_attachments",
        ["complaint_id", "id"],
    )
    op.execute("ALTER TABLE complaint_attachments ALTER COLUMN content SET STORAGE EXTERNAL")


def _exports() -> None:
    op.create_table(
        "complaint_exports",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agent_id", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column(
            "filters",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
            comment="the list filters it was made with",
        ),
        sa.Column(
            "rows", sa.BigInteger(), nullable=True, comment="complaints sent; null until it ends"
        ),
        sa.Column(
            "finished_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="null: cut short (the client left, or it failed)",
        ),
        sa.CheckConstraint("format IN ('csv', 'json')", name=op.f("ck_complaint_exports_format")),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_complaint_exports_agent_id_agents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaint_exports")),
    )


def _access_log_kinds(kinds: tuple[str, ...]) -> None:
    op.drop_constraint(op.f("ck_access_log_kind"), "access_log", type_="check")
    op.create_check_constraint(op.f("ck_access_log_kind"), "access_log", _in("kind", kinds))


def upgrade() -> None:
    _complaint_columns()
    _attachments()
    _exports()
    _access_log_kinds((*_KINDS, _EXPORT))


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM access_log WHERE kind = :kind").bindparams(kind=_EXPORT))
    _access_log_kinds(_KINDS)
    op.drop_table("complaint_exports")
    op.drop_index("ix_complaint_attachments_complaint_id_id", table_name="complaint_attachments")
    op.drop_table("complaint_attachments")
    op.drop_index("ix_complaints_archive_unstamped", table_name="complaints")
    op.drop_index("ix_complaints_retention_due", table_name="complaints")
    for name in reversed(list(_CHECKS)):
        op.drop_constraint(op.f(f"ck_complaints_{name}"), "complaints", type_="check")
    for column in (
        "legal_hold_at",
        "legal_hold_by",
        "legal_hold_reason",
        "legal_hold",
        "customer_tier",
        "anonymised_at",
        "archived_at",
    ):
        op.drop_column("complaints", column)
