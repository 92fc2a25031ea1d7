"""SendGrid's v3 mail send, and the signed Event Webhook posts that follow an accepted send."""

from __future__ import annotations

import base64
import functools
import hmac
import json
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from followup.fakeprovider.dispatch import Scheduler, Webhooks
from followup.fakeprovider.faults import FaultPlan
from followup.fakeprovider.signing import sign_sendgrid_events
from followup.fakeprovider.store import EmailRecord, Store
from followup.fakeprovider.wire import Request, Response, json_response

MAX_RECIPIENTS = 1000
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
# Event keys SendGrid sets itself; a custom arg of the same name does not overwrite them.
_RESERVED = frozenset({"email", "timestamp", "event", "sg_event_id", "sg_message_id", "smtp-id", "category"})
_OUTCOMES: dict[str, list[str]] = {
    "delivered": ["processed", "delivered"],
    "bounce": ["processed", "bounce"],
    "dropped": ["processed", "dropped"],
    "spamreport": ["processed", "delivered", "spamreport"],
}


def sendgrid_error(status: int, message: str, field: str | None = None) -> Response:
    return json_response(status, {"errors": [{"message": message, "field": field, "help": None}]})


def _random_id() -> str:
    """22 url-safe characters, the shape of SendGrid's message and event ids."""
    return base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


def _email(obj: Any) -> str | None:
    if isinstance(obj, dict) and isinstance(obj.get("email"), str) and "@" in obj["email"]:
        return str(obj["email"])
    return None


@dataclass
class _Mail:
    """The parts of a validated mail send the fake keeps."""

    sender: str
    recipients: list[tuple[str, str, dict[str, str]]]
    """(email, subject, custom_args) per recipient."""
    text: str | None
    html: str | None
    reply_to: str | None
    categories: list[str]


def validate(payload: Any) -> tuple[_Mail | None, list[tuple[str | None, str]]]:
    """Check a mail send the way SendGrid does, minimally; returns the mail or its (field, message) errors."""
    if not isinstance(payload, dict):
        return None, [(None, "Bad Request")]
    errors: list[tuple[str | None, str]] = []
    top_args = payload.get("custom_args") or {}
    if not isinstance(top_args, dict) or not all(isinstance(v, str) for v in top_args.values()):
        errors.append(("custom_args", "Invalid type. Expected: string, given: integer."))
        top_args = {}
    subject = payload.get("subject")
    personalizations = payload.get("personalizations")
    recipients: list[tuple[str, str, dict[str, str]]] = []
    if not isinstance(personalizations, list) or not personalizations:
        errors.append(
            (
                "personalizations",
                "The personalizations field is required and must have at least one personalization.",
            )
        )
        personalizations = []
    for i, p in enumerate(personalizations):
        p = p if isinstance(p, dict) else {}
        p_subject = p.get("subject") or subject
        if not isinstance(p_subject, str) or not p_subject:
            errors.append(
                (
                    "subject",
                    "The subject is required. You can get around this requirement if you "
                    "use a template with a subject defined or if every personalization has a subject "
                    "defined.",
                )
            )
            p_subject = ""
        p_args = p.get("custom_args") or {}
        if not isinstance(p_args, dict) or not all(isinstance(v, str) for v in p_args.values()):
            errors.append((f"personalizations.{i}.custom_args", "Invalid type. Expected: string."))
            p_args = {}
        to = p.get("to")
        if not isinstance(to, list) or not to:
            errors.append(
                (
                    f"personalizations.{i}.to",
                    "The to array is required for all personalization "
                    "objects, and must have at least one email object with a valid email address.",
                )
            )
            to = []
        for j, addr in enumerate([*to, *(p.get("cc") or []), *(p.get("bcc") or [])]):
            email = _email(addr)
            if email is None:
                errors.append((f"personalizations.{i}.to.{j}.email", "Does not contain a valid address."))
            else:
                recipients.append((email, p_subject, {**top_args, **p_args}))
    if len(recipients) > MAX_RECIPIENTS:
        errors.append(("personalizations", "The total number of recipients must be less than 1000."))
    sender = _email(payload.get("from"))
    if sender is None:
        errors.append(
            (
                "from.email",
                "The from object must be provided for every email send. It is an object "
                "that requires the email parameter, but may also contain a name parameter.",
            )
        )
    content = payload.get("content")
    blocks = {}
    if isinstance(content, list):
        blocks = {
            c["type"]: c["value"]
            for c in content
            if isinstance(c, dict) and isinstance(c.get("type"), str) and isinstance(c.get("value"), str) and c["value"]
        }
    if not blocks and not payload.get("template_id"):
        errors.append(
            (
                "content",
                "Unless a valid template_id is provided, the content parameter is required. "
                "There must be at least one defined content block.",
            )
        )
    if errors or sender is None:
        return None, errors
    categories = payload.get("categories") or []
    return _Mail(
        sender=sender,
        recipients=recipients,
        text=blocks.get("text/plain"),
        html=blocks.get("text/html"),
        reply_to=_email(payload.get("reply_to")),
        categories=[c for c in categories if isinstance(c, str)] if isinstance(categories, list) else [],
    ), []


