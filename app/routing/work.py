"""An agent's routing bookkeeping: live load per channel and the derived state.

Every change goes through ``apply``: it moves the agent's work counters by the presence
table, writes ``agent.state_changed`` when the derived state moves, adjusts the channel
load that the database checks against capacity (invariant 2), and wakes the dispatcher
after the commit when the agent can take more (invariant 3).

Row locks: ``lock_agent`` (and ``contacts.lock_contact``) re-read the row under the lock,
because the session may already hold a copy read without it (the signed-in agent, the
dispatcher's snapshot) and counters computed from that copy would overwrite concurrent
changes. Timer handlers set ``NOWAIT_KEY`` on their session: a handler that waited for a row
lock would hold up the worker's claiming loop, and every timer due after it, for as long as
a request keeps the row; it leaves the row instead and is fired again a moment later
(``TryAgainSoon``, ``app.routing.handlers``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents import presence
from app.agents.models import Agent, AgentChannel
from app.db import after_commit
from app.events.log import record
from app.routing.events import AgentWorkEventType

DISPATCH_WAKE_KEY = "dispatch_wake"
NOWAIT_KEY = "routing_lock_nowait"

# How each work event moves the load of the contact's channel.
LOAD_DELTA: dict[presence.WorkEvent, int] = {
    presence.WorkEvent.OFFER_CREATED: 1,
    presence.WorkEvent.OFFER_ACCEPTED: 0,
    presence.WorkEvent.OFFER_REJECTED: -1,
    presence.WorkEvent.OFFER_EXPIRED: -1,
    presence.WorkEvent.OFFER_RESCINDED: -1,
    presence.WorkEvent.CONTACT_ENDED: -1,
    presence.WorkEvent.CONTACT_DROPPED: -1,
    presence.WorkEvent.WRAP_UP_DONE: 0,
}


def wake_dispatcher(session: AsyncSession) -> None:
    """Demand or supply changed: the dispatcher looks again after this commit."""
    wake = session.info.get(DISPATCH_WAKE_KEY)
    if wake is not None:
        after_commit(session, wake)


def for_update(session: AsyncSession) -> dict[str, Any]:
    """``FOR UPDATE`` options for this session (``NOWAIT`` in timer handlers)."""
    return {"nowait": bool(session.info.get(NOWAIT_KEY))}


async def lock_agent(session: AsyncSession, agent_id: int) -> Agent:
    """The agent row, locked and freshly read (our own pending changes flushed first)."""
    await session.flush()
    agent = await session.scalar(
        select(Agent)
        .where(Agent.id == agent_id)
        .with_for_update(**for_update(session))
        .execution_options(populate_existing=True)
    )
    assert agent is not None, f"agent {agent_id} vanished"
    return agent


def work_of(agent: Agent) -> presence.Work:
    return presence.Work(
        offers=agent.work_offers, contacts=agent.work_contacts, wrap_ups=agent.work_wrap_ups
    )


async def apply(
    session: AsyncSession,
    agent: Agent,
    event: presence.WorkEvent,
    *,
    channel: str,
    now: datetime,
    contact_id: int | None = None,
) -> None:
    """Record one work event for a locked agent."""
    work = presence.apply_work(work_of(agent), event)
    agent.work_offers, agent.work_contacts, agent.work_wrap_ups = (
        work.offers,
        work.contacts,
        work.wrap_ups,
    )
    delta = LOAD_DELTA[event]
    if delta:
        await session.execute(
            update(AgentChannel)
            .where(AgentChannel.agent_id == agent.id, AgentChannel.channel == channel)
            .values(load=AgentChannel.load + delta)
        )
    if delta < 0 or event is presence.WorkEvent.WRAP_UP_DONE:
        wake_dispatcher(session)  # capacity freed: a waiting contact may fit now
    set_state(session, agent, presence.derive_state(work), now=now, contact_id=contact_id)


def set_state(
    session: AsyncSession,
    agent: Agent,
    state: presence.State,
    *,
    now: datetime,
    contact_id: int | None = None,
) -> None:
    previous = agent.state
    if state.value == previous:
        return
    agent.state, agent.state_changed_at = state.value, now
    if state is presence.State.IDLE:
        agent.idle_since = now
    record(session, **state_event(agent.id, state.value, previous, contact_id))


def state_event(agent_id: int, state: str, previous: str, contact_id: int | None) -> dict[str, Any]:
    """The ``agent.state_changed`` event, as ``record`` takes it."""
    return {
        "type": AgentWorkEventType.STATE_CHANGED,
        "subject_type": "agent",
        "subject_id": agent_id,
        "data": {
            "agent_id": agent_id,
            "state": state,
            "previous": previous,
            "contact_id": contact_id,
        },
        "actor": "system",
    }
