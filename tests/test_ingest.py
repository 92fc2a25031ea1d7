"""Acknowledge fast, act in the worker: the SMS and email webhooks store a reply and answer; a reply worker claims it
and acts, exactly once, red flags before keywords. Runs on SQLite and PostgreSQL (the `db_url` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from factories import triage_body
from fastapi.testclient import TestClient
from signed import email_auth, email_fields, post_sms, sms_fields, webhook_settings
from sqlmodel import func, select

from followup.clock import FakeClock
from followup.models import Escalation, Inbound, Message
from followup.runtime import Runtime, build_runtime
from followup.services import inbound
from followup.services.dispatch import Dispatcher
from followup.services.tokens import create_token
from followup.transports.recording import RecordingTransport
from followup.web.app import create_app

PHONE = "+13105550142"
EMAIL = "ana@example.org"


@pytest.fixture
def rt(db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]) -> Iterator[Runtime]:
    runtime = build_runtime(webhook_settings(db_url), clock=clock, transports=dict(transports))
    yield runtime
    runtime.db.dispose()


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    """The web app as `serve --no-dispatch` runs it: it stores and answers; acting is left to reply workers."""
    with TestClient(create_app(runtime=rt, background=False, act_on_replies=False), client=("127.0.0.1", 5)) as c:
        yield c


@pytest.fixture
def patient(client: TestClient, auth: dict[str, str], rt: Runtime) -> int:
    r = client.post("/api/triage", json=triage_body(phone=PHONE, email=EMAIL), headers=auth)
    assert r.status_code == 201, r.text
    Dispatcher(rt).run_once()  # the welcome goes out
    return int(r.json()["patient_id"])


def rows(rt: Runtime, model: Any, *where: Any) -> list[Any]:
    with rt.db.session() as s:
        return list(s.exec(select(model).where(*where)).all())


def count(rt: Runtime, model: Any, *where: Any) -> int:
    with rt.db.session() as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


def test_sms_webhook_answers_before_the_reply_is_read(client: TestClient, rt: Runtime, patient: int) -> None:
    """A red-flag SMS is answered with empty TwiML and stored `received`: nothing is read or escalated in the
    request; one worker pass escalates it once, and a second pass finds nothing to do."""
    r = post_sms(client, rt.settings, sms_fields(PHONE, "STOP, my right hand is getting weaker", "SM1"))
    assert r.status_code == 200 and r.text.strip().endswith("<Response/>"), r.text
    [row] = rows(rt, Inbound)
    assert (row.status, row.level, count(rt, Escalation)) == ("received", None, 0)
    assert inbound.work(rt) == 1
    [row] = rows(rt, Inbound)
    assert (row.status, row.level, row.intent) == ("processed", "red_flag", "reply")  # red flag before STOP
    assert count(rt, Escalation) == 1
    assert inbound.work(rt) == 0 and count(rt, Escalation) == 1


def test_email_webhook_answers_before_the_reply_is_read(client: TestClient, rt: Runtime, patient: int) -> None:
    """Inbound Parse is answered with the stored id at once; a worker pass acts on the email reply."""
    fields = email_fields(EMAIL, "HELP", "<m1@example.org>")
    fields["SPF"] = "pass"
    r = client.post("/webhooks/sendgrid/inbound", data=fields, headers=email_auth())
    assert r.status_code == 200 and r.json()["duplicate"] is False, r.text
    assert rows(rt, Inbound)[0].status == "received"
    assert inbound.work(rt) == 1
    assert rows(rt, Inbound)[0].status in ("processed", "ignored")


def test_keyword_answer_goes_through_the_dispatcher(
    client: TestClient, rt: Runtime, patient: int, transports: dict[str, RecordingTransport]
) -> None:
    """A STOP acted on by a worker queues its confirmation as a tracked message; the dispatcher sends it once."""
    before = len(transports["sms"].sent)
    post_sms(client, rt.settings, sms_fields(PHONE, "STOP", "SM2"))
    assert inbound.work(rt) == 1
    [confirm] = rows(rt, Message, Message.template == "opt_out_confirm")
    Dispatcher(rt).run_once()
    Dispatcher(rt).run_once()
    assert len(transports["sms"].sent) == before + 1
    assert rows(rt, Message, Message.id == confirm.id)[0].status == "sent"


def test_a_claimed_reply_whose_worker_died_is_acted_on_once_after_the_claim_expires(
    client: TestClient, rt: Runtime, clock: FakeClock, patient: int
) -> None:
    """A worker that claimed a reply and died before acting leaves it `received`: other workers skip it while the
    claim holds, take it once it expires, and act on it exactly once."""
    post_sms(client, rt.settings, sms_fields(PHONE, "my right hand is getting weaker", "SM3"))
    assert len(inbound.claim(rt)) == 1  # the worker that then dies
    assert inbound.work(rt) == 0 and rows(rt, Inbound)[0].status == "received"
    clock.advance(timedelta(seconds=rt.settings.dispatch.reply_claim_seconds + 1))
    assert inbound.work(rt) == 1 and inbound.work(rt) == 0
    assert rows(rt, Inbound)[0].status == "processed" and count(rt, Escalation) == 1


def test_two_workers_claim_disjoint_replies(client: TestClient, rt: Runtime, patient: int) -> None:
    """Two workers claiming at once take disjoint sets of the stored replies, together all of them."""
    for i in range(6):
        post_sms(client, rt.settings, sms_fields(PHONE, f"same as before {i}", f"SM-c{i}"))
    first, second = inbound.claim(rt, 4), inbound.claim(rt, 4)
    assert len(first) == 4 and len(second) == 2 and not set(first) & set(second)


def test_a_reply_that_fails_stays_pending_and_is_retried(
    client: TestClient, rt: Runtime, clock: FakeClock, patient: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acting fails (the detector raises): the reply stays `received`, and the next pass after the claim expires
    acts on it."""
    post_sms(client, rt.settings, sms_fields(PHONE, "my right hand is getting weaker", "SM4"))

    def broken(*_: Any) -> Any:
        raise RuntimeError("detector down")

    monkeypatch.setattr(rt.detector, "assess", broken)
    assert inbound.work(rt) == 1
    assert rows(rt, Inbound)[0].status == "received" and count(rt, Escalation) == 0
    monkeypatch.undo()
    clock.advance(timedelta(seconds=rt.settings.dispatch.reply_claim_seconds + 1))
    assert inbound.work(rt) == 1
    assert rows(rt, Inbound)[0].status == "processed" and count(rt, Escalation) == 1


