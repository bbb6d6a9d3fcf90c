"""A contact's whole life through the API, with a real dispatcher and real timers."""

from __future__ import annotations

from datetime import datetime

from fastapi import FastAPI

from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually
from tests.routing.acd import (
    available_agent,
    contact,
    offer_for,
    pending_offers,
    queue,
    value,
    where_routing_stands,
)


class TestContactLifecycle:
    async def test_contact_is_offered_answered_completed_and_wrapped_up(self, api: Api) -> None:
        q = await queue(api, wrap_up_s=30)
        console = await available_agent(api)
        created = await contact(api, q["name"])
        assert created["status"] == "queued"
        assert created["position"] == 1
        offer = await offer_for(console, created["id"])
        assert offer["reason"]["strategy"] == "longest_idle"

        expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
        connected = expect(await api.get(f"/api/v1/contacts/{created['id']}"), 200)
        assert connected["status"] == "connected"
        assert connected["agent_id"] == console.me["id"]
        me = expect(await console.get("/api/v1/agents/me"), 200)
        assert me["state"] == "busy"

        done = expect(
            await console.post(
                f"/api/v1/contacts/{created['id']}/complete", {"disposition": "resolved"}
            ),
            200,
        )
        assert done["status"] == "wrap_up"
        assert expect(await console.get("/api/v1/agents/me"), 200)["state"] == "wrap_up"
        expect(await console.post(f"/api/v1/agents/{console.me['id']}/wrap-up/done"), 200)
        final = expect(await api.get(f"/api/v1/contacts/{created['id']}"), 200)
        assert final["status"] == "completed"
        assert expect(await console.get("/api/v1/agents/me"), 200)["state"] == "idle"

    async def test_rejected_contact_goes_to_the_next_agent(self, api: Api) -> None:
        q = await queue(api, reject_delay_s=600)
        first = await available_agent(api)
        created = await contact(api, q["name"])
        offer = await offer_for(first, created["id"])
        second = await available_agent(api)
        expect(await first.post(f"/api/v1/offers/{offer['id']}/reject"), 200)
        again = await offer_for(second, created["id"])
        assert again["agent_id"] == second.me["id"]

    async def test_rejected_contact_goes_to_someone_else_first_even_without_a_delay(
        self, api: Api
    ) -> None:
        # most_skilled keeps the expert first whatever the idle times: without the decline
        # being remembered, the contact would ring the expert again at once.
        skill = await api.skill()
        q = await queue(
            api,
            strategy="most_skilled",
            steps=[{"skills": [{"skill": skill["name"], "min_level": 1}]}],
        )
        expert = await available_agent(api, skills=[{"skill": skill["name"], "level": 9}])
        created = await contact(api, q["name"])
        offer = await offer_for(expert, created["id"])
        novice = await available_agent(api, skills=[{"skill": skill["name"], "level": 2}])
        expect(await expert.post(f"/api/v1/offers/{offer['id']}/reject"), 200)
        again = await offer_for(novice, created["id"])
        assert again["reason"]["tie_break"] == "declined"
        assert again["reason"]["runner_up_agent_id"] == expert.me["id"]
        assert [o["contact_id"] for o in await pending_offers(expert)] == []

    async def test_rejected_contact_returns_to_the_only_agent_who_may_take_it(
        self, api: Api
    ) -> None:
        q = await queue(api, reject_delay_s=0)
        only = await available_agent(api)
        created = await contact(api, q["name"])
        first = await offer_for(only, created["id"])
        expect(await only.post(f"/api/v1/offers/{first['id']}/reject"), 200)
        second = await offer_for(only, created["id"])
        assert second["id"] != first["id"]

    async def test_ring_timeout_expires_the_offer_and_requeues(self, api: Api) -> None:
        q = await queue(api, ring_timeout_s=0.3, no_answer_delay_s=600)
        first = await available_agent(api)
        created = await contact(api, q["name"])
        offer = await offer_for(first, created["id"])
        # Offers made from now on ring long enough for the assertions below.
        expect(await api.patch(f"/api/v1/queues/{q['id']}", {"ring_timeout_s": 60}), 200)
        second = await available_agent(api)
        await offer_for(second, created["id"])
        detail = expect(await api.get(f"/api/v1/contacts/{created['id']}"), 200)
        statuses = [o["status"] for o in detail["offers"]]
        assert statuses == ["expired", "pending"]
        assert detail["offers"][0]["id"] == offer["id"]

    async def test_abandon_while_ringing_frees_the_agent(self, api: Api) -> None:
        q = await queue(api)
        console = await available_agent(api)
        created = await contact(api, q["name"])
        await offer_for(console, created["id"])
        gone = expect(await api.post(f"/api/v1/contacts/{created['id']}/abandon"), 200)
        assert gone["status"] == "abandoned"
        assert gone["short_abandon"] is True

        async def idle() -> bool:
            return bool(expect(await console.get("/api/v1/agents/me"), 200)["state"] == "idle")

        await eventually(idle, what="the agent to be idle again")


