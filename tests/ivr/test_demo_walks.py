"""The seed hotlines' flows, walked: scripted calls end to end, and random callers who always
get out of the IVR within a bound."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.ivr.flow import DEMO_FLOWS, CollectNode, Flow, MenuNode, parse_flow
from app.ivr.machine import (
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
    Say,
    SkillNeed,
    Speech,
    Timer,
    TranscriptEntry,
    new_call,
    step,
)

FLOWS = DEMO_FLOWS
NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)  # Wednesday, 11:00 in Shanghai
CALLER = "+8613900000009"
ID_KEYS = "11010519880808805*"  # a valid ID with 8s in it, ending in X (keyed as *)
ID = "11010519880808805X"
WRONG_CHECK = "110105198808088051"  # same ID, wrong check character
REFERENCE_KEYS = "20261122000123"
REFERENCE = "C-20261122-000123"


@cache
def demo(name: str) -> Flow:
    return parse_flow((FLOWS / f"{name}.yaml").read_text(encoding="utf-8"))


HOTLINE, CONSUMER, CARDS = "complaint_hotline_95561", "consumer_line", "credit_card_centre"
DEMOS = (HOTLINE, CONSUMER, CARDS)


@dataclass
class Call:
    """A call driven through a flow, keeping everything it heard and did."""

    flow: Flow
    state: CallState
    actions: list[Action] = field(default_factory=list)
    transcript: list[TranscriptEntry] = field(default_factory=list)
    last: tuple[Action, ...] = ()

    @classmethod
    def start(cls, name: str, caller: str = CALLER) -> Call:
        flow = demo(name)
        call = cls(flow, new_call(flow))
        call.send(CallStarted(caller, flow.numbers[0]))
        return call

    def send(self, *events: Event) -> Call:
        for event in events:
            done = step(self.flow, self.state, event, NOW)
            self.state, self.last = done.state, done.actions
            self.actions += done.actions
            self.transcript += done.transcript
        return self

    def said(self) -> list[str]:
        return [a.text for a in self.last if isinstance(a, Say)]

    @property
    def outcome(self) -> Outcome | None:
        return self.state.outcome


def enqueued(call: Call) -> Enqueue:
    found = [a for a in call.last if isinstance(a, Enqueue)]
    assert len(found) == 1, call.last
    return found[0]


class TestEveryDemoFlow:
    """What all three hotlines share."""

    @pytest.mark.parametrize("name", DEMOS)
    def test_the_caller_is_looked_up_by_number_first(self, name: str) -> None:
        call = Call.start(name)
        assert call.last == (Lookup(LookupKind.CUSTOMER_BY_NUMBER, CALLER),)

    @pytest.mark.parametrize("name", DEMOS)
    def test_an_unknown_caller_chooses_a_language_by_key(self, name: str) -> None:
        call = Call.start(name).send(NotIdentified(), Digits("2"))
        assert call.state.language == "en-US"
        *says, offer = [a for a in call.last if isinstance(a, Say)]
        [gather] = [a for a in call.last if isinstance(a, Gather)]
        assert says
        assert all(a.language == "en-US" and a.text.isascii() for a in says)
        assert gather.language == "en-US"
        # then the way back to Chinese, said in Chinese
        assert (offer.text, offer.language) == ("普通话服务请按7。", "zh-CN")

    @pytest.mark.parametrize("name", DEMOS)
    def test_a_caller_known_by_number_can_change_language_in_the_first_menu(
        self, name: str
    ) -> None:
        call = Call.start(name).send(Identified(7, "gold", "zh-CN"))
        assert call.state.language == "zh-CN"
        assert [(a.text, a.language) for a in call.last if isinstance(a, Say)][-1] == (
            "For English, press 7.",
            "en-US",
        )
        menu = call.state.node
        call.send(Digits("7"))
        assert (call.state.node, call.state.language) == (menu, "en-US")
        *says, offer = [a for a in call.last if isinstance(a, Say)]
        assert all(a.language == "en-US" and a.text.isascii() for a in says)
        assert offer.language == "zh-CN"

    @pytest.mark.parametrize("name", DEMOS)
    def test_an_unknown_caller_chooses_a_language_by_voice(self, name: str) -> None:
        call = Call.start(name).send(NotIdentified(), Speech("English, please", 0.8))
        assert call.state.language == "en-US"

    @pytest.mark.parametrize("name", DEMOS)
    def test_silence_three_times_ends_politely(self, name: str) -> None:
        call = Call.start(name).send(NotIdentified(), Digits("1"))
        call.send(NoInput(), NoInput())
        assert call.state.phase is Phase.INPUT
        assert call.said()[0] == "抱歉，没有听到您的选择。"  # noqa: RUF001
        call.send(NoInput())
        assert call.outcome is Outcome.ENDED
        assert call.last[-1] == EndCall()
        assert "再见" in call.said()[0]

    @pytest.mark.parametrize("name", DEMOS)
    def test_press_nine_for_a_call_back(self, name: str) -> None:
        call = Call.start(name).send(NotIdentified(), Digits("1"), Digits("9"))
        assert call.outcome is Outcome.CALLBACK
        callback = next(a for a in call.last if isinstance(a, Callback))
        assert callback.number == CALLER
        assert call.last[-1] == EndCall()

    @pytest.mark.parametrize("name", DEMOS)
    def test_press_three_for_a_complaint_status_read_back(self, name: str) -> None:
        call = Call.start(name).send(NotIdentified(), Digits("2"), Digits("3"))
        call.send(Digits(REFERENCE_KEYS))
        assert call.last == (Lookup(LookupKind.COMPLAINT_STATUS, REFERENCE),)
        due = datetime(2026, 12, 4, 16, tzinfo=UTC)  # Saturday 00:00 local: the end of Friday
        call.send(ComplaintFound(REFERENCE, "in_progress", due))
        assert call.said()[0] == (
            "Your complaint C - 2 0 2 6 1 1 2 2 - 0 0 0 1 2 3 is being handled. "
            "It is due by 4 December 2026."
        )
        assert call.outcome is Outcome.SERVED

    @pytest.mark.parametrize("name", DEMOS)
    def test_an_unknown_reference_is_told_and_the_call_goes_on(self, name: str) -> None:
        call = Call.start(name).send(NotIdentified(), Digits("1"), Digits("3"))
        call.send(Digits(REFERENCE_KEYS + "#"), ComplaintNotFound())
        assert "没有找到" in call.said()[0]
        assert call.outcome in {None, Outcome.ENQUEUED}

    @pytest.mark.parametrize("name", DEMOS)
    def test_hash_goes_back_to_the_language_menu(self, name: str) -> None:
        call = Call.start(name).send(NotIdentified(), Digits("2"), Digits("#"))
        assert call.state.node == "language"

    @pytest.mark.parametrize("name", DEMOS)
    def test_hanging_up_in_the_ivr_is_recorded_at_its_node(self, name: str) -> None:
        call = Call.start(name).send(NotIdentified(), Digits("1"), Hangup())
        assert call.outcome is Outcome.HUNG_UP
        assert call.transcript[-1].node == call.state.node


class TestComplaintHotline:
    """95561: press 0 for the complaints queue."""

    def test_press_zero_for_the_complaints_queue(self) -> None:
        call = Call.start(HOTLINE).send(NotIdentified(), Digits("1"), Digits("0"))
        assert enqueued(call) == Enqueue(
            "complaints", (SkillNeed("complaints", 5),), None, None, "zh-CN", {}
        )
        assert call.outcome is Outcome.ENQUEUED
        assert call.said() == ["正在为您转接投诉专员，请稍候。"]  # noqa: RUF001

    def test_a_known_caller_is_welcomed_in_their_language_and_queued_with_their_tier(
        self,
    ) -> None:
        call = Call.start(HOTLINE).send(Identified(11, "gold", "en"))
        assert call.said()[0] == "Welcome back to the complaint hotline."
        call.send(Digits("0"))
        assert enqueued(call).tier == "gold"
        assert enqueued(call).customer_id == 11
        assert enqueued(call).language == "en-US"

    def test_saying_complaint_reaches_the_queue(self) -> None:
        call = Call.start(HOTLINE).send(NotIdentified(), Digits("1"), Speech("我要投诉", 0.9))
        assert enqueued(call).queue == "complaints"


class TestConsumerLine:
    """1 credit-card complaints, 2 other complaints."""

    @pytest.mark.parametrize(
        ("answer", "queue", "skill"),
        [
            (Digits("1"), "credit-cards", "credit_card"),
            (Speech("信用卡", 0.9), "credit-cards", "credit_card"),
            (Digits("2"), "complaints", "complaints"),
            (Speech("something other", 0.9), "complaints", "complaints"),
            (Digits("0"), "general", None),
        ],
    )
    def test_menu(self, answer: Event, queue: str, skill: str | None) -> None:
        call = Call.start(CONSUMER).send(NotIdentified(), Digits("1"), answer)
        assert enqueued(call).queue == queue
        assert [s.skill for s in enqueued(call).skills] == ([skill] if skill else [])

    def test_wrong_keys_go_to_an_agent_after_the_tries(self) -> None:
        call = Call.start(CONSUMER).send(NotIdentified(), Digits("1"), Digits("8"), Digits("8"))
        assert call.state.invalid == 2
        call.send(Digits("8"))
        assert enqueued(call).queue == "general"


class TestCreditCardCentre:
    """The resident ID with * for X, confirmed with 8; or the caller's number."""

    def test_id_with_x_and_eights_then_8_to_confirm_is_identified_and_queued_with_tier(
        self,
    ) -> None:
        call = Call.start(CARDS).send(NotIdentified(), Digits("1"), Digits("1"))
        assert call.last[-1] == Gather(18, "", 8, False, "zh-CN")  # no finish key
        call.send(Digits(ID_KEYS))
        assert call.state.phase is Phase.CONFIRM
        assert call.said() == ["您输入的号码尾号为8 0 5 X。确认请按8，重新输入请按其他任意键。"]  # noqa: RUF001
        call.send(Digits("8"))
        assert call.last == (Lookup(LookupKind.CUSTOMER_BY_ID, ID),)
        call.send(Identified(1, "platinum", "zh-CN"))
        assert enqueued(call) == Enqueue(
            "credit-cards",
            (SkillNeed("credit_card", 3),),
            "platinum",
            1,
            "zh-CN",
            {"resident_id": ID},
        )

    def test_another_key_than_8_re_enters_the_id(self) -> None:
        call = Call.start(CARDS).send(NotIdentified(), Digits("1"), Digits("1"))
        call.send(Digits(ID_KEYS), Digits("1"))
        assert (call.state.node, call.state.phase, call.state.pending) == (
            "resident_id",
            Phase.INPUT,
            None,
        )
        call.send(Digits(ID_KEYS), Digits("8"))
        assert call.state.phase is Phase.LOOKUP

    def test_a_wrong_check_digit_is_re_asked_then_goes_to_an_agent(self) -> None:
        call = Call.start(CARDS).send(NotIdentified(), Digits("1"), Digits("1"))
        call.send(Digits(WRONG_CHECK))
        assert call.said() == [
            "抱歉，该身份证号码无效。",  # noqa: RUF001
            "请输入您的18位身份证号码，末位为X请按星号键。",  # noqa: RUF001
        ]
        call.send(Digits(WRONG_CHECK))
        assert call.state.invalid == 2
        call.send(Digits(WRONG_CHECK))
        assert enqueued(call).queue == "credit-cards"
        assert enqueued(call).tier is None
        assert [e.result for e in call.transcript if e.node == "resident_id"] == [
            "asked",
            "invalid",
            "invalid",
            "fallback",
        ]

    def test_an_id_nobody_has_goes_to_an_agent(self) -> None:
        call = Call.start(CARDS).send(NotIdentified(), Digits("1"), Digits("1"))
        call.send(Digits(ID_KEYS), Digits("8"), NotIdentified())
        assert "没有找到您的客户信息" in call.said()[0]
        assert enqueued(call).customer_id is None

    def test_a_platinum_caller_known_by_number_goes_straight_to_the_card_queue(self) -> None:
        call = Call.start(CARDS, "+8613800000001").send(Identified(1, "platinum", "zh-CN"))
        assert call.state.node == "known_main"
        call.send(Digits("1"))
        assert (enqueued(call).queue, enqueued(call).tier) == ("credit-cards", "platinum")


