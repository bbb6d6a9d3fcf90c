"""What each node type does when the call enters it; the counters every answer shares.

Theory of operation
-------------------

A ``Run`` is one ``step`` in the making: the state so far and the actions and transcript
records produced. ``enter(run, name)`` moves the call to a node and runs it; nodes that need
nobody (``say``, ``business_hours``) name the next node at once, and ``enter`` follows them
until a node waits (a menu or collect asks and gathers; an ``identify`` or
``complaint_status`` sends a ``Lookup``) or ends the call (``enqueue``, ``callback``,
``transfer``, ``hangup``). Validation has refused every loop of such automatic moves, and
``enter`` still stops after as many moves as the flow has nodes, so a flow built without
``parse_flow`` cannot spin either.

Entering a node resets its two counters. The answers themselves are ``app.ivr.answers``'s;
what they share is here: ``waiting`` (the menu or collect node the call is at), ``ask`` (its
prompt and gather again) and ``retry``: **silence** and **invalid answers** each count on
their own counter; below the maximum the caller hears that counter's re-prompt and then the
node's prompt again; at the maximum the call goes to that counter's fallback node.

Decisions, and why
------------------

- **A callback needs a number.** A withheld caller number cannot be called back, so the
  callback node then tells the caller so and enqueues the call in the same queue instead of
  promising a call that cannot happen. The shell gives the machine a caller only when it is
  a number that can be called (``anonymous`` and the provider's placeholder numbers for a
  withheld caller are none).
- **A lookup whose value was never collected** (a path that skipped the collect node) is a
  miss, taken at once, not a request the shell cannot answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from app.complaints.calendar import WorkCalendar
from app.ivr import prompts
from app.ivr.document import (
    BusinessHoursNode,
    CallbackNode,
    CollectNode,
    ComplaintStatusNode,
    EnqueueNode,
    Flow,
    HangupNode,
    IdentifyNode,
    MenuNode,
    Retry,
    SayNode,
    Skill,
    TransferNode,
)
from app.ivr.graph import hours_range
from app.ivr.vocabulary import (
    Action,
    Callback,
    CallState,
    Dial,
    EndCall,
    Enqueue,
    Gather,
    Lookup,
    LookupKind,
    Outcome,
    Phase,
    Say,
    SkillNeed,
    StateError,
    TranscriptEntry,
)

__all__ = ["FlowLoop", "Run", "ask", "enter", "retry", "waiting"]

_WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class FlowLoop(RuntimeError):
    """A flow that moves from node to node without end (one not checked by ``parse_flow``)."""


class Run:
    """One step in the making."""

    def __init__(
        self, flow: Flow, state: CallState, now: datetime, calendar: WorkCalendar | None
    ) -> None:
        self.flow = flow
        self.state = state
        self.now = now
        self.calendar = calendar
        self.actions: list[Action] = []
        self.transcript: list[TranscriptEntry] = []

    @property
    def name(self) -> str:
        """The current node's name."""
        return self.state.node or self.flow.start

    def update(self, **changes: Any) -> None:
        """Change the state."""
        self.state = replace(self.state, **changes)

    def say(self, prompt: dict[str, str] | None, fill: dict[str, str] | None = None) -> None:
        """Say ``prompt`` in the caller's language, if there is one."""
        if prompt is not None:
            words = prompts.text(prompt, self.state.language, self.flow.language, fill)
            self.actions.append(Say(words, self.state.language))

    def offer_languages(self) -> None:
        """After a menu's prompt, the flow's language key offered in each of its other
        languages, each in its own voice (nothing without the key)."""
        if self.flow.keys.language is None:
            return
        offer = self.flow.keys.language_prompt
        for language in self.flow.languages:
            if language != self.state.language:
                self.actions.append(Say(prompts.text(offer, language, language), language))

    def say_each(self, prompt: dict[str, str]) -> None:
        """Say ``prompt`` in each language of the flow (every prompt has a text in each), in
        the flow's order: a language menu offers each choice in its own language."""
        for language in self.flow.languages:
            self.actions.append(Say(prompts.text(prompt, language, language), language))

    def record(
        self, inp: str | None, prompt: str | None, result: str, outcome: Outcome | None = None
    ) -> None:
        """Add a transcript record for the current node."""
        self.transcript.append(TranscriptEntry(self.name, inp, prompt, result, outcome))

    def finish(self, outcome: Outcome, prompt: str | None = None, inp: str | None = None) -> None:
        """The call leaves the IVR."""
        if outcome is Outcome.HUNG_UP and self.state.served:
            outcome = Outcome.SERVED
        self.update(phase=Phase.FINISHED, outcome=outcome, lookup=None, pending=None)
        self.record(inp, prompt, outcome.value, outcome)


