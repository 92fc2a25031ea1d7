"""The simulator's in-process provider: one transport per channel that accepts (or refuses) sends, checks the
invariants a patient would notice at the moment of sending, and queues what the real providers would post back:
status callbacks and delivery events (some duplicated, some out of order) and the patient's replies.

Every random choice is drawn from a generator seeded by (seed, message id, attempt), so a run does not depend on
the order in which the dispatcher's threads happen to send.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from followup.clock import FakeClock
from followup.core.replies import Reply
from followup.core.vocab import PROGRAM_KINDS  # never urgent: quiet hours apply
from followup.simulator.cohort import Cohort, index_of, plan_reply
from followup.transports.base import LookupUnavailable, Outgoing, RetryableSendError, Sent

ACCOUNT_SID = "ACsimulator00000000000000000000000"


@dataclass(frozen=True)
class Rates:
    """How often each thing happens (fractions)."""

    reply: float = 0.5  # a check-in is answered
    red_flag: float = 0.05  # an answer reports a red flag
    stop: float = 0.01  # an answer is STOP
    duplicate: float = 0.1  # a webhook (callback, event, inbound) is delivered twice
    reorder: float = 0.2  # the terminal status callback comes before `sent`
    fault: float = 0.01  # a send is refused with a retryable 5xx
    timeout: float = 0.005  # a send times out (half of them reached the provider: ambiguous)
    undelivered: float = 0.005  # the carrier does not deliver an SMS (30007, after `sent`)
    bounce: float = 0.003  # an email bounces


@dataclass(order=True)
class Event:
    at: datetime
    seq: int
    kind: str = field(compare=False)  # twilio_status | sendgrid_event | reply | staff
    payload: Any = field(compare=False)


@dataclass
class Oracle:
    """What the provider saw, kept small: a byte per message id, a counter per kind."""

    accepted: bytearray = field(default_factory=bytearray)  # message id -> times accepted (saturating)
    attempts: bytearray = field(default_factory=bytearray)  # message id -> send attempts (saturating)
    by_kind: Counter[tuple[str, str]] = field(default_factory=Counter)
    quiet_hour_violations: int = 0
    duplicate_ids: int = 0
    examples: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)

    def bump(self, arr: bytearray, mid: int) -> int:
        if mid >= len(arr):
            arr.extend(bytes(max(mid + 1 - len(arr), len(arr) // 2, 1024)))
        arr[mid] = min(arr[mid] + 1, 255)
        return arr[mid]

    def accepted_ids(self) -> list[int]:
        return [i for i, n in enumerate(self.accepted) if n]


class SimProvider:
    """Holds the event queue and the oracle; `transports` are what `build_runtime` is handed."""

    def __init__(self, clock: FakeClock, cohort: Cohort, rates: Rates, seed: int, window: tuple[time, time]) -> None:
        self.clock, self.cohort, self.rates, self.seed = clock, cohort, rates, seed
        self.window = window
        self.oracle = Oracle()
        self.events: list[Event] = []
        self._replies: list[tuple[datetime, int, Any]] = []  # the reply events again, for the loop to read ahead
        self.replies: Counter[str] = Counter()
        self.webhooks: Counter[str] = Counter()
        self._seq = itertools.count()
        self._lock = threading.RLock()  # transports push events while holding it
        self._zones: dict[str, ZoneInfo] = {}
        self.transports = {
            "sms": SimTransport(self, "sms", "+13105550100"),
            "email": SimTransport(self, "email", "followup@clinic.example"),
        }

    # ---- the event queue --------------------------------------------------------------------------------
    def push(self, at: datetime, kind: str, payload: Any) -> None:
        with self._lock:
            seq = next(self._seq)
            heapq.heappush(self.events, Event(at, seq, kind, payload))
            if kind == "reply":
                heapq.heappush(self._replies, (at, seq, payload))

    def next_at(self) -> datetime | None:
        return self.events[0].at if self.events else None

    def replies_between(self, after: datetime, until: datetime) -> list[tuple[datetime, Any]]:
        """(due, payload) of the replies due in (after, until], each returned once (earlier ones are forgotten)."""
        out = []
        with self._lock:
            while self._replies and self._replies[0][0] <= until:
                at, _, payload = heapq.heappop(self._replies)
                if at > after:
                    out.append((at, payload))
        return out

    def pop_due(self, until: datetime) -> Event | None:
        with self._lock:
            if self.events and self.events[0].at <= until:
                return heapq.heappop(self.events)
        return None

    # ---- sends --------------------------------------------------------------------------------------------
    def accept(self, channel: str, msg: Outgoing, sender: str) -> Sent:
        """Called by a transport under the lock: the provider now holds this message."""
        now = self.clock.now()
        o = self.oracle
        kind = msg.tags.get("kind", "?")
        if o.bump(o.accepted, msg.message_id) == 2:
            o.duplicate_ids += 1
            self._example(f"message {msg.message_id} accepted twice")
        o.by_kind[(channel, kind)] += 1
        index = index_of(msg.to)
        if kind in PROGRAM_KINDS and index is not None:
            tz = self._zone(self.cohort.timezone(index))
            local = now.astimezone(tz).time()
            if not self.window[0] <= local < self.window[1]:
                o.quiet_hour_violations += 1
                self._example(f"{kind} message {msg.message_id} sent at {local:%H:%M} local ({tz.key})")
        r = random.Random(f"{self.seed}:cb:{msg.message_id}")  # noqa: S311 - simulation
        sid = provider_id(channel, msg.message_id)
        if channel == "sms":
            self._sms_callbacks(r, now, sid, msg, sender)
        else:
            self._email_events(r, now, sid, msg)
        if kind == "checkin" and index is not None:
            self._plan_reply(channel, msg, index, now)
        return Sent(sid)

    def _sms_callbacks(self, r: random.Random, now: datetime, sid: str, msg: Outgoing, sender: str) -> None:
        rates = self.rates
        sent_at = now + timedelta(seconds=r.uniform(1, 20))
        final_at = now + timedelta(seconds=r.uniform(20, 180))
        if r.random() < rates.reorder:
            sent_at, final_at = final_at, sent_at
            self.webhooks["reordered"] += 1
        final, code = ("undelivered", "30007") if r.random() < rates.undelivered else ("delivered", None)
        for at, status, error in ((sent_at, "sent", None), (final_at, final, code)):
            form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": ACCOUNT_SID, "From": sender, "To": msg.to}
            if error:
                form["ErrorCode"] = error
            self.push(at, "twilio_status", (form, msg.message_id))
            if r.random() < rates.duplicate:
                self.push(at + timedelta(seconds=r.uniform(1, 30)), "twilio_status", (form, msg.message_id))

    def _email_events(self, r: random.Random, now: datetime, sid: str, msg: Outgoing) -> None:
        rates = self.rates
        final = "bounce" if r.random() < rates.bounce else "delivered"
        steps = (
            (now + timedelta(seconds=r.uniform(1, 20)), "processed"),
            (now + timedelta(seconds=r.uniform(20, 300)), final),
        )
        for n, (at, kind) in enumerate(steps):
            event = {
                "event": kind,
                "sg_event_id": f"{sid}-{n}",
                "sg_message_id": sid,
                "email": msg.to,
                "timestamp": int(at.timestamp()),
                "followup_message_id": str(msg.message_id),
                **({"status": "5.1.1", "reason": "mailbox does not exist"} if kind == "bounce" else {}),
            }
            self.push(at, "sendgrid_event", event)
            if r.random() < rates.duplicate:
                self.push(at + timedelta(seconds=r.uniform(1, 60)), "sendgrid_event", event)

    def _plan_reply(self, channel: str, msg: Outgoing, index: int, now: datetime) -> None:
        rates = self.rates
        r = random.Random(f"{self.seed}:reply:{msg.message_id}")  # noqa: S311 - simulation
        plan = plan_reply(r, reply_rate=rates.reply, red_flag_rate=rates.red_flag, stop_rate=rates.stop)
        if plan is None:
            return
        label = {"benign": "ok", "red_flag": "rf", "stop": "st"}[plan.label]
        if channel == "sms":
            reply = Reply(
                channel="sms",
                provider_key=f"twilio:SM{label}{msg.message_id:012d}",
                sender=msg.to,
                body=plan.body,
                provider_opt_out="STOP" if plan.label == "stop" else None,
            )
        else:
            body = "unsubscribe" if plan.label == "stop" else plan.body
            reply = Reply(
                channel="email",
                provider_key=f"email:<{label}.{msg.message_id}@{index}.sim.example>",
                sender=msg.to,
                body=body,
                subject="Re: check-in",
                # A reply goes to the patient's reply-to address (their token), as a mail client sends it.
                reply_token=msg.reply_to.partition("@")[0] if msg.reply_to else None,
            )
        at = now + plan.delay
        self.push(at, "reply", (reply, plan.label))
        if r.random() < rates.duplicate:
            self.push(at + timedelta(seconds=r.uniform(1, 60)), "reply", (reply, plan.label))

    def _zone(self, name: str) -> ZoneInfo:
        tz = self._zones.get(name)
        if tz is None:
            tz = self._zones[name] = ZoneInfo(name)
        return tz

    def _example(self, text: str) -> None:
        if len(self.oracle.examples) < 10:
            self.oracle.examples.append(text)


def provider_id(channel: str, message_id: int) -> str:
    return f"SMsim{message_id:027d}" if channel == "sms" else f"sgsim{message_id:012d}"


class SimTransport:
    """A channel of the simulated provider. Refuses some sends (5xx), times some out (half after accepting them,
    so the dispatcher must reconcile rather than resend), and can say what it holds (SMS only, like Twilio)."""

    name = "simulator"

    def __init__(self, provider: SimProvider, channel: str, sender: str) -> None:
        self.provider, self.channel, self.sender = provider, channel, sender

    def send(self, msg: Outgoing) -> Sent:
        p = self.provider
        with p._lock:
            attempt = p.oracle.bump(p.oracle.attempts, msg.message_id)
            r = random.Random(f"{p.seed}:send:{msg.message_id}:{attempt}")  # noqa: S311 - simulation
            if r.random() < p.rates.fault:
                p.oracle.faults["5xx"] += 1
                raise RetryableSendError("simulated 503", code="503")
            if r.random() < p.rates.timeout:
                p.oracle.faults["timeout"] += 1
                if r.random() < 0.5:
                    p.accept(self.channel, msg, self.sender)
                raise RetryableSendError("simulated read timeout", ambiguous=True)
            return p.accept(self.channel, msg, self.sender)

    def find_sent(self, msg: Outgoing, since: datetime) -> str | None:
        if self.channel == "email":
            raise LookupUnavailable("SendGrid has no per-message lookup; delivery events settle it")
        p = self.provider
        with p._lock:
            accepted = msg.message_id < len(p.oracle.accepted) and p.oracle.accepted[msg.message_id] > 0
        return provider_id("sms", msg.message_id) if accepted else None
