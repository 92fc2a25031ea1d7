"""Provider signatures on what Twilio and SendGrid send us, checked with their own SDKs' verifiers.

Pure checks over values (no web framework): the web layer extracts the URL, headers and body and asks here.
"""

from __future__ import annotations

from sendgrid.helpers.eventwebhook import EventWebhook
from twilio.request_validator import RequestValidator

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def twilio_signature_valid(auth_token: str, url: str, form: dict[str, str], signature: str) -> bool:
    """Twilio's HMAC-SHA1 `X-Twilio-Signature` over the public URL and the form parameters."""
    if not auth_token or not signature:
        return False
    return bool(RequestValidator(auth_token).validate(url, form, signature))


def sendgrid_signature_valid(public_key: str, payload: bytes, signature: str, timestamp: str) -> bool:
    """SendGrid's ECDSA event-webhook signature over timestamp + body; anything malformed is not authentic."""
    if not public_key or not signature or not timestamp:
        return False
    try:
        return bool(EventWebhook(public_key).verify_signature(payload.decode("utf-8"), signature, timestamp))
    except Exception:  # malformed key, signature or body
        return False


def twiml(text: str) -> str:
    """A TwiML answer that texts `text` back, or the empty answer (send nothing)."""
    if not text:
        return EMPTY_TWIML
    from twilio.twiml.messaging_response import MessagingResponse

    resp = MessagingResponse()
    resp.message(text)
    return str(resp)
