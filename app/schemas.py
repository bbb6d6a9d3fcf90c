"""The base of every request body: unknown fields refused, every integer storable.

Theory of operation
-------------------

Request bodies derive from ``StrictModel``. It refuses fields it does not declare (a typo
is an error, not a silently ignored value), and it refuses, field by field, any integer
outside PostgreSQL's BIGINT (-2^63 .. 2^63-1), the widest integer column: no such number
can name a row or be stored, and past it the driver raises instead of the schema, or a
float field's conversion overflows. A field with a tighter range declares it (``ge``/``le``);
this rule is the floor under all of them, so a new integer field cannot forget it.

The check runs before the field's own validation, so the error carries the field's
location (``customer.id``) whatever the field's type (an ``int``, a ``name | int`` union, a
``float``). It looks at the field's value itself, not inside lists and mappings: their
items are typed fields of nested models (checked there) or bounded item types. The OpenAPI
schema shows the same range on every integer property that declares none.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic_core import PydanticCustomError

MIN_BIGINT = -(2**63)
MAX_BIGINT = 2**63 - 1


def fits_bigint(value: object) -> bool:
    """True unless ``value`` is an integer (not a bool) outside BIGINT's range."""
    if isinstance(value, bool) or not isinstance(value, int):
        return True
    return MIN_BIGINT <= value <= MAX_BIGINT


def _integer_schemas(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The integer schemas of one property: itself, or its ``anyOf`` alternatives."""
    options = schema.get("anyOf", [schema])
    return [option for option in options if option.get("type") == "integer"]


def document_bigint_range(schema: dict[str, Any]) -> None:
    """Show BIGINT's range on the integer properties of a model's JSON schema that have
    no bounds of their own (what ``StrictModel`` enforces on them)."""
    for prop in schema.get("properties", {}).values():
        for option in _integer_schemas(prop):
            option.setdefault("minimum", MIN_BIGINT)
            option.setdefault("maximum", MAX_BIGINT)


class StrictModel(BaseModel):
    """A request body: no unknown fields, no integer a BIGINT cannot hold."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=document_bigint_range)

    @field_validator("*", mode="before")
    @classmethod
    def _storable_integer(cls, value: Any) -> Any:
        if not fits_bigint(value):
            raise PydanticCustomError(
                "int_out_of_range",
                "Input should be a whole number from {min} to {max} (a 64-bit integer)",
                {"min": MIN_BIGINT, "max": MAX_BIGINT},
            )
        return value
