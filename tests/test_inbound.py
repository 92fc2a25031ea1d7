"""Replies and escalation through the real webhooks, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from factories import triage_body
from fastapi.testclient import TestClient
from sqlmodel import func, select

from followup.clock import FakeClock
from followup.core.sms import segments
from followup.fakeprovider import DEV_TWILIO_AUTH_TOKEN, sign_twilio
from followup.models import AuditLog, Escalation, Inbound, Message, Patient
from followup.runtime import Runtime
from followup.services.dispatch import Dispatcher
from followup.transports.recording import RecordingTransport

PHONE = "+13105550142"
TOKEN = DEV_TWILIO_AUTH_TOKEN  # outbox mode signs inbound SMS with the fake provider's dev token


class Phone:
    """Sends signed inbound SMS to the app as Twilio would."""

    def __init__(self, client: TestClient, rt: Runtime) -> None:
        self.client, self.rt, self.n = client, rt, 0

    def send(self, body: str, sid: str | None = None, sender: str = PHONE, **extra: str) -> Any:
        self.n += 1
        form = {
            "MessageSid": sid or f"SM{self.n:032x}",
            "AccountSid": "AC1",
            "From": sender,
            "To": "+13105550100",
            "Body": body,
            "NumMedia": "0",
            **extra,
        }
        url = self.rt.settings.server.public_url + "/webhooks/twilio/sms"
        sig = sign_twilio(url, form, TOKEN)
        return self.client.post(
            "/webhooks/twilio/sms",
            content=urlencode(form),
            headers={"X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"},
        )


@pytest.fixture
def phone(client: TestClient, rt: Runtime) -> Phone:
    return Phone(client, rt)


@pytest.fixture
def enrolled(client: TestClient, auth: dict[str, str], rt: Runtime) -> int:
    r = client.post("/api/triage", json=triage_body(), headers=auth)
    assert r.status_code == 201, r.text
    Dispatcher(rt).run_once()  # the welcome goes out
    return int(r.json()["patient_id"])


def count(rt: Runtime, model: Any, *where: Any) -> int:
    with rt.db.session() as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


def escalations(rt: Runtime) -> list[Escalation]:
    with rt.db.session() as s:
        return list(s.exec(select(Escalation)).all())


def test_red_flag_reply_opens_escalation_with_evidence(
    phone: Phone, rt: Runtime, enrolled: int, transports: dict[str, RecordingTransport]
) -> None:
    """'my right hand is getting weaker' opens an escalation, books the patient and alerts the on-call list."""
    r = phone.send("my right hand is getting weaker")
    assert r.status_code == 200 and "<Response" in r.text
    (esc,) = escalations(rt)
    assert esc.level == "red_flag" and esc.status == "open" and "weakness" in esc.criteria
    assert any("weaker" in e["text"] for e in esc.evidence)
    Dispatcher(rt).run_once()
    to_patient = [m for m in transports["sms"].sent if m.to == PHONE and "/book/" in m.body]
    assert len(to_patient) == 1
    assert any(m.to == "+13105550199" for m in transports["sms"].sent)
    assert any(m.to == "oncall@clinic.example" for m in transports["email"].sent)


def test_same_message_sid_three_times_changes_nothing(phone: Phone, rt: Runtime, enrolled: int) -> None:
    """A webhook delivered three times stores one reply and raises one escalation and one set of alerts."""
    for _ in range(3):
        assert phone.send("my right hand is getting weaker", sid="SM" + "a" * 32).status_code == 200
    assert count(rt, Inbound) == 1
    assert len(escalations(rt)) == 1
    assert count(rt, Message, Message.kind == "alert") == 2


def test_second_red_flag_adds_to_open_escalation(phone: Phone, rt: Runtime, enrolled: int) -> None:
    """A second red flag while one is open is added to it, not alerted again."""
    phone.send("my leg is weaker")
    phone.send("and now I keep tripping over my foot")
    (esc,) = escalations(rt)
    assert len(esc.inbound_ids) == 2
    assert count(rt, Message, Message.kind == "alert") == 2


def test_emergency_upgrade_alerts_again(phone: Phone, rt: Runtime, enrolled: int) -> None:
    """A routine escalation followed by an emergency is upgraded and alerted again."""
    phone.send("my leg is weaker")
    phone.send("I can't breathe")
    (esc,) = escalations(rt)
    assert esc.level == "emergency" and esc.tier == "emergency"
    assert count(rt, Message, Message.kind == "alert") == 4
    assert count(rt, Message, Message.template == "escalation_emergency") == 1


def test_emergency_ignores_quiet_hours(
    phone: Phone, rt: Runtime, enrolled: int, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """At 23:00 local time an emergency answer goes out at once; a tip due then waits."""
    clock.advance(timedelta(hours=13))  # 23:00 in Los Angeles
    before = len(transports["sms"].sent)
    phone.send("choking when I eat, can't swallow")
    Dispatcher(rt).run_once()
    sent = transports["sms"].sent[before:]
    assert any(m.to == PHONE and "911" in m.body for m in sent)


def test_self_harm_reply_gets_crisis_line(
    phone: Phone, rt: Runtime, enrolled: int, transports: dict[str, RecordingTransport]
) -> None:
    """Self-harm language is an emergency answered with the 988 crisis line."""
    phone.send("I think I'm going to hurt myself")
    Dispatcher(rt).run_once()
    assert any(m.to == PHONE and "988" in m.body for m in transports["sms"].sent)


@pytest.mark.parametrize(
    ("body", "intent", "sms_state", "escalated"),
    [
        ("STOP", "opt_out", "opted_out", False),
        ("stop.", "opt_out", "opted_out", False),
        ("Stop. Thank you", "opt_out", "opted_out", False),
        ("please stop texting me", "opt_out", "opted_out", False),
        ("STOP worrying about the twitches, I'm choking when I eat", "reply", "ok", True),
        ("Help, I can't breathe", "reply", "ok", True),
        ("HELP", "help", "ok", False),
        ("feeling a lot better, thank you", "reply", "ok", False),
    ],
    ids=["stop", "stop-dot", "stop-thanks", "phrase", "stop-collision", "help-collision", "help", "benign"],
)
def test_keywords_and_collisions(
    phone: Phone, rt: Runtime, enrolled: int, body: str, intent: str, sms_state: str, escalated: bool
) -> None:
    """Keywords act only when they are the message; red-flag detection always comes first."""
    phone.send(body)
    with rt.db.session() as s:
        inbound = s.exec(select(Inbound)).one()
        patient = s.get(Patient, enrolled)
    assert inbound.intent == intent
    assert patient is not None and patient.sms_state == sms_state
    assert bool(escalations(rt)) is escalated


def test_stop_then_start(
    phone: Phone, rt: Runtime, enrolled: int, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """STOP opts out (later tips are not sent), START opts back in, and both are in the consent ledger."""
    phone.send("STOP")
    Dispatcher(rt).run_once()
    assert any("START" in m.body for m in transports["sms"].sent if m.to == PHONE)  # the confirmation
    clock.advance(timedelta(days=1, hours=1))
    before = len(transports["sms"].sent)
    Dispatcher(rt).run_once()
    assert [m for m in transports["sms"].sent[before:] if m.to == PHONE] == []
    with rt.db.session() as s:
        cancelled = s.exec(select(Message).where(Message.step_id == "caffeine")).one()
    assert cancelled.status == "cancelled" and "opted out" in (cancelled.reason or "")
    phone.send("START")
    with rt.db.session() as s:
        patient = s.get(Patient, enrolled)
    assert patient is not None and patient.sms_state == "ok"


@pytest.mark.parametrize(("stopped_first", "says"), [(True, "welcome back"), (False, "you are signed up")])
def test_start_says_welcome_back_only_after_an_opt_out(
    phone: Phone,
    rt: Runtime,
    enrolled: int,
    transports: dict[str, RecordingTransport],
    stopped_first: bool,
    says: str,
) -> None:
    """START after STOP is answered "welcome back"; START from a patient who never left says they are signed up."""
    if stopped_first:
        phone.send("STOP")
    phone.send("START")
    Dispatcher(rt).run_once()
    (answer,) = [
        m.body for m in transports["sms"].sent if m.to == PHONE and "to opt out" in m.body and "1 to 3" in m.body
    ]
    assert says in answer and ("welcome back" in answer) is stopped_first


def test_twilio_handled_stop_is_not_confirmed_twice(phone: Phone, rt: Runtime, enrolled: int) -> None:
    """With Twilio's Advanced Opt-Out (OptOutType) we record the opt-out without a second confirmation."""
    phone.send("STOP", OptOutType="STOP")
    assert count(rt, Message, Message.template == "opt_out_confirm") == 0
    with rt.db.session() as s:
        patient = s.get(Patient, enrolled)
    assert patient is not None and patient.sms_state == "opted_out"


