"""Delivery webhooks: Twilio status callbacks and SendGrid events with real signatures, states that never regress,
duplicates stored once, and what a bounce or a refusal means for the patient. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from conftest import make_settings
from factories import triage_body
from fastapi.testclient import TestClient
from sqlmodel import func, select

from followup import models as m
from followup.clock import FakeClock
from followup.core.triage import TriageIn
from followup.core.vocab import MessageState
from followup.fakeprovider import DEV_EVENT_PUBLIC_KEY, sign_sendgrid_events, sign_twilio
from followup.runtime import Runtime, build_runtime
from followup.services import delivery
from followup.services.dispatch import Dispatcher
from followup.services.enrollment import submit_triage
from followup.settings import Settings
from followup.transports.base import Outgoing, Sent
from followup.transports.recording import RecordingTransport

TOKEN = "test-twilio-auth-token-0123456789"
PUBLIC = "https://followup.clinic.example"  # what the providers call; the test client itself is http://testserver


@pytest.fixture
def settings(db_url: str) -> Settings:
    """Twilio credentials, a public URL behind a proxy, and the fake provider's event verification key."""
    return make_settings(
        db_url,
        server={"public_url": PUBLIC},
        twilio={"account_sid": "ACtest", "auth_token": TOKEN, "from_number": "+13105550100"},
        sendgrid={"event_public_key": DEV_EVENT_PUBLIC_KEY},
    )


def enroll_and_send(rt: Runtime, **over: Any) -> tuple[int, m.Message]:
    """Triage a patient, run one dispatcher pass, and return the patient id and their sent welcome."""
    pid = submit_triage(rt, TriageIn.model_validate(triage_body(**over)), source="api", actor="test").patient_id
    d = Dispatcher(rt, owner="test")
    try:
        d.run_once()
    finally:
        d.close()
    return pid, welcome(rt, pid)


def welcome(rt: Runtime, pid: int) -> m.Message:
    with rt.db.session() as s:
        w = s.exec(select(m.Message).where(m.Message.patient_id == pid, m.Message.step_id == "welcome")).one()
    return w


def events(rt: Runtime) -> list[m.DeliveryEvent]:
    with rt.db.session() as s:
        return list(s.exec(select(m.DeliveryEvent).order_by(m.DeliveryEvent.id)).all())


def patient(rt: Runtime, pid: int) -> m.Patient:
    with rt.db.session() as s:
        p = s.get(m.Patient, pid)
        assert p is not None
        return p


def twilio_post(
    client: TestClient, mid: int, params: dict[str, str], *, sign_url: str | None = None, token: str = TOKEN
) -> int:
    """POST a status callback signed as Twilio signs it: over the public URL with query, and every field."""
    path = f"/webhooks/twilio/status?mid={mid}"
    signature = sign_twilio(sign_url or PUBLIC + path, params, token)
    r = client.post(
        path,
        content=urlencode(params),
        headers={"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"},
    )
    return r.status_code


def status(sid: str, state: str, **extra: str) -> dict[str, str]:
    return {"MessageSid": sid, "MessageStatus": state, "AccountSid": "ACtest", "To": "+13105550142", **extra}


def test_signed_status_callback_is_applied(client: TestClient, rt: Runtime) -> None:
    """A status callback signed with the auth token over the public URL is accepted and marks delivery."""
    _, w = enroll_and_send(rt)
    assert w.status == MessageState.SENT and w.provider_id == "RT000001"
    assert twilio_post(client, w.id, status("RT000001", "delivered")) == 204
    after = welcome(rt, w.patient_id)
    assert after.status == MessageState.DELIVERED and after.delivered_at is not None
    assert [(e.event_key, e.status, e.message_id) for e in events(rt)] == [
        ("twilio:RT000001:delivered", "delivered", w.id)
    ]


