"""Tokens stop working when what they were issued for changes: the password, the role, the
site or the account's activation. Every earlier token is refused, also after a reactivation;
changes that keep the account's access keep its tokens."""

from __future__ import annotations

from typing import Any

import pytest

from app.agents.dependencies import DISABLED, REVOKED
from tests.fixtures.factories import Api, expect

ME_URL = "/api/v1/agents/me"


async def change(api: Api, agent: dict[str, Any], body: dict[str, Any]) -> None:
    expect(await api.patch(f"/api/v1/agents/{agent['id']}", body), 200)


class TestRevokingChanges:
    @pytest.mark.parametrize(
        "body",
        [
            {"password": "a-brand-new-password"},
            {"role": "supervisor"},
            {"site": "beijing"},
        ],
        ids=["password", "role", "site"],
    )
    async def test_change_revokes_every_earlier_token(self, api: Api, body: dict[str, Any]) -> None:
        agent = await api.agent()
        phone, laptop = await api.signed_in_as(agent), await api.signed_in_as(agent)
        await change(api, agent, body)
        for stale in (phone, laptop):
            assert expect(await stale.get(ME_URL), 401)["detail"] == REVOKED

    async def test_deactivation_refuses_the_token_as_disabled(self, api: Api) -> None:
        agent = await api.agent()
        console = await api.signed_in_as(agent)
        await change(api, agent, {"active": False})
        assert expect(await console.get(ME_URL), 401)["detail"] == DISABLED

    async def test_token_from_before_deactivation_stays_refused_after_reactivation(
        self, api: Api
    ) -> None:
        agent = await api.agent()
        console = await api.signed_in_as(agent)
        await change(api, agent, {"active": False})
        await change(api, agent, {"active": True})
        assert expect(await console.get(ME_URL), 401)["detail"] == REVOKED
        fresh = await api.signed_in_as(agent)
        expect(await fresh.get(ME_URL), 200)

    async def test_a_new_sign_in_carries_the_new_role(self, api: Api) -> None:
        agent = await api.agent()
        await change(api, agent, {"role": "supervisor"})
        promoted = await api.signed_in_as(agent)
        expect(await promoted.post("/api/v1/skills", {"name": "after_promotion"}), 201)


class TestChangesThatKeepAccess:
    async def test_same_role_site_and_activation_keep_tokens(self, api: Api) -> None:
        agent = await api.agent()
        console = await api.signed_in_as(agent)
        await change(api, agent, {"role": "agent", "site": "shanghai", "active": True})
        expect(await console.get(ME_URL), 200)

    async def test_other_fields_keep_tokens(self, api: Api) -> None:
        agent = await api.agent()
        console = await api.signed_in_as(agent)
        body = {"name": "Renamed", "team": "night", "capacity": {"chat": 3}}
        await change(api, agent, body)
        expect(await console.get(ME_URL), 200)

    async def test_change_to_another_agent_keeps_this_agents_tokens(self, api: Api) -> None:
        agent, other = await api.agent(), await api.agent()
        console = await api.signed_in_as(agent)
        await change(api, other, {"password": "their-new-password", "active": False})
        expect(await console.get(ME_URL), 200)
