"""End to end against the fake provider: a reply raises an escalation, the patient and the clinic hear at once."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
from livestack import INBOUND_PASSWORD, Live, eventually, live_stack

PATIENT = "+13105550142"
ONCALL = "+13105550199"


@pytest.fixture
def live(db_url: str) -> Iterator[Live]:
    with live_stack(db_url) as stack:
        yield stack


def enroll(live: Live, **over: object) -> int:
    return live.triage(**over)


def test_weaker_hand_escalates_books_and_alerts(live: Live) -> None:
    """A signed inbound SMS 'my right hand is getting weaker' opens an escalation, sends the booking link to the
    patient and an alert to the on-call number; the same webhook again changes nothing."""
    enroll(live)
    eventually(lambda: live.sent_to(PATIENT), what="the welcome SMS")
    first = live.sms_from_patient(PATIENT, "my right hand is getting weaker")
    assert first["status"] == 200
    esc = eventually(lambda: live.api.get("/api/escalations").json(), what="an escalation")[0]
    assert esc["status"] == "open" and esc["level"] == "red_flag" and "weakness" in esc["criteria"]
    assert any("weaker" in e["text"] for e in esc["evidence"])
    booking = eventually(lambda: [m for m in live.sent_to(PATIENT) if "/book/" in m["body"]], what="booking SMS")
    assert "http" in booking[0]["body"]
    alert = eventually(lambda: live.sent_to(ONCALL), what="the on-call alert")
    assert f"#{esc['id']}" in alert[0]["body"] and "Ana" not in alert[0]["body"]
    eventually(lambda: live.sent_to("oncall@clinic.example"), what="the on-call email")  # the last one queued
    live.fake.wait_idle()
    before = len(live.fake.messages())
    again = live.sms_from_patient(PATIENT, "my right hand is getting weaker", message_sid=first["message_sid"])
    assert again["status"] == 200
    live.fake.wait_idle()
    assert len(live.api.get("/api/escalations").json()) == 1
    assert len(live.fake.messages()) == before


def test_stop_and_start(live: Live) -> None:
    """STOP opts the patient out and START opts them back in, through the real webhook."""
    pid = enroll(live)
    eventually(lambda: live.sent_to(PATIENT), what="the welcome SMS")
    live.sms_from_patient(PATIENT, "STOP")
    assert live.api.get(f"/api/patients/{pid}").json()["sms_state"] == "opted_out"
    live.sms_from_patient(PATIENT, "START")
    assert live.api.get(f"/api/patients/{pid}").json()["sms_state"] == "ok"


def test_spanish_baja_and_comenzar_answer_in_spanish(live: Live) -> None:
    """A Spanish patient's BAJA (not a Twilio keyword: it reaches us) opts out with a Spanish confirmation naming
    COMENZAR; COMENZAR opts back in with a Spanish confirmation. Both texts stay GSM-7."""
    pid = enroll(live, language="es")
    eventually(lambda: live.sent_to(PATIENT), what="the welcome SMS")
    assert "Responda BAJA para salir" in live.sent_to(PATIENT)[0]["body"]
    live.sms_from_patient(PATIENT, "BAJA")
    assert live.api.get(f"/api/patients/{pid}").json()["sms_state"] == "opted_out"
    out = eventually(lambda: [m for m in live.sent_to(PATIENT) if "ya no recibira" in m["body"]], what="confirmation")
    assert "Responda COMENZAR para volver" in out[0]["body"] and "START" not in out[0]["body"]
    live.sms_from_patient(PATIENT, "Comenzar")
    assert live.api.get(f"/api/patients/{pid}").json()["sms_state"] == "ok"
    back = eventually(lambda: [m for m in live.sent_to(PATIENT) if "hola de nuevo" in m["body"]], what="welcome back")
    assert "BAJA para salir" in back[0]["body"] and "STOP" not in back[0]["body"]


def test_email_reply_quoting_question_raises_nothing(live: Live) -> None:
    """An email reply 'Feeling much better' above the clinic's quoted question raises nothing."""
    enroll(live, channel="email")
    auth = base64.b64encode(f"sendgrid:{INBOUND_PASSWORD}".encode()).decode()
    body = (
        "Feeling much better\n\nOn Mon, Nov 30, 2026 at 9:00 AM Clinic <followup@clinic.example> wrote:\n"
        "> Any new weakness, trouble speaking, swallowing or breathing?"
    )
    r = httpx.post(
        f"{live.base}/webhooks/sendgrid/inbound",
        headers={"Authorization": f"Basic {auth}"},
        data={
            "from": "Ana <ana@example.org>",
            "to": "followup@clinic.example",
            "subject": "Re: check-in",
            "text": body,
            "headers": "Message-ID: <e2e-1@example.org>\n",
        },
    )
    assert r.status_code == 200, r.text
    eventually(live.replies_acted_on, what="a reply worker to act on the email")
    assert live.api.get("/api/escalations").json() == []
