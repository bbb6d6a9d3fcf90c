"""The providers' APIs, as the IVR uses them: Twilio's REST API (redirect a live call, place
a call, ask a call's status), and the JSON adapter's provider's (place a call).

Theory of operation
-------------------

The webhooks answer from the database alone; what Hotline starts itself (bridging a queued
caller the moment an agent accepts, placing a callback, asking after a call gone silent)
goes through the provider's REST API from a timer handler or a sweep, never from a request.
The ``twilio`` package builds and reads the requests (``Client.calls(sid).update_async``,
``Client.calls.create_async``, ``Client.calls(sid).fetch_async``); its transport here is
``HttpxTransport``, an asynchronous client on ``httpx`` that sends each request to
``twilio_api_base_url`` instead of ``https://api.twilio.com`` (the package fixes that host;
the setting makes a proxy or a test double reachable) and gives up after
``twilio_api_timeout_s``.

Every failure (no account configured, the provider unreachable, a timeout, a 4xx or 5xx) is
one ``ProviderFailed``: its caller records it on the call and lets the timer retry, bounded.
One refusal says more: Twilio's error 21220 ("Invalid call state for the operation": the call
is no longer in progress) to a redirect means the caller has gone, and no retry can reach
them: it is ``CallOver``, a ``ProviderFailed`` its caller may tell apart.

**The JSON adapter's provider** holds its own calls, and Hotline reaches it only to place
one (a callback): ``place_json`` posts the call's actions to ``{json_provider_url}/calls``,
signed as the provider signs its webhooks (``X-Hotline-Timestamp``, ``X-Hotline-Signature``:
HMAC-SHA256 of ``<timestamp>.<body>`` under the webhook secret), so the provider can tell
Hotline's requests from anyone's. Any answer but a 2xx, or none, is a ``ProviderFailed``.

Decisions, and why
------------------

- **httpx, not the package's own asynchronous client.** That one needs ``aiohttp``, which
  Hotline does not otherwise use; ``httpx`` already is a dependency.
- **The package's resources are imported at start**, not on the first request: that first
  import takes seconds, longer than the caller should wait for the agent.
- **One connection per request.** Calls to the provider happen a few times per call (a
  redirect, a callback or three), so a pool would buy nothing worth its lifetime management.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any, Final

import httpx
from twilio.base.exceptions import (  # type: ignore[import-untyped]
    TwilioException,
    TwilioRestException,
)
from twilio.http import AsyncHttpClient  # type: ignore[import-untyped]
from twilio.http.response import Response as TwilioResponse  # type: ignore[import-untyped]
from twilio.rest import Client  # type: ignore[import-untyped]

# The client imports its account's resources on first use, which takes seconds; imported
# here, at start, the first redirect after an answer does not pay for it.
from twilio.rest.api.v2010 import account as _account  # type: ignore[import-untyped]  # noqa: F401

from app.config import Settings
from app.ivr.signatures import JSON_SIGNATURE, JSON_TIMESTAMP, json_signature

log = logging.getLogger(__name__)
TWILIO_API: Final = "https://api.twilio.com"
CALL_EVENTS: Final = ("initiated", "ringing", "answered", "completed")
CALL_NOT_IN_PROGRESS: Final = 21220  # Twilio's "Invalid call state for the operation"


class ProviderFailed(Exception):
    """A request to the provider's REST API did not succeed (the reason, never a secret)."""


class CallOver(ProviderFailed):
    """The provider refused because the call is no longer in progress: the caller has gone."""


