"""Skills, agents and agent status through the HTTP API."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from app.db import plain_url
from tests.fixtures.factories import AGENT_PASSWORD, Api, expect, login, unique

SKILLS = "/api/v1/skills"
AGENTS = "/api/v1/agents"


def _fields(body: dict[str, Any]) -> list[str]:
    return [f["field"] for f in body["fields"]]


# What the IVR's <Dial> takes (app.ivr.twiml.bridge), and what it cannot dial.
DIALABLE = [
    "sip:1001@pbx.example.com",
    "sip:pbx.example.com",
    "sip:1001@10.0.0.7:5060;transport=tcp",
    "sip:1001@pbx.example.com?x-tier=gold&x-queue=cards",
    "sip:1001@[2001:db8::7]:5061",
    "client:alice",
    "client:li.na",  # the demo's agents are client:<username>
    "client:zhao-lei_2",
    "+8613800138000",
    "+16502530000",
]
NOT_DIALABLE = {
    "javascript": "javascript:alert(1)",
    "http": "https://pbx.example.com/1001",
    "sips": "sips:1001@pbx.example.com",
    "tel": "tel:+8613800138000",
    "upper-case-scheme": "SIP:1001@pbx.example.com",
    "bare-sip": "sip:",
    "sip-no-host": "sip:1001@",
    "sip-bad-host": "sip:1001@-pbx.example.com",
    "sip-space": "sip:1001 @pbx.example.com",
    "sip-newline": "sip:1001@pbx.example.com\n",
    "sip-control": "sip:1001@pbx.example.com\x07",
    "bare-client": "client:",
    "client-space": "client:li na",
    "client-markup": "client:<alice>",
    "leading-space": " client:alice",
    "number-with-spaces": "+86 138 0013 8000",
    "number-without-plus": "13800138000",
    "number-plus-zero": "+0123456",
    "number-too-long": "+1234567890123456",
    "empty": "",
}


def _agent_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Li Lei",
        "username": unique("lilei"),
        "password": AGENT_PASSWORD,
    }
    body.update(overrides)
    return body


async def _wait_for_lock_waiter(conn: asyncpg.Connection, timeout_s: float = 10.0) -> None:
    """Poll, with a deadline, until another backend of this database waits on a lock."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    while not await conn.fetchval(query):
        assert loop.time() < deadline, "no request ever waited for the row lock"
        await asyncio.sleep(0.01)


def _status_events(events: list[dict[str, Any]], agent_id: int) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if e["type"] == "agent.status_changed"
        and e["subject"] == {"type": "agent", "id": str(agent_id)}
    ]


class TestCreateSkill:
    @pytest.mark.parametrize("role", ["supervisor", "admin"])
    async def test_supervisor_or_admin_creates_a_skill(self, api: Api, role: str) -> None:
        creator = await api.signed_in_as(await api.agent(role=role))
        body = expect(
            await creator.post(SKILLS, {"name": "credit_card", "description": "cards"}), 201
        )
        assert body == {"id": body["id"], "name": "credit_card", "description": "cards"}

    async def test_agent_creating_a_skill_is_forbidden(self, api: Api) -> None:
        agent = await api.signed_in_as(await api.agent())
        body = expect(await agent.post(SKILLS, {"name": "credit_card"}), 403)
        assert body["error"] == "NotAllowed" or body["error"] == "Forbidden"
        assert expect(await api.get(SKILLS), 200) == {"items": [], "next_cursor": None}

    async def test_duplicate_name_is_a_409_naming_the_skill(self, api: Api) -> None:
        await api.skill("credit_card")
        body = expect(await api.post(SKILLS, {"name": "credit_card"}), 409)
        assert "credit_card" in body["detail"]
        assert body["constraint"] == "uq_skills_name"

    @pytest.mark.parametrize(
        "name",
        ["Credit_card", "credit card", "", "   ", "1st_line", "a" * 65, "crédit"],
        ids=["upper-case", "space", "empty", "blank", "leading-digit", "too-long", "accent"],
    )
    async def test_bad_name_is_a_422_naming_name(self, api: Api, name: str) -> None:
        body = expect(await api.post(SKILLS, {"name": name}), 422)
        assert _fields(body) == ["name"]
        assert body["detail"].startswith("name: ")


class TestListSkills:
    async def test_any_signed_in_user_lists_skills_by_name(self, api: Api) -> None:
        await api.skill("mandarin")
        await api.skill("credit_card")
        agent = await api.signed_in_as(await api.agent())
        body = expect(await agent.get(SKILLS), 200)
        assert [s["name"] for s in body["items"]] == ["credit_card", "mandarin"]

    async def test_anonymous_listing_is_a_401(self, api: Api) -> None:
        expect(await api.client.get(SKILLS), 401)


