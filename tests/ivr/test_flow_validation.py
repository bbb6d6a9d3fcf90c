"""Flow documents are refused with every problem named by node and field."""

from __future__ import annotations

import json
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest

from app import demo
from app.ivr.flow import (
    DEMO_FLOWS,
    MAX_DOCUMENT_CHARS,
    FlowError,
    Problem,
    Reference,
    check_references,
    parse_flow,
    references,
)

FLOWS = DEMO_FLOWS
DOCS = Path(__file__).parents[2] / "docs" / "ivr.md"


def t(word: str) -> dict[str, str]:
    return {"zh-CN": word, "en-US": word}


def retry(fallback: str) -> dict[str, Any]:
    return {"prompt": t("again"), "max": 3, "fallback": fallback}


BASE: dict[str, Any] = {
    "name": "base",
    "start": "m",
    "keys": {"operator_node": "desk"},
    "nodes": {
        "m": {
            "type": "menu",
            "prompt": t("menu"),
            "options": [
                {"key": "1", "next": "c", "phrases": {"en-US": ["status"]}},
                {"key": "2", "next": "i"},
            ],
            "no_input": retry("bye"),
            "invalid": retry("desk"),
        },
        "c": {
            "type": "collect",
            "prompt": t("reference"),
            "into": "ref",
            "min_length": 14,
            "max_length": 20,
            "finish_key": "#",
            "validator": "complaint_reference",
            "no_input": retry("bye"),
            "invalid": retry("desk"),
            "next": "st",
        },
        "st": {
            "type": "complaint_status",
            "reference": "ref",
            "prompt": t("{status}"),
            "found": "bye",
            "not_found": "m",
        },
        "i": {"type": "identify", "found": "desk", "not_found": "h"},
        "h": {
            "type": "business_hours",
            "hours": {"mon": "09:00-17:00"},
            "open": "desk",
            "closed": "bye",
        },
        "desk": {"type": "enqueue", "queue": "q", "skills": [{"skill": "s", "min_level": 3}]},
        "bye": {"type": "hangup"},
    },
}

Mutation = Callable[[dict[str, Any]], None]


def node(name: str, **fields: Any) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        for field, value in fields.items():
            if value is None:
                document["nodes"][name].pop(field, None)
            else:
                document["nodes"][name][field] = value

    return mutate


def top(**fields: Any) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        document.update(fields)

    return mutate


def add(name: str, spec: dict[str, Any]) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        document["nodes"][name] = spec

    return mutate


def option(index: int, **fields: Any) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        options = document["nodes"]["m"]["options"]
        while len(options) <= index:
            options.append({"next": "bye"})
        options[index].update(fields)
        for field in [f for f, v in fields.items() if v is None]:
            del options[index][field]

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        for each in mutations:
            each(document)

    return mutate


# The language key, and its offer in each language of the flow.
OFFER = {"zh-CN": "普通话服务请按7。", "en-US": "For English, press 7."}
SWITCH = {"operator_node": "desk", "language": "7", "language_prompt": OFFER}


def problems_of(*mutations: Mutation) -> set[tuple[str | None, str]]:
    document = deepcopy(BASE)
    for mutate in mutations:
        mutate(document)
    with pytest.raises(FlowError) as caught:
        parse_flow(document)
    return {(p.node, p.field) for p in caught.value.problems}


def messages_of(*mutations: Mutation) -> str:
    document = deepcopy(BASE)
    for mutate in mutations:
        mutate(document)
    with pytest.raises(FlowError) as caught:
        parse_flow(document)
    return str(caught.value)


def test_the_base_document_is_valid() -> None:
    flow = parse_flow(BASE)
    assert flow.start == "m"
    assert set(flow.nodes) == set(BASE["nodes"])


