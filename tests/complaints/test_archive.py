"""The archive: finished complaints archived when due (once, whoever sweeps), archived ones
still listed and found, and read-only to every write.

Also the helpers the retention, export and attachment tests share: the app with the desk's
clock set far from the real one (so the timer worker's own sweeps, which run on the
database's clock, never find these complaints due), the sweeps run at the test's ``now``,
and finished complaints.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.complaints import anonymise, archive, lifecycle
from app.complaints.archive import ArchiveConfig
from app.complaints.lifecycle import ComplaintEvent
from app.config import Settings
from app.db import unit_of_work
from app.main import create_app
from tests.complaints.test_registration import COMPLAINTS, Clock, complaint_body, register, scalar
from tests.complaints.test_transitions import move
from tests.fixtures.desk_clock import freeze_desk
from tests.fixtures.factories import Api, expect

START = datetime(2030, 3, 4, 2, 0, tzinfo=UTC)
CONFIG = ArchiveConfig(archive_after_days=30, retention_years=3, sweep_batch=100)
RESOLVED = {
    "resolution": "王芳的重复扣款已退回",
    "root_cause": "清算系统重复提交",
    "corrective_action": "修复重复提交的校验",
    "remedy": "向王芳退款并致歉",
}
PDF = b"%PDF-1.7\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
async def app(settings: Settings, clock: Clock) -> AsyncIterator[FastAPI]:
    """The app, its desk's clock injected, the archive configured as ``CONFIG``."""
    application = create_app(settings)
    freeze_desk(application, clock)
    application.state.complaint_archive = CONFIG
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def no_failed_complaint(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A sweep that fails on a complaint logs it and goes on: here that is a failure."""
    caplog.set_level(logging.WARNING)
    yield
    records = caplog.get_records("call")
    failed = [r.getMessage() for r in records if r.name.startswith("app.complaints")]
    assert not [m for m in failed if "the next sweep" in m], failed


async def archive_sweep(app: FastAPI, now: datetime, **overrides: Any) -> int:
    """The archive sweep, in a unit of work of its own, at ``now``."""
    config = CONFIG.model_copy(update=overrides)
    async with unit_of_work(app.state.sessionmaker) as session:
        return await archive.archive_due(session, now, config=config)


async def retention_sweep(app: FastAPI, now: datetime) -> int:
    async with unit_of_work(app.state.sessionmaker) as session:
        return await anonymise.retention_sweep(
            session, now, retention_years=CONFIG.retention_years, limit=CONFIG.sweep_batch
        )


async def handled(api: Api, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A complaint classified, assigned to a fresh agent, started and resolved."""
    agent = await api.agent()
    done = await register(api, body or complaint_body())
    cid = done["id"]
    await move(api, cid, "classify", {"categories": ["payment"], "severity": "high"})
    await move(api, cid, "assign", {"assignee": agent["id"]})
    await move(api, cid, "start")
    return await move(api, cid, "resolve", RESOLVED)  # type: ignore[no-any-return]


async def finished(api: Api, verb: str = "close", **body: Any) -> int:
    """A complaint handled and finished by ``verb`` at the clock's time; its id."""
    if verb in ("withdraw", "reject"):
        done = await register(api, complaint_body(**body))
        await move(api, done["id"], verb, {"reason": "客户撤回"} if verb == "reject" else None)
        return int(done["id"])
    cid = int((await handled(api, complaint_body(**body)))["id"])
    await move(api, cid, verb)
    return cid


async def status_of(api: Api, cid: int) -> str:
    return str(expect(await api.get(f"{COMPLAINTS}/{cid}"), 200)["status"])


async def audit(api: Api, cid: int) -> dict[str, Any]:
    return expect(await api.get(f"{COMPLAINTS}/{cid}/audit"), 200)  # type: ignore[no-any-return]


async def row(engine: AsyncEngine, cid: int) -> dict[str, Any]:
    """The complaint's row as stored, every column."""
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT *, search::text AS search FROM complaints WHERE id = :id"), {"id": cid}
        )
        return dict(found.mappings().one())


async def archived_at(engine: AsyncEngine, cid: int) -> datetime | None:
    return await scalar(engine, "SELECT archived_at FROM complaints WHERE id = :id", id=cid)  # type: ignore[no-any-return]


