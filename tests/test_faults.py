"""The dispatcher against a misbehaving provider: the real Twilio SDK to the fake provider injecting 10% 5xx,
bursts of 429 with Retry-After, 2-second stalls (the client times out after 1 s: ambiguous sends) and stalled
lookups. The clock is a FakeClock moved 5 s per pass, so time-to-live and back-off are exact.
"""

from __future__ import annotations

import shutil
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import make_settings
from factories import insert_rows, message_rows, patient_rows
from sqlmodel import col, select

from followup.clock import FakeClock
from followup.core.vocab import OPEN_STATES, MessageState
from followup.fakeprovider import DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN, FakeProvider, Faults
from followup.models import Message
from followup.runtime import Runtime, build_runtime
from followup.services.dispatch import Dispatcher
from followup.transports.recording import RecordingTransport
from followup.transports.twilio_sms import TwilioSms

FROM = "+15005550006"
RATE = 20.0  # per-sender sends a second
BACKOFF_BASE = 2.0
RETRY_AFTER = 1
N = 200
TTLS = (timedelta(seconds=3), timedelta(minutes=10), timedelta(hours=2))  # a failed 3-s one cannot be retried in time


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    # Status callbacks are held back (never posted): this test is about sending.
    fp = FakeProvider(status_delay_s=3600.0, seed=5).start()
    yield fp
    fp.stop()


@pytest.fixture
def faulty(tmp_path: Path, sqlite_template: Path, provider: FakeProvider) -> Iterator[Runtime]:
    """A runtime whose SMS go through the real SDK to the fake provider, on a fresh SQLite database."""
    path = tmp_path / "faults.db"
    shutil.copy(sqlite_template, path)
    settings = make_settings(
        f"sqlite:///{path}",
        dispatch={
            "per_sender_per_second": RATE,
            "concurrency": 8,
            "batch_size": 50,
            "lease_seconds": 30,
            "max_attempts": 50,  # keep retrying until the time-to-live says stop
            "backoff_base_seconds": BACKOFF_BASE,
            "backoff_max_seconds": 30.0,
        },
        twilio={"timeout_seconds": 1.0},
    )
    sms = TwilioSms(
        DEV_TWILIO_ACCOUNT_SID,
        DEV_TWILIO_AUTH_TOKEN,
        FROM,
        api_base=provider.url,
        timeout=1.0,
        status_callback_base=settings.server.public_url,
    )
    # The virtual clock starts behind the wall clock: the fake stamps messages with real time, and the
    # reconciliation lookup asks for messages sent after the (virtual) start of the send.
    clock = FakeClock(datetime.now(UTC) - timedelta(minutes=10))
    rt = build_runtime(settings, clock=clock, transports={"sms": sms, "email": RecordingTransport("email")})
    yield rt
    rt.db.dispose()


def seed(rt: Runtime) -> None:
    now = rt.clock.now()
    messages = message_rows(N, now, key="fault", due_at=now, expires_at=lambda i: now + TTLS[i % len(TTLS)])
    insert_rows(rt.settings.database.url, patient_rows(N, now), messages)


def open_count(rt: Runtime) -> int:
    with rt.db.session() as s:
        return len(s.exec(select(Message.id).where(col(Message.status).in_(OPEN_STATES))).all())


def test_faulty_provider_every_message_sent_in_time_or_expired_once_and_paced(
    faulty: Runtime, provider: FakeProvider
) -> None:
    """Under 5xx, 429 bursts, stalls and timeouts: sent within TTL or expired with a reason, never twice, with
    growing back-off that honours Retry-After, and never faster than the per-sender rate."""
    rt, clock = faulty, faulty.clock
    assert isinstance(clock, FakeClock)
    seed(rt)
    provider.set_faults(
        Faults(error_rate=0.10, burst_429=15, retry_after_s=RETRY_AFTER, timeout_rate=0.05, stall_ms=2000)
    )
    dispatcher = Dispatcher(rt)
    delays: dict[int, list[tuple[float, str | None]]] = defaultdict(list)
    passes = 0
    try:
        while open_count(rt) and passes < 400:
            dispatcher.run_once()
            now = clock.now()
            with rt.db.session() as s:
                retried = s.exec(
                    select(Message).where(
                        Message.status == MessageState.SCHEDULED, Message.updated_at == now, col(Message.attempts) > 0
                    )
                ).all()
            for msg in retried:
                assert msg.id is not None
                delays[msg.id].append(((msg.due_at - now).total_seconds(), msg.error_code))
            if passes == 30:
                provider.set_faults(Faults(burst_429=10, retry_after_s=RETRY_AFTER))  # a second burst
            clock.advance(timedelta(seconds=5))
            passes += 1
    finally:
        dispatcher.close()

    assert open_count(rt) == 0, "messages left open"
    with rt.db.session() as s:
        msgs = s.exec(select(Message)).all()
    outcomes = Counter(msg.status for msg in msgs)
    assert set(outcomes) <= {MessageState.SENT, MessageState.EXPIRED}, outcomes
    for msg in msgs:
        if msg.status == MessageState.SENT:
            assert msg.send_started_at is not None and msg.send_started_at <= msg.expires_at
        else:
            assert msg.reason, f"message {msg.id} expired without a reason"
    assert outcomes[MessageState.SENT] and outcomes[MessageState.EXPIRED]  # the short time-to-live did bite

    at_provider = Counter(str(x["message_id"]) for x in provider.messages())
    assert max(at_provider.values()) == 1, "a message reached the provider twice"
    assert set(at_provider) == {str(msg.id) for msg in msgs if msg.status == MessageState.SENT}

    codes = Counter(code for series in delays.values() for _, code in series)
    assert codes["20429"] and (codes["20500"] + codes["20503"]), codes
    for series in delays.values():
        for delay, code in series:
            assert delay >= BACKOFF_BASE / 2
            if code == "20429":
                assert delay >= RETRY_AFTER
        assert [d for d, _ in series] == sorted(d for d, _ in series), f"back-off shrank: {series}"
    with rt.db.session() as s:
        found = s.exec(select(Message.id).where(col(Message.reason).contains("found at the provider"))).all()
    assert found, "no stalled send was reconciled (found at the provider instead of resent)"

    stats = provider.stats()
    # The pacer spaces send starts (test_pacing checks the granted slots exactly); the provider stamps arrivals, and
    # on a loaded machine sends started on their slots arrive bunched (CI at load 6 saw 21, a clean-clone run sharing
    # the machine 23, at a rate of 20, paced at 18). Unpaced, 8 senders against a fake answering in milliseconds go
    # at hundreds a second: a pacer that let bursts through still fails here; arrival jitter does not.
    assert stats["max_per_second_by_sender"][FROM] <= RATE * 1.5
