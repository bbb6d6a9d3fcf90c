"""How a message leaves Hotline: one ``Sender`` interface, an adapter per provider.

Theory of operation
-------------------

A ``Sender`` takes a ``Message`` and either returns the provider's id for it
(``SendResult``) or raises ``SendFailed``, saying whether trying again could help: a
timeout, a lost connection, a 5xx, 408 or 429 could; any other answer (a 4xx: a malformed
number, a refused address, a bad key) would only be refused again. The outbox decides what
to do about it (``app.notifications.outbox``); a sender only reports.

The HTTP adapters speak a generic JSON gateway: ``POST`` the message to the configured URL
with ``Authorization: Bearer <key>``, read ``{"id": ...}`` (or ``message_id``) from a 2xx
answer. Each request carries the outbox row's id as ``Idempotency-Key`` and ``reference``,
so a gateway that deduplicates drops the second copy of a message whose first send
succeeded but was never recorded (the sender died between the two). E-mail goes through an
HTTP e-mail API of the same shape rather than SMTP: one client library for both, and the
same failure model.

``LogOnlySender`` is for development and demonstrations: it sends nothing, records the
message as sent, and logs the message's reference, kind and masked recipient. No adapter
logs a recipient, a body or a provider's reply (which may quote either); errors carry the
HTTP status or the exception's type only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.customers.identity import mask_phone
from app.notifications.models import Channel

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class Message:
    """What a sender sends; ``reference`` identifies it to the provider (the outbox id)."""

    reference: str
    channel: Channel
    recipient: str = field(repr=False)
    kind: str
    subject: str | None
    body: str = field(repr=False)
    language: str


@dataclass(frozen=True, slots=True)
class SendResult:
    """The provider took the message; its id for it, if it gave one."""

    provider_id: str | None


class SendFailed(Exception):
    """The provider did not take the message; ``retryable`` if trying again could help."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class Sender(Protocol):
    """Sends one message through one provider."""

    async def send(self, message: Message) -> SendResult: ...


class NotificationSettings(BaseSettings):
    """The providers and the outbox's knobs, from ``HOTLINE_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="HOTLINE_", env_file=".env", extra="ignore")

    sms_url: str | None = Field(default=None, description="SMS gateway; unset: log only")
    sms_api_key: SecretStr | None = None
    email_url: str | None = Field(default=None, description="e-mail API; unset: log only")
    email_api_key: SecretStr | None = None
    notification_timeout_s: float = Field(default=10, gt=0, description="one send, at most")
    notification_max_attempts: int = Field(
        default=8, ge=1, description="sends of one message before it is dead"
    )
    notification_backoff_s: float = Field(
        default=30, gt=0, description="wait after the first failure; doubles each time"
    )
    notification_backoff_max_s: float = Field(default=3600, gt=0)
    notification_sweep_s: float = Field(default=2, gt=0, description="how often to send")
    notification_batch: int = Field(default=20, gt=0, description="messages sent per sweep")


def mask_recipient(channel: Channel, recipient: str) -> str:
    """The recipient as a log may show it: a starred number or a starred address."""
    if channel is Channel.sms:
        return mask_phone(recipient)
    local, at, domain = recipient.rpartition("@")
    if not at:
        return "*" * len(recipient)
    return f"{local[:1]}***@{domain}"


class HttpSender:
    """A JSON-over-HTTP provider: ``payload`` says what the request carries."""

    def __init__(
        self,
        url: str,
        api_key: SecretStr | None,
        *,
        timeout_s: float,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._url = url
        self._api_key = api_key
        self._timeout = httpx.Timeout(timeout_s)
        self._client = client

    def payload(self, message: Message) -> dict[str, Any]:
        raise NotImplementedError

    async def send(self, message: Message) -> SendResult:
        try:
            response = await self._post(message)
        except httpx.HTTPError as exc:
            raise SendFailed(type(exc).__name__, retryable=True) from None
        return _result_of(response)

    async def _post(self, message: Message) -> httpx.Response:
        if self._client is not None:
            return await self._post_with(self._client, message)
        async with httpx.AsyncClient() as client:
            return await self._post_with(client, message)

    async def _post_with(self, client: httpx.AsyncClient, message: Message) -> httpx.Response:
        headers = {"Idempotency-Key": f"notification-{message.reference}"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        return await client.post(
            self._url, json=self.payload(message), headers=headers, timeout=self._timeout
        )


def _result_of(response: httpx.Response) -> SendResult:
    status = response.status_code
    if 200 <= status < 300:
        return SendResult(provider_id=_provider_id(response))
    retryable = status >= 500 or status in RETRYABLE_STATUSES
    raise SendFailed(f"HTTP {status}", retryable=retryable)


def _provider_id(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    found = data.get("id", data.get("message_id"))
    return None if found is None else str(found)[:200]


class HttpSmsSender(HttpSender):
    """An SMS gateway: ``{"to", "text", "language", "reference"}``."""

    def payload(self, message: Message) -> dict[str, Any]:
        return {
            "to": message.recipient,
            "text": message.body,
            "language": message.language,
            "reference": message.reference,
        }


class HttpEmailSender(HttpSender):
    """An HTTP e-mail API: ``{"to", "subject", "text", "language", "reference"}``."""

    def payload(self, message: Message) -> dict[str, Any]:
        return {
            "to": message.recipient,
            "subject": message.subject or "",
            "text": message.body,
            "language": message.language,
            "reference": message.reference,
        }


class LogOnlySender:
    """Sends nothing: logs the masked recipient and records the message as sent."""

    async def send(self, message: Message) -> SendResult:
        log.info(
            "notification %s (%s, %s) to %s not sent: log-only sender",
            message.reference,
            message.channel.value,
            message.kind,
            mask_recipient(message.channel, message.recipient),
        )
        return SendResult(provider_id=f"log-{message.reference}")


Senders = Mapping[Channel, Sender]


def senders_from_settings(settings: NotificationSettings) -> dict[Channel, Sender]:
    """An HTTP sender for each channel whose provider is configured, else the log-only one."""
    timeout_s = settings.notification_timeout_s
    sms: Sender = LogOnlySender()
    email: Sender = LogOnlySender()
    if settings.sms_url:
        sms = HttpSmsSender(settings.sms_url, settings.sms_api_key, timeout_s=timeout_s)
    if settings.email_url:
        email = HttpEmailSender(settings.email_url, settings.email_api_key, timeout_s=timeout_s)
    return {Channel.sms: sms, Channel.email: email}
