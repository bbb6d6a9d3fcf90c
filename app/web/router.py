"""The pages: ``/console``, ``/status``, ``/signin``, and their files under ``/static/``; ``/``
sends a browser to the console.

Theory of operation
-------------------

Every page is a static HTML file under ``app/web/static/<page>/index.html`` that loads
JavaScript modules and a style sheet from ``/static/``; the modules talk to the public API
(``/api/v1``) and the websockets, exactly as any other client does. Nothing is rendered on the
server and nothing is built: the files in the repository are the files served.

``page`` answers a page's route with its HTML; ``static_file`` answers ``/static/<path>``
with a file of the static folder. A path is served only if it names a regular file inside
that folder, with no hidden segment, outside the test-only folders, and with a suffix of
``CONTENT_TYPES``: anything else is the same 404, so the route never reveals what else lies
on the disk.

The pages run under the HTML Content-Security-Policy of ``app/security_headers.py`` (scripts,
styles and connections from the service's own origin only, no inline code): the HTML holds no
inline script, style or event handler, and the scripts build the DOM with ``textContent``.

Decisions, and why
------------------

- ``Cache-Control: no-cache`` with an ``ETag`` on every file, answered ``304`` when the
  browser's copy is current. File names carry no content hash (there is no build step), so a
  browser must ask each time whether a module changed; an unchanged one costs a 304.
- A page needs no session on the server: the page's script reads its token from
  ``sessionStorage`` and sends anyone without a valid one to ``/signin?next=<page>``. Access
  is decided by the API on every request the page makes, never by the page.
- axe-core (``static/vendor/axe-core``) is for the browser tests only: no page loads it, and
  this route refuses it.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from app.errors import NotFound

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
STATIC_URL: Final = "/static"
CACHE_CONTROL: Final = "no-cache"

CONTENT_TYPES: Final[dict[str, str]] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}
# Folders under static/ kept for the tests, never served.
TEST_ONLY: Final = (PurePosixPath("vendor/axe-core"),)

router = APIRouter(include_in_schema=False)


class StaticNotFound(NotFound):
    """No such file to serve (the same answer whatever the reason)."""

    def __init__(self) -> None:
        super().__init__("no such file")


def etag_of(path: Path) -> str:
    """A strong validator of the file as it is on disk: its size and modification time."""
    stat = path.stat()
    return f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'


def servable(relative: str) -> Path:
    """The file ``relative`` names inside the static folder, or ``StaticNotFound``."""
    parts = PurePosixPath(relative)
    hidden = any(part.startswith(".") or part in ("", "..") for part in parts.parts)
    test_only = any(parts.is_relative_to(folder) for folder in TEST_ONLY)
    if hidden or test_only or parts.is_absolute() or parts.suffix not in CONTENT_TYPES:
        raise StaticNotFound
    path = (STATIC_DIR / parts).resolve()
    if not path.is_relative_to(STATIC_DIR) or not path.is_file():
        raise StaticNotFound
    return path


def file_response(request: Request, path: Path) -> Response:
    """The file, or 304 when the browser's copy (``If-None-Match``) is the current one."""
    etag = etag_of(path)
    headers = {"Cache-Control": CACHE_CONTROL, "ETag": etag}
    media_type = CONTENT_TYPES[path.suffix]
    if etag in _validators(request.headers.get("if-none-match", "")):
        # With its type: a browser takes the 304's headers for its copy's, and the security
        # headers give an HTML page its own Content-Security-Policy by the type.
        return Response(status_code=304, headers=headers, media_type=media_type)
    return FileResponse(path, media_type=media_type, headers=headers)


def _validators(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def page(request: Request, name: str) -> Response:
    """The page ``name``: ``static/<name>/index.html`` (for the pages' routers)."""
    return file_response(request, servable(f"{name}/index.html"))


@router.api_route(f"{STATIC_URL}/{{relative:path}}", methods=["GET", "HEAD"])
async def static_file(request: Request, relative: str) -> Response:
    """A file of the pages: a module, a style sheet, a dictionary, an image."""
    return file_response(request, servable(relative))


@router.get("/")
async def home() -> RedirectResponse:
    """The service's own address: the console, which sends a browser without a session to
    sign in first."""
    return RedirectResponse("/console", status_code=307)


@router.get("/signin")
async def signin_page(request: Request) -> Response:
    """Sign in; then back to the page named by ``next``."""
    return page(request, "signin")


@router.get("/console")
async def console_page(request: Request) -> Response:
    """The agent's console."""
    return page(request, "console")


@router.get("/status")
async def status_page(request: Request) -> Response:
    """A customer's complaint, by its reference and phone number."""
    return page(request, "status")
