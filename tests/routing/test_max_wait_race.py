"""A contact admitted while its queue's max wait is being changed leaves by the new max wait.

The change re-times the contacts already waiting, then commits; an admission running
meanwhile must not read the old max wait and insert its contact after the re-timing has
looked (it would keep the old max wait, or none, for ever). The admission reads the queue
it admits into with a share lock: it waits for the change to commit and reads the new one.

The test stops the change half-way, after it has written the queue and before it commits,
by holding the lock of a waiting contact's max-wait timer, which the change re-times."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import asyncpg
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import plain_url
from app.routing.contacts import MAX_WAIT
from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually
from tests.routing.acd import contact, queue

OLD_S, NEW_S = 600.0, 30.0


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


async def waiting_for_a_lock(conn: asyncpg.Connection, query_part: str) -> bool:
    """Whether a backend running a statement containing ``query_part`` waits for a lock."""
    found = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND datname = current_database() AND query ILIKE $1",
        f"%{query_part}%",
    )
    return bool(found)


async def max_wait_due(conn: asyncpg.Connection, contact_id: int) -> datetime | None:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT due_at FROM timers WHERE kind = $1 AND subject = $2", MAX_WAIT, str(contact_id)
    )


async def arrived(conn: asyncpg.Connection, contact_id: int) -> datetime:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT routing_started_at FROM contacts WHERE id = $1", contact_id
    )


async def test_a_contact_admitted_during_a_max_wait_change_gets_the_new_one(
    api: Api, engine: AsyncEngine
) -> None:
    q = await queue(api, max_wait_s=OLD_S)
    before = await contact(api, q["name"])  # nobody can take it: it waits, timed
    side = await asyncpg.connect(plain_url(engine.url.render_as_string(hide_password=False)))
    watch = await asyncpg.connect(plain_url(engine.url.render_as_string(hide_password=False)))
    try:
        held = side.transaction()
        await held.start()
        await side.execute(
            "SELECT 1 FROM timers WHERE kind = $1 AND subject = $2 FOR UPDATE",
            MAX_WAIT,
            str(before["id"]),
        )
        change = asyncio.ensure_future(
            api.patch(f"/api/v1/queues/{q['name']}", {"max_wait_s": NEW_S})
        )

        async def change_stopped() -> bool | None:
            assert not change.done(), change.result()
            return await waiting_for_a_lock(watch, "INSERT INTO timers") or None

        await eventually(change_stopped, what="the change waiting for the timer's lock")
        admission = asyncio.ensure_future(contact(api, q["name"]))

        async def admission_done_or_waiting() -> bool | None:
            return admission.done() or await waiting_for_a_lock(watch, "queues") or None

        await eventually(admission_done_or_waiting, what="the admission ending or waiting")
        await held.rollback()
        expect(await change, 200)
        admitted = await admission
        due = await max_wait_due(watch, admitted["id"])
        assert due is not None
        assert due == await arrived(watch, admitted["id"]) + timedelta(seconds=NEW_S)
        earlier = await max_wait_due(watch, before["id"])
        assert earlier == await arrived(watch, before["id"]) + timedelta(seconds=NEW_S)
    finally:
        await side.close()
        await watch.close()