@pytest.mark.parametrize(
    "forgery",
    ["missing", "wrong-token", "internal-url", "tampered-field", "extra-field"],
)
def test_forged_or_missing_twilio_signature_is_403_and_stores_nothing(
    client: TestClient, rt: Runtime, forgery: str
) -> None:
    """Without a valid signature over the public URL and all fields the callback is refused and nothing changes."""
    _, w = enroll_and_send(rt)
    path = f"/webhooks/twilio/status?mid={w.id}"
    params = status("RT000001", "delivered")
    signature = {
        "missing": "",
        "wrong-token": sign_twilio(PUBLIC + path, params, "not-the-token"),
        "internal-url": sign_twilio("http://testserver" + path, params, TOKEN),
        "tampered-field": sign_twilio(PUBLIC + path, status("RT000001", "undelivered"), TOKEN),
        "extra-field": sign_twilio(PUBLIC + path, params, TOKEN),
    }[forgery]
    body = {**params, "ErrorCode": "30007"} if forgery == "extra-field" else params
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature:
        headers["X-Twilio-Signature"] = signature
    r = client.post(path, content=urlencode(body), headers=headers)
    assert r.status_code == 403
    assert events(rt) == [] and welcome(rt, w.patient_id).status == MessageState.SENT


def test_late_sent_callback_never_regresses_delivered(client: TestClient, rt: Runtime) -> None:
    """Callbacks out of order: `delivered` then a late `sent` leaves the message delivered; both are recorded."""
    _, w = enroll_and_send(rt)
    assert twilio_post(client, w.id, status("RT000001", "delivered")) == 204
    assert twilio_post(client, w.id, status("RT000001", "sent")) == 204
    assert twilio_post(client, w.id, status("RT000001", "undelivered", ErrorCode="30007")) == 204
    assert welcome(rt, w.patient_id).status == MessageState.DELIVERED
    assert [e.status for e in events(rt)] == ["delivered", "sent", "undelivered"]


def test_duplicate_callback_is_stored_once(client: TestClient, rt: Runtime) -> None:
    """Twilio retrying the same callback is answered 204 each time and stored once."""
    _, w = enroll_and_send(rt)
    for _ in range(3):
        assert twilio_post(client, w.id, status("RT000001", "delivered")) == 204
    assert len(events(rt)) == 1


def test_callback_for_another_sid_is_ignored(client: TestClient, rt: Runtime) -> None:
    """A signed callback whose MessageSid is not the message's provider id changes nothing."""
    _, w = enroll_and_send(rt)
    assert twilio_post(client, w.id, status("SMotherotherother", "failed", ErrorCode="21610")) == 204
    assert welcome(rt, w.patient_id).status == MessageState.SENT
    assert [(e.outcome, e.message_id) for e in events(rt)] == [("provider id mismatch", None)]  # kept, not applied
    assert patient(rt, w.patient_id).sms_state == "ok"


@pytest.mark.parametrize(
    ("state", "code", "final", "sms_state"),
    [
        ("undelivered", "30007", MessageState.UNDELIVERED, "ok"),
        ("failed", "21610", MessageState.FAILED, "opted_out"),
        ("undelivered", "30005", MessageState.UNDELIVERED, "invalid"),
    ],
    ids=["carrier-filtered", "unsubscribed", "unknown-handset"],
)
def test_failure_callbacks_record_code_and_channel_state(
    client: TestClient, rt: Runtime, state: str, code: str, final: str, sms_state: str
) -> None:
    """A failure callback stores its ErrorCode; opt-out and invalid-number codes change the patient's SMS state."""
    pid, w = enroll_and_send(rt)
    assert twilio_post(client, w.id, status("RT000001", state, ErrorCode=code)) == 204
    after = welcome(rt, pid)
    assert (after.status, after.error_code) == (final, code)
    assert patient(rt, pid).sms_state == sms_state


class CallbackFirst(RecordingTransport):
    """A provider whose `delivered` callback is processed before its API answer reaches the dispatcher."""

    def __init__(self, channel: str) -> None:
        super().__init__(channel)
        self.rt: Runtime | None = None

    def send(self, msg: Outgoing) -> Sent:
        sent = super().send(msg)
        assert self.rt is not None
        form = {"MessageSid": sent.provider_id, "MessageStatus": "delivered"}
        assert delivery.twilio_status(self.rt, form, msg.message_id) == "applied"
        return sent