class TestShape:
    """Each node alone: types, fields, sizes. The node type is not part of the field."""

    @pytest.mark.parametrize(
        ("mutation", "expected"),
        [
            (node("m", no_input=None), {("m", "no_input")}),
            (node("m", invalid=None), {("m", "invalid")}),
            (node("c", no_input=None, invalid=None), {("c", "no_input"), ("c", "invalid")}),
            (node("m", type="menuu"), {("m", "type")}),
            (node("m", type=None), {("m", "type")}),
            (node("m", colour="red"), {("m", "colour")}),
            (node("m", no_input={**retry("bye"), "max": 0}), {("m", "no_input.max")}),
            (option(0, key="A"), {("m", "options[0].key")}),
            (node("m", options=[]), {("m", "options")}),
            (node("m", prompt={"zh-CN": "  "}), {("m", "prompt.zh-CN")}),
            (node("m", prompt={"zh": "菜单"}), {("m", "prompt.zh.[key]")}),
            (node("c", min_length=0), {("c", "min_length")}),
            (node("c", finish_key="8"), {("c", "finish_key")}),
            (node("c", validator="postcode"), {("c", "validator")}),
            (node("h", hours={"mon": "25:00-26:00"}), {("h", "hours.mon")}),
            (node("h", hours={"monday": "09:00-17:00"}), {("h", "hours.monday.[key]")}),
            (
                node("desk", skills=[{"skill": "s", "min_level": 11}]),
                {("desk", "skills[0].min_level")},
            ),
            (add("Bad", {"type": "hangup"}), {("Bad", "name")}),
            (top(colour="red"), {(None, "colour")}),
            (top(start=None), {(None, "start")}),
            (top(version=0), {(None, "version")}),
            (top(version=2**31), {(None, "version")}),
            (top(limits={"max_inputs": 1}), {(None, "limits.max_inputs")}),
        ],
    )
    def test_problem_names_node_and_field(
        self, mutation: Mutation, expected: set[tuple[str | None, str]]
    ) -> None:
        assert problems_of(mutation) == expected

    def test_too_many_nodes(self) -> None:
        def many(document: dict[str, Any]) -> None:
            for i in range(200):
                document["nodes"][f"n{i}"] = {"type": "hangup"}

        assert problems_of(many) == {(None, "nodes")}

    def test_every_problem_is_reported_at_once(self) -> None:
        found = problems_of(node("m", no_input=None), node("c", min_length=0), top(colour="x"))
        assert found == {("m", "no_input"), ("c", "min_length"), (None, "colour")}


class TestDocumentText:
    """YAML or JSON text, bounded, without aliases."""

    def test_json_text(self) -> None:
        assert parse_flow(json.dumps(BASE)).name == "base"

    def test_utf8_bytes(self) -> None:
        assert parse_flow(json.dumps(BASE, ensure_ascii=False).encode()).name == "base"

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("name: [unclosed", "not YAML or JSON"),
            (b"\xff\xfe\xfa", "not YAML or JSON"),
            ("- a\n- list\n", "a mapping"),
            ("just text", "a mapping"),
            ("", "a mapping"),
            ("a: &x [1, 2]\nb: *x\n", "aliases"),
            ("x" * (MAX_DOCUMENT_CHARS + 1), "longer than"),
            ("a: " + "[" * 500 + "]" * 500, "nested deeper than"),
            ('{"a": ' + "[" * 20_000 + "]" * 20_000 + "}", "nested deeper than"),
        ],
        ids=[
            "syntax",
            "not-utf8",
            "list",
            "scalar",
            "empty",
            "alias",
            "too-long",
            "deep",
            "deep-json",
        ],
    )
    def test_refused(self, text: str | bytes, message: str) -> None:
        with pytest.raises(FlowError, match=message) as caught:
            parse_flow(text)
        assert [(p.node, p.field) for p in caught.value.problems] == [(None, "document")]


