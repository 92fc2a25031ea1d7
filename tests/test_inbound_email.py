"""Inbound email (SendGrid Inbound Parse): credentials, hostile bodies, quoted history, deduplication."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from conftest import make_settings
from factories import triage_body
from fastapi.testclient import TestClient
from sqlmodel import func, select

from followup.clock import FakeClock
from followup.models import Escalation, Inbound, Patient
from followup.parsing.inbound_email import parse_sendgrid
from followup.runtime import Runtime, build_runtime
from followup.transports.recording import RecordingTransport
from followup.web.app import create_app

PASSWORD = "inbound-secret"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"sendgrid:{PASSWORD}".encode()).decode()}
QUOTED = (
    "Feeling much better\n\nOn Mon, Nov 30, 2026 at 9:00 AM Clinic <followup@clinic.example> wrote:\n"
    "> Any new weakness, trouble speaking, swallowing or breathing?\n> Reply 1 for weakness"
)


@pytest.fixture
def rt(db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]) -> Runtime:
    settings = make_settings(db_url).with_overrides(sendgrid={"inbound_password": PASSWORD})
    return build_runtime(settings, clock=clock, transports=dict(transports))


@pytest.fixture
def client(rt: Runtime) -> Any:
    with TestClient(create_app(runtime=rt, background=False)) as c:
        yield c


@pytest.fixture
def patient(client: TestClient, auth: dict[str, str], rt: Runtime) -> Patient:
    r = client.post("/api/triage", json=triage_body(channel="email"), headers=auth)
    assert r.status_code == 201, r.text
    with rt.db.session() as s:
        p = s.get(Patient, r.json()["patient_id"])
    assert p is not None
    return p


def post(client: TestClient, fields: dict[str, str], files: Any = None, headers: dict[str, str] | None = None) -> Any:
    return client.post(
        "/webhooks/sendgrid/inbound", data=fields, files=files, headers=AUTH if headers is None else headers
    )


def mail(
    text: str,
    sender: str = "Ana Diaz <ana@example.org>",
    to: str = "followup@clinic.example",
    message_id: str = "<m1@example.org>",
    **extra: str,
) -> dict[str, str]:
    headers = f"Message-ID: {message_id}\nFrom: {sender}\nTo: {to}\nSubject: Re: check-in\n"
    return {
        "from": sender,
        "to": to,
        "subject": "Re: check-in",
        "text": text,
        "headers": headers,
        "envelope": json.dumps({"to": [to], "from": "ana@example.org"}),
        "charsets": '{"text": "utf-8"}',
        "SPF": "pass",  # SendGrid's checks, as it posts them for a genuine mail from ana@example.org
        "dkim": "{@example.org : pass}",
        **extra,
    }


def escalations(rt: Runtime) -> list[Escalation]:
    with rt.db.session() as s:
        return list(s.exec(select(Escalation)).all())


def test_quoted_clinic_question_raises_nothing(client: TestClient, rt: Runtime, patient: Patient) -> None:
    """'Feeling much better' above the clinic's quoted question raises nothing."""
    assert post(client, mail(QUOTED)).status_code == 200
    assert escalations(rt) == []
    with rt.db.session() as s:
        inbound = s.exec(select(Inbound)).one()
    assert inbound.patient_id == patient.id and inbound.level == "none"
    assert "weakness" not in inbound.body.lower()


def test_red_flag_email_escalates(client: TestClient, rt: Runtime, patient: Patient) -> None:
    """A red flag above quoted history escalates."""
    post(client, mail("My arm feels weaker this week.\n\n" + QUOTED.split("\n\n", 1)[1]))
    (esc,) = escalations(rt)
    assert "weakness" in esc.criteria


def test_matched_by_reply_to_token_before_sender(client: TestClient, rt: Runtime, patient: Patient) -> None:
    """The per-patient reply-to address identifies the patient even from another sender address."""
    to = f"{patient.reply_token}@{rt.settings.sendgrid.reply_domain}"
    post(client, mail("my leg is weaker", sender="someone.else@example.net", to=to))
    (esc,) = escalations(rt)
    assert esc.patient_id == patient.id


def test_duplicate_message_id_is_processed_once(client: TestClient, rt: Runtime, patient: Patient) -> None:
    """The same Message-ID posted twice is stored and acted on once."""
    for _ in range(2):
        assert post(client, mail("my leg is weaker")).status_code == 200
    with rt.db.session() as s:
        assert s.exec(select(func.count()).select_from(Inbound)).one() == 1
    assert len(escalations(rt)) == 1


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic " + base64.b64encode(b"sendgrid:wrong").decode()}],
    ids=["missing", "wrong"],
)
def test_credentials_required(client: TestClient, rt: Runtime, patient: Patient, headers: dict[str, str]) -> None:
    """Without the configured credentials the post is refused and nothing is stored."""
    assert post(client, mail("my leg is weaker"), headers=headers).status_code == 401
    assert escalations(rt) == []


def test_html_only_mail_is_read_as_text(client: TestClient, rt: Runtime, patient: Patient) -> None:
    """An HTML-only mail is converted to text; scripts are not kept."""
    fields = mail("", html="<html><body><p>My <b>hand</b> is getting weaker</p><script>alert(1)</script></body></html>")
    post(client, fields)
    (esc,) = escalations(rt)
    with rt.db.session() as s:
        inbound = s.exec(select(Inbound)).one()
    assert "alert(1)" not in inbound.body and esc.patient_id == patient.id


def test_attachment_recorded_not_opened(client: TestClient, rt: Runtime, patient: Patient) -> None:
    """Attachments are recorded by name and type, never opened."""
    post(client, mail("see video", attachments="1"), files={"attachment1": ("twitch.mp4", b"\x00\x01", "video/mp4")})
    with rt.db.session() as s:
        inbound = s.exec(select(Inbound)).one()
    assert inbound.meta["attachment_count"] == 1 and inbound.meta["attachments"][0]["filename"] == "twitch.mp4"


def test_latin1_charset_is_decoded(client: TestClient, rt: Runtime, patient: Patient) -> None:
    """A body declared ISO-8859-1 is decoded in that charset."""
    body = "Me siento débil en la pierna".encode("latin-1")
    fields = mail("placeholder", charsets='{"text": "iso-8859-1"}')
    del fields["text"]
    r = client.post("/webhooks/sendgrid/inbound", data=fields, files={"text": (None, body)}, headers=AUTH)
    assert r.status_code == 200
    with rt.db.session() as s:
        inbound = s.exec(select(Inbound)).one()
    assert "débil" in inbound.body


def test_oversized_body_refused_before_reading(client: TestClient, rt: Runtime, patient: Patient) -> None:
    """A body above the inbound limit gets 413."""
    r = client.post(
        "/webhooks/sendgrid/inbound",
        content=b"x" * (rt.settings.sendgrid.inbound_max_bytes + 1),
        headers={**AUTH, "Content-Type": "multipart/form-data; boundary=x"},
    )
    assert r.status_code == 413


def test_parse_without_message_id_uses_content_hash() -> None:
    """A mail with no Message-ID gets a stable key from its content, so a retry is still deduplicated."""
    a = parse_sendgrid({"from": "a@example.org", "text": "hi"}, "reply.clinic.example", [])
    b = parse_sendgrid({"from": "a@example.org", "text": "hi"}, "reply.clinic.example", [])
    assert a.provider_key == b.provider_key and a.provider_key.startswith("email:sha256:")
