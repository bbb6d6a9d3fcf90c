"""What the dispatcher reads: supply from the agents' rows, demand in a window per queue,
and the write's re-check of an agent's skills (the routing step's and the contact's own).

The centre tests run a real app (dispatcher, timers, event hub) on the test database; the
round tests drive ``Rounds`` by hand on a connection of their own, with the app's own
dispatcher off, so that a change can be made between a round's decision and its write.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable, Sequence

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from app.config import Settings
from app.db import connect_driver, plain_url
from app.routing.board import AgentRow
from app.routing.rounds import Rounds, decide
from tests.conftest import make_settings
from tests.fixtures.factories import ADMIN_PASSWORD, Api, expect
from tests.routing.acd import (
    available_agent,
    contact,
    instance,
    offer_for,
    pending_offers,
    queue,
)

PROMPTLY_S = 5.0  # well past the dispatcher's tick, far below its board refresh


@pytest.fixture
async def bystander(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A transaction left open, with a transaction id, in another database on the same
    server: it holds back every snapshot's xmin on the server, so the event feed too."""
    server = os.environ["TEST_DATABASE_URL"]
    name = f"hotline_bystander_{os.getpid()}"
    admin = await asyncpg.connect(plain_url(server))
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(plain_url(make_url(server).set(database=name).render_as_string()))
    try:
        yield conn
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def hold_open(conn: asyncpg.Connection) -> None:
    await conn.execute("BEGIN")
    await conn.fetchval("SELECT pg_current_xact_id()")


async def centre(settings: Settings) -> AsyncIterator[Api]:
    async with instance(settings) as (_, client):
        yield await Api.signed_in(client, "admin", ADMIN_PASSWORD)


@pytest.fixture
async def blind_to_events(db: str) -> AsyncIterator[Api]:
    """A centre whose dispatcher would not read every agent again for ten minutes."""
    async for api in centre(make_settings(db, dispatch_board_refresh_s=600)):
        yield api


@pytest.fixture
async def small_window(db: str) -> AsyncIterator[Api]:
    """A centre whose dispatcher reads at most three waiting contacts of a queue a round."""
    async for api in centre(make_settings(db, dispatch_batch=3)):
        yield api


@pytest.fixture
async def no_dispatcher(db: str) -> AsyncIterator[Api]:
    async for api in centre(make_settings(db, dispatcher_enabled=False)):
        yield api


@pytest.fixture
async def rounds(db: str, no_dispatcher: Api) -> AsyncIterator[Rounds]:
    """Rounds run by the test, on a connection of their own."""
    conn = await connect_driver(db)
    try:
        yield Rounds(conn, make_settings(db))
    finally:
        await conn.close()


async def busy_agent_beside_a_waiting_contact(api: Api) -> tuple[Api, int]:
    """An agent in wrap-up on its only chat until told otherwise, and a second contact
    waiting for it: (the agent's console, the waiting contact's id)."""
    q = await queue(api, wrap_up_s=600)
    console = await available_agent(api, capacity={"chat": 1})
    first = await contact(api, q["name"])
    offer = await offer_for(console, first["id"])
    expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
    waiting = await contact(api, q["name"])
    expect(await console.post(f"/api/v1/contacts/{first['id']}/complete", {}), 200)
    return console, waiting["id"]


