"""Which agents have a console open: presence follows the console (DESIGN.md, invariant 5).

Theory of operation
-------------------

Every ``/ws/agent`` socket is a ``console_connections`` row, written when the socket is
signed in and deleted when it ends, however it ends, by the instance that holds it. A row
is a lease: it counts as open until ``live_until``, which its instance moves forward every
heartbeat (``console_heartbeat_s``) to ``console_stale_s`` ahead. An instance that is killed
cannot delete its rows, and stops moving them forward.

Whenever a console is gone, a durable ``agent.console_gone`` timer is set for its agent:
``console_grace_s`` after the socket closed, or after its killed instance last saw it. The
timer's handler (``app/routing/consoles.py``, the higher domain) makes the agent away with
reason ``disconnected`` only if no console of the agent is open by then, so a console
reopened within the grace keeps everything, wherever it reopened.

Rows of a stopped instance are found by the others: each heartbeat is one statement that
moves this instance's leases forward (writing back any another instance took for lapsed while
this one was held up), deletes every lapsed lease this instance does not hold, and sets the
timers of their agents. So the cost is one statement per instance per heartbeat, touching
the rows of the consoles this instance holds.

The instance's open consoles are also kept in memory (``ConsoleRegistry``), because the
heartbeat writes them back from there. The registry reaches the code through
``session.info`` (the runtime's session factory carries it), like the wake-up callbacks.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import ARRAY, BigInteger, Float, Uuid, bindparam, delete, exists, func, select
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents.models import ConsoleConnection
from app.db import db_now
from app.timers import service as timers

CONSOLE_GONE = "agent.console_gone"
REGISTRY_KEY = "console_registry"


class ConsoleRegistry:
    """The consoles this instance holds, and how it keeps their leases."""

    def __init__(self, *, grace_s: float, stale_s: float) -> None:
        self.instance_id = uuid.uuid4()
        self.grace = timedelta(seconds=grace_s)
        self.stale = timedelta(seconds=stale_s)
        self._open: dict[uuid.UUID, int] = {}

    def add(self, connection_id: uuid.UUID, agent_id: int) -> None:
        self._open[connection_id] = agent_id

    def discard(self, connection_id: uuid.UUID) -> None:
        self._open.pop(connection_id, None)

    def clear(self) -> None:
        self._open.clear()

    def held(self) -> tuple[list[uuid.UUID], list[int]]:
        """Connection ids and their agents, in matching order."""
        return list(self._open), list(self._open.values())

    def holds(self, connection_id: uuid.UUID) -> bool:
        return connection_id in self._open


def registry_of(session: AsyncSession) -> ConsoleRegistry:
    registry = session.info.get(REGISTRY_KEY)
    if not isinstance(registry, ConsoleRegistry):
        raise RuntimeError("this session factory carries no console registry (app/runtime.py)")
    return registry


async def open_console(session: AsyncSession, agent_id: int) -> uuid.UUID:
    """A console of ``agent_id`` opened on this instance; its connection id."""
    registry = registry_of(session)
    connection_id = uuid.uuid4()
    await session.execute(
        insert(ConsoleConnection).values(
            id=connection_id,
            agent_id=agent_id,
            instance_id=registry.instance_id,
            live_until=func.now() + registry.stale,
        )
    )
    # Held from now on even if this transaction fails: the heartbeat would write the row
    # back, and the socket's end (which follows such a failure) forgets it again.
    registry.add(connection_id, agent_id)
    return connection_id


async def close_console(session: AsyncSession, connection_id: uuid.UUID, agent_id: int) -> None:
    """The console's socket ended: unless the agent is back within the grace, it is away."""
    registry = registry_of(session)
    registry.discard(connection_id)
    await session.execute(delete(ConsoleConnection).where(ConsoleConnection.id == connection_id))
    await timers.schedule(
        session,
        kind=CONSOLE_GONE,
        subject=agent_id,
        due_at=await db_now(session) + registry.grace,
    )


async def close_instance(session: AsyncSession) -> int:
    """This instance is stopping: every console it holds is gone; how many."""
    registry = registry_of(session)
    agent_ids = (
        await session.scalars(
            delete(ConsoleConnection)
            .where(ConsoleConnection.instance_id == registry.instance_id)
            .returning(ConsoleConnection.agent_id)
        )
    ).all()
    registry.clear()
    due = await db_now(session) + registry.grace
    await timers.schedule_many(
        session, kind=CONSOLE_GONE, due=[(agent_id, due) for agent_id in sorted(set(agent_ids))]
    )
    return len(agent_ids)


async def has_open_console(session: AsyncSession, agent_id: int) -> bool:
    """Whether a console of the agent is open on any instance (its lease not lapsed)."""
    found = await session.scalar(
        select(
            exists().where(
                ConsoleConnection.agent_id == agent_id, ConsoleConnection.live_until > func.now()
            )
        )
    )
    return bool(found)


# The timers row is written the way ``timers.schedule`` writes it (replacing a pending one):
# a later due time wins, which is right, since the handler looks at every console anyway.
_HEARTBEAT = sql(
    """
    WITH held AS (
        INSERT INTO console_connections AS c (id, agent_id, instance_id, live_until)
        SELECT h.id, h.agent_id, :instance, now() + make_interval(secs => :stale_s)
        FROM unnest(:ids, :agent_ids) AS h (id, agent_id)
        JOIN agents a ON a.id = h.agent_id
        ON CONFLICT (id) DO UPDATE
            SET seen_at = now(), live_until = excluded.live_until
    ), lapsed AS (
        DELETE FROM console_connections
        WHERE live_until < now() AND id <> ALL (:ids)
        RETURNING agent_id, seen_at
    )
    INSERT INTO timers (kind, subject, due_at, payload)
    SELECT :kind, agent_id::text,
           greatest(max(seen_at) + make_interval(secs => :grace_s), now()), '{}'::jsonb
    FROM lapsed GROUP BY agent_id
    ON CONFLICT ON CONSTRAINT uq_timers_kind_subject DO UPDATE
        SET due_at = excluded.due_at, payload = excluded.payload, attempts = 0,
            last_error = NULL, failed_at = NULL
    RETURNING subject
    """
).bindparams(
    bindparam("instance", type_=Uuid),
    bindparam("ids", type_=ARRAY(Uuid)),
    bindparam("agent_ids", type_=ARRAY(BigInteger)),
    bindparam("stale_s", type_=Float),
    bindparam("grace_s", type_=Float),
)


async def heartbeat(session: AsyncSession) -> Sequence[int]:
    """Keep this instance's consoles open, close lapsed ones anywhere; their agents."""
    registry = registry_of(session)
    ids, agent_ids = registry.held()
    subjects = await session.scalars(
        _HEARTBEAT,
        {
            "instance": registry.instance_id,
            "ids": ids,
            "agent_ids": agent_ids,
            "stale_s": registry.stale.total_seconds(),
            "grace_s": registry.grace.total_seconds(),
            "kind": CONSOLE_GONE,
        },
    )
    lapsed = [int(subject) for subject in subjects]
    # A console that closed while the statement ran (its socket ended between ``held()`` and
    # the write) may have been written back after its close deleted it, with a ``seen_at``
    # from before the close: a phantom lease that would later set its agent's timer early.
    # Its close took it from the registry first, so it is deleted again here; a close still
    # waiting on this transaction's row lock deletes it after this commit, as it should.
    closed = [connection for connection in ids if not registry.holds(connection)]
    if closed:
        await session.execute(delete(ConsoleConnection).where(ConsoleConnection.id.in_(closed)))
    return lapsed
