"""The published contract: documented errors, offline docs, one paging shape, small rules.

The schema tests read ``/openapi.json`` as a generated client would; the error tests make
real failing requests and check each body against the schema documented for that operation
and status, so a body and its documentation cannot drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient

from app.openapi import WEBSOCKETS_DOC, json_body_problem
from tests.fixtures.factories import AGENT_PASSWORD, Api, expect, unique
from tests.fixtures.polling import eventually
from tests.routing.acd import available_agent, contact, queue

API = "/api/v1"
METHODS = {"get", "post", "put", "patch", "delete"}


# --- a small JSON-schema check (the subset the API's schemas use) --------------------------


def _resolve(root: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return _resolve(root, node)


_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}


def violations(
    root: dict[str, Any], schema: dict[str, Any], value: Any, at: str = "$"
) -> list[str]:
    """Where ``value`` breaks ``schema`` (empty when it conforms)."""
    schema = _resolve(root, schema)
    if "anyOf" in schema:
        options = [violations(root, option, value, at) for option in schema["anyOf"]]
        return [] if any(not found for found in options) else [f"{at}: matches no anyOf"]
    expected = schema.get("type")
    if expected is not None and not isinstance(value, _TYPES[expected]):
        return [f"{at}: {value!r} is not {expected}"]
    found: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        found += [
            f"{at}.{name}: missing" for name in schema.get("required", []) if name not in value
        ]
        for name, item in value.items():
            if name in properties:
                found += violations(root, properties[name], item, f"{at}.{name}")
            elif schema.get("additionalProperties") is False:
                found.append(f"{at}.{name}: not allowed")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += violations(root, schema["items"], item, f"{at}[{index}]")
    return found


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
async def schema(client: AsyncClient) -> dict[str, Any]:
    return expect(await client.get("/openapi.json"), 200)  # type: ignore[no-any-return]


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every API operation."""
    return [
        (method, path, operation)
        for path, item in schema["paths"].items()
        if path.startswith(API)
        for method, operation in item.items()
        if method in METHODS
    ]


