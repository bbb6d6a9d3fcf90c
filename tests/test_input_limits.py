"""Bad input gets a clear 4xx, never a 500: numbers past their column, bodies past the limit,
bodies and socket frames the parser cannot read."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from app.config import Settings
from app.limits import BodyLimitMiddleware, limit_for
from app.main import create_app
from app.schemas import MAX_BIGINT, MIN_BIGINT
from tests.conftest import make_settings, truncate_all
from tests.fixtures.factories import ADMIN_PASSWORD, Api, expect
from tests.realtime.test_ws import following, serving, token_of
from tests.routing.acd import instance

WITHIN_S = 10.0
LIMIT = 1024  # bytes: small, so tests send little

# --- out-of-range integers, over the whole OpenAPI schema ---------------------------------


@dataclass(frozen=True)
class IntegerInput:
    """One integer a route takes: where (path, query or body), its name and its range."""

    method: str
    route: str
    where: str
    name: str  # a parameter's name, or a body field's path: "customer.id", "skills.[].level"
    low: int
    high: int

    def __str__(self) -> str:
        return f"{self.method} {self.route} {self.where}:{self.name}"


def _bound(schema: dict[str, Any], key: str, default: int) -> int:
    value = schema.get(key)
    return default if value is None else int(value)


class SchemaWalk:
    """Every integer input of an OpenAPI document, with the range it documents (BIGINT's,
    the widest column, where it documents none)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.components = spec["components"]["schemas"]
        self.found: list[IntegerInput] = []
        for route, operations in spec["paths"].items():
            for method, operation in operations.items():
                self._operation(method.upper(), route, operation)

    def _operation(self, method: str, route: str, operation: dict[str, Any]) -> None:
        for parameter in operation.get("parameters", []):
            where = (method, route, parameter["in"])
            self._schema(where, parameter["name"], parameter["schema"], set())
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" in content:
            self._schema((method, route, "body"), "", content["application/json"]["schema"], set())

    def _schema(
        self, where: tuple[str, str, str], name: str, schema: dict[str, Any], seen: set[str]
    ) -> None:
        if "$ref" in schema:
            ref = schema["$ref"].rsplit("/", 1)[-1]
            if ref not in seen:
                self._schema(where, name, self.components[ref], seen | {ref})
            return
        for option in schema.get("anyOf", []) + schema.get("allOf", []):
            self._schema(where, name, option, seen)
        if schema.get("type") == "integer":
            low = _bound(schema, "minimum", MIN_BIGINT)
            high = _bound(schema, "maximum", MAX_BIGINT)
            self.found.append(IntegerInput(*where, name, low, high))
        for key, sub in schema.get("properties", {}).items():
            self._schema(where, f"{name}.{key}".lstrip("."), sub, seen)
        if "items" in schema:
            self._schema(where, f"{name}.[]", schema["items"], seen)
        if isinstance(schema.get("additionalProperties"), dict):
            self._schema(where, f"{name}.{{}}", schema["additionalProperties"], seen)


# The telephony provider's webhooks check the provider's signature before they read a byte
# of the body (an unsigned request is a 403 whatever it holds); a signed body that does not
# parse is a 422 naming the field (tests/ivr/test_json_webhook.py).
SIGNED_WEBHOOKS = "/telephony/"


def integer_inputs() -> list[IntegerInput]:
    app = create_app(Settings(database_url="postgresql://nobody@127.0.0.1/none"))
    found = SchemaWalk(app.openapi()).found
    return [case for case in found if not case.route.startswith(SIGNED_WEBHOOKS)]


def _nest(parts: list[str], value: int) -> tuple[Any, list[str]]:
    """The body holding ``value`` at ``parts``, and the field name an error should give."""
    if not parts:
        return value, []
    head, *rest = parts
    inner, named = _nest(rest, value)
    if head == "[]":
        return [inner], ["0", *named]
    key = "voice" if head == "{}" else head  # a mapping's key: any channel
    return {key: inner}, [key, *named]


def request_for(case: IntegerInput, value: int) -> tuple[dict[str, Any], str]:
    """httpx arguments that send ``value`` for ``case``, and the field the 422 must name."""
    path = dict.fromkeys(_path_names(case.route), "1")
    query: dict[str, str] = {}
    body: Any = None
    named = case.name
    if case.where == "path":
        path[case.name] = str(value)
    elif case.where == "query":
        query[case.name] = str(value)
    else:
        body, parts = _nest(case.name.split("."), value)
        named = ".".join(parts)
    url = case.route.format(**path)
    return {"method": case.method, "url": url, "params": query, "json": body}, named


def _path_names(route: str) -> list[str]:
    return [part[1:-1] for part in route.split("/") if part.startswith("{")]


def out_of_range(case: IntegerInput) -> st.SearchStrategy[int]:
    """Whole numbers just past either end of the input's range, and far past."""
    return st.one_of(
        st.integers(min_value=case.high + 1, max_value=case.high + 3),
        st.integers(max_value=case.low - 1, min_value=case.low - 3),
        st.integers(min_value=max(case.high, MAX_BIGINT) + 1),
        st.integers(max_value=min(case.low, MIN_BIGINT) - 1),
    )


