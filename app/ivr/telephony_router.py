"""The telephony provider's webhooks: Twilio-compatible (TwiML) and generic JSON.

Theory of operation
-------------------

**Twilio.** ``POST /telephony/twilio/voice`` takes the incoming call (no ``step`` in the
URL) and every ``<Gather>`` answer (``?step=N``, the URL the previous answer gave);
``POST /telephony/twilio/wait`` is the wait loop of a queued caller (a turn that finds the
contact answered and the call not yet bridged bridges it, ``app.ivr.bridge``); ``POST
/telephony/twilio/status`` takes status callbacks, ``POST /telephony/twilio/callback`` those
of the calls placed to call customers back (``app.ivr.callbacks``). Each request is read
whole (at most ``telephony_max_body_bytes``), parsed as the form Twilio sends and checked
against its ``X-Twilio-Signature`` for the public URL (``app.ivr.signatures``) before anything else
happens: a missing or wrong signature is a 403 and changes nothing. The call's step then
runs exactly once (``app.ivr.calls``) in the request's transaction, committed before the
TwiML is sent.

Where the caller is live, the answer is always TwiML: a menu step the call cannot take (an
unknown call, a call already ended, a step it has not reached, a number with no active
flow) is answered with a polite goodbye and a hang-up, and changes nothing; a late menu
answer of a queued caller sends them back to the wait loop. An answer that cannot be read
(keys no phone has, a confidence that is no number) is an invalid answer, asked again;
other fields that do not parse end a caller's time in the menus politely and on record, and
send a queued caller back to the wait loop. A request that names no call the IVR could speak
to (no signature, no ``CallSid``) is a 4xx.

**Generic JSON.** ``POST /telephony/calls/{call_id}/events`` (API.md), signed with
HMAC-SHA256 over the timestamp and the raw body; stale timestamps and signatures seen before
are refused (403). Its errors are the API's usual bodies: 404 for an unknown call, 409 for a
call that has left the IVR or a step out of order, 422 naming a malformed field.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from app.config import Settings
from app.db import Session
from app.ivr import bridge, callbacks, calls, signatures, twiml, waiting, wire
from app.ivr.dependencies import settings_of, step_context
from app.ivr.exceptions import (
    CallNotFound,
    CallNotInIvr,
    MalformedWebhook,
    NoCallback,
    NotInService,
    NotWaiting,
    StepOutOfOrder,
)
from app.ivr.models import CallStatus, IvrCall, Provider
from app.ivr.schemas import (
    EventKind,
    JsonActions,
    JsonEvent,
    TwilioStatus,
    TwilioVoice,
    Waiting,
    form_errors,
)
from app.ivr.vocabulary import CallStarted, Digits, Event, NoInput, Outcome, Speech
from app.limits import BodyTooLarge
from app.openapi import errors

log = logging.getLogger(__name__)
router = APIRouter(prefix="/telephony", tags=["telephony"])

FORM_TYPE = "application/x-www-form-urlencoded"
IDEMPOTENCY_TOKEN = "I-Twilio-Idempotency-Token"
MAX_FIELDS = 200


class TwiML(Response):
    media_type = twiml.CONTENT_TYPE


REFUSED: dict[int | str, dict[str, Any]] = {
    403: {**errors(403)[403], "description": "The signature is missing, wrong or stale"}
}
TWIML_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "TwiML for Twilio to perform",
        "content": {twiml.CONTENT_TYPE: {"schema": {"type": "string"}}},
    },
    **errors(413, 422, 503),
    **REFUSED,
}
FORM_BODY = {
    "requestBody": {
        "content": {
            FORM_TYPE: {"schema": {"type": "object", "additionalProperties": {"type": "string"}}}
        },
        "required": False,
    }
}
Step = Annotated[int | None, Query(ge=0, le=100_000, description="the step a gather answers")]


# --- what every webhook needs ------------------------------------------------------------------


def _voice(settings: Settings) -> twiml.Voice:
    return twiml.Voice(
        settings.public_base_url, settings.twilio_voices, settings.ivr_hold_music_url
    )


async def _body(request: Request, settings: Settings) -> bytes:
    limit = settings.telephony_max_body_bytes
    body = await request.body()
    if len(body) > limit:
        raise BodyTooLarge(limit)
    return body


def _form(body: bytes) -> FormData | None:
    """The body as a form; None if it is not one."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return None
    fields: list[tuple[str, str | UploadFile]] = list(pairs)
    return FormData(fields)


