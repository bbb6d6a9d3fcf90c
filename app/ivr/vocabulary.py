"""The call machine's vocabulary: the call's state, the events it takes, the actions it returns.

Theory of operation
-------------------

A call in the IVR is a ``CallState`` value. The shell keeps it in PostgreSQL between
webhooks (``to_json``/``from_json``); the machine (``app.ivr.machine.step``) takes a state
and one ``Event`` and returns the next state, the ``Action``s the provider must perform, and
the transcript records of what happened, doing no I/O and reading no clock.

Events are what the caller or the shell reports: ``CallStarted``, ``Digits``, ``Speech``,
``NoInput``, ``Hangup``, ``Timer``, and the answers to the machine's own ``Lookup`` requests
(``Identified``/``NotIdentified``, ``ComplaintFound``/``ComplaintNotFound``). Actions are what
the provider does: ``Say``, ``Play``, ``Gather``, ``Enqueue``, ``Callback``, ``Dial``,
``EndCall``, plus ``Lookup``, which the shell answers itself, in the same webhook, by calling
``step`` again with the result event.

The state's ``phase`` says what the machine waits for: ``new`` (nothing has happened yet),
``input`` (a gather is out: digits, speech, no input or a timer), ``confirm`` (a collected
value waits for its confirm key), ``lookup`` (a ``Lookup`` is out; only its answer or a hangup
is taken) and ``finished`` (the call has left the IVR with an ``Outcome``; every event is
then ignored, so a late or duplicated webhook cannot restart it).

Decisions, and why
------------------

- **The state names its flow version.** The shell loads the flow the call started on, so
  activating a new version never changes a call in progress.
- **Versioned JSON.** ``to_json`` writes ``{"v": 1, ...}`` with plain JSON values; a state
  written by a newer schema, or damaged, is refused by ``from_json`` with ``StateError``
  rather than read wrongly.
- **The transcript is returned, not kept.** Each ``step`` returns its records (node, input,
  prompt, outcome); the shell appends them to the call's stored path. The state stays small
  however long the call lasts.
- **Values are frozen dataclasses**, compared by value, so tests state whole expected
  results in tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, TypeVar

__all__ = [
    "STATE_VERSION",
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
    "Timer",
    "TranscriptEntry",
    "UnexpectedEvent",
]

STATE_VERSION: Final = 1

_T = TypeVar("_T")


class StateError(ValueError):
    """A stored call state that cannot be read: unknown version or damaged."""


class UnexpectedEvent(ValueError):
    """An event the call cannot take in its phase (a table miss): the shell's mistake, or a
    lookup answered with the wrong kind of result."""

    def __init__(self, phase: Phase, event: object) -> None:
        self.phase = phase
        self.event = event
        super().__init__(f"{type(event).__name__} cannot be taken in phase {phase.value}")


class Outcome(StrEnum):
    """How a call left the IVR."""

    SERVED = "served"  # self-service answered the caller (a status read back), then goodbye
    ENQUEUED = "enqueued"  # handed to a queue for an agent
    CALLBACK = "callback"  # the caller keeps their place and is called back
    TRANSFERRED = "transferred"  # dialled out to another number
    HUNG_UP = "hung_up"  # the caller hung up in the IVR (abandoned in the IVR, at ``node``)
    ENDED = "ended"  # the IVR ended the call politely (silence, tries exhausted, closed)


class Phase(StrEnum):
    """What the machine waits for."""

    NEW = "new"
    INPUT = "input"
    CONFIRM = "confirm"
    LOOKUP = "lookup"
    FINISHED = "finished"


class LookupKind(StrEnum):
    """The data a node needs from the shell."""

    CUSTOMER_BY_NUMBER = "customer_by_number"  # value: the caller's number (From)
    CUSTOMER_BY_ID = "customer_by_id"  # value: a validated resident ID
    COMPLAINT_STATUS = "complaint_status"  # value: a reference, C-YYYYMMDD-NNNNNN


# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallStarted:
    """A new call reached the IVR: who called (``From``) and the number dialled (``To``)."""

    caller: str
    called: str


@dataclass(frozen=True)
class Digits:
    """Keys pressed in answer to a gather (``0-9``, ``*``, ``#``; may be several)."""

    digits: str


@dataclass(frozen=True)
class Speech:
    """A transcribed spoken answer and the provider's confidence in it (0 to 1)."""

    text: str
    confidence: float


@dataclass(frozen=True)
class NoInput:
    """The gather ended with nothing pressed or said."""


@dataclass(frozen=True)
class Hangup:
    """The caller hung up."""


@dataclass(frozen=True)
class Timer:
    """A timer the shell fired; ``gather`` stands for silence where the provider reports none."""

    name: str = "gather"


@dataclass(frozen=True)
class Identified:
    """Answer to a customer lookup: who the caller is."""

    customer_id: int
    tier: str
    language: str | None = None


@dataclass(frozen=True)
class NotIdentified:
    """Answer to a customer lookup: nobody matches."""


@dataclass(frozen=True)
class ComplaintFound:
    """Answer to a complaint-status lookup."""

    reference: str
    status: str
    due_at: datetime | None = None


@dataclass(frozen=True)
class ComplaintNotFound:
    """Answer to a complaint-status lookup: no such complaint for this caller."""


Event = (
    CallStarted
    | Digits
    | Speech
    | NoInput
    | Hangup
    | Timer
    | Identified
    | NotIdentified
    | ComplaintFound
    | ComplaintNotFound
)


# --- actions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SkillNeed:
    """A skill the enqueued call needs, at least at ``min_level`` (1 to 10)."""

    skill: str
    min_level: int = 1


@dataclass(frozen=True)
class Say:
    """Speak ``text`` in ``language``, the voice code the provider expects (zh-CN, en-US)."""

    text: str
    language: str


@dataclass(frozen=True)
class Play:
    """Play the audio at ``url``."""

    url: str


@dataclass(frozen=True)
class Gather:
    """Listen for keys (and speech when ``speech``); the Say/Play before it are its prompt.

    ``num_digits`` ends the gather after that many keys; ``finish_on_key`` ends it early
    ("" for no finish key); ``timeout_s`` of silence ends it with what was pressed so far, or
    with nothing (the shell then reports ``NoInput``). ``hints`` are the phrases speech
    recognition should expect, in ``language``.
    """

    num_digits: int | None
    finish_on_key: str
    timeout_s: int
    speech: bool
    language: str
    hints: tuple[str, ...] = ()


@dataclass(frozen=True)
class Enqueue:
    """Hand the call to ``queue`` with the path's skills and what the IVR learnt."""

    queue: str
    skills: tuple[SkillNeed, ...]
    tier: str | None
    customer_id: int | None
    language: str
    collected: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Callback:
    """Keep the caller's place in ``queue`` and call ``number`` back instead of holding."""

    queue: str
    skills: tuple[SkillNeed, ...]
    number: str
    tier: str | None
    customer_id: int | None
    language: str


@dataclass(frozen=True)
class Dial:
    """Transfer the call to ``number``."""

    number: str


@dataclass(frozen=True)
class EndCall:
    """Hang up the call (after any Say before it)."""


@dataclass(frozen=True)
class Lookup:
    """Data the machine needs; the shell answers with a result event in the same webhook."""

    kind: LookupKind
    value: str


Action = Say | Play | Gather | Enqueue | Callback | Dial | EndCall | Lookup


# --- transcript ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TranscriptEntry:
    """One step of the call's path, for the shell to store.

    ``input`` is what the caller did (``digits:1``, ``speech:信用卡@0.82``, ``no_input``,
    ``hangup``, a lookup's answer); collected values that identify a person are masked.
    ``prompt`` names the prompt played (``node.prompt``, ``node.no_input``, ...).
    ``result`` is a short word: ``asked``, ``option``, ``no_input``, ``invalid``,
    ``fallback``, ``repeat``, ``back``, ``operator``, ``collected``, ``confirmed``,
    ``reenter``, ``lookup``, ``found``, ``not_found``, ``open``, ``closed``, ``said``,
    ``exhausted``, or the outcome's value when the call leaves the IVR (then ``outcome``
    is set too).
    """

    node: str
    input: str | None
    prompt: str | None
    result: str
    outcome: Outcome | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "node": self.node,
            "input": self.input,
            "prompt": self.prompt,
            "result": self.result,
            "outcome": None if self.outcome is None else self.outcome.value,
        }


