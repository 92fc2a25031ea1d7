"""Patient privacy: no contact details or message texts in any log, none in SMS texts or provider metadata beyond
what the recipient must read, `followup patient export|erase`, and the retention purge. SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from conftest import ROOT, make_settings
from factories import triage_body
from fastapi.testclient import TestClient
from livestack import INBOUND_PASSWORD, Live, eventually, live_stack
from loguru import logger as loguru_logger
from signed import email_auth, email_fields, post_events, post_sms, post_status, sms_fields, webhook_settings
from sqlmodel import col, func, or_, select

from followup import models as m
from followup.cli.main import cli
from followup.clock import FakeClock
from followup.core.vocab import TERMINAL_STATES, MessageState
from followup.db import upgrade
from followup.jobs import DispatchLoop
from followup.logs import EMAIL_MASK, PHONE_MASK, TOKEN_MASK, RedactingFilter, redact, setup_logging
from followup.runtime import Runtime, build_runtime
from followup.services.dispatch import Dispatcher
from followup.services.privacy import PURGED, purge_old_texts
from followup.settings import Settings
from followup.transports.recording import RecordingTransport
from followup.transports.sendgrid_email import SendgridEmail
from followup.web.app import create_app

NAME = "Zelda Quixote-Marsh"
PHONE = "+13105550142"
EMAIL = "zelda.qm@example.org"
STRANGER = "+13105550177"
ONCALL_SMS, ONCALL_EMAIL = "+13105550199", "oncall@clinic.example"
RED_FLAG_SMS = "my right hand is getting weaker and I keep dropping my coffee cup"
EMAIL_REPLY = "Also I get short of breath climbing the stairs to my flat"
STRANGER_SMS = "hello who is this, my aunt Rosalind Pettigrew-Olsen gave me this number"
NOISY = ("twilio.http_client", "twilio", "apscheduler", "httpx", "urllib3", "python_http_client", "alembic")


# ---- the redaction filter --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("to +13105550142 sent", f"to {PHONE_MASK} sent"),
        ("call +1 310 555 0142 now", f"call {PHONE_MASK} now"),
        ("uk +44 7911 123456.", f"uk {PHONE_MASK}."),
        ("(310) 555-0142 answered", f"{PHONE_MASK} answered"),
        ("num 310.555.0142", f"num {PHONE_MASK}"),
        ("digits 3105550142", f"digits {PHONE_MASK}"),
        ("from Ana <ana.diaz+fu@example.org>", f"from Ana <{EMAIL_MASK}>"),
        ("url https://sendgrid:pw@host.example/x", f"url https://sendgrid:{EMAIL_MASK}/x"),
        ("Bearer fu_abcdefghijklmnopqrstuvwxyz0123", f"Bearer {TOKEN_MASK}"),
        ("2026-11-25 18:00:00,123 INFO dispatch: claimed 200 sent 199", None),
        ("inbound 12345: intent reply level red_flag", None),
        ("provider id SM0123456789abcdef0123456789abcdef", None),
        ("client 192.168.100.200 uuid 550e8400-e29b-41d4-a716-446655440000 v1.2.3", None),
        ("", None),
    ],
)
def test_redact_masks_contacts_and_keeps_the_rest(line: str, expected: str | None) -> None:
    """Numbers in E.164 and national formats, addresses and API tokens are masked; times, ids and counts stay."""
    assert redact(line) == (line if expected is None else expected)


def test_filter_masks_arguments_exceptions_and_stacks() -> None:
    """The filter rewrites the formatted message, the exception text and the stack, and never drops a record."""
    try:
        raise ValueError(f"no patient with email {EMAIL}")
    except ValueError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "sms to %s failed", (PHONE,), sys.exc_info())
    record.stack_info = f"called for {PHONE}"
    assert RedactingFilter().filter(record) is True
    text = logging.Formatter().format(record)
    assert PHONE not in text and EMAIL not in text and PHONE_MASK in text and EMAIL_MASK in text


@pytest.fixture
def production_logging() -> Iterator[None]:
    """Logging as `followup -v serve` sets it up; afterwards the process's logging as it was."""
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in NOISY}
    root_level = root.level
    setup_logging(verbose=True)
    yield
    for handler in root.handlers:
        for f in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(f)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    root.setLevel(root_level)
    loguru_logger.remove()
    loguru_logger.add(sys.stderr)