async def twilio_form(request: Request) -> FormData:
    """The request's form, once its signature is Twilio's (or checks are off: a warning)."""
    settings = settings_of(request)
    form = _form(await _body(request, settings))
    if settings.twilio_validate:
        token = settings.twilio_auth_token
        signatures.check_twilio(
            token=None if token is None else token.get_secret_value(),
            url=signatures.public_url(
                settings.public_base_url, request.url.path, request.url.query
            ),
            params=form if form is not None else {},
            signature=request.headers.get(signatures.TWILIO_SIGNATURE),
            settings_header=request.headers.get(signatures.TWILIO_SIGNATURE_SETTINGS),
        )
    else:
        signatures.warn_unchecked(request.url.path)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if form is None or media != FORM_TYPE:
        field = {"field": "body", "message": f"send the webhook's fields as {FORM_TYPE}"}
        raise MalformedWebhook([field])
    account = settings.twilio_account_sid
    if account is not None and form.get("AccountSid") != account:
        raise signatures.SignatureRefused("the request is for another Twilio account")
    return form


def _xml(document: str) -> TwiML:
    return TwiML(document)


# --- Twilio ------------------------------------------------------------------------------------


def voice_event(data: TwilioVoice, step: int | None) -> Event:
    """The machine event a voice webhook reports."""
    if step is None:
        return CallStarted(caller=data.From, called=data.To)
    if data.Digits:
        return Digits(data.Digits)
    if data.SpeechResult:
        return Speech(data.SpeechResult, data.Confidence)
    return NoInput()


@router.post(
    "/twilio/voice", response_class=Response, responses=TWIML_ANSWER, openapi_extra=FORM_BODY
)
async def twilio_voice(request: Request, session: Session, step: Step = None) -> TwiML:
    """An incoming call (no `step`) or a `<Gather>`'s answer (`step`): the call's next TwiML.

    Signed by Twilio (`X-Twilio-Signature`) for the public base URL, or 403. A duplicated
    delivery gets the TwiML the first one got and does not advance the call again."""
    form = await twilio_form(request)
    settings, voice = settings_of(request), _voice(settings_of(request))
    token = _token(request.headers.get(IDEMPOTENCY_TOKEN))
    try:
        data = TwilioVoice.model_validate(dict(form))
    except ValidationError as exc:
        answer = None if step is None else unreadable_answer(form, exc)
        if answer is None:
            return await _malformed_voice(request, session, form, exc, voice)
        delivery = calls.Delivery(Provider.twilio, answer[0], answer[1], seq=step, token=token)
    else:
        event = voice_event(data, step)
        delivery = calls.Delivery(Provider.twilio, data.CallSid, event, seq=step, token=token)
    try:
        reply = await calls.take_step(
            session, delivery=delivery, ctx=step_context(request), render=twiml.renderer(voice)
        )
    except CallNotInIvr as exc:
        if exc.status == CallStatus.queued.value:
            return _xml(twiml.to_wait(voice))
        ended = await calls.get_call(session, Provider.twilio, delivery.call_ref)
        language = _language(settings) if ended is None else waiting.language_of(ended)
        return _xml(twiml.goodbye(language, voice=voice))
    except NotInService:
        log.warning("incoming call to a number no active IVR flow answers")
        return _xml(twiml.goodbye(_language(settings), voice=voice, reason="not_in_service"))
    except (CallNotFound, StepOutOfOrder) as exc:
        log.warning("Twilio voice webhook the call cannot take: %s", exc.detail)
        return _xml(twiml.goodbye(_language(settings), voice=voice))
    return _xml(reply.body)


def _token(value: str | None) -> str | None:
    return None if not value else f"twilio:{value[:100]}"


def _language(settings: Settings) -> str:
    return "zh-CN" if settings.default_phone_region in ("CN", "HK", "MO", "TW") else "en-US"


ANSWER_FIELDS = frozenset({"Digits", "SpeechResult", "Confidence"})
UNREADABLE_KEYS = "?"  # no option's key and no collected value: an invalid answer


