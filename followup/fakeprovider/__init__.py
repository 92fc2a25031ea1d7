"""A fake Twilio (Messages and Calls APIs) and SendGrid (v3 mail send) on a real local HTTP server.

It lets the real SDKs run in tests, the demo and benchmarks, and sends the signed webhooks the real
services send (SMS status callbacks, inbound SMS, SendGrid events, a callee's key press and how a call ended).
See `FakeProvider`.
"""

from followup.fakeprovider.cli import main
from followup.fakeprovider.dev_keys import (
    DEV_EVENT_PUBLIC_KEY,
    DEV_SENDGRID_API_KEY,
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
)
from followup.fakeprovider.faults import Faults
from followup.fakeprovider.provider import FakeProvider
from followup.fakeprovider.signing import sign_sendgrid_events, sign_twilio

__all__ = [
    "DEV_EVENT_PUBLIC_KEY",
    "DEV_SENDGRID_API_KEY",
    "DEV_TWILIO_ACCOUNT_SID",
    "DEV_TWILIO_AUTH_TOKEN",
    "FakeProvider",
    "Faults",
    "main",
    "sign_sendgrid_events",
    "sign_twilio",
]
