"""Every route of the app, called as every role, answers what the access table says.

The routes come from the app's own route table; ``EXPECTED`` is written by hand from
``docs/access.md`` (not computed from ``app/agents/access.py``, or it would prove nothing) and a
route it lacks fails the test. A refusal must change nothing: the tables a route could touch
are hashed before and after. One world is built once and every call is made against it, in
one test.

The world: sites "shanghai" and "beijing", an agent and a supervisor in each, the admin; a
queue and a second one to transfer to; a contact held by the shanghai agent (its offer
accepted) and a customer. The shanghai agent is then set away, so nothing the matrix creates
is offered to anyone while it runs.

Answers: a status code, ``OK`` (any 2xx) or ``PASS`` (past the access check: a 2xx or the
409 of a state the calls before left the record in). Websockets: ``SNAPSHOT`` (signed in,
the first message is the snapshot) or the close code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from httpx import Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.routing import Mount
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.agents import access
from app.agents.models import Role
from app.agents.permissions import Principal
from app.errors import Forbidden, NotFound
from tests.fixtures.factories import Api, expect, unique
from tests.realtime.test_ws import HANDSHAKE_S, serving, token_of
from tests.routing.acd import available_agent, contact, offer_for, queue

OK, PASS, SNAPSHOT = "2xx", "pass", "snapshot"
Answer = int | str
# The principals, in the order they call each route. A role is added to the matrix by one
# line here (how to sign it in, in ``World.build``) and its column defaults to 403 below.
ROLES = (
    "none",
    "agent_same",
    "agent_other",
    "supervisor_same",
    "supervisor_other",
    "admin",
    "integration",
)


@dataclass(frozen=True)
class Row:
    """The expected answer of one route for each principal."""

    none: Answer
    agent_same: Answer
    agent_other: Answer
    supervisor_same: Answer
    supervisor_other: Answer
    admin: Answer
    integration: Answer = 403

    def of(self, role: str) -> Answer:
        return getattr(self, role)  # type: ignore[no-any-return]


def public(answer: Answer = 200) -> Row:
    return Row(*([answer] * 6), integration=answer)  # type: ignore[misc]


def signed_in(answer: Answer = 200) -> Row:
    return Row(401, *([answer] * 5))


# (method, path template) -> who gets what. From docs/access.md: agent_same holds the contact
# and its offer and is the agent the agent routes act on; *_other are of the other site.
EXPECTED: dict[tuple[str, str], Row] = {
    ("GET", "/"): public(307),
    ("GET", "/openapi.json"): public(),
    ("GET", "/signin"): public(),
    ("GET", "/console"): public(),
    ("GET", "/status"): public(),
    ("GET", "/wallboard"): public(),
    ("GET", "/desk"): public(),
    ("GET", "/ivr"): public(),
    ("GET", "/reports"): public(),
    ("GET", "/pages/rules.json"): public(),
    ("GET", "/static/{relative}"): public(404),
    ("GET", "/docs"): public(),
    ("GET", "/docs/oauth2-redirect"): public(),
    ("GET", "/docs/websockets"): public(),
    ("GET", "/docs/websockets.md"): public(),
    ("GET", "/health/live"): public(),
    ("GET", "/health/ready"): public(),
    ("GET", "/metrics"): public(),
    # sent as JSON, not a form: refused before any sign-in is counted
    ("POST", "/api/v1/auth/token"): public(422),
    ("POST", "/api/v1/skills"): Row(401, 403, 403, 201, 201, 201),
    ("GET", "/api/v1/skills"): signed_in(),
    ("POST", "/api/v1/agents"): Row(401, 403, 403, 201, 403, 201),
    ("GET", "/api/v1/agents"): signed_in(),
    ("GET", "/api/v1/agents/{agent_id}"): signed_in(),
    ("PATCH", "/api/v1/agents/{agent_id}"): Row(401, 200, 403, 200, 403, 200),
    ("POST", "/api/v1/agents/{agent_id}/status"): Row(401, PASS, 403, PASS, 403, PASS),
    ("POST", "/api/v1/agents/{agent_id}/wrap-up/done"): Row(401, PASS, 403, PASS, 403, PASS),
    ("POST", "/api/v1/customers"): signed_in(201),
    ("GET", "/api/v1/customers"): signed_in(),
    ("GET", "/api/v1/customers/{customer_id}"): signed_in(),
    ("PATCH", "/api/v1/customers/{customer_id}"): signed_in(),
    ("POST", "/api/v1/queues"): Row(401, 403, 403, 201, 201, 201),
    ("GET", "/api/v1/queues"): signed_in(),
    ("GET", "/api/v1/queues/{queue_ref}"): signed_in(),
    ("PATCH", "/api/v1/queues/{queue_ref}"): Row(401, 403, 403, 200, 200, 200),
    ("GET", "/api/v1/queues/{queue_ref}/stats"): signed_in(),
    ("POST", "/api/v1/contacts"): Row(401, 201, 201, 201, 201, 201, integration=201),
    # a list never refuses what it filters: each caller gets the contacts it may read
    ("GET", "/api/v1/contacts"): Row(401, 200, 200, 200, 200, 200),
    ("GET", "/api/v1/contacts/{contact_id}"): Row(401, 200, 404, 200, 404, 200),
    # The matrix's contact came through no IVR: who may read it gets the 404 that says so,
    # anyone else the contact's own 404 (tests/ivr/test_contact_path.py tells them apart).
    ("GET", "/api/v1/contacts/{contact_id}/ivr"): Row(401, 404, 404, 404, 404, 404),
    # a channel ends only the contacts it queued (tests/routing/test_integration_contacts.py);
    # this one the admin queued, so to a channel it does not exist
    ("POST", "/api/v1/contacts/{contact_id}/abandon"): Row(
        401, 403, 403, PASS, PASS, PASS, integration=404
    ),
    ("POST", "/api/v1/contacts/{contact_id}/cancel"): Row(401, 403, 403, PASS, 403, PASS),
    ("POST", "/api/v1/contacts/{contact_id}/complete"): Row(401, PASS, 403, PASS, 403, PASS),
    ("POST", "/api/v1/contacts/{contact_id}/transfer"): Row(401, PASS, 403, PASS, 403, PASS),
    ("GET", "/api/v1/offers"): Row(401, 200, 403, 200, 403, 200),
    ("POST", "/api/v1/offers/{offer_id}/accept"): Row(401, PASS, 403, 403, 403, 403),
    ("POST", "/api/v1/offers/{offer_id}/reject"): Row(401, PASS, 403, 403, 403, 403),
    ("GET", "/api/v1/events"): signed_in(),
    ("WS", "/ws/agent"): Row(4401, SNAPSHOT, SNAPSHOT, SNAPSHOT, SNAPSHOT, SNAPSHOT, 4403),
    ("WS", "/ws/wallboard"): Row(4401, 4403, 4403, SNAPSHOT, SNAPSHOT, SNAPSHOT, 4403),
    ("GET", "/api/v1/access-log"): Row(401, 403, 403, 200, 200, 200),
    ("POST", "/api/v1/api-keys"): Row(401, 403, 403, 403, 403, 201),
    ("GET", "/api/v1/api-keys"): Row(401, 403, 403, 403, 403, 200),
    ("POST", "/api/v1/api-keys/{key_id}/revoke"): Row(401, 403, 403, 403, 403, 200),
    # the complaint is assigned to agent_same; a read refused by ownership or site is a 404
    ("POST", "/api/v1/complaints"): Row(401, 201, 201, 201, 201, 201, integration=201),
    ("GET", "/api/v1/complaints"): Row(401, 200, 200, 200, 200, 200),
    ("GET", "/api/v1/complaints/{complaint_id}"): Row(401, 200, 404, 200, 404, 200),
    ("GET", "/api/v1/complaints/{complaint_id}/audit"): Row(401, 200, 404, 200, 404, 200),
    ("GET", "/api/v1/complaints/{complaint_id}/suggestion"): Row(401, 200, 404, 200, 404, 200),
    ("POST", "/api/v1/complaints/clocks/recompute"): Row(401, 403, 403, 403, 403, 200),
    ("POST", "/api/v1/complaints/{complaint_id}/{verb}"): Row(401, PASS, 404, PASS, 404, PASS),
    ("POST", "/api/v1/complaints/{complaint_id}/auto-assign"): Row(401, PASS, 404, PASS, 404, PASS),
    ("POST", "/api/v1/complaints/{complaint_id}/notes"): Row(401, 201, 404, 201, 404, 201),
    ("GET", "/api/v1/complaints/{complaint_id}/notes"): Row(401, 200, 404, 200, 404, 200),
    ("GET", "/api/v1/complaints/reports/summary"): Row(401, 403, 403, 200, 200, 200),
    ("GET", "/api/v1/reports/queues"): Row(401, 403, 403, 200, 200, 200),
    ("GET", "/api/v1/reports/agents"): Row(401, 403, 403, 200, 200, 200),
    ("GET", "/api/v1/complaints/reports/root-causes"): Row(401, 403, 403, 200, 200, 200),
    ("GET", "/api/v1/complaints/{complaint_id}/notifications"): Row(401, 200, 404, 200, 404, 200),
    # feedback waits for the complaint to be resolved: past the access check, a 409
    ("POST", "/api/v1/complaints/{complaint_id}/feedback"): Row(401, PASS, 404, PASS, 404, PASS),
    ("POST", "/api/v1/complaints/{complaint_id}/attachments"): Row(401, 201, 404, 201, 404, 201),
    ("GET", "/api/v1/complaints/{complaint_id}/attachments"): Row(401, 200, 404, 200, 404, 200),
    ("GET", "/api/v1/complaints/{complaint_id}/attachments/{attachment_id}"): Row(
        401, 200, 404, 200, 404, 200
    ),
    # legal holds are the admin's; the world's complaint is not archived, past the check: a 2xx
    ("POST", "/api/v1/complaints/{complaint_id}/legal-hold"): Row(401, 403, 403, 403, 403, PASS),
    ("DELETE", "/api/v1/complaints/{complaint_id}/legal-hold"): Row(401, 403, 403, 403, 403, PASS),
    ("GET", "/api/v1/complaints/export"): Row(401, 403, 403, 200, 200, 200),
    # approvals: agent_same asked for approval_id (the world); supervisor_same approves it, so
    # the decisions after theirs are a 409; an agent never decides (403)
    ("POST", "/api/v1/complaints/{complaint_id}/approvals"): Row(401, 201, 404, 201, 404, 201),
    ("GET", "/api/v1/complaints/{complaint_id}/approvals"): Row(401, 200, 404, 200, 404, 200),
    ("POST", "/api/v1/complaints/{complaint_id}/approvals/{approval_id}/approve"): Row(
        401, 403, 404, 200, 404, PASS
    ),
    ("POST", "/api/v1/complaints/{complaint_id}/approvals/{approval_id}/decline"): Row(
        401, 403, 404, PASS, 404, PASS
    ),
    ("POST", "/api/v1/complaints/{complaint_id}/approvals/{approval_id}/withdraw"): Row(
        401, PASS, 404, PASS, 404, PASS
    ),
    # the IVR: flows are the queues' catalogue (supervisors and admins change it); no call
    # exists in the world; the report without a range is today's so far, for everyone signed in
    ("POST", "/api/v1/ivr/flows"): Row(401, 403, 403, 201, 201, 201),
    ("GET", "/api/v1/ivr/flows"): signed_in(),
    ("GET", "/api/v1/ivr/flows/{flow_id}"): signed_in(),
    ("POST", "/api/v1/ivr/flows/{flow_id}/activate"): Row(401, 403, 403, 200, 200, 200),
    ("GET", "/api/v1/ivr/calls/{call_id}"): Row(401, 403, 403, 404, 404, 404),
    ("GET", "/api/v1/ivr/reports/outcomes"): signed_in(),
    # the telephony provider's webhooks: signed by the provider, never by a token
    ("POST", "/telephony/twilio/voice"): public(403),
    ("POST", "/telephony/twilio/wait"): public(403),
    ("POST", "/telephony/twilio/status"): public(403),
    ("POST", "/telephony/twilio/callback"): public(403),
    ("POST", "/telephony/calls/{call_id}/events"): public(403),
    # no sign-in; called without the phone number, so the same 422 for everyone
    ("GET", "/api/v1/public/complaints/{reference}"): public(422),
}


def ivr_flow() -> dict[str, Any]:
    """The smallest valid flow, under a fresh name."""
    return {
        "name": unique("matrix_"),
        "start": "bye",
        "keys": {"operator": None},
        "nodes": {"bye": {"type": "hangup"}},
    }


APPROVAL_TERMS = {"kind": "compensation", "amount": "800.00", "reason": "interest lost"}
# Rows of routes being added, until the app includes them (empty when every row's route is in).
NOT_YET_IN_THE_APP: set[tuple[str, str]] = set()
DIGEST = "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM \"{}\" t"
# Tables a route could write; a refused request must leave each as it was.
UNTOUCHED_EXCEPT = {
    "alembic_version",
    "access_log",  # a refused read may itself be recorded
    "rate_limits",
    "api_keys",  # a key's first use is noted (last_used_at), even on a refused call
    "idempotency_keys",
    "app_secrets",
    "console_connections",
    "classifier_state",  # the learning sweep advances its cursor at any moment
    "notifications",  # the outbox sweep marks queued messages sent at any moment
}


def app_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path template) the app answers; websockets as ``WS``."""
    found: list[tuple[str, str]] = []
    for route in iter_route_contexts(app.routes):
        path = route.path_format
        if isinstance(route.original_route, Mount) or path is None:
            continue  # static assets
        methods = sorted((route.methods or set()) - {"HEAD"}) or ["WS"]
        found.extend((method, path) for method in methods)
    return found


