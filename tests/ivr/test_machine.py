"""Table-driven tests of the IVR call machine: every node type, every counter path, every
(phase, event) pair, the input budget and the stored state."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from copy import deepcopy
from datetime import UTC, date, datetime
from typing import Any, ClassVar

import pytest

from app.complaints.calendar import WorkCalendar
from app.ivr import prompts
from app.ivr.flow import Flow, parse_flow
from app.ivr.machine import (
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
    FlowLoop,
    Gather,
    Hangup,
    Identified,
    Lookup,
    LookupKind,
    NoInput,
    NotIdentified,
    Outcome,
    Phase,
    Say,
    SkillNeed,
    Speech,
    StateError,
    Step,
    Timer,
    TranscriptEntry,
    UnexpectedEvent,
    new_call,
    step,
)
from app.ivr.prompts import GOODBYE

# Wednesday 2 December 2026, 11:00 in Shanghai.
NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
CALLER, CALLED = "+8613900000009", "95599"
ID_WITH_X = "11010519880808805X"  # contains 8s and ends in X


def t(zh: str, en: str | None = None) -> dict[str, str]:
    return {"zh-CN": zh, "en-US": en or zh.upper()}


def retry(fallback: str, max_: int = 2, name: str = "retry") -> dict[str, Any]:
    return {"prompt": t(f"{name}-zh", f"{name}-en"), "max": max_, "fallback": fallback}


# A flow with every node type. Prompts are short words so expectations read plainly.
LAB: dict[str, Any] = {
    "name": "lab",
    "version": 3,
    "languages": ["zh-CN", "en-US"],
    "language": "zh-CN",
    "start": "who",
    "keys": {"operator": "0", "operator_node": "desk", "repeat": "*", "back": "#"},
    "limits": {"max_inputs": 30, "history": 2, "min_confidence": 0.5},
    "nodes": {
        "who": {"type": "identify", "by": "caller", "found": "hello", "not_found": "lang"},
        "lang": {
            "type": "menu",
            "prompt": t("lang"),
            "options": [
                {"key": "1", "language": "zh-CN", "next": "main", "phrases": {"zh-CN": ["中文"]}},
                {
                    "key": "2",
                    "language": "en-US",
                    "next": "main",
                    "phrases": {"en-US": ["english"]},
                },
            ],
            "no_input": retry("main", name="lang-silence"),
            "invalid": retry("main", name="lang-invalid"),
        },
        "hello": {"type": "say", "prompt": t("hello"), "next": "hours"},
        "hours": {
            "type": "business_hours",
            "hours": {"mon": "09:00-18:00", "wed": "09:00-18:00", "sat": "10:00-16:00"},
            "holiday": "10:00-12:00",
            "open": "main",
            "closed": "late",
        },
        "main": {
            "type": "menu",
            "prompt": t("main"),
            "options": [
                {
                    "key": "1",
                    "next": "sub",
                    "phrases": {"zh-CN": ["信用卡"], "en-US": ["credit card"]},
                },
                {"key": "2", "next": "ref"},
                {"key": "3", "next": "num", "phrases": {"en-US": ["card number"]}},
                {"key": "4", "next": "xfer"},
                {"key": "5", "next": "bye"},
                {"next": "late", "phrases": {"en-US": ["call me"]}},
            ],
            "no_input": retry("bye", 3, "main-silence"),
            "invalid": retry("desk", 2, "main-invalid"),
        },
        "sub": {
            "type": "menu",
            "prompt": t("sub"),
            "speech": False,
            "options": [{"key": "1", "next": "desk"}, {"key": "2", "next": "main"}],
            "no_input": retry("bye", name="sub-silence"),
            "invalid": retry("desk", name="sub-invalid"),
        },
        "ref": {
            "type": "collect",
            "prompt": t("ref"),
            "into": "reference",
            "min_length": 14,
            "max_length": 20,
            "finish_key": "#",
            "validator": "complaint_reference",
            "no_input": retry("bye", name="ref-silence"),
            "invalid": retry("desk", name="ref-invalid"),
            "next": "status",
        },
        "status": {
            "type": "complaint_status",
            "reference": "reference",
            "prompt": t("{reference} {status} {due}", "{reference} {status} {due}"),
            "found": "bye",
            "not_found": "main",
        },
        "num": {
            "type": "collect",
            "prompt": t("num"),
            "into": "number",
            "min_length": 4,
            "max_length": 6,
            "star": "X",
            "confirm": {"prompt": t("confirm {tail}", "CONFIRM {tail}"), "key": "8"},
            "no_input": retry("bye", name="num-silence"),
            "invalid": retry("desk", name="num-invalid"),
            "next": "byid",
        },
        "byid": {
            "type": "identify",
            "by": "collected",
            "value": "number",
            "found": "desk",
            "not_found": "xfer",
        },
        "late": {
            "type": "callback",
            "queue": "q",
            "skills": [{"skill": "s", "min_level": 4}],
            "prompt": t("later"),
        },
        "desk": {"type": "enqueue", "queue": "q", "skills": [{"skill": "s"}], "prompt": t("wait")},
        "xfer": {"type": "transfer", "number": "+861012345"},
        "bye": {"type": "hangup", "prompt": t("bye")},
    },
}


def lab(**changes: Any) -> Flow:
    """The lab flow, with top-level fields or nodes (``node__field``) changed."""
    document = deepcopy(LAB)
    for key, value in changes.items():
        if "__" in key:
            node, field = key.split("__")
            document["nodes"][node][field] = value
        else:
            document[key] = value
    return parse_flow(document)


FLOW = lab()


def speaking(*languages: str) -> dict[str, Any]:
    """The lab flow's document speaking ``languages`` (each new one's prompts copied from
    Chinese)."""
    document = deepcopy(LAB)
    document["languages"] = list(languages)
    for node in document["nodes"].values():
        for prompt in _prompts(node):
            for language in languages:
                prompt.setdefault(language, prompt["zh-CN"])
    return document


def starting_at(name: str) -> Flow:
    """The lab flow starting elsewhere (leaving nodes unreachable: unvalidated)."""
    return FLOW.model_copy(update={"start": name})


# Scripts that bring a call to a situation, from a new call.
TO_LANG: list[Event] = [CallStarted(CALLER, CALLED), NotIdentified()]
TO_MAIN: list[Event] = [*TO_LANG, Digits("2")]
TO_SUB: list[Event] = [*TO_MAIN, Digits("1")]
TO_REF: list[Event] = [*TO_MAIN, Digits("2")]
TO_NUM: list[Event] = [*TO_MAIN, Digits("3")]
TO_CONFIRM: list[Event] = [*TO_NUM, Digits("1234*")]
TO_BYID: list[Event] = [*TO_CONFIRM, Digits("8")]
TO_STATUS: list[Event] = [*TO_REF, Digits("20261122000123")]


# Hinted in every speech menu of a flow whose operator key is on.
OPERATOR = prompts.OPERATOR_PHRASES


def walk(
    events: Sequence[Event],
    flow: Flow = FLOW,
    now: datetime = NOW,
    calendar: WorkCalendar | None = None,
) -> Step:
    """Feed ``events`` to a new call; the last step."""
    state = new_call(flow)
    done = Step(state, (), ())
    for event in events:
        done = step(flow, done.state, event, now, calendar)
    return done


def results(done: Step) -> list[tuple[str, str]]:
    return [(entry.node, entry.result) for entry in done.transcript]


def said(done: Step) -> list[str]:
    return [a.text for a in done.actions if isinstance(a, Say)]


def voiced(done: Step) -> list[tuple[str, str]]:
    return [(a.text, a.language) for a in done.actions if isinstance(a, Say)]


class TestEnteringEachNodeType:
    """What the call does on entering a node of each type."""

    def test_a_menu_in_each_language_says_its_prompt_in_each_and_hears_every_phrase(
        self,
    ) -> None:
        done = walk(TO_LANG, lab(lang__each_language=True))
        says = [a for a in done.actions if isinstance(a, Say)]
        assert [(a.text, a.language) for a in says] == [("lang", "zh-CN"), ("LANG", "en-US")]
        [gather] = [a for a in done.actions if isinstance(a, Gather)]
        assert (gather.language, gather.hints) == ("zh-CN", ("中文", "english", *OPERATOR))

    def test_a_menu_in_each_language_says_its_re_prompts_in_each_too(self) -> None:
        flow = lab(lang__each_language=True)
        silence = walk([*TO_LANG, NoInput()], flow)
        assert voiced(silence) == [
            ("lang-silence-zh", "zh-CN"),
            ("lang-silence-en", "en-US"),
            ("lang", "zh-CN"),
            ("LANG", "en-US"),
        ]
        wrong = walk([*TO_LANG, Digits("9")], flow)
        assert voiced(wrong)[:2] == [("lang-invalid-zh", "zh-CN"), ("lang-invalid-en", "en-US")]

    def test_a_menu_speaks_the_callers_language_only_by_default(self) -> None:
        done = walk(TO_LANG)
        assert [(a.text, a.language) for a in done.actions if isinstance(a, Say)] == [
            ("lang", "zh-CN")
        ]
        [gather] = [a for a in done.actions if isinstance(a, Gather)]
        assert gather.hints == ("中文", *OPERATOR)

    def test_identify_by_caller_asks_the_shell(self) -> None:
        done = walk([CallStarted(CALLER, CALLED)])
        assert done.actions == (Lookup(LookupKind.CUSTOMER_BY_NUMBER, CALLER),)
        assert (done.state.phase, done.state.node, done.state.lookup) == (
            Phase.LOOKUP,
            "who",
            LookupKind.CUSTOMER_BY_NUMBER,
        )
        assert (done.state.caller, done.state.called) == (CALLER, CALLED)

    def test_identify_without_a_caller_number_is_a_miss_at_once(self) -> None:
        done = walk([CallStarted("", CALLED)])
        assert results(done) == [("who", "not_found"), ("lang", "asked")]
        assert said(done) == ["lang"]

    def test_menu_says_its_prompt_and_gathers_keys_and_speech(self) -> None:
        done = walk(TO_LANG)
        assert done.actions == (
            Say("lang", "zh-CN"),
            Gather(1, "", 5, True, "zh-CN", ("中文", *OPERATOR)),
        )
        assert (done.state.phase, done.state.node) == (Phase.INPUT, "lang")

    def test_menu_without_speech_gathers_keys_only(self) -> None:
        done = walk(TO_SUB)
        assert done.actions[-1] == Gather(1, "", 5, False, "en-US", ())

    def test_collect_gathers_up_to_its_length_with_its_finish_key(self) -> None:
        done = walk(TO_REF)
        assert done.actions == (Say("REF", "en-US"), Gather(20, "#", 8, False, "en-US"))

    def test_say_then_business_hours_run_without_waiting(self) -> None:
        done = walk([CallStarted(CALLER, CALLED), Identified(5, "gold")])
        assert results(done) == [
            ("who", "found"),
            ("hello", "said"),
            ("hours", "open"),
            ("main", "asked"),
        ]
        assert said(done) == ["hello", "main"]

    def test_complaint_status_asks_the_shell_with_the_collected_reference(self) -> None:
        done = walk(TO_STATUS)
        assert done.actions == (Lookup(LookupKind.COMPLAINT_STATUS, "C-20261122-000123"),)
        assert done.state.collected == {"reference": "C-20261122-000123"}

    def test_complaint_status_without_a_reference_is_a_miss_at_once(self) -> None:
        flow = starting_at("status")
        done = walk([CallStarted(CALLER, CALLED)], flow)
        assert results(done) == [("status", "not_found"), ("main", "asked")]

    def test_identify_by_a_collected_value_asks_the_shell(self) -> None:
        done = walk(TO_BYID)
        assert done.actions == (Lookup(LookupKind.CUSTOMER_BY_ID, "1234X"),)

    def test_identify_by_a_value_never_collected_is_a_miss_at_once(self) -> None:
        flow = starting_at("byid")
        done = walk([CallStarted(CALLER, CALLED)], flow)
        assert results(done)[0] == ("byid", "not_found")
        assert done.state.outcome is Outcome.TRANSFERRED


class TestEndingNodes:
    """The ways out of the IVR, each with its actions and outcome."""

    @pytest.mark.parametrize(
        ("script", "actions", "outcome", "node"),
        [
            (
                [*TO_SUB, Digits("1")],
                (
                    Say("WAIT", "en-US"),
                    Enqueue("q", (SkillNeed("s", 1),), None, None, "en-US", {}),
                ),
                Outcome.ENQUEUED,
                "desk",
            ),
            (
                [*TO_MAIN, Speech("please call me", 0.9)],
                (
                    Say("LATER", "en-US"),
                    Callback("q", (SkillNeed("s", 4),), CALLER, None, None, "en-US"),
                    EndCall(),
                ),
                Outcome.CALLBACK,
                "late",
            ),
            ([*TO_MAIN, Digits("4")], (Dial("+861012345"),), Outcome.TRANSFERRED, "xfer"),
            ([*TO_MAIN, Digits("5")], (Say("BYE", "en-US"), EndCall()), Outcome.ENDED, "bye"),
        ],
        ids=["enqueue", "callback", "transfer", "hangup"],
    )
    def test_ending_node(
        self, script: list[Event], actions: tuple[Any, ...], outcome: Outcome, node: str
    ) -> None:
        done = walk(script)
        assert done.actions == actions
        assert (done.state.phase, done.state.outcome, done.state.node) == (
            Phase.FINISHED,
            outcome,
            node,
        )
        assert done.transcript[-1].outcome is outcome

    def test_enqueue_carries_what_the_ivr_learnt(self) -> None:
        done = walk([*TO_BYID, Identified(42, "platinum", "en")])
        assert done.actions[-1] == Enqueue(
            "q", (SkillNeed("s", 1),), "platinum", 42, "en-US", {"number": "1234X"}
        )

    def test_enqueue_and_transfer_without_prompts_say_nothing(self) -> None:
        flow = lab(desk__prompt=None, xfer__prompt=t("away"))
        assert walk([*TO_SUB, Digits("1")], flow).actions[0].__class__ is Enqueue
        assert said(walk([*TO_MAIN, Digits("4")], flow)) == ["AWAY"]

    def test_hangup_without_prompt_only_hangs_up(self) -> None:
        flow = lab(bye__prompt=None)
        assert walk([*TO_MAIN, Digits("5")], flow).actions == (EndCall(),)

    def test_callback_for_a_withheld_number_says_so_and_enqueues_instead(self) -> None:
        done = walk([CallStarted("", CALLED), Digits("2"), Speech("call me", 0.9)])
        assert done.actions == (
            Say(prompts.NO_CALLBACK["en-US"], "en-US"),
            Enqueue("q", (SkillNeed("s", 4),), None, None, "en-US", {}),
        )
        assert done.state.outcome is Outcome.ENQUEUED

    @pytest.mark.parametrize(
        ("language", "told"),
        [
            ("zh-CN", [prompts.NO_CALLBACK["zh-CN"]]),
            ("en-US", [prompts.NO_CALLBACK["en-US"]]),
            ("yue-HK", []),
        ],
    )
    def test_a_withheld_caller_is_told_in_their_language_when_there_are_words_for_it(
        self, language: str, told: list[str]
    ) -> None:
        document = speaking("zh-CN", "en-US", "yue-HK")
        document["nodes"]["lang"]["options"][0]["language"] = language
        later = next(o for o in document["nodes"]["main"]["options"] if o["next"] == "late")
        later["key"] = "7"
        done = walk([CallStarted("", CALLED), Digits("1"), Digits("7")], parse_flow(document))
        assert [a.text for a in done.actions if isinstance(a, Say)] == told
        assert isinstance(done.actions[-1], Enqueue)

    def test_hangup_after_a_status_read_back_is_served(self) -> None:
        found = ComplaintFound("C-20261122-000123", "in_progress", NOW)
        done = walk([*TO_STATUS, found])
        reference = "C - 2 0 2 6 1 1 2 2 - 0 0 0 1 2 3"
        assert said(done) == [f"{reference} being handled 2 December 2026", "BYE"]
        assert done.state.outcome is Outcome.SERVED
        assert done.state.served


class TestMenuAnswers:
    """Every way a menu takes an answer, and both counters to their maximum."""

    @pytest.mark.parametrize(
        ("script", "node", "result", "phase"),
        [
            ([*TO_MAIN, Digits("1")], "sub", "option", Phase.INPUT),
            ([*TO_MAIN, Speech("我要办信用卡", 0.8)], "sub", "option", Phase.INPUT),
            ([*TO_MAIN, Speech("Credit-Card!", 0.5)], "sub", "option", Phase.INPUT),
            ([*TO_MAIN, Speech("1", 0.9)], "sub", "option", Phase.INPUT),
            ([*TO_MAIN, Speech("一", 0.9)], "sub", "option", Phase.INPUT),
            ([*TO_MAIN, Speech("幺", 0.9)], "sub", "option", Phase.INPUT),
            ([*TO_MAIN, Speech("One.", 0.9)], "sub", "option", Phase.INPUT),
            ([*TO_MAIN, Speech("按一", 0.9)], "sub", "option", Phase.INPUT),
            ([*TO_MAIN, Speech("press one", 0.9)], "sub", "option", Phase.INPUT),
            ([*TO_MAIN, Speech("九", 0.9)], "main", "invalid", Phase.INPUT),
            ([*TO_MAIN, Speech("eleven", 0.9)], "main", "invalid", Phase.INPUT),
            ([*TO_MAIN, Speech("credit card", 0.49)], "main", "invalid", Phase.INPUT),
            ([*TO_MAIN, Speech("credit card number", 0.9)], "main", "invalid", Phase.INPUT),
            ([*TO_MAIN, Speech("weather", 0.9)], "main", "invalid", Phase.INPUT),
            ([*TO_MAIN, Speech("", 0.9)], "main", "invalid", Phase.INPUT),
            ([*TO_SUB, Speech("1", 0.9)], "sub", "invalid", Phase.INPUT),
            ([*TO_MAIN, Digits("0")], "desk", "operator", Phase.FINISHED),
            ([*TO_MAIN, Digits("*")], "main", "repeat", Phase.INPUT),
            ([*TO_MAIN, Digits("#")], "lang", "back", Phase.INPUT),
            ([*TO_LANG, Digits("#")], "lang", "repeat", Phase.INPUT),
            ([*TO_MAIN, Digits("9")], "main", "invalid", Phase.INPUT),
            ([*TO_MAIN, Digits("12")], "main", "invalid", Phase.INPUT),
            ([*TO_MAIN, Digits("9"), Digits("9")], "desk", "fallback", Phase.FINISHED),
            ([*TO_MAIN, NoInput()], "main", "no_input", Phase.INPUT),
            ([*TO_MAIN, Digits("")], "main", "no_input", Phase.INPUT),
            ([*TO_MAIN, Timer()], "main", "no_input", Phase.INPUT),
            ([*TO_MAIN, NoInput(), NoInput()], "main", "no_input", Phase.INPUT),
            ([*TO_MAIN, NoInput(), Timer("x"), NoInput()], "bye", "fallback", Phase.FINISHED),
        ],
        ids=[
            "key",
            "phrase-inside-a-sentence",
            "phrase-case-and-punctuation",
            "spoken-key",
            "spoken-chinese-numeral",
            "spoken-yao-for-one",
            "spoken-english-word",
            "spoken-press-in-chinese",
            "spoken-press-in-english",
            "spoken-key-no-option-has",
            "spoken-number-no-key-is",
            "low-confidence",
            "two-options-heard",
            "nothing-heard-matches",
            "empty-speech",
            "speech-off",
            "operator",
            "repeat",
            "back",
            "back-without-history",
            "invalid-key",
            "two-keys",
            "invalid-at-max",
            "silence",
            "empty-digits",
            "timer",
            "silence-twice",
            "silence-at-max",
        ],
    )
    def test_answer(self, script: list[Event], node: str, result: str, phase: Phase) -> None:
        done = walk(script)
        at = [r for r in results(done) if r[1] != "asked"]
        assert at[0][1] == result
        assert (done.state.node, done.state.phase) == (node, phase)

    def test_invalid_answer_re_prompts_then_repeats_the_menu(self) -> None:
        done = walk([*TO_MAIN, Digits("9")])
        assert said(done) == ["main-invalid-en", "MAIN"]
        assert (done.state.invalid, done.state.no_input) == (1, 0)
        assert done.transcript[0].prompt == "invalid.prompt"

    def test_silence_re_prompts_with_its_own_prompt(self) -> None:
        done = walk([*TO_MAIN, NoInput()])
        assert said(done) == ["main-silence-en", "MAIN"]
        assert (done.state.invalid, done.state.no_input) == (0, 1)

    def test_the_counters_are_separate(self) -> None:
        # Two silences and one invalid key: neither counter reaches its maximum of 3 and 2.
        done = walk([*TO_MAIN, NoInput(), Digits("9"), NoInput()])
        assert (done.state.node, done.state.no_input, done.state.invalid) == ("main", 2, 1)

    def test_repeat_keeps_the_counters(self) -> None:
        done = walk([*TO_MAIN, NoInput(), Digits("*")])
        assert said(done) == ["MAIN"]
        assert done.state.no_input == 1

    def test_entering_a_node_resets_its_counters(self) -> None:
        done = walk([*TO_MAIN, NoInput(), Digits("9"), Digits("1"), Digits("2")])
        assert (done.state.node, done.state.no_input, done.state.invalid) == ("main", 0, 0)

    def test_an_option_sets_the_language_and_the_next_prompt_uses_it(self) -> None:
        done = walk([*TO_LANG, Speech("English please", 0.9)])
        assert done.state.language == "en-US"
        assert done.state.language_chosen
        assert said(done) == ["MAIN"]

    def test_back_returns_through_a_bounded_history(self) -> None:
        # lang -> main -> sub -> main -> sub: history keeps the last two menus left.
        script = [*TO_SUB, Digits("2"), Digits("1")]
        assert walk(script).state.history == ("sub", "main")
        done = walk([*script, Digits("2"), Digits("#")])
        assert (done.state.node, done.state.history) == ("sub", ("main",))

    def test_no_history_kept_when_the_limit_is_zero(self) -> None:
        flow = lab(limits={"history": 0})
        assert walk(TO_SUB, flow).state.history == ()


SWITCHING = lab(
    keys={
        **LAB["keys"],
        "language": "7",
        "language_prompt": {"zh-CN": "中文请按7", "en-US": "english-7"},
    }
)


class TestTheLanguageKey:
    """A flow's language key: offered after every menu's prompt in each other language, each
    in its own voice; pressed in any menu, the next language (round), the menu said again."""

    def test_every_menu_offers_the_other_languages_after_its_prompt(self) -> None:
        done = walk(TO_MAIN, SWITCHING)  # English chosen at the language menu
        assert voiced(done) == [("MAIN", "en-US"), ("中文请按7", "zh-CN")]
        [gather] = [a for a in done.actions if isinstance(a, Gather)]
        assert gather.language == "en-US"

    def test_a_menu_in_each_language_needs_no_offer(self) -> None:
        flow = lab(lang__each_language=True, keys=SWITCHING.keys.model_dump())
        assert voiced(walk(TO_LANG, flow)) == [("lang", "zh-CN"), ("LANG", "en-US")]

    def test_the_key_changes_the_language_and_says_the_menu_again_in_it(self) -> None:
        done = walk([*TO_MAIN, NoInput(), Digits("7")], SWITCHING)
        assert (done.state.language, done.state.language_chosen) == ("zh-CN", True)
        assert voiced(done) == [("main", "zh-CN"), ("english-7", "en-US")]
        [gather] = [a for a in done.actions if isinstance(a, Gather)]
        assert gather.language == "zh-CN"  # speech heard in the new language
        assert results(done) == [("main", "language")]
        assert done.transcript[0].input == "digits:7"
        assert (done.state.node, done.state.no_input) == ("main", 1)  # counters kept

    def test_pressed_again_it_goes_round_the_flows_languages(self) -> None:
        done = walk([*TO_MAIN, Digits("7"), Digits("7")], SWITCHING)
        assert done.state.language == "en-US"
        assert voiced(done) == [("MAIN", "en-US"), ("中文请按7", "zh-CN")]

    def test_the_language_chosen_by_key_is_kept_by_the_next_menus(self) -> None:
        done = walk([*TO_MAIN, Digits("7"), Digits("1")], SWITCHING)
        assert (done.state.node, done.state.language) == ("sub", "zh-CN")
        assert voiced(done)[0] == ("sub", "zh-CN")

    def test_identification_after_the_key_keeps_the_language_the_caller_chose(self) -> None:
        known: list[Event] = [CallStarted(CALLER, CALLED), Identified(1, "gold", "zh-CN")]
        assert walk(known, SWITCHING).state.language == "zh-CN"  # their stored language
        by_id = [*known, Digits("7"), Digits("3"), Digits("1234*"), Digits("8")]
        assert walk(by_id, SWITCHING).state.lookup is LookupKind.CUSTOMER_BY_ID
        done = walk([*by_id, Identified(2, "gold", "zh-CN")], SWITCHING)
        assert done.state.language == "en-US"

    def test_without_the_key_there_is_no_offer_and_the_key_is_invalid(self) -> None:
        done = walk([*TO_MAIN, Digits("7")])
        assert results(done) == [("main", "invalid")]
        assert done.state.language == "en-US"


def with_languages(*languages: str, **keys: Any) -> Flow:
    """The lab flow speaking ``languages``, with ``keys`` changed."""
    document = speaking(*languages)
    document["keys"] = {**LAB["keys"], **keys}
    return parse_flow(document)


class TestAskedInWords:
    """In any menu a caller may ask in words for what a global key does: a person, or a
    language by its name. Options come first; the menu's counters are those of a key."""

    @pytest.mark.parametrize(
        "said", ["转人工", "我要人工服务", "客服", "Operator, please", "an agent", "ZERO", "按零"]
    )
    def test_asking_for_a_person_reaches_the_operator_node(self, said: str) -> None:
        done = walk([*TO_MAIN, Speech(said, 0.8)])
        assert results(done)[0] == ("main", "operator")
        assert (done.state.node, done.state.phase) == ("desk", Phase.FINISHED)

    def test_asking_for_a_person_with_the_operator_key_off_is_invalid(self) -> None:
        flow = lab(keys={**LAB["keys"], "operator": None, "operator_node": None})
        for said in ("转人工", "zero"):
            assert results(walk([*TO_MAIN, Speech(said, 0.9)], flow)) == [("main", "invalid")]

    def test_an_option_named_comes_before_a_person_asked_for(self) -> None:
        done = walk([*TO_MAIN, Speech("call me back, no agent", 0.9)])
        assert done.state.node == "late"
        assert results(done)[0] == ("main", "option")

    def test_two_options_heard_stay_invalid_whatever_else_is_said(self) -> None:
        done = walk([*TO_MAIN, Speech("credit card number, operator", 0.9)])
        assert results(done) == [("main", "invalid")]

    def test_a_person_asked_for_below_the_confidence_is_invalid(self) -> None:
        assert results(walk([*TO_MAIN, Speech("转人工", 0.49)])) == [("main", "invalid")]

    @pytest.mark.parametrize(
        ("said", "language"),
        [
            ("中文", "zh-CN"),
            ("说普通话", "zh-CN"),
            ("Mandarin please", "zh-CN"),
            ("English", "en-US"),
            ("英文", "en-US"),
            ("seven", "zh-CN"),  # the language key said: the next language
        ],
    )
    def test_naming_a_language_says_the_menu_again_in_it(self, said: str, language: str) -> None:
        done = walk([*TO_MAIN, NoInput(), Speech(said, 0.9)], SWITCHING)
        assert (done.state.language, done.state.language_chosen) == (language, True)
        assert results(done) == [("main", "language")]
        assert (done.state.node, done.state.no_input) == ("main", 1)  # counters kept
        [gather] = [a for a in done.actions if isinstance(a, Gather)]
        assert gather.language == language

    def test_without_the_language_key_a_language_named_is_invalid(self) -> None:
        done = walk([*TO_MAIN, Speech("中文", 0.9)])
        assert results(done) == [("main", "invalid")]
        assert done.state.language == "en-US"

    def test_a_name_two_of_the_flows_languages_answer_to_is_invalid(self) -> None:
        offer = {"zh-CN": "中文请按7", "en-US": "english-7", "zh-HK": "廣東話請按7"}
        flow = with_languages("zh-CN", "en-US", "zh-HK", language="7", language_prompt=offer)
        assert results(walk([*TO_MAIN, Speech("中文", 0.9)], flow)) == [("main", "invalid")]
        done = walk([*TO_MAIN, Speech("广东话", 0.9)], flow)
        assert (done.state.language, results(done)) == ("zh-HK", [("main", "language")])

    def test_the_recogniser_is_told_to_expect_the_words_for_a_person_and_a_language(
        self,
    ) -> None:
        [gather] = [a for a in walk(TO_MAIN, SWITCHING).actions if isinstance(a, Gather)]
        options = ("credit card", "card number", "call me")  # main's phrases in English
        assert gather.hints == (*options, *OPERATOR, *prompts.language_names("zh-CN"))
        # Each once: the language menu's "english" is also English's name.
        flow = lab(lang__each_language=True, keys=SWITCHING.keys.model_dump())
        [gather] = [a for a in walk(TO_LANG, flow).actions if isinstance(a, Gather)]
        assert gather.hints == ("中文", "english", *OPERATOR, "英文", "英语", "英語")
        # Neither where the keys are off.
        plain = lab(keys={**LAB["keys"], "operator": None, "operator_node": None})
        [gather] = [a for a in walk(TO_MAIN, plain).actions if isinstance(a, Gather)]
        assert gather.hints == options

    def test_a_language_the_flow_does_not_speak_is_invalid(self) -> None:
        done = walk([*TO_MAIN, Speech("Cantonese", 0.9)], SWITCHING)
        assert results(done) == [("main", "invalid")]


