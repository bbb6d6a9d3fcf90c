"""Customer identifiers: resident ID numbers and phone numbers, validated and masked.

Theory of operation
-------------------

**Resident identity numbers** (GB 11643-1999) are 18 characters::

    PP CCDD YYYYMMDD SSS K
    |  |    |        |   +-- check character, ISO 7064 MOD 11-2 over the first 17 digits
    |  |    |        +------ sequence number (odd for men, even for women; not checked)
    |  |    +--------------- birth date, 1900-01-01 .. today
    |  +-------------------- prefecture and county (not checked: the code list changes)
    +----------------------- province code, one of ``_PROVINCES``

``validate_resident_id`` checks, in this order, length, characters, province, birth date and
check character, and raises ``InvalidIdNumber`` for the first failure with a ``problem`` saying
which. The module reads no clock, so ``today`` is an argument. Surrounding whitespace is
stripped, full-width characters (as typed with a Chinese IME) are folded to ASCII and a
lower-case check ``x`` is upper-cased. Error messages never reveal the expected check
character: that would turn the API into a check-digit oracle.

**Phone numbers** are stored in one canonical form so that a lookup by phone finds the
customer however the number was typed. ``normalise_phone`` folds full-width characters and
removes whitespace, dashes, dots and parentheses; what is left must be digits, with at most
a leading ``+``. The ``phonenumbers`` library (Google's libphonenumber metadata) then reads
it in a default region (a setting, ``CN`` unless configured): ``+86``, the international
prefix dialled from that region (``00`` from China), the country code without either and the
trunk prefix ``0`` of an area code are all understood, so ``010-6552-8888``,
``+86 10 6552 8888`` and ``0086 10 6552 8888`` are one number, ``+861065528888`` (E.164).
A number must be *valid*, not just of a plausible length: ``12345678901`` has a mobile's
length but no Chinese mobile starts with 12, and an eight-digit landline without its area
code could be in any city; both are refused with a ``PhoneProblem`` saying why.

Service numbers (bank hotlines such as 95561, carriers' 10086, the emergency numbers) have
no E.164 form: they are dialled bare and mean something only inside their country. A number
typed without ``+`` that is not a valid full number but is a valid short number of the
default region is kept as its bare digits.

**Masking.** Customer data is confidential, so screens and logs show masked values:
``mask_id_number`` keeps the first 6 and last 4 characters, ``mask_phone`` keeps ``+`` and the
country code, then the first 3 and last 4 digits (only the last 2 for numbers shorter than 8
digits). ``mask_text`` finds ID- and phone-shaped runs of digits inside free text, and
``SensitiveDataFilter`` applies it to every log record that passes through a handler. Masking
never raises: it is used on display and logging paths.
"""

from __future__ import annotations

import functools
import logging
import re
from datetime import date
from enum import StrEnum
from typing import Final

import phonenumbers
from phonenumbers import (
    NumberParseException,
    PhoneNumber,
    PhoneNumberFormat,
    ValidationResult,
    shortnumberinfo,
)

__all__ = [
    "DEFAULT_PHONE_REGION",
    "CustomerDataError",
    "IdNumberProblem",
    "InvalidIdNumber",
    "InvalidPhone",
    "PhoneProblem",
    "SensitiveDataFilter",
    "birth_date_of",
    "mask_id_number",
    "mask_phone",
    "mask_text",
    "normalise_phone",
    "validate_resident_id",
]

ID_LENGTH: Final = 18
EARLIEST_BIRTH_DATE: Final = date(1900, 1, 1)

_DIGITS: Final = frozenset("0123456789")
_CHECK_CHARACTERS: Final = frozenset("0123456789Xx")
_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_BY_REMAINDER: Final = "10X98765432"

