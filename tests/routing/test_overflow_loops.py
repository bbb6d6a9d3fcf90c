"""Overflow chains never loop: a queue whose overflow would lead back to a queue already on
the way is refused (a 422 naming ``overflow_queue`` and the loop, nothing changed), even when
two changes would close the loop at once; and a loop stored before that rule ends a contact
instead of passing it round for ever."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.factories import Api, expect
from tests.routing.acd import contact, queue, rows, stored_overflow
from tests.routing.test_admission import status_of, timed_out
from tests.routing.test_contacts_api import refused, snapshot

TRIES = 20


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


async def overflows(engine: AsyncEngine) -> list[tuple[int, int | None]]:
    found = await rows(engine, "SELECT id, overflow_queue_id FROM queues ORDER BY id")
    return [(row.id, row.overflow_queue_id) for row in found]


async def refused_loop(
    engine: AsyncEngine, response: Any, before: dict[str, Any], links: list[Any]
) -> str:
    """The 422's detail, after checking it names ``overflow_queue`` and changed nothing."""
    body = await refused(engine, before, response, 422)
    assert [f["field"] for f in body["fields"]] == ["overflow_queue"]
    assert await overflows(engine) == links
    return str(body["detail"])


def loop_of(*names: str) -> str:
    return f"overflow_queue: {names[-1]!r} overflows back into itself: {' -> '.join(names)}"


class TestOverflowLoopsAreRefused:
    async def test_two_queues_overflowing_into_each_other_is_422_naming_the_loop(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        loans = await queue(api)
        cards = await queue(api, overflow_queue=loans["name"])
        before, links = await snapshot(engine), await overflows(engine)

        patch = {"overflow_queue": cards["name"]}
        response = await api.patch(f"/api/v1/queues/{loans['id']}", patch)

        detail = await refused_loop(engine, response, before, links)
        assert detail == loop_of(loans["name"], cards["name"], loans["name"])

    async def test_three_queues_overflowing_round_a_loop_is_422_naming_the_loop(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        c = await queue(api)
        b = await queue(api, overflow_queue=c["name"])
        a = await queue(api, overflow_queue=b["name"])
        before, links = await snapshot(engine), await overflows(engine)

        response = await api.patch(f"/api/v1/queues/{c['id']}", {"overflow_queue": a["name"]})

        detail = await refused_loop(engine, response, before, links)
        assert detail == loop_of(c["name"], a["name"], b["name"], c["name"])

    async def test_a_queue_overflowing_into_itself_is_422_naming_the_loop(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        q = await queue(api)
        before, links = await snapshot(engine), await overflows(engine)

        response = await api.patch(f"/api/v1/queues/{q['id']}", {"overflow_queue": q["name"]})

        detail = await refused_loop(engine, response, before, links)
        assert detail == loop_of(q["name"], q["name"])

    async def test_a_new_queue_overflowing_into_a_stored_loop_is_422_naming_it(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        a, b = await queue(api), await queue(api)
        await stored_overflow(engine, a, b)
        await stored_overflow(engine, b, a)
        before, links = await snapshot(engine), await overflows(engine)

        body = {"name": "joins-a-loop", "channels": ["chat"], "overflow_queue": a["name"]}
        response = await api.post("/api/v1/queues", body)

        detail = await refused_loop(engine, response, before, links)
        assert detail == loop_of("joins-a-loop", a["name"], b["name"], a["name"])

    async def test_a_chain_that_ends_is_accepted_into_and_out_of_the_middle(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        c = await queue(api)
        b = await queue(api, overflow_queue=c["name"])
        a = await queue(api, overflow_queue=b["name"])

        response = await api.patch(f"/api/v1/queues/{c['id']}", {"overflow_queue": None})
        again = await api.patch(f"/api/v1/queues/{a['id']}", {"overflow_queue": c["name"]})

        assert (response.status_code, again.status_code) == (200, 200)
        assert again.json()["overflow_queue"] == c["name"]


class TestConcurrentChanges:
    async def test_two_changes_that_close_a_loop_at_once_are_never_both_accepted(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        for _ in range(TRIES):
            a, b = await queue(api), await queue(api)

            responses = await asyncio.gather(
                api.patch(f"/api/v1/queues/{a['id']}", {"overflow_queue": b["name"]}),
                api.patch(f"/api/v1/queues/{b['id']}", {"overflow_queue": a["name"]}),
            )

            assert sorted(r.status_code for r in responses) == [200, 422]
            links = dict(await overflows(engine))
            assert [links[a["id"]], links[b["id"]]].count(None) == 1


class TestAStoredLoopEndsTheContact:
    @pytest.mark.parametrize("size", [2, 3])
    async def test_a_contact_timed_out_round_a_stored_loop_ends_before_going_round_again(
        self, api: Api, engine: AsyncEngine, size: int
    ) -> None:
        queues = [await queue(api, max_wait_s=0.2) for _ in range(size)]
        for here, there in zip(queues, queues[1:] + queues[:1], strict=True):
            await stored_overflow(engine, here, there)
        ended = [await timed_out(api, (await contact(api, queues[0]["name"]))["id"])]

        while ended[-1]["transferred_to"] is not None and len(ended) <= size:
            ended.append(await timed_out(api, ended[-1]["transferred_to"]))

        assert [part["queue"] for part in ended] == [q["name"] for q in queues]
        assert ended[-1]["transferred_to"] is None

    async def test_a_contact_transferred_out_of_a_queue_still_overflows_back_into_it(
        self, api: Api
    ) -> None:
        first = await queue(api)
        second = await queue(api, max_wait_s=0.2, overflow_queue=first["name"])
        created = await contact(api, first["name"])
        url = f"/api/v1/contacts/{created['id']}/transfer"
        moved = expect(await api.post(url, {"queue": second["name"]}), 200)

        ended = await timed_out(api, moved["id"])

        assert ended["transferred_to"] is not None
        successor = await status_of(api, ended["transferred_to"])
        assert (successor["queue"], successor["status"]) == (first["name"], "queued")
