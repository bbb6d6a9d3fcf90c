"""What a person does to an agent's presence, with its access check: one function per action.

Theory of operation
-------------------

``set_status`` locks the agent, asks the access table (``agents status``: the agent
themselves, the supervisors of the agent's site, admins) and hands the change to
``service.change_status`` and the presence table behind it, in the caller's transaction. The
REST route ``POST /agents/{agent_id}/status`` and the console's websocket
(``app/realtime/actions.py``) both call it, so the two doors share the rules, the errors and,
through ``agent_out``, the body they answer with.

Decisions, and why
------------------

- A module of its own rather than more of ``service``: the service knows nothing of who asks
  (it also serves the system, which sets agents away), and the access check belongs with the
  request.
- ``agent_out`` lives here, beside the one action that answers with it, rather than in the
  router: the websocket must not import an HTTP router to present an agent.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.agents import presence, service
from app.agents.access import Action, Resource, require
from app.agents.models import Agent, Role
from app.agents.permissions import Principal, Target
from app.agents.schemas import AgentOut, SkillLevel, StatusChangeIn


async def set_status(
    session: AsyncSession, principal: Principal, *, agent_id: int, change: StatusChangeIn
) -> Agent:
    """``principal`` sets an agent's status (available, away with a reason, offline)."""
    agent = await service.get_or_raise(session, agent_id, for_update=True)
    target = target_of(agent)
    require(principal, Resource.agents, Action.status, owner_ids=(agent.id,), agent=target)
    by = presence.Actor.SELF if principal.id == agent.id else presence.Actor.SUPERVISOR
    return await service.change_status(
        session,
        agent,
        status=change.status,
        reason=change.status_reason,
        by=by,
        actor=principal.actor,
    )


def target_of(agent: Agent) -> Target:
    """The agent as the access table judges it."""
    return Target(id=agent.id, role=Role(agent.role), site=agent.site)


def agent_out(agent: Agent) -> AgentOut:
    """The agent's full record (skills and channels loaded)."""
    return AgentOut(
        id=agent.id,
        name=agent.name,
        role=Role(agent.role),
        site=agent.site,
        team=agent.team,
        status=presence.Status(agent.status),
        status_reason=agent.status_reason,
        state=presence.State(agent.state),
        username=agent.username,
        endpoint=agent.endpoint,
        active=agent.active,
        skills=[SkillLevel(skill=s.skill.name, level=s.level) for s in agent.skills],
        capacity={c.channel: c.capacity for c in agent.channels},
        status_changed_at=agent.status_changed_at,
        state_changed_at=agent.state_changed_at,
        created_at=agent.created_at,
    )