def unreadable_answer(form: FormData, exc: ValidationError) -> tuple[str, Event] | None:
    """A gather's answer in a form the IVR cannot read (keys that are no phone keys, too
    many of them, a confidence that is no number): the call and an invalid answer, as a
    wrong key would be; None when other fields cannot be read either."""
    unread = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
    sid = form.get("CallSid")
    if not unread or not unread <= ANSWER_FIELDS or not isinstance(sid, str):
        return None
    if "Digits" in unread:
        return sid, Digits(UNREADABLE_KEYS)
    said = form.get("SpeechResult")
    text = said.strip()[:1000] if isinstance(said, str) and "SpeechResult" not in unread else ""
    return sid, Speech(text, 0.0)  # no confidence to go by: asked again


async def _malformed_voice(
    request: Request, session: Session, form: FormData, exc: ValidationError, voice: twiml.Voice
) -> TwiML:
    """Fields that do not parse: a caller in the IVR is ended politely and on record, a
    queued one goes on waiting; for no live call, 422."""
    sid = form.get("CallSid")
    call = None
    if isinstance(sid, str) and 0 < len(sid) <= 64:
        call = await calls.get_call(session, Provider.twilio, sid)
    if call is None or call.status == CallStatus.ended.value:
        raise MalformedWebhook(form_errors(exc))
    log.warning("Twilio voice webhook with malformed fields for a live call: %s", exc)
    if call.status == CallStatus.queued.value:
        return _xml(twiml.to_wait(voice))
    assert isinstance(sid, str)
    ctx = step_context(request)
    await waiting.end_unreadable(session, provider=Provider.twilio, call_ref=sid, ctx=ctx)
    return _xml(twiml.goodbye(waiting.language_of(call), voice=voice))


@router.post(
    "/twilio/wait", response_class=Response, responses=TWIML_ANSWER, openapi_extra=FORM_BODY
)
async def twilio_wait(request: Request, session: Session) -> TwiML:
    """One turn of a queued caller's wait: position and estimated wait, hold music, again.

    The position told never goes up; a caller whose contact ended hears goodbye."""
    form = await twilio_form(request)
    voice = _voice(settings_of(request))
    sid = form.get("CallSid")
    turn = None
    if isinstance(sid, str) and 0 < len(sid) <= 64:
        turn = await waiting.turn(session, Provider.twilio, sid)
    if turn is None:
        return _xml(twiml.goodbye(_language(settings_of(request)), voice=voice))
    if turn.standing is waiting.Standing.CONNECTED:
        # Answered, and the redirect has not reached the caller: this turn bridges them.
        assert isinstance(sid, str)
        call = await calls.get_call(session, Provider.twilio, sid)
        now = step_context(request).now
        if call is not None:
            document = await bridge.bridge_in_loop(session, call, settings_of(request), now)
            if document is not None:
                return _xml(document)
    return _xml(twiml.wait_document(turn, voice=voice))


@router.post(
    "/twilio/status", response_class=Response, responses=TWIML_ANSWER, openapi_extra=FORM_BODY
)
async def twilio_status(request: Request, session: Session) -> TwiML:
    """A status callback: a call that is over ends once (a queued caller's contact is
    abandoned); late, repeated and out-of-order reports change nothing."""
    form = await twilio_form(request)
    try:
        data = TwilioStatus.model_validate(dict(form))
    except ValidationError as exc:
        raise MalformedWebhook(form_errors(exc)) from exc
    await waiting.hang_up(
        session,
        provider=Provider.twilio,
        call_ref=data.CallSid,
        status=data.CallStatus,
        ctx=step_context(request),
    )
    return _xml(twiml.empty())


CallbackCall = Annotated[
    int | None, Query(ge=1, le=2**63 - 1, description="the IVR call called back")
]
Attempt = Annotated[int | None, Query(ge=1, le=100, description="the callback's attempt")]


@router.post(
    "/twilio/callback", response_class=Response, responses=TWIML_ANSWER, openapi_extra=FORM_BODY
)
async def twilio_callback_status(
    request: Request, session: Session, call: CallbackCall = None, attempt: Attempt = None
) -> TwiML:
    """A status callback of a call Hotline placed to call a customer back: an unanswered
    attempt is retried later, up to `callback_attempts`; late and repeated reports change
    nothing."""
    form = await twilio_form(request)  # the signature first: 403 before anything else
    missing = [name for name, value in (("call", call), ("attempt", attempt)) if value is None]
    if missing:
        raise MalformedWebhook(
            [{"field": name, "message": "the callback URL names it"} for name in missing]
        )
    assert call is not None
    assert attempt is not None
    try:
        data = TwilioStatus.model_validate(dict(form))
    except ValidationError as exc:
        raise MalformedWebhook(form_errors(exc)) from exc
    called = await calls.locked_row(session, IvrCall.id == call)
    if called is not None:  # a call Hotline does not know: nothing to change
        await callbacks.status(
            session,
            called,
            attempt=attempt,
            reported=data.CallStatus,
            settings=settings_of(request),
            now=step_context(request).now,
            ref=data.CallSid,
        )
    return _xml(twiml.empty())