class TestCollectAnswers:
    """Collected values: lengths, characters, finish key, validator, confirm step."""

    @pytest.mark.parametrize(
        ("script", "node", "result", "phase"),
        [
            ([*TO_REF, Digits("20261122000123")], "status", "collected", Phase.LOOKUP),
            ([*TO_REF, Digits("20261122000123#")], "status", "collected", Phase.LOOKUP),
            ([*TO_REF, Digits("20261122000123*")], "ref", "invalid", Phase.INPUT),
            ([*TO_REF, Digits("20261131000123")], "ref", "invalid", Phase.INPUT),
            ([*TO_REF, Digits("2026112200012")], "ref", "invalid", Phase.INPUT),
            ([*TO_NUM, Digits("1234")], "num", "collected", Phase.CONFIRM),
            ([*TO_NUM, Digits("123*")], "num", "collected", Phase.CONFIRM),
            ([*TO_NUM, Digits("12*4")], "num", "invalid", Phase.INPUT),
            ([*TO_NUM, Digits("12#4")], "num", "invalid", Phase.INPUT),
            ([*TO_NUM, Digits("123")], "num", "invalid", Phase.INPUT),
            ([*TO_NUM, Digits("1234567")], "num", "invalid", Phase.INPUT),
            ([*TO_NUM, Speech("one two three four", 0.9)], "num", "invalid", Phase.INPUT),
            ([*TO_NUM, NoInput()], "num", "no_input", Phase.INPUT),
            ([*TO_NUM, Digits("1"), Digits("1")], "desk", "fallback", Phase.FINISHED),
            ([*TO_CONFIRM, Digits("8")], "byid", "confirmed", Phase.LOOKUP),
            ([*TO_CONFIRM, Digits("1")], "num", "reenter", Phase.INPUT),
            ([*TO_CONFIRM, Speech("yes", 0.9)], "num", "invalid", Phase.CONFIRM),
            ([*TO_CONFIRM, NoInput()], "num", "no_input", Phase.CONFIRM),
            ([*TO_CONFIRM, NoInput(), Timer()], "bye", "fallback", Phase.FINISHED),
        ],
        ids=[
            "valid",
            "finish-key-dropped",
            "star-is-not-data-here",
            "validator-refuses",
            "too-short-for-the-validator",
            "valid-asks-to-confirm",
            "star-as-x-at-the-end",
            "star-only-at-the-end",
            "hash-is-not-data",
            "shorter-than-min",
            "longer-than-max",
            "speech-is-not-taken",
            "silence",
            "invalid-at-max",
            "confirm-key",
            "other-key-re-enters",
            "speech-at-confirm",
            "silence-at-confirm",
            "silence-at-confirm-at-max",
        ],
    )
    def test_answer(self, script: list[Event], node: str, result: str, phase: Phase) -> None:
        done = walk(script)
        at = [r for r in results(done) if r[1] != "asked"]
        assert at[0][1] == result
        assert (done.state.node, done.state.phase) == (node, phase)

    def test_confirm_reads_back_the_tail_and_gathers_one_key(self) -> None:
        done = walk(TO_CONFIRM)
        assert done.actions == (
            Say("CONFIRM 2 3 4 X", "en-US"),
            Gather(1, "", 8, False, "en-US"),
        )
        assert done.state.pending == "1234X"
        assert done.state.collected == {}

    def test_confirm_accepts_the_pending_value(self) -> None:
        done = walk([*TO_CONFIRM, Digits("8")])
        assert (done.state.collected, done.state.pending) == ({"number": "1234X"}, None)

    def test_re_entering_asks_for_the_value_again(self) -> None:
        done = walk([*TO_CONFIRM, Digits("5")])
        assert done.actions[-1] == Gather(6, "", 8, False, "en-US")
        assert (done.state.pending, done.state.invalid) == (None, 0)

    def test_silence_at_confirm_repeats_the_confirm_prompt(self) -> None:
        done = walk([*TO_CONFIRM, NoInput()])
        assert said(done) == ["num-silence-en", "CONFIRM 2 3 4 X"]

    def test_collected_keys_are_masked_in_the_transcript(self) -> None:
        done = walk([*TO_NUM, Digits("123456")])
        assert done.transcript[0].input == "digits:**3456"


