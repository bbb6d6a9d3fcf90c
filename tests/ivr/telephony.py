"""A telephony provider for the IVR's tests: Twilio's side of a call, and the JSON adapter's.

``TwilioCall`` behaves as Twilio does: it posts the form fields Twilio posts, to the URL the
last TwiML named (the voice URL for the incoming call, then each ``<Gather>``'s action, each
``<Redirect>``), signed with the ``twilio`` package's own ``RequestValidator`` for the public
URL. The app is reached through its ASGI transport at another host (``http://test``), as a
service behind a proxy is: the signature only checks because the app checks it against its
configured public base URL.

``JsonProvider`` signs the generic JSON adapter's events as docs/telephony.md says.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from httpx import AsyncClient, Response
from pydantic import SecretStr
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from app.config import Settings
from tests.conftest import make_settings
from tests.fixtures.factories import Api, expect

PUBLIC = "https://hotline.example.com"
TWILIO_TOKEN = "twilio-auth-token-for-tests"
ACCOUNT = "AC" + "0" * 32
WEBHOOK_SECRET = "webhook-secret-for-tests"
FLOWS = Path(__file__).resolve().parents[2] / "app" / "ivr" / "flows"
CARDS_NUMBER = "+864008895561"
HOTLINE = "95561"
_sids = itertools.count(1)


def telephony_settings(db: str) -> Settings:
    """Settings that take the provider's webhooks as this module signs them, for the public
    base URL (not the one requests arrive at)."""
    return make_settings(
        db,
        public_base_url=PUBLIC,
        twilio_auth_token=SecretStr(TWILIO_TOKEN),
        webhook_secret=SecretStr(WEBHOOK_SECRET),
    )


def new_sid() -> str:
    return f"CA{next(_sids):032x}"


def sign(url: str, params: Mapping[str, str], token: str = TWILIO_TOKEN) -> str:
    """The ``X-Twilio-Signature`` Twilio sends for a POST of ``params`` to ``url``."""
    return str(RequestValidator(token).compute_signature(url, dict(params)))


async def post_twilio(
    client: AsyncClient,
    url: str,
    params: Mapping[str, str],
    *,
    signature: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """POST a form to a public URL of the app, signed as Twilio signs it (or as given)."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    sent = {"X-Twilio-Signature": signature if signature is not None else sign(url, params)}
    return await client.post(path, data=dict(params), headers={**sent, **(headers or {})})


@dataclass
class Verb:
    """One TwiML verb: its name, attributes, text and the verbs inside it."""

    name: str
    attributes: dict[str, str]
    text: str
    children: list[Verb]


def verbs(document: str) -> list[Verb]:
    """The verbs of a TwiML document, in order."""
    root = ET.fromstring(document)
    assert root.tag == "Response", document

    def read(element: ET.Element) -> Verb:
        return Verb(
            element.tag,
            dict(element.attrib),
            (element.text or "").strip(),
            [read(child) for child in element],
        )

    return [read(child) for child in root]


