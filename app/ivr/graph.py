"""How a flow's nodes fit together: references, reachability, loops, languages and keys.

Theory of operation
-------------------

``problems(flow)`` returns every problem the document's shape cannot express, each naming
the node and the field:

- **References**: every node a node names exists; ``start`` and the operator node too; the
  operator node is an ``enqueue`` node (the operator is a queue of people, not a dial-out).
- **Reachability**: every node can be reached from ``start``. The operator key, when on,
  leads from every menu to the operator node.
- **Loops**: an edge is a *choice* when the caller must do something valid to take it (a
  menu option, a collected value, the operator key) and *automatic* otherwise (``say``'s
  ``next``, a lookup's branches, business hours, and the counters' fallbacks, which are taken
  on silence or nonsense). A cycle of automatic edges could run forever with nobody
  choosing: a say → say loop spins, and a fallback back into the menu it left would reset
  the counters and nag a silent caller forever. Such a cycle is refused, naming its nodes.
  Cycles through choices (a sub-menu and back) are fine; the call's input budget
  (``limits.max_inputs``) still bounds a caller who goes round them for ever.
- **Languages**: ``language`` is one of ``languages``; every prompt has text in every
  language; phrases and an option's ``language`` use only the flow's languages.
- **Keys**: the global keys differ; menu options have distinct keys, none a global key in
  use, and each has a key or (when the menu takes speech) a phrase; distinct phrases. The
  language key needs another language to change to and its offer (``language_prompt``)
  in every language of the flow; an offer without the key is refused as a mistake.
- **Collect**: ``min_length <= max_length``; ``*`` is not both data and the finish key; the
  lengths admit what the validator accepts; named values (``into``) are unique and those an
  ``identify`` or ``complaint_status`` node reads are collected somewhere.
- **Hours**: each range opens before it closes; the zone exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.ivr.document import (
    BusinessHoursNode,
    CollectNode,
    ComplaintStatusNode,
    EnqueueNode,
    Flow,
    IdentifyNode,
    MenuNode,
    Node,
    Problem,
    SayNode,
)
from app.ivr.validators import Validator

__all__ = ["Edge", "edges", "hours_range", "problems", "prompts"]

# The keyed lengths each validator can accept: (shortest, longest or None for unbounded).
_VALIDATOR_LENGTHS: Final = {
    Validator.CN_RESIDENT_ID: (18, 18),
    Validator.COMPLAINT_REFERENCE: (14, None),
}


@dataclass(frozen=True)
class Edge:
    """A way from one node to another: the field naming it, and whether the caller chose it."""

    field: str
    target: str
    chosen: bool


def _retry_edges(node: MenuNode | CollectNode) -> Iterator[Edge]:
    yield Edge("no_input.fallback", node.no_input.fallback, chosen=False)
    yield Edge("invalid.fallback", node.invalid.fallback, chosen=False)


def edges(node: Node) -> list[Edge]:
    """Where ``node`` can lead, global keys aside."""
    match node:
        case MenuNode():
            options = [Edge(f"options[{i}].next", o.next, True) for i, o in enumerate(node.options)]
            return [*options, *_retry_edges(node)]
        case CollectNode():
            return [Edge("next", node.next, chosen=True), *_retry_edges(node)]
        case SayNode():
            return [Edge("next", node.next, chosen=False)]
        case IdentifyNode() | ComplaintStatusNode():
            return [Edge("found", node.found, False), Edge("not_found", node.not_found, False)]
        case BusinessHoursNode():
            return [Edge("open", node.open, False), Edge("closed", node.closed, False)]
        case _:
            return []


def prompts(node: Node) -> Iterator[tuple[str, dict[str, str]]]:
    """Each prompt of ``node``, by field."""
    prompt: dict[str, str] | None = getattr(node, "prompt", None)
    if prompt is not None:
        yield "prompt", prompt
    if isinstance(node, MenuNode | CollectNode):
        yield "no_input.prompt", node.no_input.prompt
        yield "invalid.prompt", node.invalid.prompt
    if isinstance(node, CollectNode) and node.confirm is not None:
        yield "confirm.prompt", node.confirm.prompt


def hours_range(hours: str) -> tuple[int, int]:
    """``"08:30-20:00"`` as minutes from midnight: (510, 1200)."""
    opens, closes = hours.split("-")
    return _minutes(opens), _minutes(closes)


def _minutes(clock: str) -> int:
    hour, minute = clock.split(":")
    return int(hour) * 60 + int(minute)


def problems(flow: Flow) -> list[Problem]:
    """Every problem of ``flow`` beyond its shape; empty when the flow is usable."""
    found = [*_flow_problems(flow)]
    for name, node in flow.nodes.items():
        found += _reference_problems(flow, name, node)
        found += _language_problems(flow, name, node)
        found += _node_problems(flow, name, node)
    if not found:
        found += _unreachable(flow)
        found += _loops(flow)
    return found


def _flow_problems(flow: Flow) -> Iterator[Problem]:
    if flow.start not in flow.nodes:
        yield Problem(None, "start", f"no node named {flow.start!r}")
    if flow.language not in flow.languages:
        yield Problem(None, "language", f"{flow.language} is not one of the flow's languages")
    try:
        ZoneInfo(flow.zone)
    except (ZoneInfoNotFoundError, ValueError):
        yield Problem(None, "zone", f"unknown time zone {flow.zone!r}")
    yield from _key_problems(flow)


def _key_problems(flow: Flow) -> Iterator[Problem]:
    keys = flow.keys
    used = [k for k in (keys.operator, keys.repeat, keys.back, keys.language) if k is not None]
    if len(set(used)) != len(used):
        yield Problem(None, "keys", "the operator, repeat, back and language keys must differ")
    yield from _language_key_problems(flow)
    if keys.operator is not None and keys.operator_node is None:
        yield Problem(None, "keys.operator_node", "the operator key needs an operator node")
    target = flow.nodes.get(keys.operator_node or "")
    if keys.operator_node is not None and target is None:
        yield Problem(None, "keys.operator_node", f"no node named {keys.operator_node!r}")
    elif keys.operator_node is not None and not isinstance(target, EnqueueNode):
        yield Problem(None, "keys.operator_node", "the operator node must be an enqueue node")


def _language_key_problems(flow: Flow) -> Iterator[Problem]:
    keys, languages = flow.keys, set(flow.languages)
    if keys.language is None:
        if keys.language_prompt:
            yield Problem(None, "keys.language_prompt", "offers a language key the flow has not")
        return
    if len(languages) < 2:
        yield Problem(None, "keys.language", "the flow has no other language to change to")
    missing = sorted(languages - keys.language_prompt.keys())
    extra = sorted(keys.language_prompt.keys() - languages)
    if missing:
        yield Problem(None, "keys.language_prompt", f"no text in {', '.join(missing)}")
    if extra:
        yield Problem(
            None, "keys.language_prompt", f"{', '.join(extra)} is not a language of the flow"
        )


def _reference_problems(flow: Flow, name: str, node: Node) -> Iterator[Problem]:
    for edge in edges(node):
        if edge.target not in flow.nodes:
            yield Problem(name, edge.field, f"no node named {edge.target!r}")
    collected = {n.into for n in flow.nodes.values() if isinstance(n, CollectNode)}
    read = _value_read(node)
    if read is not None and read[1] not in collected:
        yield Problem(name, read[0], f"no collect node collects {read[1]!r}")


def _value_read(node: Node) -> tuple[str, str] | None:
    if isinstance(node, ComplaintStatusNode):
        return "reference", node.reference
    if isinstance(node, IdentifyNode) and node.by == "collected":
        return "value", node.value or ""
    return None


def _language_problems(flow: Flow, name: str, node: Node) -> Iterator[Problem]:
    languages = set(flow.languages)
    for field, text in prompts(node):
        missing = sorted(languages - text.keys())
        extra = sorted(text.keys() - languages)
        if missing:
            yield Problem(name, field, f"no text in {', '.join(missing)}")
        if extra:
            yield Problem(name, field, f"{', '.join(extra)} is not a language of the flow")
    if isinstance(node, MenuNode):
        for i, option in enumerate(node.options):
            spoken = set(option.phrases) | ({option.language} - {None})
            for language in sorted(str(x) for x in spoken - languages):
                yield Problem(name, f"options[{i}]", f"{language} is not a language of the flow")


def _node_problems(flow: Flow, name: str, node: Node) -> Iterator[Problem]:
    match node:
        case MenuNode():
            yield from _menu_problems(flow, name, node)
        case CollectNode():
            yield from _collect_problems(flow, name, node)
        case IdentifyNode():
            if (node.by == "collected") != (node.value is not None):
                yield Problem(name, "value", "give a value exactly when identifying by one")
        case BusinessHoursNode():
            yield from _hours_problems(name, node)
        case _:
            pass


def _menu_problems(flow: Flow, name: str, node: MenuNode) -> Iterator[Problem]:
    on = flow.keys
    global_keys = {on.operator, on.repeat, on.back, on.language} - {None}
    keys: set[str] = set()
    phrases: set[str] = set()
    for i, option in enumerate(node.options):
        field = f"options[{i}]"
        if option.key in keys:
            yield Problem(name, f"{field}.key", f"key {option.key} is used twice")
        if option.key in global_keys:
            yield Problem(name, f"{field}.key", f"key {option.key} is a global key of the flow")
        if option.key is None and not (node.speech and option.phrases):
            yield Problem(name, field, "an option needs a key, or a phrase in a speech menu")
        keys.add(option.key or "")
        said = {p.casefold() for group in option.phrases.values() for p in group}
        for phrase in sorted(said & phrases):
            yield Problem(name, f"{field}.phrases", f"{phrase!r} is used by another option")
        phrases |= said


def _collect_problems(flow: Flow, name: str, node: CollectNode) -> Iterator[Problem]:
    if node.min_length > node.max_length:
        yield Problem(name, "min_length", "longer than max_length")
    if node.finish_key == "*" and node.star is not None:
        yield Problem(name, "finish_key", "* stands for a character of the value here")
    if node.validator is not None:
        shortest, longest = _VALIDATOR_LENGTHS[node.validator]
        if node.max_length < shortest or (longest is not None and node.min_length > longest):
            yield Problem(name, "max_length", f"{node.validator} values cannot fit these lengths")
    if sum(isinstance(n, CollectNode) and n.into == node.into for n in flow.nodes.values()) > 1:
        yield Problem(name, "into", f"{node.into!r} is collected by another node too")


def _hours_problems(name: str, node: BusinessHoursNode) -> Iterator[Problem]:
    named = [(f"hours.{day}", hours) for day, hours in node.hours.items()]
    named += [(f, h) for f, h in (("holiday", node.holiday), ("makeup", node.makeup)) if h]
    for field, hours in named:
        opens, closes = hours_range(hours)
        if opens >= closes:
            yield Problem(name, field, f"{hours} closes before it opens")


def _neighbours(flow: Flow, node: Node) -> list[Edge]:
    found = edges(node)
    operator = flow.keys.operator_target
    if isinstance(node, MenuNode) and operator is not None:
        found.append(Edge("keys.operator", operator, chosen=True))
    return found


def _unreachable(flow: Flow) -> list[Problem]:
    seen = {flow.start}
    todo = [flow.start]
    while todo:
        for edge in _neighbours(flow, flow.nodes[todo.pop()]):
            if edge.target not in seen:
                seen.add(edge.target)
                todo.append(edge.target)
    return [Problem(n, "", "unreachable from start") for n in flow.nodes if n not in seen]


def _loops(flow: Flow) -> list[Problem]:
    automatic = {
        name: [e for e in edges(node) if not e.chosen] for name, node in flow.nodes.items()
    }
    done: set[str] = set()
    found: list[Problem] = []
    for name in flow.nodes:
        cycle = _cycle_from(name, automatic, done)
        if cycle is not None:
            first, edge = cycle[0]
            path = " -> ".join([*(n for n, _ in cycle), first])
            found.append(Problem(first, edge, f"loops without a caller's choice: {path}"))
    return found


def _cycle_from(
    start: str, automatic: dict[str, list[Edge]], done: set[str]
) -> list[tuple[str, str]] | None:
    """A cycle of automatic edges reachable from ``start``, as (node, field) pairs, if any."""
    path: list[tuple[str, str]] = []
    on_path: dict[str, int] = {}
    stack: list[tuple[str, Iterator[Edge]]] = []
    if start not in done:
        stack.append((start, iter(automatic[start])))
        on_path[start] = 0
    while stack:
        name, pending = stack[-1]
        edge = next(pending, None)
        if edge is None:
            stack.pop()
            done.add(name)
            del on_path[name]
            continue
        path = [*path[: len(stack) - 1], (name, edge.field)]
        if edge.target in on_path:
            done.update(on_path)  # reported once, not again from each of its nodes
            return path[on_path[edge.target] :]
        if edge.target not in done:
            on_path[edge.target] = len(stack)
            stack.append((edge.target, iter(automatic[edge.target])))
    return None
