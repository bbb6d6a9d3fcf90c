"""The principal, the agent acted on, and the rules of managing people that the access table
(``app.agents.access``) builds on. Pure; the dependencies and services enforce them.

- An admin may do everything.
- A supervisor manages the agents (role ``agent``) of their own site, and themselves.
- An agent manages nothing but their own status, name and password, and sees only the
  public view of other agents.
- A channel's service account (role ``integration``, an API key) is not a person: it
  creates contacts (and later complaints) and reports that a customer left, and nothing
  else. Its id is an API key's id, not an agent's, so a rule that compares a principal's id
  with an agent's must first know the principal is a person (``is_person``). No one may
  give a person the ``integration`` role.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.agents.models import PERSON_ROLES, Role


@dataclass(frozen=True, slots=True)
class Principal:
    """The signed-in user making a request."""

    id: int
    username: str
    role: Role
    site: str | None

    @property
    def actor(self) -> str:
        """How the event log names the principal: ``agent:<id>`` or ``integration:<id>``."""
        kind = "integration" if self.role is Role.integration else "agent"
        return f"{kind}:{self.id}"


@dataclass(frozen=True, slots=True)
class Target:
    """The agent a request acts on."""

    id: int
    role: Role
    site: str | None


def can_manage(principal: Principal, target: Target) -> bool:
    """May ``principal`` change ``target``'s skills, capacity, site or status?"""
    if principal.role is Role.admin:
        return True
    if principal.role is Role.supervisor:
        same_site = principal.site is not None and principal.site == target.site
        return target.id == principal.id or (target.role is Role.agent and same_site)
    return False


def can_create(principal: Principal, *, role: Role, site: str | None) -> bool:
    """May ``principal`` create a user with this role at this site?"""
    return role in PERSON_ROLES and can_manage(principal, Target(id=-1, role=role, site=site))


def can_grant(principal: Principal, role: Role) -> bool:
    """Only an admin hands out supervisor or admin roles; no one makes a person a channel."""
    if role not in PERSON_ROLES:
        return False
    return principal.role is Role.admin or role is Role.agent


def is_person(principal: Principal) -> bool:
    """A signed-in agent, supervisor or admin (an agent's row), not a channel's API key."""
    return principal.role in PERSON_ROLES