class TestLookupAnswers:
    """The shell's answers to the machine's lookups."""

    def test_identified_sets_customer_tier_and_a_matching_language(self) -> None:
        done = walk([CallStarted(CALLER, CALLED), Identified(9, "gold", "en")])
        state = done.state
        assert (state.customer_id, state.tier, state.language) == (9, "gold", "en-US")
        assert said(done) == ["HELLO", "MAIN"]

    @pytest.mark.parametrize("language", [None, "", "fr-FR"])
    def test_identified_without_a_flow_language_keeps_the_default(
        self, language: str | None
    ) -> None:
        done = walk([CallStarted(CALLER, CALLED), Identified(9, "gold", language)])
        assert done.state.language == "zh-CN"

    def test_a_chosen_language_is_kept_after_identification(self) -> None:
        done = walk([*TO_BYID, Identified(9, "gold", "zh-CN")])
        assert done.state.language == "en-US"

    def test_not_identified_takes_the_not_found_branch(self) -> None:
        done = walk([*TO_BYID, NotIdentified()])
        assert results(done) == [("byid", "not_found"), ("xfer", "transferred")]
        assert done.state.customer_id is None

    def test_complaint_not_found_takes_the_not_found_branch(self) -> None:
        done = walk([*TO_STATUS, ComplaintNotFound()])
        assert results(done) == [("status", "not_found"), ("main", "asked")]
        assert not done.state.served

    def test_complaint_found_in_chinese_reads_status_and_day(self) -> None:
        flow = lab(status__found="main")
        script: list[Event] = [
            CallStarted(CALLER, CALLED),
            NotIdentified(),
            Digits("1"),
            Digits("2"),
        ]
        found = ComplaintFound("C-20261122-000123", "closed", datetime(2026, 12, 3, 16, tzinfo=UTC))
        done = walk([*script, Digits("20261122000123"), found], flow)
        assert said(done)[0] == "C - 2 0 2 6 1 1 2 2 - 0 0 0 1 2 3 已办结 2026年12月3日"

    def test_a_deadline_without_a_day_reads_as_nothing(self) -> None:
        found = ComplaintFound("C-20261122-000123", "mystery_state", None)
        done = walk([*TO_STATUS, found])
        assert said(done)[0].endswith(" mystery state ")

    @pytest.mark.parametrize(
        ("script", "answer"),
        [
            ([CallStarted(CALLER, CALLED)], ComplaintFound("C-20261122-000123", "closed")),
            ([CallStarted(CALLER, CALLED)], ComplaintNotFound()),
            (TO_STATUS, Identified(1, "gold")),
            (TO_STATUS, NotIdentified()),
        ],
        ids=[
            "status-answer-to-identify",
            "status-miss-to-identify",
            "id-to-status",
            "miss-to-status",
        ],
    )
    def test_an_answer_of_the_wrong_kind_is_refused(
        self, script: list[Event], answer: Event
    ) -> None:
        state = walk(script).state
        with pytest.raises(UnexpectedEvent, match="phase lookup"):
            step(FLOW, state, answer, NOW)