class TestGraph:
    """How the nodes fit together."""

    @pytest.mark.parametrize(
        ("mutation", "expected", "message"),
        [
            (top(start="nowhere"), {(None, "start")}, "no node named 'nowhere'"),
            (top(language="fr-FR"), {(None, "language")}, "not one of the flow's languages"),
            (top(zone="Mars/Olympus"), {(None, "zone")}, "unknown time zone"),
            (top(zone="../etc"), {(None, "zone")}, "unknown time zone"),
            (top(keys={"operator": "*", "operator_node": "desk"}), {(None, "keys")}, "differ"),
            (top(keys={**SWITCH, "language": "#"}), {(None, "keys")}, "language keys must differ"),
            (top(keys=SWITCH), set(), ""),
            (
                top(keys={**SWITCH, "language_prompt": {"en-US": "For English, press 7."}}),
                {(None, "keys.language_prompt")},
                "no text in zh-CN",
            ),
            (
                top(keys={**SWITCH, "language_prompt": {**OFFER, "fr-FR": "Pour le français…"}}),
                {(None, "keys.language_prompt")},
                "fr-FR is not a language of the flow",
            ),
            (
                top(keys={"operator_node": "desk", "language_prompt": OFFER}),
                {(None, "keys.language_prompt")},
                "offers a language key the flow has not",
            ),
            (both(top(keys=SWITCH), option(1, key="7")), {("m", "options[1].key")}, "global key"),
            (top(keys={}), {(None, "keys.operator_node")}, "needs an operator node"),
            (top(keys={"operator_node": "x"}), {(None, "keys.operator_node")}, "no node named"),
            (top(keys={"operator_node": "bye"}), {(None, "keys.operator_node")}, "enqueue node"),
            (option(0, next="nowhere"), {("m", "options[0].next")}, "no node named 'nowhere'"),
            (node("m", no_input=retry("gone")), {("m", "no_input.fallback")}, "no node named"),
            (node("c", invalid=retry("gone")), {("c", "invalid.fallback")}, "no node named"),
            (node("st", found="gone"), {("st", "found")}, "no node named"),
            (node("h", closed="gone"), {("h", "closed")}, "no node named"),
            (node("st", reference="other"), {("st", "reference")}, "no collect node"),
            (
                node("i", by="collected", value="other"),
                {("i", "value")},
                "no collect node collects 'other'",
            ),
            (node("i", by="collected"), {("i", "value")}, "exactly when"),
            (node("i", value="ref"), {("i", "value")}, "exactly when"),
            (node("m", prompt={"zh-CN": "菜单"}), {("m", "prompt")}, "no text in en-US"),
            (
                node("m", prompt={**t("m"), "fr-FR": "menu"}),
                {("m", "prompt")},
                "fr-FR is not a language of the flow",
            ),
            (
                node("m", invalid={**retry("desk"), "prompt": {"en-US": "x"}}),
                {("m", "invalid.prompt")},
                "no text in zh-CN",
            ),
            (
                node("c", confirm={"prompt": {"zh-CN": "确认"}}),
                {("c", "confirm.prompt")},
                "no text in en-US",
            ),
            (option(0, phrases={"fr-FR": ["statut"]}), {("m", "options[0]")}, "fr-FR"),
            (option(0, language="fr-FR"), {("m", "options[0]")}, "fr-FR"),
            (option(1, key="1"), {("m", "options[1].key")}, "used twice"),
            (option(1, key="0"), {("m", "options[1].key")}, "global key"),
            (option(1, key="#"), {("m", "options[1].key")}, "global key"),
            (option(1, key=None), {("m", "options[1]")}, "needs a key"),
            (
                node("m", speech=False),
                set(),
                "",
            ),
            (
                option(1, key=None, phrases={"en-US": ["other"]}),
                set(),
                "",
            ),
            (option(1, phrases={"en-US": ["STATUS"]}), {("m", "options[1].phrases")}, "'status'"),
            (node("c", min_length=21), {("c", "min_length")}, "longer than max_length"),
            (node("c", finish_key="*", star="X"), {("c", "finish_key")}, "stands for"),
            (
                node("c", validator="cn_resident_id", max_length=17),
                {("c", "max_length")},
                "cannot fit",
            ),
            (node("c", max_length=13, min_length=13), {("c", "max_length")}, "cannot fit"),
            (
                add("c2", {**BASE["nodes"]["c"], "next": "m"}),
                {("c", "into"), ("c2", "into")},
                "collected by another node",
            ),
            (node("h", hours={"mon": "17:00-09:00"}), {("h", "hours.mon")}, "closes before"),
            (node("h", holiday="10:00-10:00"), {("h", "holiday")}, "closes before"),
            (node("h", makeup="12:00-11:00"), {("h", "makeup")}, "closes before"),
        ],
    )
    def test_problem_names_node_and_field(
        self, mutation: Mutation, expected: set[tuple[str | None, str]], message: str
    ) -> None:
        if not expected:
            parse_flow(_mutated(mutation))
            return
        assert problems_of(mutation) == expected
        assert message in messages_of(mutation)

    def test_a_language_key_needs_another_language_to_change_to(self) -> None:
        # BASE in Chinese alone: its prompts, re-prompts and phrases in Chinese only.
        document = deepcopy(BASE)
        document.update(languages=["zh-CN"], language="zh-CN")
        document["keys"] = {**SWITCH, "language_prompt": {"zh-CN": OFFER["zh-CN"]}}
        for spec in document["nodes"].values():
            if "prompt" in spec:
                spec["prompt"] = {"zh-CN": spec["prompt"]["zh-CN"]}
            for counter in ("no_input", "invalid"):
                if counter in spec:
                    spec[counter]["prompt"] = {"zh-CN": "再说一次"}
            for choice in spec.get("options", []):
                choice.pop("phrases", None)
        with pytest.raises(FlowError) as caught:
            parse_flow(document)
        assert [(p.node, p.field, p.message) for p in caught.value.problems] == [
            (None, "keys.language", "the flow has no other language to change to")
        ]

    def test_a_phrase_only_option_needs_a_speech_menu(self) -> None:
        mutations = (option(1, key=None, phrases={"en-US": ["other"]}), node("m", speech=False))
        assert problems_of(*mutations) == {("m", "options[1]")}

    def test_unreachable_nodes_are_named(self) -> None:
        found = problems_of(add("orphan", {"type": "hangup"}), add("lost", {"type": "hangup"}))
        assert found == {("orphan", ""), ("lost", "")}
        assert "unreachable from start" in messages_of(add("orphan", {"type": "hangup"}))

    def test_the_operator_key_reaches_the_operator_node(self) -> None:
        document = _mutated(
            node("m", invalid=retry("bye")), node("c", invalid=retry("bye")), node("h", open="bye")
        )
        document["nodes"]["i"]["found"] = "bye"
        assert "desk" in parse_flow(document).nodes  # reached only through the key

    def test_without_the_operator_key_its_node_must_be_reached_otherwise(self) -> None:
        document = _mutated(
            node("m", invalid=retry("bye")), node("c", invalid=retry("bye")), node("h", open="bye")
        )
        document["nodes"]["i"]["found"] = "bye"
        document["keys"] = {"operator": None, "operator_node": "desk"}
        with pytest.raises(FlowError) as caught:
            parse_flow(document)
        assert [(p.node, p.field) for p in caught.value.problems] == [("desk", "")]

    def test_reachability_waits_for_the_references_to_be_right(self) -> None:
        # A dangling reference is the problem to fix; "unreachable" would be noise.
        assert problems_of(option(0, next="gone")) == {("m", "options[0].next")}


