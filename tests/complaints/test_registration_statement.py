"""A new complaint written in one statement: the rows are those the desk derives from them,
keys and links behave as before, and linking spends no reference number."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.complaints import deadlines, notices, search_terms, service
from app.complaints import registration_statement as rs
from app.complaints.models import Complaint, ComplaintClock, recompute
from app.complaints.reference import PATTERN
from app.complaints.router import router as complaints_router
from app.complaints.schemas import ComplaintCreate
from app.complaints.service import DESK
from app.config import Settings
from app.db import plain_url
from app.main import create_app
from app.notifications.models import Notification
from app.timers.models import Timer
from tests.complaints.test_registration import (
    COMPLAINTS,
    Clock,
    complaint_body,
    register,
    scalar,
)
from tests.fixtures.desk_clock import freeze_desk
from tests.fixtures.factories import Api, expect


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with the desk's clock at the time of the test: no alert is due while it runs."""
    application = create_app(settings)
    if not any(getattr(r, "path", None) == COMPLAINTS for r in application.routes):
        application.include_router(complaints_router)
    freeze_desk(application, Clock(datetime.now(UTC)))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


def number_of(reference: str) -> int:
    found = PATTERN.match(reference)
    assert found is not None
    return int(found.group(2))


async def read_back(engine: AsyncEngine, complaint_id: int) -> tuple[Complaint, list[Any]]:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        complaint = await session.get(Complaint, complaint_id)
        assert complaint is not None
        stmt = select(ComplaintClock).where(ComplaintClock.complaint_id == complaint_id)
        clocks = list(await session.scalars(stmt.order_by(ComplaintClock.id)))
        return complaint, clocks