class TestCreateAgent:
    async def test_created_agent_reads_back_with_everything_it_was_given(self, api: Api) -> None:
        await api.skill("credit_card")
        await api.skill("mandarin")
        sent = _agent_body(
            skills=[{"skill": "mandarin", "level": 10}, {"skill": "credit_card", "level": 1}],
            capacity={"voice": 1, "chat": 3, "case": 20},
            site="shanghai",
            team="cards",
            endpoint="sip:1001@pbx.example.com",
        )
        created = expect(await api.post(AGENTS, sent), 201)
        read = expect(await api.get(f"{AGENTS}/{created['id']}"), 200)

        assert read == created
        assert read["username"] == sent["username"]
        assert read["role"] == "agent"
        assert sorted(read["skills"], key=lambda s: s["skill"]) == [
            {"skill": "credit_card", "level": 1},
            {"skill": "mandarin", "level": 10},
        ]
        assert read["capacity"] == {"voice": 1, "chat": 3, "case": 20}
        assert (read["site"], read["team"]) == ("shanghai", "cards")
        assert read["endpoint"] == "sip:1001@pbx.example.com"
        assert (read["status"], read["state"], read["active"]) == ("offline", "idle", True)
        assert "password" not in read
        assert "password_hash" not in read

    async def test_created_agent_can_sign_in(self, api: Api) -> None:
        created = await api.agent()
        token = await login(api.client, created["username"], AGENT_PASSWORD)
        assert token

    async def test_unknown_skill_is_a_422_naming_the_skill(self, api: Api) -> None:
        await api.skill("credit_card")
        skills = [{"skill": "credit_card", "level": 5}, {"skill": "klingon", "level": 5}]
        body = expect(await api.post(AGENTS, _agent_body(skills=skills)), 422)
        assert body["field"] == "skills"
        assert "'klingon'" in body["detail"]
        assert "credit_card" not in body["detail"]

    @pytest.mark.parametrize("level", [0, 11, -1, 1.5, "high"])
    async def test_level_out_of_range_is_a_422_naming_the_field_path(
        self, api: Api, level: object
    ) -> None:
        await api.skill("credit_card")
        await api.skill("mandarin")
        skills = [{"skill": "mandarin", "level": 3}, {"skill": "credit_card", "level": level}]
        body = expect(await api.post(AGENTS, _agent_body(skills=skills)), 422)
        assert _fields(body) == ["skills.1.level"]

    async def test_same_skill_twice_is_a_422_naming_skills(self, api: Api) -> None:
        await api.skill("credit_card")
        skills = [{"skill": "credit_card", "level": 3}, {"skill": "credit_card", "level": 4}]
        body = expect(await api.post(AGENTS, _agent_body(skills=skills)), 422)
        assert _fields(body) == ["skills"]

    async def test_missing_fields_are_each_named_in_a_422(self, api: Api) -> None:
        body = expect(await api.post(AGENTS, {"site": "shanghai"}), 422)
        assert sorted(_fields(body)) == ["name", "password", "username"]
        for field in ("name", "password", "username"):
            assert f"{field}: " in body["detail"]

    @pytest.mark.parametrize("case", [str.lower, str.upper], ids=["same-case", "other-case"])
    async def test_duplicate_username_is_a_409(self, api: Api, case: Any) -> None:
        await api.agent(username="wangfang")
        body = expect(await api.post(AGENTS, _agent_body(username=case("wangfang"))), 409)
        assert body["constraint"] == "uq_agents_username"
        assert body["detail"] == "an agent with this username already exists"

    async def test_unknown_field_is_a_422_naming_it(self, api: Api) -> None:
        body = expect(await api.post(AGENTS, _agent_body(nickname="lei")), 422)
        assert _fields(body) == ["nickname"]

    async def test_password_shorter_than_8_characters_is_a_422(self, api: Api) -> None:
        body = expect(await api.post(AGENTS, _agent_body(password="short")), 422)
        assert _fields(body) == ["password"]

    async def test_capacity_for_an_unknown_channel_is_a_422_naming_it(self, api: Api) -> None:
        body = expect(await api.post(AGENTS, _agent_body(capacity={"fax": 1})), 422)
        assert [f.split(".")[:2] for f in _fields(body)] == [["capacity", "fax"]]

    async def test_negative_capacity_is_a_422_naming_the_channel(self, api: Api) -> None:
        body = expect(await api.post(AGENTS, _agent_body(capacity={"chat": -1})), 422)
        assert _fields(body) == ["capacity.chat"]

    async def test_unknown_role_is_a_422(self, api: Api) -> None:
        body = expect(await api.post(AGENTS, _agent_body(role="root")), 422)
        assert _fields(body) == ["role"]

    @pytest.mark.parametrize("endpoint", DIALABLE)
    async def test_an_endpoint_the_ivr_dials_is_kept(self, api: Api, endpoint: str) -> None:
        created = expect(await api.post(AGENTS, _agent_body(endpoint=endpoint)), 201)
        assert created["endpoint"] == endpoint

    @pytest.mark.parametrize("endpoint", NOT_DIALABLE.values(), ids=NOT_DIALABLE.keys())
    async def test_an_endpoint_the_ivr_cannot_dial_is_a_422_naming_it(
        self, api: Api, endpoint: str
    ) -> None:
        body = expect(await api.post(AGENTS, _agent_body(endpoint=endpoint)), 422)
        assert _fields(body) == ["endpoint"]
        assert "sip:" in body["detail"]
        assert "client:" in body["detail"]
        assert "E.164" in body["detail"]

    async def test_creating_an_agent_writes_agent_created(self, api: Api) -> None:
        cursor = await api.event_cursor()
        created = await api.agent()
        subject = {"type": "agent", "id": str(created["id"])}

        def created_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [e for e in events if e["type"] == "agent.created" and e["subject"] == subject]

        [event] = created_events(await api.events_until(cursor, created_events))
        assert event["actor"] == f"agent:{api.me['id']}"
        assert event["data"] == {
            "username": created["username"],
            "role": "agent",
            "site": "shanghai",
        }


