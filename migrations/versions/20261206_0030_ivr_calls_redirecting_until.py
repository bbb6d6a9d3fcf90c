"""calls remember a redirect to the agent in flight at the provider (``redirecting_until``)

The redirect of a queued caller to the agent who answered is asked of Twilio with no
transaction open (an open one would hold the event feed back while Twilio answers): the
call is marked as being redirected until a lease ends, and a wait-loop turn arriving
meanwhile leaves the bridging to the redirect.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-06 03:10:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0030"
down_revision: str | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "ivr_calls",
        sa.Column(
            "redirecting_until",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="a redirect to the agent is in flight at the provider until then (its lease)",
        ),
    )


def downgrade() -> None:
    op.drop_column("ivr_calls", "redirecting_until")
