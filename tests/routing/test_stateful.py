"""Work conservation (invariant 3), by randomised walks through the API.

A hypothesis state machine drives a small centre through the HTTP API: contacts of every
tier arrive in two queues with different skills and routing steps, agents come and go,
answer, reject, complete and finish their wrap-up, customers hang up. After every step no
agent that could take a waiting contact may stay without it once the dispatcher has had
its chance: the machine polls (with a deadline) until no such pair is left.

The dispatcher's safety tick is set to a minute, so only its wake-ups (new contacts, freed
agents, expiring routing steps, ending reject delays) can settle the centre in time: a
missing wake-up fails the walk. The machine owns an event loop of its own and runs the app
(its real dispatcher and timers) on it between steps.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import make_settings, truncate_all
from tests.fixtures.factories import ADMIN_PASSWORD, Api, expect
from tests.fixtures.polling import eventually
from tests.routing.acd import available_agent, instance, pending_offers, queue, rows, violations

TIERS = ("platinum", "gold", "standard")
AGENTS = 2
SETTLE_WITHIN_S = 3.0  # far above the dispatcher's latency, far below its one-minute tick


class Centre:
    """A running app with two queues, two agents and a customer per tier: few enough that
    agents fill up and contacts wait, which is where conservation can fail."""

    def __init__(self, stack: AsyncExitStack, api: Api, engine: AsyncEngine) -> None:
        self.stack, self.api, self.engine = stack, api, engine
        self.queues: list[dict[str, Any]] = []
        self.consoles: list[Api] = []
        self.customers: dict[str, int] = {}

    @classmethod
    async def open(cls, database_url: str) -> Centre:
        await truncate_all(database_url)
        stack = AsyncExitStack()
        app, client = await stack.enter_async_context(
            instance(make_settings(database_url, dispatch_tick_s=60))
        )
        centre = cls(stack, await Api.signed_in(client, "admin", ADMIN_PASSWORD), app.state.engine)
        await centre._furnish()
        return centre

    async def _furnish(self) -> None:
        api = self.api
        billing, cards = (await api.skill("billing"))["name"], (await api.skill("cards"))["name"]
        self.queues = [
            # A strict first step that widens after 0.4 s; a short reject delay.
            await queue(
                api,
                name="billing",
                channels=["chat", "voice"],
                steps=[
                    {"skills": [{"skill": billing, "min_level": 5}], "expires_after_s": 0.4},
                    {"skills": [{"skill": billing, "min_level": 1}]},
                ],
                ring_timeout_s=600,
                reject_delay_s=0.3,
                wrap_up_s=0,
            ),
            # One step that never expires; wrap-up lasts until the agent says done.
            await queue(
                api,
                name="cards",
                channels=["chat"],
                steps=[{"skills": [{"skill": cards, "min_level": 3}]}],
                ring_timeout_s=600,
                reject_delay_s=0,
                wrap_up_s=600,
            ),
        ]
        levels = [{billing: 7}, {billing: 2, cards: 5}]
        for n, skills in enumerate(levels):
            console = await available_agent(
                api,
                name=f"Agent {n}",
                capacity={"chat": 2, "voice": 1},
                skills=[{"skill": s, "level": lv} for s, lv in skills.items()],
            )
            self.consoles.append(console)
        for tier in TIERS:
            self.customers[tier] = (await api.customer(tier=tier))["id"]

    async def close(self) -> None:
        await self.stack.aclose()

    async def contacts_of(self, agent: int, status: str) -> list[int]:
        found = await rows(
            self.engine,
            "SELECT id FROM contacts WHERE agent_id = :agent AND status = :status ORDER BY id",
            agent=self.consoles[agent].me["id"],
            status=status,
        )
        return [r.id for r in found]

    async def waiting(self) -> list[int]:
        found = await rows(
            self.engine,
            "SELECT id FROM contacts WHERE status IN ('queued', 'offered') ORDER BY id",
        )
        return [r.id for r in found]

    async def idle_matches(self) -> list[tuple[int, str, int]]:
        """(agent, channel, contact): a routable agent with room that meets the current
        routing step of a queued contact on that channel. Computed here from the rows,
        independently of the scoring module."""
        pairs = await rows(
            self.engine,
            """
            SELECT a.id AS agent, ac.channel, c.id AS contact, c.routing_started_at,
                   q.steps, now() AS now,
                   (SELECT coalesce(jsonb_object_agg(s.name, sk.level), '{}')
                    FROM agent_skills sk JOIN skills s ON s.id = sk.skill_id
                    WHERE sk.agent_id = a.id) AS skills
            FROM agents a
            JOIN agent_channels ac ON ac.agent_id = a.id AND ac.load < ac.capacity
            JOIN contacts c ON c.status = 'queued' AND c.channel = ac.channel
            JOIN queues q ON q.id = c.queue_id
            WHERE a.status = 'available' AND a.active AND a.work_wrap_ups = 0
              AND (a.ready_at IS NULL OR a.ready_at <= now())
            """,
        )
        return [
            (p.agent, p.channel, p.contact)
            for p in pairs
            if meets(p.skills, step_in_force(p.steps, p.routing_started_at, p.now))
        ]


def step_in_force(
    steps: list[dict[str, Any]], started: datetime, now: datetime
) -> list[dict[str, Any]]:
    """The skills the contact's routing step requires now (none once every step expired)."""
    end = started
    for step in steps:
        if step.get("expires_after_s") is None:
            return list(step["skills"])
        end += timedelta(seconds=step["expires_after_s"])
        if now < end:
            return list(step["skills"])
    return []


def meets(levels: dict[str, int], required: list[dict[str, Any]]) -> bool:
    return all(levels.get(r["skill"], 0) >= r["min_level"] for r in required)


