"""What the IVR says and hears: prompt text by language, placeholders, spoken-phrase matching.

Theory of operation
-------------------

A prompt is text per language (``{"zh-CN": ..., "en-US": ...}``). ``text(prompt, language,
default)`` picks the caller's language, else the flow's default, and fills the placeholders
a node offers: ``{tail}`` (a collected value's last four characters, spaced so a voice reads
them one by one), ``{reference}``, ``{status}`` and ``{due}`` (a complaint read back). Only
those names are replaced; any other brace stays as written, so a prompt can never fail to
render.

``matches(text, phrases)`` decides whether a transcribed answer names an option: both are
case-folded with spaces and punctuation removed, and the answer must contain the phrase
("我想问信用卡的事" contains "信用卡"). ``flow_language`` maps a customer's language tag
onto one the flow speaks (``en`` → ``en-US``). In any menu a caller may also ask in words for
what the global keys do: a person (``OPERATOR_PHRASES``) or a language by its name
(``language_names``).

Decisions, and why
------------------

- **Complaint statuses are read in words** the caller understands, from a table in both
  languages; an unknown status is read as its name, never refused.
- **Dates are spoken in the flow's zone** in the caller's language's form: "2 December
  2026" and "2026年12月2日". The deadline's day matters to the caller; its minute does not.
  A deadline at local midnight is the end (24:00) of the day before, as the complaint
  calendar writes it, and is read as that day.
"""

# ruff: noqa: RUF001 (Chinese text uses full-width punctuation)

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from datetime import datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

__all__ = [
    "GOODBYE",
    "NO_CALLBACK",
    "OPERATOR_PHRASES",
    "due_words",
    "flow_language",
    "language_names",
    "matches",
    "normalised",
    "spaced_tail",
    "spoken_key",
    "status_words",
    "text",
]

GOODBYE: Final = {
    "zh-CN": "感谢您的来电，再见。",
    "en-US": "Thank you for calling. Goodbye.",
}
# A callback chosen from a withheld number: there is nothing to call back, so the caller holds.
NO_CALLBACK: Final = {
    "zh-CN": "您的来电号码未显示，我们无法回电。请您稍候，我们将为您转接客服代表。",
    "en-US": "Your number is withheld, so we cannot call you back. Please hold for the next agent.",
}

_STATUS: Final = {
    "registered": ("已登记，等待处理", "registered and waiting to be handled"),
    "classified": ("已分类，等待分派", "classified and waiting to be assigned"),
    "assigned": ("已分派给专人处理", "assigned to a handler"),
    "in_progress": ("正在处理中", "being handled"),
    "paused": ("暂停处理，等待补充信息", "paused while we wait for information"),
    "resolved": ("已有处理结果，等待您确认", "resolved and waiting for your confirmation"),
    "confirmed": ("已确认办结", "confirmed as resolved"),
    "closed": ("已办结", "closed"),
    "under_review": ("正在复核", "under review"),
    "withdrawn": ("已撤回", "withdrawn"),
    "rejected": ("未予受理", "not accepted"),
    "archived": ("已归档", "archived"),
}
_MONTHS: Final = (
    *("January", "February", "March", "April", "May", "June"),
    *("July", "August", "September", "October", "November", "December"),
)


def flow_language(languages: Iterable[str], tag: str | None) -> str | None:
    """The flow language matching ``tag`` exactly, else by its primary subtag, else None."""
    if not tag:
        return None
    spoken = list(languages)
    if tag in spoken:
        return tag
    primary = tag.split("-")[0].lower()
    return next((lang for lang in spoken if lang.split("-")[0] == primary), None)


def text(
    prompt: Mapping[str, str], language: str, default: str, fill: Mapping[str, str] | None = None
) -> str:
    """The prompt in ``language`` (else ``default``), placeholders filled."""
    said = prompt.get(language) or prompt[default]
    for name, value in (fill or {}).items():
        said = said.replace("{" + name + "}", value)
    return said