class TestArchiveSweep:
    async def test_archives_what_finished_long_enough_ago_and_nothing_else(
        self, api: Api, app: FastAPI, clock: Clock
    ) -> None:
        closed = await finished(api, "close")
        withdrawn = await finished(api, "withdraw")
        rejected = await finished(api, "reject")
        still_resolved = int((await handled(api))["id"])
        clock.advance(timedelta(days=10))
        confirmed_later = await finished(api, "confirm")
        now = START + timedelta(days=30)
        assert await archive_sweep(app, now) == 3
        for cid in (closed, withdrawn, rejected):
            assert await status_of(api, cid) == "archived"
        assert await status_of(api, still_resolved) == "resolved"
        assert await status_of(api, confirmed_later) == "confirmed"
        entry = (await audit(api, closed))["entries"][-1]
        assert (entry["action"], entry["actor"], entry["before"], entry["after"]) == (
            "archive",
            "system",
            "closed",
            "archived",
        )
        assert datetime.fromisoformat(entry["at"]) == now
        assert await archived_at(app.state.engine, closed) == now
        assert await archive_sweep(app, START + timedelta(days=39, hours=23)) == 0
        assert await archive_sweep(app, START + timedelta(days=40)) == 1
        assert await status_of(api, confirmed_later) == "archived"

    async def test_a_note_after_closing_does_not_postpone_the_archive(
        self, api: Api, app: FastAPI, clock: Clock
    ) -> None:
        cid = await finished(api, "close")
        clock.advance(timedelta(days=20))
        expect(await api.post(f"{COMPLAINTS}/{cid}/notes", {"text": "客户来电致谢"}), 201)
        assert await archive_sweep(app, START + timedelta(days=30)) == 1
        assert await status_of(api, cid) == "archived"

    async def test_a_reopened_complaint_counts_from_its_last_finish(
        self, api: Api, app: FastAPI, clock: Clock
    ) -> None:
        cid = await finished(api, "close")
        clock.advance(timedelta(days=5))
        await move(api, cid, "reopen", {"reason": "客户不认可"})
        await move(api, cid, "resolve", RESOLVED)
        clock.advance(timedelta(days=1))
        await move(api, cid, "close")
        assert await archive_sweep(app, START + timedelta(days=30)) == 0
        assert await status_of(api, cid) == "closed"
        assert await archive_sweep(app, START + timedelta(days=36)) == 1

    async def test_a_second_sweep_changes_nothing(
        self, api: Api, app: FastAPI, engine: AsyncEngine
    ) -> None:
        ids = [await finished(api) for _ in range(3)]
        now = START + timedelta(days=31)
        assert await archive_sweep(app, now) == 3
        written = await tables(engine)
        assert await archive_sweep(app, now + timedelta(days=1)) == 0
        assert await tables(engine) == written
        for cid in ids:
            assert (await audit(api, cid))["verified"] is True

    async def test_a_sweep_passes_over_a_complaint_another_holds_without_waiting(
        self, api: Api, app: FastAPI, engine: AsyncEngine
    ) -> None:
        held, free = await finished(api), await finished(api)
        now = START + timedelta(days=31)
        async with engine.connect() as other:
            await other.execute(
                text("SELECT id FROM complaints WHERE id = :id FOR UPDATE"), {"id": held}
            )
            assert await asyncio.wait_for(archive_sweep(app, now), timeout=5) == 1
            await other.rollback()
        assert (await status_of(api, held), await status_of(api, free)) == ("closed", "archived")
        assert await archive_sweep(app, now) == 1
        assert await status_of(api, held) == "archived"

    async def test_two_sweeps_at_once_archive_each_complaint_once(
        self, api: Api, app: FastAPI, engine: AsyncEngine
    ) -> None:
        ids = [await finished(api) for _ in range(8)]
        now = START + timedelta(days=31)
        done = await asyncio.gather(*(archive_sweep(app, now, sweep_batch=3) for _ in range(4)))
        assert sum(done) == 8
        for cid in ids:
            assert await status_of(api, cid) == "archived"
        archives = await scalar(
            engine, "SELECT count(*) FROM complaint_audit WHERE action = 'archive'"
        )
        assert archives == 8

    async def test_a_complaint_archived_by_hand_is_stamped_by_its_move(
        self, api: Api, app: FastAPI, clock: Clock, engine: AsyncEngine
    ) -> None:
        cid = await finished(api)
        moved_at = clock.advance(timedelta(days=2))
        await move(api, cid, "archive")
        assert await archived_at(engine, cid) == moved_at
        assert await archive_sweep(app, START + timedelta(days=3)) == 0  # nothing left to do
        assert await archived_at(engine, cid) == moved_at

    async def test_an_archived_complaint_without_a_stamp_gets_it_from_its_trail(
        self, api: Api, app: FastAPI, clock: Clock, engine: AsyncEngine
    ) -> None:
        # A complaint archived before the move stamped it (or by a path that did not).
        cid = await finished(api)
        moved_at = clock.advance(timedelta(days=2))
        await move(api, cid, "archive")
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE complaints SET archived_at = NULL WHERE id = :id"), {"id": cid}
            )
        assert await archive_sweep(app, START + timedelta(days=3)) == 1
        assert await archived_at(engine, cid) == moved_at


# Tables that change whatever a request does (a read is recorded, the learning sweep moves).
UNTOUCHED_EXCEPT = {
    "alembic_version",
    "access_log",
    "rate_limits",
    "api_keys",
    "idempotency_keys",
    "app_secrets",
    "console_connections",
    "classifier_state",
}
DIGEST = "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM \"{}\" t"


