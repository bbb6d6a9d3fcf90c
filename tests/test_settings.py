"""Settings that once had to be read together, and no longer do."""

from __future__ import annotations

import pytest

from app.config import Settings


class TestProviderTimeouts:
    """No provider is waited for inside a transaction (the redirect, a callback's attempt
    and its check are asked after their commit), so a provider may be given longer than the
    database gives an idle transaction."""

    @pytest.mark.parametrize("field", ["twilio_api_timeout_s", "json_provider_timeout_s"])
    def test_a_provider_timeout_longer_than_the_idle_transaction_timeout_is_taken(
        self, field: str
    ) -> None:
        settings = Settings.model_validate({field: 30, "idle_in_transaction_timeout_ms": 10_000})
        assert getattr(settings, field) == 30