def documented(schema: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    """The JSON schema an operation documents for a status (fails if it documents none)."""
    responses = schema["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} does not document {status}"
    content = responses[str(status)].get("content", {})
    assert "application/json" in content, f"{method.upper()} {path} {status} has no JSON body"
    return content["application/json"]["schema"]  # type: ignore[no-any-return]


# --- 1. errors in the schema -----------------------------------------------------------------


class TestDocumentedErrors:
    async def test_fastapis_own_validation_shape_is_documented_nowhere(
        self, schema: dict[str, Any]
    ) -> None:
        assert "HTTPValidationError" not in str(schema)
        assert "HTTPValidationError" not in schema["components"]["schemas"]

    async def test_every_error_response_of_the_api_is_the_one_error_body(
        self, schema: dict[str, Any]
    ) -> None:
        wrong = [
            f"{method.upper()} {path} {code}"
            for method, path, operation in operations(schema)
            for code, response in operation["responses"].items()
            if int(code) >= 400
            and response.get("content", {}).get("application/json", {}).get("schema")
            != {"$ref": "#/components/schemas/ErrorBody"}
        ]
        assert wrong == []

    async def test_every_operation_documents_the_errors_its_shape_implies(
        self, schema: dict[str, Any]
    ) -> None:
        missing: list[str] = []
        for method, path, operation in operations(schema):
            expected = {503}
            if operation.get("security"):
                expected.add(401)
            if "{" in path:
                expected.add(404)
            if operation.get("parameters") or "requestBody" in operation:
                expected.add(422)
            codes = {int(code) for code in operation["responses"]}
            missing += [f"{method.upper()} {path} {code}" for code in sorted(expected - codes)]
        assert missing == []

    async def test_every_route_but_the_login_and_the_public_lookup_requires_a_bearer_token(
        self, schema: dict[str, Any]
    ) -> None:
        open_routes = [
            f"{method.upper()} {path}"
            for method, path, operation in operations(schema)
            if not operation.get("security")
        ]
        # the customer's own status lookup, by reference and phone (rate-limited, recorded)
        public = f"GET {API}/public/complaints/{{reference}}"
        assert sorted(open_routes) == sorted([f"POST {API}/auth/token", public])

    async def test_401_and_503_document_the_headers_that_come_with_them(
        self, schema: dict[str, Any]
    ) -> None:
        responses = schema["paths"][f"{API}/queues"]["get"]["responses"]
        assert "WWW-Authenticate" in responses["401"]["headers"]
        assert "Retry-After" in responses["503"]["headers"]

    async def test_health_checks_keep_their_own_documented_bodies(
        self, schema: dict[str, Any]
    ) -> None:
        ready = schema["paths"]["/health/ready"]["get"]["responses"]["503"]
        assert "ErrorBody" not in str(ready)


async def _real_errors(api: Api) -> list[tuple[str, str, Any]]:
    """(method, documented path, response) for one real failure of each kind."""
    agent = await api.agent()
    other = await api.agent()
    console = await api.signed_in_as(agent)
    q = await queue(api)
    await api.skill("duplicated")
    return [
        ("get", "/skills", await api.client.get(f"{API}/skills")),
        (
            "post",
            "/auth/token",
            await api.client.post(
                f"{API}/auth/token", data={"username": "admin", "password": "wrong-password"}
            ),
        ),
        ("post", "/skills", await console.post(f"{API}/skills", {"name": "forbidden"})),
        ("get", "/offers", await console.get(f"{API}/offers", params={"agent": other["id"]})),
        ("patch", "/agents/{agent_id}", await console.patch(f"{API}/agents/{other['id']}", {})),
        ("get", "/queues/{queue_ref}", await api.get(f"{API}/queues/ghost")),
        ("get", "/agents/{agent_id}", await api.get(f"{API}/agents/999999")),
        ("post", "/offers/{offer_id}/accept", await console.post(f"{API}/offers/999999/accept")),
        ("post", "/skills", await api.post(f"{API}/skills", {"name": "duplicated"})),
        (
            "post",
            "/agents/{agent_id}/wrap-up/done",
            await console.post(f"{API}/agents/me/wrap-up/done"),
        ),
        ("post", "/agents", await api.post(f"{API}/agents", {"name": ""})),
        ("get", "/events", await api.get(f"{API}/events", params={"cursor": "garbage"})),
        ("get", "/queues", await api.get(f"{API}/queues", params={"cursor": "Not A Name"})),
        (
            "post",
            "/contacts",
            await api.post(f"{API}/contacts", {"channel": "fax", "queue": q["id"]}),
        ),
    ]


class TestRealErrors:
    async def test_real_error_bodies_conform_to_what_their_operation_documents(
        self, api: Api, schema: dict[str, Any]
    ) -> None:
        seen: set[int] = set()
        for method, path, response in await _real_errors(api):
            assert response.status_code >= 400, (path, response.text)
            seen.add(response.status_code)
            body_schema = documented(schema, method, API + path, response.status_code)
            assert violations(schema, body_schema, response.json()) == [], (path, response.text)
        assert seen == {401, 403, 404, 409, 422}

    async def test_a_422_names_its_fields_as_documented(
        self, api: Api, schema: dict[str, Any]
    ) -> None:
        response = await api.post(f"{API}/agents", {"name": "", "username": "x"})
        body = expect(response, 422)
        assert {f["field"] for f in body["fields"]} >= {"name", "username", "password"}
        body_schema = documented(schema, "post", f"{API}/agents", 422)
        assert violations(schema, body_schema, body) == []
        assert violations(schema, body_schema, {"error": "X", "detail": 3}) != []


# --- 2. offline docs -------------------------------------------------------------------------

_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)|url:\s*["']([^"']+)""")


class TestOfflineDocs:
    async def test_docs_page_loads_nothing_from_another_host(self, client: AsyncClient) -> None:
        response = await client.get("/docs")
        assert response.status_code == 200
        references = [a or b for a, b in _REFERENCE.findall(response.text)]
        assert references, "the docs page references no scripts or styles"
        external = [r for r in references if re.match(r"^(?:[a-z]+:)?//", r)]
        assert external == []
        assert "cdn" not in response.text.lower()

    async def test_every_asset_the_docs_page_references_is_served(
        self, client: AsyncClient
    ) -> None:
        page = (await client.get("/docs")).text
        references = [a or b for a, b in _REFERENCE.findall(page)]
        types = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "json"}
        for reference in references:
            response = await client.get(reference)
            assert response.status_code == 200, reference
            expected = next(v for k, v in types.items() if reference.endswith(k))
            assert expected in response.headers["content-type"], reference

    async def test_swagger_ui_is_the_packaged_version(self, client: AsyncClient) -> None:
        script = await client.get("/docs/assets/swagger-ui-bundle.js")
        assert script.status_code == 200
        assert len(script.content) > 100_000

    async def test_no_docs_page_is_left_that_loads_from_a_cdn(self, client: AsyncClient) -> None:
        assert (await client.get("/redoc")).status_code == 404
        redirect = await client.get("/docs/oauth2-redirect")
        assert redirect.status_code == 200
        assert not re.search(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", redirect.text)


# --- 3. the websocket protocol page -----------------------------------------------------------


class TestWebsocketProtocolPage:
    async def test_openapi_description_links_the_protocol_page(
        self, client: AsyncClient, schema: dict[str, Any]
    ) -> None:
        links = re.findall(r"\]\((/[^)]+)\)", schema["info"]["description"])
        assert "/docs/websockets" in links
        for link in links:
            assert (await client.get(link)).status_code == 200, link

    async def test_protocol_page_is_served_as_markdown_from_the_docs_folder(
        self, client: AsyncClient
    ) -> None:
        response = await client.get("/docs/websockets.md")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/markdown")
        assert response.text == WEBSOCKETS_DOC.read_text(encoding="utf-8")

    async def test_protocol_page_is_readable_in_a_browser_with_nothing_fetched(
        self, client: AsyncClient
    ) -> None:
        response = await client.get("/docs/websockets")
        assert response.headers["content-type"].startswith("text/html")
        assert not re.search(r"""(?:src|href)\s*=""", response.text)
        assert "&lt;access token&gt;" in response.text  # escaped, not markup

    @pytest.mark.parametrize(
        "term",
        [
            '"type": "snapshot"',
            '"type": "event"',
            '"type": "resume"',
            '"type": "resync"',
            '"type": "ping"',
            '"type": "pong"',
            '"type": "error"',
            '"type": "auth"',
            "?token=",
            "4401",
            "4403",
            "1013",
        ],
    )
    def test_protocol_page_covers_every_message_and_close_code(self, term: str) -> None:
        assert term in Path(WEBSOCKETS_DOC).read_text(encoding="utf-8")


# --- 4. one paging shape ---------------------------------------------------------------------


def _page_schema(schema: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any] | None:
    content = operation["responses"].get("200", {}).get("content", {})
    body = content.get("application/json", {}).get("schema")
    return _resolve(schema, body) if body else None


class TestPaging:
    async def test_no_operation_answers_a_bare_list(self, schema: dict[str, Any]) -> None:
        bare = [
            f"{method.upper()} {path}"
            for method, path, operation in operations(schema)
            if (_page_schema(schema, operation) or {}).get("type") == "array"
        ]
        assert bare == []

    async def test_every_list_takes_limit_and_cursor_and_answers_items_and_next_cursor(
        self, schema: dict[str, Any]
    ) -> None:
        lists = set()
        for method, path, operation in operations(schema):
            page = _page_schema(schema, operation)
            if page is None or "items" not in page.get("properties", {}):
                continue
            lists.add(path.removeprefix(API))
            names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
            assert {"limit", "cursor"} <= names, f"{method.upper()} {path}"
            assert {"items", "next_cursor"} <= set(page["required"]), f"{method.upper()} {path}"
        assert lists == {
            "/skills",
            "/agents",
            "/customers",
            "/queues",
            "/contacts",
            "/offers",
            "/events",
            "/access-log",
            "/api-keys",
            "/complaints",
            "/complaints/{complaint_id}/notes",
            "/complaints/{complaint_id}/notifications",
            "/complaints/{complaint_id}/approvals",
            "/complaints/{complaint_id}/attachments",
            "/ivr/flows",
        }

    async def test_skills_page_by_name(self, api: Api) -> None:
        for name in ("gamma", "alpha", "beta"):
            await api.skill(name)
        first = expect(await api.get(f"{API}/skills", params={"limit": 2}), 200)
        assert [s["name"] for s in first["items"]] == ["alpha", "beta"]
        params = {"limit": 2, "cursor": first["next_cursor"]}
        second = expect(await api.get(f"{API}/skills", params=params), 200)
        assert [s["name"] for s in second["items"]] == ["gamma"]
        assert second["next_cursor"] is None

    async def test_queues_page_by_name_and_show_an_overflow_queue_outside_the_page(
        self, api: Api
    ) -> None:
        await queue(api, name="zz-spill")
        await queue(api, name="bb-main", overflow_queue="zz-spill")
        await queue(api, name="aa-first")
        first = expect(await api.get(f"{API}/queues", params={"limit": 2}), 200)
        assert [(q["name"], q["overflow_queue"]) for q in first["items"]] == [
            ("aa-first", None),
            ("bb-main", "zz-spill"),
        ]
        params = {"limit": 2, "cursor": first["next_cursor"]}
        second = expect(await api.get(f"{API}/queues", params=params), 200)
        assert [q["name"] for q in second["items"]] == ["zz-spill"]
        assert second["next_cursor"] is None

    async def test_offers_page_oldest_first(self, api: Api) -> None:
        q = await queue(api, channels=["chat"])
        console = await available_agent(api, capacity={"chat": 3})
        for _ in range(3):
            await contact(api, q["name"])

        async def three_offers() -> bool:
            page = expect(await console.get(f"{API}/offers"), 200)
            return len(page["items"]) == 3

        await eventually(three_offers, what="three pending offers")
        first = expect(await console.get(f"{API}/offers", params={"limit": 2}), 200)
        params = {"limit": 2, "cursor": first["next_cursor"]}
        second = expect(await console.get(f"{API}/offers", params=params), 200)
        ids = [o["id"] for o in first["items"] + second["items"]]
        assert ids == sorted(ids)
        assert len(set(ids)) == 3
        assert second["next_cursor"] is None

    async def test_events_page_with_cursor_and_next_cursor(self, api: Api) -> None:
        start = expect(await api.get(f"{API}/events"), 200)["next_cursor"]
        await api.agent()
        params = {"cursor": start, "wait_s": 10}
        page = expect(await api.get(f"{API}/events", params=params), 200)
        assert page["items"]
        assert page["next_cursor"] == page["items"][-1]["cursor"]
        later = expect(await api.get(f"{API}/events", params={"cursor": page["next_cursor"]}), 200)
        assert later["items"] == []
        assert later["next_cursor"] == page["next_cursor"]  # never null, never backwards

    async def test_events_still_read_their_former_parameter_and_field_names(self, api: Api) -> None:
        start = expect(await api.get(f"{API}/events"), 200)["next_cursor"]
        await api.agent()
        params = {"after": start, "wait_s": 10}
        page = expect(await api.get(f"{API}/events", params=params), 200)
        assert page["items"]
        assert page["cursor"] == page["next_cursor"]

    @pytest.mark.parametrize("url", ["/skills", "/queues", "/offers", "/events"])
    async def test_a_cursor_that_no_page_gave_is_a_422_naming_cursor(
        self, api: Api, url: str
    ) -> None:
        body = expect(await api.get(API + url, params={"cursor": "Not a cursor!"}), 422)
        assert [f["field"] for f in body["fields"]] == ["cursor"]


# --- 5. small inconsistencies --------------------------------------------------------------


class TestStatusReasonName:
    async def test_status_reason_is_sent_under_the_name_it_is_returned_as(self, api: Api) -> None:
        agent = await api.agent()
        body = {"status": "away", "status_reason": "lunch"}
        changed = expect(await api.post(f"{API}/agents/{agent['id']}/status", body), 200)
        assert changed["status_reason"] == "lunch"

    async def test_the_former_name_reason_is_still_read(self, api: Api) -> None:
        agent = await api.agent()
        body = {"status": "away", "reason": "training"}
        changed = expect(await api.post(f"{API}/agents/{agent['id']}/status", body), 200)
        assert changed["status_reason"] == "training"

    async def test_both_names_at_once_is_a_422(self, api: Api) -> None:
        agent = await api.agent()
        body = {"status": "away", "reason": "a", "status_reason": "b"}
        expect(await api.post(f"{API}/agents/{agent['id']}/status", body), 422)

    async def test_the_schema_documents_status_reason(self, schema: dict[str, Any]) -> None:
        fields = schema["components"]["schemas"]["StatusChangeIn"]["properties"]
        assert set(fields) == {"status", "status_reason"}


class TestMe:
    async def test_every_agent_path_accepts_me(self, schema: dict[str, Any]) -> None:
        paths = [p for p in schema["paths"] if p.startswith(f"{API}/agents/{{agent_id}}")]
        assert len(paths) >= 3
        for path in paths:
            for method, operation in schema["paths"][path].items():
                [param] = [p for p in operation["parameters"] if p["name"] == "agent_id"]
                assert re.fullmatch(param["schema"]["pattern"], "me"), f"{method} {path}"

    async def test_me_reads_changes_and_sets_the_status_of_the_signed_in_agent(
        self, api: Api
    ) -> None:
        agent = await api.agent()
        console = await api.signed_in_as(agent)
        assert expect(await console.get(f"{API}/agents/me"), 200)["id"] == agent["id"]
        renamed = expect(await console.patch(f"{API}/agents/me", {"name": "Renamed"}), 200)
        assert (renamed["id"], renamed["name"]) == (agent["id"], "Renamed")
        body = {"status": "away", "status_reason": "lunch"}
        away = expect(await console.post(f"{API}/agents/me/status", body), 200)
        assert (away["id"], away["status"]) == (agent["id"], "away")

    async def test_me_ends_the_signed_in_agents_wrap_up(self, api: Api) -> None:
        agent = await api.agent()
        console = await api.signed_in_as(agent)
        body = expect(await console.post(f"{API}/agents/me/wrap-up/done"), 409)
        assert f"agent {agent['id']} is not in wrap-up" in body["detail"]

    @pytest.mark.parametrize("ref", ["0", "9223372036854775808", "you", "-1"])
    async def test_an_agent_id_that_names_no_one_possible_is_a_422(
        self, api: Api, ref: str
    ) -> None:
        body = expect(await api.get(f"{API}/agents/{ref}"), 422)
        assert [f["field"] for f in body["fields"]] == ["agent_id"]


class TestContentTypeMessages:
    async def test_json_sent_to_the_login_says_to_send_a_form(self, client: AsyncClient) -> None:
        response = await client.post(
            f"{API}/auth/token", json={"username": "admin", "password": "x"}
        )
        body = expect(response, 422)
        assert "application/x-www-form-urlencoded" in body["detail"]
        assert "application/json" in body["detail"]
        assert sorted(f["field"] for f in body["fields"]) == ["password", "username"]

    async def test_a_json_body_without_a_content_type_says_to_send_one(self, api: Api) -> None:
        response = await api.client.post(
            f"{API}/skills", content=b'{"name": "typeless"}', headers=api.headers
        )
        body = expect(response, 422)
        assert "Content-Type: application/json" in body["detail"]
        assert [f["field"] for f in body["fields"]] == ["body"]

    async def test_a_json_body_sent_as_a_form_says_to_send_json(self, api: Api) -> None:
        headers = {**api.headers, "Content-Type": "application/x-www-form-urlencoded"}
        response = await api.client.post(
            f"{API}/queues", content=b'{"name": "formed"}', headers=headers
        )
        body = expect(response, 422)
        assert "application/json" in body["detail"]
        assert "x-www-form-urlencoded" in body["detail"]

    async def test_json_with_a_charset_is_accepted(self, api: Api) -> None:
        headers = {**api.headers, "Content-Type": "application/json; charset=utf-8"}
        response = await api.client.post(
            f"{API}/skills", content=b'{"name": "charset"}', headers=headers
        )
        expect(response, 201)

    @pytest.mark.parametrize(
        ("content_type", "has_body", "fine"),
        [
            ("application/json", True, True),
            ("Application/JSON; charset=utf-8", True, True),
            ("application/merge-patch+json", True, True),
            (None, False, True),
            (None, True, False),
            ("text/plain", True, False),
            ("application/x-www-form-urlencoded", True, False),
        ],
    )
    def test_json_body_problem(self, content_type: str | None, has_body: bool, fine: bool) -> None:
        assert (json_body_problem(content_type, has_body=has_body) is None) is fine


class TestLoginStillWorks:
    async def test_a_form_login_is_untouched_by_the_content_type_checks(
        self, api: Api, client: AsyncClient
    ) -> None:
        agent = await api.agent(username=unique("formlogin"))
        response = await client.post(
            f"{API}/auth/token", data={"username": agent["username"], "password": AGENT_PASSWORD}
        )
        assert expect(response, 200)["token_type"] == "bearer"
