"""The dispatcher's pure decisions: when to sleep, and which events wake it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.events.log import Cursor, LoggedEvent
from app.routing.dispatcher import SKIPPED_RETRY_S, sleep_after, wakes
from app.routing.rounds import Round

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
TICK = 0.5


def result(offers: int = 0, skipped: int = 0, next_wake_in_s: float | None = None) -> Round:
    wake = None if next_wake_in_s is None else NOW + timedelta(seconds=next_wake_in_s)
    return Round(offers=offers, next_wake_at=wake, now=NOW, skipped=skipped)


class TestSleepAfter:
    @pytest.mark.parametrize(
        ("round_", "retried", "sleep", "retry"),
        [
            pytest.param(result(offers=3), 0.0, 0.0, 0.0, id="offers-made-go-again"),
            pytest.param(result(offers=1, skipped=2), 0.16, 0.0, 0.0, id="offers-end-retries"),
            pytest.param(result(), 0.0, TICK, 0.0, id="nothing-to-do-tick"),
            pytest.param(result(next_wake_in_s=0.2), 0.0, 0.2, 0.0, id="step-expiry-first"),
            pytest.param(result(next_wake_in_s=9), 0.0, TICK, 0.0, id="tick-before-late-wake"),
            pytest.param(result(next_wake_in_s=-1), 0.0, 0.001, 0.0, id="overdue-wake-at-once"),
            pytest.param(result(skipped=1), 0.0, SKIPPED_RETRY_S, SKIPPED_RETRY_S, id="first-skip"),
            pytest.param(
                result(skipped=1),
                SKIPPED_RETRY_S,
                2 * SKIPPED_RETRY_S,
                2 * SKIPPED_RETRY_S,
                id="skipped-again-doubles",
            ),
            pytest.param(result(skipped=1), 0.4, TICK, TICK, id="retry-capped-at-tick"),
            pytest.param(
                result(skipped=1, next_wake_in_s=0.005),
                0.0,
                0.005,
                SKIPPED_RETRY_S,
                id="earlier-wake-wins",
            ),
            pytest.param(result(), 0.32, TICK, 0.0, id="no-skip-ends-retries"),
        ],
    )
    def test_sleep_and_retry(
        self, round_: Round, retried: float, sleep: float, retry: float
    ) -> None:
        assert sleep_after(round_, TICK, retried) == pytest.approx((sleep, retry))


def event(type_: str, subject_type: str = "contact", **data: Any) -> LoggedEvent:
    return LoggedEvent(
        id=1,
        cursor=Cursor(1, 1),
        type=type_,
        subject_type=subject_type,
        subject_id="1",
        data=data,
        actor="system",
        at=NOW,
    )


class TestWakes:
    @pytest.mark.parametrize(
        ("happened", "woken"),
        [
            (event("contact.queued"), True),
            (event("contact.completed", agent_id=4), True),
            (event("offer.rejected", "offer", agent_id=4), True),
            (event("agent.status_changed", "agent", status="available"), True),
            (event("agent.state_changed", "agent", state="idle"), True),
            (event("agent.state_changed", "agent", state="offered"), False),
            (event("agent.state_changed", "agent", state="busy"), False),
            (event("offer.created", "offer", agent_id=4), False),
            (event("offer.accepted", "offer", agent_id=4), False),
            (event("contact.connected", agent_id=4), False),
        ],
        ids=lambda x: (
            x.type + (f"-{x.data['state']}" if "state" in x.data else "")
            if isinstance(x, LoggedEvent)
            else str(x)
        ),
    )
    def test_only_changes_that_may_free_an_agent_or_add_work_wake(
        self, happened: LoggedEvent, woken: bool
    ) -> None:
        assert wakes(happened) is woken