# --- state --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallState:
    """One call's place in its flow, and what the IVR has learnt about the caller."""

    flow: str
    flow_version: int
    language: str
    caller: str = ""
    called: str = ""
    phase: Phase = Phase.NEW
    node: str | None = None
    no_input: int = 0  # silences at the current node
    invalid: int = 0  # invalid answers at the current node
    inputs: int = 0  # caller inputs over the whole call, bounded by the flow's limit
    history: tuple[str, ...] = ()  # menus left for another node, newest last (for "#")
    customer_id: int | None = None
    tier: str | None = None
    collected: Mapping[str, str] = field(default_factory=dict)
    pending: str | None = None  # a collected value waiting for its confirm key
    lookup: LookupKind | None = None  # the lookup that is out
    served: bool = False  # self-service has answered the caller
    outcome: Outcome | None = None
    language_chosen: bool = False  # the caller chose the language; identification keeps it

    def to_json(self) -> dict[str, Any]:
        """The state as plain JSON, versioned; ``from_json`` reads it back equal."""
        return {
            "v": STATE_VERSION,
            "flow": self.flow,
            "flow_version": self.flow_version,
            "language": self.language,
            "caller": self.caller,
            "called": self.called,
            "phase": self.phase.value,
            "node": self.node,
            "no_input": self.no_input,
            "invalid": self.invalid,
            "inputs": self.inputs,
            "history": list(self.history),
            "customer_id": self.customer_id,
            "tier": self.tier,
            "collected": dict(self.collected),
            "pending": self.pending,
            "lookup": None if self.lookup is None else self.lookup.value,
            "served": self.served,
            "outcome": None if self.outcome is None else self.outcome.value,
            "language_chosen": self.language_chosen,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallState:
        """Read a state ``to_json`` wrote; ``StateError`` if it is of another version or
        damaged."""
        if not isinstance(data, Mapping) or data.get("v") != STATE_VERSION:
            raise StateError("call state of an unknown version")
        try:
            return _read_state(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"damaged call state: {exc}") from exc


def _optional(kind: type[_T], value: Any) -> _T | None:
    return None if value is None else _typed(kind, value)


def _typed(kind: type[_T], value: Any) -> _T:
    if kind is int and isinstance(value, bool):
        raise TypeError("a boolean where a number belongs")
    if not isinstance(value, kind):
        raise TypeError(f"{value!r} is not a {kind.__name__}")
    return value


def _read_state(data: Mapping[str, Any]) -> CallState:
    collected = _typed(dict, data["collected"])
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in collected.items()):
        raise TypeError("collected values must be text")
    history = _typed(list, data["history"])
    if not all(isinstance(item, str) for item in history):
        raise TypeError("history must be node names")
    lookup, outcome = data["lookup"], data["outcome"]
    return CallState(
        flow=_typed(str, data["flow"]),
        flow_version=_typed(int, data["flow_version"]),
        language=_typed(str, data["language"]),
        caller=_typed(str, data["caller"]),
        called=_typed(str, data["called"]),
        phase=Phase(data["phase"]),
        node=_optional(str, data["node"]),
        no_input=_typed(int, data["no_input"]),
        invalid=_typed(int, data["invalid"]),
        inputs=_typed(int, data["inputs"]),
        history=tuple(history),
        customer_id=_optional(int, data["customer_id"]),
        tier=_optional(str, data["tier"]),
        collected=dict(collected),
        pending=_optional(str, data["pending"]),
        lookup=None if lookup is None else LookupKind(lookup),
        served=_typed(bool, data["served"]),
        outcome=None if outcome is None else Outcome(outcome),
        language_chosen=_typed(bool, data["language_chosen"]),
    )