class TestUpdateAgent:
    async def test_partial_update_changes_only_the_fields_sent(self, api: Api) -> None:
        created = await api.agent(team="cards", endpoint="client:alice")
        url = f"{AGENTS}/{created['id']}"
        updated = expect(await api.patch(url, {"team": "loans"}), 200)
        assert updated["team"] == "loans"
        assert {k: v for k, v in updated.items() if k not in ("team",)} == {
            k: v for k, v in created.items() if k not in ("team",)
        }
        assert expect(await api.get(url), 200) == updated

    async def test_endpoint_is_changed_to_each_dialable_form_or_cleared(self, api: Api) -> None:
        created = await api.agent(endpoint="client:alice")
        url = f"{AGENTS}/{created['id']}"
        for endpoint in ("sip:1001@pbx.example.com", "+8613800138000", "client:bob", None):
            updated = expect(await api.patch(url, {"endpoint": endpoint}), 200)
            assert updated["endpoint"] == endpoint

    async def test_skills_are_replaced_not_merged(self, api: Api) -> None:
        for name in ("credit_card", "mandarin", "loans"):
            await api.skill(name)
        created = await api.agent(
            skills=[{"skill": "credit_card", "level": 2}, {"skill": "mandarin", "level": 5}]
        )
        url = f"{AGENTS}/{created['id']}"
        new_skills = [{"skill": "mandarin", "level": 9}, {"skill": "loans", "level": 1}]
        updated = expect(await api.patch(url, {"skills": new_skills}), 200)
        expected = [{"skill": "loans", "level": 1}, {"skill": "mandarin", "level": 9}]
        assert sorted(updated["skills"], key=lambda s: s["skill"]) == expected
        read = expect(await api.get(url), 200)
        assert sorted(read["skills"], key=lambda s: s["skill"]) == expected

    async def test_empty_skills_list_removes_every_skill(self, api: Api) -> None:
        await api.skill("credit_card")
        created = await api.agent(skills=[{"skill": "credit_card", "level": 2}])
        updated = expect(await api.patch(f"{AGENTS}/{created['id']}", {"skills": []}), 200)
        assert updated["skills"] == []

    async def test_capacity_is_replaced(self, api: Api) -> None:
        created = await api.agent(capacity={"voice": 1, "chat": 2})
        url = f"{AGENTS}/{created['id']}"
        updated = expect(await api.patch(url, {"capacity": {"case": 5}}), 200)
        assert updated["capacity"] == {"case": 5}

    async def test_unknown_skill_leaves_the_agent_unchanged(self, api: Api) -> None:
        await api.skill("credit_card")
        created = await api.agent(skills=[{"skill": "credit_card", "level": 2}])
        url = f"{AGENTS}/{created['id']}"
        body = expect(
            await api.patch(url, {"team": "x", "skills": [{"skill": "nope", "level": 1}]}), 422
        )
        assert "'nope'" in body["detail"]
        assert expect(await api.get(url), 200) == created

    async def test_new_password_works_and_old_one_no_longer_does(self, api: Api) -> None:
        created = await api.agent()
        agent = await api.signed_in_as(created)
        url = f"{AGENTS}/{created['id']}"
        expect(await agent.patch(url, {"password": "a-brand-new-password"}), 200)

        old = await api.client.post(
            "/api/v1/auth/token",
            data={"username": created["username"], "password": AGENT_PASSWORD},
        )
        expect(old, 401)
        assert await login(api.client, created["username"], "a-brand-new-password")

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"name": None}, "name"),
            ({"role": None}, "role"),
            ({"active": None}, "active"),
            ({"password": None}, "password"),
            ({"name": ""}, "name"),
            ({"password": "short"}, "password"),
            ({"skills": [{"skill": "credit_card", "level": 11}]}, "skills.0.level"),
            ({"username": "renamed"}, "username"),
            ({"endpoint": "javascript:alert(1)"}, "endpoint"),
            ({"endpoint": "sip:"}, "endpoint"),
            ({"endpoint": "client: alice"}, "endpoint"),
        ],
        ids=[
            "null-name",
            "null-role",
            "null-active",
            "null-password",
            "empty-name",
            "short-password",
            "level-11",
            "username-is-fixed",
            "endpoint-javascript",
            "endpoint-bare-sip",
            "endpoint-client-space",
        ],
    )
    async def test_bad_change_is_a_422_naming_the_field(
        self, api: Api, change: dict[str, Any], field: str
    ) -> None:
        created = await api.agent()
        body = expect(await api.patch(f"{AGENTS}/{created['id']}", change), 422)
        assert _fields(body) == [field]

    async def test_unknown_agent_is_a_404(self, api: Api) -> None:
        body = expect(await api.patch(f"{AGENTS}/999999", {"team": "x"}), 404)
        assert body["error"] == "AgentNotFound"


