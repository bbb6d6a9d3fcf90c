"""An agent's routing bookkeeping: live load per channel and the derived state.

Every change goes through ``apply``: it moves the agent's work counters by the presence
table, writes ``agent.state_changed`` when the derived state moves, and adjusts the channel
load that the database checks against capacity (invariant 2).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents import presence
from app.agents.models import Agent, AgentChannel
from app.events.log import record

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


async def lock_agent(session: AsyncSession, agent_id: int) -> Agent:
    agent = await session.scalar(select(Agent).where(Agent.id == agent_id).with_for_update())
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
    record(
        session,
        type="agent.state_changed",
        subject_type="agent",
        subject_id=agent.id,
        data={
            "agent_id": agent.id,
            "state": state.value,
            "previous": previous,
            "contact_id": contact_id,
        },
        actor="system",
    )
