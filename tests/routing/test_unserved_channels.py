"""A queue says which of its channels no active agent can take (capacity on the channel and
the skills of its last routing step), so a supervisor sees before a customer waits."""

from __future__ import annotations

from typing import Any

from tests.fixtures.factories import Api, expect
from tests.routing.acd import queue

QUEUES = "/api/v1/queues"


async def unserved(api: Api, name: str) -> list[str]:
    return expect(await api.get(f"{QUEUES}/{name}"), 200)["unserved_channels"]  # type: ignore[no-any-return]


def steps(skill: str, first: int, last: int) -> list[dict[str, Any]]:
    return [
        {"skills": [{"skill": skill, "min_level": first}], "expires_after_s": 20},
        {"skills": [{"skill": skill, "min_level": last}]},
    ]


class TestUnservedChannels:
    async def test_a_queue_nobody_takes_names_every_channel(self, api: Api) -> None:
        made = await queue(api, channels=["chat", "voice", "app"])
        assert made["unserved_channels"] == ["chat", "voice", "app"]

    async def test_an_agent_with_capacity_serves_only_those_channels(self, api: Api) -> None:
        q = await queue(api, channels=["chat", "voice", "app"])
        await api.agent(capacity={"voice": 1, "chat": 0})
        assert await unserved(api, q["name"]) == ["chat", "app"]

    async def test_the_last_steps_skills_decide_not_the_first(self, api: Api) -> None:
        skill = (await api.skill())["name"]
        q = await queue(api, channels=["voice"], steps=steps(skill, 8, 3))
        await api.agent(capacity={"voice": 1}, skills=[{"skill": skill, "level": 2}])
        assert await unserved(api, q["name"]) == ["voice"]
        await api.agent(capacity={"voice": 1}, skills=[{"skill": skill, "level": 3}])
        assert await unserved(api, q["name"]) == []

    async def test_an_inactive_agent_serves_nothing(self, api: Api) -> None:
        q = await queue(api, channels=["app"])
        agent = await api.agent(capacity={"app": 2})
        assert await unserved(api, q["name"]) == []
        expect(await api.patch(f"/api/v1/agents/{agent['id']}", {"active": False}), 200)
        assert await unserved(api, q["name"]) == ["app"]

    async def test_the_list_says_it_for_each_queue(self, api: Api) -> None:
        served = await queue(api, channels=["chat"])
        lonely = await queue(api, channels=["web"])
        await api.agent(capacity={"chat": 3})
        listed = {
            q["name"]: q["unserved_channels"] for q in expect(await api.get(QUEUES), 200)["items"]
        }
        assert (listed[served["name"]], listed[lonely["name"]]) == ([], ["web"])
