"""An agent who stops being available has its ringing offers taken back, without the agents
domain calling routing: the status change schedules the agents domain's own ``agent.rescind``
timer in its transaction, and routing handles it (``tests/routing/test_leases.py`` follows
the offer back into the queue)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from app.agents import presence
from app.agents import service as agents
from app.timers import service as timers
from tests.fixtures.factories import Api

S = presence.Status


async def rescind_scheduled_by(
    app: FastAPI, agent_id: int, path: list[tuple[S, str | None]]
) -> bool:
    """Walk the agent through ``path`` in one transaction; whether the last step scheduled
    ``agent.rescind`` in it (read before the commit, so no timer worker has fired it)."""
    # Closing the session without a commit rolls everything back.
    async with app.state.sessionmaker() as session:
        agent = await agents.get_or_raise(session, agent_id, for_update=True)
        *before, (status, reason) = path
        for step, why in before:
            await agents.change_status(
                session, agent, status=step, reason=why, by=presence.Actor.SELF, actor=None
            )
        await timers.cancel(session, kind=agents.RESCIND, subject=agent_id)
        await agents.change_status(
            session, agent, status=status, reason=reason, by=presence.Actor.SELF, actor=None
        )
        scheduled = await timers.get(session, kind=agents.RESCIND, subject=agent_id)
    return scheduled is not None


@pytest.mark.parametrize(
    ("path", "scheduled"),
    [
        ([(S.AVAILABLE, None), (S.AWAY, "break")], True),
        ([(S.AVAILABLE, None), (S.OFFLINE, None)], True),
        ([(S.AVAILABLE, None)], False),
        ([(S.AWAY, "break"), (S.OFFLINE, None)], False),
        ([(S.AVAILABLE, None), (S.AVAILABLE, None)], False),
    ],
    ids=[
        "available-to-away",
        "available-to-offline",
        "offline-to-available",
        "away-to-offline",
        "available-again",
    ],
)
async def test_leaving_available_schedules_the_rescind_timer_in_the_same_transaction(
    api: Api, app: FastAPI, path: list[tuple[S, str | None]], scheduled: bool
) -> None:
    agent = await api.agent()
    assert await rescind_scheduled_by(app, agent["id"], path) is scheduled