class Requests:
    """An app on an event loop of its own, so that hypothesis can drive it from sync code."""

    def __init__(self, database_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.stack = AsyncExitStack()
        self.api = self.run(self._open(database_url))

    async def _open(self, database_url: str) -> Api:
        await truncate_all(database_url)
        _, client = await self.stack.enter_async_context(instance(make_settings(database_url)))
        return await Api.signed_in(client, "admin", ADMIN_PASSWORD)

    def run(self, step: Any) -> Any:
        return self.loop.run_until_complete(step)

    def send(self, arguments: dict[str, Any]) -> Any:
        headers = self.api.headers
        return self.run(self.api.client.request(headers=headers, **arguments))

    def close(self) -> None:
        try:
            self.run(self.stack.aclose())
        finally:
            self.loop.close()


@pytest.fixture
def requests(database_url: str) -> Iterator[Requests]:
    driver = Requests(database_url)
    try:
        yield driver
    finally:
        driver.close()


def check_refused(requests: Requests, case: IntegerInput, value: int) -> None:
    arguments, field = request_for(case, value)
    response = requests.send(arguments)
    assert response.status_code == 422, f"{case} = {value}: {response.status_code} {response.text}"
    body = response.json()
    named = [f["field"] for f in body.get("fields", [])]
    assert field in named, f"{case} = {value}: {body}"


def refused_property(requests: Requests, case: IntegerInput) -> Callable[[], None]:
    """The property for one input: every value out of its range is refused, naming it."""

    @hypothesis_settings(max_examples=8, deadline=None, database=None)
    @given(value=out_of_range(case))
    def refused(value: int) -> None:
        check_refused(requests, case, value)

    return refused


class TestOutOfRangeIntegers:
    def test_the_schema_walk_finds_the_integers_of_bodies_paths_and_queries(self) -> None:
        found = {str(case) for case in integer_inputs()}
        assert "POST /api/v1/contacts body:customer.id" in found
        assert "POST /api/v1/contacts body:queue" in found
        assert "GET /api/v1/contacts/{contact_id} path:contact_id" in found
        assert "GET /api/v1/events query:limit" in found

    def test_every_integer_out_of_its_range_is_a_422_naming_it(self, requests: Requests) -> None:
        failures = []
        for case in integer_inputs():
            try:
                refused_property(requests, case)()
            except AssertionError as failure:
                failures.append(str(failure).splitlines()[0])
        assert not failures, "\n".join(failures)

    @pytest.mark.parametrize("field", ["queue", "customer"])
    async def test_contact_with_a_number_past_64_bits_is_a_422_naming_the_field(
        self, api: Api, field: str
    ) -> None:
        body: dict[str, Any] = {"channel": "chat", "queue": "billing"}
        body[field] = 2**64 if field == "queue" else {"id": 2**64}
        response = expect(await api.post("/api/v1/contacts", body), 422)
        assert [f["field"] for f in response["fields"]] == [
            "queue" if field == "queue" else "customer.id"
        ]

    async def test_a_queue_id_past_64_bits_in_the_path_is_a_422_naming_it(self, api: Api) -> None:
        response = expect(await api.get(f"/api/v1/queues/{2**64}"), 422)
        assert [f["field"] for f in response["fields"]] == ["queue_ref"]


# --- body size -----------------------------------------------------------------------------


class TestLimitFor:
    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("/api/v1/skills", 100),
            ("/api/v1/uploads/photo", 5000),
            ("/api/v1/uploads/big/one", 90000),
            ("/api/v1/upload", 100),
        ],
        ids=["default", "prefix", "longest-prefix", "near-miss"],
    )
    def test_the_longest_matching_prefix_sets_the_limit(self, path: str, expected: int) -> None:
        by_prefix = {"/api/v1/uploads/": 5000, "/api/v1/uploads/big/": 90000}
        assert limit_for(path, 100, by_prefix) == expected


