"""What the fake has accepted, and the counters `/_fake/stats` reports. Thread-safe."""

from __future__ import annotations

import copy
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

WINDOW_S = 1.0


@dataclass
class SmsRecord:
    """One accepted Twilio message."""

    sid: str
    account_sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    num_segments: int
    status_callback: str | None
    message_id: str | None
    status: str
    date_created: datetime
    date_updated: datetime
    date_sent: datetime | None = None
    error_code: int | None = None

    def public(self) -> dict[str, Any]:
        return {
            "channel": "sms",
            "to": self.to,
            "from": self.from_ if self.from_ is not None else self.messaging_service_sid,
            "messaging_service_sid": self.messaging_service_sid,
            "body": self.body,
            "message_id": self.message_id,
            "provider_id": self.sid,
            "custom_args": {},
            "status_callback": self.status_callback,
            "status": self.status,
            "error_code": self.error_code,
            "num_segments": self.num_segments,
            "received_at": self.date_created.isoformat(),
        }


@dataclass
class EmailRecord:
    """One recipient of an accepted SendGrid mail send."""

    provider_id: str
    to: str
    from_: str
    subject: str
    text: str | None
    html: str | None
    reply_to: str | None
    custom_args: dict[str, str]
    categories: list[str]
    status: str
    received_at: datetime

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "channel": "email",
            "to": self.to,
            "from": self.from_,
            "subject": self.subject,
            "text": self.text,
            "message_id": self.custom_args.get("followup_message_id"),
            "provider_id": self.provider_id,
            "custom_args": dict(self.custom_args),
            "status_callback": None,
            "status": self.status,
            "received_at": self.received_at.isoformat(),
        }
        if self.html is not None:
            out["html"] = self.html
        if self.reply_to is not None:
            out["reply_to"] = self.reply_to
        return out


class SlidingWindowMax:
    """Largest number of events seen in any half-open window (t - 1 s, t]."""

    def __init__(self, width_s: float = WINDOW_S) -> None:
        self._width = width_s
        self._recent: deque[float] = deque()
        self.max = 0

    def add(self, t: float) -> None:
        while self._recent and self._recent[0] <= t - self._width:
            self._recent.popleft()
        self._recent.append(t)
        self.max = max(self.max, len(self._recent))


@dataclass
class _State:
    messages: list[SmsRecord | EmailRecord] = field(default_factory=list)
    sms_by_sid: dict[str, SmsRecord] = field(default_factory=dict)
    inbound: list[dict[str, Any]] = field(default_factory=list)
    opted_out: set[str] = field(default_factory=set)
    requests: int = 0
    responses: Counter[int] = field(default_factory=Counter)
    webhooks: Counter[str] = field(default_factory=Counter)
    windows: dict[str, SlidingWindowMax] = field(default_factory=dict)


class Store:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._s = _State()

    def clear(self) -> None:
        with self._lock:
            self._s = _State()

    def clear_messages(self) -> None:
        """Forget messages, inbound and counters; opt-outs stay, as they would at Twilio."""
        with self._lock:
            self._s = _State(opted_out=self._s.opted_out)

    # Accepted sends -----------------------------------------------------------------------------------------

    def add_sms(self, record: SmsRecord, sender: str, t: float) -> None:
        with self._lock:
            self._s.messages.append(record)
            self._s.sms_by_sid[record.sid] = record
            self._s.windows.setdefault(sender, SlidingWindowMax()).add(t)

    def add_emails(self, records: list[EmailRecord], sender: str, t: float) -> None:
        with self._lock:
            self._s.messages.extend(records)
            self._s.windows.setdefault(sender, SlidingWindowMax()).add(t)

    def update(self, record: SmsRecord | EmailRecord, change: Callable[[Any], None]) -> None:
        """Apply `change` to a record under the lock (background workers move statuses on)."""
        with self._lock:
            change(record)

    def get_sms(self, sid: str) -> SmsRecord | None:
        with self._lock:
            record = self._s.sms_by_sid.get(sid)
            return copy.copy(record) if record else None

    def sms(self, account_sid: str) -> list[SmsRecord]:
        """Copies of the account's messages, newest first (Twilio's list order)."""
        with self._lock:
            return [copy.copy(r) for r in reversed(self._s.sms_by_sid.values()) if r.account_sid == account_sid]

    def public_messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.public() for r in self._s.messages]

    # Inbound and opt-out ------------------------------------------------------------------------------------

    def add_inbound(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._s.inbound.append(entry)

    def inbound(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._s.inbound]

    def set_opted_out(self, number: str, opted_out: bool) -> None:
        with self._lock:
            if opted_out:
                self._s.opted_out.add(number)
            else:
                self._s.opted_out.discard(number)

    def is_opted_out(self, number: str) -> bool:
        with self._lock:
            return number in self._s.opted_out

    # Counters -----------------------------------------------------------------------------------------------

    def count_request(self) -> None:
        with self._lock:
            self._s.requests += 1

    def count_response(self, status: int) -> None:
        with self._lock:
            self._s.responses[status] += 1

    def count_webhook(self, what: str, n: int = 1) -> int:
        with self._lock:
            self._s.webhooks[what] += n
            return self._s.webhooks[what]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            s = self._s
            return {
                "sms": sum(isinstance(r, SmsRecord) for r in s.messages),
                "email": sum(isinstance(r, EmailRecord) for r in s.messages),
                "requests": s.requests,
                "responses": {str(code): n for code, n in sorted(s.responses.items())},
                "by_status": dict(Counter(r.status for r in s.messages)),
                "max_per_second_by_sender": {sender: w.max for sender, w in s.windows.items()},
                "webhooks": dict(s.webhooks),
                "opted_out": len(s.opted_out),
                "inbound": len(s.inbound),
            }
