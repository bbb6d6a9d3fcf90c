"""agents: the transaction that last changed an agent's routing (supply read from rows)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 09:00:00.000000+00:00

``agents.routing_tx`` holds the id of the transaction that last wrote the agent's row, or
one of its ``agent_channels`` or ``agent_skills`` rows (which touch the agent's row), so the
dispatcher can read the agents changed since a snapshot from the rows themselves
(``app/routing/rounds.py``). A transaction id as a bigint, like ``events.tx``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT_TX = "(pg_current_xact_id()::text)::bigint"

# Every update of an agent's row carries the writing transaction, whatever the statement set.
_STAMP = f"""
CREATE FUNCTION agents_stamp_routing_tx() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.routing_tx := {CURRENT_TX};
    RETURN NEW;
END
$$
"""
# A change to an agent's channels or skills touches the agent's row (so the stamp above
# runs, and the change holds the agent's row lock until it commits). The paths that move
# a load (the dispatcher's write, ``app/routing/work.py``) update the agent's row in the
# same transaction already: the condition makes the touch a lookup then, not a second write.
_TOUCH = f"""
CREATE FUNCTION agents_touch_routing_tx() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE agents SET routing_tx = {CURRENT_TX}
    WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.agent_id ELSE NEW.agent_id END
      AND routing_tx <> {CURRENT_TX};
    RETURN NULL;
END
$$
"""
_TRIGGERS = (
    "CREATE TRIGGER stamp_routing_tx BEFORE UPDATE ON agents "
    "FOR EACH ROW EXECUTE FUNCTION agents_stamp_routing_tx()",
    "CREATE TRIGGER touch_agent AFTER INSERT OR UPDATE OR DELETE ON agent_channels "
    "FOR EACH ROW EXECUTE FUNCTION agents_touch_routing_tx()",
    "CREATE TRIGGER touch_agent AFTER INSERT OR UPDATE OR DELETE ON agent_skills "
    "FOR EACH ROW EXECUTE FUNCTION agents_touch_routing_tx()",
)


def upgrade() -> None:
    op.add_column(
        "agents",
        sa.Column(
            "routing_tx",
            sa.BigInteger(),
            server_default=sa.text(CURRENT_TX),
            nullable=False,
            comment="the transaction that last changed the agent's routing",
        ),
    )
    op.create_index("ix_agents_routing_tx", "agents", ["routing_tx"], unique=False)
    op.execute(_STAMP)
    op.execute(_TOUCH)
    for trigger in _TRIGGERS:
        op.execute(trigger)
    # Deactivating an agent now also makes it offline; agents deactivated before still show
    # their old status, which no change of status could leave any more.
    op.execute("UPDATE agents SET status = 'offline', status_reason = NULL WHERE NOT active")


def downgrade() -> None:
    op.execute("DROP TRIGGER touch_agent ON agent_skills")
    op.execute("DROP TRIGGER touch_agent ON agent_channels")
    op.execute("DROP TRIGGER stamp_routing_tx ON agents")
    op.execute("DROP FUNCTION agents_touch_routing_tx()")
    op.execute("DROP FUNCTION agents_stamp_routing_tx()")
    op.drop_index("ix_agents_routing_tx", table_name="agents")
    op.drop_column("agents", "routing_tx")
