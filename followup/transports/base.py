"""The one small interface every channel implements, and the errors it may raise.

SendError
├── RetryableSendError   429, 5xx, timeouts: try again later (after `retry_after` when the provider said)
│                        `ambiguous=True`: the request may have reached the provider; reconcile first
└── PermanentSendError   the provider refused for good: `code` says why (21610 opted out, 21211 invalid)

LookupUnavailable        the provider cannot tell whether a message was sent (email has no such API)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Outgoing:
    message_id: int
    channel: str  # sms | email
    to: str
    body: str
    subject: str | None = None
    html: str | None = None
    reply_to: str | None = None
    tags: dict[str, str] = field(default_factory=dict)  # in-process only (fakes, simulator); never sent out


@dataclass(frozen=True)
class Sent:
    provider_id: str


class SendError(Exception):
    retryable = False

    def __init__(
        self,
        reason: str,
        *,
        code: str | None = None,
        retry_after: float | None = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.retry_after = retry_after
        self.ambiguous = ambiguous


class RetryableSendError(SendError):
    retryable = True


class PermanentSendError(SendError):
    retryable = False


class LookupUnavailable(Exception):
    """The transport cannot look up past sends; the caller must rely on delivery events instead."""


class Transport(Protocol):
    name: str
    channel: str
    sender: str  # the From address or number; rate limits apply per sender

    def send(self, msg: Outgoing) -> Sent: ...

    def find_sent(self, msg: Outgoing, since: datetime) -> str | None:
        """The provider id of `msg` if the provider has it (sent after `since`), else None."""
        ...
