"""notifications: the outbox of SMS and e-mail messages to customers, with delivery state

One row per message, written in the transaction of the change it tells of and sent later by
the timer worker's sweep; ``(subject_type, subject_id, kind, dedupe_key)`` is unique so a
notice is sent once. The partial index holds only the rows still to send. See
``app/notifications/models.py`` and ``app/notifications/outbox.py``.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 20:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column(
            "recipient",
            sa.String(length=320),
            nullable=False,
            comment="phone number or e-mail address, as given",
        ),
        sa.Column(
            "kind",
            sa.String(length=64),
            nullable=False,
            comment="what the notice is: complaint.resolved, ...",
        ),
        sa.Column(
            "subject", sa.String(length=300), nullable=True, comment="an e-mail's subject line"
        ),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column(
            "subject_type",
            sa.String(length=32),
            nullable=False,
            comment="what the notice is about: complaint, ...",
        ),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column(
            "dedupe_key",
            sa.String(length=128),
            server_default="",
            nullable=False,
            comment="tells apart notices of one kind about one subject that are meant to differ",
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="queued: when to try; sending: when the claim lapses; otherwise null",
        ),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("channel IN ('sms', 'email')", name=op.f("ck_notifications_channel")),
        sa.CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'failed', 'dead')",
            name=op.f("ck_notifications_status"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_notifications_attempts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint(
            "subject_type",
            "subject_id",
            "kind",
            "dedupe_key",
            name="uq_notifications_subject_type_subject_id_kind_dedupe_key",
        ),
    )
    op.create_index(
        "ix_notifications_due",
        "notifications",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'sending')"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_notifications_due",
        table_name="notifications",
        postgresql_where=sa.text("status IN ('queued', 'sending')"),
    )
    op.drop_table("notifications")
