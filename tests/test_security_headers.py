"""Security headers on every response, CORS closed unless configured, websockets untouched.

The app is the suite's (``create_app``) with ``install_security`` added as ``app/main.py``
installs it, after every other middleware.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from starlette.types import Message, Receive, Scope, Send
from websockets.asyncio.client import connect

from app.config import Settings
from app.main import create_app
from app.security_headers import (
    JSON_POLICY,
    SecurityHeaders,
    csp_hash,
    inline_blocks,
    install_security,
)
from tests.conftest import make_settings
from tests.fixtures.factories import ADMIN_PASSWORD, Api, expect
from tests.realtime.test_ws import serving

WITHIN_S = 10.0
EVIL = "https://evil.example"
FRIEND = "https://desk.example.com"


def secured(settings: Settings) -> FastAPI:
    """The suite's app with the security middleware, installed once."""
    app = create_app(settings)
    installed = [getattr(m, "cls", None) for m in app.user_middleware]
    if SecurityHeaders not in installed:
        install_security(app, settings)
    return app


@pytest.fixture
async def secure_app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = secured(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def http(secure_app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=secure_app)
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
async def admin(http: AsyncClient) -> Api:
    return await Api.signed_in(http, "admin", ADMIN_PASSWORD)


def assert_common(response: Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def assert_api(response: Response) -> None:
    assert_common(response)
    assert response.headers["content-security-policy"] == JSON_POLICY
    assert response.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in response.headers


def cors_headers(response: Response) -> list[str]:
    return [name for name in response.headers if name.lower().startswith("access-control-")]


class TestApiResponses:
    async def test_a_read_of_personal_data_is_neither_cached_nor_framed(self, admin: Api) -> None:
        customer = await admin.customer()
        response = await admin.get(f"/api/v1/customers/{customer['id']}")
        expect(response, 200)
        assert_api(response)

    async def test_a_create_carries_the_headers(self, admin: Api) -> None:
        response = await admin.post("/api/v1/skills", {"name": "billing"})
        expect(response, 201)
        assert_api(response)

    @pytest.mark.parametrize(
        ("method", "path", "body", "status"),
        [
            ("GET", "/api/v1/agents", None, 401),
            ("GET", "/api/v1/no-such-route", None, 404),
            ("POST", "/api/v1/auth/token", None, 422),
        ],
    )
    async def test_errors_carry_the_headers(
        self, http: AsyncClient, method: str, path: str, body: Any, status: int
    ) -> None:
        response = await http.request(method, path, json=body)
        assert response.status_code == status
        assert_api(response)

    async def test_a_body_refused_for_its_size_carries_the_headers(self, http: AsyncClient) -> None:
        response = await http.post("/api/v1/auth/token", content=b"x" * 10_000_000)
        assert response.status_code == 413
        assert_api(response)

    async def test_outside_the_api_a_response_is_not_marked_no_store(
        self, http: AsyncClient
    ) -> None:
        response = await http.get("/health/live")
        assert response.status_code == 200
        assert_common(response)
        assert response.headers["content-security-policy"] == JSON_POLICY
        assert response.headers.get("cache-control") != "no-store"


# --- the HTML pages ------------------------------------------------------------------------


def policy_sources(policy: str, directive: str) -> list[str]:
    """The sources a CSP grants for ``directive`` (empty if it is not there)."""
    for part in policy.split(";"):
        name, *sources = part.split()
        if name == directive:
            return sources
    return []


class TestPages:
    @pytest.mark.parametrize("path", ["/docs", "/docs/oauth2-redirect", "/docs/websockets"])
    async def test_every_inline_block_of_a_page_is_allowed_by_its_hash(
        self, http: AsyncClient, path: str
    ) -> None:
        response = await http.get(path)
        assert response.status_code == 200
        assert_common(response)
        policy = response.headers["content-security-policy"]
        scripts, styles = inline_blocks(response.text)
        assert scripts or styles, "each docs page has inline code"
        for code in scripts:
            assert csp_hash(code) in policy_sources(policy, "script-src")
        for code in styles:
            assert csp_hash(code) in policy_sources(policy, "style-src")

    async def test_the_pages_policy_allows_no_other_inline_code(self, http: AsyncClient) -> None:
        policy = (await http.get("/docs")).headers["content-security-policy"]
        assert "'unsafe-inline'" not in policy
        assert "'unsafe-eval'" not in policy
        assert policy_sources(policy, "default-src") == ["'none'"]
        assert policy_sources(policy, "connect-src") == ["'self'"]
        assert csp_hash("alert(document.cookie)") not in policy

    async def test_swagger_ui_loads_its_assets_from_the_service_itself(
        self, http: AsyncClient
    ) -> None:
        page = (await http.get("/docs")).text
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
            url = f"/docs/assets/{asset}"
            assert url in page
            response = await http.get(url)
            assert response.status_code == 200
            assert_common(response)
        spec = await http.get("/openapi.json")
        assert spec.status_code == 200
        assert spec.json()["openapi"]


class TestTransportSecurity:
    async def test_hsts_only_when_the_public_base_url_is_https(self, db: str) -> None:
        for base, expected in [("https://hotline.example.com", True), ("http://10.0.0.5", False)]:
            app = secured(make_settings(db, public_base_url=base))
            async with AsyncClient(transport=ASGITransport(app=app), base_url=base) as client:
                response = await client.get("/health/live")
            assert ("strict-transport-security" in response.headers) is expected, base
            if expected:
                assert response.headers["strict-transport-security"].startswith("max-age=")


# --- CORS ----------------------------------------------------------------------------------


def preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    }


class TestCorsClosedByDefault:
    async def test_no_origin_gets_cors_headers(self, admin: Api, http: AsyncClient) -> None:
        for origin in (EVIL, "http://test", "null"):
            headers = {**admin.headers, "Origin": origin}
            read = await http.get("/api/v1/agents/me", headers=headers)
            assert read.status_code == 200
            assert cors_headers(read) == [], origin
            options = await http.options("/api/v1/contacts", headers=preflight(origin))
            assert cors_headers(options) == [], origin


@pytest.fixture
async def cors_http(db: str) -> AsyncIterator[AsyncClient]:
    app = secured(make_settings(db, cors_origins=[FRIEND]))
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client,
    ):
        yield client


