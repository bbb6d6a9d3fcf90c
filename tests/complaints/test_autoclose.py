"""The close sweep: a resolved complaint the customer leaves unanswered for the silence period
is closed by the desk (once, whoever sweeps), as a close by hand would; one confirmed,
reopened or closed meanwhile is left alone."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.complaints import autoclose, service
from app.complaints.archive import ARCHIVE_SWEEP, RETENTION_SWEEP, ArchiveConfig
from app.config import Settings
from app.db import unit_of_work
from app.main import create_app
from app.timers.worker import TimerRegistry, TimerWorker
from tests.complaints.test_archive import (
    CONFIG,
    RESOLVED,
    START,
    app,
    archive_sweep,
    audit,
    clock,
    engine,
    handled,
    no_failed_complaint,
    status_of,
)
from tests.complaints.test_registration import COMPLAINTS, Clock, complaint_body, scalar
from tests.complaints.test_transitions import move
from tests.fixtures.factories import Api, expect

# fixtures of the archive tests
__all__ = ["app", "clock", "engine", "no_failed_complaint"]

SILENCE = CONFIG.close_after_days  # 7
REASON = "closed by the desk: the customer did not answer the resolution within 7 days"


async def close_sweep(app: FastAPI, now: datetime, **overrides: Any) -> int:
    """The close sweep, in a unit of work of its own, at ``now``."""
    config = CONFIG.model_copy(update=overrides)
    async with unit_of_work(app.state.sessionmaker) as session:
        return await autoclose.close_due(session, now, config=config)


async def resolved(api: Api) -> int:
    """A complaint handled and resolved at the clock's time; its id."""
    return int((await handled(api))["id"])


async def trail(api: Api, cid: int) -> list[tuple[str, str, str, str | None]]:
    entries = (await audit(api, cid))["entries"]
    return [(e["action"], e["actor"], e["after"], e["reason"]) for e in entries]


async def written_for(engine: AsyncEngine, cid: int) -> dict[str, list[str]]:
    """The kinds of events and notices written about the complaint, in order."""
    async with engine.connect() as conn:
        events = await conn.scalars(
            text(
                "SELECT type FROM events WHERE subject_type = 'complaint'"
                " AND subject_id = CAST(CAST(:id AS bigint) AS text) ORDER BY id"
            ),
            {"id": cid},
        )
        notices = await conn.scalars(
            text(
                "SELECT kind FROM notifications WHERE subject_type = 'complaint'"
                " AND subject_id = CAST(CAST(:id AS bigint) AS text) ORDER BY id"
            ),
            {"id": cid},
        )
        return {"events": list(events), "notices": list(notices)}


class TestConfiguration:
    def test_seven_days_by_default_read_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        assert ArchiveConfig().close_after_days == 7
        monkeypatch.setenv("HOTLINE_COMPLAINT_CLOSE_AFTER_DAYS", "14")
        assert ArchiveConfig().close_after_days == 14

    def test_at_least_one_day(self) -> None:
        with pytest.raises(ValueError, match="close_after_days"):
            ArchiveConfig(close_after_days=0)

    def test_registered_with_the_archive_sweeps(self, settings: Settings) -> None:
        # An app as the service makes it (this module's apps are frozen: see below).
        registry: TimerRegistry = create_app(settings).state.timer_registry
        assert autoclose.CLOSE_SWEEP in {s.name for s in registry.sweeps}


class TestADeskOnATestClock:
    """A test that resolves a complaint days ago by its own clock must not see the worker's
    sweeps, which read the database's time, close it (nor archive it) behind its back."""

    @pytest.fixture
    def clock(self) -> Clock:
        return Clock(datetime.now(UTC).replace(microsecond=0) - timedelta(days=SILENCE + 3))

    async def test_the_worker_runs_none_of_the_desk_s_sweeps(self, api: Api, app: FastAPI) -> None:
        happened = (app.state.complaint_clock() - timedelta(days=1)).isoformat()
        matter = {**complaint_body()["matter"], "occurred_at": happened}
        cid = int((await handled(api, complaint_body(matter=matter)))["id"])
        registry: TimerRegistry = app.state.timer_registry
        worker = TimerWorker(
            app.state.sessionmaker, registry, poll_interval_s=60, batch_size=10, max_attempts=1
        )
        ran = await worker.run_sweeps()  # a new worker runs every sweep registered at once
        assert not ran.keys() & {autoclose.CLOSE_SWEEP, ARCHIVE_SWEEP, RETENTION_SWEEP}
        assert await status_of(api, cid) == "resolved"