class TestBusinessHours:
    """Open or closed by weekday hours, public holidays and make-up working days."""

    CALENDAR = WorkCalendar(
        holidays=frozenset({date(2026, 12, 2), date(2026, 12, 7)}),
        workdays=frozenset({date(2026, 12, 5), date(2026, 12, 6)}),
        years=frozenset({2026}),
    )

    @pytest.mark.parametrize(
        ("local", "calendar", "branch"),
        [
            ("2026-12-02T09:00", None, "open"),  # Wednesday, opening minute
            ("2026-12-02T17:59", None, "open"),
            ("2026-12-02T18:00", None, "closed"),  # closing minute is closed
            ("2026-12-02T08:59", None, "closed"),
            ("2026-12-03T11:00", None, "closed"),  # Thursday: not listed
            ("2026-12-05T11:00", None, "open"),  # Saturday's own hours
            ("2026-12-02T11:00", CALENDAR, "open"),  # holiday, holiday hours
            ("2026-12-02T13:00", CALENDAR, "closed"),
            ("2026-12-05T17:00", CALENDAR, "open"),  # make-up Saturday keeps Monday's hours
            ("2026-12-06T08:00", CALENDAR, "closed"),
            ("2026-12-09T11:00", CALENDAR, "open"),  # an ordinary Wednesday
        ],
    )
    def test_branch(self, local: str, calendar: WorkCalendar | None, branch: str) -> None:
        now = datetime.fromisoformat(local + "+08:00")
        done = walk(
            [CallStarted(CALLER, CALLED), Identified(1, "gold")], now=now, calendar=calendar
        )
        assert ("hours", branch) in results(done)

    def test_holiday_without_holiday_hours_is_closed(self) -> None:
        flow = lab(hours__holiday=None)
        now = datetime.fromisoformat("2026-12-02T11:00+08:00")
        done = walk([CallStarted(CALLER, CALLED), Identified(1, "g")], flow, now, self.CALENDAR)
        assert ("hours", "closed") in results(done)

    def test_make_up_day_with_its_own_hours(self) -> None:
        flow = lab(hours__makeup="07:00-08:00")
        now = datetime.fromisoformat("2026-12-05T07:30+08:00")
        done = walk([CallStarted(CALLER, CALLED), Identified(1, "g")], flow, now, self.CALENDAR)
        assert ("hours", "open") in results(done)

    def test_a_naive_now_is_refused(self) -> None:
        with pytest.raises(ValueError, match="aware"):
            walk([CallStarted(CALLER, CALLED), Identified(1, "g")], now=datetime(2026, 12, 2, 11))


