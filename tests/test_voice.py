"""A phone call for an emergency nobody acknowledged: placed with the real Twilio SDK at the fake provider, saying
no name and no diagnosis; the signed key-press callback acknowledges (1) or moves to the next tier (anything
else, no answer). SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import factories
import httpx
import pytest
import uvicorn
from conftest import make_settings
from livestack import eventually, free_port
from sqlmodel import select

from followup.clock import FakeClock
from followup.fakeprovider import DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN, FakeProvider, sign_twilio
from followup.jobs import realert_pass
from followup.models import AuditLog, Escalation, EscalationAlert, VoiceCall
from followup.runtime import Runtime, build_runtime
from followup.services import voice
from followup.services.alerting import run_realerts
from followup.transports.recording import RecordingTransport
from followup.transports.twilio_voice import RecordingCaller
from followup.web.app import create_app

CLINIC_NUMBER = "+13105550100"
TIERS = [["+13105550198", "lead@clinic.example"], ["+13105550197"]]
NAME = "Ana Diaz"


@dataclass
class Stack:
    rt: Runtime
    clock: FakeClock
    fake: FakeProvider
    base: str

    def call_to(self, to: str) -> dict[str, Any]:
        return eventually(lambda: next((c for c in self.fake.calls() if c["to"] == to), None), f"a call to {to}")

    def realert_pass(self) -> None:
        """What the scheduler's `realert` job does."""
        realert_pass(self.rt)


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    """The app under uvicorn (no dispatcher) with Twilio pointed at the fake provider, on a fake clock."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    fake = FakeProvider().start()
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
        alerts={"escalation_tiers": TIERS},
    )
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    transports = {"sms": RecordingTransport("sms"), "email": RecordingTransport("email")}
    rt = build_runtime(settings, clock=clock, transports=dict(transports))
    server = uvicorn.Server(
        uvicorn.Config(create_app(runtime=rt, background=False), host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started, "the app to start")
    st = Stack(rt, clock, fake, base)
    try:
        yield st
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        fake.stop()
        rt.db.dispose()


def open_escalation(rt: Runtime, tier: str = "emergency", phone: str = "+13105550142") -> int:
    return factories.open_escalation(rt, name=NAME, phone=phone, tier=tier, evidence="I can't breathe")


def escalation(rt: Runtime, eid: int) -> Escalation:
    with rt.db.session() as s:
        e = s.get(Escalation, eid)
        assert e is not None
        return e


def actions(rt: Runtime) -> list[str]:
    with rt.db.session() as s:
        return [a.action for a in s.exec(select(AuditLog).order_by(AuditLog.id)).all()]


def rounds(rt: Runtime, eid: int) -> list[int]:
    with rt.db.session() as s:
        stmt = select(EscalationAlert.round).where(EscalationAlert.escalation_id == eid).order_by(EscalationAlert.round)
        return list(s.exec(stmt).all())


def test_pressing_1_on_the_call_acknowledges_the_emergency(stack: Stack) -> None:
    """15 minutes unacknowledged: the re-alert calls tier 1's phone; the call names no patient and no diagnosis;
    the fake's signed key press 1 acknowledges the escalation as the on-call tier, audited, and nothing more
    is alerted."""
    eid = open_escalation(stack.rt)
    stack.clock.advance(timedelta(minutes=14))
    stack.realert_pass()
    assert stack.fake.calls() == []
    stack.clock.advance(timedelta(minutes=1))
    stack.realert_pass()
    call = stack.call_to("+13105550198")
    assert len(stack.fake.calls()) == 1  # the email contact of the tier gets no call
    spoken = " ".join(call["said"])
    assert f"number {eid}" in spoken and "Press 1" in spoken
    for secret in (NAME, "Diaz", "breath", "Breathing", "5550142"):
        assert secret not in call["twiml"]
    assert call["gather_action"].startswith(f"{stack.base}/webhooks/twilio/voice/gather?t=")

    answer = stack.fake.press(call["sid"], "1")
    assert answer is not None and answer["status"] == 200, answer
    assert "acknowledged by you" in answer["body"] and "<Hangup" in answer["body"]
    esc = escalation(stack.rt, eid)
    assert (esc.status, esc.acknowledged_by) == ("acknowledged", "oncall:tier1")
    assert "voice.acknowledged" in actions(stack.rt) and "escalation.acknowledge" in actions(stack.rt)
    again = stack.fake.press(call["sid"], "1")  # Twilio retries a callback: answered the same, recorded once
    assert again is not None and again["status"] == 200 and "acknowledged by you" in again["body"]
    assert actions(stack.rt).count("voice.acknowledged") == 1
    stack.clock.advance(timedelta(hours=1))
    stack.realert_pass()
    assert len(stack.fake.calls()) == 1 and rounds(stack.rt, eid) == [1]


@pytest.mark.parametrize(
    ("what", "value"), [("end", "no-answer"), ("end", "busy"), ("press", "2"), ("end", "completed")]
)
def test_no_answer_or_another_key_calls_the_next_tier_at_once(stack: Stack, what: str, value: str) -> None:
    """No answer, busy, another key, or an answered call hung up without a key: the next tier is alerted and
    called at once, without waiting for another SLA; the escalation stays open."""
    eid = open_escalation(stack.rt)
    stack.clock.advance(timedelta(minutes=15))
    stack.realert_pass()
    first = stack.call_to("+13105550198")
    answer = stack.fake.press(first["sid"], value) if what == "press" else stack.fake.end_call(first["sid"], value)
    assert answer is not None and answer["status"] in (200, 204), answer
    second = stack.call_to("+13105550197")
    assert second["sid"] != first["sid"] and rounds(stack.rt, eid) == [1, 2]
    assert escalation(stack.rt, eid).status == "open"
    stack.fake.end_call(first["sid"], "completed")  # the first call's own end changes nothing more
    assert rounds(stack.rt, eid) == [1, 2]
    assert stack.fake.press(second["sid"], "1")["status"] == 200  # type: ignore[index]
    assert escalation(stack.rt, eid).acknowledged_by == "oncall:tier2"


def test_forged_or_misdirected_key_presses_are_refused(stack: Stack) -> None:
    """A key press without Twilio's signature, or signed for a tampered call token, gets 403 and acknowledges
    nothing."""
    eid = open_escalation(stack.rt)
    stack.clock.advance(timedelta(minutes=15))
    stack.realert_pass()
    call = stack.call_to("+13105550198")
    url = call["gather_action"]
    params = {"CallSid": call["sid"], "AccountSid": DEV_TWILIO_ACCOUNT_SID, "Digits": "1", "CallStatus": "in-progress"}
    unsigned = httpx.post(url, data=params, timeout=5)
    wrong_key = httpx.post(url, data=params, headers={"X-Twilio-Signature": sign_twilio(url, params, "x" * 32)})
    tampered = url[:-3] + ("abc" if not url.endswith("abc") else "xyz")
    forged_token = httpx.post(
        tampered, data=params, headers={"X-Twilio-Signature": sign_twilio(tampered, params, DEV_TWILIO_AUTH_TOKEN)}
    )
    assert (unsigned.status_code, wrong_key.status_code, forged_token.status_code) == (403, 403, 403)
    assert escalation(stack.rt, eid).status == "open"


def test_two_phones_unanswered_in_one_tier_move_one_tier(
    db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """Both phones of a tier are called; both unanswered move the escalation one tier, not two."""
    settings = make_settings(
        db_url, alerts={"escalation_tiers": [["+13105550198", "+13105550196"], ["+13105550197"], ["+13105550195"]]}
    )
    caller = RecordingCaller()
    rt = build_runtime(settings, clock=clock, transports=dict(transports), caller=caller)
    try:
        eid = open_escalation(rt)
        clock.advance(timedelta(minutes=15))
        run_realerts(rt)
        assert voice.place_queued(rt) == 2
        assert sorted(c.to for c in caller.calls) == ["+13105550196", "+13105550198"]
        ids = [c.call_id for c in caller.calls]
        assert voice.call_ended(rt, ids[0], "no-answer") is True
        assert voice.call_ended(rt, ids[1], "no-answer") is True
        assert voice.call_ended(rt, ids[1], "no-answer") is False  # a repeated callback
        assert rounds(rt, eid) == [1, 2] and [c.to for c in caller.calls[2:]] == ["+13105550197"]
    finally:
        rt.db.dispose()


@pytest.mark.parametrize(
    ("tier", "voice_on", "calls"), [("emergency", True, 1), ("urgent", True, 0), ("emergency", False, 0)]
)
def test_only_emergencies_are_called_and_only_when_calls_are_on(
    db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport], tier: str, voice_on: bool, calls: int
) -> None:
    """Urgent escalations are re-alerted by text only; voice.enabled=false turns calls off."""
    settings = make_settings(db_url, alerts={"escalation_tiers": TIERS}, voice={"enabled": voice_on})
    caller = RecordingCaller()
    rt = build_runtime(settings, clock=clock, transports=dict(transports), caller=caller if voice_on else None)
    try:
        open_escalation(rt, tier)
        clock.advance(timedelta(hours=5))
        assert run_realerts(rt) == 1
        voice.place_queued(rt)
        assert len(caller.calls) == calls
        with rt.db.session() as s:
            assert len(s.exec(select(VoiceCall)).all()) == calls
    finally:
        rt.db.dispose()


def test_a_failed_call_moves_to_the_next_tier(
    db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """The provider refuses the call: it is recorded failed and the next tier is alerted and called."""
    from followup.transports.base import PermanentSendError

    caller = RecordingCaller()
    caller.fail_next(PermanentSendError("twilio 400 code 21217", code="21217"))
    settings = make_settings(db_url, alerts={"escalation_tiers": TIERS})
    rt = build_runtime(settings, clock=clock, transports=dict(transports), caller=caller)
    try:
        eid = open_escalation(rt)
        clock.advance(timedelta(minutes=15))
        run_realerts(rt)
        voice.place_queued(rt)
        assert [c.to for c in caller.calls] == ["+13105550197"] and rounds(rt, eid) == [1, 2]
        assert [c.status for c in voice.calls_for(rt, eid)] == ["failed", "placed"]
    finally:
        rt.db.dispose()


def test_a_call_interrupted_by_a_crash_moves_to_the_next_tier(
    db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """A call left `calling` by a dead process (it may or may not have rung) is counted failed after two minutes
    and the next tier is alerted and called: more alerts, never fewer."""
    caller = RecordingCaller()
    rt = build_runtime(
        make_settings(db_url, alerts={"escalation_tiers": TIERS}),
        clock=clock,
        transports=dict(transports),
        caller=caller,
    )
    try:
        eid = open_escalation(rt)
        clock.advance(timedelta(minutes=15))
        run_realerts(rt)
        with rt.db.session() as s:  # what a process dying right after taking the call leaves behind
            (row,) = s.exec(select(VoiceCall)).all()
            row.status = "calling"
            s.add(row)
            s.commit()
        assert voice.place_queued(rt) == 0 and caller.calls == []
        clock.advance(timedelta(minutes=3))
        voice.place_queued(rt)
        assert [c.to for c in caller.calls] == ["+13105550197"] and rounds(rt, eid) == [1, 2]
        assert [c.status for c in voice.calls_for(rt, eid)] == ["failed", "placed"]
    finally:
        rt.db.dispose()


def test_erasing_the_patient_removes_their_calls_and_webhook_deliveries(
    db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """`patient erase` also deletes the phone calls and the outbound webhook deliveries about the patient."""
    from followup.models import WebhookDelivery
    from followup.services.privacy import erase_patient
    from followup.transports.webhook_http import RecordingPoster

    hooks = {"endpoints": [{"name": "ehr", "url": "https://ehr.example/hook", "secret": "whsec_" + "A" * 40}]}
    settings = make_settings(db_url, alerts={"escalation_tiers": TIERS}, webhooks=hooks)
    rt = build_runtime(
        settings, clock=clock, transports=dict(transports), caller=RecordingCaller(), webhook_poster=RecordingPoster()
    )
    try:
        eid = open_escalation(rt)
        clock.advance(timedelta(minutes=15))
        run_realerts(rt)
        voice.place_queued(rt)
        pid = escalation(rt, eid).patient_id
        with rt.db.session() as s:
            assert len(s.exec(select(VoiceCall)).all()) == 1 and len(s.exec(select(WebhookDelivery)).all()) == 1
        counts = erase_patient(rt, pid, "staff:1")
        assert (counts["voice_calls"], counts["webhook_deliveries"]) == (1, 1)
        with rt.db.session() as s:
            assert s.exec(select(VoiceCall)).all() == [] and s.exec(select(WebhookDelivery)).all() == []
    finally:
        rt.db.dispose()