class TestEstimatedWait:
    async def test_wait_is_unknown_until_five_contacts_were_handled(self, api: Api) -> None:
        q = await queue(api)
        console = await available_agent(api)
        first = await contact(api, q["name"])
        assert first["estimated_wait_s"] is None
        assert first["estimate_basis"] == "unknown"
        for n in range(5):
            created = first if n == 0 else await contact(api, q["name"])
            offer = await offer_for(console, created["id"])
            expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
            expect(await console.post(f"/api/v1/contacts/{created['id']}/complete", {}), 200)
        # The answer is built in the creating transaction: the dispatcher cannot have
        # offered this contact yet, so it is queued at position 1 with one agent staffed.
        waiting = await contact(api, q["name"])
        assert waiting["position"] == 1
        assert waiting["estimated_wait_s"] is not None
        assert waiting["estimate_basis"].startswith("aht=")
        assert "samples=5" in waiting["estimate_basis"]


class TestNoAnswer:
    async def test_agent_who_misses_max_no_answer_offers_goes_away(
        self, api: Api, app: FastAPI
    ) -> None:
        q = await queue(api, ring_timeout_s=0.2, no_answer_delay_s=0, max_no_answer=2)
        console = await available_agent(api)
        created = await contact(api, q["name"])

        async def away() -> dict[str, object] | None:
            me: dict[str, object] = expect(await console.get("/api/v1/agents/me"), 200)
            return me if me["status"] == "away" else None

        # Two ring timeouts of 0.2 s and a round between them take well under a second; the
        # deadline only bounds how long a broken routing takes to fail, on a machine whose
        # loops and database stall for seconds at a time.
        me = await eventually(
            away,
            within=30,
            what="the agent to be set away after two missed offers",
            explain=lambda: where_routing_stands(app, created["id"]),
        )
        assert me["status_reason"] == "no_answer"
        detail = expect(await api.get(f"/api/v1/contacts/{created['id']}"), 200)
        assert detail["status"] == "queued", "the contact keeps waiting for someone else"
        assert [o["status"] for o in detail["offers"]] == ["expired", "expired"]

    async def test_an_agent_back_from_missed_offers_is_set_away_after_as_many_again(
        self, api: Api, app: FastAPI
    ) -> None:
        q = await queue(api, ring_timeout_s=0.2, no_answer_delay_s=0, max_no_answer=2)
        console = await available_agent(api)
        me = console.me["id"]
        await contact(api, q["name"])

        async def away() -> dict[str, object] | None:
            shown: dict[str, object] = expect(await console.get("/api/v1/agents/me"), 200)
            return shown if shown["status"] == "away" else None

        await eventually(away, what="the agent to be set away after two missed offers")
        back = expect(
            await console.post(f"/api/v1/agents/{me}/status", {"status": "available"}), 200
        )
        again = await eventually(away, what="the agent to be set away again")

        assert again["status_reason"] == "no_answer"
        missed = await value(
            app.state.engine,
            "SELECT count(*) FROM offers WHERE agent_id = :me AND status = 'expired'"
            " AND created_at >= :back",
            me=me,
            back=datetime.fromisoformat(back["status_changed_at"]),
        )
        assert missed == 2
