"""The adapters against a real (fake) gateway: what they send, how they read the answer,
which failures they call worth retrying; the log-only sender; settings from the environment."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from app.notifications.adapters import (
    HttpEmailSender,
    HttpSmsSender,
    LogOnlySender,
    Message,
    NotificationSettings,
    SendFailed,
    mask_recipient,
    senders_from_settings,
)
from app.notifications.models import Channel
from tests.fixtures.net import closed_port
from tests.notifications.provider import HANG, FakeGateway

PHONE = "+8613912345678"
# Long enough for any answer on a loaded machine; a hanging gateway costs a test this long.
HTTP_TIMEOUT_S = 2.0


def message(channel: Channel = Channel.sms, recipient: str = PHONE) -> Message:
    return Message(
        reference="42",
        channel=channel,
        recipient=recipient,
        kind="complaint.rejected",
        subject="Your complaint",
        body="We could not take this as a complaint: it is a request for information.",
        language="en",
    )


def sms(gateway: FakeGateway) -> HttpSmsSender:
    return HttpSmsSender(f"{gateway.url}/sms", SecretStr("k"), timeout_s=HTTP_TIMEOUT_S)


class TestHttpSenders:
    async def test_sms_carries_number_text_and_reference_and_returns_the_providers_id(
        self, gateway: FakeGateway
    ) -> None:
        result = await sms(gateway).send(message())

        assert result.provider_id == "gw-1"
        [request] = gateway.requests
        assert request.body == {
            "to": PHONE,
            "text": message().body,
            "language": "en",
            "reference": "42",
        }
        assert request.headers["idempotency-key"] == "notification-42"

    async def test_email_carries_its_subject(self, gateway: FakeGateway) -> None:
        sender = HttpEmailSender(f"{gateway.url}/email", None, timeout_s=HTTP_TIMEOUT_S)

        await sender.send(message(Channel.email, "li.hua@example.com"))

        [request] = gateway.requests
        assert request.body["subject"] == "Your complaint"
        assert "authorization" not in request.headers

    @pytest.mark.parametrize(
        ("answer", "reason", "retryable"),
        [
            (500, "HTTP 500", True),
            (503, "HTTP 503", True),
            (429, "HTTP 429", True),
            (408, "HTTP 408", True),
            (400, "HTTP 400", False),
            (401, "HTTP 401", False),
            (422, "HTTP 422", False),
            (HANG, "ReadTimeout", True),
        ],
    )
    async def test_failure_says_whether_trying_again_could_help(
        self, gateway: FakeGateway, answer: int, reason: str, retryable: bool
    ) -> None:
        gateway.fail_next(answer)

        with pytest.raises(SendFailed) as failed:
            await sms(gateway).send(message())

        assert (failed.value.reason, failed.value.retryable) == (reason, retryable)

    async def test_unreachable_gateway_is_worth_retrying(self) -> None:
        sender = HttpSmsSender(
            f"http://127.0.0.1:{closed_port()}/sms", None, timeout_s=HTTP_TIMEOUT_S
        )

        with pytest.raises(SendFailed) as failed:
            await sender.send(message())

        assert (failed.value.reason, failed.value.retryable) == ("ConnectError", True)

    async def test_failure_never_quotes_the_recipient(self, gateway: FakeGateway) -> None:
        gateway.fail_next(400)

        with pytest.raises(SendFailed) as failed:
            await sms(gateway).send(message())

        assert "3912345678" not in str(failed.value)
        assert "3912345678" not in repr(message())


class TestLogOnlySender:
    async def test_records_as_sent_and_logs_only_the_masked_recipient(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="app.notifications.adapters")

        result = await LogOnlySender().send(message())

        assert result.provider_id == "log-42"
        [line] = [r.getMessage() for r in caplog.records]
        assert "+86139****5678" in line
        assert PHONE not in line
        assert message().body not in line

    @pytest.mark.parametrize(
        ("channel", "recipient", "masked"),
        [
            (Channel.sms, PHONE, "+86139****5678"),
            (Channel.email, "li.hua@example.com", "l***@example.com"),
            (Channel.email, "not-an-address", "**************"),
        ],
    )
    def test_mask_recipient(self, channel: Channel, recipient: str, masked: str) -> None:
        assert mask_recipient(channel, recipient) == masked


class TestSettings:
    def test_providers_come_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HOTLINE_SMS_URL", "https://sms.example.com/send")
        monkeypatch.setenv("HOTLINE_SMS_API_KEY", "sms-key")
        monkeypatch.delenv("HOTLINE_EMAIL_URL", raising=False)

        settings = NotificationSettings()
        senders = senders_from_settings(settings)

        assert settings.sms_api_key is not None
        assert settings.sms_api_key.get_secret_value() == "sms-key"
        assert isinstance(senders[Channel.sms], HttpSmsSender)
        assert isinstance(senders[Channel.email], LogOnlySender)
