"""Acknowledge fast, act in the worker: the SMS and email webhooks store a reply and answer; a reply worker claims it
and acts, exactly once, red flags before keywords. The status webhooks store events; a worker applies them in
batches, never backwards. Runs on SQLite and PostgreSQL (the `db_url` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from factories import seed_due_messages, triage_body
from fastapi.testclient import TestClient
from signed import email_auth, email_fields, post_events, post_sms, post_status, sms_fields, webhook_settings
from sqlalchemy import event, update
from sqlmodel import col, func, select

from followup.clock import FakeClock
from followup.models import DeliveryEvent, Escalation, Inbound, Message
from followup.runtime import Runtime, build_runtime
from followup.services import delivery, inbound
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


# Delivery events: stored by the webhooks, applied in batches by a worker (services/delivery.apply_pending).


def sent_messages(rt: Runtime, n: int) -> list[int]:
    """`n` patients with one message each, already sent with provider ids SM0..SM<n-1>; their message ids."""
    seed_due_messages(rt.settings.database.url, n)
    with rt.db.session() as s:
        ids = [int(i or 0) for i in s.exec(select(Message.id).order_by(Message.id)).all()]
        for k, mid in enumerate(ids):
            s.exec(update(Message).where(col(Message.id) == mid).values(status="sent", provider_id=f"SM{k}"))
        s.commit()
    return ids


def message_states(rt: Runtime) -> list[str]:
    with rt.db.session() as s:
        return [str(x) for x in s.exec(select(Message.status).order_by(Message.id)).all()]


def outcomes(rt: Runtime) -> list[str | None]:
    with rt.db.session() as s:
        return list(s.exec(select(DeliveryEvent.outcome).order_by(DeliveryEvent.id)).all())


def callback(client: TestClient, rt: Runtime, mid: int | None, sid: str, state: str, **extra: str) -> None:
    fields = {"MessageSid": sid, "MessageStatus": state, "AccountSid": "AC1", **extra}
    r = post_status(client, rt.settings, mid or 0, fields)
    assert r.status_code == 204, r.text


def test_status_callbacks_are_stored_then_applied_in_one_batch_never_backwards(client: TestClient, rt: Runtime) -> None:
    """Out-of-order callbacks (delivered, then a late sent and undelivered) are only stored by the webhook; one
    worker pass applies them: the message ends delivered, the late ones are recorded as kept."""
    [mid] = sent_messages(rt, 1)
    for state in ("delivered", "sent", "undelivered"):
        callback(client, rt, mid, "SM0", state, **({"ErrorCode": "30007"} if state == "undelivered" else {}))
    assert message_states(rt) == ["sent"] and outcomes(rt) == [None, None, None]
    assert delivery.apply_pending(rt) == 3
    assert message_states(rt) == ["delivered"]
    assert outcomes(rt) == ["applied", "kept (no regression)", "kept (no regression)"]
    assert delivery.apply_pending(rt) == 0


def test_duplicate_callbacks_are_applied_once(client: TestClient, rt: Runtime) -> None:
    """The same callback posted three times is stored once and applied once."""
    [mid] = sent_messages(rt, 1)
    for _ in range(3):
        callback(client, rt, mid, "SM0", "delivered")
    assert delivery.apply_pending(rt) == 1 and outcomes(rt) == ["applied"]


def test_callback_for_a_message_not_yet_known_is_kept_and_applied_later(
    client: TestClient, rt: Runtime, clock: FakeClock
) -> None:
    """A callback that beats the commit of the send (no message with its id yet) stays pending through passes and
    is applied once the send is recorded; one still unknown after a day is kept as 'unknown message'."""
    [mid] = sent_messages(rt, 1)
    with rt.db.session() as s:  # the send's commit has not happened yet: the provider id is not recorded
        s.exec(update(Message).values(status="sending", provider_id=None))
        s.commit()
    callback(client, rt, None, "SMlate", "delivered")
    callback(client, rt, None, "SMnever", "delivered")
    assert delivery.apply_pending(rt) == 2 and outcomes(rt) == [None, None]
    with rt.db.session() as s:  # the send commits
        s.exec(update(Message).where(col(Message.id) == mid).values(status="sent", provider_id="SMlate"))
        s.commit()
    assert delivery.apply_pending(rt) == 2
    assert outcomes(rt) == ["applied", None] and message_states(rt) == ["delivered"]
    clock.advance(delivery.GIVE_UP_AFTER + timedelta(minutes=1))
    assert delivery.apply_pending(rt) == 1 and outcomes(rt) == ["applied", "unknown message"]


def test_a_batch_moves_its_messages_with_one_update_per_state(client: TestClient, rt: Runtime) -> None:
    """Fifty `delivered` callbacks for fifty messages are applied by one pass with a single UPDATE of the message
    table (plus one of the events)."""
    ids = sent_messages(rt, 50)
    for k, mid in enumerate(ids):
        callback(client, rt, mid, f"SM{k}", "delivered")
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(rt.db.engine, "before_cursor_execute", seen)
    try:
        assert delivery.apply_pending(rt) == 50
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", seen)
    assert set(message_states(rt)) == {"delivered"}
    assert sum(1 for st in statements if st.lstrip().upper().startswith("UPDATE MESSAGE")) == 1


def test_sendgrid_events_are_stored_then_applied(client: TestClient, rt: Runtime) -> None:
    """A signed SendGrid batch is stored in one statement and answered; a worker pass applies it (a bounce fails
    the message)."""
    [mid] = sent_messages(rt, 1)
    batch = [
        {"event": "processed", "sg_event_id": "e1", "followup_message_id": str(mid)},
        {"event": "bounce", "sg_event_id": "e2", "followup_message_id": str(mid)},
        {"event": "delivered", "sg_event_id": "e3", "followup_message_id": str(mid)},
    ]
    r = post_events(client, batch)
    assert r.json() == {"stored": 3, "duplicate": 0, "ignored": 0}
    assert message_states(rt) == ["sent"]
    assert delivery.apply_pending(rt) == 3
    assert message_states(rt) == ["failed"] and outcomes(rt) == [
        "kept (no regression)",
        "applied",
        "kept (no regression)",
    ]
