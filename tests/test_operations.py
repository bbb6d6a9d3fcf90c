"""Health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute
from httpx import AsyncClient
from sqlalchemy import text

from tests.fixtures.factories import Api, expect


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
            if not isinstance(route, APIRoute):
                continue
            for method in route.methods or ():
                operation = schema["paths"][route.path_format][method.lower()]
                assert operation.get("description"), f"{method} {route.path} has no description"

    async def test_interactive_docs_are_served(self, client: AsyncClient) -> None:
        response = await client.get("/docs")
        assert response.status_code == 200
        assert "swagger" in response.text.lower()