class TestCorsConfigured:
    async def test_a_configured_origin_may_call_with_the_api_headers(
        self, cors_http: AsyncClient
    ) -> None:
        response = await cors_http.options("/api/v1/contacts", headers=preflight(FRIEND))
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == FRIEND
        allowed = response.headers["access-control-allow-headers"].lower()
        for header in ("authorization", "content-type", "idempotency-key"):
            assert header in allowed
        assert "access-control-allow-credentials" not in response.headers
        assert_common(response)

    async def test_a_configured_origin_reads_answers(self, cors_http: AsyncClient) -> None:
        response = await cors_http.get("/health/live", headers={"Origin": FRIEND})
        assert response.headers["access-control-allow-origin"] == FRIEND
        assert "access-control-allow-credentials" not in response.headers

    async def test_another_origin_is_not_allowed(self, cors_http: AsyncClient) -> None:
        response = await cors_http.options("/api/v1/contacts", headers=preflight(EVIL))
        assert "access-control-allow-origin" not in response.headers
        read = await cors_http.get("/health/live", headers={"Origin": EVIL})
        assert "access-control-allow-origin" not in read.headers

    async def test_an_unlisted_request_header_is_refused(self, cors_http: AsyncClient) -> None:
        headers = {**preflight(FRIEND), "Access-Control-Request-Headers": "x-forwarded-for"}
        response = await cors_http.options("/api/v1/contacts", headers=headers)
        assert response.status_code == 400


# --- the middleware itself -----------------------------------------------------------------


class Recorder:
    """An ASGI ``send`` that keeps what it is given and signals each message."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.arrived = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)
        self.arrived.set()


async def nothing_to_receive() -> Message:
    return {"type": "http.disconnect"}


class TestStreaming:
    async def test_each_body_chunk_is_passed_on_before_the_next_is_made(self) -> None:
        sent = Recorder()

        async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"one", "more_body": True})
            # The next chunk waits until the client has the first: a buffering middleware
            # would hold it and this would time out.
            async with asyncio.timeout(WITHIN_S):
                while len(sent.messages) < 2:
                    sent.arrived.clear()
                    await sent.arrived.wait()
            await send({"type": "http.response.body", "body": b"two"})

        middleware = SecurityHeaders(streaming, html_csp="x", hsts=False)
        scope = {"type": "http", "path": "/api/v1/events", "headers": []}
        await middleware(scope, nothing_to_receive, sent)
        assert [m.get("body") for m in sent.messages[1:]] == [b"one", b"two"]
        headers = dict(sent.messages[0]["headers"])
        assert headers[b"cache-control"] == b"no-store"

    async def test_a_websocket_scope_passes_untouched(self) -> None:
        sent = Recorder()
        accept = {"type": "websocket.accept", "headers": [(b"x-mine", b"1")]}

        async def socket(scope: Scope, receive: Receive, send: Send) -> None:
            await send(dict(accept))
            await send({"type": "websocket.send", "text": "hello"})

        middleware = SecurityHeaders(socket, html_csp="x", hsts=True)
        await middleware({"type": "websocket", "path": "/ws/agent"}, nothing_to_receive, sent)
        assert sent.messages == [accept, {"type": "websocket.send", "text": "hello"}]


class TestWebsockets:
    async def test_a_console_connects_through_the_middleware(
        self, secure_app: FastAPI, admin: Api
    ) -> None:
        token = admin.headers["Authorization"].removeprefix("Bearer ")
        async with serving(secure_app) as base, connect(f"{base}/ws/agent?token={token}") as ws:
            async with asyncio.timeout(WITHIN_S):
                first = json.loads(await ws.recv())
        assert first["type"] == "snapshot"
