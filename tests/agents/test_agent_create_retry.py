"""A retried POST /agents (same Idempotency-Key) replays the first agent only for the same
request: a different body, a different password included, is the idempotency mismatch
(409), and the password is never stored in the fingerprint where a guess could be checked."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

from app.agents.schemas import AgentCreate
from app.idempotency import fingerprint
from tests.fixtures.factories import AGENT_PASSWORD, Api, expect, unique

AGENTS_URL = "/api/v1/agents"


def new_agent(**overrides: Any) -> dict[str, Any]:
    body = {
        "name": "Retry Agent",
        "username": unique("retry"),
        "password": AGENT_PASSWORD,
        "site": "shanghai",
        "capacity": {"voice": 1},
    }
    return {**body, **overrides}


async def create(api: Api, body: dict[str, Any], key: str) -> Any:
    return await api.post(AGENTS_URL, body, headers={"Idempotency-Key": key})


class TestRetriedCreate:
    async def test_the_same_request_replays_the_first_agent(self, api: Api) -> None:
        body = new_agent()
        first = expect(await create(api, body, "k1"), 201)
        again = expect(await create(api, body, "k1"), 201)
        assert again == first

    async def test_a_different_password_is_the_idempotency_mismatch(self, api: Api) -> None:
        body = new_agent()
        expect(await create(api, body, "k1"), 201)
        retry = expect(await create(api, {**body, "password": "another-password-2"}, "k1"), 409)
        assert retry["error"] == "Conflict"
        assert "Idempotency-Key 'k1'" in retry["detail"]
        # The first password still signs in; the second was never stored.
        await api.as_user(body["username"], AGENT_PASSWORD)

    async def test_a_different_body_is_the_idempotency_mismatch(self, api: Api) -> None:
        body = new_agent()
        expect(await create(api, body, "k1"), 201)
        expect(await create(api, {**body, "name": "Someone Else"}, "k1"), 409)

    async def test_the_stored_fingerprint_cannot_be_checked_against_a_guessed_password(
        self, api: Api, app: FastAPI
    ) -> None:
        body = new_agent()
        expect(await create(api, body, "k1"), 201)
        async with app.state.engine.connect() as conn:
            stored = (await conn.execute(text("SELECT request_hash FROM idempotency_keys"))).all()
        row_text = json.dumps([list(r) for r in stored])
        dumped = AgentCreate.model_validate(body).model_dump(mode="json")
        guesses = [
            fingerprint(dumped),
            fingerprint(
                {**dumped, "password": hashlib.sha256(AGENT_PASSWORD.encode()).hexdigest()}
            ),
            hashlib.sha256(AGENT_PASSWORD.encode()).hexdigest(),
        ]
        assert AGENT_PASSWORD not in row_text
        assert not any(guess in row_text for guess in guesses)
