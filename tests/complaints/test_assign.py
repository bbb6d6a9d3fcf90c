"""Automatic assignment: the chooser's rules one by one (pure), then over the API: the choice
and its reasons on record, conflicts of interest, relationship managers first, the team
queue, the clocks kept, and capacity held when many complaints are assigned at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncEngine

from app.complaints.assign import (
    LISTED,
    REASON_LIMIT,
    AssignRules,
    Candidate,
    Choice,
    ComplaintFacts,
    Exclusion,
    Rule,
    choose,
    contenders,
    exclusion,
    reason_text,
    rules_from,
)
from app.complaints.assign_router import router as assign_router
from app.complaints.events import PAYLOADS
from app.complaints.router import router as complaints_router
from app.config import Settings, default_tiers
from app.main import create_app
from tests.complaints.test_registration import (
    COMPLAINTS,
    Clock,
    clock,
    complaint_body,
    register,
    scalar,
)
from tests.conftest import make_settings
from tests.fixtures.desk_clock import freeze_desk
from tests.fixtures.factories import Api, expect, unique

__all__ = ["clock"]  # the injected clock, shared with the registration tests

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PAYMENT = ComplaintFacts(categories=("payment",), branch="Pudong")
FULL_WIDTH_PUDONG = "\uff30\uff35\uff24\uff2f\uff2e\uff27"


def agent(agent_id: int, **overrides: Any) -> Candidate:
    """A candidate who may take a payment complaint about Pudong, unless overridden."""
    values: dict[str, Any] = {
        "agent_id": agent_id,
        "skills": frozenset({"payment"}),
        "capacity": 5,
        "load": 0,
        "site": "shanghai",
        "team": "card-desk",
    }
    values.update(overrides)
    return Candidate(**values)


# --- the chooser -------------------------------------------------------------------------------


class TestExclusion:
    @pytest.mark.parametrize(
        ("candidate", "facts", "expected"),
        [
            (agent(1), PAYMENT, None),
            (agent(1), ComplaintFacts(categories=("payment",), assignee_id=1), "current_assignee"),
            (agent(1, active=False), PAYMENT, "inactive"),
            (
                agent(1),
                ComplaintFacts(categories=("payment",), implicated=frozenset({1})),
                "complained_about",
            ),
            (agent(1, site="Pudong"), PAYMENT, "same_branch"),
            (agent(1, team="pudong"), PAYMENT, "same_branch"),
            (agent(1, site=FULL_WIDTH_PUDONG), PAYMENT, "same_branch"),
            (agent(1, site="Pu-dong "), PAYMENT, "same_branch"),
            (agent(1, site=None, team=None), PAYMENT, None),
            (agent(1, site="Pudong East"), PAYMENT, None),
            (agent(1, skills=frozenset()), PAYMENT, "missing_skill"),
            (agent(1, skills=frozenset()), ComplaintFacts(branch="Pudong"), None),
            (
                agent(1),
                ComplaintFacts(categories=("payment", "credit_card"), branch="Pudong"),
                "missing_skill",
            ),
            (agent(1, load=5), PAYMENT, "at_capacity"),
            (agent(1, load=4), PAYMENT, None),
            (agent(1, capacity=0), PAYMENT, "at_capacity"),
        ],
    )
    def test_each_rule_excludes_what_it_names(
        self, candidate: Candidate, facts: ComplaintFacts, expected: str | None
    ) -> None:
        assert exclusion(candidate, facts) == expected

    def test_the_first_rule_that_holds_is_the_one_named(self) -> None:
        everything = agent(1, active=False, site="Pudong", skills=frozenset(), load=9)
        facts = ComplaintFacts(categories=("payment",), branch="Pudong", implicated=frozenset({1}))
        assert exclusion(everything, facts) is Exclusion.inactive
        assert exclusion(agent(1, site="Pudong", load=9), facts) is Exclusion.complained_about

    def test_a_category_needs_the_skill_the_map_names_else_its_own(self) -> None:
        rules = AssignRules(skill_for={"payment": "billing"})
        facts = ComplaintFacts(categories=("payment", "loans"))
        assert rules.skills_needed(facts.categories) == ("billing", "loans")
        both = agent(1, skills=frozenset({"billing", "loans"}))
        assert exclusion(both, facts, rules) is None
        assert exclusion(agent(1, skills=frozenset({"payment", "loans"})), facts, rules) == (
            "missing_skill"
        )

    def test_only_agents_kept_out_by_their_load_alone_are_locked(self) -> None:
        pool = [agent(3, load=5), agent(1), agent(2, active=False), agent(4, site="Pudong")]
        assert contenders(pool, PAYMENT) == [1, 3]


class TestChoose:
    def test_the_least_loaded_by_fraction_of_capacity_wins(self) -> None:
        pool = [agent(1, load=2, capacity=4), agent(2, load=3, capacity=10), agent(3, load=1)]
        choice = choose(pool, PAYMENT)
        assert (choice.agent_id, choice.rule) == (3, Rule.least_loaded)
        assert choice.eligible == (3, 2, 1)

    def test_equal_loads_go_to_the_longest_since_last_assignment(self) -> None:
        pool = [
            agent(1, load=1, last_assigned_at=T0),
            agent(2, load=1, last_assigned_at=T0 - timedelta(hours=1)),
        ]
        choice = choose(pool, PAYMENT)
        assert (choice.agent_id, choice.rule) == (2, Rule.longest_since_last_assignment)

    def test_never_assigned_is_longest_since_last_assignment(self) -> None:
        pool = [agent(1, last_assigned_at=T0 - timedelta(days=300)), agent(2)]
        choice = choose(pool, PAYMENT)
        assert (choice.agent_id, choice.rule) == (2, Rule.longest_since_last_assignment)

    def test_a_full_tie_goes_to_the_lowest_id_whatever_the_order(self) -> None:
        pool = [agent(9), agent(4), agent(7)]
        assert (choose(pool, PAYMENT).agent_id, choose(pool, PAYMENT).rule) == (4, Rule.lowest_id)
        assert choose(list(reversed(pool)), PAYMENT).agent_id == 4

    def test_a_single_eligible_agent_is_the_only_candidate(self) -> None:
        choice = choose([agent(1, load=5), agent(2, load=4)], PAYMENT)
        assert (choice.agent_id, choice.rule) == (2, Rule.only_candidate)
        assert choice.excluded == {1: Exclusion.at_capacity}

    def test_nobody_eligible_queues_for_the_team(self) -> None:
        rules = AssignRules(queue="card-team")
        choice = choose([agent(1, load=5), agent(2, skills=frozenset())], PAYMENT, rules)
        assert (choice.agent_id, choice.rule) == (None, Rule.nobody_eligible)
        assert choice.reasons[-1] == "nobody eligible: queued for card-team"
        assert "excluded (at_capacity): 1" in choice.reasons
        assert "excluded (missing_skill): 2" in choice.reasons
        assert choose([], PAYMENT).agent_id is None

    def test_the_reasons_say_what_was_needed_and_who_was_chosen(self) -> None:
        facts = ComplaintFacts(categories=("payment",), branch="Pudong", implicated=frozenset({5}))
        choice = choose([agent(5), agent(6, load=2, last_assigned_at=T0)], facts)
        assert choice.reasons == (
            "needs skills: payment",
            "complained about: 5",
            "excluded (complained_about): 5",
            f"chose agent 6 (only_candidate): 2 of 5 cases open, last assigned {T0.isoformat()}",
        )
        unclassified = choose([agent(1)], ComplaintFacts(branch="Pudong"))
        assert unclassified.reasons[0] == "needs no skill (unclassified)"


class TestRelationshipManager:
    RULES = AssignRules(rm_tiers=frozenset({"platinum"}))

    def facts(self, tier: str, manager: int = 2) -> ComplaintFacts:
        return ComplaintFacts(
            categories=("payment",), branch="Pudong", relationship_manager_id=manager, tier=tier
        )

    def test_a_top_tier_customer_gets_their_manager_before_a_less_loaded_agent(self) -> None:
        choice = choose([agent(1), agent(2, load=4)], self.facts("platinum"), self.RULES)
        assert (choice.agent_id, choice.rule) == (2, Rule.relationship_manager)

    def test_other_tiers_are_assigned_by_load(self) -> None:
        choice = choose([agent(1), agent(2, load=4)], self.facts("silver"), self.RULES)
        assert (choice.agent_id, choice.rule) == (1, Rule.least_loaded)

    def test_a_manager_who_may_not_take_it_is_passed_over_and_said_so(self) -> None:
        choice = choose([agent(1), agent(2, load=5)], self.facts("platinum"), self.RULES)
        assert choice.agent_id == 1
        assert "relationship manager 2 passed over (at_capacity)" in choice.reasons

    def test_a_manager_who_is_no_candidate_is_said_so(self) -> None:
        choice = choose([agent(1)], self.facts("platinum", manager=8), self.RULES)
        assert choice.agent_id == 1
        assert "relationship manager 8 is not a candidate" in choice.reasons

    def test_the_tiers_that_wait_for_their_manager_come_from_the_tier_settings(self) -> None:
        assert rules_from(default_tiers()).rm_tiers == {"platinum", "gold"}


class TestReasonText:
    def test_long_lists_of_agents_are_cut_short(self) -> None:
        pool = [agent(i, load=5) for i in range(1, LISTED + 6)]
        choice = choose(pool, PAYMENT)
        [line] = [r for r in choice.reasons if r.startswith("excluded")]
        assert line.endswith(f"{LISTED} and 5 more")

    def test_the_reason_line_fits_a_transition(self) -> None:
        long = Choice(None, Rule.nobody_eligible, ("x" * REASON_LIMIT, "y"))
        assert len(reason_text(long)) == REASON_LIMIT
        assert reason_text(Choice(1, Rule.lowest_id, ("a", "b"))) == "a; b"


candidates = st.lists(
    st.builds(
        Candidate,
        agent_id=st.integers(1, 12),
        skills=st.frozensets(st.sampled_from(["payment", "loans"])),
        capacity=st.integers(0, 4),
        load=st.integers(0, 4),
        active=st.booleans(),
        site=st.sampled_from([None, "Pudong", "shanghai"]),
        team=st.none(),
        last_assigned_at=st.none() | st.sampled_from([T0, T0 + timedelta(hours=1)]),
    ),
    unique_by=lambda c: c.agent_id,
    max_size=8,
)
complaint_facts = st.builds(
    ComplaintFacts,
    categories=st.lists(st.sampled_from(["payment", "loans"]), max_size=2).map(tuple),
    branch=st.just("Pudong"),
    implicated=st.frozensets(st.integers(1, 12), max_size=2),
    relationship_manager_id=st.none() | st.integers(1, 12),
    tier=st.sampled_from(["platinum", "standard"]),
    assignee_id=st.none() | st.integers(1, 12),
)


class TestChooserProperties:
    @given(candidates, complaint_facts)
    def test_the_chosen_agent_is_never_one_the_rules_exclude(
        self, pool: list[Candidate], facts: ComplaintFacts
    ) -> None:
        rules = AssignRules(rm_tiers=frozenset({"platinum"}))
        choice = choose(pool, facts, rules)
        allowed = {c.agent_id for c in pool if exclusion(c, facts, rules) is None}
        assert set(choice.eligible) == allowed
        assert (choice.agent_id is None) == (not allowed)
        assert choice.agent_id is None or choice.agent_id in allowed
        assert choose(list(reversed(pool)), facts, rules) == choice


# --- over the API ------------------------------------------------------------------------------

AUTO = COMPLAINTS + "/{id}/auto-assign"
AUTO_PATH = COMPLAINTS + "/{complaint_id}/auto-assign"


@pytest.fixture
def settings(db: str) -> Settings:
    """Enough pooled connections for thirty requests at once."""
    return make_settings(db, db_pool_size=32)


def mounted(application: FastAPI, path: str) -> bool:
    return any(r.path_format == path for r in iter_route_contexts(application.routes))


def mount_first(application: FastAPI) -> None:
    """Mount the auto-assign route just ahead of the complaint routes (as ``app.main``
    must), so the lifecycle's ``/{verb}`` route does not take ``auto-assign`` for a verb."""
    if mounted(application, AUTO_PATH):
        return
    routes = application.router.routes
    before = len(routes)
    application.include_router(assign_router)
    added = routes[before:]
    del routes[before:]
    at = next(
        i for i, r in enumerate(routes) if getattr(r, "original_router", None) is complaints_router
    )
    routes[at:at] = added


