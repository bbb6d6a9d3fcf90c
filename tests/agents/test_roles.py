"""The roles matrix: who may read, change and create whom, through the HTTP API.

The cast: the admin, a supervisor and an agent (both of site shanghai) act; the targets are
the actor themselves, an agent of shanghai, an agent of beijing, another supervisor of
shanghai and another admin.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fixtures.factories import AGENT_PASSWORD, Api, expect, login, unique

AGENTS = "/api/v1/agents"
PRIVATE_FIELDS = {"username", "endpoint", "capacity"}

ACTORS = ("admin", "supervisor", "agent")
TARGETS = ("self", "agent_same_site", "agent_other_site", "supervisor_same_site", "admin")

# Is the full record (with private fields) shown to the actor?
FULL_VIEW = {
    "admin": set(TARGETS),
    "supervisor": {"self", "agent_same_site"},
    "agent": {"self"},
}
# May the actor change the target's skills? (200 or 403)
MANAGES = {
    "admin": set(TARGETS),
    "supervisor": {"self", "agent_same_site"},
    "agent": set(),
}
# May the actor change the target's status? Agents may change their own.
SETS_STATUS = {
    "admin": set(TARGETS),
    "supervisor": {"self", "agent_same_site"},
    "agent": {"self"},
}
# Status of POST /agents: (agent at shanghai, agent at beijing, supervisor at shanghai).
CREATES = {
    "admin": (201, 201, 201),
    "supervisor": (201, 403, 403),
    "agent": (403, 403, 403),
}


@dataclass
class Cast:
    admin: Api
    users: dict[str, dict[str, Any]]
    sessions: dict[str, Api]


@pytest.fixture
async def cast(api: Api) -> Cast:
    await api.skill("credit_card")
    users: dict[str, dict[str, Any]] = {"admin": api.me}
    specs = {
        "supervisor": {"role": "supervisor", "site": "shanghai"},
        "agent": {"role": "agent", "site": "shanghai"},
        "agent_same_site": {"role": "agent", "site": "shanghai"},
        "agent_other_site": {"role": "agent", "site": "beijing"},
        "supervisor_same_site": {"role": "supervisor", "site": "shanghai"},
        # "an admin" as a target is a second admin, so that the admin's "self" stays apart.
        "another_admin": {"role": "admin", "site": "shanghai"},
    }
    for name, spec in specs.items():
        users[name] = await api.agent(endpoint=f"client:{name}", **spec)
    sessions = {
        "admin": api,
        "supervisor": await api.signed_in_as(users["supervisor"]),
        "agent": await api.signed_in_as(users["agent"]),
    }
    return Cast(api, users, sessions)


def _target_user(cast: Cast, actor: str, target: str) -> dict[str, Any]:
    if target == "self":
        return cast.users[actor]
    if target == "admin":
        return cast.users["another_admin"]
    return cast.users[target]


CELLS = [(actor, target) for actor in ACTORS for target in TARGETS]
CELL_IDS = [f"{actor}-on-{target}" for actor, target in CELLS]


class TestGetAgentRoles:
    @pytest.mark.parametrize(("actor", "target"), CELLS, ids=CELL_IDS)
    async def test_private_fields_are_shown_only_where_the_matrix_allows(
        self, cast: Cast, actor: str, target: str
    ) -> None:
        user = _target_user(cast, actor, target)
        body = expect(await cast.sessions[actor].get(f"{AGENTS}/{user['id']}"), 200)
        assert body["id"] == user["id"]
        shown = PRIVATE_FIELDS & set(body)
        if target in FULL_VIEW[actor]:
            assert shown == PRIVATE_FIELDS
            assert body["endpoint"] == user["endpoint"]
        else:
            assert shown == set()
            assert "skills" not in body
            assert "active" not in body


class TestListAgentsRoles:
    async def test_agent_sees_private_fields_only_on_their_own_record(self, cast: Cast) -> None:
        page = expect(await cast.sessions["agent"].get(AGENTS), 200)
        with_private = {item["id"] for item in page["items"] if set(item) >= PRIVATE_FIELDS}
        assert with_private == {cast.users["agent"]["id"]}
        assert len(page["items"]) == len(cast.users)

    async def test_supervisor_sees_private_fields_of_own_site_agents(self, cast: Cast) -> None:
        page = expect(await cast.sessions["supervisor"].get(AGENTS), 200)
        with_private = {item["id"] for item in page["items"] if set(item) >= PRIVATE_FIELDS}
        expected = {cast.users[n]["id"] for n in ("supervisor", "agent", "agent_same_site")}
        assert with_private == expected


class TestUpdateAgentRoles:
    @pytest.mark.parametrize(("actor", "target"), CELLS, ids=CELL_IDS)
    async def test_skills_change_only_where_the_matrix_allows(
        self, cast: Cast, actor: str, target: str
    ) -> None:
        user = _target_user(cast, actor, target)
        url = f"{AGENTS}/{user['id']}"
        change = {"skills": [{"skill": "credit_card", "level": 7}]}
        allowed = target in MANAGES[actor]

        response = await cast.sessions[actor].patch(url, change)

        expect(response, 200 if allowed else 403)
        skills = expect(await cast.admin.get(url), 200)["skills"]
        assert skills == (change["skills"] if allowed else [])

    async def test_supervisor_cannot_promote_an_agent_to_supervisor(self, cast: Cast) -> None:
        user = cast.users["agent_same_site"]
        url = f"{AGENTS}/{user['id']}"
        body = expect(await cast.sessions["supervisor"].patch(url, {"role": "supervisor"}), 403)
        assert "admin" in body["detail"]
        assert expect(await cast.admin.get(url), 200)["role"] == "agent"

    @pytest.mark.parametrize("role", ["supervisor", "admin"])
    async def test_supervisor_cannot_promote_themselves(self, cast: Cast, role: str) -> None:
        url = f"{AGENTS}/{cast.users['supervisor']['id']}"
        expect(await cast.sessions["supervisor"].patch(url, {"role": role}), 403)
        assert expect(await cast.admin.get(url), 200)["role"] == "supervisor"

    @pytest.mark.parametrize("site", ["beijing", None])
    async def test_supervisor_cannot_move_an_agent_to_another_site(
        self, cast: Cast, site: str | None
    ) -> None:
        url = f"{AGENTS}/{cast.users['agent_same_site']['id']}"
        expect(await cast.sessions["supervisor"].patch(url, {"site": site}), 403)
        assert expect(await cast.admin.get(url), 200)["site"] == "shanghai"

    async def test_supervisor_cannot_move_themselves_to_another_site(self, cast: Cast) -> None:
        # Otherwise a supervisor could take over the agents of any site.
        url = f"{AGENTS}/{cast.users['supervisor']['id']}"
        expect(await cast.sessions["supervisor"].patch(url, {"site": "beijing"}), 403)
        assert expect(await cast.admin.get(url), 200)["site"] == "shanghai"

    async def test_supervisor_moves_an_agent_between_teams_of_their_site(self, cast: Cast) -> None:
        url = f"{AGENTS}/{cast.users['agent_same_site']['id']}"
        body = expect(await cast.sessions["supervisor"].patch(url, {"team": "loans"}), 200)
        assert (body["site"], body["team"]) == ("shanghai", "loans")

    async def test_admin_moves_a_supervisor_to_another_site(self, cast: Cast) -> None:
        url = f"{AGENTS}/{cast.users['supervisor']['id']}"
        expect(await cast.admin.patch(url, {"site": "beijing"}), 200)
        # The move revoked the supervisor's token; signed in again, they manage beijing's
        # agents, and no longer shanghai's.
        expect(await cast.sessions["supervisor"].get(f"{AGENTS}/me"), 401)
        supervisor = await cast.admin.signed_in_as(cast.users["supervisor"])
        far = cast.users["agent_other_site"]["id"]
        near = cast.users["agent_same_site"]["id"]
        expect(await supervisor.patch(f"{AGENTS}/{far}", {"team": "x"}), 200)
        expect(await supervisor.patch(f"{AGENTS}/{near}", {"team": "x"}), 403)

    async def test_agent_changes_their_own_name_and_password(self, cast: Cast) -> None:
        user = cast.users["agent"]
        url = f"{AGENTS}/{user['id']}"
        change = {"name": "New Name", "password": "another-password"}
        body = expect(await cast.sessions["agent"].patch(url, change), 200)
        assert body["name"] == "New Name"
        assert await login(cast.admin.client, user["username"], "another-password")

    @pytest.mark.parametrize(
        "change",
        [
            {"skills": [{"skill": "credit_card", "level": 10}]},
            {"role": "supervisor"},
            {"role": "agent"},
            {"capacity": {"voice": 5}},
            {"site": "beijing"},
            {"team": "elite"},
            {"endpoint": "sip:9999@pbx.example.com"},
            {"active": False},
            {"name": "Fine", "skills": []},
        ],
        ids=[
            "skills",
            "role-up",
            "role-same",
            "capacity",
            "site",
            "team",
            "endpoint",
            "active",
            "name-with-skills",
        ],
    )
    async def test_agent_cannot_change_anything_else_about_themselves(
        self, cast: Cast, change: dict[str, Any]
    ) -> None:
        user = cast.users["agent"]
        url = f"{AGENTS}/{user['id']}"
        expect(await cast.sessions["agent"].patch(url, change), 403)
        assert expect(await cast.admin.get(url), 200) == user

    async def test_agent_cannot_change_another_agents_name(self, cast: Cast) -> None:
        url = f"{AGENTS}/{cast.users['agent_same_site']['id']}"
        expect(await cast.sessions["agent"].patch(url, {"name": "Renamed"}), 403)


class TestChangeStatusRoles:
    @pytest.mark.parametrize(("actor", "target"), CELLS, ids=CELL_IDS)
    async def test_status_changes_only_where_the_matrix_allows(
        self, cast: Cast, actor: str, target: str
    ) -> None:
        user = _target_user(cast, actor, target)
        allowed = target in SETS_STATUS[actor]

        response = await cast.sessions[actor].set_status(user["id"], "available")

        expect(response, 200 if allowed else 403)
        read = expect(await cast.admin.get(f"{AGENTS}/{user['id']}"), 200)
        assert read["status"] == ("available" if allowed else "offline")


class TestCreateAgentRoles:
    @pytest.mark.parametrize("actor", ACTORS)
    @pytest.mark.parametrize(
        ("index", "role", "site"),
        [(0, "agent", "shanghai"), (1, "agent", "beijing"), (2, "supervisor", "shanghai")],
        ids=["agent-same-site", "agent-other-site", "supervisor-same-site"],
    )
    async def test_create_is_allowed_only_where_the_matrix_allows(
        self, cast: Cast, actor: str, index: int, role: str, site: str
    ) -> None:
        expected = CREATES[actor][index]
        body = {
            "name": "New",
            "username": unique("new"),
            "password": AGENT_PASSWORD,
            "role": role,
            "site": site,
        }
        before = len(expect(await cast.admin.get(AGENTS), 200)["items"])

        expect(await cast.sessions[actor].post(AGENTS, body), expected)

        after = len(expect(await cast.admin.get(AGENTS), 200)["items"])
        assert after == before + (1 if expected == 201 else 0)

    async def test_supervisor_cannot_create_an_agent_without_a_site(self, cast: Cast) -> None:
        body = {"name": "New", "username": unique("new"), "password": AGENT_PASSWORD}
        expect(await cast.sessions["supervisor"].post(AGENTS, body), 403)

    @pytest.mark.parametrize(
        ("role", "named"), [("admin", "an admin"), ("supervisor", "a supervisor")]
    )
    async def test_a_supervisor_creating_a_higher_role_is_told_only_an_admin_can(
        self, cast: Cast, role: str, named: str
    ) -> None:
        body = {
            "name": "New",
            "username": unique("new"),
            "password": AGENT_PASSWORD,
            "role": role,
            "site": "shanghai",
        }
        refused = expect(await cast.sessions["supervisor"].post(AGENTS, body), 403)
        assert refused["detail"] == f"only an admin can create {named}"

    async def test_admin_creates_an_admin(self, cast: Cast) -> None:
        body = {
            "name": "Second",
            "username": unique("root"),
            "password": AGENT_PASSWORD,
            "role": "admin",
        }
        assert expect(await cast.admin.post(AGENTS, body), 201)["role"] == "admin"


class TestLastAdmin:
    async def test_the_only_admin_cannot_demote_or_deactivate_themselves(self, api: Api) -> None:
        url = f"/api/v1/agents/{api.me['id']}"
        for change in ({"role": "supervisor"}, {"active": False}, {"role": "agent"}):
            body = expect(await api.patch(url, change), 409)
            assert "last active admin" in body["detail"]
        me = expect(await api.get(url), 200)
        assert (me["role"], me["active"]) == ("admin", True)
        expect(await api.patch(url, {"name": "Still In Charge"}), 200)

    async def test_with_another_admin_one_may_step_down_but_not_the_last(self, api: Api) -> None:
        second = await api.signed_in_as(await api.agent(role="admin"))
        expect(await second.patch(f"/api/v1/agents/{api.me['id']}", {"role": "supervisor"}), 200)
        body = expect(
            await second.patch(f"/api/v1/agents/{second.me['id']}", {"active": False}), 409
        )
        assert "last active admin" in body["detail"]

    async def test_an_inactive_admin_does_not_count(self, api: Api) -> None:
        dormant = await api.agent(role="admin")
        expect(await api.patch(f"/api/v1/agents/{dormant['id']}", {"active": False}), 200)
        expect(await api.patch(f"/api/v1/agents/{api.me['id']}", {"role": "supervisor"}), 409)

    async def test_two_admins_demoting_each_other_at_once_leave_one_admin(self, api: Api) -> None:
        second = await api.signed_in_as(await api.agent(role="admin"))
        results = await asyncio.gather(
            api.patch(f"/api/v1/agents/{second.me['id']}", {"role": "agent"}),
            second.patch(f"/api/v1/agents/{api.me['id']}", {"role": "agent"}),
        )
        assert sorted(r.status_code for r in results) == [200, 409]
        # The one demoted lost its token with its role: list with the winner's.
        winner = api if results[0].status_code == 200 else second
        page = expect(await winner.get(AGENTS), 200)
        assert [a["id"] for a in page["items"] if a["role"] == "admin"] in (
            [api.me["id"]],
            [second.me["id"]],
        )
