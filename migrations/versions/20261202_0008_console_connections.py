"""console_connections: the agent consoles open on each instance (presence follows the console)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_connections",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.BigInteger(), nullable=False),
        sa.Column("instance_id", sa.Uuid(), nullable=False),
        sa.Column(
            "opened_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "seen_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "live_until",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="counts as open until then",
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_console_connections_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_connections")),
    )
    op.create_index(
        op.f("ix_console_connections_agent_id"), "console_connections", ["agent_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_console_connections_agent_id"), table_name="console_connections")
    op.drop_table("console_connections")
