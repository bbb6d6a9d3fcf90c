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

Ids are strict
--------------

An id names a row, so it is taken only as what it is: a JSON integer. Lax validation would
read ``true`` as 1, ``1.0`` as 1 and ``"1"`` as 1, and a client's slip (or a probe) would
name a row nobody meant, such as customer 1. ``Id`` is an integer in strict mode: a
boolean, a float (even a whole one) or a string is a 422 naming the field. Path and query
parameters are text by nature; they keep their own integer types.

A field that takes a name or an id (a queue) is ``Annotated[Name | Id, NAME_OR_ID]``: a
string must be a valid name (``"1"`` is no name, and no longer an id either), an integer is
an id, and anything else is refused. ``NAME_OR_ID`` reports a miss as one error at the
field (``queue``), not one per alternative of the union.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Strict,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)
from pydantic_core import PydanticCustomError

MIN_BIGINT = -(2**63)
MAX_BIGINT = 2**63 - 1
NUL_MESSAGE = "Input should not contain the NUL character (\\u0000)"

Id = Annotated[int, Strict()]
"""A row's id in a request body: a JSON integer, never a boolean, a float or a string."""


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


def holds_nul(value: object) -> bool:
    """Whether a string in ``value`` (itself, or in its lists and objects, keys included)
    holds the NUL character, which PostgreSQL's text cannot store."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple):
        return any(holds_nul(item) for item in value)
    if isinstance(value, dict):
        return any(holds_nul(key) or holds_nul(item) for key, item in value.items())
    return False


class StrictModel(BaseModel):
    """A request body: no unknown fields, no integer a BIGINT cannot hold, no text with a NUL
    character."""

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

    # After validation, so that a nested body (a model by then) names its own field.
    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        if holds_nul(value):
            raise PydanticCustomError("string_nul", NUL_MESSAGE)
        return value


def _name_or_id(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Validate a ``Name | Id`` union, reporting a miss as one error at the field."""
    try:
        return handler(value)
    except ValidationError as exc:
        reasons = list(dict.fromkeys(str(error["msg"]) for error in exc.errors()))
        raise PydanticCustomError(
            "name_or_id",
            "Input should be a name (a string) or an id (an integer): {reasons}",
            {"reasons": "; or ".join(reasons)},
        ) from None


NAME_OR_ID = WrapValidator(_name_or_id)
