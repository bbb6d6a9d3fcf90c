"""What the customer is told about their complaint, in words: the notices' texts (pure).

Theory of operation
-------------------

**Which moves tell the customer.** A registration and a link (the same matter raised again)
are told by the desk's registration hook; of the lifecycle's moves, ``NOTICE_OF_MOVE`` lists
the ones the customer hears about: a rejection, an extension, a resolution, a closure after
silence, a reopening, a review asked for and its conclusion, a withdrawal. Every other move
(classify, assign, start, pause, resume, escalate, confirm, archive) is the desk's own
business and tells nothing.

**Templates.** ``TEMPLATES`` holds, for each notice and language, the subject line of an
e-mail and the body as a tuple of lines. A line names the facts it shows as
``{placeholders}``; a line whose facts are unknown (no compensation, no due time) is left
out, so the optional parts need no conditionals. The first line of every body names the
complaint by its reference and nothing else, so every notice says which complaint it is
about. ``render`` fills the lines from ``NoticeFacts``, the only thing a template can see:
the reference, a due time and the few facts meant for the customer (the reason of a
rejection, an extension or a review's conclusion; the resolution, the remedy and the
compensation; the review's outcome; the channel a linked registration came through). The
desk's internal facts (root cause, corrective action, the responsible unit, notes, who
handled it) have no field there, so no template can show them.

**Values as a customer reads them.** Times are shown in the centre's zone (Asia/Shanghai,
UTC+8 all year) to the minute, in both languages, with the zone named: a due time shown as a
bare UTC date would be a day early for a complaint registered in the evening.
``2026年12月5日 01:30（北京时间）`` in Chinese, ``2026-12-05 01:30 (Beijing time, UTC+8)`` in
English. Amounts have two decimals and thousands separators (``人民币1,250.00元``,
``CNY 1,250.00``); a compensation of zero is not mentioned. Free text is trimmed and cut at
``FREE_TEXT_LIMIT`` characters (an SMS of a page would not help the customer; the status
lookup shows the whole reason).

**Where and in which language.** ``recipient_of`` reads the complainant's contact as given:
an e-mail address is written to; a phone number that ``identity.normalise_phone`` reads as a
full number (E.164) of a mobile phone is texted; anything else (a landline, a service number,
a postal address) gets nothing, and the desk tells the customer another way. ``language_for``
takes the customer's language when the complaint is about a known customer (a Chinese tag,
``zh`` or ``yue``, reads the Chinese texts; any other, the English ones), else Chinese for a
+86 mobile number, else English.

Nothing here does I/O or reads a clock; ``app.complaints.notices`` loads, calls and queues.
"""

# The Chinese texts are written with the full-width punctuation Chinese uses.
# ruff: noqa: RUF001, RUF002

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import PhoneNumberType

from app.complaints.lifecycle import ComplaintEvent, ReviewOutcome
from app.customers.identity import DEFAULT_PHONE_REGION, InvalidPhone, normalise_phone

__all__ = [
    "FREE_TEXT_LIMIT",
    "NOTICE_OF_MOVE",
    "TEMPLATES",
    "Language",
    "NoticeFacts",
    "NoticeKind",
    "Recipient",
    "Rendered",
    "Via",
    "language_for",
    "placeholders",
    "recipient_of",
    "render",
]

CENTRE_ZONE: Final = ZoneInfo("Asia/Shanghai")
FREE_TEXT_LIMIT: Final = 500
MAX_EMAIL_LENGTH: Final = 254
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_TEXTABLE: Final = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
_CHINESE_TAGS: Final = frozenset({"zh", "yue"})


class NoticeKind(StrEnum):
    """What a notice tells; the value is the outbox row's ``kind``."""

    registered = "complaint.registered"
    linked = "complaint.linked"
    rejected = "complaint.rejected"
    extended = "complaint.extended"
    resolved = "complaint.resolved"
    closed = "complaint.closed"
    reopened = "complaint.reopened"
    review_requested = "complaint.review_requested"
    review_concluded = "complaint.review_concluded"
    withdrawn = "complaint.withdrawn"