def test_migrations_keep_the_services_logging(production_logging: None, tmp_path: Path) -> None:
    """Applying migrations at start (as `serve` does) leaves the level and the redaction on every handler."""
    root = logging.getLogger()
    level = root.level
    upgrade(f"sqlite:///{tmp_path / 'x.db'}")
    assert root.level == level
    assert root.handlers and all(any(isinstance(f, RedactingFilter) for f in h.filters) for h in root.handlers)


# ---- end to end: every log line of a whole flow ----------------------------------------------------------------


class RawCapture(logging.Handler):
    """Formats each record when it is emitted, before any other handler's filter can rewrite it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured(production_logging: None, caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[str]]]:
    """Every log line so far: raw records on the root logger at DEBUG, pytest's caplog, a loguru sink at TRACE."""
    caplog.set_level(logging.DEBUG)
    raw = RawCapture()
    root = logging.getLogger()
    root.handlers.insert(0, raw)
    from_loguru: list[str] = []
    sink = loguru_logger.add(lambda message: from_loguru.append(str(message)), level=0)
    yield lambda: [*raw.lines, *caplog.text.splitlines(), *from_loguru]
    loguru_logger.remove(sink)
    root.removeHandler(raw)


def test_whole_flow_logs_no_contact_details_names_or_texts(db_url: str, captured: Callable[[], list[str]]) -> None:
    """Triage, welcome, an unknown number, a red-flag SMS, an email reply, escalation, alerts and delivery callbacks
    through the real SDKs and webhooks: no log line holds a number, an address, a name, a reply or a message text,
    and SMS texts and provider metadata carry no names or diagnoses."""
    with live_stack(db_url) as live:
        live.triage(name=NAME, phone="(310) 555-0142", email=EMAIL)
        eventually(lambda: live.sent_to(PHONE), what="the welcome SMS")
        live.sms_from_patient(STRANGER, STRANGER_SMS)
        live.sms_from_patient(PHONE, RED_FLAG_SMS)
        eventually(lambda: live.sent_to(ONCALL_SMS) and live.sent_to(ONCALL_EMAIL), what="the clinic's alerts")
        auth = base64.b64encode(f"sendgrid:{INBOUND_PASSWORD}".encode()).decode()
        reply = httpx.post(
            f"{live.base}/webhooks/sendgrid/inbound",
            headers={"Authorization": f"Basic {auth}"},
            data=email_fields(f"Zelda <{EMAIL}>", EMAIL_REPLY, "<privacy-1@example.org>"),
            timeout=60,  # a wait for a loaded machine (the detector may still be loading), not a timing claim
        )
        assert reply.status_code == 200, reply.text
        eventually(lambda: _events(live) >= {"twilio", "sendgrid"}, what="delivery callbacks from both providers")
        live.fake.wait_idle()
        sent = live.fake.messages()
        labels = [c.clinician_label for c in live.rt.detector.criteria.values()]
        base = live.base
    texts = [s["body"] if s["channel"] == "sms" else s["text"] for s in sent]
    secrets = [live.token, "fa4ef00ddeadbeef"]
    forbidden = [
        PHONE,
        "3105550142",
        "555-0142",
        STRANGER,
        "5550177",
        ONCALL_SMS,
        "5550199",
        EMAIL,
        ONCALL_EMAIL,
        "Zelda",
        "Quixote",
        "Rosalind",
        RED_FLAG_SMS,
        "dropping my coffee",
        EMAIL_REPLY,
        "climbing the stairs",
        *secrets,
        *(line for t in texts for line in t.splitlines() if len(line) >= 25),
    ]
    lines = captured()
    assert any("inbound sms" in line for line in lines), "the flow's own log lines are missing: capture broken"
    assert [(word, line) for line in lines for word in forbidden if word in line] == []
    assert [line for line in lines if redact(line) != line] == []  # the safety net had nothing to catch

    callback = re.compile(rf"^{re.escape(base)}/webhooks/twilio/status\?mid=\d+$")
    for s in sent:
        if s["channel"] == "sms":
            assert s["status_callback"] and callback.match(s["status_callback"]), s["status_callback"]
            assert "Quixote" not in s["body"] and not any(label in s["body"] for label in labels)
            if s["to"] == ONCALL_SMS:
                assert "Zelda" not in s["body"] and "weaker" not in s["body"] and PHONE not in s["body"]
        else:
            args = s["custom_args"]
            assert set(args) == {"followup_message_id"} and args["followup_message_id"].isdigit()
            assert not any(w in s["subject"] for w in ("Zelda", "Quixote", *labels))


