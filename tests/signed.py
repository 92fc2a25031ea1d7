"""Posting to the four provider webhooks the way Twilio and SendGrid do: signed, or with the inbound credentials.

The settings come from `webhook_settings`: a Twilio auth token of the tests' own (the published development token
is accepted only from loopback in outbox mode, issue 11 finding 10), the fake provider's event key, and an
inbound-email password.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import urlencode

from conftest import make_settings
from fastapi.testclient import TestClient

from followup.fakeprovider import DEV_EVENT_PUBLIC_KEY, DEV_TWILIO_AUTH_TOKEN, sign_sendgrid_events, sign_twilio
from followup.settings import Settings

INBOUND_PASSWORD = "inbound-secret-for-tests"
TWILIO_TOKEN = "tests-own-twilio-auth-token-0f3c9a"
CLINIC_NUMBER = "+13105550100"
FORM = "application/x-www-form-urlencoded"


def webhook_settings(db_url: str, **sections: dict[str, Any]) -> Settings:
    """Test settings whose webhooks can be signed here."""
    base = make_settings(
        db_url,
        sendgrid={"event_public_key": DEV_EVENT_PUBLIC_KEY, "inbound_password": INBOUND_PASSWORD},
        twilio={"auth_token": TWILIO_TOKEN},
    )
    return base.with_overrides(**sections) if sections else base


def email_auth(password: str = INBOUND_PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"sendgrid:{password}".encode()).decode()}


def sms_fields(sender: str, body: str, sid: str, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "AccountSid": "AC1",
        "From": sender,
        "To": CLINIC_NUMBER,
        "Body": body,
        "NumMedia": "0",
        **extra,
    }


def twilio_signature(settings: Settings, path: str, fields: dict[str, str]) -> str:
    return sign_twilio(settings.server.public_url + path, fields, settings.twilio.auth_token or DEV_TWILIO_AUTH_TOKEN)


def post_sms(client: TestClient, settings: Settings, fields: dict[str, str]) -> Any:
    """An inbound SMS, signed over the public URL and every field."""
    path = "/webhooks/twilio/sms"
    return client.post(
        path,
        content=urlencode(fields),
        headers={"X-Twilio-Signature": twilio_signature(settings, path, fields), "Content-Type": FORM},
    )


def post_status(client: TestClient, settings: Settings, mid: int, fields: dict[str, str]) -> Any:
    """A Twilio status callback for our message `mid`, signed."""
    path = f"/webhooks/twilio/status?mid={mid}"
    return client.post(
        path,
        content=urlencode(fields),
        headers={"X-Twilio-Signature": twilio_signature(settings, path, fields), "Content-Type": FORM},
    )


def event_headers(raw: bytes, timestamp: str | None = None) -> dict[str, str]:
    ts = timestamp or str(int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": sign_sendgrid_events(raw, ts),
        "X-Twilio-Email-Event-Webhook-Timestamp": ts,
    }


def post_events(client: TestClient, events: list[dict[str, Any]], timestamp: str | None = None) -> Any:
    """A SendGrid Event Webhook batch, signed with the fake provider's development key."""
    raw = json.dumps(events).encode()
    return client.post("/webhooks/sendgrid/events", content=raw, headers=event_headers(raw, timestamp))


def email_fields(sender: str, text: str, message_id: str, to: str = "followup@clinic.example") -> dict[str, str]:
    headers = f"Message-ID: {message_id}\nFrom: {sender}\nTo: {to}\nSubject: Re: check-in\n"
    return {
        "from": sender,
        "to": to,
        "subject": "Re: check-in",
        "text": text,
        "headers": headers,
        "envelope": json.dumps({"to": [to], "from": sender}),
        "charsets": '{"text": "utf-8"}',
        "SPF": "pass",  # SendGrid's own checks, passing for the sender's domain (a genuine mail)
        "dkim": "{@" + sender.rpartition("@")[2].rstrip(">") + " : pass}",
    }
