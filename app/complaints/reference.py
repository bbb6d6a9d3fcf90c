"""Complaint references: ``C-YYYYMMDD-NNNNNN``, told to the customer at registration.

Theory of operation
-------------------

``YYYYMMDD`` is the day of registration in the centre's time zone (Asia/Shanghai: a
complaint registered at 23:30 UTC on 1 December is a 2 December complaint to everyone who
reads it). ``NNNNNN`` is the next value of one PostgreSQL sequence,
``complaint_reference_seq``, shared by every instance:

- **unique across instances**: ``nextval`` never gives two callers the same value, whatever
  instance asks and whatever transaction commits or rolls back;
- **never reused**: a sequence does not move back on rollback (a failed registration leaves
  a gap, never a second owner of a number) and the sequence is ``NO CYCLE``, so it never
  wraps; the ``complaints.reference`` unique constraint stands behind both.

The number is the sequence's value, not a count within the day: it is unique on its own and
the date is there for people. It is written with six digits at least; past 999,999 it is
simply written with more (``C-20261202-1000000``), never wrapped or truncated, so a busy day
(or year) cannot make two complaints share a reference. Parsers must accept six digits or
more.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Final
from zoneinfo import ZoneInfo

CENTRE_ZONE: Final = ZoneInfo("Asia/Shanghai")
PATTERN: Final = re.compile(r"^C-(\d{8})-(\d{6,})$")


def format_reference(day: date, number: int) -> str:
    """``C-YYYYMMDD-NNNNNN``: six digits at least, more past 999,999."""
    if number < 1:
        raise ValueError("reference numbers start at 1")
    return f"C-{day:%Y%m%d}-{number:06d}"


def registration_day(at: datetime) -> date:
    """The day a registration at ``at`` belongs to, in the centre's zone."""
    return at.astimezone(CENTRE_ZONE).date()


def is_reference(value: str) -> bool:
    """Does ``value`` have a reference's shape?"""
    return PATTERN.match(value) is not None
