"""The events the agents domain writes to the log: names and payload shapes.

As ``app.routing.events``: producers (``service``) name events by ``AgentEventType`` and
build payloads with the keys of the ``TypedDict`` that ``PAYLOADS`` maps the name to; a test
holds every logged payload against its type.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict

_CLOSED = ConfigDict(extra="forbid")


class AgentEventType(StrEnum):
    CREATED = "agent.created"
    UPDATED = "agent.updated"
    STATUS_CHANGED = "agent.status_changed"


@with_config(_CLOSED)
class Created(TypedDict):
    username: str
    role: str
    site: str | None


@with_config(_CLOSED)
class Updated(TypedDict):
    fields: list[str]  # the names of the changed fields ("password" for a new password)


@with_config(_CLOSED)
class StatusChanged(TypedDict):
    agent_id: int
    status: str
    reason: str | None
    previous: str
    site: str | None


PAYLOADS: dict[str, type[Any]] = {
    AgentEventType.CREATED: Created,
    AgentEventType.UPDATED: Updated,
    AgentEventType.STATUS_CHANGED: StatusChanged,
}