def test_unknown_sender_kept_without_personal_data(phone: Phone, rt: Runtime, enrolled: int) -> None:
    """A number that is not enrolled gets a generic answer in English and Spanish (we cannot know which it reads),
    one GSM-7 text of at most two segments; the message is kept for audit."""
    r = phone.send("my arm is weaker", sender="+13105550177")
    assert "Ana" not in r.text and "<Message>" in r.text
    answer = r.text.split("<Message>", 1)[1].split("</Message>", 1)[0]
    assert "This number is not linked" in answer and "Este numero no esta vinculado" in answer
    assert segments(answer) in (("GSM-7", 1), ("GSM-7", 2))
    assert count(rt, Inbound, Inbound.intent == "unknown_sender") == 1
    assert escalations(rt) == []
    assert count(rt, AuditLog, AuditLog.action == "inbound.unknown_sender") == 1


def test_forged_signature_stores_nothing(client: TestClient, rt: Runtime, enrolled: int) -> None:
    """A forged or missing signature is refused with 403 and nothing is stored."""
    form = {"MessageSid": "SM" + "b" * 32, "From": PHONE, "Body": "I can't breathe"}
    for headers in ({"X-Twilio-Signature": "forged"}, {}):
        r = client.post("/webhooks/twilio/sms", data=form, headers=headers)
        assert r.status_code == 403
    assert count(rt, Inbound) == 0