async def key(api: Api) -> tuple[int, str]:
    """A channel's API key made by the admin: its id and the key."""
    made = expect(await api.post("/api/v1/api-keys", {"name": unique("web-")}), 201)
    return made["id"], made["key"]


def complaint_body() -> dict[str, Any]:
    """A complete complaint, of no customer (so never linked to another)."""
    return {
        "channel": "web",
        "complainant": {"name": "Li Hua", "contact": "li@example.com", "relation": "self"},
        "matter": {
            "occurred_at": "2026-11-30T08:00:00Z",
            "location": "online",
            "branch": unique("branch-"),
            "description": f"charged twice for order {unique('')}",
        },
        "grounds": "one order, two charges",
        "request": "refund the second charge",
    }


async def complaint(api: Api, *, assignee: int) -> int:
    """A complaint assigned to ``assignee``."""
    made = expect(await api.post("/api/v1/complaints", complaint_body()), 201)
    url = f"/api/v1/complaints/{made['id']}/assign"
    expect(await api.post(url, {"assignee": assignee}), 200)
    return int(made["id"])


ATTACHMENT = {"file": ("note.txt", b"called back", "text/plain")}


async def attachment(api: Api, complaint_id: int) -> int:
    url = f"/api/v1/complaints/{complaint_id}/attachments"
    answer = await api.client.post(url, files=ATTACHMENT, headers=api.headers)
    return int(expect(answer, 201)["id"])


