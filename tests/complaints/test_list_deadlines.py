"""The list's ``overdue`` and ``at_risk`` filters: read at the desk's clock (injected), as the
wallboard reads the resolution clock (three days; at risk from 80 % of it)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import create_async_engine

from app.agents.models import Role
from app.agents.permissions import Principal
from app.complaints.service import Filters, list_complaints, list_statement
from tests.complaints.test_public import PHONE, lookup
from tests.complaints.test_registration import (
    COMPLAINTS,
    START,
    Clock,
    app,
    clock,
    complaint_body,
    register,
)
from tests.complaints.test_transitions import move
from tests.fixtures.factories import Api, expect

HOUR = timedelta(hours=1)
__all__ = ["app", "clock"]  # fixtures shared with the registration tests


async def listed(api: Api, **params: str) -> list[str]:
    page = expect(await api.get(COMPLAINTS, params={"limit": 100, **params}), 200)
    return [c["reference"] for c in page["items"]]


class TestDeadlineFilters:
    async def test_overdue_and_at_risk_follow_the_resolution_clock(
        self, api: Api, clock: Clock
    ) -> None:
        late = (await register(api, complaint_body()))["reference"]
        clock.now = START + 12 * HOUR
        risky = (await register(api, complaint_body()))["reference"]
        clock.now = START + 24 * HOUR
        fine = (await register(api, complaint_body()))["reference"]
        closed = await register(api, complaint_body())
        await move(api, closed["id"], "withdraw")
        # 73 h on: the first is past its three days, the second has used 61 of 72 h (85 %),
        # the third 49 h (68 %); the withdrawn one runs no clock.
        clock.now = START + 73 * HOUR
        assert await listed(api, overdue="true") == [late]
        assert await listed(api, at_risk="true") == [risky]
        assert await listed(api, overdue="false") == [risky, fine, closed["reference"]]
        assert await listed(api, overdue="false", at_risk="false") == [fine, closed["reference"]]
        assert await listed(api, overdue="true", at_risk="true") == []
        # With the other filters, and paged.
        assert await listed(api, overdue="false", status="withdrawn") == [closed["reference"]]
        first = expect(await api.get(COMPLAINTS, params={"overdue": "false", "limit": 1}), 200)
        assert [c["reference"] for c in first["items"]] == [risky]
        rest = await listed(api, overdue="false", cursor=first["next_cursor"])
        assert rest == [fine, closed["reference"]]

    async def test_an_agent_filters_only_what_they_see(self, api: Api, clock: Clock) -> None:
        agent_row = await api.agent()
        agent = await api.signed_in_as(agent_row)
        theirs = await register(agent, complaint_body())
        await register(api, complaint_body())  # a supervisor's, overdue too
        clock.now = START + 73 * HOUR
        assert await listed(agent, overdue="true") == [theirs["reference"]]

    async def test_a_value_that_is_not_a_boolean_is_named(self, api: Api) -> None:
        refused = expect(await api.get(COMPLAINTS, params={"overdue": "maybe"}), 422)
        assert [f["field"] for f in refused["fields"]] == ["overdue"]
        refused = expect(await api.get(COMPLAINTS, params={"at_risk": "xyz"}), 422)
        assert [f["field"] for f in refused["fields"]] == ["at_risk"]


class TestAPausedComplaintsDeadline:
    async def test_moves_on_with_the_pause_wherever_the_complaint_is_read(
        self, api: Api, client: AsyncClient, clock: Clock
    ) -> None:
        agent = await api.agent()
        body = complaint_body(customer={"id": (await api.customer())["id"]})
        done = await register(api, body)
        cid = done["id"]
        await move(api, cid, "assign", {"assignee": agent["id"]})
        await move(api, cid, "start")
        clock.now = START + 24 * HOUR
        await move(api, cid, "pause", {"reason": "waiting_for_customer"})
        # Paused two days on: the three days end two days later than they would have, and
        # nothing says the complaint is late.
        clock.now = START + 72 * HOUR
        due = START + timedelta(days=5)
        case = expect(await api.get(f"{COMPLAINTS}/{cid}"), 200)
        [resolution] = [c for c in case["clocks"] if c["kind"] == "resolution"]
        assert datetime.fromisoformat(resolution["due_at"]) == due
        assert datetime.fromisoformat(case["due_at"]) == due
        page = expect(await api.get(COMPLAINTS, params={"status": "paused"}), 200)
        assert [datetime.fromisoformat(c["due_at"]) for c in page["items"]] == [due]
        assert await listed(api, overdue="true") == []
        found = expect(await lookup(client, done["reference"], PHONE), 200)
        assert datetime.fromisoformat(found["due_at"]) == due
        exported = await api.get(f"{COMPLAINTS}/export", params={"format": "json"})
        assert exported.status_code == 200, exported.text
        [row] = json.loads(exported.content)["complaints"]
        assert datetime.fromisoformat(row["due_at"]) == due
        again = await register(api, {**body, "channel": "web"}, status=200)
        assert (again["id"], again["linked"]) == (cid, True)
        assert datetime.fromisoformat(again["due_at"]) == due
        # Resumed, the deadline stays where the pause left it.
        resumed = await move(api, cid, "resume")
        assert datetime.fromisoformat(resumed["due_at"]) == due


MANY = 40_000  # past the driver's 32,767 parameters a statement may carry
ADMIN = Principal(id=1, username="admin", role=Role.admin, site=None)


def bound(filters: Filters) -> int:
    """How many parameters the list's statement sends the driver, ``IN`` lists expanded."""
    stmt = list_statement(principal=ADMIN, filters=filters, after_id=0, limit=100)
    # The app's driver's dialect; an engine that never connects.
    dialect = create_async_engine("postgresql+asyncpg://").dialect
    compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    return len(compiled.positiontup or ())


class TestManyIds:
    def test_the_ids_filtered_are_one_parameter_however_many_they_are(self) -> None:
        few = Filters(only_ids=frozenset({1, 2, 3}), not_ids=frozenset({4, 5}))
        many = Filters(
            only_ids=frozenset(range(1, MANY + 1)),
            not_ids=frozenset(range(MANY + 1, 2 * MANY + 1)),
        )
        none = Filters()
        assert bound(few) == bound(many) == bound(none) + 2

    async def test_a_list_of_more_ids_than_the_driver_takes_answers_on_postgresql(
        self, api: Api, app: FastAPI
    ) -> None:
        kept, dropped, other = [(await register(api, complaint_body()))["id"] for _ in range(3)]
        only = frozenset({kept, dropped, *range(10**9, 10**9 + MANY)})
        never = frozenset({dropped, *range(2 * 10**9, 2 * 10**9 + MANY)})
        async with app.state.sessionmaker() as session:
            found = await list_complaints(
                session, principal=ADMIN, filters=Filters(only_ids=only, not_ids=never)
            )
        assert [c.id for c in found] == [kept]
        assert other not in {c.id for c in found}