class TestTheRowsWritten:
    async def test_clocks_timers_search_and_notice_are_what_the_desk_derives(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        customer = await api.customer(language="en")
        done = await register(api, complaint_body(customer={"id": customer["id"]}))
        complaint, clocks = await read_back(engine, done["id"])
        calendar = DESK.work_calendar()
        for row in clocks:
            stored = row.due_at
            recompute(row, calendar, complaint.registered_at)
            assert row.due_at == stored, row.kind
        async with AsyncSession(engine) as session:
            timers = {
                t.subject: t
                for t in await session.scalars(select(Timer).where(Timer.kind == deadlines.KIND))
            }
            queued = list(await session.scalars(select(Notification)))
            same_search = await session.scalar(
                text("SELECT search = CAST(:terms AS tsvector) FROM complaints WHERE id = :id"),
                {"terms": search_terms.of(complaint), "id": complaint.id},
            )
        running = [r for r in clocks if deadlines.pending(r, calendar, frozenset())]
        assert running
        assert sorted(timers) == sorted(str(r.id) for r in running)
        for row in running:
            alert = deadlines.pending(row, calendar, frozenset())[0]
            timer = timers[str(row.id)]
            assert (timer.due_at, timer.payload) == (alert.at, deadlines.next_payload(row, alert))
        assert same_search is True
        expected = notices.registered_notice(complaint, "en", region="CN")
        assert expected is not None
        assert [(n.recipient, n.kind, n.body, n.language, n.dedupe_key) for n in queued] == [
            (expected.recipient, expected.kind, expected.body, "en", "1")
        ]
        audit = expect(await api.get(f"{COMPLAINTS}/{done['id']}/audit"), 200)
        assert audit["verified"] is True
        assert audit["entries"][-1]["hash"] == complaint.audit_hash


class TestKeysAndLinks:
    async def test_concurrent_requests_with_one_key_make_one_complaint(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        key = {"Idempotency-Key": "racing-retries"}
        answers = await asyncio.gather(
            *(api.post(COMPLAINTS, complaint_body(), headers=key) for _ in range(5))
        )
        bodies = [expect(a, 201) for a in answers]
        assert all(b == bodies[0] for b in bodies)
        assert await scalar(engine, "SELECT count(*) FROM complaints") == 1

    async def test_a_key_reused_for_another_request_is_refused(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        key = {"Idempotency-Key": "reused"}
        await register(api, complaint_body(), headers=key)
        expect(await api.post(COMPLAINTS, complaint_body(grounds="另一件事"), headers=key), 409)
        assert await scalar(engine, "SELECT count(*) FROM complaints") == 1

    async def test_a_retried_link_is_answered_as_the_first_time(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        customer = await api.customer()
        body = complaint_body(customer={"id": customer["id"]})
        await register(api, body)
        key = {"Idempotency-Key": "linked-once"}
        linked = await register(api, {**body, "channel": "web"}, status=200, headers=key)
        again = await register(api, {**body, "channel": "web"}, status=200, headers=key)
        assert again == linked
        found = await scalar(engine, "SELECT jsonb_array_length(linked) FROM complaints")
        assert found == 1

    async def test_a_linked_registration_spends_no_reference_number(self, api: Api) -> None:
        customer = await api.customer()
        body = complaint_body(customer={"id": customer["id"]})
        first = await register(api, body)
        await register(api, {**body, "channel": "web"}, status=200)
        other = {**body, "matter": {**body["matter"], "branch": "Online"}}
        other["matter"]["description"] = "理财产品的收益说明与实际不符"
        other["matter"]["occurred_at"] = "2026-10-01T10:00:00+08:00"
        second = await register(api, other)
        assert number_of(second["reference"]) == number_of(first["reference"]) + 1


class TestTheEventHub:
    async def test_a_registration_on_the_driver_wakes_the_hub(
        self, app: FastAPI, api: Api, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        hub = app.state.hub
        woken = hub.poke
        pokes: list[None] = []

        def poke() -> None:
            pokes.append(None)
            woken()

        monkeypatch.setattr(hub, "poke", poke)
        await register(api, complaint_body())
        assert pokes


class TestTheCustomersLock:
    async def test_the_lock_sent_with_begin_excludes_the_lock_the_linking_path_takes(
        self, db: str
    ) -> None:
        # Registration on the driver pool takes it with BEGIN, linking in a session with
        # ``LOCK``: two channels racing with one matter are one complaint only if both paths
        # lock the same key.
        first = await asyncpg.connect(plain_url(db))
        second = await asyncpg.connect(plain_url(db))
        try:
            await first.execute(rs.begin_locked(7))
            async with second.transaction():
                await second.execute("SET LOCAL lock_timeout = '200ms'")
                with pytest.raises(asyncpg.exceptions.LockNotAvailableError):
                    await second.execute(rs.LOCK, "7")
            async with second.transaction():
                await second.execute(rs.LOCK, "8")  # another customer's: free
            await first.execute("ROLLBACK")
        finally:
            await first.close()
            await second.close()

    async def test_a_registration_in_a_session_holds_the_lock_and_its_rows_until_it_ends(
        self, api: Api, app: FastAPI, engine: AsyncEngine, db: str
    ) -> None:
        # ``service.register`` (the linking path, and any caller holding a session) sends the
        # registration's statements on the session's connection: they must be in the
        # session's transaction, or the customer's lock ends with its own statement (two
        # channels racing with one matter could then both create) and each row commits alone.
        customer = await api.customer()
        data = ComplaintCreate.model_validate(complaint_body(customer={"id": customer["id"]}))
        other = await asyncpg.connect(plain_url(db))
        try:
            async with app.state.sessionmaker() as session:
                done = await service.register(
                    session, data=data, actor="system", now=datetime.now(UTC)
                )
                assert not done.linked
                assert await other.fetchval(TRY_LOCK, str(customer["id"])) is False
                await session.rollback()
            assert await other.fetchval(TRY_LOCK, str(customer["id"])) is True
            count = "SELECT count(*) FROM complaints WHERE id = :id"
            assert await scalar(engine, count, id=done.complaint.id) == 0
        finally:
            await other.close()


TRY_LOCK = rs.LOCK.replace("pg_advisory_xact_lock", "pg_try_advisory_xact_lock")
assert TRY_LOCK != rs.LOCK