@pytest.fixture
async def app(settings: Settings, clock: Clock) -> AsyncIterator[FastAPI]:
    """The app with the complaint routes, the auto-assign route and the injected clock."""
    application = create_app(settings)
    if not mounted(application, COMPLAINTS):
        application.include_router(complaints_router)
    mount_first(application)
    freeze_desk(application, clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


async def case_agent(api: Api, *skills: str, capacity: int = 5, **overrides: Any) -> int:
    """An agent with ``case`` capacity and the skills named (created if need be)."""
    levels = [{"skill": s, "level": 5} for s in skills]
    made = await api.agent(capacity={"case": capacity}, skills=levels, **overrides)
    return int(made["id"])


async def skills(api: Api, *names: str) -> None:
    for name in names:
        await api.skill(name)


async def complaint(api: Api, *categories: str, branch: str | None = None, **overrides: Any) -> int:
    """A registered complaint (a branch of its own by default), classified under
    ``categories``."""
    matter = {
        **complaint_body()["matter"],
        "branch": branch or unique("branch-"),
        "description": unique("matter "),
    }
    done = await register(api, complaint_body(matter=matter, **overrides))
    if categories:
        body = {"categories": list(categories), "severity": "medium"}
        expect(await api.post(f"{COMPLAINTS}/{done['id']}/classify", body), 200)
    return int(done["id"])


async def auto(api: Api, complaint_id: int, body: Any = None, status: int = 200) -> Any:
    return expect(await api.post(AUTO.format(id=complaint_id), body), status)


async def audit(api: Api, complaint_id: int) -> list[dict[str, Any]]:
    trail = expect(await api.get(f"{COMPLAINTS}/{complaint_id}/audit"), 200)
    assert trail["verified"] is True
    return trail["entries"]  # type: ignore[no-any-return]


class TestAutoAssign:
    async def test_assigns_to_the_skilled_agent_with_room_and_records_why(self, api: Api) -> None:
        await skills(api, "payment", "loans")
        await case_agent(api, "loans")
        full = await case_agent(api, "payment", capacity=1)
        await auto(api, await complaint(api, "payment"))  # fills ``full``
        chosen = await case_agent(api, "payment")
        cid = await complaint(api, "payment")

        done = await auto(api, cid)

        assert (done["assignee_id"], done["status"], done["queued"]) == (chosen, "assigned", False)
        assert done["rule"] == "only_candidate"
        assert f"excluded (at_capacity): {full}" in done["reasons"]
        [entry] = [e for e in await audit(api, cid) if e["action"] == "assign"]
        assert entry["reason"] == "; ".join(done["reasons"])
        assert entry["data"]["facts"] == {"assignee": chosen, "reason": entry["reason"]}

    async def test_reassignment_keeps_the_clocks(self, api: Api, clock: Clock) -> None:
        await skills(api, "payment")
        first = await case_agent(api, "payment")
        cid = await complaint(api, "payment")
        assert (await auto(api, cid))["assignee_id"] == first
        expect(await api.post(f"{COMPLAINTS}/{cid}/start"), 200)
        before = expect(await api.get(f"{COMPLAINTS}/{cid}"), 200)
        second = await case_agent(api, "payment")
        clock.advance(timedelta(hours=20))

        done = await auto(api, cid)

        after = expect(await api.get(f"{COMPLAINTS}/{cid}"), 200)
        assert (done["assignee_id"], after["status"]) == (second, "in_progress")
        assert after["due_at"] == before["due_at"]
        started = {c["kind"]: c["started_at"] for c in before["clocks"]}
        assert {c["kind"]: c["started_at"] for c in after["clocks"]} == started

    async def test_never_the_person_complained_about_and_remembers_them(self, api: Api) -> None:
        await skills(api, "payment")
        implicated = await case_agent(api, "payment")
        other = await case_agent(api, "payment", capacity=1)
        cid = await complaint(api, "payment")

        done = await auto(api, cid, {"implicated": [implicated]})
        assert done["assignee_id"] == other
        assert f"excluded (complained_about): {implicated}" in done["reasons"]

        again = await auto(api, cid)  # ``other`` holds it: only ``implicated`` has room
        assert (again["queued"], again["assignee_id"]) == (True, other)
        assert f"excluded (complained_about): {implicated}" in again["reasons"]

    async def test_never_an_agent_of_the_branch_complained_about(self, api: Api) -> None:
        await skills(api, "payment")
        by_site = await case_agent(api, "payment", site="pudong")
        by_team = await case_agent(api, "payment", site="shanghai", team="PUDONG")
        outsider = await case_agent(api, "payment", site="shanghai", team="card-desk", capacity=9)
        cid = await complaint(api, "payment", branch="Pudong")

        done = await auto(api, cid)

        assert done["assignee_id"] == outsider
        assert f"excluded (same_branch): {by_site}, {by_team}" in done["reasons"]

    async def test_equal_loads_go_to_whoever_was_given_one_longest_ago(
        self, api: Api, clock: Clock
    ) -> None:
        await skills(api, "payment")
        low = await case_agent(api, "payment")
        high = await case_agent(api, "payment")
        first = await auto(api, await complaint(api, "payment"), {"implicated": [low]})
        clock.advance(timedelta(minutes=10))
        second = await auto(api, await complaint(api, "payment"))
        clock.advance(timedelta(minutes=10))

        third = await auto(api, await complaint(api, "payment"))

        assert (first["assignee_id"], second["assignee_id"]) == (high, low)
        assert (third["assignee_id"], third["rule"]) == (high, "longest_since_last_assignment")

    async def test_a_top_tier_customer_gets_their_relationship_manager(self, api: Api) -> None:
        await skills(api, "payment")
        await case_agent(api, "payment")
        manager = await case_agent(api, "payment")
        expect(await api.post(AUTO.format(id=await complaint(api, "payment"))), 200)
        customer = await api.customer(tier="platinum", relationship_manager_id=manager)
        cid = await complaint(api, "payment", customer={"id": customer["id"]})

        done = await auto(api, cid)

        assert (done["assignee_id"], done["rule"]) == (manager, "relationship_manager")

    async def test_nobody_free_queues_it_unassigned_with_an_event(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        await skills(api, "payment")
        await case_agent(api)  # no skill
        cid = await complaint(api, "payment")
        cursor = await api.event_cursor()

        done = await auto(api, cid)

        assert (done["queued"], done["queue"], done["assignee_id"]) == (True, "complaints", None)
        shown = expect(await api.get(f"{COMPLAINTS}/{cid}"), 200)
        assert (shown["status"], shown["assignee_id"]) == ("classified", None)
        [entry] = [e for e in await audit(api, cid) if e["action"] == "queued"]
        assert entry["data"] == {"queue": "complaints", "rule": "nobody_eligible", "implicated": []}
        assert entry["reason"].endswith("nobody eligible: queued for complaints")
        events = await api.events_until(
            cursor, lambda got: any(e["type"] == "complaint.queued" for e in got)
        )
        [queued] = [e for e in events if e["type"] == "complaint.queued"]
        TypeAdapter(PAYLOADS["complaint.queued"]).validate_python(queued["data"])
        assert queued["data"]["queue"] == "complaints"

    async def test_the_category_to_skill_map_is_the_desks(self, app: FastAPI, api: Api) -> None:
        await skills(api, "billing")
        billing = await case_agent(api, "billing")
        app.state.complaint_assign_rules = AssignRules(skill_for={"payment": "billing"})
        assert (await auto(api, await complaint(api, "payment")))["assignee_id"] == billing


class TestRefusals:
    async def test_a_finished_complaint_is_a_409_naming_its_status(self, api: Api) -> None:
        cid = await complaint(api)
        expect(await api.post(f"{COMPLAINTS}/{cid}/withdraw", {}), 200)
        body = await auto(api, cid, status=409)
        assert "withdrawn" in body["detail"]

    async def test_an_unknown_complaint_is_a_404(self, api: Api) -> None:
        await auto(api, 999_999, status=404)

    async def test_an_agent_cannot_auto_assign_what_is_not_theirs(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        cid = await complaint(api)
        someone = await api.signed_in_as(await api.agent(site="beijing"))
        entries = await scalar(engine, "SELECT count(*) FROM complaint_audit")
        await auto(someone, cid, status=404)
        assert await scalar(engine, "SELECT count(*) FROM complaint_audit") == entries

    async def test_unknown_fields_are_refused(self, api: Api) -> None:
        await auto(api, await complaint(api), {"agent": 1}, status=422)


class TestCapacityUnderConcurrency:
    async def test_thirty_at_once_to_three_agents_of_five_never_exceed_capacity(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        await skills(api, "payment")
        agents = [await case_agent(api, "payment", capacity=5) for _ in range(3)]
        ids = [await complaint(api, "payment") for _ in range(30)]

        answers = await asyncio.gather(*(api.post(AUTO.format(id=i)) for i in ids))

        assert [a.status_code for a in answers] == [200] * 30
        bodies = [a.json() for a in answers]
        assert sum(not b["queued"] for b in bodies) == 15
        assert sum(b["queued"] for b in bodies) == 15
        held = await scalar(
            engine,
            "SELECT json_object_agg(assignee_id, n) FROM (SELECT assignee_id, count(*) AS n "
            "FROM complaints WHERE assignee_id IS NOT NULL GROUP BY assignee_id) t",
        )
        assert held == {str(a): 5 for a in agents}
        queued = await scalar(engine, "SELECT count(*) FROM complaints WHERE assignee_id IS NULL")
        assert queued == 15


async def last_status_change(engine: AsyncEngine, complaint_id: int) -> dict[str, Any]:
    """The data of the complaint's latest ``complaint.status_changed`` event."""
    found = await scalar(
        engine,
        "SELECT data FROM events WHERE type = 'complaint.status_changed'"
        " AND subject_id = CAST(CAST(:id AS bigint) AS text) ORDER BY id DESC LIMIT 1",
        id=complaint_id,
    )
    return found  # type: ignore[no-any-return]


class TestAReopenToRegisteredIsAssignedAfresh:
    @pytest.mark.parametrize("verb", ["withdraw", "reject"])
    async def test_the_holder_is_let_go_and_the_complaint_can_be_assigned_again(
        self, api: Api, engine: AsyncEngine, verb: str
    ) -> None:
        await skills(api, "payment")
        holder = await case_agent(api, "payment")
        cid = await complaint(api, "payment")
        assert (await auto(api, cid))["assignee_id"] == holder
        why = {"reason": "不属于投诉受理范围"} if verb == "reject" else {}
        expect(await api.post(f"{COMPLAINTS}/{cid}/{verb}", why), 200)

        reopened = expect(
            await api.post(f"{COMPLAINTS}/{cid}/reopen", {"reason": "客户补充了材料"}), 200
        )

        assert (reopened["status"], reopened["assignee_id"]) == ("registered", None)
        listed = expect(await api.get(COMPLAINTS, params={"assignee": holder}), 200)
        assert cid not in [item["id"] for item in listed["items"]]
        entry = (await audit(api, cid))[-1]
        assert (entry["action"], entry["after"]) == ("reopen", "registered")
        assert entry["data"]["previous_assignee_id"] == holder
        event = await last_status_change(engine, cid)
        assert (event["event"], event["assignee_id"], event["previous_agent_id"]) == (
            "reopen",
            None,
            holder,
        )
        # Assigned afresh, the same agent may take it again and start it.
        assert (await auto(api, cid))["assignee_id"] == holder
        as_holder = await api.signed_in_as({"username": await username(engine, holder)})
        started = expect(await as_holder.post(f"{COMPLAINTS}/{cid}/start"), 200)
        assert (started["status"], started["assignee_id"]) == ("in_progress", holder)

    async def test_a_reopen_after_a_resolution_keeps_the_handler(self, api: Api) -> None:
        await skills(api, "payment")
        holder = await case_agent(api, "payment")
        cid = await complaint(api, "payment")
        await auto(api, cid)
        expect(await api.post(f"{COMPLAINTS}/{cid}/start"), 200)
        resolution = {
            "resolution": "重复扣款已退回",
            "root_cause": "清算系统重复提交",
            "corrective_action": "修复重复提交的校验",
            "remedy": "退款并致歉",
        }
        expect(await api.post(f"{COMPLAINTS}/{cid}/resolve", resolution), 200)
        reopened = expect(
            await api.post(f"{COMPLAINTS}/{cid}/reopen", {"reason": "退款未到账"}), 200
        )
        assert (reopened["status"], reopened["assignee_id"]) == ("in_progress", holder)
        assert "previous_assignee_id" not in (await audit(api, cid))[-1]["data"]


async def username(engine: AsyncEngine, agent_id: int) -> str:
    return str(await scalar(engine, "SELECT username FROM agents WHERE id = :id", id=agent_id))
