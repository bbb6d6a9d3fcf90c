"""Every dependency a request resolves is a coroutine: FastAPI runs a plain function
dependency on a worker thread, a hop and a wait for the interpreter lock per request, which
showed as latency on the busiest routes. Classes (a form read from the body) are exempt:
they are few and on rare routes."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute

from app.config import Settings
from app.main import create_app

EXEMPT = {"OAuth2PasswordRequestForm"}


def routes(container: Any) -> Iterator[APIRoute | APIWebSocketRoute]:
    for route in container.routes:
        if isinstance(route, APIRoute | APIWebSocketRoute):
            yield route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from routes(inner)


def plain_functions(dependant: Dependant) -> Iterator[str]:
    for dependency in dependant.dependencies:
        call = dependency.call
        if call is not None and not inspect.isclass(call):
            target = call if inspect.isfunction(call) else type(call).__call__
            if not (inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)):
                yield f"{call.__module__}.{getattr(call, '__qualname__', type(call).__name__)}"
        elif call is not None and call.__name__ not in EXEMPT:
            yield f"{call.__module__}.{call.__qualname__} (a class)"
        yield from plain_functions(dependency)


def test_every_request_dependency_is_a_coroutine(settings: Settings) -> None:
    app: FastAPI = create_app(settings)
    found = sorted(
        {
            f"{name} (on {route.path})"
            for route in routes(app.router)
            for name in plain_functions(route.dependant)
        }
    )
    assert found == []


def test_the_walk_sees_the_routes(settings: Settings) -> None:
    paths = {route.path for route in routes(create_app(settings).router)}
    assert "/api/v1/complaints" in paths
    assert "/telephony/twilio/voice" in paths
