"""ivr: flows and their versions, the numbers they answer, calls, steps, JSON signatures

``ivr_flows`` keeps every version of a flow document, ``ivr_numbers`` points each called
number at its active version. ``ivr_calls`` holds a call's IVR state between webhooks;
``ivr_steps`` records each step with the response it got, unique per call by step and by
delivery fingerprint, so a duplicated webhook never advances a call twice.
``telephony_signatures`` remembers the JSON webhooks' signatures so one cannot be replayed.
See ``app/ivr/models.py``.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02 23:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONTACT_ID_WHERE = sa.text("contact_id IS NOT NULL")


def _now(name: str, comment: str | None = None) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        server_default=sa.func.now(),
        nullable=False,
        comment=comment,
    )


def _flows() -> None:
    op.create_table(
        "ivr_flows",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "numbers",
            postgresql.ARRAY(sa.String(length=32)),
            server_default="{}",
            nullable=False,
            comment="the called numbers the document says it serves",
        ),
        sa.Column("uploaded_by", sa.String(length=64), nullable=False),
        _now("uploaded_at"),
        sa.CheckConstraint("version >= 1", name=op.f("ck_ivr_flows_version_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ivr_flows")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_ivr_flows_name_version")),
    )
    op.create_table(
        "ivr_numbers",
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("flow_id", sa.BigInteger(), nullable=False),
        sa.Column("activated_by", sa.String(length=64), nullable=False),
        _now("activated_at"),
        sa.ForeignKeyConstraint(
            ["flow_id"], ["ivr_flows.id"], name=op.f("fk_ivr_numbers_flow_id_ivr_flows")
        ),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_ivr_numbers")),
    )


def _calls() -> None:
    op.create_table(
        "ivr_calls",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column(
            "call_ref",
            sa.String(length=64),
            nullable=False,
            comment="the provider's id of the call (Twilio's CallSid)",
        ),
        sa.Column(
            "caller", sa.String(length=32), nullable=True, comment="From, normalised if a phone"
        ),
        sa.Column("called", sa.String(length=32), nullable=False, comment="To, normalised"),
        sa.Column("flow_id", sa.BigInteger(), nullable=False),
        sa.Column("state", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "step",
            sa.Integer(),
            server_default="0",
            nullable=False,
            comment="steps taken; the next one's seq",
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "announced_position",
            sa.Integer(),
            nullable=True,
            comment="the last queue position told to the caller (never goes up)",
        ),
        sa.Column(
            "transcript",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
        ),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column(
            "drop_node",
            sa.String(length=64),
            nullable=True,
            comment="the node the caller hung up at, when they left in the IVR",
        ),
        sa.Column(
            "provider_status",
            sa.String(length=32),
            nullable=True,
            comment="the last status the provider reported",
        ),
        _now("started_at"),
        sa.Column(
            "left_ivr_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="enqueued, transferred or ended: the time in the IVR ends",
        ),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('in_ivr', 'queued', 'bridged', 'ended')",
            name=op.f("ck_ivr_calls_status"),
        ),
        sa.CheckConstraint("provider IN ('twilio', 'json')", name=op.f("ck_ivr_calls_provider")),
        sa.CheckConstraint("step >= 0", name=op.f("ck_ivr_calls_step_not_negative")),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_ivr_calls_contact_id_contacts")
        ),
        sa.ForeignKeyConstraint(
            ["flow_id"], ["ivr_flows.id"], name=op.f("fk_ivr_calls_flow_id_ivr_flows")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ivr_calls")),
        sa.UniqueConstraint("provider", "call_ref", name=op.f("uq_ivr_calls_provider_call_ref")),
    )
    op.create_index("ix_ivr_calls_started_at", "ivr_calls", ["started_at"], unique=False)
    op.create_index(
        "ix_ivr_calls_contact_id",
        "ivr_calls",
        ["contact_id"],
        unique=False,
        postgresql_where=CONTACT_ID_WHERE,
    )


def _steps() -> None:
    op.create_table(
        "ivr_steps",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("call_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column(
            "token",
            sa.String(length=128),
            nullable=False,
            comment="the delivery's fingerprint: the provider's idempotency token, else the step",
        ),
        sa.Column("event", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        _now("at"),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["ivr_calls.id"],
            name=op.f("fk_ivr_steps_call_id_ivr_calls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ivr_steps")),
        sa.UniqueConstraint("call_id", "seq", name=op.f("uq_ivr_steps_call_id_seq")),
        sa.UniqueConstraint("call_id", "token", name=op.f("uq_ivr_steps_call_id_token")),
    )
    op.create_table(
        "telephony_signatures",
        sa.Column("signature", sa.String(length=64), nullable=False),
        _now("seen_at"),
        sa.PrimaryKeyConstraint("signature", name=op.f("pk_telephony_signatures")),
    )
    op.create_index(
        "ix_telephony_signatures_seen_at", "telephony_signatures", ["seen_at"], unique=False
    )


def upgrade() -> None:
    _flows()
    _calls()
    _steps()


def downgrade() -> None:
    op.drop_index("ix_telephony_signatures_seen_at", table_name="telephony_signatures")
    op.drop_table("telephony_signatures")
    op.drop_table("ivr_steps")
    op.drop_index(
        "ix_ivr_calls_contact_id", table_name="ivr_calls", postgresql_where=CONTACT_ID_WHERE
    )
    op.drop_index("ix_ivr_calls_started_at", table_name="ivr_calls")
    op.drop_table("ivr_calls")
    op.drop_table("ivr_numbers")
    op.drop_table("ivr_flows")
