"""Checks on values a caller keys in: a PRC resident ID, a complaint reference.

Theory of operation
-------------------

``validate(validator, keys, today=...)`` returns the value in its written form, or raises
``InvalidValue`` with a short reason (for the transcript, never read to the caller: the
caller hears the node's re-prompt). The flow names the validator a collect node applies
(``Validator``); the machine maps ``*`` to ``X`` before validating when the node says so.

**Resident ID (GB 11643-1999).** Eighteen characters: a six-digit address code whose first
two digits name a province-level region, the birth date ``YYYYMMDD``, a three-digit
sequence and a check character. The check character is ISO 7064 MOD 11-2 over the first
seventeen digits: weights ``2^(17-i) mod 11``, and the sum modulo 11 indexes ``10X98765432``.
An ``X`` is valid only as that check character. The birth date must be a real date, from
1900 on, and not after ``today``: a typo in the year is as likely as one in the check digit.

**Complaint reference** (``C-YYYYMMDD-NNNNNN``, ``app.complaints.reference``). A phone has
no letters or dashes, so the caller keys the digits only: the eight of the date and then the
number's (six, or more once numbers pass 999,999), finished with ``#`` or by waiting. The
date must be real and not after ``today``; the number is at least six digits, written with
leading zeros only up to six, and not zero.

Decisions, and why
------------------

- **Pure and local.** No region database: the province list is short and stable; finer
  address codes change with every redistricting and would reject real IDs.
- **One reason per failure**, for the call's transcript and for tests, not for the caller.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Final, Protocol

__all__ = [
    "InvalidValue",
    "Validator",
    "cn_resident_id",
    "complaint_reference",
    "resident_id_check",
    "validate",
]

_WEIGHTS: Final = tuple(2 ** (17 - i) % 11 for i in range(17))
_CHECK_CHARS: Final = "10X98765432"
# Province-level codes of GB/T 2260, plus 83 (residence permits of Taiwan residents) and 91
# (permanent residence permits of foreigners), both issued in the same 18-character form.
_REGIONS: Final = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83, 91}
)
_EARLIEST_BIRTH: Final = date(1900, 1, 1)
_EARLIEST_REFERENCE: Final = date(2000, 1, 1)


class Validator(StrEnum):
    """Checks a collected value may have to pass."""

    CN_RESIDENT_ID = "cn_resident_id"
    COMPLAINT_REFERENCE = "complaint_reference"


class InvalidValue(ValueError):
    """A keyed value that fails its check; the message is the reason."""


def resident_id_check(first17: str) -> str:
    """The check character (``0-9`` or ``X``) of a resident ID's first seventeen digits."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise InvalidValue("seventeen digits are needed")
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def _date(digits: str) -> date | None:
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def cn_resident_id(keys: str, *, today: date) -> str:
    """The resident ID ``keys`` spell (``x`` taken as ``X``), or ``InvalidValue``."""
    value = keys.upper()
    body, check = value[:17], value[17:]
    if len(value) != 18 or not body.isascii() or not body.isdigit() or check not in _CHECK_CHARS:
        raise InvalidValue("eighteen characters: seventeen digits, then a digit or X")
    if int(body[:2]) not in _REGIONS:
        raise InvalidValue("unknown region code")
    born = _date(body[6:14])
    if born is None or not _EARLIEST_BIRTH <= born <= today:
        raise InvalidValue("implausible birth date")
    if resident_id_check(body) != check:
        raise InvalidValue("wrong check character")
    return value


def complaint_reference(keys: str, *, today: date) -> str:
    """The reference ``C-YYYYMMDD-NNNNNN`` whose digits ``keys`` are, or ``InvalidValue``."""
    day, number = keys[:8], keys[8:]
    if not keys.isascii() or not keys.isdigit() or len(number) < 6:
        raise InvalidValue("the date's eight digits, then the number's six or more")
    if len(number) > 6 and number.startswith("0"):
        raise InvalidValue("a number past six digits has no leading zero")
    if int(number) == 0:
        raise InvalidValue("reference numbers start at 1")
    registered = _date(day)
    if registered is None or not _EARLIEST_REFERENCE <= registered <= today:
        raise InvalidValue("implausible registration date")
    return f"C-{day}-{number}"


def validate(validator: Validator, keys: str, *, today: date) -> str:
    """Apply ``validator`` to ``keys``: the value's written form, or ``InvalidValue``."""
    return _CHECKS[validator](keys, today=today)


class _Check(Protocol):
    def __call__(self, keys: str, *, today: date) -> str: ...


_CHECKS: Final[dict[Validator, _Check]] = {
    Validator.CN_RESIDENT_ID: cn_resident_id,
    Validator.COMPLAINT_REFERENCE: complaint_reference,
}
