"""How a waiting node takes the caller's answer: menu keys and phrases, collected values.

Theory of operation
-------------------

- A **menu** takes an option's key or phrase (an option may set the language), or a global
  key: operator, repeat (the prompt again, counters kept), back (the menu before, from a
  bounded history of menus left by an option; with none, the prompt again), language (the
  flow's next language, round, and the prompt again in it, counters kept). Anything else
  is an invalid answer, counted by ``nodes.retry``.
- A spoken answer counts when the provider's confidence reaches the flow's
  ``limits.min_confidence`` and it names exactly one option (``prompts.matches``); a spoken
  key ("1", "一", "one", "按一", "press one": ``prompts.spoken_key``) is that key, a global
  key included. An answer that names no option may ask for what a global key does: a person
  ("转人工", "operator": the operator key's node) or, where the flow has a language key, one
  of the flow's languages by its name ("English", "英文", "普通话"), which the menu is then
  said again in. Low confidence, nothing matching, two options heard, or a name that fits
  two of the flow's languages: invalid, as a wrong key would be.
- A **collect** node takes the keys as data: a trailing finish key is dropped, ``*`` keyed
  last stands for the node's ``star`` character (X), and the value must have the node's
  lengths and pass its validator. With a ``confirm`` step the value waits (``pending``)
  for the confirm key; any other key there asks for the value again. Speech is not taken
  by a collect node: it is an invalid answer.

Decisions, and why
------------------

- **"Confirm with 8" is literal, and 8 stays a digit.** A resident ID may contain 8, so 8
  cannot end its gather; the gather ends after the ID's 18 keys instead, and 8 is read as
  "confirm" only in the separate one-key confirm step, after the ID has passed its check.
- **Re-entering is a choice, not a mistake**: it does not count on the invalid counter
  (the input budget still bounds a caller who re-enters for ever).
- **Collected values are masked in the transcript** (all but the last four characters):
  a resident ID is personal data and the transcript is read by many.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from app.ivr import prompts
from app.ivr.document import CollectNode, MenuNode, Option
from app.ivr.nodes import Run, ask, enter, retry, waiting
from app.ivr.validators import InvalidValue, validate
from app.ivr.vocabulary import Phase, StateError

__all__ = ["answer_confirm", "answer_keys", "answer_speech", "option_chosen"]


def _choose(run: Run, option: Option, inp: str) -> None:
    keep = run.flow.limits.history
    history = (*run.state.history, run.name)[-keep:] if keep else ()
    run.record(inp, None, "option")
    if option.language is not None:
        run.update(language=option.language, language_chosen=True)
    run.update(history=history)
    enter(run, option.next)


def _menu_key(run: Run, node: MenuNode, key: str, inp: str) -> None:
    keys = run.flow.keys
    option = next((o for o in node.options if o.key == key), None)
    if option is not None:
        _choose(run, option, inp)
    elif key == keys.operator and keys.operator_target is not None:
        run.record(inp, None, "operator")
        enter(run, keys.operator_target)
    elif key == keys.repeat:
        ask(run, node)
        run.record(inp, "prompt", "repeat")
    elif key == keys.language:
        _next_language(run, node, inp)
    elif key == keys.back:
        _back(run, node, inp)
    else:
        retry(run, node, "invalid", inp)


def _next_language(run: Run, node: MenuNode, inp: str) -> None:
    """The caller changes language: the flow's next one, in its order and round; the menu
    is said again in it. A choice, as a language menu's option is: identification keeps it."""
    languages, current = run.flow.languages, run.state.language
    at = languages.index(current) if current in languages else -1
    _to_language(run, node, languages[(at + 1) % len(languages)], inp)


def _to_language(run: Run, node: MenuNode, language: str, inp: str) -> None:
    run.update(language=language, language_chosen=True)
    ask(run, node)
    run.record(inp, "prompt", "language")


def _asked_in_words(run: Run, node: MenuNode, said: str, inp: str) -> None:
    """An answer naming no option: a person asked for, a language named, or invalid."""
    keys = run.flow.keys
    named = [
        language
        for language in run.flow.languages
        if prompts.matches(said, prompts.language_names(language))
    ]
    if keys.operator_target is not None and prompts.matches(said, prompts.OPERATOR_PHRASES):
        run.record(inp, None, "operator")
        enter(run, keys.operator_target)
    elif keys.language is not None and len(named) == 1:
        _to_language(run, node, named[0], inp)
    else:
        retry(run, node, "invalid", inp)


