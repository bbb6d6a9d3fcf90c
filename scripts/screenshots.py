"""Write screenshots of the pages to docs/screenshots/, from a real server and browser.

Run ``python -m scripts.screenshots`` (``--only console`` for one page). The app is served on
a database of its own (``hotline_screenshots``, recreated and migrated on the server of
``TEST_DATABASE_URL``, or on an embedded server in a temporary folder), a small centre is
built through the API, and Debian's chromium (``HOTLINE_CHROMIUM``, else /usr/bin/chromium)
opens each page and saves ``docs/screenshots/<page>.png``. Chinese text (the language button,
the Chinese pages) needs a CJK font on the machine, such as Debian's ``fonts-noto-cjk``;
without one it is drawn as empty boxes.

Each page is one ``Shot``: a name and an async function that prepares the centre and leaves
the page showing what the picture should. Other pages add theirs in a module
``scripts/screenshots_<name>.py`` with a list ``SHOTS`` of ``Shot``; they are taken after
these.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import os
import pkgutil
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from alembic import command
from fastapi import FastAPI
from httpx import AsyncClient
from playwright.async_api import Browser, Page, async_playwright, expect
from pydantic import SecretStr

from app.cli import alembic_config
from app.config import Settings
from app.db import recreate_database
from app.embedded import start_embedded
from app.main import create_app
from app.web.router import router as pages_router

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
DATABASE = "hotline_screenshots"
ADMIN_PASSWORD = "screenshots-admin-password"
PASSWORD = "screenshots-password-1"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 860}


@dataclass
class Studio:
    """What a shot works with: the served app, an admin's API client, the browser."""

    app: FastAPI
    base: str
    admin: AsyncClient
    browser: Browser

    async def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        """An API call as the admin; the JSON answer (a wrong status stops the run)."""
        response = await self.admin.request(method, path, json=body)
        if response.status_code != status:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    async def page(self, locale: str = "en-GB") -> Page:
        context = await self.browser.new_context(
            base_url=self.base,
            locale=locale,
            viewport=VIEWPORT,  # type: ignore[arg-type]
        )
        return await context.new_page()

    async def signed_in(self, page: Page, path: str, username: str) -> None:
        """Open ``path`` through the sign-in page."""
        await page.goto(path)
        await page.locator("#username").fill(username)
        await page.locator("#password").fill(PASSWORD)
        await page.locator("#signin-submit").click()
        await page.wait_for_url(f"**{path}")

    async def save(self, page: Page, name: str) -> None:
        path = OUT / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        sys.stdout.write(f"wrote {path.relative_to(ROOT)}\n")


@dataclass(frozen=True)
class Shot:
    name: str
    take: Callable[[Studio], Awaitable[None]]


def complaint(customer_id: int | None, branch: str) -> dict[str, Any]:
    return {
        "channel": "phone",
        "customer": None if customer_id is None else {"id": customer_id},
        "complainant": {"name": "Wang Fang", "contact": "+8613800138000", "relation": "self"},
        "matter": {
            "occurred_at": "2026-11-28T10:00:00+08:00",
            "location": "Pudong branch, counter 3",
            "branch": branch,
            "description": "My card was charged twice for one purchase.",
        },
        "grounds": "The same purchase was charged twice.",
        "request": "Refund the second charge.",
    }


async def assigned(studio: Studio, body: dict[str, Any], agent_id: int) -> dict[str, Any]:
    done: dict[str, Any] = await studio.call("POST", "/api/v1/complaints", body, 201)
    facts = {"categories": ["payment"], "severity": "medium"}
    await studio.call("POST", f"/api/v1/complaints/{done['id']}/classify", facts)
    await studio.call("POST", f"/api/v1/complaints/{done['id']}/assign", {"assignee": agent_id})
    await studio.call("POST", f"/api/v1/complaints/{done['id']}/start")
    return done