class TestCallerHangsUp:
    """A hang-up in every phase ends the call in the IVR, at the node it was at."""

    @pytest.mark.parametrize(
        ("script", "node", "outcome"),
        [
            ([], "who", Outcome.HUNG_UP),
            ([CallStarted(CALLER, CALLED)], "who", Outcome.HUNG_UP),
            (TO_MAIN, "main", Outcome.HUNG_UP),
            (TO_CONFIRM, "num", Outcome.HUNG_UP),
            ([*TO_STATUS, ComplaintFound("C-20261122-000123", "closed")], "main", Outcome.SERVED),
        ],
        ids=["before-start", "lookup", "menu", "confirm", "after-served"],
    )
    def test_hangup(self, script: list[Event], node: str, outcome: Outcome) -> None:
        done = walk([*script, Hangup()], lab(status__found="main"))
        assert done.actions == ()
        assert (done.state.phase, done.state.node, done.state.outcome) == (
            Phase.FINISHED,
            node,
            outcome,
        )
        assert done.transcript == (TranscriptEntry(node, "hangup", None, outcome.value, outcome),)


class TestEveryPhaseAndEvent:
    """The whole move table: each (phase, event) is taken, refused, or ignored."""

    SITUATIONS: ClassVar[dict[Phase, list[Event]]] = {
        Phase.NEW: [],
        Phase.INPUT: TO_MAIN,
        Phase.CONFIRM: TO_CONFIRM,
        Phase.LOOKUP: [CallStarted(CALLER, CALLED)],
        Phase.FINISHED: [*TO_MAIN, Digits("0")],
    }
    EVENTS: ClassVar[list[Event]] = [
        CallStarted(CALLER, CALLED),
        Digits("1"),
        Speech("hello", 0.9),
        NoInput(),
        Hangup(),
        Timer(),
        Identified(1, "gold"),
        NotIdentified(),
        ComplaintFound("C-20261122-000123", "closed"),
        ComplaintNotFound(),
    ]
    TAKEN: ClassVar[dict[Phase, set[type[Any]]]] = {
        Phase.NEW: {CallStarted, Hangup},
        Phase.INPUT: {Digits, Speech, NoInput, Timer, Hangup},
        Phase.CONFIRM: {Digits, Speech, NoInput, Timer, Hangup},
        Phase.LOOKUP: {Identified, NotIdentified, Hangup},  # identify's lookup
        Phase.FINISHED: set(),
    }

    @pytest.mark.parametrize(
        ("phase", "event"),
        list(itertools.product(list(Phase), EVENTS)),
        ids=lambda v: v.value if isinstance(v, Phase) else type(v).__name__,
    )
    def test_pair(self, phase: Phase, event: Event) -> None:
        state = walk(self.SITUATIONS[phase]).state
        assert state.phase is phase
        if phase is Phase.FINISHED:
            assert step(FLOW, state, event, NOW) == Step(state, (), ())
        elif type(event) in self.TAKEN[phase]:
            done = step(FLOW, state, event, NOW)
            assert done.transcript
        else:
            with pytest.raises(UnexpectedEvent):
                step(FLOW, state, event, NOW)