class TestBodyLimitMiddleware:
    async def test_a_long_body_is_cut_off_at_the_limit(self) -> None:
        handed_on: list[int] = []
        sent: list[Message] = []
        chunks = iter([b"x" * 100] * (LIMIT // 10))  # ten times the limit, no length declared

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            more = True
            while more:  # reads it all, as a body parser does
                message = await receive()
                handed_on.append(len(message["body"]))
                more = message["more_body"]
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        async def receive() -> Message:
            body = next(chunks, b"")
            return {"type": "http.request", "body": body, "more_body": bool(body)}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {"type": "http", "path": "/anything", "headers": [], "method": "POST"}
        await BodyLimitMiddleware(app, default=LIMIT)(scope, receive, send)
        assert sum(handed_on) <= LIMIT
        assert sent[0]["status"] == 413
        assert json.loads(sent[1]["body"])["error"] == "ContentTooLarge"


@pytest.fixture
async def small_app(db: str) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        db, max_body_bytes=LIMIT, max_body_bytes_by_path={"/api/v1/skills": 4 * LIMIT}
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def server(small_app: FastAPI) -> AsyncIterator[tuple[str, int]]:
    async with serving(small_app) as base:
        address = urlsplit(base)
        assert address.hostname is not None
        assert address.port is not None
        yield address.hostname, address.port


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@asynccontextmanager
async def connection(
    address: tuple[str, int],
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(*address)
    try:
        yield reader, writer
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> RawResponse:
    """One HTTP/1.1 response with a Content-Length body, read within the deadline."""
    async with asyncio.timeout(WITHIN_S):
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines if ln)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawResponse(int(status_line.split()[1]), headers, body)


def request_head(path: str, extra: str, token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{auth}{extra}\r\n"
    ).encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def padded(body: dict[str, Any], size: int) -> bytes:
    """``body`` as JSON padded with spaces to exactly ``size`` bytes."""
    text = json.dumps(body).encode()
    return text + b" " * (size - len(text))


class TestBodySizeLimit:
    async def test_a_declared_length_past_the_limit_is_a_413_before_any_byte_is_sent(
        self, server: tuple[str, int]
    ) -> None:
        # 200 MiB declared, none sent: only an answer given up front can come back.
        async with connection(server) as (reader, writer):
            writer.write(request_head("/api/v1/customers", "Content-Length: 209715200\r\n"))
            await writer.drain()
            response = await read_response(reader)
        assert response.status == 413
        assert response.json() == {
            "error": "ContentTooLarge",
            "detail": f"the request body is larger than the {LIMIT} bytes accepted here",
        }

    async def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(
        self, server: tuple[str, int]
    ) -> None:
        # The body never ends: the 413 can only come from counting what has streamed so far.
        async with connection(server) as (reader, writer):
            writer.write(request_head("/api/v1/customers", "Transfer-Encoding: chunked\r\n"))
            for _ in range(LIMIT // 256 + 1):
                writer.write(chunk(b" " * 256))
            await writer.drain()
            response = await read_response(reader)
        assert response.status == 413
        assert response.json()["error"] == "ContentTooLarge"

    async def test_nothing_is_created_from_a_body_past_the_limit(
        self, server: tuple[str, int], small_app: FastAPI, api_small: Api
    ) -> None:
        body = padded({"name": "Too Big"}, LIMIT + 1)
        async with connection(server) as (reader, writer):
            writer.write(request_head("/api/v1/customers", "Transfer-Encoding: chunked\r\n"))
            writer.write(chunk(body) + chunk(b""))
            await writer.drain()
            assert (await read_response(reader)).status == 413
        listed = expect(await api_small.get("/api/v1/customers"), 200)
        assert listed["items"] == []

    @pytest.mark.parametrize("framing", ["length", "chunked"])
    async def test_a_body_at_the_limit_is_accepted(
        self, server: tuple[str, int], api_small: Api, framing: str
    ) -> None:
        body = padded({"name": "Just Fits"}, LIMIT)
        token = api_small.headers["Authorization"].removeprefix("Bearer ")
        if framing == "length":
            head, payload = f"Content-Length: {LIMIT}\r\n", body
        else:
            head, payload = "Transfer-Encoding: chunked\r\n", chunk(body) + chunk(b"")
        async with connection(server) as (reader, writer):
            writer.write(request_head("/api/v1/customers", head, token) + payload)
            await writer.drain()
            response = await read_response(reader)
        assert response.status == 201, response.body

    async def test_a_path_with_its_own_limit_takes_a_larger_body(self, api_small: Api) -> None:
        body = padded({"name": "roomy"}, 2 * LIMIT)
        headers = {**api_small.headers, "Content-Type": "application/json"}
        taken = await api_small.client.post("/api/v1/skills", content=body, headers=headers)
        assert taken.status_code == 201, taken.text
        refused = await api_small.client.post("/api/v1/customers", content=body, headers=headers)
        assert refused.status_code == 413


@pytest.fixture
async def api_small(small_app: FastAPI) -> AsyncIterator[Api]:
    transport = ASGITransport(app=small_app)
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        yield await Api.signed_in(client, "admin", ADMIN_PASSWORD)


# --- frames the parser cannot read --------------------------------------------------------


class TestDeepSocketFrames:
    # 60,000 deep is 120,000 characters, under the frame's text limit (131,072): the nesting,
    # not the size, is refused (a longer frame is refused for its size, tests/realtime).
    @pytest.mark.parametrize("depth", [5_000, 60_000])
    async def test_a_deeply_nested_frame_is_an_error_and_the_socket_stays_open(
        self, app: FastAPI, api: Api, depth: int
    ) -> None:
        async with (
            serving(app) as base,
            following(base, "/ws/wallboard", token_of(api)) as (ws, _),
        ):
            await ws.conn.send("[" * depth + "]" * depth)
            answer = await ws.reply()  # a wallboard may get events first
            assert answer["type"] == "error"
            assert "nested too deeply" in answer["detail"]
            await ws.send({"type": "ping"})
            assert await ws.reply() == {"type": "pong"}
