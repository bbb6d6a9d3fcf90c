"""Customer bodies. Phone and ID numbers are validated and normalised on the way in."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from app.schemas import Id, StrictModel

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def language_tag(value: str) -> str:
    """``value`` if it is a language tag (BCP 47's shape), else an error saying what is."""
    if not LANGUAGE_TAG.fullmatch(value):
        raise PydanticCustomError(
            "language_tag", "should be a language tag such as zh-CN, en or yue-HK"
        )
    return value


# At most 16 characters: what the customers' and the contacts' columns hold.
Language = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=16),
    AfterValidator(language_tag),
    Field(
        description="BCP 47 tag, e.g. zh-CN, en, yue-HK",
        json_schema_extra={"pattern": LANGUAGE_TAG.pattern},
    ),
]
PHONE_DESCRIPTION = (
    "a valid number, stored in E.164: with + or 00 and its country code, or as dialled in "
    "the default region (HOTLINE_DEFAULT_PHONE_REGION, CN: mobile, or landline with its area "
    "code); a service number of that region (95561) is kept as its digits"
)
# Ids are BIGINT: a larger number cannot name an agent, and the driver would refuse it.
AgentRef = Annotated[Id, Field(ge=1, le=2**63 - 1, description="an active agent's id")]


def not_null(value: object) -> object:
    """For PATCH fields that may be left out but not cleared."""
    if value is None:
        raise ValueError("may be left out, but not set to null")
    return value


class CustomerCreate(StrictModel):
    name: Name
    phone: str | None = Field(
        default=None,
        max_length=32,
        examples=["+8613800138000", "010-6552-8888", "95561"],
        description=PHONE_DESCRIPTION,
    )
    id_number: str | None = Field(
        default=None, max_length=32, description="Chinese 18-digit resident ID number"
    )
    tier: str | None = Field(default=None, description="a configured tier; default: the lowest")
    relationship_manager_id: AgentRef | None = None
    language: Language = "zh-CN"


class CustomerUpdate(StrictModel):
    name: Name | None = None
    phone: str | None = Field(default=None, max_length=32, description=PHONE_DESCRIPTION)
    id_number: str | None = Field(default=None, max_length=32)
    tier: str | None = None
    relationship_manager_id: AgentRef | None = None
    language: Language | None = None

    _no_nulls = field_validator("name", "tier", "language", mode="before")(not_null)


class CustomerOut(BaseModel):
    id: int
    name: str
    phone: str | None = Field(description="masked for the agent role")
    id_number: str | None = Field(description="masked for the agent role")
    tier: str
    relationship_manager_id: int | None
    language: str
    created_at: datetime
    updated_at: datetime


class CustomerPage(BaseModel):
    items: list[CustomerOut]
    next_cursor: str | None
