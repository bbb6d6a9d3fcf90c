"""Keyset pagination helpers: ``limit`` and an opaque ``cursor``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from app.errors import InvalidInput

Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
PageCursor = Annotated[
    str | None, Query(description="the `next_cursor` of the previous page", max_length=40)
]


def is_number(value: str) -> bool:
    """ASCII digits only: ``"²".isdigit()`` is true, but ``int("²")`` raises."""
    return value.isascii() and value.isdigit()


def decode_id_cursor(cursor: str | None) -> int:
    """The id after which the next page starts."""
    if cursor is None:
        return 0
    if not is_number(cursor):
        raise InvalidInput(f"cursor {cursor!r} is not valid", field="cursor")
    return int(cursor)


def next_id_cursor(ids: list[int], limit: int) -> str | None:
    return str(ids[-1]) if len(ids) == limit else None
