"""Ids in request bodies are strict integers: a boolean, a float or a string is a 422 naming
the field, never a 500 and never read as an id (``{"customer": {"id": true}}`` is not
customer 1)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError

import app.main  # noqa: F401  (imports every router, so every request schema is defined)
from app.db import plain_url
from app.schemas import StrictModel
from tests.fixtures.factories import expect
from tests.test_input_limits import Requests

# Fields that take a name or an id: a string there is a name, so only a string that could
# pass for a number is out of place.
NAME_OR_ID = {"queue"}

not_an_integer = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53).map(float),  # 1.0: whole, still a float
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.text(max_size=20),
)
numeric_text = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(str),
    st.integers(min_value=0, max_value=999).map(lambda n: f" {n} "),
)


def not_an_id(field: str) -> st.SearchStrategy[Any]:
    """Values that must never be read as an id in ``field``."""
    if field in NAME_OR_ID:
        return st.one_of(
            st.booleans(),
            st.integers(max_value=2**53).map(float),
            st.floats(allow_nan=False, allow_infinity=False),
            numeric_text,
        )
    return not_an_integer


def request_schemas() -> list[type[StrictModel]]:
    """Every request body model of the app, nested ones included."""
    found: list[type[StrictModel]] = []
    pending = list(StrictModel.__subclasses__())
    while pending:
        model = pending.pop()
        found.append(model)
        pending.extend(model.__subclasses__())
    return found


def is_id_field(name: str) -> bool:
    return name == "id" or name.endswith("_id") or name in NAME_OR_ID


def id_fields() -> list[tuple[type[StrictModel], str]]:
    """(model, field) for every id field of every request body."""
    return [
        (model, name)
        for model in request_schemas()
        for name in model.model_fields
        if is_id_field(name)
    ]


def error_locations(model: type[StrictModel], data: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Where validating ``data`` as ``model`` fails (other required fields may be missing)."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return [tuple(error["loc"]) for error in exc.errors()]
    return []


def field_ids() -> list[str]:
    return [f"{model.__name__}.{name}" for model, name in id_fields()]


# --- the schemas ---------------------------------------------------------------------------


class TestSchemas:
    def test_the_id_fields_of_the_request_bodies_are_found(self) -> None:
        found = set(field_ids())
        assert {
            "CustomerRef.id",
            "ContactCreate.queue",
            "TransferIn.queue",
            "CustomerCreate.relationship_manager_id",
            "CustomerUpdate.relationship_manager_id",
        } <= found

    @pytest.mark.parametrize(("model", "field"), id_fields(), ids=field_ids())
    def test_no_boolean_float_or_string_is_an_id(
        self, model: type[StrictModel], field: str
    ) -> None:
        @hypothesis_settings(max_examples=60, deadline=None, database=None)
        @given(value=not_an_id(field))
        def refused(value: Any) -> None:
            assert (field,) in error_locations(model, {field: value})

        refused()

    @pytest.mark.parametrize(("model", "field"), id_fields(), ids=field_ids())
    def test_an_integer_is_an_id(self, model: type[StrictModel], field: str) -> None:
        assert (field,) not in error_locations(model, {field: 7})


# --- through the API -----------------------------------------------------------------------


class Centre:
    """A queue, an agent, a customer and a waiting contact, made through the API."""

    def __init__(self, requests: Requests) -> None:
        api = requests.api
        self.queue = expect(requests.send(post("/api/v1/queues", QUEUE)), 201)
        other = {**QUEUE, "name": "complaints"}
        self.other_queue = expect(requests.send(post("/api/v1/queues", other)), 201)
        self.agent_id = int(requests.run(api.agent())["id"])
        self.customer_id = int(requests.run(api.customer())["id"])
        contact = {"channel": "chat", "queue": self.queue["name"]}
        self.contact_id = int(requests.send(post("/api/v1/contacts", contact)).json()["id"])


QUEUE = {"name": "billing", "channels": ["chat", "voice"], "ring_timeout_s": 30}


def post(url: str, body: Any) -> dict[str, Any]:
    return {"method": "POST", "url": url, "json": body}


def body_with(field: str, value: Any, centre: Centre) -> dict[str, Any]:
    """The request that carries ``value`` in ``field`` (a dotted path), all else valid."""
    if field == "customer.id":
        return post(
            "/api/v1/contacts", {"channel": "chat", "queue": "billing", "customer": {"id": value}}
        )
    if field == "queue":
        return post("/api/v1/contacts", {"channel": "chat", "queue": value})
    if field == "transfer.queue":
        return post(f"/api/v1/contacts/{centre.contact_id}/transfer", {"queue": value})
    if field == "relationship_manager_id":
        return post("/api/v1/customers", {"name": "Wang", "relationship_manager_id": value})
    if field == "update.relationship_manager_id":
        url = f"/api/v1/customers/{centre.customer_id}"
        return {"method": "PATCH", "url": url, "json": {"relationship_manager_id": value}}
    raise AssertionError(field)


ROUTE_FIELDS = [
    "customer.id",
    "queue",
    "transfer.queue",
    "relationship_manager_id",
    "update.relationship_manager_id",
]


def named(field: str) -> str:
    """The field a 422 names for ``field``."""
    return field.split(".", 1)[1] if field.startswith(("transfer.", "update.")) else field


def valid_id(field: str, centre: Centre) -> int:
    if field == "customer.id":
        return centre.customer_id
    if field == "transfer.queue":
        return int(centre.other_queue["id"])
    if field == "queue":
        return int(centre.queue["id"])
    return centre.agent_id


def row_counts(requests: Requests, database_url: str) -> dict[str, int]:
    async def count() -> dict[str, int]:
        conn = await asyncpg.connect(plain_url(database_url))
        try:
            tables = ("contacts", "customers", "offers")
            return {t: int(await conn.fetchval(f'SELECT count(*) FROM "{t}"')) for t in tables}
        finally:
            await conn.close()

    return dict(requests.run(count()))


@pytest.fixture
def requests(database_url: str) -> Iterator[Requests]:
    driver = Requests(database_url)
    try:
        yield driver
    finally:
        driver.close()


class TestThroughTheApi:
    @pytest.mark.parametrize("field", ROUTE_FIELDS)
    def test_a_non_integer_id_is_a_422_naming_the_field_and_changes_nothing(
        self, requests: Requests, database_url: str, field: str
    ) -> None:
        centre = Centre(requests)
        before = row_counts(requests, database_url)

        @hypothesis_settings(max_examples=25, deadline=None, database=None)
        @given(value=not_an_id(named(field)))
        def refused(value: Any) -> None:
            response = requests.send(body_with(field, value, centre))
            assert response.status_code == 422, f"{value!r}: {response.status_code} {response.text}"
            assert [f["field"] for f in response.json()["fields"]] == [named(field)], value

        refused()
        assert row_counts(requests, database_url) == before
        # The same request with a real id goes through: the refusals were for the id alone.
        accepted = requests.send(body_with(field, valid_id(field, centre), centre))
        assert accepted.status_code in (200, 201), accepted.text

    def test_true_is_not_customer_1(self, requests: Requests) -> None:
        centre = Centre(requests)
        assert centre.customer_id == 1
        response = requests.send(body_with("customer.id", True, centre))
        body = expect(response, 422)
        assert body["fields"] == [
            {"field": "customer.id", "message": "Input should be a valid integer"}
        ]

    def test_a_numeric_string_is_not_a_queue_id(self, requests: Requests) -> None:
        centre = Centre(requests)
        response = requests.send(body_with("queue", str(centre.queue["id"]), centre))
        assert [f["field"] for f in expect(response, 422)["fields"]] == ["queue"]
