"""A fake SMS and e-mail gateway: a real HTTP server on a free local port.

It records every request it receives and answers from a script: by default each message is
taken (201 with an id of its own); ``fail_next`` makes the next requests answer a status or
hang until the client gives up. Tests wait on ``received`` (an event-backed count), never on
the clock.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fixtures import net

HANG = 0
"""A scripted answer: no answer at all (the client times out)."""


@dataclass(frozen=True)
class Received:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class FakeGateway:
    """The server's state: what it received, what it will answer next."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def fail_next(self, *answers: int) -> None:
        """Answer the next requests with these statuses (``HANG``: never answer)."""
        self.script.extend(answers)

    def references(self) -> list[str]:
        return [r.body["reference"] for r in self.requests]

    async def receive(self, request: Request) -> Response:
        self.requests.append(
            Received(request.url.path, await request.json(), dict(request.headers))
        )
        answer = self.script.pop(0) if self.script else 201
        if answer == HANG:
            await self.release.wait()
            return Response(status_code=504)
        if answer != 201:
            return JSONResponse({"error": "scripted"}, status_code=answer)
        return JSONResponse({"id": f"gw-{next(self._ids)}"}, status_code=201)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/sms", self.receive, methods=["POST"]),
                Route("/email", self.receive, methods=["POST"]),
            ]
        )


@asynccontextmanager
async def serving() -> AsyncIterator[FakeGateway]:
    gateway = FakeGateway()
    async with net.serving(gateway.app(), name="the fake gateway") as url:
        gateway.url = url
        try:
            yield gateway
        finally:
            gateway.release.set()  # held requests answer, so the server can stop