# --- generic JSON ------------------------------------------------------------------------------

CallId = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9_\-.:]{1,64}$", description="the provider's id of the call")
]


def _inlined(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its ``$defs`` written in place: the schema sits inline in
    the operation, where a ``#/$defs/...`` reference would point nowhere."""
    schema = model.model_json_schema(by_alias=True)
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)  # type: ignore[no-any-return]


@router.post(
    "/calls/{call_id}/events",
    response_model=JsonActions,
    responses={**errors(404, 409, 413, 422, 503), **REFUSED},
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": _inlined(JsonEvent)}},
            "required": True,
        }
    },
)
async def json_event(
    call_id: CallId,
    request: Request,
    session: Session,
    signature: Annotated[str | None, Header(alias=signatures.JSON_SIGNATURE)] = None,
    timestamp: Annotated[str | None, Header(alias=signatures.JSON_TIMESTAMP)] = None,
    key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=100)] = None,
) -> Response:
    """What happened on a call (`incoming`, `digits`, `speech`, `no_input`, `hangup`), or
    `wait` from the provider holding a queued caller; the actions the provider performs next.

    A `wait` is answered with where the caller stands (`waiting`) and what to do: tell them
    and hold them, `dial` the agent who answered (`{"agent", "endpoint"}`), or say goodbye
    and hang up when their contact ended; 409 for a call that is not queued. Once a `wait`
    has been sent for a call, the next is expected within `ivr_silence_s`: a queued call
    silent for longer is taken as lost, and its contact abandoned.

    A `callback` (`attempt`, `status`) reports on a call Hotline asked the provider to place
    (`POST {json_provider_url}/calls`) to call this call's caller back: `answered`,
    `in-progress` or `completed` mark the attempt answered; `no-answer`, `busy`, `failed` or
    `canceled` unanswered (the next attempt follows, up to `callback_attempts`); late or
    repeated reports change nothing; 409 for a call that did not end in a callback.

    Signed: `X-Hotline-Signature` is the hex HMAC-SHA256 of `<X-Hotline-Timestamp>.<body>`
    under the webhook secret; older than the replay window, or a signature seen before for
    this call: 403. A body that names its call (`call`, which the signature then covers)
    must name the URL's: 422 otherwise.
    Send back the answer's `step` with the event that answers it: a retry of that event
    gets the same answer and does not advance the call twice."""
    settings = settings_of(request)
    body = await _body(request, settings)
    ctx = step_context(request)
    secret = settings.webhook_secret
    seen = signatures.check_json(
        secret=None if secret is None else secret.get_secret_value(),
        timestamp=timestamp,
        signature=signature,
        body=body,
        now=ctx.now,
        window_s=settings.webhook_replay_window_s,
    )
    window = settings.webhook_replay_window_s
    if not await calls.remember_signature(
        session, seen, call_ref=call_id, now=ctx.now, window_s=window
    ):
        raise signatures.SignatureRefused("this signature was used before (a replayed request)")
    event = _json_event(body)
    if event.call is not None and event.call != call_id:
        raise MalformedWebhook(
            [{"field": "call", "message": f"names call {event.call!r}, not the URL's"}]
        )
    if event.event is EventKind.hangup:
        return await _json_hangup(session, call_id, ctx)
    if event.event is EventKind.wait:
        return await _json_wait(session, call_id, settings, ctx)
    if event.event is EventKind.callback:
        return await _json_callback(session, call_id, event, settings, ctx)
    delivery = calls.Delivery(
        Provider.json, call_id, _machine_event(event), seq=event.step, token=_key(key)
    )
    reply = await calls.take_step(session, delivery=delivery, ctx=ctx, render=wire.render)
    return Response(reply.body, media_type=wire.CONTENT_TYPE)


def _json_event(body: bytes) -> JsonEvent:
    try:
        return JsonEvent.model_validate_json(body)
    except ValidationError as exc:
        raise MalformedWebhook(_json_errors(exc)) from exc


