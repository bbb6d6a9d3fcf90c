"""Browser tests: the app served over real HTTP, and Debian's chromium driven by Playwright.

The app runs in the test's event loop (uvicorn on a free port, lifespan entered by the
``app`` fixture), so a test can reach into it (``app.state``: the complaint clock, the hub)
while the browser drives its pages. The browser is the machine's chromium, launched by
Playwright with ``executable_path`` (``HOTLINE_CHROMIUM``, else ``/usr/bin/chromium``): no
browser is downloaded. Without one the tests are skipped, except on CI (``CI`` set) or where
``HOTLINE_CHROMIUM`` names one, where a missing browser fails them.

Every page opened through ``new_page`` is watched: an uncaught script error or a Content-
Security-Policy violation fails the test at teardown, so the pages are proven to work under
the service's own CSP.

Waits are Playwright's ``expect`` with a deadline (``WITHIN_MS``), never sleeps.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import APIRouter, FastAPI
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Route,
    async_playwright,
    expect,
)

from app.config import Settings
from app.main import create_app
from tests.fixtures import net
from tests.fixtures.factories import AGENT_PASSWORD

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WITHIN_MS = 30_000  # any one wait in a page; on a busy two-core machine a load may take seconds
STATIC = Path(__file__).resolve().parents[2] / "app" / "web" / "static"
AXE = STATIC / "vendor" / "axe-core" / "axe.min.js"
# The pages' routers: each is included in the app under test if app.main does not already.
PAGE_ROUTERS = ("app.web.router", "app.web.pages_boards")

expect.set_options(timeout=WITHIN_MS)


def chromium_path() -> str:
    return os.environ.get("HOTLINE_CHROMIUM", "/usr/bin/chromium")


def browser_required() -> bool:
    """On CI, or with a browser named explicitly, a missing browser is a failure."""
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return ci or bool(os.environ.get("HOTLINE_CHROMIUM"))


# --- the app, served -------------------------------------------------------------------------


def page_routers() -> list[APIRouter]:
    """The routers of the pages that exist in this checkout."""
    routers: list[APIRouter] = []
    for name in PAGE_ROUTERS:
        if importlib.util.find_spec(name) is not None:
            routers.append(importlib.import_module(name).router)
    return routers


def with_pages(app: FastAPI) -> FastAPI:
    """``app`` with the pages' routes (those it lacks)."""
    served = {getattr(route, "path", None) for route in app.routes}
    for router in page_routers():
        if not any(getattr(route, "path", None) in served for route in router.routes):
            app.include_router(router)
    return app


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """A running app with the pages (lifespan entered: hub, timers, dispatcher)."""
    application = with_pages(create_app(settings))
    async with application.router.lifespan_context(application):
        yield application


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1; its http:// URL."""
    async with net.serving(app, name="the app", stop_within_s=WITHIN_MS / 1000) as url:
        yield url


@pytest.fixture
async def site(app: FastAPI) -> AsyncIterator[str]:
    """The app's base URL."""
    async with serving(app) as base:
        yield base


# --- the browser -----------------------------------------------------------------------------


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's chromium, headless."""
    path = chromium_path()
    if not os.access(path, os.X_OK):
        reason = f"no chromium at {path} (apt-get install chromium, or set HOTLINE_CHROMIUM)"
        if browser_required():
            pytest.fail(reason)
        pytest.skip(reason)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Watched:
    """What went wrong in the pages a test opened."""

    errors: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.errors.append(f"CSP: {message.text}")

    def page_error(self, error: Exception) -> None:
        self.errors.append(f"script error: {error}")


NewPage = Callable[..., Awaitable[Page]]


@pytest.fixture
async def new_page(browser: Browser, site: str) -> AsyncIterator[NewPage]:
    """Open pages on ``site``, each in a browser context of its own (its own session
    storage: a separate tab of a separate person). ``locale`` sets the browser's language."""
    contexts: list[BrowserContext] = []
    watched = Watched()

    async def open_page(locale: str = "en-GB") -> Page:
        context = await browser.new_context(base_url=site, locale=locale)
        contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(WITHIN_MS)
        page.on("console", watched.console)
        page.on("pageerror", watched.page_error)
        return page

    yield open_page
    for context in contexts:
        await context.close()
    assert not watched.errors, "\n".join(watched.errors)


# --- helpers the page tests share ------------------------------------------------------------


async def sign_in(page: Page, username: str, password: str = AGENT_PASSWORD) -> None:
    """Sign in through the sign-in page (the page is already on it): once its script is
    ready (it enables the button last), as a person would see the form before typing."""
    await expect(page.locator("#signin-submit")).to_be_enabled()
    await page.get_by_label("Username").or_(page.get_by_label("用户名")).fill(username)
    await page.get_by_label("Password").or_(page.get_by_label("密码")).fill(password)
    await page.locator("#signin-submit").click()


async def go_signed_out(page: Page, path: str) -> None:
    """Open ``path``, a page that sends a browser without a session on to sign in.

    The goto waits only for the first answer to arrive: the page's script moves the browser
    on while the page is still loading, so a wait for that page's ``load`` event can race the
    move. The caller's next wait (for the sign-in URL, a field) is what shows it arrived."""
    await page.goto(path, wait_until="commit")


RouteHandler = Callable[[Route], Awaitable[None]]


async def open_signed_in(
    page: Page,
    path: str,
    username: str,
    password: str = AGENT_PASSWORD,
    *,
    routes: dict[str, RouteHandler] | None = None,
) -> None:
    """Open ``path`` as ``username``: the page sends the browser to sign in, then back.

    ``routes`` (URL pattern: handler) are installed on the sign-in page, before signing in,
    so that the page's first requests once back meet them. Not before the first move: with
    requests intercepted, a page sending itself on to sign in while still loading was once
    seen in a run of the suite not to move at all (the page's move is one synchronous
    ``location.assign`` before anything else it does)."""
    await go_signed_out(page, path)
    await expect(page).to_have_url(re.compile(re.escape(f"/signin?next={quote(path, safe='')}")))
    for pattern, handler in (routes or {}).items():
        await page.route(pattern, handler)
    await sign_in(page, username, password)
    await expect(page).to_have_url(re.compile(f"{re.escape(path)}$"))


async def axe_violations(
    page: Page, impacts: tuple[str, ...] = ("critical",)
) -> list[dict[str, Any]]:
    """The accessibility violations axe-core (vendored) finds on the page, of these impacts."""
    await page.evaluate(AXE.read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = await page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations.map(
            (v) => ({id: v.id, impact: v.impact, help: v.help,
                     nodes: v.nodes.map((n) => n.target.join(" "))}))"""
    )
    return [violation for violation in found if violation["impact"] in impacts]


def refused_with(retry_after_s: int, detail: str) -> RouteHandler:
    """A route handler that answers as the service does past a rate limit (429 and
    ``Retry-After``): the page's own wording of the wait is what a test reads."""

    async def answer(route: Route) -> None:
        body = {"error": "RateLimited", "detail": detail}
        await route.fulfill(
            status=429,
            headers={"Retry-After": str(retry_after_s)},
            content_type="application/json",
            body=json.dumps(body),
        )

    return answer
