"""TwiML: the machine's actions and the wait loop as Twilio's voice documents.

Theory of operation
-------------------

Every document is built with the ``twilio`` package's ``VoiceResponse``, never by hand, so
it is well-formed and escaped whatever a prompt contains.

- ``Say`` speaks in the action's language, with the voice configured for it
  (``twilio_voices``; none: Twilio's default for the language). ``Play`` plays a URL.
- ``Gather`` listens for keys, and speech where the node takes it (``input="dtmf speech"``
  in the prompt's language, with the machine's ``hints``: ``nodes._hints``). The ``Say``/``Play``
  before it go inside it, so a caller who knows the menu can answer before the prompt ends.
  ``actionOnEmptyResult`` makes Twilio post back even when the caller said nothing, so
  silence reaches the machine as ``NoInput``; the action URL names the next step
  (``?step=N``), which is how a duplicated delivery is recognised, and it is absolute, on the
  public base URL, because that is the URL the next request's signature is checked against.
- ``Enqueue``: the caller is held by the wait loop (``wait_loop``): a ``Redirect`` to
  ``/telephony/twilio/wait``, which answers each turn with the position and estimated wait,
  then hold music, then a ``Redirect`` back to itself.
- ``Callback`` and ``EndCall`` end with ``Hangup``; ``Dial`` transfers the call.
- ``bridge``: a queued caller (or a called-back customer) is connected to the agent who
  answered: ``<Dial>`` to the agent's endpoint (``sip:``, ``client:``, or a number).
- Texts the shell speaks itself (position, wait, goodbye, busy, not in service) are kept
  here in Chinese and English; a language of another family hears the English text.
"""

# ruff: noqa: RUF001 (Chinese text uses full-width punctuation)

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from twilio.twiml import voice_response  # type: ignore[import-untyped]

from app.ivr.advance import Taken
from app.ivr.calls import Render
from app.ivr.vocabulary import Action, Callback, Dial, EndCall, Enqueue, Gather, Play, Say
from app.ivr.waiting import Standing, Wait

CONTENT_TYPE: Final = "application/xml"
VOICE_PATH: Final = "/telephony/twilio/voice"
WAIT_PATH: Final = "/telephony/twilio/wait"

# The shell's own words, by language family.
PHRASES: Final[Mapping[str, Mapping[str, str]]] = {
    "zh": {
        "position": "您前面还有{ahead}位客户，您现在排在第{position}位。",
        "first": "您现在排在第一位。",
        "wait": "预计等待约{minutes}分钟。",
        "offered": "正在为您接通客服代表，请稍候。",
        "connected": "请稍候。",
        "goodbye": "感谢您的来电，再见。",
        "busy": "很抱歉，现在所有客服代表都在忙，请稍后再拨。感谢您的来电，再见。",
        "not_in_service": "您拨打的号码暂未开通服务，感谢您的来电，再见。",
    },
    "en": {
        "position": "You are number {position} in the queue.",
        "first": "You are next in the queue.",
        "wait": "Your estimated wait is about {minutes} minutes.",
        "offered": "An agent will be with you in a moment.",
        "connected": "Please hold.",
        "goodbye": "Thank you for calling. Goodbye.",
        "busy": "Sorry, all our agents are busy. Please call again later. Goodbye.",
        "not_in_service": "This number is not in service. Thank you for calling. Goodbye.",
    },
}


@dataclass(frozen=True, slots=True)
class Voice:
    """How this deployment speaks: the public base URL, voices by language, hold music."""

    base_url: str
    voices: Mapping[str, str]
    hold_music: str

    def url(self, path: str, query: str = "") -> str:
        return self.base_url.rstrip("/") + path + (f"?{query}" if query else "")


def phrase(language: str, key: str, **values: object) -> str:
    family = "zh" if language.lower().startswith("zh") else "en"
    return PHRASES[family][key].format(**values)


def _say(
    target: voice_response.VoiceResponse | voice_response.Gather,
    voice: Voice,
    text: str,
    language: str,
) -> None:
    chosen = voice.voices.get(language)
    if chosen:
        target.say(text, language=language, voice=chosen)
    else:
        target.say(text, language=language)


# --- a step's actions ------------------------------------------------------------------------


def step_document(
    actions: Sequence[Action], *, voice: Voice, next_step: int, language: str, refused: bool = False
) -> str:
    """The TwiML for a step's actions (``next_step`` is the step a gather's answer takes)."""
    response = voice_response.VoiceResponse()
    prompt: list[Say | Play] = []
    for action in actions:
        if isinstance(action, Say | Play):
            prompt.append(action)
        elif isinstance(action, Gather):
            _gather(response, action, prompt, voice, next_step)
            prompt = []
        else:
            _flush(response, prompt, voice)
            prompt = []
            _terminal(response, action, voice, language, refused)
    _flush(response, prompt, voice)
    return str(response)


