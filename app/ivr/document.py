"""The flow document's schema: node types, global keys, limits, and the problems it can have.

Theory of operation
-------------------

A flow is a document naming its nodes and where each leads. The pydantic models below are its
shape: every node is one of the node types, chosen by its ``type`` (a discriminated union),
with no unknown fields and bounded sizes. They check each part alone; ``app.ivr.graph``
checks how the parts fit together, and ``app.ivr.flow.parse_flow`` runs both.

Node types
----------

- ``menu``: a prompt, options by key and by spoken phrase (an option may set the caller's
  language), separate ``no_input`` and ``invalid`` counters each with its own re-prompt,
  maximum and fallback node; ``speech`` accepts spoken answers.
- ``collect``: keys into a named value (``into``), ``min_length``/``max_length``, an optional
  ``finish_key``, ``star: X`` when ``*`` stands for X, a ``validator``, the two counters, and
  an optional ``confirm`` step (a key that accepts the value; any other key re-enters it).
- ``identify``: find the customer by the caller's number or by a collected value; ``found``
  and ``not_found`` branches.
- ``say``: a prompt, then ``next``.
- ``business_hours``: opening hours per weekday, on public holidays and on make-up working
  days; ``open`` and ``closed`` branches.
- ``enqueue``, ``callback``, ``transfer``, ``hangup``: the ways out of the IVR.
- ``complaint_status``: read a complaint's status and deadline back by a collected
  reference; ``found`` and ``not_found`` branches.

Decisions, and why
------------------

- **Nodes are a mapping by name**, so a reference is a name that either exists or does not,
  and a problem can name the node.
- **Global keys apply in menus only.** In a ``collect`` node every key is data (0 is a
  digit of an ID; ``*`` may stand for X); so ``0`` for the operator works "from any menu",
  as promised, and nowhere it could corrupt a number.
- **A finish key can never be part of the value**: ``finish_key`` is ``#`` or ``*`` (never a
  digit, so never the 8 that confirms), and the graph check refuses ``*`` when ``*`` is data.
  Values of a fixed length (an 18-character ID) need no finish key: the gather ends after
  ``max_length`` keys.
- **Prompts are text per language** (``{"zh-CN": ..., "en-US": ...}``), spoken by the
  provider's voices; every language the flow speaks is required of every prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.ivr.validators import Validator

__all__ = [
    "MAX_NODES",
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
]

MAX_NODES: Final = 200

NodeId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
Key = Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}-[A-Z]{2}$")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=600)]
Phrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# Text per language: {"zh-CN": "...", "en-US": "..."}; every language of the flow is required.
Prompt = Annotated[dict[Language, Text], Field(min_length=1, max_length=8)]
# "08:30-20:00"; an end of 24:00 is the end of the day.
Hours = Annotated[
    str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d-(([01]\d|2[0-3]):[0-5]\d|24:00)$")
]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Retry(_Part):
    """One counter of a node: the re-prompt, how many times, and where to go after."""

    prompt: Prompt
    max: int = Field(default=3, ge=1, le=9)
    fallback: NodeId


class Option(_Part):
    """A menu choice, by key and by spoken phrase; may set the caller's language."""

    key: Key | None = None
    phrases: dict[Language, list[Phrase]] = Field(default_factory=dict, max_length=8)
    next: NodeId
    language: Language | None = None


class Skill(_Part):
    """A skill the path needs."""

    skill: Name
    min_level: int = Field(default=1, ge=1, le=10)


class Confirm(_Part):
    """The confirm step of a collect: read back, then press ``key`` (any other key re-enters)."""

    prompt: Prompt  # may use {tail}: the value's last four characters, spaced
    key: Key = "8"


class MenuNode(_Part):
    """Offer options by key and by phrase; separate silence and invalid-answer counters."""

    type: Literal["menu"]
    prompt: Prompt
    options: list[Option] = Field(min_length=1, max_length=12)
    no_input: Retry
    invalid: Retry
    speech: bool = True
    timeout_s: int = Field(default=5, ge=1, le=30)
    each_language: bool = Field(
        default=False,
        description="say the prompt in every language of the flow, each in its own voice, "
        "and take every language's phrases (a language menu, before the caller has one)",
    )


class CollectNode(_Part):
    """Collect keys into ``into``: lengths, finish key, a validator, tries, an optional confirm."""

    type: Literal["collect"]
    prompt: Prompt
    into: NodeId
    min_length: int = Field(ge=1, le=32)
    max_length: int = Field(ge=1, le=32)
    finish_key: Literal["#", "*"] | None = None
    star: Literal["X"] | None = None  # what "*" stands for in the value, if anything
    validator: Validator | None = None
    no_input: Retry
    invalid: Retry
    confirm: Confirm | None = None
    next: NodeId
    timeout_s: int = Field(default=8, ge=1, le=30)