# fmt: off
_PROVINCES: Final = frozenset({
    "11", "12", "13", "14", "15",
    "21", "22", "23",
    "31", "32", "33", "34", "35", "36", "37",
    "41", "42", "43", "44", "45", "46",
    "50", "51", "52", "53", "54",
    "61", "62", "63", "64", "65",
    "71",
    "81", "82", "83",
    "91",
})
# fmt: on

# Full-width ASCII (U+FF01..U+FF5E) -> ASCII; the ideographic space is whitespace already.
_FULL_WIDTH: Final = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}

DEFAULT_PHONE_REGION: Final = "CN"
_PHONE_SEPARATORS: Final = frozenset("-.()")

# E.164 country codes are prefix-free: these are the one- and two-digit ones, every other
# code has three digits.
_ONE_DIGIT_COUNTRY_CODES: Final = frozenset({"1", "7"})
# fmt: off
_TWO_DIGIT_COUNTRY_CODES: Final = frozenset({
    "20", "27",
    "30", "31", "32", "33", "34", "36", "39",
    "40", "41", "43", "44", "45", "46", "47", "48", "49",
    "51", "52", "53", "54", "55", "56", "57", "58",
    "60", "61", "62", "63", "64", "65", "66",
    "81", "82", "84", "86",
    "90", "91", "92", "93", "94", "95", "98",
})
# fmt: on
_SHORT_NUMBER: Final = 8

_SENSITIVE_RUN: Final = re.compile(
    r"(?P<id>(?<![0-9])[0-9]{17}[0-9Xx](?![0-9]))"
    r"|(?P<phone>(?<![0-9])\+?[0-9]{11,}(?![0-9]))"
)


class IdNumberProblem(StrEnum):
    """What is wrong with a resident ID number."""

    LENGTH = "length"
    CHARACTERS = "characters"
    PROVINCE = "province"
    BIRTH_DATE = "birth_date"
    CHECK_CHARACTER = "check_character"


class PhoneProblem(StrEnum):
    """What is wrong with a phone number."""

    EMPTY = "empty"
    CHARACTERS = "characters"
    LENGTH = "length"
    COUNTRY_CODE = "country_code"
    NUMBER = "number"  # a plausible length, but no such number is in use


class CustomerDataError(ValueError):
    """Base of the customer-data errors (a ValueError, so pydantic validators may raise it)."""