@dataclass
class TwilioCall:
    """One call, as Twilio places it: what it posts, and the TwiML it got back."""

    client: AsyncClient
    caller: str
    called: str
    sid: str = field(default_factory=new_sid)
    last: str = ""
    next_url: str = f"{PUBLIC}/telephony/twilio/voice"
    posted: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def fields(self, **extra: str) -> dict[str, str]:
        base = {
            "AccountSid": ACCOUNT,
            "ApiVersion": "2010-04-01",
            "CallSid": self.sid,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            "From": self.caller,
            "To": self.called,
        }
        return {**base, **extra}

    async def post(self, url: str, params: dict[str, str], **kwargs: Any) -> str:
        self.posted.append((url, params))
        self.last = expect_twiml(await post_twilio(self.client, url, params, **kwargs))
        self._follow()
        return self.last

    def _follow(self) -> None:
        """Where Twilio goes next: a gather's action, or a redirect."""
        found = verbs(self.last)
        for verb in found:
            if verb.name in ("Gather", "Redirect"):
                self.next_url = verb.attributes.get("action") or verb.text
                return
        self.next_url = ""

    async def start(self) -> str:
        """The call reaches the IVR (``CallStatus`` ringing, as Twilio sends it)."""
        return await self.post(self.next_url, self.fields(CallStatus="ringing"))

    async def press(self, digits: str) -> str:
        """Keys in answer to the last ``<Gather>``."""
        assert self.gathering(), self.last
        return await self.post(self.next_url, self.fields(Digits=digits))

    async def say(self, text: str, confidence: float = 0.9) -> str:
        assert self.gathering(), self.last
        params = self.fields(SpeechResult=text, Confidence=f"{confidence:.2f}")
        return await self.post(self.next_url, params)

    async def silence(self) -> str:
        """The gather timed out: ``actionOnEmptyResult`` makes Twilio post without Digits."""
        assert self.gathering(), self.last
        return await self.post(self.next_url, self.fields())

    async def redirect(self) -> str:
        """Follow a ``<Redirect>`` (the wait loop)."""
        assert self.next_url.endswith("/telephony/twilio/wait"), self.last
        return await self.post(self.next_url, self.fields())

    async def status(self, status: str) -> Response:
        """A status callback."""
        params = self.fields(CallStatus=status, CallDuration="42")
        return await post_twilio(self.client, f"{PUBLIC}/telephony/twilio/status", params)

    def gathering(self) -> bool:
        return any(v.name == "Gather" for v in verbs(self.last))

    def hung_up(self) -> bool:
        return any(v.name == "Hangup" for v in verbs(self.last))

    def waiting(self) -> bool:
        return self.next_url.endswith("/telephony/twilio/wait")


def expect_twiml(response: Response) -> str:
    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/xml"), response.headers
    return response.text


def said(document: str) -> list[str]:
    """Every text the document speaks, gathers' prompts included."""
    found: list[str] = []

    def walk(items: list[Verb]) -> None:
        for verb in items:
            if verb.name == "Say":
                found.append(verb.text)
            walk(verb.children)

    walk(verbs(document))
    return found


# --- the generic JSON adapter --------------------------------------------------------------


def json_signature(timestamp: str, body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    message = timestamp.encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


@dataclass
class JsonProvider:
    """A provider of the generic JSON protocol, signing with the clock it is given."""

    client: AsyncClient
    now: datetime

    def headers(self, body: bytes, *, at: datetime | None = None) -> dict[str, str]:
        timestamp = str(int((at or self.now).timestamp()))
        return {
            "Content-Type": "application/json",
            "X-Hotline-Timestamp": timestamp,
            "X-Hotline-Signature": json_signature(timestamp, body),
        }

    async def send(
        self,
        call_id: str,
        event: dict[str, Any],
        *,
        at: datetime | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        body = json.dumps(event).encode()
        sent = {**self.headers(body, at=at), **(headers or {})}
        return await self.client.post(
            f"/telephony/calls/{call_id}/events", content=body, headers=sent
        )


# --- the centre the demo flows need --------------------------------------------------------


async def centre(api: Api) -> dict[str, Any]:
    """Skills, queues and customers the demo flows name, made through the API."""
    for skill in ("credit_card", "complaints"):
        await api.skill(skill)
    queues = {
        "credit-cards": [{"skills": [{"skill": "credit_card", "min_level": 3}]}],
        "complaints": [{"skills": [{"skill": "complaints", "min_level": 5}]}],
        "general": [],
    }
    for name, steps in queues.items():
        body = {"name": name, "channels": ["voice", "callback", "chat"], "steps": steps}
        expect(await api.post("/api/v1/queues", body), 201)
    platinum = await api.customer(
        name="Huang Mei", phone="+8613800000001", id_number="11010519491231002X", tier="platinum"
    )
    standard = await api.customer(name="Wu Tao", phone="+8613800000004", tier="standard")
    return {"platinum": platinum, "standard": standard}


async def upload(api: Api, name: str) -> dict[str, Any]:
    """Upload a demo flow (YAML) and activate it for its numbers."""
    document = (FLOWS / f"{name}.yaml").read_bytes()
    headers = {"Content-Type": "application/yaml"}
    flow = expect(await api.post("/api/v1/ivr/flows", content=document, headers=headers), 201)
    return expect(await api.post(f"/api/v1/ivr/flows/{flow['id']}/activate", {}), 200)  # type: ignore[no-any-return]