async def console(studio: Studio) -> None:
    """An agent with a contact in hand, another offer ringing and two cases."""
    queue = {
        "name": "cards",
        "channels": ["chat", "voice"],
        "ring_timeout_s": 120,
        "wrap_up_s": 60,
        "reject_delay_s": 0,
        "no_answer_delay_s": 0,
    }
    await studio.call("POST", "/api/v1/queues", queue, 201)
    person = {"name": "Wang Fang", "phone": "+8613800138000", "tier": "gold"}
    customer = await studio.call("POST", "/api/v1/customers", person, 201)
    agent = {
        "name": "Li Lei",
        "username": "lilei",
        "password": PASSWORD,
        "site": "shanghai",
        "capacity": {"chat": 2, "voice": 1},
    }
    agent = await studio.call("POST", "/api/v1/agents", agent, 201)
    await assigned(studio, complaint(customer["id"], "Pudong"), agent["id"])
    await assigned(studio, complaint(None, "Minhang"), agent["id"])
    page = await studio.page()
    await studio.signed_in(page, "/console", "lilei")
    await page.get_by_label("Available").check()
    await page.locator("#status-submit").click()
    await expect(page.locator("#status-now")).to_have_text("Available")
    first = {
        "channel": "chat",
        "queue": "cards",
        "customer": {"id": customer["id"]},
        "subject": "Card charged twice",
    }
    await studio.call("POST", "/api/v1/contacts", first, 201)
    await page.locator("#offers .offer .accept").first.click()
    await expect(page.locator(".contact-card .complaints")).to_be_visible()
    second = {"channel": "chat", "queue": "cards", "subject": "Lost card while travelling"}
    await studio.call("POST", "/api/v1/contacts", second, 201)
    await expect(page.locator("#offers .offer")).to_have_count(1)
    await page.locator(".contact-card textarea").fill(
        "Customer confirms the duplicate charge on 28 Nov."
    )
    await expect(page.locator("#cases-body tr")).to_have_count(2)
    await studio.save(page, "console")


async def status(studio: Studio) -> None:
    """A customer's complaint with a message for them in its timeline."""
    agent = {"name": "Zhao Min", "username": "zhaomin", "password": PASSWORD, "site": "shanghai"}
    agent = await studio.call("POST", "/api/v1/agents", agent, 201)
    done = await assigned(studio, complaint(None, "Pudong"), agent["id"])
    note = {"text": "We have asked the clearing centre to reverse the charge.", "internal": False}
    await studio.call("POST", f"/api/v1/complaints/{done['id']}/notes", note, 201)
    page = await studio.page()
    await page.goto("/status")
    await expect(page.locator("#lookup-submit")).to_be_enabled()
    await page.locator("#reference").fill(done["reference"])
    await page.locator("#phone").fill("138 0013 8000")
    await page.locator("#lookup-submit").click()
    await expect(page.locator("#timeline li")).to_have_count(5)
    await studio.save(page, "status")


SHOTS = [Shot("console", console), Shot("status", status)]


def all_shots() -> list[Shot]:
    """These shots, then those of every ``scripts/screenshots_<name>.py``."""
    shots = list(SHOTS)
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name.startswith("screenshots_"):
            shots += importlib.import_module(f"scripts.{module.name}").SHOTS
    return shots


# --- the server ----------------------------------------------------------------------------


def settings_for(url: str) -> Settings:
    return Settings.model_validate(
        {
            "database_url": url,
            "admin_password": SecretStr(ADMIN_PASSWORD),
            "jwt_secret": SecretStr("screenshots-" + "x" * 40),
        }
    )


def with_pages(app: FastAPI) -> FastAPI:
    """The app with the pages' routers it lacks (``app.main`` may not include them yet)."""
    served = {getattr(route, "path", None) for route in app.routes}
    routers = [pages_router]
    if importlib.util.find_spec("app.web.pages_boards") is not None:
        routers.append(importlib.import_module("app.web.pages_boards").router)
    for router in routers:
        if not any(getattr(route, "path", None) in served for route in router.routes):
            app.include_router(router)
    return app


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[tuple[FastAPI, str]]:
    app = with_pages(create_app(settings))
    async with app.router.lifespan_context(app):
        config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        async with asyncio.timeout(30):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        try:
            yield app, f"http://{host}:{port}"
        finally:
            server.should_exit = True
            await task


async def run(server: str, chromium: str, only: set[str]) -> None:
    url = await recreate_database(server, DATABASE)
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
    OUT.mkdir(parents=True, exist_ok=True)
    async with served(settings_for(url)) as (app, base), async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        async with AsyncClient(base_url=base, timeout=30) as admin:
            form = {"username": "admin", "password": ADMIN_PASSWORD}
            token = (await admin.post("/api/v1/auth/token", data=form)).json()["access_token"]
            admin.headers["Authorization"] = f"Bearer {token}"
            studio = Studio(app, base, admin, browser)
            for shot in all_shots():
                if not only or shot.name in only:
                    await shot.take(studio)
        await browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="a page's name (repeatable)")
    args = parser.parse_args()
    server = os.environ.get("TEST_DATABASE_URL") or start_embedded(
        Path(tempfile.mkdtemp(prefix="hotline-screenshots-")), delete_on_exit=True
    )
    chromium = os.environ.get("HOTLINE_CHROMIUM", "/usr/bin/chromium")
    asyncio.run(run(server, chromium, set(args.only)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
