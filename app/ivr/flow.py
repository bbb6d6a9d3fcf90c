"""IVR flows: parse a document into a validated ``Flow``, and say what it refers to.

Theory of operation
-------------------

``parse_flow(document)`` takes YAML or JSON text (YAML is read as a superset of JSON) or an
already parsed mapping, and returns a ``Flow`` or raises ``FlowError`` listing every problem
found, each ``Problem`` naming the node and the field. It checks in two passes:

1. **Shape** (``app.ivr.document``, pydantic): node types by ``type``, no unknown fields,
   bounded sizes. A menu without ``no_input`` or ``invalid`` handling is refused here as a
   missing field of that node.
2. **Graph** (``app.ivr.graph``): references, reachability from ``start``, no loop without a
   caller's choice, prompts in every language, unambiguous keys. It runs only on a document
   of the right shape, so its problems never hide behind a shape error and vice versa.

What the pure module cannot check, whether the queues and skills a flow names exist, it
reports through ``references(flow)``; ``check_references`` turns the missing ones into a
``FlowError`` naming their nodes, for the service that knows the catalogue.

Decisions, and why
------------------

- **Every problem at once**, not the first: an author fixes a document in one round.
- **YAML aliases are refused.** An alias lets a small document expand into an enormous one
  when parsed and validated; flows do not need them. Documents are also bounded in length.
- **The field path drops the node type**: pydantic reports ``nodes.main.menu.no_input``;
  the author wrote ``nodes.main.no_input``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import ValidationError

from app.ivr import graph
from app.ivr.document import (
    BusinessHoursNode,
    CallbackNode,
    CollectNode,
    ComplaintStatusNode,
    Confirm,
    EnqueueNode,
    Flow,
    FlowError,
    GlobalKeys,
    HangupNode,
    IdentifyNode,
    Limits,
    MenuNode,
    Node,
    Option,
    Problem,
    Reference,
    Retry,
    SayNode,
    Skill,
    TransferNode,
    Validator,
)

__all__ = [
    "DEMO_FLOWS",
    "MAX_DOCUMENT_CHARS",
    "BusinessHoursNode",
    "CallbackNode",
    "CollectNode",
    "ComplaintStatusNode",
    "Confirm",
    "EnqueueNode",
    "Flow",
    "FlowError",
    "GlobalKeys",
    "HangupNode",
    "IdentifyNode",
    "Limits",
    "MenuNode",
    "Node",
    "Option",
    "Problem",
    "Reference",
    "Retry",
    "SayNode",
    "Skill",
    "TransferNode",
    "Validator",
    "check_references",
    "parse_flow",
    "references",
]

MAX_DOCUMENT_CHARS: Final = 200_000
# The demo centre's hotlines, one YAML document each (read by the demo seed, not here).
DEMO_FLOWS: Final = Path(__file__).parent / "flows"
_NODE_TYPES: Final = frozenset(
    {"menu", "collect", "identify", "say", "business_hours", "enqueue", "callback"}
    | {"complaint_status", "transfer", "hangup"}
)


# A flow's deepest field is a handful of levels down (nodes, a node, its options, an option's
# phrases); deeper nesting is refused before the composer's recursion could exhaust the stack.
MAX_DEPTH: Final = 20


class _NoAliases(yaml.SafeLoader):
    """The safe loader, refusing anchors' aliases and nesting past ``MAX_DEPTH``."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("aliases (*name) are not allowed")
        if self._depth >= MAX_DEPTH:
            raise yaml.YAMLError(f"nested deeper than {MAX_DEPTH} levels")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _load(text: str | bytes) -> Any:
    if len(text) > MAX_DOCUMENT_CHARS:
        raise FlowError([Problem(None, "document", f"longer than {MAX_DOCUMENT_CHARS} characters")])
    try:
        return yaml.load(text, Loader=_NoAliases)
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise FlowError([Problem(None, "document", f"not YAML or JSON: {exc}")]) from exc


def _path(parts: Sequence[str | int]) -> str:
    """``("options", 0, "next")`` as ``options[0].next``."""
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path.lstrip(".")


def _problem(error: Mapping[str, Any]) -> Problem:
    loc: list[str | int] = list(error["loc"])
    message = str(error["msg"])
    if len(loc) >= 2 and loc[0] == "nodes":
        rest = loc[3:] if len(loc) > 2 and loc[2] in _NODE_TYPES else loc[2:]
        field = "name" if rest == ["[key]"] else _path(rest) or "type"
        return Problem(str(loc[1]), field, message)
    return Problem(None, _path(loc) or "document", message)


def parse_flow(document: str | bytes | Mapping[str, Any]) -> Flow:
    """The flow ``document`` describes (YAML or JSON text, or parsed), or ``FlowError``."""
    data = _load(document) if isinstance(document, str | bytes) else document
    if not isinstance(data, Mapping):
        raise FlowError([Problem(None, "document", "a flow is a mapping of fields")])
    try:
        flow = Flow.model_validate(data)
    except ValidationError as exc:
        raise FlowError([_problem(e) for e in exc.errors()]) from exc
    found = graph.problems(flow)
    if found:
        raise FlowError(found)
    return flow


def references(flow: Flow) -> list[Reference]:
    """Every queue and skill the flow names, with the node and field that name it."""
    found: list[Reference] = []
    for name, node in flow.nodes.items():
        if isinstance(node, EnqueueNode | CallbackNode):
            found.append(Reference("queue", node.queue, name, "queue"))
            found += [
                Reference("skill", need.skill, name, f"skills[{i}].skill")
                for i, need in enumerate(node.skills)
            ]
    return found


def check_references(flow: Flow, *, queues: set[str], skills: set[str]) -> None:
    """``FlowError`` naming each node that refers to a queue or skill not in the catalogue."""
    known = {"queue": queues, "skill": skills}
    missing = [
        Problem(ref.node, ref.field, f"no {ref.kind} named {ref.name!r}")
        for ref in references(flow)
        if ref.name not in known[ref.kind]
    ]
    if missing:
        raise FlowError(missing)