class TestLoops:
    """No cycle may be walked without the caller choosing something."""

    def test_say_to_say(self) -> None:
        mutations = (
            option(2, key="3", next="a"),
            add("a", {"type": "say", "prompt": t("a"), "next": "b"}),
            add("b", {"type": "say", "prompt": t("b"), "next": "a"}),
        )
        assert problems_of(*mutations) == {("a", "next")}
        assert "loops without a caller's choice: a -> b -> a" in messages_of(*mutations)

    def test_a_fallback_into_its_own_menu(self) -> None:
        found = messages_of(node("m", no_input=retry("m")))
        assert problems_of(node("m", no_input=retry("m"))) == {("m", "no_input.fallback")}
        assert "m -> m" in found

    def test_a_loop_through_lookups_and_hours(self) -> None:
        mutation = node("h", closed="i")
        assert problems_of(mutation) == {("i", "not_found")}
        assert "i -> h -> i" in messages_of(mutation)

    def test_a_loop_entered_from_a_node_already_explored(self) -> None:
        # x -> y -> z -> y: the cycle is reported once, from where it closes.
        mutations = (
            option(2, key="3", next="x"),
            add("x", {"type": "say", "prompt": t("x"), "next": "y"}),
            add("y", {"type": "say", "prompt": t("y"), "next": "z"}),
            add("z", {"type": "say", "prompt": t("z"), "next": "y"}),
        )
        assert problems_of(*mutations) == {("y", "next")}

    def test_a_loop_through_a_choice_is_fine(self) -> None:
        # menu -> (option) say -> menu: the caller chooses each time round.
        flow = parse_flow(
            _mutated(
                option(2, key="3", next="a"),
                add("a", {"type": "say", "prompt": t("a"), "next": "m"}),
            )
        )
        assert flow.nodes["a"].type == "say"

    def test_a_fallback_to_another_menu_without_return_is_fine(self) -> None:
        flow = parse_flow(
            _mutated(
                node("m", no_input=retry("m2")),
                add(
                    "m2",
                    {
                        "type": "menu",
                        "prompt": t("m2"),
                        "options": [{"key": "1", "next": "m"}],
                        "no_input": retry("bye"),
                        "invalid": retry("bye"),
                    },
                ),
            )
        )
        assert "m2" in flow.nodes


