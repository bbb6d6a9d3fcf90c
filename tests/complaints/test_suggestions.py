"""The classifier at work: a suggestion for each complaint, learning from agents' choices.

The learning sweep is called directly, in units of work of the test's own, as the timer
worker would call it; "until learned" polls it with a deadline, because the event log only
lets it read an event once no older transaction (of any database on the server) is open.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.complaints import suggestions
from app.complaints.classifier import Classifier
from app.complaints.router import router as complaints_router
from app.complaints.suggestions import ClassifierState, learn_sweep, shipped
from app.complaints.suggestions import router as suggestions_router
from app.config import Settings
from app.db import unit_of_work
from app.main import create_app
from tests.complaints.test_registration import (
    COMPLAINTS,
    Clock,
    clock,
    complaint_body,
    register,
    scalar,
)
from tests.fixtures.desk_clock import freeze_desk
from tests.fixtures.factories import Api, expect

__all__ = ["clock"]  # the injected clock, shared with the registration tests

DOUBLE_CHARGE = "我的信用卡被重复扣款两次而柜台拒绝处理"
ALIKE = "信用卡被重复扣款两次但柜台不处理"
PAYMENT_ONLY = {"categories": ["payment"], "severity": "low"}


@pytest.fixture
async def app(settings: Settings, clock: Clock) -> AsyncIterator[FastAPI]:
    """The app with the complaint and suggestion routes mounted (if it lacks them)."""
    application = create_app(settings)
    paths = {getattr(r, "path", None) for r in application.routes}
    if COMPLAINTS not in paths:
        application.include_router(complaints_router)
    if f"{COMPLAINTS}/{{complaint_id}}/suggestion" not in paths:
        application.include_router(suggestions_router)
    freeze_desk(application, clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


@pytest.fixture
def sessionmaker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    return app.state.sessionmaker  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def fresh_model() -> Iterator[None]:
    """Each test starts with no classifier built in this process."""
    suggestions.MODEL.forget()
    yield
    suggestions.MODEL.forget()


# --- helpers ---------------------------------------------------------------------------------


def body_about(description: str, **overrides: Any) -> dict[str, Any]:
    body = complaint_body(**overrides)
    body["matter"] = {**body["matter"], "description": description}
    return body


async def complaint(api: Api, description: str, **overrides: Any) -> int:
    return int((await register(api, body_about(description, **overrides)))["id"])


async def suggestion(api: Api, complaint_id: int) -> dict[str, Any]:
    url = f"{COMPLAINTS}/{complaint_id}/suggestion"
    return expect(await api.get(url), 200)  # type: ignore[no-any-return]


def names(answer: dict[str, Any]) -> list[str]:
    return [c["name"] for c in answer["categories"]]


async def classify(api: Api, complaint_id: int, labels: dict[str, Any]) -> None:
    expect(await api.post(f"{COMPLAINTS}/{complaint_id}/classify", labels), 200)


async def database_now(session: AsyncSession) -> datetime:
    now: datetime | None = await session.scalar(select(func.now()))
    assert now is not None
    return now


async def sweep(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """One run of the learning sweep in a unit of work, as the timer worker runs it."""
    async with unit_of_work(sessionmaker) as session:
        return await learn_sweep(session, await database_now(session))


async def stored(sessionmaker: async_sessionmaker[AsyncSession]) -> ClassifierState:
    async with sessionmaker() as session:
        row = await session.get(ClassifierState, suggestions.STATE_ID)
        assert row is not None
        return row


async def sweep_until_learned(
    sessionmaker: async_sessionmaker[AsyncSession], count: int, timeout_s: float = 30.0
) -> ClassifierState:
    """Sweep until ``count`` classifications are learned in all, or the deadline passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        await sweep(sessionmaker)
        row = await stored(sessionmaker)
        if row.learned >= count or loop.time() > deadline:
            return row
        await asyncio.sleep(0.05)  # a poll interval under a deadline, not a synchronisation


def documents(state: dict[str, Any] | None, label: str | None = None) -> int:
    """How many examples a stored state has learned (with ``label``, if given)."""
    bags = (state or shipped().to_state())["categories"]
    return int(bags["documents"] if label is None else bags["label_documents"].get(label, 0))


# --- suggesting ------------------------------------------------------------------------------


class TestSuggestion:
    async def test_a_clear_text_gets_its_categories_severity_and_why(self, api: Api) -> None:
        cid = await complaint(
            api,
            "My credit card was charged twice for one purchase",
            grounds="The same purchase appears twice on my card statement",
            request="Refund the duplicate charge",
        )
        answer = await suggestion(api, cid)
        assert answer["complaint_id"] == cid
        assert set(names(answer)) == {"credit_card", "payment"}
        assert all(0.5 <= c["score"] <= 1 for c in answer["categories"])
        assert answer["severity"]["name"] in {"low", "medium", "high", "critical"}
        assert "credit_card" in answer["explanation"]
        assert [e["category"] for e in answer["evidence"]] == names(answer)
        assert all(len(e["words"]) <= 3 for e in answer["evidence"])
        assert isinstance(answer["severity_cues"], list)
        assert (answer["language"], answer["model_version"]) == ("en", 0)

    async def test_a_chinese_text_is_read_through_its_words(self, api: Api) -> None:
        answer = await suggestion(api, await complaint(api, DOUBLE_CHARGE))
        assert set(names(answer)) == {"credit_card", "payment"}
        assert answer["language"] == "zh"

    async def test_the_read_is_in_the_access_log(self, api: Api, engine: AsyncEngine) -> None:
        cid = await complaint(api, DOUBLE_CHARGE)
        await suggestion(api, cid)
        sql = "SELECT count(*) FROM access_log WHERE kind = 'complaint.read' AND subject_id = :id"
        assert await scalar(engine, sql, id=cid) == 1

    async def test_an_unknown_complaint_is_a_404(self, api: Api) -> None:
        expect(await api.get(f"{COMPLAINTS}/999999/suggestion"), 404)

    async def test_a_complaint_the_agent_may_not_read_is_a_404(self, api: Api) -> None:
        cid = await complaint(api, DOUBLE_CHARGE)
        stranger = await api.signed_in_as(await api.agent())
        expect(await stranger.get(f"{COMPLAINTS}/{cid}/suggestion"), 404)