class IdentifyNode(_Part):
    """Find the customer by the caller's number, or by a value collected earlier."""

    type: Literal["identify"]
    by: Literal["caller", "collected"] = "caller"
    value: NodeId | None = None  # the collected value's name when ``by`` is "collected"
    found: NodeId
    not_found: NodeId


class SayNode(_Part):
    """Say something, then go on."""

    type: Literal["say"]
    prompt: Prompt
    next: NodeId


class BusinessHoursNode(_Part):
    """Branch on opening hours per weekday, with the working-day calendar's holidays."""

    type: Literal["business_hours"]
    hours: dict[Weekday, Hours] = Field(min_length=1)  # a weekday not listed is closed
    holiday: Hours | None = None  # hours on a public holiday; closed if absent
    makeup: Hours | None = None  # hours on a make-up working day; Monday's if absent
    open: NodeId
    closed: NodeId


class EnqueueNode(_Part):
    """Hand the call to a queue with the path's skills (terminal)."""

    type: Literal["enqueue"]
    queue: Name
    skills: list[Skill] = Field(default_factory=list, max_length=8)
    prompt: Prompt | None = None


class CallbackNode(_Part):
    """Keep the caller's place in a queue and call them back (terminal)."""

    type: Literal["callback"]
    queue: Name
    skills: list[Skill] = Field(default_factory=list, max_length=8)
    prompt: Prompt


class ComplaintStatusNode(_Part):
    """Read back a complaint's status and deadline by a reference collected earlier."""

    type: Literal["complaint_status"]
    reference: NodeId  # the collected value's name
    prompt: Prompt  # may use {reference}, {status}, {due}
    found: NodeId
    not_found: NodeId


class TransferNode(_Part):
    """Dial another number (terminal)."""

    type: Literal["transfer"]
    number: Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{3,16}$")]
    prompt: Prompt | None = None


class HangupNode(_Part):
    """Say goodbye and end the call (terminal)."""

    type: Literal["hangup"]
    prompt: Prompt | None = None


Node = Annotated[
    MenuNode
    | CollectNode
    | IdentifyNode
    | SayNode
    | BusinessHoursNode
    | EnqueueNode
    | CallbackNode
    | ComplaintStatusNode
    | TransferNode
    | HangupNode,
    Field(discriminator="type"),
]


class GlobalKeys(_Part):
    """Keys that work in every menu; each may be switched off with null."""

    operator: Key | None = "0"
    operator_node: NodeId | None = None  # an enqueue node; no operator key without it
    repeat: Key | None = "*"
    back: Key | None = "#"
    # The caller's language changes to the flow's next one (in ``languages``' order, round)
    # and the menu is said again in it: a caller known by their number, who skips the
    # language menu, can still choose. Off by default; with it, ``language_prompt`` offers
    # it after every menu's prompt, in each other language, each in its own voice.
    language: Key | None = None
    language_prompt: dict[Language, Text] = Field(default_factory=dict, max_length=8)

    @property
    def operator_target(self) -> NodeId | None:
        """Where the operator key (or a person asked for in words) leads from a menu: the
        operator node while the key is on, else nowhere."""
        return self.operator_node if self.operator is not None else None


class Limits(_Part):
    """Bounds on one call: caller inputs before it is ended, menus remembered for "back"."""

    max_inputs: int = Field(default=40, ge=5, le=200)
    history: int = Field(default=5, ge=0, le=20)
    min_confidence: float = Field(default=0.5, ge=0, le=1)


class Flow(_Part):
    """A validated flow document."""

    name: NodeId
    version: int = Field(default=1, ge=1, le=2_147_483_647)
    description: str = Field(default="", max_length=2000)
    numbers: list[Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{3,16}$")]] = Field(
        default_factory=list, max_length=50
    )
    languages: list[Language] = Field(default=["zh-CN", "en-US"], min_length=1, max_length=4)
    language: Language = "zh-CN"
    zone: str = "Asia/Shanghai"
    start: NodeId
    keys: GlobalKeys = GlobalKeys()
    limits: Limits = Limits()
    nodes: dict[NodeId, Node] = Field(min_length=1, max_length=MAX_NODES)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a flow: the node (None for the document), the field, the why."""

    node: str | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"node {self.node!r}" if self.node else "flow"
        return f"{where}, {self.field}: {self.message}"


class FlowError(ValueError):
    """A flow document that cannot be used; ``problems`` lists every reason found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class Reference:
    """A queue or skill a node names, which must exist in the centre."""

    kind: Literal["queue", "skill"]
    name: str
    node: str
    field: str
