"""Redaction of text bound for a log: personal numbers, secrets and database values.

Theory of operation
-------------------

``redact(text)`` is applied to the *final* text a log handler writes: the formatted message,
the traceback and the stack, whatever produced them (``app.logging`` installs it on every
handler). Masking the message alone is not enough: a traceback quotes the exception's text,
and a database error quotes the statement's values. It runs four passes, each a compiled
expression, in an order where no pass can expose what an earlier one hid:

1. **Percent-encoded runs** (``%74oken=``, ``token%3D...``, ``phone=139%201234%205678``) are
   decoded and passed through the other three passes; a run that needed masking is written
   decoded and masked, any other run is left exactly as it was.
2. **Secrets**, whatever they are called: the value of any parameter, field or header whose
   name says token, password, secret, API key, credential or authorization (``name=value``,
   ``"name": "value"``, ``name: value``); ``Bearer``/``Basic`` credentials; JSON Web Tokens
   (``eyJ...``) wherever they stand; channel API keys (``hlk_...``); argon2 password hashes;
   and any run of 32 or more key characters mixing upper case, lower case and digits (a
   generated secret, an opaque token). A token of these shapes is hidden whatever names it.
3. **Values quoted by the database**: PostgreSQL repeats the offending values in its error
   details (``Key (phone)=(...) already exists``, ``Failing row contains (...)``), and
   SQLAlchemy would print a statement's parameters (``[parameters: ...]``) had an engine not
   been told to hide them. The values go; the column names stay.
4. **Personal numbers**: resident ID numbers (18 characters, also typed in groups), Chinese
   mobile numbers and landlines with an area code however they were typed (with or without
   ``+86``/``0086``, with spaces, dashes, dots or parentheses between the digits), other
   numbers in international form, and any run of 11 or more digits (15-digit ID numbers
   among them). Each is shown as the screens show it (``app.customers.identity``): first and
   last digits kept, the rest starred. Service numbers (``95561``, ``10086``) are too short
   to be anybody's and stay readable.

A telephony provider's own ids are kept whole through all four passes: Twilio's (two capital
letters and 32 hexadecimal digits: ``CA...`` a call, ``AC...`` an account) name a call, not a
person, and are no secret (the account's auth token is the secret, and it is a named one). Had
they been masked, a call could not be followed from the provider's console to these logs: a
Twilio id mixes upper case, lower case and digits like a generated secret, and its digits may
run long enough to read as a phone number. The value of a named secret is hidden even when it
has that shape.

Every expression is compiled once, at import, and the decoding pass runs only on text with a
``%`` in it. Redaction never raises: it runs on logging paths.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote

from app.customers.identity import mask_id_number, mask_phone

HIDDEN: Final = "***"

# --- 1. percent-encoded runs ------------------------------------------------------------------

_ENCODED_RUN: Final = re.compile(r"[^\s\"'<>]*%[0-9A-Fa-f]{2}[^\s\"'<>]*")
_MAX_DECODINGS: Final = 3  # ``%2574oken`` is ``%74oken`` is ``token``


def _decoded(run: str) -> str:
    for _ in range(_MAX_DECODINGS):
        plain = unquote(run)
        if plain == run:
            break
        run = plain
    return run


def _encoded_run(match: re.Match[str]) -> str:
    plain = _decoded(match[0])
    masked = _redact_plain(plain)
    return match[0] if masked == plain else masked


# --- 2. secrets -------------------------------------------------------------------------------

_SECRET_NAME: Final = (
    r"[\w-]*(?:token|passw(?:or)?d|pwd|secret|api[_-]?key|credential|authorization)[\w-]*"
)
# A value: quoted, or up to a delimiter. SQL placeholders and expressions (``$1``, ``:name``,
# ``(...)``) are not values.
_VALUE: Final = r"(?:\"[^\"]*\"|'[^']*'|(?![$(:%])[^\s&;,\"'<>)\]}]+)"
_NAMED_SECRET: Final = re.compile(
    rf"(?i)(?P<name>\b{_SECRET_NAME}(?<!error)(?<!exception)(?<!warning))(?P<sep>[\"']?\s*[:=]\s*)"
    rf"(?P<scheme>(?:bearer|basic|token|digest)\s+)?{_VALUE}"
)
_CREDENTIALS: Final = re.compile(r"(?i)\b(?P<scheme>bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}")
_JWT: Final = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)?")
_API_KEY: Final = re.compile(r"\bhlk_[A-Za-z0-9_-]+")
_PASSWORD_HASH: Final = re.compile(r"\$argon2(?:id|i|d)\$[^\s\"')]*")
_KEY_LIKE: Final = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{32,}(?![A-Za-z0-9_-])")


def _named_secret(match: re.Match[str]) -> str:
    return f"{match['name']}{match['sep']}{match['scheme'] or ''}{HIDDEN}"


def _credentials(match: re.Match[str]) -> str:
    return f"{match['scheme']} {HIDDEN}"


def _key_like(match: re.Match[str]) -> str:
    run = match[0]
    mixed = any(c.isupper() for c in run) and any(c.islower() for c in run)
    return HIDDEN if mixed and any(c.isdigit() for c in run) else run


# Words without which the case-blind expressions cannot match: looked for first, as the
# expressions themselves cannot skip ahead to a literal.
_SECRET_WORDS: Final = (
    "token",
    "passw",
    "pwd",
    "secret",
    "api_key",
    "api-key",
    "apikey",
    "credential",
    "authorization",
)
_SCHEMES: Final = ("bearer", "basic")


def mask_secrets(text: str) -> str:
    """Hide tokens, passwords, API keys and credentials in ``text``, whatever names them."""
    lowered = text.lower()
    if any(word in lowered for word in _SECRET_WORDS):
        text = _NAMED_SECRET.sub(_named_secret, text)
    if any(scheme in lowered for scheme in _SCHEMES):
        text = _CREDENTIALS.sub(_credentials, text)
    if "eyJ" in text:
        text = _JWT.sub(HIDDEN, text)
    if "hlk_" in text:
        text = _API_KEY.sub("hlk_" + HIDDEN, text)
    if "$argon2" in text:
        text = _PASSWORD_HASH.sub(HIDDEN, text)
    return _KEY_LIKE.sub(_key_like, text)


# --- 3. values quoted by the database ---------------------------------------------------------

_DATABASE_VALUES: Final = re.compile(
    r"(?P<lead>Key \((?P<columns>[^)]*)\)=\().*?(?=\) (?:already exists|is not present|"
    r"is still referenced|conflicts with))"
    r"|(?P<row>Failing row contains \().*(?=\))"
    r"|(?P<parameters>\[parameters: ).*(?=\])"
)


def _database_values(match: re.Match[str]) -> str:
    return (match["lead"] or match["row"] or match["parameters"]) + HIDDEN


_DATABASE_MARKERS: Final = ("Key (", "Failing row", "[parameters: ")


def mask_database_values(text: str) -> str:
    """Hide the values PostgreSQL and SQLAlchemy quote in their error texts."""
    if not any(marker in text for marker in _DATABASE_MARKERS):
        return text
    return _DATABASE_VALUES.sub(_database_values, text)


# --- 4. personal numbers ----------------------------------------------------------------------

# What people type between the digits of a number: spaces, dashes, parentheses (and ``+``, a
# space in a query string). Dots only between a landline's groups and in a mobile number's
# 3-4-4 grouping: a gap of dots anywhere would read a float's digits as a phone number.
_GAP: Final = r"[\s\-()+]{0,3}"
_GROUP_GAP: Final = r"[\s\-.()+]{0,3}"
_CN: Final = rf"\(?(?:\+|00)86\)?{_GAP}"
_AREA: Final = r"\(?(?:10|2\d|[3-9]\d\d)\)?"
_PERSONAL_NUMBER: Final = re.compile(
    # Resident ID numbers, whole or in groups of 6, 8 and 4.
    rf"(?P<id>(?<!\d)\d{{6}}{_GAP}\d{{4}}{_GAP}\d{{4}}{_GAP}\d{{3}}[\dXx](?!\d))"
    # Mobile numbers: 1, 3 to 9, then nine digits, a gap allowed before each.
    rf"|(?P<mobile>(?<![\d+])(?:{_CN})?\(?1[3-9](?:{_GAP}\d){{9}}(?!\d)"
    rf"|(?<![\d+.])(?:{_CN})?1[3-9]\d\.\d{{4}}\.\d{{4}}(?![\d.]))"
    # Landlines with their area code: trunk 0 or +86 before it.
    rf"|(?P<landline>(?<![\d+])(?:{_CN}|\(?0){_AREA}{_GROUP_GAP}\d{{3,4}}{_GROUP_GAP}\d{{4}}(?!\d))"
    # Any other number in international form, and any long run of digits.
    rf"|(?P<other>(?<![\w+])\+[1-9](?:{_GAP}\d){{7,14}}(?!\d)|(?<!\d)\d{{11,}}(?!\d))"
)
# A stretch of digits and gaps long enough to hold one of the numbers above (the shortest,
# ``+1`` and seven digits, has nine characters): the full expression runs only inside these.
_STRETCH: Final = re.compile(r"[\d(+][\dXx\s\-.()+]{8,}")
_NOT_DIGIT: Final = re.compile(r"[^\d]")


def _personal_number(match: re.Match[str]) -> str:
    number = match[0]
    digits = _NOT_DIGIT.sub("", number)
    if match["id"] is not None:
        return mask_id_number(digits + number[-1] if number[-1] in "Xx" else digits)
    written = number.lstrip("(")
    # An opening parenthesis the number does not close belongs to the text around it.
    opening = "" if ")" in number else number[: len(number) - len(written)]
    return opening + _masked_phone(written, digits)


def _masked_phone(written: str, digits: str) -> str:
    if written.startswith("+"):
        return mask_phone("+" + digits)
    if written.startswith("00"):  # the international prefix dialled from China
        return mask_phone("+" + digits[2:])
    return mask_phone(digits)


def mask_personal_numbers(text: str) -> str:
    """Mask ID numbers and phone numbers in ``text``, however they were typed."""
    return _STRETCH.sub(_stretch, text)


def _stretch(match: re.Match[str]) -> str:
    return _PERSONAL_NUMBER.sub(_personal_number, match[0])


# --- all of it --------------------------------------------------------------------------------


def _redact_plain(text: str) -> str:
    text = mask_secrets(text)
    text = mask_database_values(text)
    return mask_personal_numbers(text)


# A provider's id: set aside before the passes, put back after them (a pass that hid the text
# around one, a named secret's value, a database's row, hides the id with it).
_PROVIDER_ID: Final = re.compile(r"(?<![A-Za-z0-9_-])[A-Z]{2}[0-9a-f]{32}(?![A-Za-z0-9_-])")
_SET_ASIDE: Final = re.compile("\ue000([0-9]+)\ue001")


def redact(text: str) -> str:
    """``text`` with every personal number, secret and quoted database value masked."""
    ids: list[str] = []
    if "\ue000" not in text:

        def aside(match: re.Match[str]) -> str:
            ids.append(match[0])
            return f"\ue000{len(ids) - 1}\ue001"

        text = _PROVIDER_ID.sub(aside, text)
    if "%" in text:
        text = _ENCODED_RUN.sub(_encoded_run, text)
    text = _redact_plain(text)
    return _SET_ASIDE.sub(lambda match: _put_back(ids, match), text) if ids else text


def _put_back(ids: list[str], match: re.Match[str]) -> str:
    # A marker the passes did not set (one decoded from a percent-encoded run) stays as it is.
    number = int(match[1])
    return ids[number] if number < len(ids) else match[0]
