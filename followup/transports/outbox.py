"""The outbox: records each message in a file instead of sending it (no credentials needed)."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

from followup.files import open_private
from followup.transports.base import Outgoing, Sent

log = logging.getLogger("followup.outbox")


class Outbox:
    name = "outbox"

    def __init__(self, channel: str, path: Path, sender: str = "outbox") -> None:
        self.channel = channel
        self.sender = sender
        self.path = path
        self._lock = threading.Lock()
        self._sent: dict[int, str] = {}

    def send(self, msg: Outgoing) -> Sent:
        provider_id = "OB" + uuid.uuid4().hex
        record = {
            "provider_id": provider_id,
            "message_id": msg.message_id,
            "channel": msg.channel,
            "to": msg.to,
            "subject": msg.subject,
            "body": msg.body,
            "at": datetime.now(UTC).isoformat(),
        }
        with self._lock:
            with open_private(self.path) as fh:  # 0600: message texts
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._sent[msg.message_id] = provider_id
        log.info("outbox recorded message %s (%s, %d chars)", msg.message_id, msg.channel, len(msg.body))
        return Sent(provider_id)

    def find_sent(self, msg: Outgoing, since: datetime) -> str | None:
        with self._lock:
            return self._sent.get(msg.message_id)