# The outbox delivers in the background: its rows change, which rows there are must not.
ROWS_ONLY = {"notifications": "SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM notifications"}


async def tables(engine: AsyncEngine) -> dict[str, Any]:
    """A digest of every table a write to a complaint could touch."""
    async with engine.connect() as conn:
        names = await conn.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        return {
            name: await conn.scalar(text(ROWS_ONLY.get(name) or DIGEST.format(name)))
            for name in sorted(set(names) - UNTOUCHED_EXCEPT)
        }


class TestArchivedComplaintsAreFound:
    async def test_listed_by_status_and_found_by_their_words(self, api: Api, app: FastAPI) -> None:
        cid = await finished(api, grounds="the zebraquartz terminal charged twice")
        await finished(api)
        await archive_sweep(app, START + timedelta(days=31))
        listed = expect(await api.get(COMPLAINTS, params={"status": "archived"}), 200)
        assert cid in [c["id"] for c in listed["items"]]
        found = expect(await api.get(COMPLAINTS, params={"text": "zebraquartz"}), 200)
        assert [c["id"] for c in found["items"]] == [cid]
        assert found["items"][0]["status"] == "archived"


# --- read-only ---------------------------------------------------------------------------------

# Every write route under a complaint, with a body its caller would send: each must answer an
# archived complaint with a 409 naming the status. A write route missing here fails the test.
BODIES: dict[str, Any] = {
    "/notes": {"text": "too late"},
    "/feedback": {"csat": 5, "comment": "late"},
    "/auto-assign": None,
    "/approvals": {"kind": "compensation", "amount": "10.00", "currency": "CNY", "reason": "r"},
    "/approvals/{approval_id}/approve": None,
    "/approvals/{approval_id}/decline": {"reason": "no"},
    "/approvals/{approval_id}/withdraw": None,
}
# A value for each fact a move may need (``lifecycle.needs``): every move gets what it needs.
SAMPLE_FACTS: dict[str, Any] = {
    "categories": ["fees"],
    "severity": "low",
    "assignee": 1,
    "reason": "waiting_for_customer",
    "approval": 1,
    "approver": 1,
    "days": 2,
    "clock": "resolution",
    "target": "supervisor",
    "outcome": "upheld",
    **RESOLVED,
}
# Not edits of the complaint: the hold keeps it, the upload is tried in test_attachments.
EXEMPT = {"/legal-hold", "/attachments"}
PREFIX = f"{COMPLAINTS}/{{complaint_id}}"


def write_routes(app: FastAPI) -> list[str]:
    """The suffixes of every POST, PUT, PATCH and DELETE route under one complaint."""
    found = {
        str(route.path_format).removeprefix(PREFIX)
        for route in iter_route_contexts(app.routes)
        if str(route.path_format).startswith(PREFIX + "/")
        and (route.methods or set()) & {"POST", "PUT", "PATCH", "DELETE"}
    }
    return sorted(found - EXEMPT - {"/{verb}"})


async def pending_approval(api: Api, asker: Api, cid: int) -> int | None:
    """A pending approval asked for by the complaint's handler, if the app takes them."""
    response = await asker.post(f"{COMPLAINTS}/{cid}/approvals", BODIES["/approvals"])
    return int(expect(response, 201)["id"]) if response.status_code != 404 else None


class TestArchivedIsReadOnly:
    async def test_every_write_is_a_409_naming_archived_and_changes_nothing(
        self, api: Api, app: FastAPI, engine: AsyncEngine
    ) -> None:
        agent = await api.agent()
        handler = await api.signed_in_as(agent)
        done = await register(api, complaint_body())
        cid = done["id"]
        await move(api, cid, "assign", {"assignee": agent["id"]})
        await move(api, cid, "start")
        approval_id = await pending_approval(api, handler, cid)
        await move(api, cid, "resolve", RESOLVED)
        await move(api, cid, "close")
        await move(api, cid, "archive")
        routes = write_routes(app)
        assert {"/notes", "/feedback", "/auto-assign"} <= set(routes), routes
        assert not set(routes) - set(BODIES), f"add a body for {set(routes) - set(BODIES)}"
        before = await tables(engine)
        refused: dict[str, int] = {}
        for suffix in routes:
            url = f"{COMPLAINTS}/{cid}" + suffix.replace("{approval_id}", str(approval_id))
            response = await api.post(url, BODIES[suffix])
            refused[suffix] = response.status_code
            assert "archived" in response.json()["detail"], (suffix, response.text)
        for verb in ComplaintEvent:
            facts = {name: SAMPLE_FACTS[name] for name in lifecycle.needs(verb)}
            response = await api.post(f"{COMPLAINTS}/{cid}/{verb.value}", facts or None)
            refused[verb.value] = response.status_code
            assert "archived" in response.json()["detail"], (verb, response.text)
        assert set(refused.values()) == {409}, refused
        assert await tables(engine) == before