def test_sent_recorded_after_a_delivered_callback_keeps_delivered(settings: Settings, clock: FakeClock) -> None:
    """When the callback wins the race, the dispatcher's later `sent` does not move the message back."""
    sms = CallbackFirst("sms")
    rt = build_runtime(settings, clock=clock, transports={"sms": sms, "email": RecordingTransport("email")})
    sms.rt = rt
    try:
        _, w = enroll_and_send(rt)
        assert (w.status, w.provider_id, w.sent_at) == (MessageState.DELIVERED, "RT000001", clock.now())
    finally:
        rt.db.dispose()


# ---- SendGrid events -----------------------------------------------------------------------------------------


def sg_post(
    client: TestClient, batch: list[dict[str, Any]], *, ts: int | None = None, tamper: bool = False
) -> tuple[int, dict]:
    """POST an event batch signed with the fake provider's development key (ECDSA over timestamp + raw body)."""
    raw = json.dumps(batch).encode()
    timestamp = str(ts if ts is not None else int(time.time()))
    signature = sign_sendgrid_events(raw, timestamp)
    if tamper:
        raw = raw.replace(b"delivered", b"bounce")
    r = client.post(
        "/webhooks/sendgrid/events",
        content=raw,
        headers={
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": signature,
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        },
    )
    return r.status_code, (r.json() if r.status_code == 200 else {})


def ev(message_id: int, kind: str, event_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "email": "ana@example.org",
        "event": kind,
        "sg_event_id": event_id,
        "sg_message_id": "abc.filter0001",
        "timestamp": int(time.time()),
        "followup_message_id": str(message_id),
        **extra,
    }


def test_signed_sendgrid_events_are_applied(client: TestClient, rt: Runtime) -> None:
    """A batch signed with ECDSA is accepted: processed then delivered marks the email delivered."""
    _, w = enroll_and_send(rt, channel="email")
    assert w.channel == "email" and w.status == MessageState.SENT
    code, counts = sg_post(client, [ev(w.id, "processed", "e1"), ev(w.id, "delivered", "e2"), ev(w.id, "open", "e3")])
    assert code == 200 and counts["stored"] == 3
    assert welcome(rt, w.patient_id).status == MessageState.DELIVERED
    assert [e.event_key for e in events(rt)] == ["sendgrid:e1", "sendgrid:e2", "sendgrid:e3"]


@pytest.mark.parametrize(
    ("kind", "kwargs"),
    [
        ("tampered-body", {"tamper": True}),
        ("stale", {"ts": int(time.time()) - 3600}),
        ("future", {"ts": int(time.time()) + 3600}),
    ],
    ids=["tampered-body", "stale-timestamp", "future-timestamp"],
)
def test_forged_or_stale_sendgrid_events_are_403(client: TestClient, rt: Runtime, kind: str, kwargs: dict) -> None:
    """A body changed after signing, or a validly signed batch outside the replay window, is refused unstored."""
    _, w = enroll_and_send(rt, channel="email")
    code, _ = sg_post(client, [ev(w.id, "delivered", "e1")], **kwargs)
    assert code == 403
    assert events(rt) == [] and welcome(rt, w.patient_id).status == MessageState.SENT


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Twilio-Email-Event-Webhook-Timestamp": "1"},
        {"X-Twilio-Email-Event-Webhook-Signature": "MEUCIQ==", "X-Twilio-Email-Event-Webhook-Timestamp": "now"},
    ],
    ids=["no-headers", "no-signature", "garbage"],
)
def test_unsigned_sendgrid_events_are_403(client: TestClient, rt: Runtime, headers: dict) -> None:
    """Missing or malformed signature headers are refused."""
    r = client.post("/webhooks/sendgrid/events", content=b"[]", headers=headers)
    assert r.status_code == 403 and events(rt) == []


def test_duplicate_sg_event_id_is_counted_once(client: TestClient, rt: Runtime) -> None:
    """SendGrid's at-least-once delivery: the same sg_event_id, in one batch or a retried one, is stored once."""
    _, w = enroll_and_send(rt, channel="email")
    batch = [ev(w.id, "delivered", "dup-1"), ev(w.id, "delivered", "dup-1")]
    assert sg_post(client, batch)[1] == {"stored": 1, "duplicate": 1, "ignored": 0}
    assert sg_post(client, batch)[1] == {"stored": 0, "duplicate": 2, "ignored": 0}
    with rt.db.session() as s:
        assert s.exec(select(func.count()).select_from(m.DeliveryEvent)).one() == 1


