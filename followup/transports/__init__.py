"""Channels: Twilio SMS, SendGrid email, the outbox, and a recording fake, all behind `Transport`."""

from followup.transports.base import (
    LookupUnavailable,
    Outgoing,
    PermanentSendError,
    RetryableSendError,
    SendError,
    Sent,
    Transport,
)

__all__ = [
    "LookupUnavailable",
    "Outgoing",
    "PermanentSendError",
    "RetryableSendError",
    "SendError",
    "Sent",
    "Transport",
]