agents = st.integers(min_value=0, max_value=AGENTS - 1)
arrivals = st.tuples(st.sampled_from([0, 1]), st.sampled_from(TIERS), st.booleans())


@dataclass(frozen=True)
class Held:
    """A contact an agent answered (in ``connected``) or is wrapping up (in ``wrapping``)."""

    agent: int
    contact: int
    channel: str


class WorkConservation(RuleBasedStateMachine):
    connected = Bundle("connected")
    wrapping = Bundle("wrapping")

    database_url: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        try:
            self.centre = self.run(Centre.open(self.database_url))
        except BaseException:
            self.loop.close()
            raise
        self.away: set[int] = set()

    def run(self, step: Any) -> Any:
        return self.loop.run_until_complete(step)

    def teardown(self) -> None:
        try:
            self.run(self.centre.close())
            self.run(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()

    def arrive(self, queue: int, tier: str, voice: bool) -> None:
        c = self.centre
        channel = "voice" if voice and "voice" in c.queues[queue]["channels"] else "chat"
        body: dict[str, Any] = {"channel": channel, "queue": c.queues[queue]["name"]}
        body["customer"] = {"id": c.customers[tier]}
        created = expect(self.run(c.api.post("/api/v1/contacts", body)), 201)
        assert created["tier"] == tier

    @initialize(rush=st.lists(arrivals, min_size=3, max_size=10))
    def contacts_already_waiting(self, rush: list[tuple[int, str, bool]]) -> None:
        for arrival in rush:
            self.arrive(*arrival)

    @rule(arrival=arrivals)
    def contact_arrives(self, arrival: tuple[int, str, bool]) -> None:
        self.arrive(*arrival)

    @rule(agent=agents, available=st.booleans())
    def agent_comes_or_goes(self, agent: int, available: bool) -> None:
        console = self.centre.consoles[agent]
        body = {"status": "available"} if available else {"status": "away", "reason": "break"}
        expect(self.run(console.post(f"/api/v1/agents/{console.me['id']}/status", body)), 200)
        if available:
            self.away.discard(agent)
        else:
            self.away.add(agent)

    @rule(target=connected, agent=agents, accept=st.sampled_from([True, True, False]))
    def agent_answers_its_offers(self, agent: int, accept: bool) -> Any:
        console = self.centre.consoles[agent]
        verb = "accept" if accept else "reject"
        answered = []
        for offer in self.run(pending_offers(console)):
            answer = self.run(console.post(f"/api/v1/offers/{offer['id']}/{verb}"))
            if answer.status_code == 409 and agent in self.away:
                # Gone away: the offers ringing at the agent are being taken back meanwhile.
                assert answer.json()["status"] == "rescinded", answer.text
                continue
            expect(answer, 200)
            answered.append(Held(agent, offer["contact_id"], offer["channel"]))
        return multiple(*answered) if accept else multiple()

    @rule(target=wrapping, held=consumes(connected))
    def agent_completes_a_contact(self, held: Held) -> Any:
        url = f"/api/v1/contacts/{held.contact}/complete"
        done = expect(self.run(self.centre.consoles[held.agent].post(url, {})), 200)
        return held if done["status"] == "wrap_up" else multiple()

    @rule(held=consumes(wrapping))
    def agent_finishes_wrap_up(self, held: Held) -> None:
        console = self.centre.consoles[held.agent]
        wrapping = self.run(self.centre.contacts_of(held.agent, "wrap_up"))
        answer = self.run(console.post(f"/api/v1/agents/{console.me['id']}/wrap-up/done"))
        expect(answer, 200 if wrapping else 409)  # an earlier "done" may have ended it

    @rule(target=connected, held=consumes(connected))
    def agent_transfers_a_contact(self, held: Held) -> Any:
        """Hand a connected chat over to the other queue: the agent is free of it at once."""
        if held.channel != "chat":
            return held  # only the billing queue takes voice: keep it
        c = self.centre
        contact = expect(self.run(c.api.get(f"/api/v1/contacts/{held.contact}")), 200)
        target = next(q["name"] for q in c.queues if q["name"] != contact["queue"])
        url = f"/api/v1/contacts/{held.contact}/transfer"
        moved = expect(self.run(c.consoles[held.agent].post(url, {"queue": target})), 200)
        assert moved["enqueued_at"] == contact["enqueued_at"]
        return multiple()

    @rule(pick=st.integers(min_value=0))
    def customer_hangs_up(self, pick: int) -> None:
        waiting = self.run(self.centre.waiting())
        if waiting:
            contact_id = waiting[pick % len(waiting)]
            gone = expect(
                self.run(self.centre.api.post(f"/api/v1/contacts/{contact_id}/abandon")), 200
            )
            assert gone["status"] == "abandoned"

    @invariant()
    def no_agent_idles_beside_a_contact_it_could_take(self) -> None:
        async def settled() -> bool:
            return not await self.centre.idle_matches()

        try:
            self.run(eventually(settled, within=SETTLE_WITHIN_S, what="the dispatcher"))
        except AssertionError:
            left = self.run(self.centre.idle_matches())
            raise AssertionError(f"agents idle beside contacts they could take: {left}") from None

    @invariant()
    def no_double_assignment_nor_broken_books(self) -> None:
        broken = self.run(violations(self.centre.engine))
        assert not broken, broken


# No shrinking: every failing replay waits out the settling deadline, so shrinking a walk
# takes minutes; the failing walk is printed as found.
WALKS = settings(
    max_examples=15,
    stateful_step_count=15,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)


def test_no_eligible_agent_idles_while_a_contact_it_could_take_waits(database_url: str) -> None:
    walk = type("Walk", (WorkConservation,), {"database_url": database_url})
    run_state_machine_as_test(walk, settings=WALKS)
