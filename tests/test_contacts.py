"""Contacts are confirmed before they are used (issue 11, findings 1-3): the public form never changes a patient,
answers the same for contacts held and new, and a contact it brings gets one confirmation and nothing else until
its owner answers. SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from factories import intake_form, triage_body
from fastapi.testclient import TestClient
from sqlmodel import select

from followup import models as m
from followup.clock import FakeClock
from followup.fakeprovider import DEV_TWILIO_AUTH_TOKEN, sign_twilio
from followup.runtime import Runtime, build_runtime
from followup.services.dispatch import Dispatcher
from followup.transports.recording import RecordingTransport
from followup.web.app import create_app

VICTIM_PHONE, VICTIM_EMAIL = "+13105550142", "ana@example.org"
ATTACKER_EMAIL = "mallory@example.net"


def csrf(client: TestClient) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/intake").text)
    assert found
    return found.group(1)


def intake(client: TestClient, **over: Any) -> Any:
    return client.post("/intake", data={**intake_form(**over), "csrf_token": csrf(client)})


def sms(client: TestClient, rt: Runtime, sender: str, body: str, sid: str) -> Any:
    """An inbound SMS signed as the outbox demo signs it (the test client posts from loopback)."""
    form = {"MessageSid": sid, "AccountSid": "AC1", "From": sender, "To": "+13105550100", "Body": body}
    sig = sign_twilio(rt.settings.server.public_url + "/webhooks/twilio/sms", form, DEV_TWILIO_AUTH_TOKEN)
    return client.post(
        "/webhooks/twilio/sms",
        content=urlencode(form),
        headers={"X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"},
    )


def rows(rt: Runtime, model: Any, *where: Any) -> list[Any]:
    with rt.db.session() as s:
        return list(s.exec(select(model).where(*where)).all())


def snapshot(rt: Runtime, patient_id: int) -> dict[str, Any]:
    """Everything about one patient that a takeover could change."""
    (p,) = rows(rt, m.Patient, m.Patient.id == patient_id)
    return {
        "patient": p.model_dump(),
        "consents": [c.model_dump() for c in rows(rt, m.Consent, m.Consent.patient_id == patient_id)],
        "escalations": [e.model_dump() for e in rows(rt, m.Escalation, m.Escalation.patient_id == patient_id)],
        "messages": sorted(x.id for x in rows(rt, m.Message, m.Message.patient_id == patient_id)),
        "triages": len(rows(rt, m.Triage, m.Triage.patient_id == patient_id)),
    }


def page_text(html: str) -> str:
    """The thank-you page without what differs per request anyway (none expected, but say so if it appears)."""
    return re.sub(r'value="[^"]{20,}"', 'value="…"', html)


@pytest.fixture
def victim(client: TestClient, auth: dict[str, str], rt: Runtime) -> int:
    """A patient the clinic enrolled (API), with an open escalation, who has texted STOP."""
    r = client.post("/api/triage", json=triage_body(answers={"weakness": True}), headers=auth)
    assert r.status_code == 201, r.text
    assert sms(client, rt, VICTIM_PHONE, "STOP", "SMstop1").status_code == 200
    Dispatcher(rt).run_once()
    pid = int(r.json()["patient_id"])
    (p,) = rows(rt, m.Patient, m.Patient.id == pid)
    assert p.sms_state == "opted_out" and p.sms_confirmed_at is not None
    return pid


def test_takeover_intake_with_the_victims_phone_and_an_attackers_email_changes_nothing(
    client: TestClient, rt: Runtime, victim: int, transports: dict[str, RecordingTransport]
) -> None:
    """The issue's takeover: a second intake with the victim's phone, the attacker's email and a red flag leaves the
    victim's record, consent and escalations unchanged, sends the attacker nothing about the victim, and answers
    exactly as for a new contact."""
    before = snapshot(rt, victim)
    sent_before = len(transports["sms"].sent) + len(transports["email"].sent)
    attack = intake(client, name="Mallory", phone="(310) 555-0142", email=ATTACKER_EMAIL, breathing="yes")
    fresh = intake(client, name="Mallory", phone="(310) 555-0177", email="fresh@example.net", breathing="yes")
    assert attack.status_code == fresh.status_code == 201
    assert page_text(attack.text) == page_text(fresh.text)
    Dispatcher(rt).run_once()
    assert snapshot(rt, victim) == before
    new_sent = [*transports["sms"].sent, *transports["email"].sent][sent_before:]
    to_attacker = [x for x in new_sent if x.to == ATTACKER_EMAIL]
    to_fresh = [x for x in new_sent if x.to == "fresh@example.net"]
    assert len(to_attacker) == len(to_fresh) == 1  # each: its confirmation request, and nothing else
    assert to_attacker[0].subject == to_fresh[0].subject and "/confirm/" in to_attacker[0].body
    assert not [(x.body, x.message_id) for x in new_sent if x.to == VICTIM_PHONE]
    victim_words = ("Ana", "Diaz", "/book/", VICTIM_PHONE, "5550142")
    assert not any(w in x.body for x in to_attacker for w in victim_words)
    (held,) = rows(rt, m.AuditLog, m.AuditLog.action == "intake.contact_already_held")
    assert held.detail == {"held_by": [f"patient:{victim}"], "fields": ["phone"]}


@pytest.mark.parametrize(
    ("known", "other"),
    [
        ({"email": VICTIM_EMAIL, "phone": "(310) 555-0188"}, {"email": "new@example.net", "phone": "(310) 555-0189"}),
        (
            {"email": "x1@example.net", "phone": "(310) 555-0142"},
            {"email": "x2@example.net", "phone": "(310) 555-0190"},
        ),
        ({"email": VICTIM_EMAIL, "phone": "(310) 555-0142"}, {"email": "x3@example.net", "phone": "(310) 555-0191"}),
    ],
    ids=["known-email", "known-phone", "both-known"],
)
def test_the_form_does_not_tell_who_is_a_patient(
    client: TestClient, rt: Runtime, victim: int, known: dict[str, str], other: dict[str, str]
) -> None:
    """A known email with another phone (finding 2), a known phone, or both, answer with the same status and page
    as contacts never seen, and change nothing of the patient who holds them."""
    before = snapshot(rt, victim)
    a, b = intake(client, **known), intake(client, **other)
    assert (a.status_code, page_text(a.text)) == (b.status_code, page_text(b.text)) == (201, page_text(b.text))
    assert snapshot(rt, victim) == before


def test_a_number_from_the_form_gets_one_confirmation_and_nothing_else_until_it_answers(
    client: TestClient, rt: Runtime, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """The form's number gets "reply YES" (in the patient's language) and nothing more for days; its YES confirms
    it and the welcome that waited goes at once."""
    r = intake(client, phone="(310) 555-0150", email=None, language="es")
    assert r.status_code == 201 and "responda SI" in r.text.replace("Responda", "responda")
    for _ in range(4):
        Dispatcher(rt).run_once()
        clock.advance(timedelta(hours=20))
    to_patient = [x for x in transports["sms"].sent if x.to == "+13105550150"]
    assert len(to_patient) == 1 and "Responda SI" in to_patient[0].body
    assert sms(client, rt, "+13105550150", "SI", "SMyes1").status_code == 200
    Dispatcher(rt).run_once()
    bodies = [x.body for x in transports["sms"].sent if x.to == "+13105550150"][1:]
    (p,) = rows(rt, m.Patient, m.Patient.phone == "+13105550150")
    assert p.sms_confirmed_at == clock.now() and len(bodies) >= 2  # the answer to SI, and the welcome
    assert rows(rt, m.AuditLog, m.AuditLog.action == "contact.confirmed")


def test_a_red_flag_in_the_confirming_reply_is_acted_on_at_once(
    client: TestClient, rt: Runtime, transports: dict[str, RecordingTransport]
) -> None:
    """An unconfirmed number whose first reply is "I can't breathe" is confirmed by it and escalated at once: the
    emergency advice goes out in the same pass, and no acknowledgement."""
    assert intake(client, phone="(310) 555-0151", email=None).status_code == 201
    Dispatcher(rt).run_once()
    r = sms(client, rt, "+13105550151", "I can't breathe", "SMbreathe1")
    assert r.status_code == 200
    Dispatcher(rt).run_once()
    (esc,) = rows(rt, m.Escalation)
    assert esc.level == "emergency"
    advice = [x for x in transports["sms"].sent if x.to == "+13105550151" and "911" in x.body]
    assert len(advice) >= 2  # the confirmation request names 911 too; the advice is the second


def test_an_emergency_at_intake_shows_at_once_and_says_it_does_not_wait(
    client: TestClient, rt: Runtime, transports: dict[str, RecordingTransport]
) -> None:
    """An emergency answered on the form: the page says call 911 now and that this does not wait for the
    confirmation; the clinic is alerted at once; the advice text waits for the patient's YES."""
    r = intake(client, phone="(310) 555-0152", email=None, breathing="yes")
    assert r.status_code == 201 and "Call 911 now" in r.text and "does not wait for that confirmation" in r.text
    Dispatcher(rt).run_once()
    assert any(x.to == "+13105310199" or x.to == "+13105550199" for x in transports["sms"].sent)  # on-call
    to_patient = [x for x in transports["sms"].sent if x.to == "+13105550152"]
    assert len(to_patient) == 1 and "Reply YES" in to_patient[0].body