def test_events_without_our_id_are_skipped_and_unknown_messages_kept(client: TestClient, rt: Runtime) -> None:
    """Events without our message id or without sg_event_id are skipped; one for a message we do not have (yet) is
    stored and kept pending for a later pass."""
    _, w = enroll_and_send(rt, channel="email")
    batch = [ev(9999, "delivered", "x1"), {"event": "delivered", "sg_event_id": "x2"}, ev(w.id, "delivered", "")]
    assert sg_post(client, batch)[1] == {"stored": 1, "duplicate": 0, "ignored": 2}
    assert [(e.event_key, e.outcome, e.tries) for e in events(rt)] == [("sendgrid:x1", None, 1)]


def test_bounce_suppresses_email_and_moves_the_patient_to_sms(
    client: TestClient, rt: Runtime, clock: FakeClock
) -> None:
    """A bounce fails the email, suppresses the address, and moves scheduled messages to the patient's phone."""
    pid, w = enroll_and_send(rt, channel="email")
    code, _ = sg_post(client, [ev(w.id, "bounce", "b1", status="5.1.1", reason="no such user")])
    assert code == 200
    after = welcome(rt, pid)
    assert (after.status, after.error_code) == (MessageState.FAILED, "bounce")
    p = patient(rt, pid)
    assert (p.email_state, p.channel) == ("suppressed", "sms")
    with rt.db.session() as s:
        channels = set(s.exec(select(m.Message.channel).where(m.Message.status == MessageState.SCHEDULED)).all())
    assert channels == {"sms"}


def test_bounce_without_phone_cancels_later_email_and_alerts(
    client: TestClient, rt: Runtime, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """With no phone, a bounce leaves the patient unreachable: the clinic is alerted and later email is cancelled."""
    pid, w = enroll_and_send(rt, channel="email", phone=None)
    sg_post(client, [ev(w.id, "bounce", "b1")])
    assert patient(rt, pid).email_state == "suppressed"
    d = Dispatcher(rt, owner="test")
    try:
        assert d.run_once().sent == 2  # the unreachable alerts, at once
        clock.set(datetime.fromisoformat("2026-11-26T18:15:00+00:00"))
        report = d.run_once()
    finally:
        d.close()
    assert (report.cancelled, report.sent) == (1, 0)
    with rt.db.session() as s:
        tip = s.exec(select(m.Message).where(m.Message.step_id == "caffeine")).one()
    assert (tip.status, tip.reason) == (MessageState.CANCELLED, "email suppressed")
    assert [o.to for o in transports["email"].sent] == ["ana@example.org", "oncall@clinic.example"]
    assert [o.to for o in transports["sms"].sent] == ["+13105550199"]
    assert transports["email"].sent[1].body.count(str(pid)) >= 1


def test_timeline_shows_delivery_events(client: TestClient, rt: Runtime, auth: dict) -> None:
    """GET /api/patients/{id} shows the welcome as delivered with the callbacks that said so."""
    pid, w = enroll_and_send(rt)
    twilio_post(client, w.id, status("RT000001", "sent"))
    twilio_post(client, w.id, status("RT000001", "delivered"))
    (item,) = client.get(f"/api/patients/{pid}", headers=auth).json()["timeline"]
    assert item["status"] == "delivered"
    assert [e["status"] for e in item["events"]] == ["sent", "delivered"]


@pytest.fixture
def no_key_rt(db_url: str, clock: FakeClock) -> Iterator[Runtime]:
    rt = build_runtime(
        make_settings(db_url),
        clock=clock,
        transports={"sms": RecordingTransport("sms"), "email": RecordingTransport("email")},
    )
    yield rt
    rt.db.dispose()


def test_sendgrid_events_without_a_configured_key_are_refused(no_key_rt: Runtime) -> None:
    """With no event key and no fake provider configured, even a batch signed with the dev key is refused."""
    from followup.web.app import create_app

    with TestClient(create_app(runtime=no_key_rt, background=False)) as c:
        code, _ = sg_post(c, [{"event": "delivered", "sg_event_id": "z"}])
    assert code == 403