# --- random callers -----------------------------------------------------------------------


def _phrases(flow: Flow) -> list[str]:
    return [
        p
        for node in flow.nodes.values()
        if isinstance(node, MenuNode)
        for option in node.options
        for group in option.phrases.values()
        for p in group
    ]


def caller_events(flow: Flow) -> st.SearchStrategy[Event]:
    """Anything a caller can do: keys (single, IDs, references, garbage), speech, silence."""
    keys = st.sampled_from([*"0123456789*#", ID_KEYS, WRONG_CHECK, REFERENCE_KEYS, ""])
    garbage = st.text(alphabet="0123456789*#", max_size=25)
    spoken = st.one_of(st.sampled_from(_phrases(flow)), st.text(max_size=20))
    return st.one_of(
        st.builds(Digits, st.one_of(keys, garbage)),
        st.builds(Speech, spoken, st.floats(0, 1)),
        st.just(NoInput()),
        st.just(Timer()),
        st.just(Hangup()),
    )


def shell_answers() -> st.SearchStrategy[tuple[Event, Event]]:
    """The shell's answers: (to a customer lookup, to a complaint lookup)."""
    identified = st.builds(
        Identified,
        st.integers(1, 10**6),
        st.sampled_from(["platinum", "gold", "silver", "standard"]),
        st.sampled_from([None, "zh-CN", "en", "fr-FR"]),
    )
    found = st.builds(
        ComplaintFound,
        st.just(REFERENCE),
        st.sampled_from(["registered", "in_progress", "closed", "weird"]),
        st.sampled_from([None, NOW]),
    )
    return st.tuples(
        st.one_of(identified, st.just(NotIdentified())),
        st.one_of(found, st.just(ComplaintNotFound())),
    )