# --- entering nodes -----------------------------------------------------------------------


def enter(run: Run, name: str) -> None:
    """Move the call to node ``name`` and run nodes until one waits or the call ends."""
    target: str | None = name
    moves = 0
    while target is not None:
        if moves == len(run.flow.nodes):
            raise FlowLoop(f"flow {run.flow.name} moves without end at node {target!r}")
        moves += 1
        run.update(node=target, no_input=0, invalid=0, pending=None, phase=Phase.INPUT)
        node = run.flow.nodes[target]
        target = _ENTER[type(node)](run, node)


def _hints(run: Run, node: MenuNode, heard: Sequence[str]) -> tuple[str, ...]:
    """What the provider's recogniser is told to expect: the options' phrases in the
    languages heard, then what a caller may ask for in words in any menu (a person, where
    the operator key is on; the flow's other languages by name, where it has a language
    key), each once."""
    keys, flow = run.flow.keys, run.flow
    found = [p for o in node.options for lang in heard for p in o.phrases.get(lang, [])]
    if keys.operator_target is not None:
        found += prompts.OPERATOR_PHRASES
    if keys.language is not None:
        others = [lang for lang in flow.languages if lang != run.state.language]
        found += [name for lang in others for name in prompts.language_names(lang)]
    return tuple(dict.fromkeys(found))


def ask(run: Run, node: MenuNode | CollectNode) -> None:
    """Say the node's prompt (or its confirm prompt) and gather the answer."""
    language = run.state.language
    if isinstance(node, MenuNode):
        heard = run.flow.languages if node.each_language else [language]
        if node.each_language:
            run.say_each(node.prompt)
        else:
            run.say(node.prompt)
            run.offer_languages()
        hints = _hints(run, node, heard) if node.speech else ()
        gather = Gather(1, "", node.timeout_s, node.speech, language, hints)
    elif run.state.phase is Phase.CONFIRM and node.confirm is not None:
        run.say(node.confirm.prompt, {"tail": prompts.spaced_tail(run.state.pending or "")})
        gather = Gather(1, "", node.timeout_s, False, language)
    else:
        run.say(node.prompt)
        gather = Gather(node.max_length, node.finish_key or "", node.timeout_s, False, language)
    run.actions.append(gather)


def _asking(run: Run, node: MenuNode | CollectNode) -> None:
    ask(run, node)
    run.record(None, "prompt", "asked")


def _say(run: Run, node: SayNode) -> str:
    run.say(node.prompt)
    run.record(None, "prompt", "said")
    return node.next


def _business_hours(run: Run, node: BusinessHoursNode) -> str:
    if run.now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    local = run.now.astimezone(ZoneInfo(run.flow.zone))
    day, calendar = local.date(), run.calendar
    if calendar is not None and day in calendar.holidays:
        hours = node.holiday
    elif calendar is not None and day in calendar.workdays:
        hours = node.makeup or node.hours.get("mon")
    else:
        hours = node.hours.get(_WEEKDAYS[day.weekday()])
    minute = local.hour * 60 + local.minute
    is_open = hours is not None and hours_range(hours)[0] <= minute < hours_range(hours)[1]
    run.record(None, None, "open" if is_open else "closed")
    return node.open if is_open else node.closed


