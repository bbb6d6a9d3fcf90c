"""Who may call the telephony webhooks: Twilio's request signature and our JSON HMAC.

Theory of operation
-------------------

**Twilio.** Twilio signs every webhook with the account's auth token: HMAC-SHA1 (or
HMAC-SHA256 when ``X-Twilio-Webhooks-Signature-Settings`` names it) over the full URL it
requested followed by the form's parameters, sorted. The URL is the one Twilio was given,
``public_base_url`` + path + query string, never the URL this process sees: behind a proxy
or a load balancer the scheme, host and port differ, and a check against them would refuse
every genuine request. ``check_twilio`` runs the ``twilio`` package's own
``RequestValidator``; a missing or wrong signature raises ``SignatureRefused`` (403) before
anything is read or written. With ``twilio_validate`` false (development only) nothing is
checked and every request logs a warning, so the setting cannot go unnoticed in production.

**Generic JSON.** A provider of our own protocol signs ``<timestamp>.<raw body>`` with
HMAC-SHA256 under ``webhook_secret`` and sends the hex digest in ``X-Hotline-Signature``
and the Unix time in seconds in ``X-Hotline-Timestamp``. ``check_json`` refuses a missing
or malformed header, a timestamp further than the replay window from ``now`` (either way:
a clock far ahead is as suspect as a stale request), and a signature that does not match,
compared in constant time. A signature seen before is refused too, but that needs the
database: the service records each accepted signature (``telephony_signatures``) in the
request's transaction.

Decisions, and why
------------------

- The signature is checked on the raw bytes received, before the body is parsed: a body
  that is not JSON is then a 422 only for a caller who holds the secret.
- No secret configured means no request passes: an unconfigured deployment refuses its
  webhooks (403, saying which setting is missing) rather than accepting anyone's.
- This module reads no clock and does no I/O: ``now`` and the secrets are passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime
from typing import Any, Final

from twilio.request_validator import (  # type: ignore[import-untyped]
    RequestValidator,
    get_signature_algorithm,
)

from app.errors import Forbidden

log = logging.getLogger(__name__)

TWILIO_SIGNATURE: Final = "X-Twilio-Signature"
TWILIO_SIGNATURE_SETTINGS: Final = "X-Twilio-Webhooks-Signature-Settings"
JSON_SIGNATURE: Final = "X-Hotline-Signature"
JSON_TIMESTAMP: Final = "X-Hotline-Timestamp"


class SignatureRefused(Forbidden):
    """The request is not signed by whom it claims (403); nothing was read or changed."""


def public_url(base_url: str, path: str, query: str) -> str:
    """The URL the provider was given for this request: the public base, path and query."""
    url = base_url.rstrip("/") + path
    return f"{url}?{query}" if query else url


def check_twilio(
    *,
    token: str | None,
    url: str,
    params: Any,  # a form (Starlette's FormData: repeated fields) or a mapping
    signature: str | None,
    settings_header: str | None = None,
) -> None:
    """Raise ``SignatureRefused`` unless ``signature`` is Twilio's for ``url`` and ``params``."""
    if token is None:
        raise SignatureRefused("Twilio webhooks are refused: no Twilio auth token is configured")
    if not signature:
        raise SignatureRefused(f"the {TWILIO_SIGNATURE} header is missing")
    algorithm = get_signature_algorithm(settings_header)
    if not RequestValidator(token).validate(url, params, signature, algorithm):
        raise SignatureRefused(f"the {TWILIO_SIGNATURE} header does not match this request")


def warn_unchecked(path: str) -> None:
    """Validation is switched off: say so at every request."""
    log.warning(
        "telephony request to %s accepted WITHOUT a signature check (twilio_validate is "
        "false: development only)",
        path,
    )


def json_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``<timestamp>.<body>`` under ``secret``."""
    message = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def check_json(
    *,
    secret: str | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: datetime,
    window_s: float,
) -> str:
    """The signature, normalised, if the request is signed and fresh; else
    ``SignatureRefused`` naming what is wrong. Whether it was seen before is the caller's
    check (it needs the database)."""
    if secret is None:
        raise SignatureRefused("JSON webhooks are refused: no webhook secret is configured")
    if not signature or not timestamp:
        raise SignatureRefused(f"the {JSON_SIGNATURE} and {JSON_TIMESTAMP} headers are required")
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        raise SignatureRefused(f"{JSON_TIMESTAMP} must be a Unix time in whole seconds")
    age = now.timestamp() - int(timestamp)
    if abs(age) > window_s:
        raise SignatureRefused(
            f"the request was signed {round(age)} s from now; only {round(window_s)} s either "
            "way are accepted (a replay?)"
        )
    expected = json_signature(secret, timestamp, body)
    given = signature.strip().lower()
    if not hmac.compare_digest(expected.encode(), given.encode("ascii", "replace")):
        raise SignatureRefused(f"the {JSON_SIGNATURE} header does not match this request")
    return given
