"""Settings checked together: what one setting means for another is refused at start-up,
naming both."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import Settings


class TestProviderTimeouts:
    """The timer worker waits for a provider inside a transaction: the database must not
    end that transaction as idle first."""

    @pytest.mark.parametrize(
        ("field", "name"),
        [
            ("twilio_api_timeout_s", "HOTLINE_TWILIO_API_TIMEOUT_S"),
            ("json_provider_timeout_s", "HOTLINE_JSON_PROVIDER_TIMEOUT_S"),
        ],
    )
    def test_a_provider_timeout_as_long_as_the_idle_transaction_timeout_is_refused(
        self, field: str, name: str
    ) -> None:
        with pytest.raises(ValidationError) as refused:
            Settings.model_validate({field: 10, "idle_in_transaction_timeout_ms": 10_000})
        message = str(refused.value)
        assert name in message
        assert "HOTLINE_IDLE_IN_TRANSACTION_TIMEOUT_MS" in message

    def test_a_shorter_provider_timeout_is_taken(self) -> None:
        settings = Settings(twilio_api_timeout_s=9.5, idle_in_transaction_timeout_ms=10_000)
        assert settings.twilio_api_timeout_s == 9.5

    def test_any_provider_timeout_is_taken_when_idle_transactions_are_never_ended(self) -> None:
        settings = Settings(twilio_api_timeout_s=60, idle_in_transaction_timeout_ms=0)
        assert settings.twilio_api_timeout_s == 60
