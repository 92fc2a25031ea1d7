"""Nothing a patient writes is lost at the edges (issue 11, findings 7, 8, 9): red flags are read outside the write
transaction and within a bound, big emails are read, and floods are stored and read within a budget."""

from __future__ import annotations

import base64
import json
import sqlite3
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlencode

import pytest
from conftest import make_settings
from factories import triage_body
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url
from sqlmodel import select

from followup import models as m
from followup.clock import FakeClock
from followup.fakeprovider import DEV_TWILIO_AUTH_TOKEN, sign_twilio
from followup.redflags import Detector
from followup.redflags.detector import MAX_TOKENS
from followup.runtime import Runtime, build_runtime
from followup.services import inbound
from followup.services.tokens import create_token
from followup.transports.recording import RecordingTransport
from followup.web.app import create_app

PASSWORD = "inbound-secret-for-edge-tests"
PHONE = "+13105550142"
EMOJI_MAIL = "😀" * 20_000


@pytest.fixture
def rt(db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]) -> Any:
    settings = make_settings(
        db_url, sendgrid={"inbound_password": PASSWORD}, limits={"inbound_sms_per_minute": 3, "flood_reads_per_hour": 2}
    )
    runtime = build_runtime(settings, clock=clock, transports=dict(transports))
    yield runtime
    runtime.db.dispose()


@pytest.fixture
def client(rt: Runtime) -> Any:
    with TestClient(create_app(runtime=rt, background=False), client=("127.0.0.1", 4000)) as c:
        yield c


@pytest.fixture
def patient(client: TestClient, rt: Runtime) -> int:
    auth = {"Authorization": f"Bearer {create_token(rt, 't')[1]}"}
    r = client.post("/api/triage", json=triage_body(), headers=auth)
    assert r.status_code == 201, r.text
    return int(r.json()["patient_id"])


def escalations(rt: Runtime) -> list[m.Escalation]:
    with rt.db.session() as s:
        return list(s.exec(select(m.Escalation)).all())


# ---- finding 7: the detector reads with no transaction open, and within a bound ------------------------------