class Language(StrEnum):
    """The languages notices are written in."""

    zh = "zh-CN"
    en = "en"


class Via(StrEnum):
    """How a notice reaches the customer (the outbox's channels)."""

    sms = "sms"
    email = "email"


NOTICE_OF_MOVE: Final[Mapping[ComplaintEvent, NoticeKind]] = {
    ComplaintEvent.REJECT: NoticeKind.rejected,
    ComplaintEvent.EXTEND: NoticeKind.extended,
    ComplaintEvent.RESOLVE: NoticeKind.resolved,
    ComplaintEvent.CLOSE: NoticeKind.closed,
    ComplaintEvent.REOPEN: NoticeKind.reopened,
    ComplaintEvent.REQUEST_REVIEW: NoticeKind.review_requested,
    ComplaintEvent.CONCLUDE_REVIEW: NoticeKind.review_concluded,
    ComplaintEvent.WITHDRAW: NoticeKind.withdrawn,
}
"""The moves the customer is told of; a move not listed tells nothing."""


@dataclass(frozen=True, slots=True)
class Template:
    subject: str
    lines: tuple[str, ...]


_K, _L = NoticeKind, Language

# fmt: off
TEMPLATES: Final[Mapping[tuple[NoticeKind, Language], Template]] = {
    (_K.registered, _L.zh): Template("投诉已受理：{reference}", (
        "您的投诉已受理，投诉编号：{reference}。",
        "我们将于{due}前答复您。",
        "查询进度或补充材料时，请提供投诉编号。",
    )),
    (_K.registered, _L.en): Template("Complaint registered: {reference}", (
        "Your complaint has been registered under reference {reference}.",
        "We will reply by {due}.",
        "Please quote the reference whenever you contact us about it.",
    )),
    (_K.linked, _L.zh): Template("投诉已合并：{reference}", (
        "您反映的问题与您正在处理中的投诉（编号 {reference}）属同一事项。",
        "我们已将您通过{channel}补充的情况并入该投诉，不另立新投诉。",
        "我们将于{due}前答复您。",
    )),
    (_K.linked, _L.en): Template("Added to your complaint {reference}", (
        "What you raised is the matter of your complaint {reference}, which we are handling.",
        "We have added what you told us through {channel} to it rather than open another.",
        "We will reply by {due}.",
    )),
    (_K.rejected, _L.zh): Template("投诉处理结果：{reference}", (
        "您的投诉（编号 {reference}）经核实不属于投诉受理范围，不予受理。",
        "原因：{reason}",
        "如有异议，请提供投诉编号与我们联系，我们将重新审核。",
    )),
    (_K.rejected, _L.en): Template("Your complaint {reference}", (
        "Having looked into your complaint {reference}, we cannot accept it as a complaint.",
        "Reason: {reason}",
        "If you disagree, contact us quoting the reference and we will look at it again.",
    )),
    (_K.extended, _L.zh): Template("投诉处理时限延长：{reference}", (
        "您的投诉（编号 {reference}）需要更多时间处理，经主管批准，处理时限予以延长。",
        "延长时间：{days}。",
        "延长原因：{reason}",
        "我们将于{due}前答复您。",
    )),
    (_K.extended, _L.en): Template("More time needed for your complaint {reference}", (
        "Your complaint {reference} needs more time: a supervisor has approved an extension.",
        "Extended by: {days}.",
        "Reason: {reason}",
        "We will now reply by {due}.",
    )),
    (_K.resolved, _L.zh): Template("投诉处理结果：{reference}", (
        "您的投诉（编号 {reference}）已处理完毕。",
        "处理结果：{resolution}",
        "补救措施：{remedy}",
        "补偿金额：{compensation}",
        "如您认可处理结果，请与我们联系确认；如不满意，请提供投诉编号与我们联系，我们将重新处理。",
    )),
    (_K.resolved, _L.en): Template("Outcome of your complaint {reference}", (
        "We have dealt with your complaint {reference}.",
        "Outcome: {resolution}",
        "Remedy: {remedy}",
        "Compensation: {compensation}",
        "If you accept this outcome, please let us know; if not, contact us quoting the"
        " reference and we will reopen it.",
    )),
    (_K.closed, _L.zh): Template("投诉已关闭：{reference}", (
        "您的投诉（编号 {reference}）已处理完毕，因未收到您的回复，该投诉已关闭。",
        "如仍有异议，请提供投诉编号与我们联系，我们可重新处理或复核处理决定。",
    )),
    (_K.closed, _L.en): Template("Your complaint {reference} is closed", (
        "We did not hear back from you about the outcome of your complaint {reference},"
        " so it is now closed.",
        "If you are still not satisfied, contact us quoting the reference: we can reopen it"
        " or review the decision.",
    )),
    (_K.reopened, _L.zh): Template("投诉重新处理：{reference}", (
        "您的投诉（编号 {reference}）已重新开始处理。",
        "我们将于{due}前答复您。",
    )),
    (_K.reopened, _L.en): Template("Your complaint {reference} is reopened", (
        "Your complaint {reference} has been reopened and is being handled again.",
        "We will reply by {due}.",
    )),
    (_K.review_requested, _L.zh): Template("复核申请已受理：{reference}", (
        "我们已收到您对投诉（编号 {reference}）处理决定的复核申请。",
        "我们将于{due}前告知您复核结果。",
    )),
    (_K.review_requested, _L.en): Template("Review requested: {reference}", (
        "We have received your request for a review of the decision on your complaint"
        " {reference}.",
        "We will tell you the outcome by {due}.",
    )),
    (_K.review_concluded, _L.zh): Template("复核结果：{reference}", (
        "您的投诉（编号 {reference}）的复核已完成。",
        "复核结论：{outcome}。",
        "说明：{reason}",
    )),
    (_K.review_concluded, _L.en): Template("Review of your complaint {reference}", (
        "The review of the decision on your complaint {reference} is complete.",
        "Outcome: {outcome}.",
        "Explanation: {reason}",
    )),
    (_K.withdrawn, _L.zh): Template("投诉已撤回：{reference}", (
        "您的投诉（编号 {reference}）已按您的要求撤回，我们不再继续处理。",
        "如需重新处理，请提供投诉编号与我们联系。",
    )),
    (_K.withdrawn, _L.en): Template("Your complaint {reference} is withdrawn", (
        "Your complaint {reference} has been withdrawn as you asked; we have stopped"
        " handling it.",
        "If you want it handled after all, contact us quoting the reference.",
    )),
}
# fmt: on