def _events(live: Live) -> set[str]:
    with live.rt.db.session() as s:
        return set(s.exec(select(m.DeliveryEvent.provider)).all())


# ---- what goes to SendGrid, for every kind of email -------------------------------------------------------------


def test_sendgrid_payloads_carry_only_opaque_ids(
    rt: Runtime, client: TestClient, auth: dict[str, str], transports: dict[str, RecordingTransport]
) -> None:
    """Every email the dispatcher hands over becomes a SendGrid payload with no categories and custom args that
    are our message id alone: never a name, an address, a criterion, a kind or a template."""
    client.post("/api/triage", json=triage_body(name=NAME, email=EMAIL, channel="email"), headers=auth)
    client.post(
        "/api/triage",
        json=triage_body(name="Ivo Brandt", phone="+13105550143", email="ivo@example.org", answers={"weakness": True}),
        headers=auth,
    )
    _drain(rt)
    emails = transports["email"].sent
    assert {o.to for o in emails} >= {EMAIL, ONCALL_EMAIL}
    transport = SendgridEmail("SG.test", "followup@clinic.example")
    for out in emails:
        payload = transport.build(out).get()
        assert "categories" not in payload
        assert set(payload["custom_args"]) == {"followup_message_id"}
        dumped = json.dumps(payload["custom_args"])
        assert not any(w in dumped for w in ("Zelda", "Ivo", "@", "weak", out.to))


def _drain(rt: Runtime) -> None:
    d = Dispatcher(rt, owner="privacy-test")
    try:
        d.run_once()
    finally:
        d.close()


# ---- export and erase -------------------------------------------------------------------------------------------


@pytest.fixture
def web_rt(db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]) -> Iterator[Runtime]:
    runtime = build_runtime(webhook_settings(db_url), clock=clock, transports=dict(transports))
    yield runtime
    runtime.db.dispose()


@pytest.fixture
def populated(web_rt: Runtime) -> Iterator[tuple[int, int]]:
    """Two patients. The first texted before enrolling, then had a red flag by SMS, an email reply, delivery
    callbacks and a booked visit; the second is an ordinary enrollment. Returns both ids."""
    from followup.services.tokens import create_token

    auth = {"Authorization": f"Bearer {create_token(web_rt, 'privacy')[1]}"}
    settings = web_rt.settings
    with TestClient(create_app(runtime=web_rt, background=False)) as c:
        assert post_sms(c, settings, sms_fields(PHONE, "is this the clinic?", "SM" + "1" * 32)).status_code == 200
        first = c.post("/api/triage", json=triage_body(name=NAME, email=EMAIL), headers=auth).json()["patient_id"]
        other = c.post(
            "/api/triage",
            json=triage_body(name="Ivo Brandt", phone="+13105550143", email="ivo@example.org"),
            headers=auth,
        ).json()["patient_id"]
        _drain(web_rt)
        assert post_sms(c, settings, sms_fields(PHONE, RED_FLAG_SMS, "SM" + "2" * 32)).status_code == 200
        assert (
            c.post(
                "/webhooks/sendgrid/inbound",
                data=email_fields(EMAIL, EMAIL_REPLY, "<p-2@example.org>"),
                headers=email_auth(),
            ).status_code
            == 200
        )
        _drain(web_rt)
        with web_rt.db.session() as s:
            msgs = list(s.exec(select(m.Message).where(m.Message.status == MessageState.SENT)))
        sms = next(x for x in msgs if x.patient_id == first and x.channel == "sms")
        alert = next(x for x in msgs if x.kind == "alert" and x.channel == "email")
        assert (
            post_status(
                c,
                settings,
                sms.id or 0,
                {"MessageSid": sms.provider_id or "", "MessageStatus": "delivered", "AccountSid": "AC1"},
            ).status_code
            == 204
        )
        ev = {
            "event": "delivered",
            "sg_event_id": "ev-1",
            "followup_message_id": str(alert.id),
            "timestamp": int(time.time()),
        }
        assert post_events(c, [ev]).status_code == 200
    _book(web_rt, first)
    yield first, other