class TestGetAgent:
    async def test_unknown_agent_is_a_404(self, api: Api) -> None:
        body = expect(await api.get(f"{AGENTS}/999999"), 404)
        assert body == {"error": "AgentNotFound", "detail": "agent 999999 does not exist"}

    @pytest.mark.parametrize("agent_id", ["0", "-1", "9223372036854775808", "abc", "1.5"])
    async def test_impossible_id_is_a_4xx_not_a_500(self, api: Api, agent_id: str) -> None:
        response = await api.get(f"{AGENTS}/{agent_id}")
        assert response.status_code in (404, 422), response.text
        assert set(response.json()) >= {"error", "detail"}

    async def test_me_is_the_signed_in_agent(self, api: Api) -> None:
        created = await api.agent()
        agent = await api.signed_in_as(created)
        assert expect(await agent.get(f"{AGENTS}/me"), 200) == created


class TestListAgents:
    async def test_limit_and_cursor_cover_every_agent_exactly_once(self, api: Api) -> None:
        created = [(await api.agent())["id"] for _ in range(7)]
        seen: list[int] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 3}
            if cursor is not None:
                params["cursor"] = cursor
            page = expect(await api.get(AGENTS, params=params), 200)
            assert len(page["items"]) <= 3
            seen.extend(item["id"] for item in page["items"])
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted([api.me["id"], *created])
        assert pages == 3

    async def test_site_filter_lists_only_that_site(self, api: Api) -> None:
        here = await api.agent(site="shanghai")
        await api.agent(site="beijing")
        page = expect(await api.get(AGENTS, params={"site": "shanghai"}), 200)
        assert [item["id"] for item in page["items"]] == [here["id"]]