def test_a_long_reply_is_read_without_holding_the_write_lock(
    client: TestClient, rt: Runtime, patient: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the detector reads a reply, another connection can write at once (SQLite's single write lock is
    free): a 20,000-emoji email no longer stalls every write. The spy lets the real detector read."""
    if not rt.db.url.startswith("sqlite"):
        pytest.skip("the write lock that stalled everyone is SQLite's")
    path = make_url(rt.db.url).database
    assert path
    wrote: list[str] = []
    real = Detector.assess

    def spy(self: Detector, text: str, context: Any = None) -> Any:
        con = sqlite3.connect(path, timeout=0.2)
        try:
            con.execute("UPDATE throttle SET count = count WHERE key = 'none'")  # a write: takes the lock
            con.commit()
            wrote.append("ok")
        except sqlite3.OperationalError as exc:
            wrote.append(str(exc))
        finally:
            con.close()
        return real(self, text, context)

    monkeypatch.setattr(Detector, "assess", spy)
    result = inbound.receive(rt, _sms_reply("my hand is weaker " + EMOJI_MAIL, "SMlong1"))
    assert wrote and set(wrote) == {"ok"}
    assert result.level == "red_flag"


def test_processing_a_stored_reply_twice_acts_once(client: TestClient, rt: Runtime, patient: int) -> None:
    """The read, detect, write steps are idempotent: a second `process` of the same reply finds it taken."""
    first = inbound.receive(rt, _sms_reply("I can't breathe", "SMtwice"))
    assert first.inbound_id is not None and first.level == "emergency"
    again = inbound.process(rt, first.inbound_id)
    assert again.duplicate and len(escalations(rt)) == 1


def test_detection_is_bounded_per_reply_and_says_so() -> None:
    """Past MAX_TOKENS a reply is not read further and the verdict says where reading stopped; a red flag before
    the bound is found."""
    detector = Detector.from_file(make_settings("sqlite://").clinic.red_flags)
    early = detector.assess("I can't breathe. " + EMOJI_MAIL)
    assert early.level == "emergency" and early.unread_from is not None
    assert "Read only up to character" in early.explanation() and early.to_dict()["unread_from"] > 0
    short = detector.assess("I can't breathe")
    assert short.unread_from is None and "unread_from" not in short.to_dict()
    assert MAX_TOKENS == 6000


@pytest.mark.parametrize(
    ("text", "level", "review"),
    [
        ("I can't breathe. " + EMOJI_MAIL, "emergency", None),  # found in the part read: it stands
        (EMOJI_MAIL + " I can't breathe", "red_flag", "unread"),  # past the limit: staff read the rest
        ("fine thanks, twitching is better", "none", None),
    ],
)
def test_a_reply_too_long_to_read_whole_is_never_none(text: str, level: str, review: str | None) -> None:
    """A reply cut at MAX_TOKENS with nothing found in the part read is a staff review item, never "none"."""
    from followup.runtime import load_detector

    verdict = load_detector(make_settings("sqlite://").clinic.red_flags).assess(text)
    assert (verdict.level, verdict.review_reason) == (level, review)
    assert verdict.review is (review is not None)
    if review:
        assert "Needs review" in verdict.explanation() and verdict.tier == "routine"


def _sms_reply(body: str, sid: str) -> Any:
    from followup.core.replies import Reply

    return Reply(channel="sms", provider_key=f"twilio:{sid}", sender=PHONE, body=body)


# ---- finding 8: Inbound Parse parts up to the inbound limit; only text is read ----------------------------------


def _auth() -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"sendgrid:{PASSWORD}".encode()).decode()}


def _raw_mail_with_photo(text: str, photo_bytes: int) -> str:
    msg = EmailMessage()
    msg["From"], msg["To"] = "Ana Diaz <ana@example.org>", "followup@clinic.example"
    msg["Subject"], msg["Message-ID"] = "Re: check-in", "<photo-1@example.org>"
    msg.set_content(text)
    msg.add_attachment(b"\xff\xd8" + b"\x00" * photo_bytes, maintype="image", subtype="jpeg", filename="hand.jpg")
    return msg.as_string()


@pytest.mark.parametrize("mode", ["raw", "parsed"])
def test_an_email_with_a_photo_over_1_mb_is_read(client: TestClient, rt: Runtime, patient: int, mode: str) -> None:
    """ "I can't breathe" with a 1.5 MB phone photo (raw mode: one 2 MB field; parsed mode: a file part) is
    accepted and escalates; the photo is recorded, not read."""
    checks = {"SPF": "pass", "envelope": json.dumps({"to": ["followup@clinic.example"], "from": "ana@example.org"})}
    if mode == "raw":
        fields = {"email": _raw_mail_with_photo("I can't breathe", 1_500_000), **checks}
        r = client.post("/webhooks/sendgrid/inbound", data=fields, headers=_auth())
    else:
        fields = {
            "from": "ana@example.org",
            "to": "followup@clinic.example",
            "text": "I can't breathe",
            "headers": "Message-ID: <photo-2@example.org>\n",
            **checks,
        }
        files = {"attachment1": ("hand.jpg", b"\xff\xd8" + b"\x00" * 1_500_000, "image/jpeg")}
        r = client.post("/webhooks/sendgrid/inbound", data=fields, files=files, headers=_auth())
    assert r.status_code == 200, r.text
    (esc,) = escalations(rt)
    assert esc.level == "emergency"
    with rt.db.session() as s:
        (stored,) = s.exec(select(m.Inbound)).all()
    assert stored.meta["attachment_count"] == 1 and len(stored.body) < 100


# ---- finding 9: a flood is stored, read within a budget, never dropped ----------------------------------------


def _post_sms(client: TestClient, rt: Runtime, body: str, sid: str) -> Any:
    form = {"MessageSid": sid, "AccountSid": "AC1", "From": PHONE, "To": "+13105550100", "Body": body}
    sig = sign_twilio(rt.settings.server.public_url + "/webhooks/twilio/sms", form, DEV_TWILIO_AUTH_TOKEN)
    return client.post(
        "/webhooks/twilio/sms",
        content=urlencode(form),
        headers={"X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"},
    )


def test_a_red_flag_after_the_flood_limit_is_stored_and_read(client: TestClient, rt: Runtime, patient: int) -> None:
    """Past 3 texts a minute, "I can't breathe" is still stored (marked a flood), read and escalated, with an
    empty answer; past the reading budget (2 an hour) texts are stored unread for staff, none dropped."""
    for i in range(4):
        assert _post_sms(client, rt, "ok thanks", f"SMf{i}").status_code == 200  # 3 within the limit, 1 flood read
    r = _post_sms(client, rt, "I can't breathe", "SMf-breathe")  # the second flood text: within the budget
    assert r.status_code == 200 and r.text.endswith("<Response/>")
    assert [e.level for e in escalations(rt)] == ["emergency"]
    assert _post_sms(client, rt, "still here", "SMf-late").status_code == 200  # past the budget
    with rt.db.session() as s:
        stored = list(s.exec(select(m.Inbound).order_by(m.Inbound.id)))
    assert [(i.meta.get("flood"), i.status) for i in stored] == [
        (None, "processed"),
        (None, "processed"),
        (None, "processed"),
        ("read", "processed"),
        ("read", "processed"),
        ("unread", "flood"),
    ]
    assert stored[-1].patient_id == patient and stored[-1].reason and "unread" in stored[-1].reason