def answer(lookup: Lookup, answers: tuple[Event, Event]) -> Event:
    return answers[1] if lookup.kind is LookupKind.COMPLAINT_STATUS else answers[0]


def _ends_in_a_way_out(actions: Sequence[Action], outcome: Outcome) -> None:
    ways = {
        Outcome.ENQUEUED: Enqueue,
        Outcome.CALLBACK: EndCall,
        Outcome.TRANSFERRED: Dial,
        Outcome.ENDED: EndCall,
        Outcome.SERVED: EndCall,
    }
    if outcome is not Outcome.HUNG_UP:
        assert isinstance(actions[-1], ways[outcome])


def drive(flow: Flow, events: Sequence[Event], answers: list[tuple[Event, Event]]) -> Call:
    """Run a call with ``events`` from the caller, answering lookups as the shell would;
    after every step the call is finished, waits for the caller, or waits for the shell."""
    call = Call(flow, new_call(flow))
    call.send(CallStarted(CALLER, flow.numbers[0]))
    pending: list[Event] = list(events)
    turn = 0
    while call.state.phase is not Phase.FINISHED and pending:
        if call.state.phase is Phase.LOOKUP:
            assert isinstance(call.last[-1], Lookup)
            call.send(answer(call.last[-1], answers[turn % len(answers)]))
            turn += 1
            continue
        assert isinstance(call.last[-1], Gather), call.last  # the caller can always answer
        call.send(pending.pop(0))
        assert CallState.from_json(call.state.to_json()) == call.state
    return call