class TestProblems:
    """Problems read plainly."""

    def test_text(self) -> None:
        assert (
            str(Problem("m", "no_input", "Field required")) == "node 'm', no_input: Field required"
        )
        assert str(Problem(None, "start", "no node")) == "flow, start: no node"

    def test_error_lists_every_problem(self) -> None:
        error = FlowError([Problem("a", "x", "one"), Problem(None, "y", "two")])
        assert str(error) == "node 'a', x: one; flow, y: two"
        assert len(error.problems) == 2


class TestReferences:
    """Queues and skills, for the service to check against the catalogue."""

    def test_every_queue_and_skill_with_its_node(self) -> None:
        document = _mutated(
            option(2, key="3", next="cb"),
            add(
                "cb",
                {
                    "type": "callback",
                    "queue": "later",
                    "skills": [{"skill": "t"}],
                    "prompt": t("cb"),
                },
            ),
        )
        assert references(parse_flow(document)) == [
            Reference("queue", "q", "desk", "queue"),
            Reference("skill", "s", "desk", "skills[0].skill"),
            Reference("queue", "later", "cb", "queue"),
            Reference("skill", "t", "cb", "skills[0].skill"),
        ]

    def test_known_references_pass(self) -> None:
        check_references(parse_flow(BASE), queues={"q", "other"}, skills={"s"})

    def test_missing_references_name_their_nodes(self) -> None:
        with pytest.raises(FlowError) as caught:
            check_references(parse_flow(BASE), queues={"other"}, skills=set())
        assert caught.value.problems == (
            Problem("desk", "queue", "no queue named 'q'"),
            Problem("desk", "skills[0].skill", "no skill named 's'"),
        )


class TestDemoFlows:
    """The seed hotlines' flows are valid and name only what the demo centre has."""

    @pytest.mark.parametrize("path", sorted(FLOWS.glob("*.yaml")), ids=lambda p: p.stem)
    def test_valid_with_the_demo_catalogue(self, path: Path) -> None:
        flow = parse_flow(path.read_text(encoding="utf-8"))
        queues = {str(q["name"]) for q in demo.QUEUES}
        check_references(flow, queues=queues, skills=set(demo.SKILLS))
        assert flow.name == path.stem
        assert flow.numbers

    def test_the_example_in_the_docs_is_valid(self) -> None:
        text = DOCS.read_text(encoding="utf-8")
        example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
        flow = parse_flow(example)
        queues = {str(q["name"]) for q in demo.QUEUES}
        check_references(flow, queues=queues, skills=set(demo.SKILLS))

    def test_the_three_hotlines_are_there(self) -> None:
        names = {p.stem for p in FLOWS.glob("*.yaml")}
        assert names == {"complaint_hotline_95561", "consumer_line", "credit_card_centre"}


def _mutated(*mutations: Mutation) -> dict[str, Any]:
    document = deepcopy(BASE)
    for mutate in mutations:
        mutate(document)
    return document
