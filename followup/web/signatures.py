"""Webhook authenticity: Twilio's HMAC signature and SendGrid's ECDSA event signature, checked against the
public URL the providers were configured with (never the URL this process sees behind a proxy)."""

from __future__ import annotations

import base64
import hmac
import ipaddress
import time

from starlette.requests import Request

from followup.settings import Settings
from followup.transports.webhook_auth import sendgrid_signature_valid, twilio_signature_valid


def public_url_of(settings: Settings, request: Request) -> str:
    url = settings.server.public_url + request.url.path
    return f"{url}?{request.url.query}" if request.url.query else url


def twilio_valid(settings: Settings, request: Request, form: dict[str, str]) -> bool:
    token = settings.twilio.auth_token or (dev_twilio_token(settings) if from_loopback(request) else "")
    signature = request.headers.get("X-Twilio-Signature", "")
    return twilio_signature_valid(token, public_url_of(settings, request), form, signature)


def from_loopback(request: Request) -> bool:
    """The request came from this machine (the patient-phone demo posts to its own webhook in process)."""
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dev_twilio_token(settings: Settings) -> str:
    """In outbox mode (no Twilio, no SendGrid: the patient-phone demo) inbound SMS are signed with a development
    token, so the demo goes through the same signature check as production. That token is published: a signature
    made with it is accepted only from the loopback address (`twilio_valid`), never from a reachable server's
    network, and never once a provider is configured or in production (issue 11, finding 10)."""
    if not settings.outbox_mode:
        return ""
    from followup.fakeprovider import DEV_TWILIO_AUTH_TOKEN

    return DEV_TWILIO_AUTH_TOKEN


def sendgrid_public_key(settings: Settings) -> str:
    if settings.sendgrid.event_public_key:
        return settings.sendgrid.event_public_key
    if settings.sendgrid.api_base and settings.security.environment != "production":
        from followup.fakeprovider import DEV_EVENT_PUBLIC_KEY

        return DEV_EVENT_PUBLIC_KEY  # the local fake provider's published development key
    return ""


def sendgrid_valid(settings: Settings, request: Request, raw: bytes, now: float | None = None) -> bool:
    key = sendgrid_public_key(settings)
    signature = request.headers.get("X-Twilio-Email-Event-Webhook-Signature", "")
    timestamp = request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp", "")
    if not key or not signature or not timestamp:
        return False
    try:
        age = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        return False
    if age > settings.sendgrid.event_max_age_seconds:
        return False  # a replay of an old, validly signed batch
    return sendgrid_signature_valid(key, raw, signature, timestamp)


def basic_auth_valid(request: Request, username: str, password: str) -> bool:
    """HTTP Basic credentials for SendGrid Inbound Parse (configured in its URL)."""
    if not password:
        return False
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("basic "):
        return False
    try:
        user, _, pw = base64.b64decode(header[6:]).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(user, username) and hmac.compare_digest(pw, password)
