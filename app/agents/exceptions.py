"""Errors of the agents domain."""

from app.errors import Conflict, Forbidden, InvalidInput, NotFound, register_constraint


class AgentNotFound(NotFound):
    def __init__(self, agent_id: int) -> None:
        super().__init__(f"agent {agent_id} does not exist")


class UnknownSkill(InvalidInput):
    def __init__(self, names: list[str]) -> None:
        listed = ", ".join(repr(n) for n in names)
        super().__init__(f"unknown skill(s): {listed}; create them first", field="skills")


class SkillExists(Conflict):
    def __init__(self, name: str) -> None:
        super().__init__(f"a skill named {name!r} already exists", constraint="uq_skills_name")


class NotAllowed(Forbidden):
    pass


class StatusConflict(Conflict):
    pass


class LastAdmin(Conflict):
    def __init__(self, agent_id: int) -> None:
        super().__init__(
            f"agent {agent_id} is the last active admin: make another admin first, "
            "so the centre keeps someone who can manage it"
        )


register_constraint("uq_agents_username", "an agent with this username already exists")
register_constraint("uq_skills_name", "a skill with this name already exists")
register_constraint("ck_agent_skills_level", "skill levels run from 1 to 10")
register_constraint(
    "ck_agent_channels_load",
    "an agent's capacity cannot go below the contacts it holds now, nor be exceeded",
)
