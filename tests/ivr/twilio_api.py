"""A fake of Twilio's REST API (the calls resource): a real HTTP server on a free local port.

It records every request (path, form, basic-auth user) and answers as Twilio does: a new
call (``POST .../Calls.json``) gets a ``CA`` sid, an update (``POST .../Calls/{sid}.json``)
the call back, a fetch (``GET .../Calls/{sid}.json``) the call with the status set for it in
``statuses`` (``in-progress`` if none; ``None``: Twilio knows no such call, its 404).
``fail_next`` scripts the statuses of the next answers, ``refuse_next`` a refusal with
Twilio's error code (21220: the call is no longer in progress); clearing ``answering`` leaves
each request waiting, received but unanswered, until it is set again (a slow Twilio). Tests
wait on ``received`` (an event set by each request) with a deadline, never on the clock.

The app under test is pointed at it with ``twilio_api_base_url``; its own webhooks are
driven by ``tests.ivr.telephony.TwilioCall``.
"""

from __future__ import annotations

import asyncio
import base64
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


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    form: dict[str, str]
    user: str
    at: float  # the event loop's clock when it arrived

    @property
    def creates(self) -> bool:
        return self.path.endswith("/Calls.json")

    @property
    def fetches(self) -> bool:
        return self.method == "GET"


@dataclass
class FakeTwilio(net.Recorder[Received]):
    url: str = ""
    script: list[tuple[int, int]] = field(default_factory=list)  # (status, Twilio's code)
    statuses: dict[str, str | None] = field(default_factory=dict)  # a fetch's answer per sid
    answering: asyncio.Event = field(default_factory=lambda: _set(asyncio.Event()))
    _sids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def fail_next(self, *statuses: int) -> None:
        """Answer the next requests with these statuses."""
        self.script.extend((status, 20500) for status in statuses)

    def refuse_next(self, status: int, code: int) -> None:
        """Answer the next request with ``status`` and Twilio's error ``code``."""
        self.script.append((status, code))

    async def _record(self, request: Request) -> Received:
        form = {k: str(v) for k, v in (await request.form()).multi_items()}
        user = ""
        auth = request.headers.get("authorization", "")
        if auth.startswith("Basic "):
            user = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
        at = asyncio.get_running_loop().time()
        got = self.record(Received(request.method, request.url.path, form, user, at))
        await self.answering.wait()
        return got

    def _scripted(self) -> Response | None:
        if not self.script:
            return None
        status, code = self.script.pop(0)
        body = {"code": code, "message": "scripted failure", "status": status}
        return JSONResponse(body, status_code=status)

    async def create(self, request: Request) -> Response:
        got = await self._record(request)
        failed = self._scripted()
        if failed is not None:
            return failed
        sid = f"CA{next(self._sids):032x}"
        return JSONResponse(_call(sid, got.form, "queued"), status_code=201)

    async def update(self, request: Request) -> Response:
        got = await self._record(request)
        failed = self._scripted()
        if failed is not None:
            return failed
        return JSONResponse(_call(request.path_params["sid"], got.form, "in-progress"))

    async def fetch(self, request: Request) -> Response:
        await self._record(request)
        failed = self._scripted()
        if failed is not None:
            return failed
        sid = request.path_params["sid"]
        status = self.statuses.get(sid, "in-progress")
        if status is None:
            body = {"code": 20404, "message": "not found", "status": 404}
            return JSONResponse(body, status_code=404)
        return JSONResponse(_call(sid, {}, status))

    def fetched(self) -> list[str]:
        """The sids of the calls asked after, in order."""
        return [r.path.rsplit("/", 1)[1].removesuffix(".json") for r in self.requests if r.fetches]

    def app(self) -> Starlette:
        base = "/2010-04-01/Accounts/{account}"
        return Starlette(
            routes=[
                Route(base + "/Calls.json", self.create, methods=["POST"]),
                Route(base + "/Calls/{sid}.json", self.update, methods=["POST"]),
                Route(base + "/Calls/{sid}.json", self.fetch, methods=["GET"]),
            ]
        )


def _set(event: asyncio.Event) -> asyncio.Event:
    event.set()
    return event


def _call(sid: str, form: dict[str, str], status: str) -> dict[str, Any]:
    return {"sid": sid, "status": status, "to": form.get("To"), "from": form.get("From")}


@asynccontextmanager
async def serving() -> AsyncIterator[FakeTwilio]:
    fake = FakeTwilio()
    async with net.serving(fake.app(), name="the fake Twilio API") as url:
        fake.url = url
        yield fake
