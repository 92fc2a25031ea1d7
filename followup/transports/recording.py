"""A recording transport for tests and the simulator: keeps what it was asked to send, fails on request."""

from __future__ import annotations

import threading
from collections import deque
from datetime import datetime

from followup.transports.base import Outgoing, SendError, Sent


class RecordingTransport:
    name = "recording"

    def __init__(self, channel: str, sender: str = "+15550000000") -> None:
        self.channel = channel
        self.sender = sender
        self.sent: list[Outgoing] = []
        self.attempts: list[Outgoing] = []
        self.failures: deque[SendError] = deque()
        self._lock = threading.Lock()

    def fail_next(self, *errors: SendError) -> None:
        """The next sends raise these errors, in order."""
        with self._lock:
            self.failures.extend(errors)

    def send(self, msg: Outgoing) -> Sent:
        with self._lock:
            self.attempts.append(msg)
            if self.failures:
                raise self.failures.popleft()
            self.sent.append(msg)
            return Sent(f"RT{len(self.sent):06d}")

    def find_sent(self, msg: Outgoing, since: datetime) -> str | None:
        with self._lock:
            for i, m in enumerate(self.sent, start=1):
                if m.message_id == msg.message_id:
                    return f"RT{i:06d}"
        return None