class TestSupplyIsReadFromTheAgentsRows:
    async def test_agent_finishing_wrap_up_while_another_database_holds_a_transaction_is_offered(
        self, blind_to_events: Api, bystander: asyncpg.Connection
    ) -> None:
        console, waiting = await busy_agent_beside_a_waiting_contact(blind_to_events)
        assert not await pending_offers(console)
        await hold_open(bystander)

        expect(await console.post(f"/api/v1/agents/{console.me['id']}/wrap-up/done"), 200)

        await offer_for(console, waiting, within=PROMPTLY_S)

    async def test_agent_made_available_while_another_database_holds_a_transaction_is_offered(
        self, blind_to_events: Api, bystander: asyncpg.Connection
    ) -> None:
        api = blind_to_events
        q = await queue(api)
        console = await available_agent(api, capacity={"chat": 1})
        me = f"/api/v1/agents/{console.me['id']}/status"
        expect(await console.post(me, {"status": "away", "reason": "break"}), 200)
        waiting = await contact(api, q["name"])
        await hold_open(bystander)

        expect(await console.post(me, {"status": "available"}), 200)

        await offer_for(console, waiting["id"], within=PROMPTLY_S)

    @pytest.mark.parametrize(
        ("change", "field", "expected"),
        [
            (
                "UPDATE agent_channels SET capacity = 1 WHERE agent_id = $1 AND channel = 'chat'",
                "capacity",
                {"chat": 1, "voice": 1},
            ),
            (
                "UPDATE agent_channels SET load = 1 WHERE agent_id = $1 AND channel = 'chat'",
                "load",
                {"chat": 1, "voice": 0},
            ),
            (
                "INSERT INTO agent_channels (agent_id, channel, capacity) VALUES ($1, 'email', 3)",
                "capacity",
                {"chat": 2, "voice": 1, "email": 3},
            ),
            (
                "DELETE FROM agent_channels WHERE agent_id = $1 AND channel = 'voice'",
                "capacity",
                {"chat": 2},
            ),
            ("UPDATE agent_skills SET level = 2 WHERE agent_id = $1", "skills", {"cards": 2}),
            (
                "INSERT INTO agent_skills (agent_id, skill_id, level) "
                "SELECT $1, id, 7 FROM skills WHERE name = 'loans'",
                "skills",
                {"cards": 5, "loans": 7},
            ),
            ("DELETE FROM agent_skills WHERE agent_id = $1", "skills", {}),
        ],
        ids=[
            "capacity-changed",
            "load-moved",
            "channel-added",
            "channel-removed",
            "skill-level-changed",
            "skill-added",
            "skill-removed",
        ],
    )
    async def test_a_change_to_an_agents_channels_or_skills_alone_reaches_the_board(
        self,
        no_dispatcher: Api,
        rounds: Rounds,
        db: str,
        change: str,
        field: str,
        expected: dict[str, int],
    ) -> None:
        """Written without an event and without touching the agent's row: triggers stamp
        the agent for any change to its channels or skills, however it was made."""
        api = no_dispatcher
        await api.skill("cards")
        await api.skill("loans")
        console = await available_agent(
            api, capacity={"chat": 2, "voice": 1}, skills=[{"skill": "cards", "level": 5}]
        )
        agent_id = console.me["id"]
        await rounds.read()
        await _execute(db, change, agent_id)

        await rounds.read()

        row = rounds.board.row(agent_id)
        assert row is not None
        assert dict(getattr(row, field)) == expected

    async def test_while_a_transaction_holds_xmin_back_each_change_is_read_once(
        self,
        no_dispatcher: Api,
        rounds: Rounds,
        db: str,
        bystander: asyncpg.Connection,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Every round reads from the held-back xmin, yet a version already read is not
        read again, and a newer one is."""
        console = await available_agent(no_dispatcher, capacity={"chat": 3})
        agent_id = console.me["id"]
        await rounds.read()
        await hold_open(bystander)
        asked = _spy_on_updates(rounds, monkeypatch)
        capacities = []
        for capacity in (2, None, 1):
            if capacity is not None:
                await _execute(
                    db,
                    "UPDATE agent_channels SET capacity = $2 WHERE agent_id = $1",
                    agent_id,
                    capacity,
                )
            await rounds.read()
            row = rounds.board.row(agent_id)
            assert row is not None
            capacities.append(row.capacity["chat"])

        assert capacities == [2, 2, 1]
        assert asked == [[agent_id], [agent_id]]


class TestOwnOffersOnTheBoard:
    async def test_an_offer_is_on_the_board_at_once_and_its_agent_is_not_read_again(
        self, no_dispatcher: Api, rounds: Rounds, db: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        api = no_dispatcher
        q = await queue(api)
        console = await available_agent(api, capacity={"chat": 2})
        await contact(api, q["name"])
        plan = await rounds.read()
        await rounds.write(plan, decide(plan, make_settings(db)))
        asked = _spy_on_updates(rounds, monkeypatch)

        await rounds.read()

        row = rounds.board.row(console.me["id"])
        assert row is not None
        assert dict(row.load) == {"chat": 1}
        assert asked == []

    async def test_a_change_committed_between_a_rounds_read_and_its_write_is_not_lost(
        self, no_dispatcher: Api, rounds: Rounds, db: str
    ) -> None:
        """The offer is written over the newer version of the agent's row: the board,
        which read the older one, reads the agent again rather than add the offer to it."""
        api = no_dispatcher
        q = await queue(api)
        console = await available_agent(api, capacity={"chat": 2})
        agent_id = console.me["id"]
        await contact(api, q["name"])
        plan = await rounds.read()
        matches = decide(plan, make_settings(db))
        await _execute(db, "UPDATE agent_channels SET capacity = 3 WHERE agent_id = $1", agent_id)
        assert len(await rounds.write(plan, matches)) == 1

        await rounds.read()

        row = rounds.board.row(agent_id)
        assert row is not None
        assert (dict(row.capacity), dict(row.load)) == ({"chat": 3}, {"chat": 1})


class TestWindowPerQueue:
    async def test_free_agent_is_offered_a_contact_queued_behind_other_queues_backlogs(
        self, small_window: Api
    ) -> None:
        """Four queues need a skill nobody has; the first holds more contacts than the
        window, and every one of them is more urgent than the open queue's contact."""
        api = small_window
        nobody = await api.skill()
        steps = [{"skills": [{"skill": nobody["name"], "min_level": 1}]}]
        blocked = [await queue(api, steps=steps) for _ in range(4)]
        open_queue = await queue(api)
        console = await available_agent(api, capacity={"chat": 1})
        for index, q in enumerate(blocked):
            for _ in range(5 if index == 0 else 2):
                await contact(api, q["name"])

        waiting = await contact(api, open_queue["name"])

        await offer_for(console, waiting["id"], within=PROMPTLY_S)


class TestTheWriteRechecksSkills:
    async def test_agent_whose_skill_was_removed_after_the_decision_is_not_offered(
        self, no_dispatcher: Api, rounds: Rounds, db: str
    ) -> None:
        api = no_dispatcher
        skill = await api.skill()
        q = await queue(api, steps=[{"skills": [{"skill": skill["name"], "min_level": 3}]}])
        console = await available_agent(
            api, capacity={"chat": 1}, skills=[{"skill": skill["name"], "level": 5}]
        )
        waiting = await contact(api, q["name"])
        plan = await rounds.read()
        matches = decide(plan, make_settings(db))
        assert [(m.contact.id, m.agent_id) for m in matches] == [(waiting["id"], console.me["id"])]

        expect(await api.patch(f"/api/v1/agents/{console.me['id']}", {"skills": []}), 200)
        made = await rounds.write(plan, matches)

        assert made == []
        assert await pending_offers(console) == []
        assert expect(await api.get(f"/api/v1/contacts/{waiting['id']}"), 200)["status"] == "queued"

    async def test_agent_who_lost_the_contacts_own_skill_after_the_decision_is_not_offered(
        self, no_dispatcher: Api, rounds: Rounds, db: str
    ) -> None:
        """The agent keeps the step's skill and loses only the one the contact requires."""
        api = no_dispatcher
        step_skill, own_skill = await api.skill(), await api.skill()
        q = await queue(api, steps=[{"skills": [{"skill": step_skill["name"], "min_level": 3}]}])
        kept = {"skill": step_skill["name"], "level": 5}
        console = await available_agent(
            api, capacity={"chat": 1}, skills=[kept, {"skill": own_skill["name"], "level": 5}]
        )
        needs = [{"skill": own_skill["name"], "min_level": 4}]
        waiting = await contact(api, q["name"], skills=needs)
        plan = await rounds.read()
        matches = decide(plan, make_settings(db))
        assert [(m.contact.id, m.agent_id) for m in matches] == [(waiting["id"], console.me["id"])]

        expect(await api.patch(f"/api/v1/agents/{console.me['id']}", {"skills": [kept]}), 200)
        made = await rounds.write(plan, matches)

        assert made == []
        assert await pending_offers(console) == []
        assert expect(await api.get(f"/api/v1/contacts/{waiting['id']}"), 200)["status"] == "queued"

    async def test_agent_still_holding_the_contacts_own_skill_is_offered(
        self, no_dispatcher: Api, rounds: Rounds, db: str
    ) -> None:
        api = no_dispatcher
        own_skill, other = await api.skill(), await api.skill()
        q = await queue(api)
        held = {"skill": own_skill["name"], "level": 4}
        console = await available_agent(
            api, capacity={"chat": 1}, skills=[held, {"skill": other["name"], "level": 5}]
        )
        waiting = await contact(
            api, q["name"], skills=[{"skill": own_skill["name"], "min_level": 4}]
        )
        plan = await rounds.read()
        matches = decide(plan, make_settings(db))

        expect(await api.patch(f"/api/v1/agents/{console.me['id']}", {"skills": [held]}), 200)
        made = await rounds.write(plan, matches)

        assert [(m.contact_id, m.agent_id) for m in made] == [(waiting["id"], console.me["id"])]


async def _execute(db: str, sql: str, *args: object) -> None:
    conn = await asyncpg.connect(plain_url(db))
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


def _spy_on_updates(rounds: Rounds, monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The agents each later read of the board's agents asks for (the board is kept)."""
    asked: list[list[int]] = []
    update = rounds.board.update

    def spy(ids: Sequence[int], rows: Iterable[AgentRow]) -> None:
        asked.append(list(ids))
        update(ids, rows)

    monkeypatch.setattr(rounds.board, "update", spy)
    return asked