@dataclass
class World:
    callers: dict[str, Api | None]
    ids: dict[str, Any]
    bodies: dict[tuple[str, str], Callable[[], Any]] = field(default_factory=dict)

    @classmethod
    async def build(cls, api: Api) -> World:
        q, q2 = await queue(api, channels=["chat"]), await queue(api, channels=["chat"])
        agent_same = await available_agent(api, site="shanghai")
        created = await contact(api, q["name"])
        offer = await offer_for(agent_same, created["id"])
        expect(await agent_same.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
        me = agent_same.me["id"]
        away = {"status": "away", "status_reason": "break"}
        expect(await agent_same.post(f"/api/v1/agents/{me}/status", away), 200)
        callers: dict[str, Api | None] = {
            "none": None,
            "agent_same": agent_same,
            "agent_other": await api.signed_in_as(await api.agent(site="beijing")),
            "supervisor_same": await api.signed_in_as(await api.supervisor(site="shanghai")),
            "supervisor_other": await api.signed_in_as(await api.supervisor(site="beijing")),
            "admin": api,
        }
        _, secret = await key(api)
        callers["integration"] = Api(api.client, {"Authorization": f"Bearer {secret}"})
        spare_key_id, _ = await key(api)  # revoked by the revoke route's cells
        customer = await api.customer()
        ids = {
            "agent_id": me,
            "contact_id": created["id"],
            "offer_id": offer["id"],
            "queue_ref": q["name"],
            "customer_id": customer["id"],
            "queue": q["name"],
            "queue2": q2["name"],
            "key_id": spare_key_id,
            "complaint_id": (complaint_id := await complaint(api, assignee=me)),
            "attachment_id": await attachment(api, complaint_id),
            "verb": "escalate",
        }
        asked = await agent_same.post(
            f"/api/v1/complaints/{ids['complaint_id']}/approvals", APPROVAL_TERMS
        )
        ids["approval_id"] = expect(asked, 201)["id"]
        flow = await api.post("/api/v1/ivr/flows", ivr_flow())
        ids["flow_id"] = expect(flow, 201)["id"]
        ids["call_id"] = "CAnone"
        return cls(callers, ids)

    def body(self, method: str, path: str) -> Any:
        """A valid body for the route (fresh names where a create needs them)."""
        bodies: dict[tuple[str, str], Callable[[], Any]] = {
            ("POST", "/api/v1/skills"): lambda: {"name": unique("skill_")},
            ("POST", "/api/v1/agents"): lambda: {
                "name": "New",
                "username": unique("new"),
                "password": "agent-password-1",
                "site": "shanghai",
            },
            ("PATCH", "/api/v1/agents/{agent_id}"): lambda: {"name": "Renamed"},
            ("POST", "/api/v1/agents/{agent_id}/status"): lambda: {
                "status": "away",
                "status_reason": "break",
            },
            ("POST", "/api/v1/customers"): lambda: {
                "name": "C",
                "phone": f"+86137{unique('')[:8]:0>8}",
            },
            ("PATCH", "/api/v1/customers/{customer_id}"): lambda: {"name": "Renamed"},
            ("POST", "/api/v1/queues"): lambda: {"name": unique("q-"), "channels": ["chat"]},
            ("PATCH", "/api/v1/queues/{queue_ref}"): lambda: {"description": "changed"},
            ("POST", "/api/v1/contacts"): lambda: {"channel": "chat", "queue": self.ids["queue"]},
            ("POST", "/api/v1/complaints/{complaint_id}/approvals"): lambda: APPROVAL_TERMS,
            ("POST", "/api/v1/ivr/flows"): ivr_flow,
            ("POST", "/api/v1/complaints/{complaint_id}/legal-hold"): lambda: {"reason": "case 1"},
            ("POST", "/api/v1/ivr/flows/{flow_id}/activate"): lambda: {"numbers": ["95561"]},
            ("POST", "/api/v1/complaints/{complaint_id}/approvals/{approval_id}/decline"): lambda: {
                "reason": "not justified"
            },
            ("POST", "/api/v1/contacts/{contact_id}/complete"): lambda: {"disposition": "done"},
            ("POST", "/api/v1/contacts/{contact_id}/transfer"): lambda: {
                "queue": self.ids["queue2"]
            },
            ("POST", "/api/v1/auth/token"): lambda: {"username": "x", "password": "y"},
            ("POST", "/api/v1/api-keys"): lambda: {"name": unique("channel-")},
            ("POST", "/api/v1/complaints"): complaint_body,
            ("POST", "/api/v1/complaints/{complaint_id}/{verb}"): lambda: {
                "target": "supervisor",
                "reason": "beyond the agent's authority",
            },
            ("POST", "/api/v1/complaints/{complaint_id}/notes"): lambda: {"text": "called back"},
            ("POST", "/api/v1/complaints/{complaint_id}/feedback"): lambda: {"csat": 4},
        }
        make = bodies.get((method, path))
        return make() if make else None

    def url(self, path: str) -> str:
        for name, value in self.ids.items():
            path = path.replace("{" + name + "}", str(value))
        return path

    def params(self, path: str) -> dict[str, Any]:
        return {"agent": self.ids["agent_id"]} if path == "/api/v1/offers" else {}


async def call(world: World, client: Any, role: str, method: str, path: str) -> Response:
    caller = world.callers[role]
    headers = caller.headers if caller is not None else {}
    kwargs: dict[str, Any] = {"headers": headers, "params": world.params(path)}
    body = world.body(method, path)
    if (method, path) == ("POST", "/api/v1/complaints/{complaint_id}/attachments"):
        kwargs["files"] = ATTACHMENT
    elif body is not None:
        kwargs["json"] = body
    return await client.request(method, world.url(path), **kwargs)  # type: ignore[no-any-return]


async def socket_answer(base: str, path: str, caller: Api | None) -> Answer:
    """``SNAPSHOT`` if the socket signs in, else its close code."""
    async with connect(f"{base}{path}", open_timeout=HANDSHAKE_S) as conn:
        token = token_of(caller) if caller is not None else ""
        await conn.send(json.dumps({"type": "auth", "token": token}))
        try:
            first = json.loads(await conn.recv())
        except ConnectionClosed:
            return conn.close_code or 0
        return SNAPSHOT if first.get("type") == "snapshot" else str(first)


async def snapshot(engine: AsyncEngine) -> dict[str, Any]:
    """A digest of every table a refused request must not change."""
    async with engine.connect() as conn:
        names = (
            await conn.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname='public'"))
        ).all()
        digests = {}
        for name in sorted(set(names) - UNTOUCHED_EXCEPT):
            digests[name] = await conn.scalar(text(DIGEST.format(name)))
    return digests


def matches(expected: Answer, status: int) -> bool:
    if expected == OK:
        return 200 <= status < 300
    if expected == PASS:
        return 200 <= status < 300 or status == 409
    return status == expected


def refused(expected: Answer) -> bool:
    return isinstance(expected, int) and expected in (401, 403, 404)


async def test_the_route_table_is_covered(app: FastAPI) -> None:
    routes = set(app_routes(app))
    missing = sorted(routes - set(EXPECTED))
    assert not missing, f"routes without a row in EXPECTED: {missing}"
    stale = sorted(set(EXPECTED) - routes - NOT_YET_IN_THE_APP)
    assert not stale, f"rows in EXPECTED for routes the app no longer has: {stale}"


async def test_every_route_answers_every_role_as_the_access_table_says(
    app: FastAPI, client: Any, api: Api
) -> None:
    world = await World.build(api)
    engine: AsyncEngine = app.state.engine
    wrong: list[str] = []
    async with serving(app) as base:
        for method, path in app_routes(app):
            row = EXPECTED[(method, path)]
            for role in ROLES:
                expected = row.of(role)
                if method == "WS":
                    got: Answer = await socket_answer(base, path, world.callers[role])
                    if got != expected:
                        wrong.append(f"{role} {path}: {got}, expected {expected}")
                    continue
                before = await snapshot(engine) if refused(expected) else None
                response = await call(world, client, role, method, path)
                if not matches(expected, response.status_code):
                    wrong.append(
                        f"{role} {method} {path}: {response.status_code} {response.text[:120]}, "
                        f"expected {expected}"
                    )
                elif before is not None and await snapshot(engine) != before:
                    wrong.append(f"{role} {method} {path}: refused, but something changed")
    assert not wrong, "\n".join(wrong)


def test_docs_hold_the_table_of_app_access() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "access.md").read_text()
    start, end = "<!-- access-table:start -->\n", "<!-- access-table:end -->"
    shown = doc.split(start, 1)[1].split(end, 1)[0]
    assert shown == access.render_table()