def _json_errors(exc: ValidationError) -> list[dict[str, str]]:
    found = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "body"
        found.append({"field": where, "message": error["msg"]})
    return found


def _machine_event(event: JsonEvent) -> Event:
    if event.event is EventKind.incoming:
        missing = [name for name, value in (("from", event.from_), ("to", event.to)) if not value]
        if missing:
            raise MalformedWebhook(
                [{"field": name, "message": "an incoming call needs it"} for name in missing]
            )
        return CallStarted(caller=event.from_ or "", called=event.to or "")
    if event.event is EventKind.digits:
        return Digits(event.digits) if event.digits else NoInput()
    if event.event is EventKind.speech:
        return Speech(event.speech, event.confidence or 0.0) if event.speech else NoInput()
    return NoInput()


def _key(value: str | None) -> str | None:
    return None if not value else f"key:{value}"


async def _json_wait(
    session: Session, call_id: str, settings: Settings, ctx: calls.Context
) -> Response:
    """Where the queued caller of ``call_id`` stands, and what their provider does now: tell
    them and hold them, put them through to the agent who answered, or say goodbye."""
    turn = await waiting.turn(session, Provider.json, call_id)
    if turn is None:
        raise CallNotFound(call_id)
    if turn.call_status not in (CallStatus.queued.value, CallStatus.bridged.value):
        raise NotWaiting(call_id, turn.call_status)
    language, step, status = turn.language, turn.step, turn.call_status
    actions: list[dict[str, Any]] = []
    if turn.standing is waiting.Standing.CONNECTED:
        # Answered: the call itself is needed to put the caller through (read only then).
        call = await calls.get_call(session, Provider.json, call_id)
        found = None if call is None else await bridge.put_through_in_loop(session, call, ctx.now)
        if call is not None and found is not None:
            contact, endpoint = found
            actions = wire.put_through(language, contact.agent_id, endpoint)
            step, status = call.step, call.status
    if turn.standing is waiting.Standing.GONE:
        actions = [
            {"say": twiml.phrase(language, "goodbye"), "language": language},
            {"hangup": {}},
        ]
    if not actions:
        actions = [{"say": text, "language": language} for text in twiml.standing_phrases(turn)]
        actions.append({"play": settings.ivr_hold_music_url})
    standing = {
        "standing": turn.standing.value,
        "position": turn.position if turn.standing is waiting.Standing.WAITING else None,
        "estimated_wait_s": turn.estimated_wait_s,
    }
    answer = JsonActions(
        call_id=call_id,
        step=step,
        status=status,
        actions=actions,
        waiting=Waiting.model_validate(standing),
    )
    return Response(answer.model_dump_json(), media_type=wire.CONTENT_TYPE)


async def _json_callback(
    session: Session, call_id: str, event: JsonEvent, settings: Settings, ctx: calls.Context
) -> Response:
    """The provider's word on an attempt of the call it placed to call ``call_id``'s caller
    back (``app.ivr.callbacks``): reported twice or late, it changes nothing."""
    missing = [name for name in ("attempt", "status") if getattr(event, name) is None]
    if missing:
        raise MalformedWebhook(
            [{"field": name, "message": "a callback event needs it"} for name in missing]
        )
    assert event.attempt is not None
    assert event.status is not None
    call = await calls.locked_row(
        session, IvrCall.provider == Provider.json.value, IvrCall.call_ref == call_id
    )
    if call is None:
        raise CallNotFound(call_id)
    if call.outcome != Outcome.CALLBACK.value:
        raise NoCallback(call_id)
    await callbacks.status(
        session,
        call,
        attempt=event.attempt,
        reported=event.status.value,
        settings=settings,
        now=ctx.now,
    )
    return _no_actions(call)


async def _json_hangup(session: Session, call_id: str, ctx: calls.Context) -> Response:
    call = await waiting.hang_up(
        session, provider=Provider.json, call_ref=call_id, status="hangup", ctx=ctx
    )
    if call is None:
        raise CallNotFound(call_id)
    return _no_actions(call)


def _no_actions(call: IvrCall) -> Response:
    """The answer to an event that leaves the provider nothing to do with the call."""
    body = {"call_id": call.call_ref, "step": call.step, "status": call.status, "actions": []}
    return Response(json.dumps(body), media_type=wire.CONTENT_TYPE)
