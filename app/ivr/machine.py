"""The IVR's call machine: ``step(flow, state, event, now) -> Step``, pure.

Theory of operation
-------------------

The shell drives a call like this::

    state = new_call(flow)                              # the flow the number has active
    done = step(flow, state, CallStarted(caller, called), now)
    # perform done.actions; store done.state.to_json() and done.transcript
    ...                                                 # next webhook: load the state and
    done = step(flow, state, Digits("1"), now)          # the flow version it names

A ``Lookup`` among the actions is the shell's to answer, in the same webhook: it calls
``step`` again with the result (``Identified``/``NotIdentified``,
``ComplaintFound``/``ComplaintNotFound``) and performs the actions of both steps in order.
Once ``state.phase`` is ``finished``, ``state.outcome`` says how the call left the IVR and
``state.node`` where; every later event is ignored (no actions, no records), so a late or
repeated webhook cannot restart the call.

``_TABLE`` is every move: ``(phase, event type) -> handler``. A pair that is not there is a
table miss and raises ``UnexpectedEvent`` (a digit while a lookup is out, a second
``CallStarted``): the shell's mistake, never the caller's, since every caller event is
listed for every phase that waits for the caller. A caller's hang-up is taken in every
phase.

Caller inputs (keys, speech, silence, a gather timer) are counted against the flow's
``limits.max_inputs``. Past it the call goes to the operator node, or, in a flow without
one, ends with a goodbye: with the counters (bounded re-prompts) and the validation (no loop
without a caller's choice) this makes every call end, whatever the caller does.

Decisions, and why
------------------

- **The flow and the calendar are arguments**, not lookups: the machine reads nothing.
- **An empty ``Digits`` is silence**: a provider that reports an empty gather as keys
  (Twilio's ``actionOnEmptyResult``) means the caller did nothing.
- **Any timer while a gather is out is silence**, for providers that do not time gathers
  themselves; the shell arms it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, NamedTuple, TypeVar

from app.complaints.calendar import WorkCalendar
from app.ivr import answers, nodes, prompts
from app.ivr.flow import ComplaintStatusNode, Flow, IdentifyNode
from app.ivr.nodes import FlowLoop, Run
from app.ivr.vocabulary import (
    Action,
    Callback,
    CallStarted,
    CallState,
    ComplaintFound,
    ComplaintNotFound,
    Dial,
    Digits,
    EndCall,
    Enqueue,
    Event,
    Gather,
    Hangup,
    Identified,
    Lookup,
    LookupKind,
    NoInput,
    NotIdentified,
    Outcome,
    Phase,
    Play,
    Say,
    SkillNeed,
    Speech,
    StateError,
    Timer,
    TranscriptEntry,
    UnexpectedEvent,
)

__all__ = [
    "Action",
    "CallStarted",
    "CallState",
    "Callback",
    "ComplaintFound",
    "ComplaintNotFound",
    "Dial",
    "Digits",
    "EndCall",
    "Enqueue",
    "Event",
    "FlowLoop",
    "Gather",
    "Hangup",
    "Identified",
    "Lookup",
    "LookupKind",
    "NoInput",
    "NotIdentified",
    "Outcome",
    "Phase",
    "Play",
    "Say",
    "SkillNeed",
    "Speech",
    "StateError",
    "Step",
    "Timer",
    "TranscriptEntry",
    "UnexpectedEvent",
    "new_call",
    "step",
]


_N = TypeVar("_N", IdentifyNode, ComplaintStatusNode)


class Step(NamedTuple):
    """What one event did: the next state, the provider's actions, the transcript records."""

    state: CallState
    actions: tuple[Action, ...]
    transcript: tuple[TranscriptEntry, ...]


def new_call(flow: Flow) -> CallState:
    """The state of a call not yet started on ``flow`` (feed it ``CallStarted``)."""
    return CallState(flow=flow.name, flow_version=flow.version, language=flow.language)


def step(
    flow: Flow,
    state: CallState,
    event: Event,
    now: datetime,
    calendar: WorkCalendar | None = None,
) -> Step:
    """Feed ``event`` to the call: the next state, the actions, the transcript records.

    ``flow`` must be the version the state names (``state.flow``/``state.flow_version``),
    else ``StateError``. ``calendar`` gives business-hours nodes their holidays and make-up
    working days; without it every day keeps its weekday's hours.
    """
    if (state.flow, state.flow_version) != (flow.name, flow.version):
        raise StateError(f"the call runs {state.flow} v{state.flow_version}, not this flow")
    if state.phase is Phase.FINISHED:
        return Step(state, (), ())
    handler = _TABLE.get((state.phase, type(event)))
    if handler is None:
        raise UnexpectedEvent(state.phase, event)
    run = Run(flow, state, now, calendar)
    if isinstance(event, _CALLER_INPUTS) and not _within_budget(run, event):
        return _done(run)
    handler(run, event)
    return _done(run)


