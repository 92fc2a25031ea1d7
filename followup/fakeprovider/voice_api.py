"""The part of Twilio's Voice API the service uses (`Calls.json`), and simulated key presses.

A call is created as Twilio would create it (201, `queued`), with its TwiML kept. Nothing rings: a test or the
demo decides what the callee does through the control API. `press(sid, digits)` posts the signed <Gather>
callback to the TwiML's `action` with `Digits`, as Twilio does after a key press; `end(sid, status)` posts the
signed status callback (`completed`, `no-answer`, `busy`, `failed`).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

from followup.fakeprovider.dispatch import Poster
from followup.fakeprovider.signing import sign_twilio
from followup.fakeprovider.wire import Request, Response, json_response

API_VERSION = "2010-04-01"
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
ENDINGS = frozenset({"completed", "no-answer", "busy", "failed", "canceled"})


@dataclass
class CallRecord:
    sid: str
    account_sid: str
    to: str
    from_: str
    twiml: str
    status_callback: str | None
    status: str = "queued"
    digits: list[str] = field(default_factory=list)
    posts: list[dict[str, Any]] = field(default_factory=list)  # what the fake posted back, and the answers
    date_created: datetime = field(default_factory=lambda: datetime.now(UTC))

    def public(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "to": self.to,
            "from": self.from_,
            "status": self.status,
            "twiml": self.twiml,
            "said": said(self.twiml),
            "gather_action": gather_action(self.twiml),
            "status_callback": self.status_callback,
            "digits": list(self.digits),
            "posts": list(self.posts),
        }


def said(twiml: str) -> list[str]:
    """Every <Say> text of the TwiML, in order."""
    try:
        root = ET.fromstring(twiml)  # noqa: S314 - our own service's TwiML, in tests and the demo
    except ET.ParseError:
        return []
    return [el.text or "" for el in root.iter("Say")]


def gather_action(twiml: str) -> str | None:
    try:
        root = ET.fromstring(twiml)  # noqa: S314
    except ET.ParseError:
        return None
    gather = root.find(".//Gather")
    return gather.get("action") if gather is not None else None


def twilio_voice_error(status: int, code: int, message: str) -> Response:
    return json_response(status, {"code": code, "message": message, "more_info": "", "status": status})


@dataclass
class VoiceApi:
    account_sid: str
    auth_token: str
    poster: Poster
    _calls: dict[str, CallRecord] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, req: Request) -> Response:
        form = req.form()
        to, from_ = form.get("To", ""), form.get("From", "")
        twiml = form.get("Twiml") or ""
        if not to:
            return twilio_voice_error(400, 21201, "No 'To' number is specified")
        if not from_:
            return twilio_voice_error(400, 21213, "No 'From' number is specified")
        if not _E164.match(to):
            return twilio_voice_error(400, 21217, "Phone number is not a valid phone number")
        if not twiml and not form.get("Url"):
            return twilio_voice_error(400, 21205, "Url or Twiml is required")
        record = CallRecord(
            sid="CA" + uuid.uuid4().hex,
            account_sid=self.account_sid,
            to=to,
            from_=from_,
            twiml=twiml,
            status_callback=form.get("StatusCallback") or None,
        )
        with self._lock:
            self._calls[record.sid] = record
        return json_response(201, self._json(record))

    def _json(self, r: CallRecord) -> dict[str, Any]:
        return {
            "sid": r.sid,
            "account_sid": r.account_sid,
            "api_version": API_VERSION,
            "to": r.to,
            "from": r.from_,
            "status": r.status,
            "direction": "outbound-api",
            "date_created": format_datetime(r.date_created),
            "uri": f"/{API_VERSION}/Accounts/{r.account_sid}/Calls/{r.sid}.json",
        }

    def calls(self) -> list[dict[str, Any]]:
        with self._lock:
            return [c.public() for c in self._calls.values()]

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    def _params(self, r: CallRecord, status: str) -> dict[str, str]:
        return {
            "CallSid": r.sid,
            "AccountSid": r.account_sid,
            "From": r.from_,
            "To": r.to,
            "CallStatus": status,
            "Direction": "outbound-api",
            "ApiVersion": API_VERSION,
        }

    def _post(self, r: CallRecord, url: str, params: dict[str, str]) -> dict[str, Any]:
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": sign_twilio(url, params, self.auth_token),
            "User-Agent": "TwilioProxy/1.1",
        }
        try:
            status, text = self.poster.post(url, urlencode(params).encode(), headers)
        except Exception:  # an unreachable webhook is reported, not raised
            status, text = None, None
        answer = {"url": url, "params": params, "status": status, "body": text}
        r.posts.append(answer)
        return answer

    def press(self, sid: str, digits: str) -> dict[str, Any] | None:
        """The callee answered and pressed `digits`: post the signed <Gather> callback, as Twilio does."""
        with self._lock:
            r = self._calls.get(sid)
        if r is None:
            return None
        action = gather_action(r.twiml)
        if not action:
            return {"error": "the call's TwiML has no <Gather action>"}
        r.status = "in-progress"
        r.digits.append(digits)
        return self._post(r, action, {**self._params(r, "in-progress"), "Digits": digits, "FinishedOnKey": ""})

    def end(self, sid: str, status: str) -> dict[str, Any] | None:
        """The call ended (`completed`, `no-answer`, `busy`, `failed`): post the signed status callback."""
        with self._lock:
            r = self._calls.get(sid)
        if r is None:
            return None
        r.status = status
        if not r.status_callback:
            return {"status": None, "body": None}
        return self._post(r, r.status_callback, {**self._params(r, status), "CallDuration": "0"})

    def control(self, req: Request, what: str) -> Response:
        """POST /_fake/calls/press {"sid", "digits"} or /_fake/calls/end {"sid", "status"}."""
        try:
            data = json.loads(req.body or b"null")
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
            return json_response(400, {"error": "expected JSON with a string sid"})
        if what == "press":
            digits = data.get("digits")
            if not isinstance(digits, str) or not digits:
                return json_response(400, {"error": "expected string digits"})
            answer = self.press(data["sid"], digits)
        else:
            status = data.get("status", "completed")
            if status not in ENDINGS:
                return json_response(400, {"error": f"status must be one of {sorted(ENDINGS)}"})
            answer = self.end(data["sid"], status)
        if answer is None:
            return json_response(404, {"error": "no such call"})
        return json_response(200, answer)