def _back(run: Run, node: MenuNode, inp: str) -> None:
    if not run.state.history:
        ask(run, node)
        run.record(inp, "prompt", "repeat")
        return
    *rest, previous = run.state.history
    run.record(inp, None, "back")
    run.update(history=tuple(rest))
    enter(run, previous)


def _masked(value: str) -> str:
    return "*" * max(0, len(value) - 4) + value[-4:]


def _collected(run: Run, node: CollectNode, keys: str) -> str | None:
    """The value ``keys`` spell for ``node``, or None if it is not acceptable."""
    if node.finish_key is not None:
        keys = keys.rstrip(node.finish_key)
    if node.star is not None:
        keys = keys.replace("*", node.star)
    digits = keys[:-1] + keys[-1:].replace(node.star or "0", "0")
    if not digits.isascii() or not digits.isdigit():
        return None
    if not node.min_length <= len(keys) <= node.max_length:
        return None
    if node.validator is None:
        return keys
    today = run.now.astimezone(ZoneInfo(run.flow.zone)).date()
    try:
        return validate(node.validator, keys, today=today)
    except InvalidValue:
        return None


def _collect_keys(run: Run, node: CollectNode, keys: str) -> None:
    inp = f"digits:{_masked(keys)}"
    value = _collected(run, node, keys)
    if value is None:
        retry(run, node, "invalid", inp)
    elif node.confirm is not None:
        run.update(phase=Phase.CONFIRM, pending=value)
        ask(run, node)
        run.record(inp, "confirm.prompt", "collected")
    else:
        _accept(run, node, value, inp, "collected")


def _accept(run: Run, node: CollectNode, value: str, inp: str, result: str) -> None:
    run.update(collected={**run.state.collected, node.into: value})
    run.record(inp, None, result)
    enter(run, node.next)


def answer_keys(run: Run, keys: str) -> None:
    """Keys pressed at the current menu or collect node."""
    node = waiting(run)
    if isinstance(node, MenuNode):
        _menu_key(run, node, keys, f"digits:{keys}")
    else:
        _collect_keys(run, node, keys)


def answer_confirm(run: Run, keys: str) -> None:
    """A key pressed at a collect node's confirm step."""
    node = waiting(run)
    if isinstance(node, MenuNode) or node.confirm is None:
        raise StateError(f"the call confirms at {run.name!r}, which has no confirm step")
    if keys == node.confirm.key:
        _accept(run, node, run.state.pending or "", f"digits:{keys}", "confirmed")
        return
    run.update(phase=Phase.INPUT, pending=None)
    ask(run, node)
    run.record(f"digits:{keys}", "prompt", "reenter")


def answer_speech(run: Run, said: str, confidence: float) -> None:
    """A transcribed answer at the current node."""
    node = waiting(run)
    inp = f"speech:{said}@{confidence:.2f}"
    key = prompts.spoken_key(said)
    if (
        not isinstance(node, MenuNode)
        or not node.speech
        or confidence < run.flow.limits.min_confidence
    ):
        retry(run, node, "invalid", inp)
    elif key is not None:
        _menu_key(run, node, key, inp)
    else:
        chosen = [o for o in node.options if prompts.matches(said, _phrases(o.phrases))]
        if len(chosen) == 1:
            _choose(run, chosen[0], inp)
        elif chosen:
            retry(run, node, "invalid", inp)
        else:
            _asked_in_words(run, node, said, inp)


def option_chosen(node: MenuNode, inp: str | None) -> Option | None:
    """The option an answer recorded with the result ``option`` chose (``digits:1``,
    ``speech:信用卡@0.82``, as ``answer_keys`` and ``answer_speech`` record them), found as
    they found it; None for an answer that names no single option. Read it only for a step
    whose result is ``option``: whether a spoken answer counted also took the flow's minimum
    confidence. The transcript keeps the answer, not the option: a stored flow version never
    changes, so the option can always be found again."""
    if inp is None:
        return None
    kind, _, value = inp.partition(":")
    if kind == "speech":
        said = value.rpartition("@")[0]
        key = prompts.spoken_key(said)
        if key is None:
            chosen = [o for o in node.options if prompts.matches(said, _phrases(o.phrases))]
            return chosen[0] if len(chosen) == 1 else None
    elif kind == "digits":
        key = value
    else:
        return None
    return next((o for o in node.options if o.key == key), None)


def _phrases(phrases: dict[str, list[str]]) -> list[str]:
    return [p for group in phrases.values() for p in group]