class InvalidIdNumber(CustomerDataError):
    """A resident ID number that fails validation; ``problem`` says which check."""

    def __init__(self, problem: IdNumberProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


class InvalidPhone(CustomerDataError):
    """A phone number that cannot be normalised; ``problem`` says why."""

    def __init__(self, problem: PhoneProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


# ---------------------------------------------------------------------------------------------
# Resident ID numbers


def validate_resident_id(value: str, *, today: date) -> str:
    """The normalised ID number (upper-case X), or ``InvalidIdNumber`` naming the problem."""
    number = _shape(value)
    if number[:2] not in _PROVINCES:
        raise InvalidIdNumber(
            IdNumberProblem.PROVINCE,
            f"ID number starts with {number[:2]}, which is not a valid province code",
        )
    _check_birth_date(_parse_birth_date(number), today)
    if _check_character(number[:17]) != number[17]:
        raise InvalidIdNumber(
            IdNumberProblem.CHECK_CHARACTER,
            "ID number check character (the last one) does not match the first 17 digits",
        )
    return number


def birth_date_of(id_number: str) -> date:
    """The birth date encoded in an 18-character ID number (characters 7 to 14)."""
    return _parse_birth_date(_shape(id_number))


def _shape(value: str) -> str:
    """Strip, fold and check length and characters; upper-case the check character."""
    number = value.translate(_FULL_WIDTH).strip()
    if len(number) != ID_LENGTH:
        raise InvalidIdNumber(
            IdNumberProblem.LENGTH,
            f"ID number must be {ID_LENGTH} characters, got {len(number)}",
        )
    for position, char in enumerate(number[:17], start=1):
        if char not in _DIGITS:
            raise InvalidIdNumber(
                IdNumberProblem.CHARACTERS,
                f"ID number character {position} must be a digit",
            )
    if number[17] not in _CHECK_CHARACTERS:
        raise InvalidIdNumber(
            IdNumberProblem.CHARACTERS,
            "ID number character 18 must be a digit or X",
        )
    return number[:17] + number[17].upper()


def _parse_birth_date(number: str) -> date:
    digits = number[6:14]
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        raise InvalidIdNumber(
            IdNumberProblem.BIRTH_DATE,
            f"ID number birth date {digits} is not a valid date",
        ) from None


def _check_birth_date(born: date, today: date) -> None:
    if born < EARLIEST_BIRTH_DATE:
        raise InvalidIdNumber(
            IdNumberProblem.BIRTH_DATE,
            f"ID number birth date {born} is before {EARLIEST_BIRTH_DATE}",
        )
    if born > today:
        raise InvalidIdNumber(
            IdNumberProblem.BIRTH_DATE,
            f"ID number birth date {born} is in the future (today is {today})",
        )


def _check_character(first17: str) -> str:
    total = sum(int(digit) * weight for digit, weight in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_BY_REMAINDER[total % 11]


# ---------------------------------------------------------------------------------------------
# Phone numbers


def normalise_phone(value: str, *, region: str = DEFAULT_PHONE_REGION) -> str:
    """The number in E.164 (``+8613812345678``), a service number of ``region`` as its bare
    digits (``95561``), or ``InvalidPhone`` naming the problem."""
    if len(value) > _REMEMBERED_LENGTH:
        return _normalise_phone(value, region)
    answer = _remembered(value, region)
    if isinstance(answer, str):
        return answer
    raise InvalidPhone(*answer)


# A number read once is read again soon: every webhook of a call carries the caller's and
# the called number. Reading one takes tens of microseconds; these answers are remembered.
_REMEMBERED_LENGTH: Final = 64  # longer values are no phone number worth remembering
_REMEMBERED: Final = 4096


@functools.lru_cache(maxsize=_REMEMBERED)
def _remembered(value: str, region: str) -> str | tuple[PhoneProblem, str]:
    """``_normalise_phone``'s answer: the number, or the problem and the message (an
    exception itself is not kept: it would keep its traceback)."""
    try:
        return _normalise_phone(value, region)
    except InvalidPhone as exc:
        return exc.problem, str(exc)


def _normalise_phone(value: str, region: str) -> str:
    compact = _compact_phone(value)
    number = _parse_phone(compact, region)
    if phonenumbers.is_valid_number(number):
        return phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if not compact.startswith("+") and shortnumberinfo.is_valid_short_number_for_region(
        number, region
    ):
        return compact
    raise _invalid_phone(number)


def _compact_phone(value: str) -> str:
    """The digits and leading ``+`` of ``value``, with the separators people type removed."""
    compact = "".join(
        char
        for char in value.translate(_FULL_WIDTH)
        if not char.isspace() and char not in _PHONE_SEPARATORS
    )
    if not compact:
        raise InvalidPhone(PhoneProblem.EMPTY, "phone number is empty")
    # phonenumbers would read letters as a keypad's (1-800-FLOWERS) and drop an extension.
    if not set(compact.removeprefix("+")) <= _DIGITS:
        raise InvalidPhone(
            PhoneProblem.CHARACTERS,
            "phone number may contain only digits, a leading +, spaces, dashes, dots "
            "and parentheses",
        )
    return compact


# Why phonenumbers could not read a number at all.
_UNREADABLE: Final = {
    NumberParseException.INVALID_COUNTRY_CODE: (
        PhoneProblem.COUNTRY_CODE,
        "phone number after + or 00 must start with a country code in use",
    ),
    NumberParseException.TOO_LONG: (PhoneProblem.LENGTH, "phone number has too many digits"),
}
_TOO_FEW_DIGITS: Final = (PhoneProblem.LENGTH, "phone number has too few digits")


def _parse_phone(compact: str, region: str) -> PhoneNumber:
    try:
        return phonenumbers.parse(compact, region)
    except NumberParseException as exc:
        raise InvalidPhone(*_UNREADABLE.get(exc.error_type, _TOO_FEW_DIGITS)) from None


# Why a number that phonenumbers could read is not a valid one; ``{country}`` is its code.
_IMPOSSIBLE: Final = {
    ValidationResult.INVALID_COUNTRY_CODE: (
        PhoneProblem.COUNTRY_CODE,
        "phone number's country code {country} is not in use",
    ),
    ValidationResult.TOO_SHORT: (PhoneProblem.LENGTH, "phone number is too short for {country}"),
    ValidationResult.TOO_LONG: (PhoneProblem.LENGTH, "phone number is too long for {country}"),
    ValidationResult.INVALID_LENGTH: (
        PhoneProblem.LENGTH,
        "phone number has a length no {country} number has",
    ),
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: (
        PhoneProblem.LENGTH,
        "phone number is a local number: give its area code",
    ),
}
# A possible length, but in no range in use (12345678901: no Chinese mobile starts with 12).
_NOT_IN_USE: Final = (
    PhoneProblem.NUMBER,
    "phone number is not a valid {country} number (a landline needs its area code)",
)


def _invalid_phone(number: PhoneNumber) -> InvalidPhone:
    reason = phonenumbers.is_possible_number_with_reason(number)
    problem, message = _IMPOSSIBLE.get(reason, _NOT_IN_USE)
    return InvalidPhone(problem, message.format(country=f"+{number.country_code}"))


# ---------------------------------------------------------------------------------------------
# Masking


def mask_id_number(v: str) -> str:
    """Keep the first 6 and last 4 characters; mask everything if it is that short."""
    if len(v) <= 10:
        return "*" * len(v)
    return v[:6] + "*" * (len(v) - 10) + v[-4:]


def mask_phone(v: str) -> str:
    """Keep ``+`` and the country code, then the first 3 and last 4 digits of the rest."""
    prefix, rest = _split_country_code(v)
    if len(rest) >= _SHORT_NUMBER:
        return prefix + rest[:3] + "*" * (len(rest) - 7) + rest[-4:]
    if len(rest) > 2:
        return prefix + "*" * (len(rest) - 2) + rest[-2:]
    return prefix + "*" * len(rest)


def _split_country_code(v: str) -> tuple[str, str]:
    if not v.startswith("+"):
        return "", v
    if v[1:2] in _ONE_DIGIT_COUNTRY_CODES:
        size = 1
    elif v[1:3] in _TWO_DIGIT_COUNTRY_CODES:
        size = 2
    else:
        size = 3
    return v[: 1 + size], v[1 + size :]


def mask_text(text: str) -> str:
    """Mask every ID-number-shaped and phone-number-shaped run of digits in ``text``."""
    return _SENSITIVE_RUN.sub(_mask_match, text)


def _mask_match(match: re.Match[str]) -> str:
    if match["id"] is not None:
        return mask_id_number(match["id"])
    return mask_phone(match["phone"])


class SensitiveDataFilter(logging.Filter):
    """Mask ID and phone numbers in log records; attach it to handlers."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the message by its masked, formatted form; never drops a record."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            # A broken format string must not leak its arguments unmasked.
            message = f"{record.msg} {record.args!r}"
        record.msg = mask_text(message)
        record.args = ()
        return True


class SensitiveArgsFilter(logging.Filter):
    """Mask ID and phone numbers argument by argument, keeping the arguments' shape: for
    handlers whose formatter reads ``record.args`` itself (uvicorn's access log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the message and each text argument; never drops a record."""
        if isinstance(record.msg, str):
            record.msg = mask_text(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(mask_text(a) if isinstance(a, str) else a for a in record.args)
        return True