def _done(run: Run) -> Step:
    return Step(run.state, tuple(run.actions), tuple(run.transcript))


def _within_budget(run: Run, event: Event) -> bool:
    inputs = run.state.inputs + 1
    run.update(inputs=inputs)
    if inputs <= run.flow.limits.max_inputs:
        return True
    run.record(_described(event), None, "exhausted")
    operator = run.flow.keys.operator_node
    if operator is not None:
        nodes.enter(run, operator)
        return False
    goodbye = prompts.GOODBYE.get(run.state.language)
    if goodbye is not None:
        run.actions.append(Say(goodbye, run.state.language))
    run.actions.append(EndCall())
    run.finish(Outcome.ENDED)
    return False


def _described(event: Event) -> str:
    return _INPUT_NAMES.get(type(event), "no_input")


def _started(run: Run, event: CallStarted) -> None:
    run.update(caller=event.caller, called=event.called)
    nodes.enter(run, run.flow.start)


def _keys(run: Run, event: Digits) -> None:
    if not event.digits:
        _silence(run, event)
    elif run.state.phase is Phase.CONFIRM:
        answers.answer_confirm(run, event.digits)
    else:
        answers.answer_keys(run, event.digits)


def _speech(run: Run, event: Speech) -> None:
    answers.answer_speech(run, event.text, event.confidence)


def _silence(run: Run, event: Event) -> None:
    node = nodes.waiting(run)
    nodes.retry(run, node, "no_input", "no_input")


def _hung_up(run: Run, event: Hangup) -> None:
    run.update(node=run.name)  # before the start, the start is where the caller left
    run.finish(Outcome.HUNG_UP, inp="hangup")


def _identified(run: Run, event: Identified | NotIdentified) -> None:
    _expect(run, event, LookupKind.CUSTOMER_BY_NUMBER, LookupKind.CUSTOMER_BY_ID)
    node = _at(run, IdentifyNode)
    run.update(phase=Phase.INPUT, lookup=None)
    if isinstance(event, NotIdentified):
        run.record("not_identified", None, "not_found")
        nodes.enter(run, node.not_found)
        return
    run.update(customer_id=event.customer_id, tier=event.tier)
    language = prompts.flow_language(run.flow.languages, event.language)
    if language is not None and not run.state.language_chosen:
        run.update(language=language)
    run.record(f"identified:{event.tier}", None, "found")
    nodes.enter(run, node.found)


def _complaint(run: Run, event: ComplaintFound | ComplaintNotFound) -> None:
    _expect(run, event, LookupKind.COMPLAINT_STATUS)
    node = _at(run, ComplaintStatusNode)
    run.update(phase=Phase.INPUT, lookup=None)
    if isinstance(event, ComplaintNotFound):
        run.record("complaint_not_found", None, "not_found")
        nodes.enter(run, node.not_found)
        return
    language = run.state.language
    run.update(served=True)
    run.say(
        node.prompt,
        {
            "reference": " ".join(event.reference),
            "status": prompts.status_words(event.status, language),
            "due": prompts.due_words(event.due_at, language, run.flow.zone),
        },
    )
    run.record(f"complaint:{event.status}", "prompt", "found")
    nodes.enter(run, node.found)


def _at(run: Run, kind: type[_N]) -> _N:
    node = run.flow.nodes.get(run.name)
    if not isinstance(node, kind):
        raise StateError(f"the call waits for a lookup at {run.name!r}, which makes none")
    return node


def _expect(run: Run, event: Event, *kinds: LookupKind) -> None:
    if run.state.lookup not in kinds:
        raise UnexpectedEvent(run.state.phase, event)


_CALLER_INPUTS: Final = (Digits, Speech, NoInput, Timer)
_INPUT_NAMES: Final[dict[type[Any], str]] = {Digits: "digits", Speech: "speech"}

_TABLE: Final[dict[tuple[Phase, type[Any]], Callable[[Run, Any], None]]] = {
    (Phase.NEW, CallStarted): _started,
    (Phase.NEW, Hangup): _hung_up,
    (Phase.INPUT, Digits): _keys,
    (Phase.INPUT, Speech): _speech,
    (Phase.INPUT, NoInput): _silence,
    (Phase.INPUT, Timer): _silence,
    (Phase.INPUT, Hangup): _hung_up,
    (Phase.CONFIRM, Digits): _keys,
    (Phase.CONFIRM, Speech): _speech,
    (Phase.CONFIRM, NoInput): _silence,
    (Phase.CONFIRM, Timer): _silence,
    (Phase.CONFIRM, Hangup): _hung_up,
    (Phase.LOOKUP, Identified): _identified,
    (Phase.LOOKUP, NotIdentified): _identified,
    (Phase.LOOKUP, ComplaintFound): _complaint,
    (Phase.LOOKUP, ComplaintNotFound): _complaint,
    (Phase.LOOKUP, Hangup): _hung_up,
}