class TestChangeStatus:
    async def _agent(self, api: Api) -> tuple[Api, int]:
        created = await api.agent()
        return await api.signed_in_as(created), int(created["id"])

    @pytest.mark.parametrize(
        ("status", "reason"), [("available", None), ("away", "lunch"), ("offline", None)]
    )
    async def test_agent_sets_their_own_status(
        self, api: Api, status: str, reason: str | None
    ) -> None:
        agent, agent_id = await self._agent(api)
        if status == "offline":
            expect(await agent.set_status(agent_id, "available"), 200)
        body = expect(await agent.set_status(agent_id, status, reason), 200)
        assert (body["status"], body["status_reason"]) == (status, reason)
        read = expect(await api.get(f"{AGENTS}/{agent_id}"), 200)
        assert (read["status"], read["status_reason"], read["state"]) == (status, reason, "idle")

    @pytest.mark.parametrize("reason", [None, "", "   "], ids=["null", "empty", "blank"])
    async def test_away_without_a_reason_is_a_422_naming_reason(
        self, api: Api, reason: str | None
    ) -> None:
        agent, agent_id = await self._agent(api)
        body = expect(await agent.set_status(agent_id, "away", reason), 422)
        assert body["field"] == "reason"

    @pytest.mark.parametrize("reason", ["no_answer", "No_Answer", "disconnected"])
    async def test_reserved_reason_is_a_422(self, api: Api, reason: str) -> None:
        agent, agent_id = await self._agent(api)
        body = expect(await agent.set_status(agent_id, "away", reason), 422)
        assert body["field"] == "reason"
        assert "reserved" in body["detail"]

    async def test_available_with_a_reason_is_a_422(self, api: Api) -> None:
        agent, agent_id = await self._agent(api)
        body = expect(await agent.set_status(agent_id, "available", "lunch"), 422)
        assert body["field"] == "reason"

    async def test_unknown_status_is_a_422_naming_status(self, api: Api) -> None:
        agent, agent_id = await self._agent(api)
        body = expect(await agent.set_status(agent_id, "busy"), 422)
        assert _fields(body) == ["status"]

    async def test_each_change_writes_one_status_changed_event(self, api: Api) -> None:
        agent, agent_id = await self._agent(api)
        cursor = await api.event_cursor()
        expect(await agent.set_status(agent_id, "available"), 200)
        expect(await agent.set_status(agent_id, "away", "lunch"), 200)
        expect(await agent.set_status(agent_id, "away", "training"), 200)

        events = await api.events_until(cursor, lambda es: len(_status_events(es, agent_id)) >= 3)

        changes = [
            (e["data"]["previous"], e["data"]["status"], e["data"]["reason"])
            for e in _status_events(events, agent_id)
        ]
        assert changes == [
            ("offline", "available", None),
            ("available", "away", "lunch"),
            ("away", "away", "training"),
        ]
        assert {e["actor"] for e in _status_events(events, agent_id)} == {f"agent:{agent_id}"}

    async def test_agent_reads_their_own_status_events(self, api: Api) -> None:
        agent, agent_id = await self._agent(api)
        cursor = await agent.event_cursor()
        expect(await agent.set_status(agent_id, "available"), 200)
        events = await agent.events_until(cursor, lambda es: bool(_status_events(es, agent_id)))
        assert len(_status_events(events, agent_id)) == 1

    async def test_no_op_change_writes_no_event(self, api: Api) -> None:
        agent, agent_id = await self._agent(api)
        cursor = await api.event_cursor()
        first = expect(await agent.set_status(agent_id, "away", "lunch"), 200)

        again = expect(await agent.set_status(agent_id, "away", " lunch "), 200)
        expect(await agent.set_status(agent_id, "offline"), 200)

        # The no-op committed before the last change, so an event of it would come first.
        def reached_offline(events: list[dict[str, Any]]) -> bool:
            return any(e["data"]["status"] == "offline" for e in _status_events(events, agent_id))

        events = await api.events_until(cursor, reached_offline)
        changes = [
            (e["data"]["previous"], e["data"]["status"]) for e in _status_events(events, agent_id)
        ]
        assert changes == [("offline", "away"), ("away", "offline")]
        assert again["status_changed_at"] == first["status_changed_at"]

    async def test_unknown_agent_is_a_404(self, api: Api) -> None:
        expect(await api.set_status(999999, "available"), 404)

    async def test_change_is_judged_against_the_locked_row_not_an_earlier_read(
        self, api: Api, db: str
    ) -> None:
        agent, agent_id = await self._agent(api)
        conn = await asyncpg.connect(plain_url(db))
        try:
            locker = conn.transaction()
            await locker.start()
            await conn.execute("SELECT 1 FROM agents WHERE id = $1 FOR UPDATE", agent_id)
            # The request reads its principal (this agent), then waits for the row lock.
            request = asyncio.create_task(agent.set_status(agent_id, "away", "lunch"))
            await _wait_for_lock_waiter(conn)
            await conn.execute(
                "UPDATE agents SET status = 'away', status_reason = 'lunch', "
                "status_changed_at = '2000-01-01T00:00:00Z' WHERE id = $1",
                agent_id,
            )
            await locker.commit()
            body = expect(await request, 200)
        finally:
            await conn.close()
        # Already away for lunch once the lock was granted: a no-op, not a fresh change.
        assert body["status_changed_at"] == "2000-01-01T00:00:00Z"
