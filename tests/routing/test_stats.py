"""GET /api/v1/queues/{id}/stats through the API, with a real dispatcher and real timers.

The scenarios use an explicit ``from`` (the queue's creation time) so that an aligned
interval boundary passing mid-test cannot move a contact out of the figures.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.routing.erlang import agents_needed
from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually
from tests.routing.acd import available_agent, contact, offer_for, queue

SL_20S = {"threshold_s": 20, "target_pct": 80, "counts_abandons": True, "short_abandon_s": 5}


async def stats(api: Api, ref: object, **params: Any) -> dict[str, Any]:
    return expect(await api.get(f"/api/v1/queues/{ref}/stats", params=params), 200)  # type: ignore[no-any-return]


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


async def answer_and_complete(api: Api, console: Api, queue_name: str) -> dict[str, Any]:
    """A contact offered to ``console``, accepted, completed (no wrap-up): its final view."""
    created = await contact(api, queue_name)
    offer = await offer_for(console, created["id"])
    expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
    expect(await console.post(f"/api/v1/contacts/{created['id']}/complete", {}), 200)
    return expect(await api.get(f"/api/v1/contacts/{created['id']}"), 200)  # type: ignore[no-any-return]


async def abandon_now(api: Api, queue_name: str) -> dict[str, Any]:
    created = await contact(api, queue_name)
    return expect(await api.post(f"/api/v1/contacts/{created['id']}/abandon"), 200)  # type: ignore[no-any-return]


async def set_service_level(api: Api, queue_id: int, **changes: Any) -> None:
    body = {"service_level": {**SL_20S, **changes}}
    expect(await api.patch(f"/api/v1/queues/{queue_id}", body), 200)


class TestKnownScenario:
    """5 offered: 2 answered and completed, 1 short and 1 long abandon, 1 still waiting."""

    @pytest.fixture
    async def scenario(self, api: Api) -> dict[str, Any]:
        q = await queue(api, service_level=SL_20S)
        other = await queue(api)
        console = await available_agent(api)
        answered = [await answer_and_complete(api, console, q["name"]) for _ in range(2)]
        expect(
            await console.post(
                f"/api/v1/agents/{console.me['id']}/status", {"status": "away", "reason": "break"}
            ),
            200,
        )
        short = await abandon_now(api, q["name"])
        await set_service_level(api, q["id"], short_abandon_s=0)
        long = await abandon_now(api, q["name"])
        waiting = await contact(api, q["name"])
        await contact(api, other["name"])  # another queue's traffic must not count
        assert (short["short_abandon"], long["short_abandon"]) == (True, False)
        return {"queue": q, "console": console, "answered": answered, "waiting": waiting}

    async def test_counts_come_from_the_event_log(self, api: Api, scenario: dict[str, Any]) -> None:
        figures = (
            await stats(api, scenario["queue"]["id"], **{"from": scenario["queue"]["created_at"]})
        )["interval"]
        counts = {k: figures[k] for k in ("offered", "answered", "abandoned", "short_abandoned")}
        assert counts == {"offered": 5, "answered": 2, "abandoned": 2, "short_abandoned": 1}
        assert (figures["timed_out"], figures["transferred_out"]) == (0, 0)
        assert figures["abandon_rate_pct"] == 25.0  # 1 long abandon / (5 offered - 1 short)
        assert figures["name"] is None
        assert figures["from"] == scenario["queue"]["created_at"]

    async def test_sl_counts_answered_within_threshold_against_answered_and_long_abandons(
        self, api: Api, scenario: dict[str, Any]
    ) -> None:
        q = scenario["queue"]
        figures = (await stats(api, q["id"], **{"from": q["created_at"]}))["interval"]
        assert figures["service_level"] == {
            "pct": 66.7,
            "threshold_s": 20.0,
            "target_pct": 80.0,
            "counts_abandons": True,
            "short_abandon_s": 0.0,
            "formula": "answered within 20s / (answered + abandoned after 0s)",
        }
        assert figures["service_level_pct"] == 66.7

    async def test_sl_without_counting_abandons_is_answered_within_over_answered(
        self, api: Api, scenario: dict[str, Any]
    ) -> None:
        q = scenario["queue"]
        await set_service_level(api, q["id"], counts_abandons=False)
        level = (await stats(api, q["id"], **{"from": q["created_at"]}))["interval"][
            "service_level"
        ]
        assert (level["pct"], level["formula"]) == (100.0, "answered within 20s / answered")

    async def test_sl_threshold_is_applied_when_the_figures_are_read(
        self, api: Api, scenario: dict[str, Any]
    ) -> None:
        q = scenario["queue"]
        await set_service_level(api, q["id"], threshold_s=0.001, short_abandon_s=5)
        level = (await stats(api, q["id"], **{"from": q["created_at"]}))["interval"][
            "service_level"
        ]
        assert (level["pct"], level["formula"]) == (
            0.0,
            "answered within 0.001s / (answered + abandoned after 5s)",
        )

    async def test_asa_and_aht_are_means_of_the_answered_and_completed_contacts(
        self, api: Api, scenario: dict[str, Any]
    ) -> None:
        q, answered = scenario["queue"], scenario["answered"]
        figures = (await stats(api, q["id"], **{"from": q["created_at"]}))["interval"]
        waits = [seconds_between(c["enqueued_at"], c["answered_at"]) for c in answered]
        handles = [seconds_between(c["answered_at"], c["ended_at"]) for c in answered]
        assert figures["asa_s"] == pytest.approx(sum(waits) / 2, abs=0.002)
        assert figures["aht_s"] == pytest.approx(sum(handles) / 2, abs=0.002)

    async def test_live_figures_show_the_waiting_contact_and_the_away_agent(
        self, api: Api, scenario: dict[str, Any]
    ) -> None:
        q = scenario["queue"]
        body = await stats(api, q["name"])
        live = body["live"]
        assert live["waiting"] == 1
        oldest = seconds_between(scenario["waiting"]["enqueued_at"], body["at"])
        assert live["longest_wait_s"] == pytest.approx(oldest, abs=0.001)
        assert live["agents"] == {
            "total": 1,
            "by_state": {"idle": 1, "offered": 0, "busy": 0, "wrap_up": 0},
            "by_status": {"available": 0, "away": 1, "offline": 0},
        }
        assert body["interval"]["occupancy_pct"] is None  # nobody available

    async def test_available_agent_gets_the_waiting_contact_and_staffs_the_queue(
        self, api: Api, scenario: dict[str, Any]
    ) -> None:
        q, console = scenario["queue"], scenario["console"]
        expect(
            await console.post(
                f"/api/v1/agents/{console.me['id']}/status", {"status": "available"}
            ),
            200,
        )
        await offer_for(console, scenario["waiting"]["id"])
        body = await stats(api, q["id"], **{"from": q["created_at"]})
        live, figures = body["live"], body["interval"]
        assert live["waiting"] == 1  # ringing still counts as waiting
        assert live["agents"]["by_state"]["offered"] == 1
        assert live["agents"]["by_status"]["available"] == 1
        # Rounding to milliseconds weighs on a sub-second interval, hence the tolerance.
        work = figures["aht_s"] * 2
        expected = min(100.0, 100 * work / figures["length_s"])
        assert figures["occupancy_pct"] == pytest.approx(expected, rel=0.05, abs=0.2)
        # The server used unrounded figures; the response rounds them to milliseconds.
        length, aht = figures["length_s"], figures["aht_s"]
        deltas = (-0.001, 0.0, 0.001)
        candidates = {
            agents_needed(5 / (length + d_len), aht + d_aht, 20, 80)
            for d_len in deltas
            for d_aht in deltas
        }
        assert figures["erlang_agents_needed"] in candidates
        assert figures["erlang_agents_needed"] is not None


class TestEndings:
    async def test_timed_out_and_transferred_out_count_in_the_queue_they_left(
        self, api: Api
    ) -> None:
        target = await queue(api)
        q = await queue(api)
        moved = await contact(api, q["name"])
        transfer = {"queue": target["name"]}
        expect(await api.post(f"/api/v1/contacts/{moved['id']}/transfer", transfer), 200)
        overflow = {"max_wait_s": 0.2, "overflow_queue": target["name"]}
        expect(await api.patch(f"/api/v1/queues/{q['id']}", overflow), 200)
        leaving = await contact(api, q["name"])

        async def timed_out() -> bool:
            found = expect(await api.get(f"/api/v1/contacts/{leaving['id']}"), 200)
            return bool(found["status"] == "timed_out")

        await eventually(timed_out, what="the max wait to time the contact out")
        source = (await stats(api, q["id"], **{"from": q["created_at"]}))["interval"]
        assert (source["offered"], source["timed_out"], source["transferred_out"]) == (2, 1, 1)
        arrived = (await stats(api, target["id"], **{"from": q["created_at"]}))["interval"]
        assert (arrived["offered"], arrived["timed_out"], arrived["transferred_out"]) == (2, 0, 0)

    async def test_empty_queue_has_zero_counts_and_null_rates(self, api: Api) -> None:
        q = await queue(api, steps=[])
        body = await stats(api, q["id"])
        figures = body["interval"]
        assert figures["offered"] == 0
        nulls = ("service_level_pct", "asa_s", "aht_s", "abandon_rate_pct", "occupancy_pct")
        assert all(figures[k] is None for k in nulls)
        assert figures["erlang_agents_needed"] is None
        assert body["live"]["waiting"] == 0
        assert body["live"]["longest_wait_s"] == 0.0


class TestAgentsOfTheQueue:
    async def test_only_agents_with_the_last_steps_skills_on_its_channels_count(
        self, api: Api
    ) -> None:
        wide, narrow = (await api.skill())["name"], (await api.skill())["name"]
        q = await queue(
            api,
            channels=["chat"],
            steps=[
                {"skills": [{"skill": narrow, "min_level": 8}], "expires_after_s": 10},
                {"skills": [{"skill": wide, "min_level": 3}]},
            ],
        )
        await available_agent(api, skills=[{"skill": wide, "level": 3}])
        await api.agent(skills=[{"skill": wide, "level": 9}])  # offline, still an agent of it
        await available_agent(api, skills=[{"skill": wide, "level": 2}])  # below the minimum
        await available_agent(api, skills=[{"skill": narrow, "level": 10}])  # first step only
        await available_agent(api, skills=[{"skill": wide, "level": 5}], capacity={"voice": 1})
        await available_agent(
            api, skills=[{"skill": wide, "level": 5}], capacity={"voice": 1, "chat": 0}
        )
        agents = (await stats(api, q["id"]))["live"]["agents"]
        assert agents["total"] == 2
        assert agents["by_status"] == {"available": 1, "away": 0, "offline": 1}
        assert agents["by_state"] == {"idle": 1, "offered": 0, "busy": 0, "wrap_up": 0}


class TestInterval:
    async def test_default_is_the_current_quarter_hour(self, api: Api) -> None:
        q = await queue(api)
        figures = (await stats(api, q["id"]))["interval"]
        start, end = datetime.fromisoformat(figures["from"]), datetime.fromisoformat(figures["to"])
        assert figures["name"] == "15m"
        assert (start.minute % 15, start.second, start.microsecond) == (0, 0, 0)
        assert timedelta(0) <= end - start < timedelta(minutes=15)

    @pytest.mark.parametrize(
        ("interval", "length"),
        [("30m", timedelta(minutes=30)), ("1h", timedelta(hours=1)), ("1d", timedelta(days=1))],
    )
    async def test_named_interval_starts_at_its_aligned_boundary(
        self, api: Api, interval: str, length: timedelta
    ) -> None:
        q = await queue(api)
        figures = (await stats(api, q["id"], interval=interval))["interval"]
        start = datetime.fromisoformat(figures["from"])
        assert figures["name"] == interval
        assert (start - datetime(1970, 1, 1, tzinfo=UTC)) % length == timedelta(0)
        assert datetime.fromisoformat(figures["to"]) - start < length

    async def test_to_in_the_future_is_cut_at_now(self, api: Api) -> None:
        q = await queue(api)
        body = await stats(api, q["id"], **{"from": q["created_at"], "to": "2999-01-01T00:00:00Z"})
        assert body["interval"]["to"] == body["at"]


class TestRefusals:
    @pytest.mark.parametrize("ref", ["999999", "no-such-queue"])
    async def test_unknown_queue_is_404(self, api: Api, ref: str) -> None:
        body = expect(await api.get(f"/api/v1/queues/{ref}/stats"), 404)
        assert body["error"] == "QueueNotFound"

    async def test_unsupported_interval_is_422_naming_interval(self, api: Api) -> None:
        q = await queue(api)
        body = expect(await api.get(f"/api/v1/queues/{q['id']}/stats?interval=7m"), 422)
        assert [f["field"] for f in body["fields"]] == ["interval"]

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            pytest.param({"interval": "1h", "from": "2020-01-01T00:00:00Z"}, "interval", id="both"),
            pytest.param({"to": "2020-01-01T00:00:00Z"}, "from", id="to-without-from"),
            pytest.param(
                {"from": "2020-01-02T00:00:00Z", "to": "2020-01-01T00:00:00Z"}, "to", id="reversed"
            ),
            pytest.param({"from": "2999-01-01T00:00:00Z"}, "from", id="future-from"),
        ],
    )
    async def test_impossible_window_is_422_naming_the_parameter(
        self, api: Api, params: dict[str, str], field: str
    ) -> None:
        q = await queue(api)
        body = expect(await api.get(f"/api/v1/queues/{q['id']}/stats", params=params), 422)
        assert body["field"] == field
        assert body["detail"].startswith(f"{field}: ")

    async def test_malformed_from_is_422_naming_from(self, api: Api) -> None:
        q = await queue(api)
        body = expect(await api.get(f"/api/v1/queues/{q['id']}/stats?from=yesterday"), 422)
        assert [f["field"] for f in body["fields"]] == ["from"]

    async def test_any_signed_in_user_may_read_but_not_anonymous(self, api: Api) -> None:
        q = await queue(api)
        agent = await api.agent()
        console = await api.signed_in_as(agent)
        assert (await stats(console, q["id"]))["queue"] == q["name"]
        expect(await api.client.get(f"/api/v1/queues/{q['id']}/stats"), 401)
