"""The generic JSON adapter's answer: a step's actions as ``{"actions": [...]}`` (API.md).

Theory of operation
-------------------

Each action is one object keyed by its verb, as API.md shows them: ``{"say": text,
"language"}``, ``{"play": url}``, ``{"gather": {"num_digits", "timeout_s", "finish_on_key",
"speech", "language", "hints"}}``, ``{"enqueue": {"queue", "contact_id", "position",
"estimated_wait_s"}}``, ``{"callback": {"queue", "contact_id"}}``, ``{"dial": {"number"}}``,
``{"hangup": {}}``. The body also says which step comes next (``step``: send it back with the
event that answers this one, so a retried delivery is recognised) and where the call is
(``status``). A provider of this protocol holds a queued caller itself and asks where they
stand with ``wait`` events (``app.ivr.telephony_router``), answered with their place, or
with ``{"dial": {"agent", "endpoint"}}`` once an agent has answered (``put_through``); the
call that calls a caller back carries the same actions (``app.ivr.callbacks``).
"""

from __future__ import annotations

import json
from typing import Any, Final

from app.ivr.advance import Taken
from app.ivr.twiml import phrase
from app.ivr.vocabulary import Action, Callback, Dial, EndCall, Enqueue, Gather, Play, Say

CONTENT_TYPE: Final = "application/json"


def put_through(language: str, agent_id: int | None, endpoint: str) -> list[dict[str, Any]]:
    """The actions that connect a caller to the agent who answered: a word, then the dial."""
    return [
        {"say": phrase(language, "offered"), "language": language},
        {"dial": {"agent": agent_id, "endpoint": endpoint}},
    ]


def action_json(action: Action, taken: Taken) -> dict[str, Any] | None:
    """One action as the JSON adapter sends it (None: nothing the provider does)."""
    if isinstance(action, Say):
        return {"say": action.text, "language": action.language}
    if isinstance(action, Play):
        return {"play": action.url}
    if isinstance(action, Gather):
        return {"gather": _gather(action)}
    if isinstance(action, Enqueue | Callback):
        return _queued(action, taken)
    if isinstance(action, Dial):
        return {"dial": {"number": action.number}}
    if isinstance(action, EndCall):
        return {"hangup": {}}
    return None


def _gather(action: Gather) -> dict[str, Any]:
    return {
        "num_digits": action.num_digits,
        "timeout_s": action.timeout_s,
        "finish_on_key": action.finish_on_key,
        "speech": action.speech,
        "language": action.language,
        "hints": list(action.hints),
    }


def _queued(action: Enqueue | Callback, taken: Taken) -> dict[str, Any]:
    queued = taken.queued
    body: dict[str, Any] = {
        "queue": action.queue,
        "contact_id": None if queued is None else queued.contact_id,
    }
    if isinstance(action, Callback):
        return {"callback": body}
    body["position"] = None if queued is None else queued.position
    body["estimated_wait_s"] = None if queued is None else queued.estimated_wait_s
    return {"enqueue": body}


def step_body(taken: Taken) -> dict[str, Any]:
    """The whole answer to one step."""
    actions = [a for a in (action_json(action, taken) for action in taken.actions) if a]
    if taken.refused is not None:
        busy = {"say": phrase(taken.language, "busy"), "language": taken.language}
        actions.insert(len(actions) - 1, busy)  # before the hangup
    return {
        "call_id": taken.call.call_ref,
        "step": taken.seq + 1,
        "status": taken.call.status,
        "actions": actions,
    }


def render(taken: Taken) -> tuple[str, str]:
    """The stored and sent form of a step's answer."""
    return json.dumps(step_body(taken), ensure_ascii=False), CONTENT_TYPE