def test_tips_pause_while_escalated_checkins_continue(
    phone: Phone, rt: Runtime, enrolled: int, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """With an escalation open, tips wait while check-ins still go out."""
    phone.send("my leg is weaker")
    Dispatcher(rt).run_once()
    clock.advance(timedelta(days=7, hours=1))
    Dispatcher(rt).run_once()
    with rt.db.session() as s:
        caffeine = s.exec(select(Message).where(Message.step_id == "caffeine")).one()
        checkin = s.exec(select(Message).where(Message.step_id == "checkin_1")).one()
    assert caffeine.status in ("scheduled", "expired") and caffeine.sent_at is None
    assert checkin.status == "sent"


def test_short_yes_answers_last_checkin(phone: Phone, rt: Runtime, enrolled: int, clock: FakeClock) -> None:
    """'YES' after a check-in question is read against that question and escalates."""
    clock.advance(timedelta(days=7, hours=1))
    Dispatcher(rt).run_once()
    phone.send("YES")
    (esc,) = escalations(rt)
    assert esc.level in ("red_flag", "emergency")


def test_bare_yes_without_question_is_not_escalated(phone: Phone, rt: Runtime, enrolled: int) -> None:
    """'YES' when no question was asked raises nothing."""
    phone.send("yes")
    assert escalations(rt) == []


@pytest.mark.parametrize(("weeks_after", "escalates"), [(1, False), (5, True)], ids=["week-1", "week-5"])
def test_persisting_twitching_depends_on_time_since_onset(
    phone: Phone, rt: Runtime, enrolled: int, clock: FakeClock, weeks_after: int, escalates: bool
) -> None:
    """'still twitching' escalates four or more weeks after onset, not in week one (onset 2 weeks at triage)."""
    clock.advance(timedelta(weeks=weeks_after))
    phone.send("still twitching, no change")
    assert bool(escalations(rt)) is escalates


def test_verdict_is_stored_with_the_reply(phone: Phone, rt: Runtime, enrolled: int) -> None:
    """Every reply keeps its verdict: criteria, evidence spans and suppressed mentions with reasons."""
    phone.send("no weakness, but my grandfather had ALS")
    with rt.db.session() as s:
        inbound = s.exec(select(Inbound)).one()
    assert inbound.level == "none"
    assert inbound.verdict["suppressed"] and all("reason" in x for x in inbound.verdict["suppressed"])


@pytest.mark.parametrize(
    "body", ["", "🙂🙂🙂", "x" * 10_000, "<script>alert(1)</script>"], ids=["empty", "emoji", "long", "script"]
)
def test_odd_bodies_are_stored_and_answered(phone: Phone, rt: Runtime, enrolled: int, body: str) -> None:
    """Empty, emoji-only, very long and HTML bodies get a 200 and are kept."""
    assert phone.send(body).status_code == 200
    assert count(rt, Inbound) == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("no more cramps", "learned"),  # the learned layer's review band (p between 0.2 and 0.5), no rule
        ("Bonjour, je ne sais pas si c'est grave mais depuis hier soir j'ai du mal à respirer", "language"),
    ],
)
def test_review_reply_opens_a_routine_review_item_and_tells_the_patient_we_read_it_today(
    phone: Phone, rt: Runtime, enrolled: int, transports: dict[str, RecordingTransport], body: str, reason: str
) -> None:
    """A reply for staff review opens a routine escalation with the learned evidence; the patient gets the routine
    answer with "we will read it today", never the red-flag message nor silence."""
    phone.send(body)
    (esc,) = escalations(rt)
    assert (esc.level, esc.tier, esc.criteria) == ("red_flag", "routine", [])
    assert any("learned layer" in str(e.get("rule")) for e in esc.evidence)
    with rt.db.session() as s:
        (reply,) = s.exec(select(Inbound)).all()
        assert reply.verdict["review"] is True and reply.verdict["review_reason"] == reason
    Dispatcher(rt).run_once()
    to_patient = [m.body for m in transports["sms"].sent if m.to == PHONE]
    assert any("read it today" in b for b in to_patient)
    assert not any("/book/" in b for b in to_patient)
    assert count(rt, Message, Message.kind == "alert") == 2  # the clinic's routine alert, SMS and email
