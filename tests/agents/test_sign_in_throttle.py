"""Sign-in throttling (POST /api/v1/auth/token): failed attempts limited per username and
per client address in PostgreSQL (429 with Retry-After and a growing block), refused before
any hashing, the same for known and unknown usernames, shared by every instance; and the
bound on password hashes running at once in a process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import text

from app.agents.security import BoundedHasher
from app.config import Settings
from app.main import create_app
from tests.conftest import make_settings
from tests.fixtures.factories import AGENT_PASSWORD, Api, expect
from tests.fixtures.polling import eventually

TOKEN_URL = "/api/v1/auth/token"
WRONG = "not-the-password"


@pytest.fixture
def settings(db: str) -> Settings:
    return make_settings(
        db,
        login_failures_per_user=3,
        login_failures_per_address=100,
        login_window_s=300,
        login_backoff_s=30,
        login_backoff_max_s=100,
    )


@asynccontextmanager
async def client_from(app: FastAPI, address: str) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=app, client=(address, 40000))
    async with AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def sign_in(client: AsyncClient, username: str, password: str = WRONG) -> Response:
    return await client.post(TOKEN_URL, data={"username": username, "password": password})


async def statuses(client: AsyncClient, username: str, times: int) -> list[int]:
    return [(await sign_in(client, username)).status_code for _ in range(times)]


class HashProbe:
    """Wraps a hasher's ``verify``: counts the calls and the most running at once, and can
    hold each call until released."""

    def __init__(self, hasher: BoundedHasher, *, hold: bool = False) -> None:
        self.calls = self.running = self.most = 0
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self._lock = threading.Lock()
        real: Callable[..., Any] = hasher.verify
        hasher.verify = self._wrap(real)  # type: ignore[method-assign]

    def _wrap(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def verify(*args: Any) -> Any:
            with self._lock:
                self.calls += 1
                self.running += 1
                self.most = max(self.most, self.running)
            try:
                assert self.release.wait(10)
                return real(*args)
            finally:
                with self._lock:
                    self.running -= 1

        return verify


def probe(app: FastAPI, *, hold: bool = False) -> HashProbe:
    return HashProbe(app.state.hasher, hold=hold)


async def end_blocks(app: FastAPI) -> None:
    """Every block ends now (the rows' times moved back), windows and strikes kept."""
    async with app.state.engine.begin() as conn:
        await conn.execute(text("UPDATE rate_limits SET blocked_until = now() - interval '1 s'"))


class TestPerUsername:
    async def test_failures_past_the_limit_get_429_with_retry_after(
        self, api: Api, app: FastAPI
    ) -> None:
        agent = await api.agent()
        async with client_from(app, "10.0.0.1") as client:
            assert await statuses(client, agent["username"], 3) == [401, 401, 401]
            refused = await sign_in(client, agent["username"], AGENT_PASSWORD)
        body = expect(refused, 429)
        assert refused.headers["Retry-After"] == "30"
        assert body["error"] == "RateLimited"
        assert body["limit"] == "login.user"
        assert "30 s" in body["detail"]

    async def test_throttled_attempts_are_refused_before_hashing(
        self, api: Api, app: FastAPI
    ) -> None:
        agent = await api.agent()
        hashes = probe(app)
        async with client_from(app, "10.0.0.1") as client:
            await statuses(client, agent["username"], 3)
            assert hashes.calls == 3
            assert await statuses(client, agent["username"], 4) == [429] * 4
        assert hashes.calls == 3

    async def test_the_block_doubles_each_time_up_to_the_maximum(
        self, api: Api, app: FastAPI
    ) -> None:
        agent = await api.agent()
        waits = []
        async with client_from(app, "10.0.0.1") as client:
            await statuses(client, agent["username"], 3)
            for _ in range(3):
                refused = await sign_in(client, agent["username"])
                waits.append(refused.headers["Retry-After"])
                await end_blocks(app)
                # One more try once the block is over.
                assert (await sign_in(client, agent["username"])).status_code == 401
        assert waits == ["30", "60", "100"]

    async def test_a_successful_sign_in_clears_the_failures(self, api: Api, app: FastAPI) -> None:
        agent = await api.agent()
        async with client_from(app, "10.0.0.1") as client:
            await statuses(client, agent["username"], 2)
            expect(await sign_in(client, agent["username"], AGENT_PASSWORD), 200)
            assert await statuses(client, agent["username"], 3) == [401, 401, 401]
            assert (await sign_in(client, agent["username"])).status_code == 429

    async def test_a_waited_out_block_lets_the_right_password_in(
        self, api: Api, app: FastAPI
    ) -> None:
        agent = await api.agent()
        async with client_from(app, "10.0.0.1") as client:
            assert (await statuses(client, agent["username"], 4))[-1] == 429
            await end_blocks(app)
            expect(await sign_in(client, agent["username"], AGENT_PASSWORD), 200)
            assert await statuses(client, agent["username"], 3) == [401, 401, 401]

    async def test_known_and_unknown_usernames_get_the_same_answers(
        self, api: Api, app: FastAPI
    ) -> None:
        agent = await api.agent()
        hashes = probe(app)
        answers = []
        for address, username in (("10.0.0.1", agent["username"]), ("10.0.0.2", "nobody")):
            async with client_from(app, address) as client:
                replies = [await sign_in(client, username) for _ in range(4)]
            answers.append(
                [(r.status_code, r.json(), r.headers.get("Retry-After")) for r in replies]
            )
        assert answers[0] == answers[1]
        assert [status for status, _, _ in answers[0]] == [401, 401, 401, 429]
        assert hashes.calls == 6  # an unknown username costs a hash too


class TestPerAddress:
    @pytest.fixture
    def settings(self, db: str) -> Settings:
        return make_settings(db, login_failures_per_address=6, login_backoff_s=30)

    async def test_failures_from_one_address_throttle_it_for_every_username(
        self, api: Api, app: FastAPI
    ) -> None:
        agents = [await api.agent() for _ in range(3)]
        async with client_from(app, "10.0.0.9") as client:
            for agent in agents:
                await statuses(client, agent["username"], 2)
            refused = await sign_in(client, "someone-else", AGENT_PASSWORD)
        assert expect(refused, 429)["limit"] == "login.address"
        assert refused.headers["Retry-After"] == "30"
        async with client_from(app, "10.0.0.10") as other:
            expect(await sign_in(other, agents[0]["username"], AGENT_PASSWORD), 200)

    async def test_successful_sign_ins_do_not_count_against_the_address(
        self, api: Api, app: FastAPI
    ) -> None:
        agent = await api.agent()
        async with client_from(app, "10.0.0.9") as client:
            for _ in range(8):
                expect(await sign_in(client, agent["username"], AGENT_PASSWORD), 200)


class TestAcrossInstances:
    async def test_failures_on_one_instance_throttle_the_other(
        self, api: Api, app: FastAPI, settings: Settings
    ) -> None:
        agent = await api.agent()
        second = create_app(settings)
        async with (
            second.router.lifespan_context(second),
            client_from(app, "10.0.0.1") as one,
            client_from(second, "10.0.0.1") as two,
        ):
            assert await statuses(one, agent["username"], 2) == [401, 401]
            assert await statuses(two, agent["username"], 1) == [401]
            assert (await sign_in(one, agent["username"], AGENT_PASSWORD)).status_code == 429
            assert (await sign_in(two, agent["username"], AGENT_PASSWORD)).status_code == 429


class TestHashBound:
    @pytest.fixture
    def settings(self, db: str) -> Settings:
        return make_settings(db, hash_concurrency=2, login_failures_per_address=100)

    async def test_concurrent_sign_ins_never_hash_more_than_the_bound_at_once(
        self, app: FastAPI
    ) -> None:
        hashes = probe(app, hold=True)
        gate = app.state.hasher.gate
        async with client_from(app, "10.0.0.1") as client:
            tries = [asyncio.create_task(sign_in(client, f"user{n}")) for n in range(6)]
            await eventually(
                lambda: _now(hashes.running + gate.waiting == 6),
                what="all six at the gate",
                within=3,
            )
            hashes.release.set()
            replies = await asyncio.gather(*tries)
        assert [r.status_code for r in replies] == [401] * 6
        assert hashes.most == 2

    async def test_past_a_full_queue_a_sign_in_is_refused_with_503_and_retry_after(
        self, app: FastAPI
    ) -> None:
        hashes = probe(app, hold=True)
        gate = app.state.hasher.gate
        async with client_from(app, "10.0.0.1") as client:
            tries = [asyncio.create_task(sign_in(client, f"user{n}")) for n in range(10)]
            await eventually(lambda: _now(gate.waiting == 8), what="a full queue")
            refused = await sign_in(client, "one-too-many")
            hashes.release.set()
            replies = await asyncio.gather(*tries)
        assert expect(refused, 503)["error"] == "HashingBusy"
        assert refused.headers["Retry-After"] == "1"
        assert [r.status_code for r in replies] == [401] * 10


async def _now(value: bool) -> bool:
    return value