class HttpxTransport(AsyncHttpClient):  # type: ignore[misc]
    """The ``twilio`` client's transport: httpx, to the configured base URL."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        super().__init__(logger=log, is_async=True, timeout=timeout_s)
        self._base = base_url.rstrip("/")
        self._timeout = timeout_s

    def rebase(self, url: str) -> str:
        return self._base + url[len(TWILIO_API) :] if url.startswith(TWILIO_API) else url

    async def request(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the twilio client's interface)
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        async with httpx.AsyncClient(timeout=timeout or self._timeout) as client:
            response = await client.request(
                method,
                self.rebase(url),
                params=dict(params or {}),
                data=dict(data or {}),
                headers=dict(headers or {}),
                auth=auth,
                follow_redirects=allow_redirects,
            )
        return TwilioResponse(response.status_code, response.text, dict(response.headers))


def client_for(settings: Settings) -> Any:
    """A ``twilio`` REST client for the configured account; ``ProviderFailed`` without one."""
    sid, token = settings.twilio_account_sid, settings.twilio_auth_token
    if not sid or token is None:
        raise ProviderFailed("no Twilio account configured (twilio_account_sid, auth token)")
    transport = HttpxTransport(settings.twilio_api_base_url, settings.twilio_api_timeout_s)
    return Client(sid, token.get_secret_value(), http_client=transport)


@contextmanager
def _asking() -> Iterator[None]:
    """A request to Twilio's REST API: what the ``twilio`` package or the transport raise
    becomes ``ProviderFailed`` (a refusal the caller tells apart is caught inside)."""
    try:
        yield
    except (TwilioException, httpx.HTTPError) as exc:
        raise ProviderFailed(_reason(exc)) from exc


async def redirect(settings: Settings, call_ref: str, document: str) -> None:
    """Give the live call ``call_ref`` new TwiML now (it leaves whatever it was doing)."""
    with _asking():
        try:
            await client_for(settings).calls(call_ref).update_async(twiml=document)
        except TwilioRestException as exc:
            if exc.code == CALL_NOT_IN_PROGRESS:
                raise CallOver(_reason(exc)) from exc
            raise


# What is recorded for a call the provider says it does not know (its 404 to ``status``).
NOT_FOUND: Final = "not-found"


async def status(settings: Settings, call_ref: str) -> str | None:
    """The status the provider gives the call ``call_ref`` now (``in-progress``,
    ``completed``, ...); None when the provider knows no such call (its 404: recorded as
    ``NOT_FOUND``)."""
    with _asking():
        try:
            call = await client_for(settings).calls(call_ref).fetch_async()
        except TwilioRestException as exc:
            if exc.status == HTTPStatus.NOT_FOUND:
                return None
            raise
    found = getattr(call, "status", None)
    if not isinstance(found, str) or not found:
        raise ProviderFailed("the provider answered without the call's status")
    return found


async def place(
    settings: Settings, *, to: str, from_: str, document: str, status_callback: str, ring_s: int
) -> str:
    """Place a call to ``to`` that performs ``document`` when answered; its provider id."""
    with _asking():
        call = await client_for(settings).calls.create_async(
            to=to,
            from_=from_,
            twiml=document,
            status_callback=status_callback,
            status_callback_method="POST",
            status_callback_event=list(CALL_EVENTS),
            timeout=ring_s,
        )
    sid = getattr(call, "sid", None)
    if not isinstance(sid, str) or not sid:
        raise ProviderFailed("the provider answered without the call's sid")
    return sid


async def place_json(settings: Settings, document: Mapping[str, Any]) -> str | None:
    """Ask the JSON adapter's provider to place a call (``POST {json_provider_url}/calls``
    with ``document``, signed as its webhooks are); the placed call's id if it gave one."""
    base, secret = settings.json_provider_url, settings.webhook_secret
    if not base or secret is None:
        raise ProviderFailed("no JSON provider configured (json_provider_url, webhook secret)")
    body = json.dumps(document, ensure_ascii=False).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        JSON_TIMESTAMP: timestamp,
        JSON_SIGNATURE: json_signature(secret.get_secret_value(), timestamp, body),
    }
    try:
        async with httpx.AsyncClient(timeout=settings.json_provider_timeout_s) as client:
            response = await client.post(base.rstrip("/") + "/calls", content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise ProviderFailed(_reason(exc)) from exc
    if not response.is_success:
        raise ProviderFailed(f"the provider answered {response.status_code}")
    try:
        placed = response.json().get("call_id")
    except (ValueError, AttributeError):
        placed = None
    return placed if isinstance(placed, str) and placed else None


def _reason(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    if status is not None:
        code = getattr(exc, "code", None)
        return f"the provider answered {status}" + (f" (error {code})" if code else "")
    return f"{type(exc).__name__}: {str(exc)[:200]}"