class TestInputBudget:
    """Past ``limits.max_inputs`` caller inputs, the call goes to the operator or ends."""

    def test_spent_budget_goes_to_the_operator(self) -> None:
        flow = lab(limits={"max_inputs": 5})
        # Going round main -> sub -> main is a choice each time; the budget ends it.
        going_round = [Digits("1"), Digits("2"), Digits("1"), Digits("2"), Digits("1")]
        done = walk([*TO_MAIN, *going_round], flow)
        assert done.state.outcome is Outcome.ENQUEUED
        assert results(done)[0] == ("main", "exhausted")
        assert done.state.inputs == 6

    @pytest.mark.parametrize(
        ("language", "goodbye"),
        [("zh-CN", [GOODBYE["zh-CN"]]), ("en-US", [GOODBYE["en-US"]]), ("yue-HK", [])],
    )
    def test_spent_budget_without_operator_ends_politely(
        self, language: str, goodbye: list[str]
    ) -> None:
        document = speaking("zh-CN", "en-US", "yue-HK")
        document["keys"] = {"operator": None}
        document["limits"] = {"max_inputs": 5}
        document["nodes"]["lang"]["options"][0]["language"] = language
        flow = parse_flow(document)
        patient: list[Event] = [
            Digits("1"),
            NoInput(),
            Digits("*"),
            NoInput(),
            Digits("*"),
            Digits("*"),
        ]
        done = walk([*TO_LANG, *patient], flow)
        assert said(done) == goodbye
        assert done.actions[-1] == EndCall()
        assert done.state.outcome is Outcome.ENDED