_OUTCOMES: Final[Mapping[tuple[ReviewOutcome, Language], str]] = {
    (ReviewOutcome.upheld, _L.zh): "维持原处理决定",
    (ReviewOutcome.upheld, _L.en): "the original decision stands",
    (ReviewOutcome.revised, _L.zh): "原处理决定已予更正",
    (ReviewOutcome.revised, _L.en): "the decision has been revised",
}

# The channels a complaint comes in through (``app.complaints.models.Channel``).
_CHANNELS: Final[Mapping[tuple[str, Language], str]] = {
    ("phone", _L.zh): "电话",
    ("phone", _L.en): "the phone",
    ("web", _L.zh): "网站",
    ("web", _L.en): "our website",
    ("app", _L.zh): "手机应用",
    ("app", _L.en): "our app",
    ("email", _L.zh): "电子邮件",
    ("email", _L.en): "e-mail",
    ("letter", _L.zh): "信函",
    ("letter", _L.en): "a letter",
    ("counter", _L.zh): "营业网点柜台",
    ("counter", _L.en): "a branch counter",
}
_ANOTHER_CHANNEL: Final[Mapping[Language, str]] = {_L.zh: "其他渠道", _L.en: "another channel"}


# --- facts and rendering ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoticeFacts:
    """Everything a notice may say: nothing internal has a field here."""

    reference: str
    due_at: datetime | None = None
    reason: str | None = None
    days: int | None = None
    resolution: str | None = None
    remedy: str | None = None
    compensation: Decimal | None = None
    outcome: ReviewOutcome | None = None
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    body: str


