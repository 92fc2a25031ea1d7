"""The part of Twilio's Messages API the service uses, plus inbound SMS simulation."""

from __future__ import annotations

import base64
import hmac
import json
import math
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from followup.fakeprovider.dispatch import Poster, Scheduler, Webhooks
from followup.fakeprovider.faults import FaultPlan
from followup.fakeprovider.signing import sign_twilio
from followup.fakeprovider.store import SmsRecord, Store
from followup.fakeprovider.wire import Request, Response, json_response

API_VERSION = "2010-04-01"
MAX_BODY_CHARS = 1600
MAX_PAGE_SIZE = 1000
# Messages that never left Twilio end `failed`; carrier-side problems end `undelivered` after `sent`.
FAILED_CODES = frozenset({30001, 30002})
TERMINAL = frozenset({"delivered", "undelivered", "failed"})
# Advanced Opt-Out's default single-word keywords.
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})

# Error texts never echo the number or body back: clients tend to log exception messages.
ERROR_MESSAGES = {
    20001: "Invalid parameter",
    20003: "Authenticate",
    20004: "Method not allowed",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "Invalid 'To' Phone Number",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21612: "The 'To' phone number is not currently reachable via SMS",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
}

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


def twilio_error(status: int, code: int, headers: dict[str, str] | None = None) -> Response:
    """A legacy Twilio error body, which the SDK turns into `TwilioRestException` with `.code`."""
    body = {
        "code": code,
        "message": ERROR_MESSAGES.get(code, f"Error {code}"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return json_response(status, body, headers)


def num_segments(body: str) -> int:
    """Segments Twilio bills: GSM-7 fits 160 (153 per part), anything else UCS-2 fits 70 (67 per part)."""
    if all(c in _GSM7_BASIC or c in _GSM7_EXTENDED for c in body):
        units = sum(2 if c in _GSM7_EXTENDED else 1 for c in body)
        single, part = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, part = 70, 67
    return 1 if units <= single else math.ceil(units / part)


def new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def _rfc2822(dt: datetime | None) -> str | None:
    return format_datetime(dt) if dt else None


def message_json(r: SmsRecord) -> dict[str, Any]:
    uri = f"/{API_VERSION}/Accounts/{r.account_sid}/Messages/{r.sid}.json"
    return {
        "account_sid": r.account_sid,
        "api_version": API_VERSION,
        "body": r.body,
        "date_created": _rfc2822(r.date_created),
        "date_sent": _rfc2822(r.date_sent),
        "date_updated": _rfc2822(r.date_updated),
        "direction": "outbound-api",
        "error_code": r.error_code,
        "error_message": None,
        "from": r.from_,
        "messaging_service_sid": r.messaging_service_sid,
        "num_media": "0",
        "num_segments": str(r.num_segments),
        "price": None,
        "price_unit": "USD",
        "sid": r.sid,
        "status": r.status,
        "subresource_uris": {"media": uri.removesuffix(".json") + "/Media.json"},
        "to": r.to,
        "uri": uri,
    }


def _status_rank(status: str) -> int:
    return 3 if status in TERMINAL else {"sent": 2, "sending": 1}.get(status, 0)


def _parse_when(value: str) -> date | datetime:
    """Twilio's DateSent filters take `YYYY-MM-DD` or, from the SDK, `YYYY-MM-DDTHH:MM:SSZ`."""
    if len(value) == 10:
        return date.fromisoformat(value)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).replace(microsecond=0)


def _matches(sent: datetime, op: str, when: date | datetime) -> bool:
    left: date | datetime = sent.replace(microsecond=0)
    if not isinstance(when, datetime):
        left = sent.date()
    if op == ">":
        return left >= when
    if op == "<":
        return left <= when
    return left == when


@dataclass
class TwilioApi:
    account_sid: str
    auth_token: str
    store: Store
    faults: FaultPlan
    scheduler: Scheduler
    webhooks: Webhooks
    inbound_poster: Poster
    status_delay_s: float

    def __post_init__(self) -> None:
        pair = f"{self.account_sid}:{self.auth_token}".encode()
        self._basic = "Basic " + base64.b64encode(pair).decode()

    def check_auth(self, req: Request, path_sid: str) -> Response | None:
        """401 unless Basic auth is this account's sid and token, and the path names that account."""
        given = req.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), self._basic.encode()) and path_sid == self.account_sid:
            return None
        return twilio_error(401, 20003, {"WWW-Authenticate": 'Basic realm="Twilio API"'})

    # Messages.json ------------------------------------------------------------------------------------------

    def create(self, req: Request) -> Response:
        form = req.form()
        to = form.get("To", "")
        from_ = form.get("From") or None
        service = form.get("MessagingServiceSid") or None
        body = form.get("Body", "")
        if not to:
            return twilio_error(400, 21604)
        if not from_ and not service:
            return twilio_error(400, 21603)
        if not body:
            return twilio_error(400, 21602)
        if len(body) > MAX_BODY_CHARS:
            return twilio_error(400, 21617)
        if not _E164.match(to):
            return twilio_error(400, 21211)
        faults = self.faults.peek()
        code = faults.sms_error_codes.get(to)
        if code is not None:
            return twilio_error(400, code)
        if self.store.is_opted_out(to):
            return twilio_error(400, 21610)

        callback = form.get("StatusCallback") or None
        now = datetime.now(UTC)
        record = SmsRecord(
            sid=new_sid("SM"),
            account_sid=self.account_sid,
            to=to,
            from_=from_,
            messaging_service_sid=service,
            body=body,
            num_segments=num_segments(body),
            status_callback=callback,
            message_id=_mid(callback),
            status="queued" if from_ else "accepted",
            date_created=now,
            date_updated=now,
        )
        self.store.add_sms(record, from_ or service or "", time.monotonic())
        steps = _steps(faults.sms_undelivered.get(to))
        if faults.reorder_callbacks:
            steps.reverse()
        self.scheduler.submit(_StatusJob(self, record, steps), self.status_delay_s)
        return json_response(201, message_json(record))

    def fetch(self, sid: str) -> Response:
        record = self.store.get_sms(sid)
        if record is None or record.account_sid != self.account_sid:
            return twilio_error(404, 20404)
        return json_response(200, message_json(record))

    def list(self, req: Request) -> Response:
        try:
            page = int(req.arg("Page") or 0)
            size = min(int(req.arg("PageSize") or 50), MAX_PAGE_SIZE)
            filters = [(op, _parse_when(v)) for op in ("", ">", "<") if (v := req.arg("DateSent" + op))]
        except ValueError:
            return twilio_error(400, 20001)
        if page < 0 or size < 1:
            return twilio_error(400, 20001)
        to, from_ = req.arg("To"), req.arg("From")
        records = [
            r
            for r in self.store.sms(self.account_sid)
            if (to is None or r.to == to)
            and (from_ is None or r.from_ == from_)
            # Unsent messages have no date_sent yet; the fake filters them by creation time.
            and all(_matches(r.date_sent or r.date_created, op, when) for op, when in filters)
        ]
        start = page * size
        chunk = records[start : start + size]
        kept = {k: v[-1] for k, v in req.query.items() if k in ("To", "From", "DateSent", "DateSent>", "DateSent<")}
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

        def uri(n: int) -> str:
            return f"{base}?{urlencode({**kept, 'PageSize': size, 'Page': n})}"

        more = start + size < len(records)
        return json_response(
            200,
            {
                "messages": [message_json(r) for r in chunk],
                "end": start + len(chunk) - 1 if chunk else 0,
                "first_page_uri": uri(0),
                "next_page_uri": f"{uri(page + 1)}&PageToken=PA{page + 1}" if more else None,
                "page": page,
                "page_size": size,
                "previous_page_uri": uri(page - 1) if page > 0 else None,
                "start": start,
                "uri": uri(page),
            },
        )

    # Inbound simulation -------------------------------------------------------------------------------------

    def simulate_inbound(self, req: Request) -> Response:
        """Post a signed inbound-SMS webhook to `url` and report what the service answered."""
        try:
            data = json.loads(req.body or b"null")
        except ValueError:
            data = None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("url", "from", "to", "body")):
            return json_response(400, {"error": "expected JSON with string url, from, to, body"})
        sid = data.get("message_sid") or new_sid("SM")
        if not isinstance(sid, str):
            return json_response(400, {"error": "message_sid must be a string"})
        body: str = data["body"]
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "SmsMessageSid": sid,
            "AccountSid": self.account_sid,
            "From": data["from"],
            "To": data["to"],
            "Body": body,
            "NumMedia": "0",
            "NumSegments": str(num_segments(body)),
            "SmsStatus": "received",
            "ApiVersion": API_VERSION,
        }
        opt_out = _opt_out_type(body)
        if opt_out:
            params["OptOutType"] = opt_out
            if opt_out != "HELP":
                self.store.set_opted_out(data["from"], opt_out == "STOP")
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": sign_twilio(data["url"], params, self.auth_token),
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        }
        status: int | None
        try:
            status, text = self.inbound_poster.post(data["url"], urlencode(params).encode(), headers)
        except Exception:  # any failure to reach the webhook is reported, not raised
            status, text = None, None
        self.store.add_inbound(
            {
                "message_sid": sid,
                "from": data["from"],
                "to": data["to"],
                "body": body,
                "webhook_status": status,
                "received_at": datetime.now(UTC).isoformat(),
            }
        )
        answer = {"status": status, "body": text, "message_sid": sid, "opt_out_type": opt_out}
        return json_response(200 if status is not None else 502, answer)