def _book(rt: Runtime, patient_id: int) -> None:
    now = rt.clock.now()
    with rt.db.session() as s:
        esc = s.exec(select(m.Escalation).where(m.Escalation.patient_id == patient_id)).one()
        assert esc.id is not None
        s.add(
            m.Appointment(
                escalation_id=esc.id,
                patient_id=patient_id,
                starts_at=now + timedelta(days=1),
                ends_at=now + timedelta(days=1, minutes=30),
                booked_by=f"patient:{patient_id}",
                created_at=now,
                updated_at=now,
            )
        )
        s.add(m.EscalationAlert(escalation_id=esc.id, round=1, tier_index=0, tier=esc.tier, recipients=2, at=now))
        s.commit()


def run_cli(rt: Runtime, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    """`followup <args>` against the test database, as an operator runs it from the repository."""
    monkeypatch.chdir(ROOT)
    env = {
        "FOLLOWUP_DATABASE__URL": rt.settings.database.url,
        "FOLLOWUP_SECURITY__SECRET_KEY": rt.settings.security.secret_key,
    }
    return CliRunner().invoke(cli, ["--settings", str(ROOT / "settings.toml"), *args], env=env, obj={})


def owned_rows(rt: Runtime, pid: int, senders: tuple[str, ...] = ()) -> dict[str, int]:
    """Rows that still point at patient `pid` (or come from `senders`), per table."""
    with rt.db.session() as s:

        def n(model: Any, *where: Any) -> int:
            return int(s.exec(select(func.count()).select_from(model).where(*where)).one())

        return {
            "patient": n(m.Patient, m.Patient.id == pid),
            "triage": n(m.Triage, m.Triage.patient_id == pid),
            "consent": n(m.Consent, m.Consent.patient_id == pid),
            "message": n(m.Message, m.Message.patient_id == pid),
            "alerts": n(m.Message, m.Message.kind == "alert"),
            "inbound": n(m.Inbound, or_(col(m.Inbound.patient_id) == pid, col(m.Inbound.sender).in_(senders))),
            "escalation": n(m.Escalation, m.Escalation.patient_id == pid),
            "appointment": n(m.Appointment, m.Appointment.patient_id == pid),
            "escalationalert": n(m.EscalationAlert),
        }


def test_export_prints_everything_held_on_the_patient(
    web_rt: Runtime, populated: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`followup patient export ID` prints one JSON document with the record, triage, consents, messages both
    ways (also from before enrollment), escalation evidence, the booked visit, delivery events and audit trail."""
    pid, other = populated
    r = run_cli(web_rt, monkeypatch, "patient", "export", str(pid))
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["patient"]["name"] == NAME and data["patient"]["phone"] == PHONE and data["patient"]["email"] == EMAIL
    bodies = [i["body"] for i in data["inbound"]]
    assert "is this the clinic?" in bodies and RED_FLAG_SMS in bodies and any("short of breath" in b for b in bodies)
    assert data["triages"] and data["consents"] and data["appointments"] and data["escalation_alerts"]
    assert any("weaker" in e["text"] for esc in data["escalations"] for e in esc["evidence"])
    assert any(x["kind"] == "alert" for x in data["messages"]) and all(
        x["body"] for x in data["messages"] if x["status"] == MessageState.SENT
    )
    assert {e["provider"] for e in data["delivery_events"]} == {"twilio", "sendgrid"}
    assert {"triage.submitted", "escalation.opened"} <= {a["action"] for a in data["audit"]}
    assert "Ivo" not in r.stdout and f'"patient_id": {other},' not in r.stdout


def test_erase_removes_the_patient_keeps_others_and_is_audited(
    web_rt: Runtime, populated: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`followup patient erase ID --yes` deletes the patient and every row about them (alerts quoting them,
    replies from before enrollment, visits, re-alerts) in one go, records who did it, and leaves others alone."""
    pid, other = populated
    before_other = owned_rows(web_rt, other)
    assert owned_rows(web_rt, pid, (PHONE, EMAIL))["inbound"] == 3
    r = run_cli(web_rt, monkeypatch, "patient", "erase", str(pid), "--yes", "--by", "dpo")
    assert r.exit_code == 0, r.output
    assert owned_rows(web_rt, pid, (PHONE, EMAIL)) == dict.fromkeys(before_other, 0)
    assert owned_rows(web_rt, other) == {**before_other, "alerts": 0, "escalationalert": 0}
    with web_rt.db.session() as s:
        (erased,) = s.exec(select(m.AuditLog).where(m.AuditLog.action == "patient.erased")).all()
        dump = json.dumps([a.model_dump(mode="json") for a in s.exec(select(m.AuditLog))])
    assert erased.actor == "cli:dpo" and erased.subject == f"patient:{pid}" and erased.detail["deleted"]["messages"]
    assert not any(w in dump for w in (PHONE, EMAIL, "Zelda", "weaker"))
    again = run_cli(web_rt, monkeypatch, "patient", "export", str(pid))
    assert again.exit_code == 1 and f"no patient {pid}" in again.output


def test_erase_asks_before_it_deletes(
    web_rt: Runtime, populated: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --yes, answering no to the prompt deletes nothing."""
    pid, _ = populated
    before = owned_rows(web_rt, pid)
    monkeypatch.chdir(ROOT)
    env = {
        "FOLLOWUP_DATABASE__URL": web_rt.settings.database.url,
        "FOLLOWUP_SECURITY__SECRET_KEY": web_rt.settings.security.secret_key,
    }
    r = CliRunner().invoke(cli, ["patient", "erase", str(pid)], input="n\n", env=env, obj={})
    assert r.exit_code == 1 and "Aborted" in r.output
    assert owned_rows(web_rt, pid) == before


# ---- retention --------------------------------------------------------------------------------------------------


def test_retention_purges_old_texts_only(web_rt: Runtime, populated: tuple[int, int], clock: FakeClock) -> None:
    """After `retention_days`, finished messages and settled replies lose their texts (and the words quoted in
    verdicts and alert variables) but keep what happened; newer ones keep theirs; a second run changes nothing."""
    pid, _ = populated
    clock.advance(timedelta(days=web_rt.settings.privacy.retention_days - 1))
    with web_rt.db.session() as s:
        s.add(
            m.Inbound(
                provider_key="twilio:SMrecent",
                channel="sms",
                sender=PHONE,
                patient_id=pid,
                body="recent reply",
                status="processed",
                received_at=clock.now(),
            )
        )
        s.commit()
    clock.advance(timedelta(days=2))
    done = purge_old_texts(web_rt)
    assert done["messages"] > 0 and done["inbound"] == 3
    assert purge_old_texts(web_rt) == {"messages": 0, "inbound": 0}
    with web_rt.db.session() as s:
        msgs = list(s.exec(select(m.Message).where(col(m.Message.status).in_(TERMINAL_STATES))))
        replies = {i.provider_key: i for i in s.exec(select(m.Inbound))}
        purges = s.exec(select(m.AuditLog).where(m.AuditLog.action == "retention.purged")).all()
    assert msgs and all(x.body == PURGED and x.subject is None and x.context == {} for x in msgs)
    assert all(x.status in TERMINAL_STATES and x.provider_id for x in msgs if x.status == MessageState.SENT)
    assert replies["twilio:SMrecent"].body == "recent reply"
    red = replies["twilio:" + "SM" + "2" * 32]
    assert red.body == PURGED and red.level == "red_flag" and red.verdict["criteria"]
    assert "weaker" not in json.dumps(red.verdict) and "coffee" not in json.dumps(red.verdict)
    assert len(purges) == 1


def test_retention_zero_keeps_texts_and_schedules_nothing(
    db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """`retention_days = 0` keeps texts for ever and adds no job; otherwise the scheduler runs the purge daily."""
    for days, scheduled in ((0, False), (30, True)):
        settings: Settings = make_settings(db_url, privacy={"retention_days": days})
        rt = build_runtime(settings, clock=clock, transports=dict(transports))
        loop = DispatchLoop(rt)
        try:
            job = loop.scheduler.get_job("retention")
            assert (job is not None) is scheduled
            if job is not None:
                assert job.trigger.interval == timedelta(hours=24)
            if days == 0:
                assert purge_old_texts(rt, clock.now() + timedelta(days=10_000)) == {"messages": 0, "inbound": 0}
        finally:
            loop.dispatcher.close()
            rt.db.dispose()
