"""End to end with the real Twilio and SendGrid SDKs: the app under uvicorn with its background dispatcher, the fake
provider on loopback sending signed status callbacks and events back. Triage by HTTP, then watch the message reach
the provider and its delivery state come back into the API. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from conftest import make_settings
from factories import triage_body
from livestack import daytime_zone, eventually
from sqlmodel import select

from followup import models as m
from followup.clock import FakeClock
from followup.core.triage import TriageIn
from followup.core.vocab import MessageState
from followup.fakeprovider import (
    DEV_SENDGRID_API_KEY,
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
    FakeProvider,
    Faults,
)
from followup.runtime import Runtime, build_runtime
from followup.services.dispatch import Dispatcher, PassReport
from followup.services.enrollment import submit_triage
from followup.services.tokens import create_token
from followup.web.app import create_app

CLINIC_NUMBER = "+13105550100"
T = TypeVar("T")


@dataclass
class Stack:
    rt: Runtime
    fake: FakeProvider
    api: httpx.Client

    def triage(self, **over: Any) -> int:
        r = self.api.post("/api/triage", json=triage_body(timezone=daytime_zone(), **over))
        assert r.status_code == 201, r.text
        return int(r.json()["patient_id"])

    def patient(self, pid: int) -> dict[str, Any]:
        r = self.api.get(f"/api/patients/{pid}")
        assert r.status_code == 200
        return dict(r.json())

    def welcome(self, pid: int) -> dict[str, Any] | None:
        return next((t for t in self.patient(pid)["timeline"] if t["step_id"] == "welcome"), None)

    def sent_to(self, to: str) -> list[dict[str, Any]]:
        return [x for x in self.fake.messages() if x["to"] == to]


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    """Fake provider + app server on free loopback ports; the dispatcher runs in the app every 0.1 s."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    fake = FakeProvider(port=0, events_url=f"{base}/webhooks/sendgrid/events").start()
    settings = make_settings(
        db_url,
        server={"public_url": base},
        twilio={
            "account_sid": DEV_TWILIO_ACCOUNT_SID,
            "auth_token": DEV_TWILIO_AUTH_TOKEN,
            "from_number": CLINIC_NUMBER,
            "api_base": fake.url,
            "timeout_seconds": 5.0,
        },
        sendgrid={"api_key": DEV_SENDGRID_API_KEY, "api_base": fake.url, "timeout_seconds": 5.0},
        dispatch={
            "enabled": True,
            "interval_seconds": 0.1,
            "backoff_base_seconds": 0.2,
            "backoff_max_seconds": 2.0,
            "per_sender_per_second": 1000.0,
        },
    )
    rt = build_runtime(settings)
    server = uvicorn.Server(uvicorn.Config(create_app(runtime=rt), log_config=None, access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    eventually(lambda: server.started, "the app server to start", timeout=90)  # it loads the detector first
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {create_token(rt, 'e2e')[1]}"}, timeout=10)
    try:
        yield Stack(rt, fake, api)
    finally:
        api.close()
        server.should_exit = True
        thread.join(timeout=10)
        fake.stop()
        sock.close()
        rt.db.dispose()


def db_message(rt: Runtime, pid: int, step: str, channel: str = "sms") -> m.Message:
    with rt.db.session() as s:
        return s.exec(
            select(m.Message).where(
                m.Message.patient_id == pid, m.Message.step_id == step, m.Message.channel == channel
            )
        ).one()


def test_sms_welcome_reaches_twilio_and_delivery_comes_back(stack: Stack) -> None:
    """A triaged SMS patient's welcome goes through the Twilio SDK, and `delivered` flows back into the API."""
    pid = stack.triage()
    (sms,) = eventually(lambda: stack.sent_to("+13105550142"), "the welcome SMS at the provider")
    assert sms["from"] == CLINIC_NUMBER and "Ana" in sms["body"] and "STOP" in sms["body"]
    welcome = eventually(
        lambda: (w := stack.welcome(pid)) and w["status"] == "delivered" and w, "the delivered status in the API"
    )
    assert welcome["provider_id"] == sms["provider_id"] and sms["message_id"] == str(welcome["message_id"])
    assert {"sent", "delivered"} <= {e["status"] for e in welcome["events"]}
    assert stack.patient(pid)["upcoming"][0]["step_id"] == "caffeine"  # the rest waits for its day


def test_email_welcome_reaches_sendgrid_and_events_come_back(stack: Stack) -> None:
    """An email patient's welcome goes through the SendGrid SDK; signed events mark it delivered in the API."""
    pid = stack.triage(channel="email", phone=None)
    (mail,) = eventually(lambda: stack.sent_to("ana@example.org"), "the welcome email at the provider")
    assert mail["subject"] and "Ana" in mail["text"] and mail["html"]
    assert mail["reply_to"].endswith("@reply.clinic.example")
    welcome = eventually(  # SendGrid's events may beat the recording of the send's id (a real race): wait for both
        lambda: (w := stack.welcome(pid)) and w["status"] == "delivered" and w["provider_id"] and w,
        "the delivered event and the provider's id in the API",
    )
    assert {"processed", "delivered"} <= {e["status"] for e in welcome["events"]}
    assert welcome["channel"] == "email" and welcome["provider_id"] == mail["provider_id"]


def test_invalid_number_moves_the_patient_to_email(stack: Stack) -> None:
    """Twilio answering 21211 for the number marks it invalid and the patient continues by email, starting with
    the welcome's safety net."""
    stack.fake.set_faults(Faults(sms_error_codes={"+13105550142": 21211}))
    pid = stack.triage()
    p = eventually(
        lambda: (p := stack.patient(pid)) and p["sms_state"] == "invalid" and p, "the number to be marked invalid"
    )
    assert p["channel"] == "email"
    assert {u["channel"] for u in p["upcoming"]} == {"email"}
    welcome = db_message(stack.rt, pid, "welcome")
    assert (welcome.status, welcome.error_code) == (MessageState.FAILED, "21211")
    assert stack.sent_to("+13105550142") == []
    eventually(lambda: stack.sent_to("ana@example.org"), "the welcome again, by email")


def test_429_burst_is_retried_after_retry_after_and_delivered(stack: Stack) -> None:
    """A burst of 429s with Retry-After: the dispatcher retries each after its wait and the welcome goes once."""
    stack.fake.set_faults(Faults(burst_429=2, retry_after_s=1))
    pid = stack.triage()
    eventually(lambda: (w := stack.welcome(pid)) and w["status"] == "delivered", "delivery after the burst", timeout=20)
    assert len(stack.sent_to("+13105550142")) == 1
    assert stack.fake.stats()["responses"] == {"201": 1, "429": 2}
    welcome = db_message(stack.rt, pid, "welcome")
    assert (welcome.attempts, welcome.status) == (3, MessageState.DELIVERED)


@pytest.fixture
def sdk_rt(db_url: str) -> Iterator[tuple[Runtime, FakeProvider, FakeClock]]:
    """The real Twilio transport against the fake provider, driven by hand with a FakeClock at the real time."""
    fake = FakeProvider(port=0).start()
    settings = make_settings(
        db_url,
        twilio={
            "account_sid": DEV_TWILIO_ACCOUNT_SID,
            "auth_token": DEV_TWILIO_AUTH_TOKEN,
            "from_number": CLINIC_NUMBER,
            "api_base": fake.url,
        },
    )
    clock = FakeClock(datetime.now(UTC))
    rt = build_runtime(settings, clock=clock)
    try:
        yield rt, fake, clock
    finally:
        fake.stop()
        rt.db.dispose()


@pytest.mark.parametrize("provider_has_it", [True, False], ids=["provider-has-it", "provider-lacks-it"])
def test_crash_recovery_asks_twilio_before_resending(
    sdk_rt: tuple[Runtime, FakeProvider, FakeClock], provider_has_it: bool
) -> None:
    """A send interrupted by a crash is looked up with the Twilio SDK: found -> recorded, absent -> sent once."""
    rt, fake, clock = sdk_rt
    pid = submit_triage(
        rt, TriageIn.model_validate(triage_body(timezone=daytime_zone())), source="api", actor="test"
    ).patient_id
    crashed = Dispatcher(rt, owner="crashed")
    jobs = crashed.prepare(crashed.claim(), PassReport())
    crashed.close()
    if provider_has_it:
        accepted = rt.transports["sms"].send(jobs[0].out)  # reached Twilio; the worker died before recording it
    clock.advance(timedelta(seconds=rt.settings.dispatch.lease_seconds + 1))
    survivor = Dispatcher(rt, owner="survivor")
    try:
        survivor.run_once()
        survivor.run_once()
    finally:
        survivor.close()
    (sms,) = fake.messages()
    welcome = db_message(rt, pid, "welcome")
    assert welcome.status == MessageState.SENT and welcome.provider_id == sms["provider_id"]
    if provider_has_it:
        assert sms["provider_id"] == accepted.provider_id and welcome.attempts == 1
    else:
        assert welcome.attempts == 2
