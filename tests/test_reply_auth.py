"""Replies are authentic (issue 11, findings 5 and 10): an email is a patient's only by their reply-to token or a
passing SPF/DKIM check for the sender's domain; the published development Twilio token signs nothing but the
loopback outbox demo."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from conftest import make_settings
from factories import triage_body
from fastapi.testclient import TestClient
from sqlmodel import select

from followup import models as m
from followup.clock import FakeClock
from followup.fakeprovider import DEV_TWILIO_AUTH_TOKEN, sign_twilio
from followup.parsing.inbound_email import sender_verified
from followup.runtime import Runtime, build_runtime
from followup.services.tokens import create_token
from followup.transports.recording import RecordingTransport
from followup.web.app import create_app

PASSWORD = "inbound-secret-for-reply-auth-tests"
PATIENT = "ana@example.org"


@pytest.fixture
def rt(db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]) -> Any:
    runtime = build_runtime(
        make_settings(db_url, sendgrid={"inbound_password": PASSWORD}), clock=clock, transports=dict(transports)
    )
    yield runtime
    runtime.db.dispose()


@pytest.fixture
def client(rt: Runtime) -> Any:
    with TestClient(create_app(runtime=rt, background=False), client=("198.51.100.20", 4000)) as c:
        yield c


@pytest.fixture
def patient(client: TestClient, rt: Runtime) -> m.Patient:
    auth = {"Authorization": f"Bearer {create_token(rt, 't')[1]}"}
    r = client.post("/api/triage", json=triage_body(channel="email"), headers=auth)
    assert r.status_code == 201, r.text
    with rt.db.session() as s:
        p = s.get(m.Patient, r.json()["patient_id"])
    assert p is not None
    return p


def mail(text: str, message_id: str, to: str = "followup@clinic.example", **checks: str) -> dict[str, str]:
    """An Inbound Parse post from the patient's address; `checks` are SendGrid's SPF and dkim fields."""
    return {
        "from": f"Ana Diaz <{PATIENT}>",
        "to": to,
        "subject": "Re: check-in",
        "text": text,
        "headers": f"Message-ID: {message_id}\nFrom: {PATIENT}\nTo: {to}\n",
        "envelope": json.dumps({"to": [to], "from": checks.pop("envelope_from", PATIENT)}),
        **checks,
    }


def post(client: TestClient, fields: dict[str, str]) -> Any:
    auth = "Basic " + base64.b64encode(f"sendgrid:{PASSWORD}".encode()).decode()
    return client.post("/webhooks/sendgrid/inbound", data=fields, headers={"Authorization": auth})


def state(rt: Runtime, patient_id: int) -> tuple[str, int, list[str]]:
    with rt.db.session() as s:
        p = s.get(m.Patient, patient_id)
        assert p is not None
        escalations = len(s.exec(select(m.Escalation)).all())
        actions = [a.action for a in s.exec(select(m.AuditLog).where(m.AuditLog.subject.startswith("inbound:")))]
    return p.email_state, escalations, actions


@pytest.mark.parametrize(
    "checks",
    [
        {"SPF": "fail", "dkim": "none"},
        {"SPF": "softfail", "dkim": "{@evil.example : pass}"},
        {"SPF": "pass", "dkim": "", "envelope_from": "bounce@evil.example"},
        {},
    ],
    ids=["spf-fail", "dkim-other-domain", "spf-pass-other-envelope", "no-checks"],
)
def test_a_forged_from_cannot_opt_out_or_alarm_for_a_patient(
    client: TestClient, rt: Runtime, patient: m.Patient, checks: dict[str, str]
) -> None:
    """The issue's forged mails: From the patient's address without a passing check, STOP does not opt them out
    and "I can't breathe" pages no one as an emergency and sends the patient nothing; but since a real patient's
    mail can fail SPF too, its red flag reaches staff as a routine review item marked "sender not verified"."""
    assert patient.id is not None
    with rt.db.session() as s:
        before = len(s.exec(select(m.Message)).all())
    assert post(client, mail("STOP", "<forged-1@evil.example>", **dict(checks))).status_code == 200
    assert post(client, mail("I can't breathe", "<forged-2@evil.example>", **dict(checks))).status_code == 200
    email_state, escalations, actions = state(rt, patient.id)
    assert (email_state, escalations) == ("ok", 1)
    assert actions == ["inbound.unverified_sender", "inbound.unverified_sender"]
    with rt.db.session() as s:
        stored = s.exec(select(m.Inbound).order_by(m.Inbound.id)).all()
        (esc,) = s.exec(select(m.Escalation)).all()
        events = [a.action for a in s.exec(select(m.AuditLog).where(m.AuditLog.subject == f"escalation:{esc.id}"))]
        queued = [(x.to, x.kind) for x in s.exec(select(m.Message).order_by(m.Message.id)).all()][before:]
    assert [(i.patient_id, i.intent, i.status) for i in stored] == [
        (None, "unknown_sender", "ignored"),
        (patient.id, "unverified_sender", "processed"),
    ]
    assert stored[1].verdict is not None and stored[1].verdict["sender_unverified"] is True
    assert (esc.level, esc.tier, esc.criteria) == ("red_flag", "routine", ["breathing"])
    assert "escalation.sender_unverified" in events
    assert [to for to, _ in queued if to == PATIENT] == [] and ("oncall@clinic.example", "alert") in queued


@pytest.mark.parametrize(
    ("checks", "by_token"),
    [
        ({"SPF": "pass"}, False),
        ({"SPF": "fail", "dkim": "{@example.org : pass}"}, False),
        ({"SPF": "fail", "dkim": "none"}, True),
    ],
    ids=["spf-pass", "dkim-pass", "reply-token"],
)
def test_a_checked_sender_or_the_reply_token_is_the_patient(
    client: TestClient, rt: Runtime, patient: m.Patient, checks: dict[str, str], by_token: bool
) -> None:
    """A passing SPF (envelope in the sender's domain) or DKIM for that domain, or the patient's own reply-to
    address, makes the mail the patient's: a red flag escalates and STOP opts out."""
    assert patient.id is not None
    to = f"{patient.reply_token}@{rt.settings.sendgrid.reply_domain}" if by_token else "followup@clinic.example"
    assert post(client, mail("I can't breathe", "<ok-1@example.org>", to=to, **dict(checks))).status_code == 200
    assert post(client, mail("STOP", "<ok-2@example.org>", to=to, **dict(checks))).status_code == 200
    email_state, escalations, _ = state(rt, patient.id)
    assert (email_state, escalations) == ("opted_out", 1)


@pytest.mark.parametrize(
    ("sender", "spf", "envelope", "dkim", "verified"),
    [
        ("ana@example.org", "pass", "ana@example.org", "", True),
        ("ana@example.org", "pass", "bounce@example.org", "", True),
        ("ana@example.org", "pass", "x@evil.example", "", False),
        ("ana@example.org", "fail", "ana@example.org", "{@example.org : pass}", True),
        ("ana@example.org", "fail", "ana@example.org", "{@sub.example.org : pass, @example.org : fail}", False),
        ("ana@example.org", "neutral", "ana@example.org", "{@evil.example : pass}", False),
        ("ana@example.org", "", "", "", False),
        ("no-domain", "pass", "no-domain", "", False),
    ],
)
def test_sender_verified(sender: str, spf: str, envelope: str, dkim: str, verified: bool) -> None:
    """SPF must pass for an envelope sender in the From domain, or DKIM pass for exactly that domain."""
    assert sender_verified(sender, spf, envelope, dkim) is verified


def signed_sms(client: TestClient, rt: Runtime, sid: str) -> Any:
    form = {"MessageSid": sid, "AccountSid": "AC1", "From": "+13105550142", "To": "+13105550100", "Body": "STOP"}
    sig = sign_twilio(rt.settings.server.public_url + "/webhooks/twilio/sms", form, DEV_TWILIO_AUTH_TOKEN)
    return client.post(
        "/webhooks/twilio/sms",
        content=urlencode(form),
        headers={"X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"},
    )


@pytest.mark.parametrize(
    ("address", "sections", "accepted"),
    [
        ("127.0.0.1", {}, True),
        ("::1", {}, True),
        ("203.0.113.7", {}, False),
        ("10.0.0.5", {}, False),
        ("127.0.0.1", {"sendgrid": {"api_key": "SG.real-looking-key"}}, False),
        (
            "127.0.0.1",
            {"twilio": {"account_sid": "AC" + "1" * 32, "auth_token": "t" * 32, "from_number": "+13105550100"}},
            False,
        ),
    ],
    ids=["loopback-outbox", "loopback-v6", "internet", "lan", "sendgrid-configured", "twilio-configured"],
)
def test_the_published_dev_token_signs_only_the_loopback_outbox_demo(
    db_url: str, clock: FakeClock, transports: dict, address: str, sections: dict[str, Any], accepted: bool
) -> None:
    """A forged SMS signed with the fake provider's published token is refused unless outbox mode (no provider)
    is on and the post comes from loopback (finding 10); refused, nothing is stored."""
    settings = make_settings(db_url, **sections)
    rt = build_runtime(settings, clock=clock, transports=dict(transports))
    try:
        with TestClient(create_app(runtime=rt, background=False), client=(address, 4000)) as c:
            r = signed_sms(c, rt, "SMforged1")
        with rt.db.session() as s:
            stored = len(s.exec(select(m.Inbound)).all())
        assert (r.status_code, stored) == ((200, 1) if accepted else (403, 0))
    finally:
        rt.db.dispose()