@pytest.mark.parametrize("role", list(Role))
def test_every_role_has_a_column_in_the_matrix(role: Role) -> None:
    assert any(p == role.value or p.startswith(f"{role.value}_") for p in ROLES)


class TestAChannelsOwnWork:
    """The ``own`` rule for a channel's key: what names its channel, never an agent's id."""

    web = Principal(id=7, username="web", role=Role.integration, site=None)
    agent = Principal(id=7, username="chen.jie", role=Role.agent, site="Pudong")

    @pytest.mark.parametrize(
        ("subject", "allowed"),
        [
            pytest.param(access.Subject(integration="web"), True, id="its_channel_queued_it"),
            pytest.param(access.Subject(integration="app"), False, id="another_channel_did"),
            pytest.param(access.Subject(), False, id="a_person_did"),
            pytest.param(access.Subject(owner_ids=[7]), False, id="agent_7_holds_it"),
        ],
    )
    def test_a_key_owns_what_its_channel_queued(
        self, subject: access.Subject, allowed: bool
    ) -> None:
        assert access.passes(access.Rule.OWN, self.web, subject) is allowed

    def test_an_agent_owns_by_id_whatever_channel_queued_it(self) -> None:
        assert access.passes(access.Rule.OWN, self.agent, access.Subject(owner_ids=[7]))
        assert not access.passes(access.Rule.OWN, self.agent, access.Subject(integration="web"))

    def test_a_refused_act_is_a_not_found_only_to_a_role_that_reads_none(self) -> None:
        unknown = NotFound("contact 5 does not exist")
        resource, abandon = access.Resource.contacts, access.Action.abandon
        with pytest.raises(NotFound):
            access.require(self.web, resource, abandon, integration="app", unknown=unknown)
        act = access.Action.act  # an agent reads its own contacts: a refusal is a 403
        with pytest.raises(Forbidden):
            access.require(self.agent, resource, act, owner_ids=[8], unknown=unknown)
