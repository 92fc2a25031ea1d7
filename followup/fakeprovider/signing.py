"""Signatures the fake puts on its webhooks, made the way Twilio and SendGrid make them."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from functools import cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from twilio.request_validator import RequestValidator

from followup.fakeprovider.dev_keys import DEV_EVENT_PRIVATE_KEY_PEM


def sign_twilio(url: str, params: Mapping[str, str], auth_token: str) -> str:
    """Return the `X-Twilio-Signature` Twilio would send when posting `params` as a form to `url`."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))


@cache
def _event_key() -> ec.EllipticCurvePrivateKey:
    key = load_pem_private_key(DEV_EVENT_PRIVATE_KEY_PEM, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):  # pragma: no cover - the shipped key is EC
        raise TypeError("the dev event key must be an EC key")
    return key


def sign_sendgrid_events(payload: bytes, timestamp: str) -> str:
    """Return the `X-Twilio-Email-Event-Webhook-Signature` for a raw event payload and its timestamp.

    SendGrid signs `timestamp + payload` with ECDSA P-256 / SHA-256 and sends the DER signature in base64.
    """
    der = _event_key().sign(timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(der).decode()
