"""``answers.option_chosen``: the option a menu's recorded answer chose, found again from the
transcript as the machine found it (``GET /contacts/{id}/ivr`` names it to the agent)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.ivr import machine
from app.ivr.answers import option_chosen
from app.ivr.flow import DEMO_FLOWS, Flow, MenuNode, parse_flow
from app.ivr.vocabulary import CallState, Digits, Event, Phase, Speech

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # a Tuesday, in working hours
FLOWS = {path.stem: parse_flow(path.read_bytes()) for path in sorted(DEMO_FLOWS.glob("*.yaml"))}
MENUS = [
    (name, node_id)
    for name, flow in FLOWS.items()
    for node_id, node in flow.nodes.items()
    if isinstance(node, MenuNode)
]


def menu(flow: str, node: str) -> MenuNode:
    found = FLOWS[flow].nodes[node]
    assert isinstance(found, MenuNode)
    return found


def answers_at(flow: Flow, node: MenuNode) -> list[Event]:
    """Every key, each option's phrases, spoken keys, words that name nothing or two options."""
    said = [p for option in node.options for ps in option.phrases.values() for p in ps]
    heard = [
        *said,
        *(f"我要{p}" for p in said),
        "按一",
        "press two",
        "三",
        "转人工",
        "English",
        "天气怎么样",
        " ".join(said[:2]),
    ]
    return [
        *(Digits(key) for key in "0123456789*#"),
        Digits("12"),
        *(Speech(text, 0.9) for text in heard),
        Speech(said[0], 0.1),
    ]


class TestTheMachineAndTheTranscriptAgree:
    @pytest.mark.parametrize(("flow_name", "node_id"), MENUS)
    def test_every_answer_at_every_demo_menu(self, flow_name: str, node_id: str) -> None:
        flow, node = FLOWS[flow_name], menu(flow_name, node_id)
        state = CallState(
            flow=flow.name,
            flow_version=flow.version,
            language=flow.language,
            phase=Phase.INPUT,
            node=node_id,
        )
        chosen_somewhere = 0
        for event in answers_at(flow, node):
            done = machine.step(flow, state, event, NOW)
            [entry, *after] = done.transcript
            assert entry.node == node_id
            if entry.result != "option":
                continue  # read for a step that chose (a low confidence may name one)
            chosen_somewhere += 1
            found = option_chosen(node, entry.input)
            assert found is not None, entry
            entered = after[0].node if after else done.state.node
            assert entered == found.next, (event, entry)
            assert found.language in (None, done.state.language), (event, entry)
        assert chosen_somewhere >= len(node.options)


class TestTheAnswersItReads:
    @pytest.mark.parametrize(
        ("inp", "key"),
        [
            ("digits:1", "1"),
            ("digits:2", "2"),
            ("speech:中文@0.90", "1"),
            ("speech:我要普通话@0.80", "1"),
            ("speech:English@0.75", "2"),
            ("speech:按一@0.90", "1"),
            ("speech:press two@0.90", "2"),
        ],
    )
    def test_an_answer_that_chose_names_its_option(self, inp: str, key: str) -> None:
        found = option_chosen(menu("credit_card_centre", "language"), inp)

        assert found is not None
        assert found.key == key

    @pytest.mark.parametrize(
        "inp",
        [
            None,
            "no_input",
            "hangup",
            "digits:",
            "digits:9",  # no option of this menu
            "digits:12",
            "speech:天气@0.90",  # names no option
            "speech:中文 English@0.90",  # names two
            "speech:@0.90",
            "speech:中文",  # no confidence recorded: not as the machine records speech
            "found:customer",
        ],
    )
    def test_an_answer_that_chose_nothing_names_nothing(self, inp: str | None) -> None:
        assert option_chosen(menu("credit_card_centre", "language"), inp) is None

    def test_an_at_sign_in_the_words_is_kept(self) -> None:
        node = menu("credit_card_centre", "language")

        found = option_chosen(node, "speech:mail@english@0.90")

        assert found is not None
        assert found.key == "2"