def _lookup(run: Run, kind: LookupKind, value: str | None, missing: str) -> str | None:
    if not value:
        run.record(None, None, "not_found")
        return missing
    run.update(phase=Phase.LOOKUP, lookup=kind)
    run.actions.append(Lookup(kind, value))
    run.record(None, None, "lookup")
    return None


def _identify(run: Run, node: IdentifyNode) -> str | None:
    if node.by == "caller":
        return _lookup(run, LookupKind.CUSTOMER_BY_NUMBER, run.state.caller, node.not_found)
    value = run.state.collected.get(node.value or "")
    return _lookup(run, LookupKind.CUSTOMER_BY_ID, value, node.not_found)


def _complaint_status(run: Run, node: ComplaintStatusNode) -> str | None:
    value = run.state.collected.get(node.reference)
    return _lookup(run, LookupKind.COMPLAINT_STATUS, value, node.not_found)


def _needs(skills: list[Skill]) -> tuple[SkillNeed, ...]:
    return tuple(SkillNeed(s.skill, s.min_level) for s in skills)


def _enqueue(run: Run, node: EnqueueNode) -> None:
    state = run.state
    run.say(node.prompt)
    run.actions.append(
        Enqueue(
            queue=node.queue,
            skills=_needs(node.skills),
            tier=state.tier,
            customer_id=state.customer_id,
            language=state.language,
            collected=dict(state.collected),
        )
    )
    run.finish(Outcome.ENQUEUED, None if node.prompt is None else "prompt")


def _callback(run: Run, node: CallbackNode) -> None:
    state = run.state
    if not state.caller:
        told = prompts.NO_CALLBACK.get(state.language)
        if told is not None:
            run.actions.append(Say(told, state.language))
        _enqueue(run, EnqueueNode(type="enqueue", queue=node.queue, skills=node.skills))
        return
    run.say(node.prompt)
    needs = _needs(node.skills)
    run.actions.append(
        Callback(node.queue, needs, state.caller, state.tier, state.customer_id, state.language)
    )
    run.actions.append(EndCall())
    run.finish(Outcome.CALLBACK, "prompt")


def _transfer(run: Run, node: TransferNode) -> None:
    run.say(node.prompt)
    run.actions.append(Dial(node.number))
    run.finish(Outcome.TRANSFERRED, None if node.prompt is None else "prompt")


def _hangup(run: Run, node: HangupNode) -> None:
    run.say(node.prompt)
    run.actions.append(EndCall())
    outcome = Outcome.SERVED if run.state.served else Outcome.ENDED
    run.finish(outcome, None if node.prompt is None else "prompt")


_ENTER: Final[dict[type[Any], Callable[[Run, Any], str | None]]] = {
    MenuNode: _asking,
    CollectNode: _asking,
    SayNode: _say,
    BusinessHoursNode: _business_hours,
    IdentifyNode: _identify,
    ComplaintStatusNode: _complaint_status,
    EnqueueNode: _enqueue,
    CallbackNode: _callback,
    TransferNode: _transfer,
    HangupNode: _hangup,
}


# --- shared by the answers ----------------------------------------------------------------


def retry(run: Run, node: MenuNode | CollectNode, counter: str, inp: str) -> None:
    """Count a silence (``no_input``) or an invalid answer (``invalid``): re-ask or fall back."""
    rule: Retry = getattr(node, counter)
    count = getattr(run.state, counter) + 1
    if count >= rule.max:
        run.record(inp, None, "fallback")
        enter(run, rule.fallback)
        return
    run.update(**{counter: count})
    if isinstance(node, MenuNode) and node.each_language:
        run.say_each(rule.prompt)  # the caller may understand none of the others yet
    else:
        run.say(rule.prompt)
    ask(run, node)
    run.record(inp, f"{counter}.prompt", counter)


def waiting(run: Run) -> MenuNode | CollectNode:
    """The menu or collect node the call waits at; ``StateError`` if it waits elsewhere."""
    node = run.flow.nodes.get(run.name)
    if not isinstance(node, MenuNode | CollectNode):
        raise StateError(f"the call waits at {run.name!r}, which takes no answers")
    return node