class TestNeverBlocking:
    async def test_a_classifier_that_raises_answers_an_empty_suggestion(
        self, api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        cid = await complaint(api, DOUBLE_CHARGE)

        def broken(self: Classifier, text: str, language: str | None = None) -> Any:
            raise RuntimeError("the model is broken")

        monkeypatch.setattr(Classifier, "suggest", broken)
        caplog.set_level(logging.WARNING, logger="app.complaints.suggestions")
        answer = await suggestion(api, cid)
        assert (answer["categories"], answer["severity"], answer["model_version"]) == (
            [],
            None,
            None,
        )
        assert (answer["evidence"], answer["severity_cues"]) == ([], [])
        assert any("classifier failed" in r.getMessage() for r in caplog.records)
        await classify(api, cid, PAYMENT_ONLY)  # nothing else waits on it

    async def test_a_stored_state_that_does_not_load_answers_an_empty_suggestion(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        cid = await complaint(api, DOUBLE_CHARGE)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO classifier_state (id, state, version) "
                    """VALUES (1, '{"version": 99}', 7) """
                    "ON CONFLICT (id) DO UPDATE SET state = excluded.state, version = 7"
                )
            )
        answer = await suggestion(api, cid)
        assert (answer["categories"], answer["severity"]) == ([], None)


# --- learning --------------------------------------------------------------------------------


class TestLearning:
    async def test_a_correction_changes_the_suggestion_for_a_similar_text(
        self, api: Api, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        corrected = [await complaint(api, DOUBLE_CHARGE) for _ in range(2)]
        similar = await complaint(api, ALIKE)
        before = await suggestion(api, similar)
        assert set(names(before)) == {"payment", "credit_card"}
        for cid in corrected:  # the agents say: payment, not the card business
            await classify(api, cid, PAYMENT_ONLY)
        assert await suggestion(api, similar) == before  # learning is the sweep's work
        row = await sweep_until_learned(sessionmaker, 2)
        assert row.learned == 2
        after = await suggestion(api, similar)
        assert names(after) == ["payment"]
        assert after["model_version"] == row.version > before["model_version"]

    async def test_each_classification_is_learned_once_however_often_the_sweep_runs(
        self, api: Api, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        for _ in range(3):
            await classify(api, await complaint(api, DOUBLE_CHARGE), PAYMENT_ONLY)
        first = await sweep_until_learned(sessionmaker, 3)
        assert [await sweep(sessionmaker) for _ in range(3)] == [0, 0, 0]
        again = await stored(sessionmaker)
        assert (again.learned, again.version) == (3, first.version)
        assert documents(again.state) == documents(None) + 3

    async def test_two_instances_sweeping_at_once_learn_each_classification_once(
        self, api: Api, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await sweep(sessionmaker)  # the row exists before the two race for it
        for _ in range(3):
            await classify(api, await complaint(api, DOUBLE_CHARGE), PAYMENT_ONLY)
        async with sessionmaker() as holder:
            await learn_sweep(holder, await database_now(holder))  # holds the row's lock
            # the other instance passes by at once instead of waiting for the lock
            assert await asyncio.wait_for(sweep(sessionmaker), timeout=5) == 0
            await holder.commit()
        row = await sweep_until_learned(sessionmaker, 3)
        assert [await sweep(sessionmaker) for _ in range(2)] == [0, 0]
        row = await stored(sessionmaker)
        assert row.learned == 3
        assert documents(row.state) == documents(None) + 3

    async def test_a_correction_is_learned_with_the_labels_of_its_own_move(
        self, api: Api, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        cid = await complaint(api, DOUBLE_CHARGE)
        await classify(api, cid, PAYMENT_ONLY)
        await classify(api, cid, {"categories": ["accounts", "loans"], "severity": "high"})
        row = await sweep_until_learned(sessionmaker, 2)
        assert row.learned == 2
        for label in ("payment", "accounts", "loans"):
            assert documents(row.state, label) == documents(None, label) + 1, label
        severities = (row.state or {})["severities"]["label_documents"]
        shipped_severities = shipped().to_state()["severities"]["label_documents"]
        assert severities["low"] == shipped_severities["low"] + 1
        assert severities["high"] == shipped_severities["high"] + 1

    async def test_other_moves_teach_nothing(
        self, api: Api, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        agent = await api.agent()
        cid = await complaint(api, DOUBLE_CHARGE)
        expect(await api.post(f"{COMPLAINTS}/{cid}/assign", {"assignee": agent["id"]}), 200)
        await classify(api, cid, PAYMENT_ONLY)
        row = await sweep_until_learned(sessionmaker, 1)
        assert [await sweep(sessionmaker) for _ in range(2)] == [0, 0]
        assert (await stored(sessionmaker)).learned == row.learned == 1
