"""The ``agent.console_gone`` timer: an agent whose consoles are all gone becomes away.

Theory of operation: ``app/agents/consoles.py`` sets the timer ``console_grace_s`` after an
agent's console closed or its instance stopped. When it fires, the handler locks the agent
(``NOWAIT``, like every routing timer, see ``handlers``) and then looks for an open console.
Opening a console checks the agent row's key (the foreign key) and so waits for that lock, or
makes the handler try again a moment later: a console opened before the handler looked is
always seen, and one opened after finds the agent already away. An agent who is not available
(away, offline, deactivated) is left alone; an available one becomes away with reason
``disconnected``, set by the system, and its ringing offers are taken back (the agents
domain schedules that with the status change: ``agents.service.RESCIND``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.agents import consoles, presence
from app.agents import service as agents
from app.routing import work
from app.routing.handlers import without_waiting
from app.timers.worker import TimerRegistry


async def console_gone(session: AsyncSession, agent_id: int, now: datetime) -> bool:
    """Make the agent away if it is available with no console open; whether it did."""
    agent = await work.lock_agent(session, agent_id)
    if agent.status != presence.Status.AVAILABLE.value or not agent.active:
        return False
    if await consoles.has_open_console(session, agent_id):
        return False
    await agents.set_away_by_system(session, agent, reason=presence.DISCONNECTED_REASON)
    return True


def register(registry: TimerRegistry) -> None:
    registry.register(consoles.CONSOLE_GONE, without_waiting(console_gone))