def _prompts(node: dict[str, Any]) -> list[dict[str, str]]:
    found = [node[k] for k in ("prompt",) if node.get(k)]
    found += [node[k]["prompt"] for k in ("no_input", "invalid", "confirm") if node.get(k)]
    return found


class TestGuards:
    """Mistakes of the shell or of a flow built without validation are refused, typed."""

    def test_a_state_of_another_flow_version_is_refused(self) -> None:
        state = walk(TO_MAIN).state
        with pytest.raises(StateError, match="lab v3"):
            step(lab(version=4), state, Digits("1"), NOW)

    def test_a_flow_that_loops_without_end_is_stopped(self) -> None:
        flow = FLOW.model_copy(
            update={
                "nodes": {
                    **FLOW.nodes,
                    "hello": FLOW.nodes["hello"].model_copy(update={"next": "hello"}),
                }
            }
        )
        with pytest.raises(FlowLoop, match="hello"):
            walk([CallStarted(CALLER, CALLED), Identified(1, "g")], flow)

    @pytest.mark.parametrize(
        ("node", "phase", "event", "message"),
        [
            ("hello", Phase.INPUT, Digits("1"), "takes no answers"),
            ("nowhere", Phase.INPUT, NoInput(), "takes no answers"),
            ("main", Phase.CONFIRM, Digits("8"), "no confirm step"),
            ("ref", Phase.CONFIRM, Digits("8"), "no confirm step"),
        ],
    )
    def test_a_state_waiting_where_it_cannot_is_refused(
        self, node: str, phase: Phase, event: Event, message: str
    ) -> None:
        state = CallState("lab", 3, "zh-CN", phase=phase, node=node)
        with pytest.raises(StateError, match=message):
            step(FLOW, state, event, NOW)

    def test_a_lookup_answer_at_a_node_that_makes_none_is_refused(self) -> None:
        state = CallState(
            "lab", 3, "zh-CN", phase=Phase.LOOKUP, node="main", lookup=LookupKind.COMPLAINT_STATUS
        )
        with pytest.raises(StateError, match="makes none"):
            step(FLOW, state, ComplaintNotFound(), NOW)