def spaced_tail(value: str) -> str:
    """The last four characters, spaced: ``"0 0 2 X"``."""
    return " ".join(value[-4:])


def status_words(status: str, language: str) -> str:
    """A complaint status as the caller hears it."""
    words = _STATUS.get(status)
    if words is None:
        return status.replace("_", " ")
    return words[0] if language.startswith("zh") else words[1]


def due_words(due_at: datetime | None, language: str, zone: str) -> str:
    """A deadline's day in the flow's zone, as the caller hears it ("" if none)."""
    if due_at is None:
        return ""
    local = due_at.astimezone(ZoneInfo(zone))
    # A deadline at local midnight is the end (24:00) of the day before: that is its day.
    day = local.date() - timedelta(days=1) if local.time() == time() else local.date()
    if language.startswith("zh"):
        return f"{day.year}年{day.month}月{day.day}日"
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def normalised(said: str) -> str:
    """Case-folded, without spaces, punctuation or symbols."""
    return "".join(
        ch for ch in said.casefold() if unicodedata.category(ch)[0] not in {"P", "Z", "S", "C"}
    )


# A key said as a word, as transcribed: Chinese numerals (幺 and 两 as said on the phone) and
# English number words.
_SPOKEN_KEYS: Final = {
    **dict.fromkeys(("0", "零", "〇", "zero"), "0"),
    **dict.fromkeys(("1", "一", "幺", "one"), "1"),
    **dict.fromkeys(("2", "二", "两", "two"), "2"),
    **dict.fromkeys(("3", "三", "three"), "3"),
    **dict.fromkeys(("4", "四", "four"), "4"),
    **dict.fromkeys(("5", "五", "five"), "5"),
    **dict.fromkeys(("6", "六", "six"), "6"),
    **dict.fromkeys(("7", "七", "seven"), "7"),
    **dict.fromkeys(("8", "八", "eight"), "8"),
    **dict.fromkeys(("9", "九", "nine"), "9"),
}


def spoken_key(said: str) -> str | None:
    """The key a transcribed answer names ("1", "一", "one", "按一", "press one"), if any."""
    heard = normalised(said)
    for lead in ("按", "press"):
        heard = heard.removeprefix(lead)
    return _SPOKEN_KEYS.get(heard)


# A caller asking for a person in words, as they do in any menu ("转人工", "operator please").
OPERATOR_PHRASES: Final = (
    "人工",
    "客服",
    "真人",
    "operator",
    "agent",
    "representative",
    "human",
)

# A language named as callers name it, in its own words and in the others' (a recogniser
# listening in Chinese writes "英文" for "English"). Keyed by language, and by region where a
# name belongs to one variety ("粤语" is Hong Kong's, "普通话" the mainland's).
_LANGUAGE_NAMES: Final[Mapping[str, tuple[str, ...]]] = {
    "zh": ("中文", "汉语", "漢語", "华语", "華語", "chinese"),
    "zh-CN": ("普通话", "国语", "mandarin"),
    "zh-TW": ("國語", "普通話", "mandarin"),
    "zh-HK": ("粤语", "粵語", "广东话", "廣東話", "cantonese"),
    "yue": ("粤语", "粵語", "广东话", "廣東話", "cantonese"),
    "en": ("english", "英文", "英语", "英語"),
}


def language_names(language: str) -> tuple[str, ...]:
    """What a caller says to name ``language`` (a tag such as ``zh-CN``): the language's
    names, then its region's; none for a language the table does not know."""
    primary = language.split("-", 1)[0]
    return _LANGUAGE_NAMES.get(primary, ()) + _LANGUAGE_NAMES.get(language, ())


def matches(said: str, phrases: Iterable[str]) -> bool:
    """Whether the answer ``said`` contains any of ``phrases``."""
    heard = normalised(said)
    return bool(heard) and any(normalised(p) and normalised(p) in heard for p in phrases)
