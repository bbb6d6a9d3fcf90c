"""The pages' files over HTTP: types, caching, refusals; and what every page's source must not
hold (inline code, markup built from strings)."""

from __future__ import annotations

import re

import pytest
from httpx import AsyncClient

from app.security_headers import inline_blocks
from app.web.router import STATIC_DIR

PAGES = ("/console", "/status", "/signin")
HTML_FILES = sorted(path for path in STATIC_DIR.rglob("*.html") if "vendor" not in path.parts)
SCRIPTS = sorted(path for path in STATIC_DIR.rglob("*.js") if "vendor" not in path.parts)
# Attributes that run code or style inline: refused by the pages' CSP.
INLINE_ATTRIBUTE = re.compile(r"<[^>]*\s(on[a-z]+|style)\s*=", re.IGNORECASE)
# Ways of turning a string into markup; dom.js (text nodes only) is the pages' one way.
MARKUP_SINKS = re.compile(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write")


class TestPages:
    @pytest.mark.parametrize("path", PAGES)
    async def test_a_page_is_html_under_the_pages_policy_revalidated_each_time(
        self, client: AsyncClient, path: str
    ) -> None:
        response = await client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["etag"]

    async def test_the_service_s_own_address_sends_the_browser_to_the_console(
        self, client: AsyncClient
    ) -> None:
        response = await client.get("/")
        assert response.status_code == 307
        assert response.headers["location"] == "/console"

    async def test_a_current_copy_is_a_304_that_keeps_the_pages_policy(
        self, client: AsyncClient
    ) -> None:
        first = await client.get("/console")
        again = await client.get("/console", headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304
        assert again.content == b""
        # a browser takes the 304's headers for its copy's: the policy must stay the page's
        csp = first.headers["content-security-policy"]
        assert again.headers["content-security-policy"] == csp


class TestStaticFiles:
    @pytest.mark.parametrize(
        ("path", "content_type"),
        [
            ("/static/js/api.js", "text/javascript; charset=utf-8"),
            ("/static/css/app.css", "text/css; charset=utf-8"),
            ("/static/i18n/common.zh-CN.json", "application/json"),
            ("/static/img/favicon.svg", "image/svg+xml"),
        ],
    )
    async def test_a_file_is_served_with_its_type(
        self, client: AsyncClient, path: str, content_type: str
    ) -> None:
        response = await client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"] == content_type
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-content-type-options"] == "nosniff"

    @pytest.mark.parametrize(
        "path",
        [
            "/static/vendor/axe-core/axe.min.js",  # the tests' checker, never served
            "/static/vendor/axe-core/LICENSE",
            "/static/%2e%2e/router.py",
            "/static/console/..%2f..%2frouter.py",
            "/static/.hidden.js",
            "/static/console",
            "/static/console/",
            "/static/js/nothing.js",
            "/static/vendor/axe-core/VENDORED.md",
        ],
    )
    async def test_anything_else_is_the_same_404(self, client: AsyncClient, path: str) -> None:
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json() == {"error": "StaticNotFound", "detail": "no such file"}


class TestPageSources:
    @pytest.mark.parametrize("path", HTML_FILES, ids=lambda p: str(p.relative_to(STATIC_DIR)))
    def test_no_page_holds_inline_code_or_style(self, path: object) -> None:
        page = path.read_text(encoding="utf-8")  # type: ignore[attr-defined]
        assert inline_blocks(page) == ([], [])
        assert INLINE_ATTRIBUTE.search(page) is None

    @pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(STATIC_DIR)))
    def test_no_script_turns_a_string_into_markup(self, path: object) -> None:
        code = path.read_text(encoding="utf-8")  # type: ignore[attr-defined]
        code = re.sub(r"//[^\n]*", "", code)  # comments may name what is not done
        assert MARKUP_SINKS.search(code) is None
