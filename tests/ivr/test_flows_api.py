"""Flows over the API: upload (validated, naming the node), versions, activation, who may,
and a call's path and the outcome report."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from httpx import AsyncClient

from app.db import unit_of_work
from app.ivr import service
from tests.fixtures.factories import Api, expect
from tests.ivr.conftest import Clock
from tests.ivr.telephony import CARDS_NUMBER, FLOWS, TwilioCall, centre, said

FLOWS_URL = "/api/v1/ivr/flows"
YAML = {"Content-Type": "application/yaml"}
STRANGER = "+8613912345678"


def demo(name: str = "credit_card_centre") -> dict[str, Any]:
    return yaml.safe_load((FLOWS / f"{name}.yaml").read_text())  # type: ignore[no-any-return]


async def post_flow(
    api: Api, document: dict[str, Any] | bytes, headers: dict[str, str] | None = None
) -> Any:
    if isinstance(document, dict):
        return await api.post(FLOWS_URL, document, headers=headers or {})
    return await api.post(FLOWS_URL, content=document, headers=headers or YAML)


def tiny(**changes: Any) -> dict[str, Any]:
    """A small valid flow: a menu whose 1 goes to the credit-card queue."""
    flow: dict[str, Any] = {
        "name": "tiny",
        "version": 1,
        "numbers": ["+862155551234"],
        "languages": ["zh-CN", "en-US"],
        "start": "main",
        "keys": {"operator": None, "repeat": "*", "back": "#"},
        "nodes": {
            "main": {
                "type": "menu",
                "prompt": {"zh-CN": "请按1。", "en-US": "Press 1."},
                "options": [{"key": "1", "next": "cards"}],
                "no_input": {
                    "prompt": {"zh-CN": "请按键。", "en-US": "Please press."},
                    "fallback": "bye",
                },
                "invalid": {"prompt": {"zh-CN": "无效。", "en-US": "Invalid."}, "fallback": "bye"},
            },
            "cards": {
                "type": "enqueue",
                "queue": "credit-cards",
                "skills": [{"skill": "credit_card"}],
            },
            "bye": {"type": "hangup", "prompt": {"zh-CN": "再见。", "en-US": "Goodbye."}},
        },
    }
    flow.update(changes)
    return flow


@pytest.fixture
async def world(api: Api) -> dict[str, Any]:
    return await centre(api)


async def two_calls(api: Api, client: AsyncClient) -> None:
    """Two calls on the tiny flow, activated here: one put through to the credit-card queue
    (it presses 1), one whose caller hangs up at the menu (``main``)."""
    made = expect(await post_flow(api, tiny()), 201)
    expect(await api.post(f"{FLOWS_URL}/{made['id']}/activate", {}), 200)
    enqueued = TwilioCall(client, STRANGER, "+862155551234")
    await enqueued.start()
    await enqueued.press("1")
    left = TwilioCall(client, STRANGER, "+862155551234")
    await left.start()
    assert (await left.status("completed")).status_code == 200


class TestUpload:
    async def test_a_yaml_flow_is_stored_as_a_version_and_a_retry_is_the_same_one(
        self, api: Api, world: dict[str, Any]
    ) -> None:
        document = (FLOWS / "credit_card_centre.yaml").read_bytes()
        made = expect(await post_flow(api, document), 201)
        assert (made["name"], made["version"]) == ("credit_card_centre", 2)
        assert made["numbers"] == [CARDS_NUMBER]
        assert made["active_numbers"] == []
        assert made["uploaded_by"] == f"agent:{api.me['id']}"
        assert made["document"]["start"] == "identify_caller"
        again = expect(await post_flow(api, document), 200)
        assert again["id"] == made["id"]

    async def test_another_document_under_a_version_taken_is_a_409(
        self, api: Api, world: dict[str, Any]
    ) -> None:
        expect(await post_flow(api, tiny()), 201)
        changed = tiny(description="changed")
        response = await post_flow(api, changed)
        assert response.status_code == 409
        assert "version 1" in response.json()["detail"]
        assert (
            expect(await post_flow(api, tiny(description="changed", version=2)), 201)["version"]
            == 2
        )

    async def test_an_unreachable_node_is_refused_naming_it(
        self, api: Api, world: dict[str, Any]
    ) -> None:
        flow = tiny()
        flow["nodes"]["orphan"] = {"type": "hangup"}
        response = await post_flow(api, flow)
        assert response.status_code == 422, response.text
        assert any(f["field"].startswith("nodes.orphan") for f in response.json()["fields"])

    async def test_a_menu_without_its_no_input_path_is_refused_naming_it(
        self, api: Api, world: dict[str, Any]
    ) -> None:
        flow = tiny()
        del flow["nodes"]["main"]["no_input"]
        response = await post_flow(api, flow)
        assert response.status_code == 422, response.text
        assert any(
            "main" in f["field"] and "no_input" in f["field"] for f in response.json()["fields"]
        )

    async def test_queues_and_skills_the_centre_lacks_are_named_with_their_node(
        self, api: Api, world: dict[str, Any]
    ) -> None:
        flow = tiny()
        flow["nodes"]["cards"] = {
            "type": "enqueue",
            "queue": "nowhere",
            "skills": [{"skill": "juggling"}],
        }
        response = await post_flow(api, flow)
        assert response.status_code == 422, response.text
        fields = {f["field"]: f["message"] for f in response.json()["fields"]}
        assert "does not exist" in fields["nodes.cards.queue"]
        assert "juggling" in fields["nodes.cards.skills[0].skill"]

    async def test_a_queue_that_takes_no_voice_calls_is_refused(
        self, api: Api, world: dict[str, Any]
    ) -> None:
        expect(await api.post("/api/v1/queues", {"name": "chat-only", "channels": ["chat"]}), 201)
        flow = tiny()
        flow["nodes"]["cards"] = {"type": "enqueue", "queue": "chat-only"}
        response = await post_flow(api, flow)
        assert response.status_code == 422
        assert "voice" in response.json()["fields"][0]["message"]

    async def test_a_document_that_is_not_a_flow_is_a_422_never_a_500(
        self, api: Api, world: dict[str, Any]
    ) -> None:
        for body in (
            b"- just\n- a list\n",
            b"nodes: [unclosed",
            b"\xff\xfe",
            b"{}",
            b"a: &x 1\nb: *x\n",
        ):
            response = await post_flow(api, body)
            assert response.status_code == 422, (body, response.text)
        wrong_type = await api.post(
            FLOWS_URL, content=b"<flow/>", headers={"Content-Type": "application/xml"}
        )
        assert wrong_type.status_code == 422
        assert "application/yaml" in wrong_type.json()["detail"]

    async def test_only_supervisors_and_admins_upload_and_activate(
        self, api: Api, world: dict[str, Any]
    ) -> None:
        made = expect(await post_flow(api, tiny()), 201)
        agent = await api.signed_in_as(await api.agent())
        assert (await post_flow(agent, tiny(version=2))).status_code == 403
        assert (await agent.post(f"{FLOWS_URL}/{made['id']}/activate", {})).status_code == 403
        assert expect(await agent.get(f"{FLOWS_URL}/{made['id']}"), 200)["id"] == made["id"]
        supervisor = await api.signed_in_as(await api.supervisor())
        expect(await post_flow(supervisor, tiny(version=2)), 201)


class TestTheDemo:
    async def test_the_demo_flows_install_once_and_answer_their_numbers(
        self, api: Api, app: FastAPI, clock: Clock, world: dict[str, Any]
    ) -> None:
        for _ in range(2):  # the demo seed may run again: nothing changes
            async with unit_of_work(app.state.sessionmaker) as session:
                await service.install_demo_flows(session, region="CN", now=clock.now)
        page = expect(await api.get(FLOWS_URL), 200)
        assert sorted((f["name"], f["version"]) for f in page["items"]) == [
            ("complaint_hotline_95561", 2),
            ("consumer_line", 2),
            ("credit_card_centre", 2),
        ]
        assert sorted(n for f in page["items"] for n in f["active_numbers"]) == sorted(
            n for f in page["items"] for n in f["numbers"]
        )

    async def test_a_new_demo_version_takes_over_from_the_demo_s_own_not_an_operator_s(
        self, api: Api, app: FastAPI, clock: Clock, world: dict[str, Any]
    ) -> None:
        """A database set up by an earlier demo moves to the new demo version; a version an
        operator activated keeps its numbers."""
        seeded = {**demo("consumer_line"), "version": 1}
        async with unit_of_work(app.state.sessionmaker) as session:
            old, _ = await service.upload(
                session, document=yaml.safe_dump(seeded).encode(), actor="system", region="CN"
            )
            await service.activate(
                session, flow_id=old.id, numbers=None, actor="system", region="CN", now=clock.now
            )
        chosen = expect(await post_flow(api, {**demo("credit_card_centre"), "version": 1}), 201)
        expect(await api.post(f"{FLOWS_URL}/{chosen['id']}/activate", {}), 200)

        for _ in range(2):  # the demo seed may run again: nothing changes
            async with unit_of_work(app.state.sessionmaker) as session:
                await service.install_demo_flows(session, region="CN", now=clock.now)
        page = expect(await api.get(FLOWS_URL), 200)
        answering = {
            number: (f["name"], f["version"])
            for f in page["items"]
            for number in f["active_numbers"]
        }
        assert answering == {
            "+864006695561": ("consumer_line", 2),  # the demo's own v1 replaced
            "+864008895561": ("credit_card_centre", 1),  # the operator's choice kept
            "95561": ("complaint_hotline_95561", 2),
        }


class TestReading:
    async def test_flows_page_by_id_with_the_numbers_each_answers(
        self, api: Api, world: dict[str, Any]
    ) -> None:
        first = expect(await post_flow(api, tiny()), 201)
        second = expect(await post_flow(api, tiny(version=2)), 201)
        expect(await api.post(f"{FLOWS_URL}/{second['id']}/activate", {}), 200)
        page = expect(await api.get(FLOWS_URL, params={"limit": 1}), 200)
        assert [f["id"] for f in page["items"]] == [first["id"]]
        rest = expect(await api.get(FLOWS_URL, params={"cursor": page["next_cursor"]}), 200)
        assert [(f["id"], f["active_numbers"]) for f in rest["items"]] == [
            (second["id"], ["+862155551234"])
        ]
        assert rest["next_cursor"] is None
        assert (await api.get(f"{FLOWS_URL}/999999")).status_code == 404


class TestActivation:
    async def test_numbers_given_are_normalised_and_a_bad_one_is_named(
        self, api: Api, world: dict[str, Any]
    ) -> None:
        made = expect(await post_flow(api, tiny()), 201)
        url = f"{FLOWS_URL}/{made['id']}/activate"
        done = expect(await api.post(url, {"numbers": ["021 5555 0000", "95561"]}), 200)
        assert done["active_numbers"] == ["+862155550000", "95561"]
        bad = await api.post(url, {"numbers": ["95561", "not a number"]})
        assert bad.status_code == 422
        assert bad.json()["fields"][0]["field"] == "numbers.1"

    async def test_without_a_body_the_document_s_numbers_are_answered(
        self, api: Api, world: dict[str, Any]
    ) -> None:
        made = expect(await post_flow(api, tiny()), 201)
        done = expect(await api.post(f"{FLOWS_URL}/{made['id']}/activate"), 200)
        assert done["active_numbers"] == ["+862155551234"]
        assert (await api.post(f"{FLOWS_URL}/999999/activate")).status_code == 404

    async def test_a_new_version_never_changes_a_call_in_progress(
        self, api: Api, client: AsyncClient, world: dict[str, Any]
    ) -> None:
        v1 = demo()
        expect(
            await api.post(
                f"{FLOWS_URL}/{expect(await post_flow(api, v1), 201)['id']}/activate", {}
            ),
            200,
        )
        ongoing = TwilioCall(client, STRANGER, CARDS_NUMBER)
        await ongoing.start()
        v2 = marked(v1)
        made = expect(await post_flow(api, v2), 201)
        expect(await api.post(f"{FLOWS_URL}/{made['id']}/activate", {}), 200)
        await ongoing.press("1")
        assert ongoing.gathering(), ongoing.last  # the call goes on, on version 1's menu
        assert said(ongoing.last), ongoing.last
        assert not any(text.startswith("[v2]") for text in said(ongoing.last)), ongoing.last
        fresh = TwilioCall(client, STRANGER, CARDS_NUMBER)
        await fresh.start()
        assert all(text.startswith("[v2]") for text in said(fresh.last)), fresh.last
        old = expect(await api.get(f"/api/v1/ivr/calls/{ongoing.sid}"), 200)
        new = expect(await api.get(f"/api/v1/ivr/calls/{fresh.sid}"), 200)
        assert (old["flow_version"], new["flow_version"]) == (v1["version"], v1["version"] + 1)


def marked(flow: dict[str, Any]) -> dict[str, Any]:
    """The next version of ``flow``: the same, with every prompt marked ``[v2]``."""
    changed = copy.deepcopy(flow)
    changed["version"] = flow["version"] + 1

    def mark(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (
                    {lang: f"[v2] {text}" for lang, text in v.items()}
                    if k == "prompt"
                    and isinstance(v, dict)
                    and all(isinstance(t, str) for t in v.values())
                    else mark(v)
                )
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [mark(item) for item in value]
        return value

    changed["nodes"] = mark(changed["nodes"])
    return changed


class TestCallsAndReports:
    async def test_a_calls_path_is_read_by_supervisors_not_agents(
        self, api: Api, client: AsyncClient, world: dict[str, Any]
    ) -> None:
        made = expect(await post_flow(api, tiny()), 201)
        expect(await api.post(f"{FLOWS_URL}/{made['id']}/activate", {}), 200)
        phone = TwilioCall(client, STRANGER, "+862155551234")
        await phone.start()
        await phone.press("1")
        supervisor = await api.signed_in_as(await api.supervisor())
        call = expect(await supervisor.get(f"/api/v1/ivr/calls/{phone.sid}"), 200)
        assert call["caller"] == STRANGER
        assert [(p["node"], p["result"]) for p in call["path"]][-1] == ("cards", "enqueued")
        agent = await api.signed_in_as(await api.agent())
        assert (await agent.get(f"/api/v1/ivr/calls/{phone.sid}")).status_code == 403
        assert (await api.get("/api/v1/ivr/calls/CAnobody")).status_code == 404

    async def test_the_outcome_report_counts_outcomes_in_the_period(
        self, api: Api, client: AsyncClient, world: dict[str, Any]
    ) -> None:
        await two_calls(api, client)
        period = {"from": "2026-12-02T00:00:00Z", "to": "2026-12-03T00:00:00Z"}
        report = expect(await api.get("/api/v1/ivr/reports/outcomes", params=period), 200)
        assert report["calls"] == 2
        assert sorted((o["outcome"], o["calls"]) for o in report["outcomes"]) == [
            ("enqueued", 1),
            ("hung_up", 1),
        ]
        assert report["drop_off"] == [{"node": "main", "calls": 1}]
        empty = expect(
            await api.get(
                "/api/v1/ivr/reports/outcomes",
                params={"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"},
            ),
            200,
        )
        assert (empty["calls"], empty["outcomes"], empty["mean_ivr_s"]) == (0, [], None)
        backwards = await api.get(
            "/api/v1/ivr/reports/outcomes", params={"from": period["to"], "to": period["from"]}
        )
        assert backwards.status_code == 422