def placeholders(text: str) -> frozenset[str]:
    """The facts a template line names."""
    return frozenset(name for _, name, _, _ in string.Formatter().parse(text) if name)


def render(kind: NoticeKind, language: Language, facts: NoticeFacts) -> Rendered:
    """The notice's subject and body; a line naming an unknown fact is left out."""
    template = TEMPLATES[kind, language]
    values = _values(facts, language)
    lines = [line for line in template.lines if _known(line, values)]
    return Rendered(
        subject=template.subject.format_map(values),
        body="\n".join(line.format_map(values) for line in lines),
    )


def _known(line: str, values: Mapping[str, str | None]) -> bool:
    return all(values.get(name) is not None for name in placeholders(line))


def _values(facts: NoticeFacts, language: Language) -> dict[str, str | None]:
    return {
        "reference": facts.reference,
        "due": None if facts.due_at is None else moment(facts.due_at, language),
        "reason": free_text(facts.reason),
        "days": None if facts.days is None else days(facts.days, language),
        "resolution": free_text(facts.resolution),
        "remedy": free_text(facts.remedy),
        "compensation": _compensation(facts.compensation, language),
        "outcome": None if facts.outcome is None else _OUTCOMES[facts.outcome, language],
        "channel": None if facts.channel is None else channel_name(facts.channel, language),
    }


def moment(at: datetime, language: Language) -> str:
    """A time in the centre's zone, to the minute, with the zone named."""
    local = (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).astimezone(CENTRE_ZONE)
    if language is Language.zh:
        return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}（北京时间）"
    return f"{local:%Y-%m-%d %H:%M} (Beijing time, UTC+8)"


def amount(value: Decimal, language: Language) -> str:
    """An amount of yuan, two decimals, thousands separated."""
    plain = f"{value.quantize(Decimal('0.01')):,.2f}"
    return f"人民币{plain}元" if language is Language.zh else f"CNY {plain}"


def _compensation(value: Decimal | None, language: Language) -> str | None:
    return None if value is None or value <= 0 else amount(value, language)


def days(count: int, language: Language) -> str:
    if language is Language.zh:
        return f"{count}天"
    return f"{count} day" if count == 1 else f"{count} days"


def channel_name(channel: str, language: Language) -> str:
    return _CHANNELS.get((channel, language), _ANOTHER_CHANNEL[language])


def free_text(value: str | None) -> str | None:
    """Trimmed, cut at ``FREE_TEXT_LIMIT`` characters; blank is unknown."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    return text if len(text) <= FREE_TEXT_LIMIT else text[: FREE_TEXT_LIMIT - 1] + "…"


# --- where and in which language ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recipient:
    via: Via
    address: str


def recipient_of(contact: str, *, region: str = DEFAULT_PHONE_REGION) -> Recipient | None:
    """Where the complainant's contact can be sent a notice, or None: an e-mail address,
    or a mobile number (E.164); nothing else is written to."""
    value = contact.strip()
    if "@" in value:
        if len(value) <= MAX_EMAIL_LENGTH and _EMAIL.fullmatch(value):
            return Recipient(Via.email, value)
        return None
    try:
        number = normalise_phone(value, region=region)
    except InvalidPhone:
        return None
    if number.startswith("+") and _textable(number):
        return Recipient(Via.sms, number)
    return None


def _textable(e164: str) -> bool:
    return phonenumbers.number_type(phonenumbers.parse(e164)) in _TEXTABLE


def language_for(customer_language: str | None, recipient: Recipient | None) -> Language:
    """The customer's language if known; else Chinese for a +86 number; else English."""
    if customer_language:
        primary = customer_language.strip().split("-", 1)[0].lower()
        return Language.zh if primary in _CHINESE_TAGS else Language.en
    if recipient is not None and recipient.via is Via.sms and recipient.address.startswith("+86"):
        return Language.zh
    return Language.en
