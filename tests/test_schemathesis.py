"""Every operation of the published schema, fuzzed by schemathesis as an admin and as an agent:
no answer is a 5xx, and every answer is one the schema documents (status, content type,
headers, body shape).

The schema is the app's own (``app.openapi()``, no network). Cases are generated from it,
valid ones and invalid ones, a bounded number per operation, and sent through the ASGI app
on an event loop of its own (``Requests``) with the role's bearer token. A small centre is
made first (a skill, queues, an agent, a customer, a contact), so that small ids, which the
generator tries early, name real rows and the routes' deeper paths run, not only their 404s.
The generation is derandomized: every run sends the same cases, so a failure is always
reproducible and never a matter of luck.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import requests
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode, openapi
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from app.config import Settings
from app.main import create_app
from tests.fixtures.factories import AGENT_PASSWORD, Api, expect
from tests.routing.acd import queue
from tests.test_input_limits import Requests

EXAMPLES_PER_MODE = 6  # per operation, role and generation mode (valid, invalid)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def app_schema() -> OpenApiSchema:
    app = create_app(Settings(database_url="postgresql://nobody@127.0.0.1/none"))
    return openapi.from_dict(app.openapi())


SCHEMA = app_schema()
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations() if isinstance(result, Ok)]


def operation_id(operation: Any) -> str:
    return f"{operation.method.upper()} {operation.path}"


# --- the centre and the roles --------------------------------------------------------------


async def make_centre(admin: Api) -> Api:
    """A small centre made by the admin; the signed-in agent of it."""
    skill = await admin.skill("billing")
    await queue(admin, name="billing", steps=[{"skills": [{"skill": skill["name"]}]}])
    await queue(admin, name="complaints")
    agent = await admin.agent(skills=[{"skill": "billing", "level": 5}])
    await admin.customer()
    expect(await admin.post("/api/v1/contacts", {"channel": "chat", "queue": "billing"}), 201)
    return await admin.signed_in_as(agent, AGENT_PASSWORD)


@pytest.fixture
def driver(database_url: str) -> Iterator[Requests]:
    requests_driver = Requests(database_url)
    try:
        yield requests_driver
    finally:
        requests_driver.close()


def signed_in(driver: Requests, role: str) -> Api:
    agent = driver.run(make_centre(driver.api))
    return driver.api if role == "admin" else agent  # type: ignore[no-any-return]


# --- sending a case ------------------------------------------------------------------------


def send(driver: Requests, api: Api, case: Case[Any]) -> Any:
    """The case sent through the app as an HTTP client would send it, with ``api``'s token."""
    arguments = case.as_transport_kwargs(base_url="http://test")
    arguments["headers"] = {**arguments.get("headers", {}), **api.headers}
    prepared = requests.Request(**arguments).prepare()
    body = prepared.body.encode("utf-8") if isinstance(prepared.body, str) else prepared.body
    assert body is None or isinstance(body, bytes), "requests encodes a case's body in full"
    headers = {name: str(value) for name, value in prepared.headers.items()}
    request = api.client.request(
        str(prepared.method), str(prepared.url), headers=headers, content=body
    )
    return driver.run(request)


def fuzz(driver: Requests, api: Api, operation: Any, mode: GenerationMode) -> None:
    """Run the bounded property for one operation in one generation mode."""

    @hypothesis_settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        database=None,
        # The same cases on every run: `make check` never turns red by chance. Explore
        # beyond them with a larger EXAMPLES_PER_MODE.
        derandomize=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
    )
    @given(case=operation.as_strategy(mode))
    def answers_as_documented(case: Case[Any]) -> None:
        response = send(driver, api, case)
        case.validate_response(response, checks=CHECKS)

    answers_as_documented()


@pytest.mark.parametrize("role", ["admin", "agent"])
@pytest.mark.parametrize("operation", OPERATIONS, ids=operation_id)
def test_no_operation_answers_a_server_error_or_off_its_schema(
    driver: Requests, role: str, operation: Any
) -> None:
    api = signed_in(driver, role)
    failures: list[str] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        try:
            fuzz(driver, api, operation, mode)
        except FailureGroup as group:
            failures.append(f"{mode.value}: {group}")
        except Unsatisfiable:
            # An operation whose every input is valid (no parameters, or only free text) has
            # no invalid case to make; a valid one always exists.
            assert mode is GenerationMode.NEGATIVE, operation_id(operation)
    assert not failures, "\n".join(failures)


def test_every_api_operation_is_fuzzed() -> None:
    fuzzed = {operation_id(operation) for operation in OPERATIONS}
    assert "POST /api/v1/contacts" in fuzzed
    assert "PATCH /api/v1/customers/{customer_id}" in fuzzed
    assert len(fuzzed) == len(OPERATIONS) >= 25


class TestTheChecks:
    """The checks this file relies on do fail: a 5xx, or a status the schema does not list."""

    @staticmethod
    def check(status: int, body: object) -> None:
        operation = next(op for op in OPERATIONS if operation_id(op) == "GET /health/live")
        request = httpx.Request("GET", "http://test/health/live")
        response = httpx.Response(status, json=body, request=request)
        response.elapsed = timedelta(0)  # a client sets it on the answers it receives
        operation.Case().validate_response(response, checks=CHECKS)

    @pytest.mark.parametrize("status", [500, 503, 418])
    def test_an_answer_off_the_schema_fails(self, status: int) -> None:
        with pytest.raises(FailureGroup):
            self.check(status, {"error": "Boom", "detail": "x"})

    def test_the_documented_answer_passes(self) -> None:
        self.check(200, {"status": "ok"})