class TestStoredState:
    """The state survives JSON exactly, and a damaged or foreign one is refused."""

    @pytest.mark.parametrize(
        "script",
        [[], TO_MAIN, TO_CONFIRM, [*TO_BYID, Identified(4, "gold")], [*TO_SUB, Hangup()]],
    )
    def test_round_trip(self, script: list[Event]) -> None:
        state = walk(script).state
        assert CallState.from_json(state.to_json()) == state

    def test_the_document_is_versioned_and_plain(self) -> None:
        data = walk(TO_CONFIRM).state.to_json()
        assert data["v"] == 1
        assert data["phase"] == "confirm"
        assert data["pending"] == "1234X"

    @pytest.mark.parametrize(
        "damage",
        [
            {"v": 2},
            {"v": None},
            {"phase": "dancing"},
            {"inputs": True},
            {"inputs": "3"},
            {"served": 1},
            {"collected": {"a": 1}},
            {"collected": []},
            {"history": ["main", 2]},
            {"customer_id": "7"},
            {"lookup": "weather"},
            {"outcome": "won"},
            {"flow": None},
        ],
    )
    def test_damaged_state_is_refused(self, damage: dict[str, Any]) -> None:
        data = {**walk(TO_MAIN).state.to_json(), **damage}
        with pytest.raises(StateError):
            CallState.from_json(data)

    @pytest.mark.parametrize("data", [[], "state", {}])
    def test_not_a_state_is_refused(self, data: Any) -> None:
        with pytest.raises(StateError, match="unknown version"):
            CallState.from_json(data)

    def test_a_missing_field_is_refused(self) -> None:
        data = walk(TO_MAIN).state.to_json()
        del data["language_chosen"]
        with pytest.raises(StateError, match="damaged"):
            CallState.from_json(data)

    def test_transcript_records_are_plain_json(self) -> None:
        done = walk([*TO_MAIN, Digits("0")])
        assert [e.to_json() for e in done.transcript] == [
            {
                "node": "main",
                "input": "digits:0",
                "prompt": None,
                "result": "operator",
                "outcome": None,
            },
            {
                "node": "desk",
                "input": None,
                "prompt": "prompt",
                "result": "enqueued",
                "outcome": "enqueued",
            },
        ]
