"""A fake of a JSON adapter provider's own API: a real HTTP server on a free local port that
takes Hotline's requests to place a call (``POST /calls``).

It records each request (its JSON and whether its signature is the webhook secret's over
``<timestamp>.<body>``) and answers with a new call id, or, for the statuses scripted with
``fail_next``, with that status; clearing ``answering`` holds its answers until it is set.
Tests wait on ``received`` with a deadline, never on the clock. The app under test is
pointed at it with ``json_provider_url``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fixtures import net
from tests.ivr.telephony import json_signature


@dataclass(frozen=True)
class Placing:
    document: dict[str, Any]
    signed: bool  # the signature is the webhook secret's over the timestamp and the body


@dataclass
class FakeJsonProvider(net.Recorder[Placing]):
    url: str = ""
    script: list[int] = field(default_factory=list)
    answering: asyncio.Event = field(default_factory=asyncio.Event)  # cleared: answers wait
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def fail_next(self, *statuses: int) -> None:
        self.script.extend(statuses)

    async def place(self, request: Request) -> Response:
        body = await request.body()
        timestamp = request.headers.get("x-hotline-timestamp", "")
        signed = request.headers.get("x-hotline-signature") == json_signature(timestamp, body)
        self.record(Placing(json.loads(body), signed))
        await self.answering.wait()
        if self.script:
            return JSONResponse({"error": "scripted failure"}, status_code=self.script.pop(0))
        return JSONResponse({"call_id": f"out-{next(self._ids)}"}, status_code=201)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/calls", self.place, methods=["POST"])])


@asynccontextmanager
async def serving() -> AsyncIterator[FakeJsonProvider]:
    fake = FakeJsonProvider()
    fake.answering.set()
    async with net.serving(fake.app(), name="the fake JSON provider") as url:
        fake.url = url
        yield fake
