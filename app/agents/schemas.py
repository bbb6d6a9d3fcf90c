"""Request and response bodies for auth, skills and agents.

An agent's ``endpoint`` is where the IVR bridges a voice contact with a TwiML ``<Dial>``
(``app.ivr.twiml.bridge``), so it takes only the three forms that dials: a SIP URI
(``sip:1001@pbx.example.com``, with an optional port, ``;parameters`` and ``?headers``), a
Twilio Client name (``client:alice``: letters, digits, ``_``, ``.`` and ``-``, as usernames
are), or a phone number in E.164 (``+8613800138000``). Any other scheme (``javascript:``,
``sips:``, ``tel:``), ``sip:`` or ``client:`` with nothing after it, a number with spaces and
any whitespace or control character are a 422 naming ``endpoint``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from app.agents.models import Role
from app.agents.presence import State, Status
from app.channels import Channel
from app.schemas import StrictModel

SkillName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[a-z][a-z0-9_]{0,63}$"),
    Field(description="lower-case letters, digits and underscores, starting with a letter"),
]
Username = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_.\-]{3,64}$")
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Level = Annotated[int, Field(ge=1, le=10, description="proficiency, 1 (novice) to 10 (expert)")]
Capacity = Annotated[int, Field(ge=0, le=100)]
MAX_ID = 2**63 - 1  # ids are BIGINT; a larger number cannot name anything

# The forms ``app.ivr.twiml.bridge`` dials, matched whole.
_TOKEN = r"[A-Za-z0-9._~%+\-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
_SIP_URI = (
    r"sip:(?:[A-Za-z0-9._~!$&'()*+,=%\-]+@)?"  # the user, if any
    rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])"  # the host: a name, an address, [IPv6]
    r"(?::[0-9]{1,5})?"  # the port
    rf"(?:;{_TOKEN}(?:={_TOKEN})?)*"  # parameters: ;transport=tcp
    rf"(?:\?{_TOKEN}={_TOKEN}(?:&{_TOKEN}={_TOKEN})*)?"  # headers: ?x-customer=1&x-tier=gold
)
_CLIENT = r"client:[A-Za-z0-9_.\-]+"
_E164 = r"\+[1-9][0-9]{1,14}"
_ENDPOINT = re.compile(rf"{_SIP_URI}|{_CLIENT}|{_E164}")
ENDPOINT_DESCRIPTION = (
    "where a voice contact is bridged (a TwiML <Dial>): a SIP URI (sip:1001@pbx.example.com), "
    "a Twilio Client name (client:alice: letters, digits, _ . -) or a phone number in E.164 "
    "(+8613800138000); no other scheme, no spaces"
)


def _dialable(value: str) -> str:
    if not _ENDPOINT.fullmatch(value):
        raise PydanticCustomError(
            "endpoint",
            "Input should be a SIP URI (sip:1001@pbx.example.com), a Twilio Client name "
            "(client:alice) or a phone number in E.164 (+8613800138000), without spaces",
        )
    return value


Endpoint = Annotated[
    str,
    StringConstraints(max_length=255),
    AfterValidator(_dialable),
    Field(examples=["sip:1001@pbx.example.com", "client:alice", "+8613800138000"]),
]


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="seconds until the token expires")


class SkillCreate(StrictModel):
    name: SkillName
    description: Annotated[str, StringConstraints(max_length=500)] | None = None


class SkillOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None


class SkillLevel(StrictModel):
    skill: SkillName
    level: Level


def _unique_skills(value: list[SkillLevel] | None) -> list[SkillLevel] | None:
    if value is None:
        return None
    seen: set[str] = set()
    for item in value:
        if item.skill in seen:
            raise ValueError(f"skill {item.skill!r} is listed more than once")
        seen.add(item.skill)
    return value


def person_role(value: Role | None) -> Role | None:
    """A person's role: ``integration`` belongs to the channels' API keys only."""
    if value is Role.integration:
        raise ValueError("integration is the role of channels' API keys (POST /api/v1/api-keys)")
    return value


class AgentCreate(StrictModel):
    name: Name
    username: Username
    password: Password
    role: Role = Role.agent
    skills: list[SkillLevel] = Field(default_factory=list)
    capacity: dict[Channel, Capacity] = Field(
        default_factory=lambda: {Channel.voice: 1},
        description="contacts the agent can hold at once, per channel",
    )
    site: Label | None = None
    team: Label | None = None
    endpoint: Endpoint | None = Field(default=None, description=ENDPOINT_DESCRIPTION)

    _check_skills = field_validator("skills")(_unique_skills)
    _person_role = field_validator("role")(person_role)


def not_null(value: object) -> object:
    """For PATCH fields that may be left out but not cleared."""
    if value is None:
        raise ValueError("may be left out, but not set to null")
    return value


class AgentUpdate(StrictModel):
    name: Name | None = None
    password: Password | None = None
    role: Role | None = None
    skills: list[SkillLevel] | None = None
    capacity: dict[Channel, Capacity] | None = None
    site: Label | None = None
    team: Label | None = None
    endpoint: Endpoint | None = Field(
        default=None, description=f"{ENDPOINT_DESCRIPTION}; null: none"
    )
    active: bool | None = None

    _check_skills = field_validator("skills")(_unique_skills)
    _person_role = field_validator("role")(person_role)
    _no_nulls = field_validator(
        "name", "password", "role", "skills", "capacity", "active", mode="before"
    )(not_null)


class AgentPublic(BaseModel):
    """What any signed-in user may see of a colleague."""

    id: int
    name: str
    role: Role
    site: str | None
    team: str | None
    status: Status
    status_reason: str | None
    state: State


class AgentOut(AgentPublic):
    """The full record, for the agent themselves, their supervisor and admins."""

    username: str
    endpoint: str | None
    active: bool
    skills: list[SkillLevel]
    capacity: dict[str, int]
    status_changed_at: datetime
    state_changed_at: datetime
    created_at: datetime


class StatusChangeIn(StrictModel):
    status: Status
    status_reason: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None
    ) = Field(
        default=None, description="why the agent is away (only with `away`), as agents show it"
    )

    @model_validator(mode="before")
    @classmethod
    def _former_name(cls, data: Any) -> Any:
        """``reason``, the field's first name, is still read (not both at once)."""
        if isinstance(data, dict) and "reason" in data and "status_reason" not in data:
            data = {k: v for k, v in data.items() if k != "reason"} | {
                "status_reason": data["reason"]
            }
        return data


class SkillPage(BaseModel):
    items: list[SkillOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class AgentPage(BaseModel):
    items: list[AgentOut | AgentPublic]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class AgentLive(BaseModel):
    """An agent as its console's snapshot shows it."""

    id: int
    username: str
    name: str
    role: Role
    status: Status
    status_reason: str | None = Field(description="why the agent is away, if given")
    state: State


class AgentCounts(BaseModel):
    """The agents who take contacts, counted by chosen status and by system state."""

    by_status: dict[str, int]
    by_state: dict[str, int]