def _mid(callback: str | None) -> str | None:
    """Our message id rides on the StatusCallback URL as `?mid=`."""
    if not callback:
        return None
    values = parse_qs(urlsplit(callback).query).get("mid")
    return values[0] if values else None


def _steps(error_code: int | None) -> list[tuple[str, int | None]]:
    if error_code is None:
        return [("sent", None), ("delivered", None)]
    if error_code in FAILED_CODES:
        return [("failed", error_code)]
    return [("sent", None), ("undelivered", error_code)]


def _opt_out_type(body: str) -> str | None:
    word = body.strip().upper()
    if word in STOP_WORDS:
        return "STOP"
    if word in START_WORDS:
        return "START"
    if word in HELP_WORDS:
        return "HELP"
    return None


class _StatusJob:
    """Moves one message through its statuses and posts each as a signed status callback."""

    def __init__(self, api: TwilioApi, record: SmsRecord, steps: list[tuple[str, int | None]]) -> None:
        self._api = api
        self._record = record
        self._steps = steps
        self._step = 0
        self._attempt = 0
        self._token = ""

    def run(self) -> float | None:
        api, record = self._api, self._record
        status, code = self._steps[self._step]
        if self._attempt == 0:
            self._token = str(uuid.uuid4())
            api.store.update(record, lambda r: _advance(r, status, code))
        if record.status_callback:
            self._attempt += 1
            if not self._post(record.status_callback, status, code):
                delay = api.webhooks.retry_delay("sms_status", self._attempt)
                if delay is not None:
                    return delay
        self._step += 1
        self._attempt = 0
        return api.status_delay_s if self._step < len(self._steps) else None

    def _post(self, url: str, status: str, code: int | None) -> bool:
        api, r = self._api, self._record
        params = {
            "AccountSid": r.account_sid,
            "ApiVersion": API_VERSION,
            "MessageSid": r.sid,
            "MessageStatus": status,
            "SmsSid": r.sid,
            "SmsStatus": status,
            "To": r.to,
        }
        if r.from_:
            params["From"] = r.from_
        if r.messaging_service_sid:
            params["MessagingServiceSid"] = r.messaging_service_sid
        if code is not None:
            params["ErrorCode"] = str(code)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": sign_twilio(url, params, api.auth_token),
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": self._token,
        }
        return api.webhooks.try_post("sms_status", url, urlencode(params).encode(), headers)


def _advance(r: SmsRecord, status: str, code: int | None) -> None:
    """Move the resource on; like Twilio's, it never goes back from a terminal status."""
    if _status_rank(status) < _status_rank(r.status):
        return
    now = datetime.now(UTC)
    r.status = status
    r.date_updated = now
    if status in ("sent", "delivered", "undelivered") and r.date_sent is None:
        r.date_sent = now
    if code is not None:
        r.error_code = code
