"""Validly signed tokens with claims out of range (an id past BIGINT, a negative or text
version, an expiry past any date or not a number) are a 401 with a clear detail, never a
500: ``read_token`` refuses them for every caller."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from httpx import AsyncClient
from hypothesis import given, settings
from hypothesis import strategies as st

from app.agents.security import ALGORITHM, TokenClaims, TokenError, read_token

SECRET = "test-secret-" + "x" * 32  # tests/conftest.py's signing secret
ME_URL = "/api/v1/agents/me"
LATER = int(time.time()) + 3600

claim_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),
    st.text(max_size=30),
    st.from_regex(r"\A-?[0-9]{1,40}\Z"),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
# Each claim is either what ``issue_token`` writes or anything at all, so most tokens are
# valid but for one or two claims.
claims = st.fixed_dictionaries(
    {
        "sub": st.one_of(st.just("1"), claim_values),
        "ver": st.one_of(st.just(0), claim_values),
        "exp": st.one_of(st.just(LATER), claim_values),
        "typ": st.one_of(st.just("access"), claim_values),
    },
    optional={"iat": claim_values, "nbf": claim_values},
)


def sign(payload: dict[str, Any]) -> str:
    return jwt.encode(payload, SECRET, algorithm=ALGORITHM)


def outcome(payload: dict[str, Any]) -> TokenClaims | TokenError:
    """What reading the signed payload gives: its claims, or the refusal."""
    try:
        return read_token(SECRET, sign(payload))
    except TokenError as exc:
        return exc


class TestReadToken:
    @settings(max_examples=400, deadline=None)
    @given(claims)
    def test_any_signed_claims_are_read_or_refused_with_a_token_error(
        self, payload: dict[str, Any]
    ) -> None:
        read = outcome(payload)
        if isinstance(read, TokenError):
            assert str(read).startswith("token")
        else:
            assert 1 <= read.agent_id <= 2**63 - 1
            assert 0 <= read.version <= 2**31 - 1

    @pytest.mark.parametrize(
        ("changes", "detail"),
        [
            ({"sub": str(2**70)}, "subject"),
            ({"sub": "0"}, "subject"),
            ({"ver": -1}, "version"),
            ({"ver": "1"}, "version"),
            ({"ver": 2**40}, "version"),
            ({"exp": 10**400}, "expiry"),
            ({"exp": 253_402_300_800}, "expiry"),
            ({"exp": "99999999999"}, "expiry"),
        ],
    )
    def test_out_of_range_claims_are_named(self, changes: dict[str, Any], detail: str) -> None:
        payload = {"sub": "1", "ver": 0, "exp": LATER, "typ": "access", **changes}
        with pytest.raises(TokenError, match=detail):
            read_token(SECRET, sign(payload))


class TestOverHttp:
    @pytest.mark.parametrize(
        "changes",
        [
            {"sub": str(2**70)},
            {"sub": "9" * 500},
            {"ver": -5},
            {"ver": "0"},
            {"ver": 2**70},
            {"exp": 10**400},
            {"exp": 1e308},
            {"exp": [1]},
            {"iat": {"a": 1}},
            {"nbf": 10**400},
        ],
    )
    async def test_a_signed_token_with_bad_claims_is_a_401(
        self, client: AsyncClient, changes: dict[str, Any]
    ) -> None:
        payload = {"sub": "1", "ver": 0, "exp": LATER, "typ": "access", **changes}
        response = await client.get(ME_URL, headers={"Authorization": f"Bearer {sign(payload)}"})
        assert response.status_code == 401, response.text
        body = response.json()
        assert body["error"] == "Unauthorized"
        assert body["detail"].startswith("token")
