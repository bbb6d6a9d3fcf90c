"""routing

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 08:36:37.496662+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "queues",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("channels", postgresql.ARRAY(sa.String(length=16)), nullable=False),
        sa.Column("strategy", sa.String(length=32), nullable=False),
        sa.Column(
            "steps", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False
        ),
        sa.Column("sl_threshold_s", sa.Float(), nullable=False),
        sa.Column("sl_target_pct", sa.Float(), nullable=False),
        sa.Column("sl_counts_abandons", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("short_abandon_s", sa.Float(), server_default="5", nullable=False),
        sa.Column("ring_timeout_s", sa.Float(), nullable=False),
        sa.Column("wrap_up_s", sa.Float(), nullable=False),
        sa.Column("reject_delay_s", sa.Float(), server_default="0", nullable=False),
        sa.Column("no_answer_delay_s", sa.Float(), server_default="0", nullable=False),
        sa.Column("max_no_answer", sa.Integer(), server_default="3", nullable=False),
        sa.Column("max_wait_s", sa.Float(), nullable=True),
        sa.Column("max_length", sa.Integer(), nullable=True),
        sa.Column("overflow_queue_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "strategy IN ('longest_idle', 'most_skilled', 'least_occupied', 'round_robin', "
            "'fewest_contacts')",
            name=op.f("ck_queues_strategy"),
        ),
        sa.CheckConstraint(
            "overflow_queue_id IS DISTINCT FROM id", name=op.f("ck_queues_overflow_not_self")
        ),
        sa.ForeignKeyConstraint(
            ["overflow_queue_id"],
            ["queues.id"],
            name=op.f("fk_queues_overflow_queue_id_queues"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queues")),
        sa.UniqueConstraint("name", name=op.f("uq_queues_name")),
    )
    op.create_table(
        "contacts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("queue_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "caller", sa.String(length=32), nullable=True, comment="phone or handle, if known"
        ),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column(
            "enqueued_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="original; kept across transfers",
        ),
        sa.Column("routing_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "deadline_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="enqueued_at + the tier's SL target",
        ),
        sa.Column("agent_id", sa.BigInteger(), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("announced_position", sa.Integer(), nullable=True),
        sa.Column("short_abandon", sa.Boolean(), nullable=True),
        sa.Column("disposition", sa.String(length=64), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column(
            "parent_id",
            sa.BigInteger(),
            nullable=True,
            comment="the contact this one was transferred or overflowed from",
        ),
        sa.Column(
            "next_id",
            sa.BigInteger(),
            nullable=True,
            comment="the contact this one became in another queue",
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'offered', 'connected', 'wrap_up', 'completed', 'abandoned', "
            "'timed_out', 'transferred', 'canceled')",
            name=op.f("ck_contacts_status"),
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_contacts_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_contacts_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["next_id"], ["contacts.id"], name=op.f("fk_contacts_next_id_contacts")
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["contacts.id"], name=op.f("fk_contacts_parent_id_contacts")
        ),
        sa.ForeignKeyConstraint(
            ["queue_id"], ["queues.id"], name=op.f("fk_contacts_queue_id_queues")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
    )
    op.create_index(
        "ix_contacts_agent_id",
        "contacts",
        ["agent_id"],
        unique=False,
        postgresql_where=sa.text("status IN ('offered', 'connected', 'wrap_up')"),
    )
    op.create_index(
        "ix_contacts_completed",
        "contacts",
        ["queue_id", "completed_at"],
        unique=False,
        postgresql_where=sa.text("completed_at IS NOT NULL"),
    )
    op.create_index(
        "ix_contacts_queued_deadline",
        "contacts",
        ["deadline_at"],
        unique=False,
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.create_index(
        "ix_contacts_waiting",
        "contacts",
        ["queue_id", "enqueued_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'offered')"),
    )
    op.create_table(
        "offers",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("agent_id", sa.BigInteger(), nullable=False),
        sa.Column("queue_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("reason", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'accepted', 'rejected', 'expired', 'rescinded')",
            name=op.f("ck_offers_status"),
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_offers_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_offers_contact_id_contacts")
        ),
        sa.ForeignKeyConstraint(
            ["queue_id"], ["queues.id"], name=op.f("fk_offers_queue_id_queues")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offers")),
    )
    op.create_index("ix_offers_agent_id_status", "offers", ["agent_id", "status"], unique=False)
    op.create_index(
        "uq_offers_contact_id_pending",
        "offers",
        ["contact_id"],
        unique=True,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.add_column(
        "agent_channels",
        sa.Column(
            "load",
            sa.SmallInteger(),
            server_default="0",
            nullable=False,
            comment="live offers + connected",
        ),
    )
    op.add_column(
        "agents", sa.Column("work_offers", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "agents", sa.Column("work_contacts", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "agents", sa.Column("work_wrap_ups", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "agents",
        sa.Column(
            "idle_since",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.add_column(
        "agents",
        sa.Column(
            "ready_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="not offered anything before (reject/no-answer delay)",
        ),
    )
    op.add_column("agents", sa.Column("last_offer_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "agents",
        sa.Column("consecutive_no_answers", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "agents", sa.Column("contacts_today", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("agents", sa.Column("contacts_day", sa.Date(), nullable=True))
    op.create_index("ix_events_type_at", "events", ["type", "at"], unique=False)

    op.create_check_constraint(
        op.f("ck_agent_channels_load"), "agent_channels", "load >= 0 AND load <= capacity"
    )
    op.create_check_constraint(
        op.f("ck_agents_work"),
        "agents",
        "work_offers >= 0 AND work_contacts >= 0 AND work_wrap_ups >= 0",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_agents_work"), "agents", type_="check")
    op.drop_constraint(op.f("ck_agent_channels_load"), "agent_channels", type_="check")
    op.drop_index("ix_events_type_at", table_name="events")
    op.drop_column("agents", "contacts_day")
    op.drop_column("agents", "contacts_today")
    op.drop_column("agents", "consecutive_no_answers")
    op.drop_column("agents", "last_offer_at")
    op.drop_column("agents", "ready_at")
    op.drop_column("agents", "idle_since")
    op.drop_column("agents", "work_wrap_ups")
    op.drop_column("agents", "work_contacts")
    op.drop_column("agents", "work_offers")
    op.drop_column("agent_channels", "load")
    op.drop_index(
        "uq_offers_contact_id_pending",
        table_name="offers",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index("ix_offers_agent_id_status", table_name="offers")
    op.drop_table("offers")
    op.drop_index(
        "ix_contacts_completed",
        table_name="contacts",
        postgresql_where=sa.text("completed_at IS NOT NULL"),
    )
    op.drop_index(
        "ix_contacts_queued_deadline",
        table_name="contacts",
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.drop_index(
        "ix_contacts_waiting",
        table_name="contacts",
        postgresql_where=sa.text("status IN ('queued', 'offered')"),
    )
    op.drop_index(
        "ix_contacts_agent_id",
        table_name="contacts",
        postgresql_where=sa.text("status IN ('offered', 'connected', 'wrap_up')"),
    )
    op.drop_table("contacts")
    op.drop_table("queues")