def _flush(
    target: voice_response.VoiceResponse | voice_response.Gather,
    prompt: Sequence[Say | Play],
    voice: Voice,
) -> None:
    for item in prompt:
        if isinstance(item, Say):
            _say(target, voice, item.text, item.language)
        else:
            target.play(item.url)


def _gather(
    response: voice_response.VoiceResponse,
    action: Gather,
    prompt: Sequence[Say | Play],
    voice: Voice,
    step: int,
) -> None:
    options: dict[str, object] = {
        "input": "dtmf speech" if action.speech else "dtmf",
        "action": voice.url(VOICE_PATH, f"step={step}"),
        "method": "POST",
        "action_on_empty_result": True,
        "timeout": action.timeout_s,
        "finish_on_key": action.finish_on_key,
        "language": action.language,
    }
    if action.num_digits is not None:
        options["num_digits"] = action.num_digits
    if action.speech and action.hints:
        options["hints"] = ",".join(action.hints)
    gather = response.gather(**options)
    _flush(gather, prompt, voice)


def _terminal(
    response: voice_response.VoiceResponse,
    action: Action,
    voice: Voice,
    language: str,
    refused: bool,
) -> None:
    if isinstance(action, Enqueue):
        response.redirect(voice.url(WAIT_PATH), method="POST")
    elif isinstance(action, Dial):
        response.dial(action.number)
    elif isinstance(action, EndCall | Callback):
        if refused:
            _say(response, voice, phrase(language, "busy"), language)
        if isinstance(action, EndCall):
            response.hangup()


def renderer(voice: Voice) -> Render:
    """How a Twilio step is answered (and stored for its duplicates)."""

    def render(taken: Taken) -> tuple[str, str]:
        document = step_document(
            taken.actions,
            voice=voice,
            next_step=taken.seq + 1,
            language=taken.language,
            refused=taken.refused is not None,
        )
        return document, CONTENT_TYPE

    return render


# --- the wait loop and the shell's own answers --------------------------------------------------


def wait_document(turn: Wait, *, voice: Voice) -> str:
    """One turn of the wait loop: where the caller stands, hold music, and back again."""
    language = turn.language
    if turn.standing is Standing.GONE:
        return goodbye(language, voice=voice)
    response = voice_response.VoiceResponse()
    for text in standing_phrases(turn):
        _say(response, voice, text, language)
    response.play(voice.hold_music)
    response.redirect(voice.url(WAIT_PATH), method="POST")
    return str(response)


def standing_phrases(turn: Wait) -> list[str]:
    """What a queued caller is told of where they stand, in their language."""
    language = turn.language
    if turn.standing is Standing.OFFERED:
        return [phrase(language, "offered")]
    if turn.standing is Standing.CONNECTED or turn.position is None:
        return [phrase(language, "connected")]
    told = [
        phrase(language, "first")
        if turn.position <= 1
        else phrase(language, "position", position=turn.position, ahead=turn.position - 1)
    ]
    if turn.estimated_wait_s is not None and turn.position > 1:
        minutes = max(1, math.ceil(turn.estimated_wait_s / 60))
        told.append(phrase(language, "wait", minutes=minutes))
    return told


def goodbye(language: str, *, voice: Voice, reason: str = "goodbye") -> str:
    """A polite goodbye and hang up (``reason``: goodbye, busy, not_in_service)."""
    response = voice_response.VoiceResponse()
    _say(response, voice, phrase(language, reason), language)
    response.hangup()
    return str(response)


def bridge(endpoint: str, language: str, *, voice: Voice) -> str:
    """Connect the caller to an agent's endpoint: ``sip:`` a SIP address, ``client:`` a
    Twilio Client name, anything else a number."""
    response = voice_response.VoiceResponse()
    _say(response, voice, phrase(language, "offered"), language)
    dial = voice_response.Dial()
    if endpoint.startswith("sip:"):
        dial.sip(endpoint)
    elif endpoint.startswith("client:"):
        dial.client(endpoint.removeprefix("client:"))
    else:
        dial.number(endpoint)
    response.append(dial)
    return str(response)


def to_wait(voice: Voice) -> str:
    """Back to the wait loop (a queued caller's late menu answer)."""
    response = voice_response.VoiceResponse()
    response.redirect(voice.url(WAIT_PATH), method="POST")
    return str(response)


def empty() -> str:
    """Nothing to do (the answer to a status callback)."""
    return str(voice_response.VoiceResponse())
