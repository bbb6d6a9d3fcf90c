"""The supervisors' and the desk's pages: ``/wallboard``, ``/desk``, ``/ivr``, ``/reports``,
and the rules those pages show by, ``/pages/rules.json``.

Theory of operation
-------------------

Each page is a static HTML file with its modules under ``app/web/static/<page>/``, served by
``app.web.router.page`` exactly like the console: no session is needed to load a page, its
script sends a browser without one to the sign-in page, and every figure, complaint and flow
it shows comes from the public API and ``/ws/wallboard``, which decide what the signed-in
user may see.

A page also hides what the user could not do anyway (a transition an agent may not make, the
IVR upload for an agent), so nobody is offered a button that can only answer 403. It decides
that from ``/pages/rules.json``: the access table (``app.agents.access.POLICY``) and the
complaint lifecycle (``app.complaints.lifecycle``: which move is allowed in which status, and
the facts each needs), written from the Python tables themselves. The API still decides every
request; the rules only shape what is offered.

Decisions, and why
------------------

- **The rules are computed, not copied into the scripts.** A second copy of the lifecycle
  table in JavaScript would drift from the one the service enforces; this one cannot. The
  document is built once per process (the tables are constants) and validated like a static
  file (``ETag``, ``Cache-Control: no-cache``).
- **The rules are public**, like the pages: they are the access table of ``docs/access.md``
  and the lifecycle of the desk's documentation, and name no record.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.agents.access import POLICY
from app.complaints import lifecycle
from app.complaints.classifier import CATEGORIES
from app.complaints.clocks import ClockKind
from app.complaints.models import Channel, Relation
from app.complaints.schemas import Severity
from app.web.router import CACHE_CONTROL, page

RULES_URL: Final = "/pages/rules.json"

router = APIRouter(include_in_schema=False)


@router.get("/wallboard")
async def wallboard_page(request: Request) -> Response:
    """The wallboard: queues, agents and complaint deadlines, live (supervisors, admins)."""
    return page(request, "wallboard")


@router.get("/desk")
async def desk_page(request: Request) -> Response:
    """The complaint desk: the list, a case, and the registration form."""
    return page(request, "desk")


@router.get("/ivr")
async def ivr_page(request: Request) -> Response:
    """The IVR flows as diagrams; upload and activate a version."""
    return page(request, "ivr")


@router.get("/reports")
async def reports_page(request: Request) -> Response:
    """Queue and agent reports over a range, shown or downloaded as JSON or CSV."""
    return page(request, "reports")


def complaint_rules() -> dict[str, Any]:
    """The lifecycle as the desk's page reads it."""
    events = list(lifecycle.ComplaintEvent)
    return {
        "statuses": [s.value for s in lifecycle.ComplaintStatus],
        # Neither finished nor archived: the cases the console lists.
        "open": [s.value for s in lifecycle.ComplaintStatus if s in lifecycle.OPEN],
        "moves": [
            {"from": status.value, "verb": event.value, "to": after.value}
            for (status, event), after in lifecycle.moves().items()
        ],
        "needs": {e.value: sorted(lifecycle.needs(e)) for e in events},
        "optional": {e.value: sorted(lifecycle.optional(e)) for e in events},
        "pause_reasons": [r.value for r in lifecycle.PauseReason],
        "escalation_targets": [
            level.value
            for level in lifecycle.EscalationLevel
            if level in lifecycle.ESCALATION_TARGETS
        ],
        "review_outcomes": [o.value for o in lifecycle.ReviewOutcome],
        "clock_kinds": [k.value for k in ClockKind],
        # Where the resolution clock still counts, so that a passed deadline is overdue (the
        # list's ``overdue``): open, and not stopped by resolve (nor since by confirm, close
        # or review), withdraw or reject; a reopen starts it again.
        "deadline_counts": sorted(s.value for s in lifecycle.OPEN - lifecycle.DEADLINE_STOPPED),
        "severities": [s.value for s in Severity],
        # The categories the desk offers (the classifier's); a desk may add its own.
        "categories": list(CATEGORIES),
        "channels": [c.value for c in Channel],
        "relations": [r.value for r in Relation],
    }


def access_rules() -> dict[str, dict[str, dict[str, str]]]:
    """The access table by role, resource and action; a triple it lacks is ``deny``."""
    table: dict[str, dict[str, dict[str, str]]] = {}
    for (role, resource, action), rule in POLICY.items():
        table.setdefault(role, {}).setdefault(resource.value, {})[action.value] = rule.value
    return table


@cache
def rules_document() -> tuple[bytes, str]:
    """The rules as JSON, and their strong validator."""
    body = json.dumps(
        {"complaints": complaint_rules(), "access": access_rules()},
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    return body, f'"{hashlib.sha256(body).hexdigest()[:32]}"'


@router.api_route(RULES_URL, methods=["GET", "HEAD"])
async def page_rules(request: Request) -> Response:
    """The access table and the complaint lifecycle, for the pages to offer only what the
    signed-in user may do."""
    body, etag = rules_document()
    headers = {"Cache-Control": CACHE_CONTROL, "ETag": etag}
    sent = request.headers.get("if-none-match", "")
    if etag in {tag.strip().removeprefix("W/") for tag in sent.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