class TestRandomCallers:
    """Whatever the caller does, the call leaves the IVR, and within a bound."""

    @pytest.mark.parametrize("name", DEMOS)
    @settings(max_examples=150, deadline=None)
    @given(data=st.data())
    def test_any_walk_ends_within_the_input_budget(self, name: str, data: st.DataObject) -> None:
        flow = demo(name)
        bound = flow.limits.max_inputs + 1
        # Random callers, and callers who never stop going round the menus (repeat, back).
        round_keys: list[Event] = [Digits("*"), Digits("#")]
        going_round = st.sampled_from(round_keys)
        events = data.draw(
            st.one_of(
                st.lists(caller_events(flow), min_size=bound, max_size=bound),
                st.lists(going_round, min_size=bound, max_size=bound),
            )
        )
        answers = data.draw(st.lists(shell_answers(), min_size=1, max_size=4))
        call = drive(flow, events, answers)
        assert call.state.phase is Phase.FINISHED, call.transcript[-3:]
        assert call.state.inputs <= bound
        assert call.outcome is not None
        _ends_in_a_way_out(call.last, call.outcome)
        assert call.transcript[-1].outcome is call.outcome

    @pytest.mark.parametrize("name", DEMOS)
    @settings(max_examples=100, deadline=None)
    @given(data=st.data())
    def test_silence_and_nonsense_end_the_call_before_the_budget(
        self, name: str, data: st.DataObject
    ) -> None:
        # Without a valid choice the call never goes round a loop (validation forbids loops
        # of automatic moves), so each menu or collect takes at most its two counters' tries.
        flow = demo(name)
        waiting = [n for n in flow.nodes.values() if isinstance(n, MenuNode | CollectNode)]
        bound = sum(n.no_input.max + n.invalid.max - 1 for n in waiting)
        assert bound < flow.limits.max_inputs
        meaningless = Digits(_meaningless_key(flow))
        nothing: list[Event] = [NoInput(), Timer(), Digits(""), meaningless, Speech("嗯", 0.2)]
        nonsense = st.sampled_from(nothing)
        events = data.draw(st.lists(nonsense, min_size=bound + 1, max_size=bound + 1))
        answers = data.draw(st.lists(shell_answers(), min_size=1, max_size=4))
        call = drive(flow, events, answers)
        assert call.state.phase is Phase.FINISHED
        assert call.state.inputs <= bound
        assert call.outcome in {Outcome.ENDED, Outcome.ENQUEUED, Outcome.SERVED}


def _meaningless_key(flow: Flow) -> str:
    """A key that is no option and no global key in any menu of ``flow``."""
    used = {flow.keys.operator, flow.keys.repeat, flow.keys.back}
    for node in flow.nodes.values():
        if isinstance(node, MenuNode):
            used |= {o.key for o in node.options}
    return next(k for k in "0123456789" if k not in used)