def test_unknown_number_gets_who_we_are_at_most_twice_a_day(client: TestClient, rt: Runtime) -> None:
    """A stranger's text is answered in the TwiML (no worker needed to know it is a stranger); the answer is not
    repeated after the second text of the day, whether or not a worker has acted on the earlier ones."""
    answers = [
        post_sms(client, rt.settings, sms_fields("+13105550777", "who is this", f"SM-u{i}")).text for i in (1, 2)
    ]
    assert "<Message>" in answers[0] and "<Message>" not in answers[1]
    inbound.work(rt)
    assert {r.intent for r in rows(rt, Inbound)} == {"unknown_sender"}


def test_default_app_acts_after_answering(
    db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """Without a worker thread or `act_on_replies=False`, the app acts on the reply itself once its answer is sent
    (the embedded default the tests and the phone demo rely on)."""
    runtime = build_runtime(webhook_settings(db_url), clock=clock, transports=dict(transports))
    try:
        with TestClient(create_app(runtime=runtime, background=False), client=("127.0.0.1", 5)) as c:
            headers = {"Authorization": f"Bearer {create_token(runtime, 'tests')[1]}"}
            assert c.post("/api/triage", json=triage_body(phone=PHONE), headers=headers).status_code == 201
            post_sms(c, runtime.settings, sms_fields(PHONE, "my right hand is getting weaker", "SM5"))
        assert rows(runtime, Inbound)[0].status == "processed" and count(runtime, Escalation) == 1
    finally:
        runtime.db.dispose()