@dataclass
class SendGridApi:
    api_key: str
    events_url: str | None
    store: Store
    faults: FaultPlan
    scheduler: Scheduler
    webhooks: Webhooks
    status_delay_s: float

    def check_auth(self, req: Request) -> Response | None:
        given = req.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
            return None
        return sendgrid_error(401, "The provided authorization grant is invalid, expired, or revoked")

    def send(self, req: Request) -> Response:
        try:
            payload = json.loads(req.body)
        except ValueError:
            payload = None
        mail, errors = validate(payload)
        if mail is None:
            body = {"errors": [{"message": m, "field": f, "help": None} for f, m in errors]}
            return json_response(400, body)
        x_message_id = _random_id()
        now = datetime.now(UTC)
        outcomes = self.faults.peek().email_events
        records = [
            EmailRecord(
                provider_id=x_message_id,
                to=email,
                from_=mail.sender,
                subject=subject,
                text=mail.text,
                html=mail.html,
                reply_to=mail.reply_to,
                custom_args=args,
                categories=mail.categories,
                status="queued",
                received_at=now,
            )
            for email, subject, args in mail.recipients
        ]
        self.store.add_emails(records, mail.sender, time.monotonic())
        job = _EventsJob(self, x_message_id, records, [outcomes.get(r.to, "delivered") for r in records])
        self.scheduler.submit(job, self.status_delay_s)
        return Response(202, headers={"X-Message-Id": x_message_id})


class _EventsJob:
    """Posts the signed events of one mail send in one batch, retried, and twice if duplicates are on."""

    def __init__(self, api: SendGridApi, x_message_id: str, records: list[EmailRecord], outcomes: list[str]) -> None:
        self._api = api
        self._records = records
        self._payload = b""
        self._attempt = 0
        self._deliveries_left = 0
        self._x_message_id = x_message_id
        self._outcomes = outcomes

    def _build(self) -> bytes:
        events: list[dict[str, Any]] = []
        sg_message_id = f"{self._x_message_id}.filter0001.{os.getpid()}.{uuid.uuid4().hex[:8].upper()}.0"
        ts = int(time.time())
        for record, outcome in zip(self._records, self._outcomes, strict=True):
            names = _OUTCOMES[outcome]
            self._api.store.update(record, functools.partial(_set_status, status=names[-1]))
            for name in names:
                event: dict[str, Any] = {k: v for k, v in record.custom_args.items() if k not in _RESERVED}
                event.update(
                    email=record.to,
                    timestamp=ts,
                    event=name,
                    sg_event_id=_random_id(),
                    sg_message_id=sg_message_id,
                    **{"smtp-id": f"<{self._x_message_id}@fake.sendgrid.invalid>"},
                )
                if record.categories:
                    event["category"] = list(record.categories)
                if name == "delivered":
                    event["response"] = "250 OK"
                elif name == "bounce":
                    event.update(type="bounce", status="5.1.1", reason="550 5.1.1 unknown recipient")
                elif name == "dropped":
                    event["reason"] = "Bounced Address"
                events.append(event)
        return json.dumps(events, separators=(",", ":")).encode()

    def run(self) -> float | None:
        api = self._api
        if not self._payload:
            self._payload = self._build()
            self._deliveries_left = 2 if api.faults.peek().duplicate_events else 1
        if api.events_url is None:
            return None
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "SendGrid Event API",
            SIGNATURE_HEADER: sign_sendgrid_events(self._payload, timestamp),
            TIMESTAMP_HEADER: timestamp,
        }
        self._attempt += 1
        if not api.webhooks.try_post("email_events", api.events_url, self._payload, headers):
            delay = api.webhooks.retry_delay("email_events", self._attempt)
            if delay is not None:
                return delay
        self._attempt = 0
        self._deliveries_left -= 1
        return 0.0 if self._deliveries_left > 0 else None


def _set_status(record: EmailRecord, status: str) -> None:
    record.status = status
