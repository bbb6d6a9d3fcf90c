"""Health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI
from fastapi.routing import APIRoute
from httpx import AsyncClient
from sqlalchemy import text

from tests.fixtures.factories import Api, expect

REPO = Path(__file__).resolve().parent.parent


class TestHealth:
    async def test_live_answers_ok(self, client: AsyncClient) -> None:
        assert expect(await client.get("/health/live"), 200) == {"status": "ok"}

    async def test_ready_when_database_is_at_migration_head(self, client: AsyncClient) -> None:
        body = expect(await client.get("/health/ready"), 200)
        assert body["database"] == "ok"
        assert body["migrations"] == "current"

    async def test_not_ready_when_schema_is_behind_the_code(
        self, app: FastAPI, client: AsyncClient
    ) -> None:
        async with app.state.engine.begin() as conn:
            head = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
            await conn.execute(text("UPDATE alembic_version SET version_num = 'old'"))
        try:
            body = expect(await client.get("/health/ready"), 503)
            assert body["migrations"] == "behind"
            assert body["current"] == ["old"]
        finally:
            async with app.state.engine.begin() as conn:
                await conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})


class TestMetrics:
    async def test_counts_requests_by_route_template_and_status(self, api: Api) -> None:
        await api.get("/api/v1/agents/999999")
        response = await api.client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        lines = response.text.splitlines()
        assert any(
            line.startswith("hotline_http_requests_total{")
            and 'route="/api/v1/agents/{agent_id}"' in line
            and 'status="404"' in line
            for line in lines
        )
        assert any(
            line.startswith("hotline_http_request_duration_seconds_bucket{") for line in lines
        )


class TestOpenApi:
    async def test_every_route_is_documented(self, app: FastAPI, client: AsyncClient) -> None:
        schema = expect(await client.get("/openapi.json"), 200)
        for route in app.routes:
            if not isinstance(route, APIRoute) or not route.include_in_schema:
                continue  # pages such as /docs are not operations of the API
            for method in route.methods or ():
                operation = schema["paths"][route.path_format][method.lower()]
                assert operation.get("description"), f"{method} {route.path} has no description"

    async def test_interactive_docs_are_served(self, client: AsyncClient) -> None:
        response = await client.get("/docs")
        assert response.status_code == 200
        assert "swagger" in response.text.lower()


class TestCompose:
    """docker-compose.yml, read as Compose reads it (YAML with merge keys)."""

    @staticmethod
    def services() -> dict[str, Any]:
        compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
        return compose["services"]  # type: ignore[no-any-return]

    def test_the_api_and_the_dispatcher_share_one_environment(self) -> None:
        services = self.services()
        api, dispatcher = services["hotline"]["environment"], services["dispatcher"]["environment"]
        assert api.pop("HOTLINE_DISPATCHER_ENABLED") == "false"
        assert dispatcher.pop("HOTLINE_DISPATCHER_ENABLED") == "true"
        assert api == dispatcher
        assert services["migrate"]["environment"]["DATABASE_URL"] == api["DATABASE_URL"]

    def test_one_image_is_built_once_and_run_by_every_hotline_service(self) -> None:
        services = self.services()
        builders = [name for name, service in services.items() if "build" in service]
        assert builders == ["migrate"]
        image = services["migrate"]["image"]
        for name in ("hotline", "dispatcher"):
            assert services[name]["image"] == image
            assert services[name]["pull_policy"] == "never"

    def test_the_api_is_healthy_only_when_ready(self) -> None:
        check = " ".join(self.services()["hotline"]["healthcheck"]["test"])
        assert "/health/ready" in check