def test_an_email_from_the_form_is_confirmed_by_its_link_once(
    client: TestClient, rt: Runtime, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """The email gets a link; opening it changes nothing, its button confirms and releases the welcome; the link
    works once."""
    assert intake(client, phone=None, email="new@example.net", channel="email").status_code == 201
    Dispatcher(rt).run_once()
    (request,) = [x for x in transports["email"].sent if x.to == "new@example.net"]
    found = re.search(r"/confirm/[A-Za-z0-9_-]+", request.body)
    assert found
    path = found.group(0)
    assert client.get(path).status_code == 200
    (p,) = rows(rt, m.Patient, m.Patient.email == "new@example.net")
    assert p.email_confirmed_at is None  # a mail scanner opening the link confirms nothing
    done = client.post(path)
    assert done.status_code == 200 and 'data-testid="confirmed"' in done.text
    Dispatcher(rt).run_once()
    assert len([x for x in transports["email"].sent if x.to == "new@example.net"]) == 2  # and the welcome
    assert client.post(path).status_code == 404 and client.get(path).status_code == 404


def test_an_email_link_expires(client: TestClient, rt: Runtime, clock: FakeClock, transports: dict) -> None:
    """After contacts.confirm_hours the link opens nothing and confirms nothing."""
    assert intake(client, phone=None, email="late@example.net", channel="email").status_code == 201
    Dispatcher(rt).run_once()
    (request,) = [x for x in transports["email"].sent if x.to == "late@example.net"]
    found = re.search(r"/confirm/[A-Za-z0-9_-]+", request.body)
    assert found
    clock.advance(timedelta(hours=rt.settings.contacts.confirm_hours, minutes=1))
    assert client.post(found.group(0)).status_code == 404
    (p,) = rows(rt, m.Patient, m.Patient.email == "late@example.net")
    assert p.email_confirmed_at is None


def test_confirmation_requests_to_one_number_are_limited_and_expire(
    db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """A number never confirmed is released when its request expires and may be given again, but gets at most
    `confirm_per_day` requests a day; the one over the limit is recorded and audited, not sent."""
    from conftest import make_settings

    settings = make_settings(db_url, contacts={"confirm_hours": 1, "confirm_per_day": 2})
    rt = build_runtime(settings, clock=clock, transports=dict(transports))
    try:
        with TestClient(create_app(runtime=rt, background=False), client=("127.0.0.1", 5000)) as c:
            for _ in range(3):
                assert intake(c, phone="(310) 555-0160", email=None).status_code == 201
                Dispatcher(rt).run_once()
                clock.advance(timedelta(hours=2))
        statuses = [r.status for r in rows(rt, m.ContactConfirmation)]
        assert statuses == ["pending", "pending", "limited"]
        assert len([x for x in transports["sms"].sent if x.to == "+13105550160"]) == 2
        assert len(rows(rt, m.AuditLog, m.AuditLog.action == "contact.released")) == 2
        assert len(rows(rt, m.AuditLog, m.AuditLog.action == "contact.confirmation_limited")) == 1
    finally:
        rt.db.dispose()


@pytest.mark.parametrize(
    ("regions", "phone", "accepted"),
    [
        ([], "+44 7400 123456", False),
        ([], "(310) 555-0170", True),
        (["US", "GB"], "+44 7400 123456", True),
        (["GB"], "(310) 555-0170", False),
    ],
    ids=["uk-default", "us-default", "uk-allowed", "us-not-allowed"],
)
def test_texting_regions_are_a_setting(
    db_url: str, clock: FakeClock, transports: dict, regions: list[str], phone: str, accepted: bool
) -> None:
    """Numbers outside contacts.allowed_regions (default: the clinic's own) are refused on the form and by the API,
    with a field error that names the regions; nothing is written."""
    from conftest import make_settings

    from followup.services.tokens import create_token

    rt = build_runtime(
        make_settings(db_url, contacts={"allowed_regions": regions}), clock=clock, transports=dict(transports)
    )
    try:
        with TestClient(create_app(runtime=rt, background=False), client=("127.0.0.1", 5000)) as c:
            page = intake(c, phone=phone, email=None)
            auth = {"Authorization": f"Bearer {create_token(rt, 't')[1]}"}
            api = c.post("/api/triage", json=triage_body(phone=phone, email=None), headers=auth)
        if accepted:
            assert page.status_code == 201 and api.status_code == 201
            return
        allowed = ", ".join(regions or ["US"])
        assert page.status_code == 422 and f"numbers in {allowed}" in page.text
        assert api.status_code == 422 and api.json()["detail"][0]["loc"] == ["body", "phone"]
        assert "texts numbers in" in api.json()["detail"][0]["msg"]
        assert rows(rt, m.Patient) == []
    finally:
        rt.db.dispose()


def test_contacts_the_clinic_enters_are_confirmed(
    client: TestClient, auth: dict[str, str], rt: Runtime, transports: dict[str, RecordingTransport]
) -> None:
    """A patient enrolled through the authenticated API gets the welcome at once, no confirmation request: the clinic
    vouches for the contact, and the welcome says who writes and how to stop."""
    assert client.post("/api/triage", json=triage_body(phone="+13105550171"), headers=auth).status_code == 201
    Dispatcher(rt).run_once()
    (welcome,) = [x for x in transports["sms"].sent if x.to == "+13105550171"]
    assert "Reply YES" not in welcome.body and "STOP" in welcome.body