class TestCloseSweep:
    async def test_closes_what_was_resolved_the_silence_period_ago_and_nothing_else(
        self, api: Api, app: FastAPI, clock: Clock
    ) -> None:
        silent = await resolved(api)
        clock.advance(timedelta(days=1))
        later = await resolved(api)
        now = START + timedelta(days=SILENCE)
        assert await close_sweep(app, now - timedelta(seconds=1)) == 0
        assert await close_sweep(app, now) == 1
        assert (await status_of(api, silent), await status_of(api, later)) == (
            "closed",
            "resolved",
        )
        entry = (await audit(api, silent))["entries"][-1]
        assert (entry["action"], entry["actor"], entry["before"], entry["after"]) == (
            "close",
            "system",
            "resolved",
            "closed",
        )
        assert entry["reason"] == REASON
        assert datetime.fromisoformat(entry["at"]) == now
        assert await close_sweep(app, now + timedelta(days=1)) == 1
        assert await status_of(api, later) == "closed"

    async def test_the_silence_period_is_the_configured_one(self, api: Api, app: FastAPI) -> None:
        cid = await resolved(api)
        assert await close_sweep(app, START + timedelta(days=13), close_after_days=14) == 0
        assert await close_sweep(app, START + timedelta(days=14), close_after_days=14) == 1
        reason = (await audit(api, cid))["entries"][-1]["reason"]
        assert reason.endswith("within 14 days")

    async def test_a_sweep_close_writes_what_a_close_by_hand_writes(
        self, api: Api, app: FastAPI, engine: AsyncEngine
    ) -> None:
        by_hand, by_sweep = await resolved(api), await resolved(api)
        await move(api, by_hand, "close")
        assert await close_sweep(app, START + timedelta(days=SILENCE)) == 1
        assert await written_for(engine, by_sweep) == await written_for(engine, by_hand)
        assert (await written_for(engine, by_sweep))["notices"][-1] == "complaint.closed"
        hand, sweep = await trail(api, by_hand), await trail(api, by_sweep)
        assert [e[:3] for e in sweep] == [
            *[e[:3] for e in hand[:-1]],
            ("close", "system", "closed"),
        ]
        assert (await audit(api, by_sweep))["verified"] is True

    async def test_a_confirmed_reopened_or_closed_complaint_is_left_alone(
        self, api: Api, app: FastAPI
    ) -> None:
        confirmed, reopened, closed = await resolved(api), await resolved(api), await resolved(api)
        await move(api, confirmed, "confirm")
        await move(api, reopened, "reopen", {"reason": "客户不认可"})
        await move(api, closed, "close")
        entries = {cid: len((await audit(api, cid))["entries"]) for cid in (confirmed, closed)}
        assert await close_sweep(app, START + timedelta(days=SILENCE + 1)) == 0
        assert await status_of(api, confirmed) == "confirmed"
        assert await status_of(api, reopened) == "in_progress"
        assert await status_of(api, closed) == "closed"
        for cid, count in entries.items():
            assert len((await audit(api, cid))["entries"]) == count

    async def test_a_complaint_resolved_again_counts_from_its_last_resolution(
        self, api: Api, app: FastAPI, clock: Clock
    ) -> None:
        cid = await resolved(api)
        clock.advance(timedelta(days=5))
        await move(api, cid, "reopen", {"reason": "客户不认可"})
        await move(api, cid, "resolve", RESOLVED)
        assert await close_sweep(app, START + timedelta(days=SILENCE)) == 0
        assert await status_of(api, cid) == "resolved"
        assert await close_sweep(app, START + timedelta(days=5 + SILENCE)) == 1

    async def test_a_note_after_the_resolution_does_not_postpone_the_close(
        self, api: Api, app: FastAPI, clock: Clock
    ) -> None:
        cid = await resolved(api)
        clock.advance(timedelta(days=3))
        expect(await api.post(f"{COMPLAINTS}/{cid}/notes", {"text": "已致电客户无人接听"}), 201)
        assert await close_sweep(app, START + timedelta(days=SILENCE)) == 1

    async def test_a_closed_complaint_is_archived_counting_from_its_close(
        self, api: Api, app: FastAPI
    ) -> None:
        cid = await resolved(api)
        closed_at = START + timedelta(days=SILENCE)
        assert await close_sweep(app, closed_at) == 1
        assert await archive_sweep(app, closed_at + timedelta(days=29)) == 0
        assert await archive_sweep(app, closed_at + timedelta(days=30)) == 1
        assert await status_of(api, cid) == "archived"


class TestCloseSweepTogether:
    async def test_a_sweep_passes_over_a_complaint_another_holds_without_waiting(
        self, api: Api, app: FastAPI, engine: AsyncEngine
    ) -> None:
        held, free = await resolved(api), await resolved(api)
        now = START + timedelta(days=SILENCE)
        async with engine.connect() as other:
            await other.execute(
                text("SELECT id FROM complaints WHERE id = :id FOR UPDATE"), {"id": held}
            )
            assert await asyncio.wait_for(close_sweep(app, now), timeout=5) == 1
            await other.rollback()
        assert (await status_of(api, held), await status_of(api, free)) == ("resolved", "closed")
        assert await close_sweep(app, now) == 1
        assert await status_of(api, held) == "closed"

    async def test_two_sweeps_at_once_close_each_complaint_once(
        self, api: Api, app: FastAPI, engine: AsyncEngine
    ) -> None:
        ids = [await resolved(api) for _ in range(8)]
        now = START + timedelta(days=SILENCE)
        done = await asyncio.gather(*(close_sweep(app, now, sweep_batch=3) for _ in range(4)))
        assert sum(done) == 8
        for cid in ids:
            assert await status_of(api, cid) == "closed"
        closes = await scalar(engine, "SELECT count(*) FROM complaint_audit WHERE action = 'close'")
        assert closes == 8

    async def test_a_failure_on_one_complaint_does_not_stop_the_rest(
        self,
        api: Api,
        app: FastAPI,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        failing, other = await resolved(api), await resolved(api)
        real = service.transition

        async def transition(session: Any, complaint: Any, **kwargs: Any) -> Any:
            if complaint.id == failing:
                raise RuntimeError("the notice could not be written")
            return await real(session, complaint, **kwargs)

        monkeypatch.setattr(service, "transition", transition)
        assert await close_sweep(app, START + timedelta(days=SILENCE)) == 1
        monkeypatch.undo()
        assert (await status_of(api, failing), await status_of(api, other)) == (
            "resolved",
            "closed",
        )
        logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert [r.getMessage() for r in logged] == [
            f"complaint {failing} not closed; the next sweep tries again"
        ]
        caplog.clear()  # expected here: the autouse check would count it as a failure
        assert await close_sweep(app, START + timedelta(days=SILENCE)) == 1
        assert await status_of(api, failing) == "closed"
