"""The dispatcher on a real database with the FakeClock and RecordingTransports: quiet hours, time-to-live, retries,
permanent provider refusals, opt-out at send time, and no second send of a claimed message (concurrent dispatchers,
crash recovery). Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import T0, make_settings
from factories import triage_body
from sqlmodel import select

from followup import models as m
from followup.clock import FakeClock
from followup.core.triage import TriageIn
from followup.core.vocab import MessageKind, MessageState
from followup.runtime import Runtime, build_runtime
from followup.services.dispatch import Dispatcher, PassReport
from followup.services.drafts import Draft
from followup.services.enrollment import submit_triage
from followup.services.queue import queue
from followup.services.reachability import set_channel_state
from followup.settings import send_in_flight_seconds
from followup.transports.base import LookupUnavailable, PermanentSendError, RetryableSendError
from followup.transports.recording import RecordingTransport

LA_DAY2_2100 = datetime(2026, 11, 27, 5, 0, tzinfo=UTC)  # Thu 26 Nov, 21:00 in Los Angeles
LA_DAY3_0900 = datetime(2026, 11, 27, 17, 0, tzinfo=UTC)  # Fri 27 Nov, 09:00 in Los Angeles


@pytest.fixture
def dispatcher(rt: Runtime) -> Iterator[Dispatcher]:
    d = Dispatcher(rt, owner="worker-a")
    yield d
    d.close()


def enroll(rt: Runtime, **over: Any) -> int:
    """Triage a patient through the service (as the API does); returns the patient id."""
    return submit_triage(rt, TriageIn.model_validate(triage_body(**over)), source="api", actor="test").patient_id


def msgs(rt: Runtime, **where: Any) -> list[m.Message]:
    with rt.db.session() as s:
        stmt = select(m.Message).order_by(m.Message.due_at, m.Message.id)
        for key, value in where.items():
            stmt = stmt.where(getattr(m.Message, key) == value)
        return list(s.exec(stmt).all())


def one(rt: Runtime, **where: Any) -> m.Message:
    (found,) = msgs(rt, **where)
    return found


def patient(rt: Runtime, pid: int) -> m.Patient:
    with rt.db.session() as s:
        p = s.get(m.Patient, pid)
        assert p is not None
        return p


def sent_steps(t: RecordingTransport, rt: Runtime) -> list[str | None]:
    ids = [o.message_id for o in t.sent]
    with rt.db.session() as s:
        return [s.get(m.Message, i).step_id for i in ids]  # type: ignore[union-attr]


def test_due_welcome_is_sent_once(
    rt: Runtime, dispatcher: Dispatcher, transports: dict[str, RecordingTransport]
) -> None:
    """A due welcome is rendered, sent and recorded as sent; the next pass sends nothing more."""
    pid = enroll(rt)
    report = dispatcher.run_once()
    assert (report.claimed, report.sent) == (1, 1)
    (out,) = transports["sms"].sent
    assert out.to == "+13105550142" and "Ana" in out.body and "STOP" in out.body
    w = one(rt, step_id="welcome")
    assert (w.status, w.provider_id, w.attempts, w.sent_at, w.segments) == (MessageState.SENT, "RT000001", 1, T0, 2)
    assert w.body == out.body and w.lease_owner is None
    assert dispatcher.run_once().claimed == 0
    assert len(transports["sms"].attempts) == 1 and patient(rt, pid).status == "active"


def test_tip_due_while_down_until_21h_waits_for_9h_next_day(
    rt: Runtime, dispatcher: Dispatcher, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """A tip found due at 21:00 local is deferred to 09:00 the next day, then sent."""
    enroll(rt)
    dispatcher.run_once()  # the welcome
    clock.set(LA_DAY2_2100)  # the caffeine tip was due at 10:15; the worker comes back at 21:00
    report = dispatcher.run_once()
    assert (report.deferred, report.sent) == (1, 0)
    tip = one(rt, step_id="caffeine")
    assert (tip.status, tip.due_at) == (MessageState.SCHEDULED, LA_DAY3_0900)
    assert tip.reason == "outside the patient's sending hours"
    clock.set(LA_DAY3_0900 - timedelta(minutes=1))
    assert dispatcher.run_once().claimed == 0
    clock.set(LA_DAY3_0900)
    assert dispatcher.run_once().sent == 1
    assert sent_steps(transports["sms"], rt) == ["welcome", "caffeine"]


def test_urgent_messages_ignore_quiet_hours(
    rt: Runtime, dispatcher: Dispatcher, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """At 23:00 in the patient's zone a clinic alert goes at once while a planned message waits for morning."""
    clock.set(datetime(2026, 11, 26, 7, 0, tzinfo=UTC))  # 23:00 in Los Angeles (the clinic's zone)
    pid = enroll(rt)  # the welcome is planned for 09:00
    now = clock.now()
    with rt.db.session() as s:
        queue(
            s,
            rt.settings,
            Draft(
                dedupe_key="alert:1",
                channel="sms",
                kind=MessageKind.ALERT,
                template="clinic_alert",
                due_at=now,
                to="+13105550199",
                urgent=True,
                context={
                    "escalation": {
                        "id": 1,
                        "tier": "emergency",
                        "level": "emergency",
                        "criteria_labels": ["Breathing"],
                        "evidence": ["short of breath"],
                    },
                    "escalation_url": "http://x/1",
                },
            ),
            now,
        )
        p = s.get(m.Patient, pid)
        assert p is not None
        queue(
            s,
            rt.settings,
            Draft(
                dedupe_key="esc:1",
                channel="sms",
                kind=MessageKind.ESCALATION,
                template="escalation_emergency",
                due_at=now,
                patient_id=pid,
                urgent=True,
            ),
            now,
        )
        s.commit()
    report = dispatcher.run_once()
    assert report.sent == 2
    assert sorted(o.to for o in transports["sms"].sent) == ["+13105550142", "+13105550199"]
    assert one(rt, step_id="welcome").status == MessageState.SCHEDULED
    assert one(rt, step_id="welcome").due_at == datetime(2026, 11, 26, 17, 0, tzinfo=UTC)


def test_outage_past_ttl_expires_with_a_reason_and_never_sends(
    rt: Runtime, dispatcher: Dispatcher, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """After a three-day outage the welcome (TTL 2 d) and day-1 tip (TTL 24 h) expire with a reason, unsent."""
    enroll(rt)
    clock.advance(timedelta(days=3))  # Sat 28 Nov 10:00 in Los Angeles
    report = dispatcher.run_once()
    assert report.expired == 2
    for step in ("welcome", "caffeine"):
        x = one(rt, step_id=step)
        assert x.status == MessageState.EXPIRED and x.attempts == 0 and x.body is None
        assert "time-to-live" in (x.reason or "") and "late" in (x.reason or "")
    assert "welcome" not in sent_steps(transports["sms"], rt)
    assert "caffeine" not in sent_steps(transports["sms"], rt)
    assert one(rt, step_id="sleep").status == MessageState.SENT  # due 16 h ago, inside its 24 h


@pytest.fixture
def rt3(db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]) -> Iterator[Runtime]:
    """A runtime that gives up after three attempts, with a 60 s backoff base."""
    settings = make_settings(
        db_url, dispatch={"max_attempts": 3, "backoff_base_seconds": 60.0, "per_sender_per_second": 1000.0}
    )
    runtime = build_runtime(settings, clock=clock, transports=dict(transports))
    yield runtime
    runtime.db.dispose()


def test_retry_after_is_honoured_then_sent(
    rt3: Runtime, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """A 429 with Retry-After 300 s reschedules no sooner than that; the next attempt after it is sent."""
    enroll(rt3)
    transports["sms"].fail_next(RetryableSendError("twilio 429 code 20429", code="20429", retry_after=300))
    d = Dispatcher(rt3, owner="a")
    try:
        report = d.run_once()
        assert (report.retried, report.sent) == (1, 0)
        w = one(rt3, step_id="welcome")
        assert w.status == MessageState.SCHEDULED and w.attempts == 1 and w.error_code == "20429"
        assert w.due_at >= T0 + timedelta(seconds=300) and "attempt 1 failed" in (w.reason or "")
        clock.set(w.due_at - timedelta(seconds=1))
        assert d.run_once().claimed == 0
        clock.set(w.due_at)
        assert d.run_once().sent == 1
    finally:
        d.close()
    w = one(rt3, step_id="welcome")
    assert (w.status, w.attempts) == (MessageState.SENT, 2)
    assert len(transports["sms"].attempts) == 2 and len(transports["sms"].sent) == 1


def test_backoff_grows_and_gives_up_after_max_attempts(
    rt3: Runtime, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """5xx without Retry-After backs off exponentially (with jitter) and fails after max_attempts, counted."""
    enroll(rt3)
    transports["sms"].fail_next(*[RetryableSendError("twilio 503", code="20503") for _ in range(3)])
    d = Dispatcher(rt3, owner="a")
    delays = []
    try:
        for _ in range(3):
            now = clock.now()
            d.run_once()
            w = one(rt3, step_id="welcome")
            if w.status != MessageState.SCHEDULED:
                break
            delays.append(w.due_at - now)
            clock.set(w.due_at)
    finally:
        d.close()
    assert timedelta(seconds=30) <= delays[0] <= timedelta(seconds=60)  # base 60: equal jitter in [30, 60]
    assert timedelta(seconds=60) <= delays[1] <= timedelta(seconds=120)
    w = one(rt3, step_id="welcome")
    assert (w.status, w.attempts, w.error_code) == (MessageState.FAILED, 3, "20503")
    assert w.reason is not None and "gave up after 3 attempts" in w.reason
    assert len(transports["sms"].attempts) == 3 and transports["sms"].sent == []


def test_21610_opts_out_records_consent_and_cancels_later_sms(
    rt: Runtime, dispatcher: Dispatcher, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """Twilio 21610 marks SMS opted out, adds an opt-out to the consent ledger, and later SMS are cancelled."""
    pid = enroll(rt)
    transports["sms"].fail_next(PermanentSendError("twilio 400 code 21610", code="21610"))
    assert dispatcher.run_once().failed == 1
    p = patient(rt, pid)
    assert (p.sms_state, p.channel) == ("opted_out", "sms")  # an opt-out is not moved to email
    with rt.db.session() as s:
        ledger = s.exec(select(m.Consent).where(m.Consent.patient_id == pid).order_by(m.Consent.id)).all()
    assert [(c.channel, c.action, c.source) for c in ledger][-1] == ("sms", "opt_out", "provider_21610")
    assert one(rt, step_id="welcome").status == MessageState.FAILED
    clock.set(datetime(2026, 11, 26, 18, 15, tzinfo=UTC))
    assert dispatcher.run_once().cancelled == 1
    tip = one(rt, step_id="caffeine")
    assert (tip.status, tip.reason) == (MessageState.CANCELLED, "sms opted out")
    assert transports["sms"].sent == [] and transports["email"].sent == []


def test_21211_moves_the_patient_to_email(
    rt: Runtime, dispatcher: Dispatcher, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """Twilio 21211 marks the number invalid, moves the patient and scheduled messages to their email, and sends
    the failed welcome (the safety net) again by email."""
    pid = enroll(rt)
    transports["sms"].fail_next(PermanentSendError("twilio 400 code 21211", code="21211"))
    dispatcher.run_once()
    p = patient(rt, pid)
    assert (p.sms_state, p.channel) == ("invalid", "email")
    assert {x.channel for x in msgs(rt, status=MessageState.SCHEDULED)} == {"email"}
    assert not [x for x in msgs(rt) if x.kind == "alert"]
    dispatcher.run_once()
    (welcome,) = transports["email"].sent
    assert welcome.to == "ana@example.org" and welcome.subject
    clock.set(datetime(2026, 11, 26, 18, 15, tzinfo=UTC))
    dispatcher.run_once()
    assert len(transports["email"].sent) == 2 and one(rt, step_id="caffeine").status == MessageState.SENT


@pytest.mark.parametrize("new_number", [True, False], ids=["corrected-number", "same-number"])
def test_retriage_with_a_corrected_number_clears_invalid(
    rt: Runtime, dispatcher: Dispatcher, clock: FakeClock, transports: dict[str, RecordingTransport], new_number: bool
) -> None:
    """After 21211, a re-triage with a corrected number makes SMS usable again; the same number stays invalid."""
    pid = enroll(rt)
    transports["sms"].fail_next(PermanentSendError("twilio 400 code 21211", code="21211"))
    dispatcher.run_once()
    assert patient(rt, pid).sms_state == "invalid"
    phone = "+13105550144" if new_number else "+13105550142"
    assert enroll(rt, phone=phone) == pid
    p = patient(rt, pid)
    assert (p.phone, p.sms_state, p.channel) == (phone, "ok" if new_number else "invalid", "sms")
    clock.set(datetime(2026, 11, 26, 18, 15, tzinfo=UTC))
    dispatcher.run_once()
    tip = one(rt, step_id="caffeine")
    if new_number:
        assert tip.status == MessageState.SENT and [o.to for o in transports["sms"].sent] == ["+13105550144"]
    else:
        assert (tip.status, tip.reason) == (MessageState.CANCELLED, "sms invalid")


def test_21211_without_email_alerts_the_clinic(
    rt: Runtime, dispatcher: Dispatcher, transports: dict[str, RecordingTransport]
) -> None:
    """An invalid number and no email: the clinic's on-call list gets an unreachable alert at once."""
    pid = enroll(rt, email=None)
    transports["sms"].fail_next(PermanentSendError("twilio 400 code 21211", code="21211"))
    dispatcher.run_once()
    assert patient(rt, pid).sms_state == "invalid"
    alerts = [x for x in msgs(rt) if x.kind == "alert"]
    assert sorted((x.channel, x.to, x.template) for x in alerts) == [
        ("email", "oncall@clinic.example", "unreachable_alert"),
        ("sms", "+13105550199", "unreachable_alert"),
    ]
    assert all(x.urgent and x.context["patient_id"] == pid for x in alerts)
    dispatcher.run_once()
    assert [o.to for o in transports["sms"].sent] == ["+13105550199"]
    assert [o.to for o in transports["email"].sent] == ["oncall@clinic.example"]
    assert str(pid) in transports["email"].sent[0].body


def test_opt_out_after_scheduling_is_honoured_at_send_time(
    rt: Runtime, dispatcher: Dispatcher, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """A patient who opts out after enrollment gets nothing more: the due message is cancelled with a reason."""
    pid = enroll(rt)
    dispatcher.run_once()
    with rt.db.session() as s:
        p = s.get(m.Patient, pid)
        assert p is not None
        set_channel_state(rt, s, p, "sms", "opted_out", "sms_keyword", clock.now())
        s.commit()
    clock.set(datetime(2026, 11, 26, 18, 15, tzinfo=UTC))
    report = dispatcher.run_once()
    assert (report.cancelled, report.sent) == (1, 0)
    tip = one(rt, step_id="caffeine")
    assert (tip.status, tip.reason, tip.attempts) == (MessageState.CANCELLED, "sms opted out", 0)
    assert sent_steps(transports["sms"], rt) == ["welcome"]


def test_paused_patient_is_held_and_unenrolled_is_cancelled(
    rt: Runtime, dispatcher: Dispatcher, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """A paused patient's due tip waits an hour at a time; an unenrolled patient's is cancelled."""
    from followup.services.patients import change_status

    pid = enroll(rt)
    dispatcher.run_once()
    change_status(rt, pid, "pause", "token:1")
    due = datetime(2026, 11, 26, 18, 15, tzinfo=UTC)
    clock.set(due)
    assert dispatcher.run_once().deferred == 1
    tip = one(rt, step_id="caffeine")
    assert (tip.status, tip.due_at, tip.reason) == (MessageState.SCHEDULED, due + timedelta(hours=1), "patient paused")
    change_status(rt, pid, "unenroll", "token:1")
    clock.set(due + timedelta(hours=1))
    dispatcher.run_once()
    assert one(rt, step_id="caffeine").status == MessageState.CANCELLED
    assert sent_steps(transports["sms"], rt) == ["welcome"]


def _alerts(rt: Runtime, n: int) -> set[int]:
    """Queue n due clinic alerts (no patient) and return their ids."""
    now = rt.clock.now()
    with rt.db.session() as s:
        rows = [
            queue(
                s,
                rt.settings,
                Draft(
                    dedupe_key=f"load:{i}",
                    channel="sms",
                    kind=MessageKind.ALERT,
                    template="unreachable_alert",
                    due_at=now - timedelta(seconds=i % 7),
                    to="+13105550199",
                    urgent=True,
                    context={"patient_id": i, "reason": "test", "patient_url": "http://x"},
                ),
                now,
            )
            for i in range(n)
        ]
        s.commit()
        return {r.id for r in rows if r.id is not None}


def test_two_dispatchers_claiming_concurrently_get_disjoint_sets(db_url: str, clock: FakeClock) -> None:
    """Two dispatchers (different owners) claiming at the same time never take the same message."""
    settings = make_settings(db_url, dispatch={"batch_size": 25, "per_sender_per_second": 1000.0})
    rt = build_runtime(
        settings, clock=clock, transports={"sms": RecordingTransport("sms"), "email": RecordingTransport("email")}
    )
    all_ids = _alerts(rt, 300)
    dispatchers = [Dispatcher(rt, owner="a"), Dispatcher(rt, owner="b")]
    got: dict[str, list[int]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def work(d: Dispatcher) -> None:
        for _ in range(8):  # rounds in which both claim at the same moment (8 x 2 x 25 covers all 300)
            barrier.wait(timeout=30)
            got[d.owner].extend(d.claim())
        while ids := d.claim():
            got[d.owner].extend(ids)

    threads = [threading.Thread(target=work, args=(d,)) for d in dispatchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for d in dispatchers:
        d.close()
    assert not set(got["a"]) & set(got["b"])
    assert sorted(got["a"] + got["b"]) == sorted(all_ids)
    assert got["a"] and got["b"]  # both really took part
    owners = Counter(x.lease_owner for x in msgs(rt))
    assert owners == Counter({"a": len(got["a"]), "b": len(got["b"])})
    rt.db.dispose()


def test_two_dispatchers_running_passes_send_each_message_once(db_url: str, clock: FakeClock) -> None:
    """Two full dispatcher passes racing on the same queue send every message exactly once."""
    settings = make_settings(db_url, dispatch={"batch_size": 20, "per_sender_per_second": 1000.0})
    sms = RecordingTransport("sms")
    rt = build_runtime(settings, clock=clock, transports={"sms": sms, "email": RecordingTransport("email")})
    all_ids = _alerts(rt, 120)
    dispatchers = [Dispatcher(rt, owner="a"), Dispatcher(rt, owner="b")]
    barrier = threading.Barrier(2)
    reports: list[PassReport] = []

    def work(d: Dispatcher) -> None:
        barrier.wait()
        reports.append(d.run_once())

    threads = [threading.Thread(target=work, args=(d,)) for d in dispatchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for d in dispatchers:
        d.close()
    per_message = Counter(o.message_id for o in sms.attempts)
    assert set(per_message) == all_ids and set(per_message.values()) == {1}
    assert sum(r.sent for r in reports) == 120
    assert {x.status for x in msgs(rt)} == {MessageState.SENT}
    rt.db.dispose()


def _crash_after_marking_sending(rt: Runtime) -> list[Any]:
    """A worker claims and marks messages `sending` (committed), then dies before recording anything."""
    d = Dispatcher(rt, owner="crashed")
    try:
        jobs = d.prepare(d.claim(), PassReport())
    finally:
        d.close()
    assert jobs and all(x.status == MessageState.SENDING for x in msgs(rt, lease_owner="crashed"))
    return jobs


@pytest.mark.parametrize("provider_has_it", [True, False], ids=["provider-has-it", "provider-lacks-it"])
def test_interrupted_send_is_reconciled_not_resent(
    rt: Runtime, clock: FakeClock, transports: dict[str, RecordingTransport], provider_has_it: bool
) -> None:
    """A message left `sending` past its lease is looked up: found -> sent, not re-sent; not found -> sent once."""
    enroll(rt)
    jobs = _crash_after_marking_sending(rt)
    if provider_has_it:
        for job in jobs:
            transports["sms"].send(job.out)  # the provider accepted it just before the crash
    clock.advance(timedelta(seconds=60))
    d = Dispatcher(rt, owner="survivor")
    try:
        assert d.run_once().claimed == 0  # the lease (120 s) still runs: nobody touches it
        assert one(rt, step_id="welcome").status == MessageState.SENDING
        clock.advance(timedelta(seconds=61))
        report = d.run_once()
        assert report.reconciled == 1
        d.run_once()
    finally:
        d.close()
    w = one(rt, step_id="welcome")
    assert w.status == MessageState.SENT and w.provider_id == "RT000001"
    assert len(transports["sms"].sent) == 1  # exactly one copy reached the provider
    if provider_has_it:
        assert (report.sent, w.attempts) == (0, 1)
        assert w.reason == "found at the provider after an interrupted send"
    else:
        assert (report.sent, w.attempts) == (1, 2)


class CallInFlight(RecordingTransport):
    """A provider call that stays on its way for `seconds` of the clock and reaches the provider at its end; `during`
    runs once while it is on its way (another dispatcher recovering stale messages)."""

    def __init__(self, channel: str, clock: FakeClock, seconds: float) -> None:
        super().__init__(channel)
        self.clock, self.seconds = clock, seconds
        self.during: Callable[[], None] | None = None

    def send(self, msg: Any) -> Any:
        self.clock.advance(timedelta(seconds=self.seconds))
        during, self.during = self.during, None
        if during is not None:
            during()
        return super().send(msg)


@pytest.mark.parametrize(("lease", "timeout"), [(120, 10.0), (8, 2.0), (30, 1.0)], ids=["defaults", "short", "fast"])
def test_a_send_on_its_way_when_another_dispatcher_recovers_is_left_alone(
    db_url: str, clock: FakeClock, lease: int, timeout: float
) -> None:
    """A send started at its last allowed moment and on its way for its whole connect and read timeouts is not
    recovered and re-sent by another dispatcher meanwhile: the patient gets one copy."""
    settings = make_settings(
        db_url,
        dispatch={"lease_seconds": lease},
        twilio={"timeout_seconds": timeout},
        sendgrid={"timeout_seconds": timeout},
    )
    on_its_way = send_in_flight_seconds(timeout, settings.dispatch.lookup_settle_seconds) - 0.01
    sms = CallInFlight("sms", clock, on_its_way)
    rt = build_runtime(settings, clock=clock, transports={"sms": sms, "email": RecordingTransport("email")})
    enroll(rt)
    a, b = Dispatcher(rt, owner="a"), Dispatcher(rt, owner="b")
    meanwhile: list[PassReport] = []
    sms.during = lambda: meanwhile.append(b.run_once())
    try:
        jobs = a.prepare(a.claim(), PassReport())
        assert len(jobs) == 1 and jobs[0].send_by is not None
        clock.set(jobs[0].send_by)  # the latest moment the send may start
        a.record([a._send(jobs[0])], PassReport())
        later = b.run_once()
    finally:
        a.close()
        b.close()
    assert len(meanwhile) == 1 and (meanwhile[0].reconciled, meanwhile[0].sent) == (0, 0)
    assert (later.reconciled, later.sent) == (0, 0)
    assert len(sms.sent) == 1
    assert one(rt, step_id="welcome").status == MessageState.SENT


def test_claimed_but_never_started_goes_back_to_the_queue(
    rt: Runtime, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """A message claimed by a worker that stopped before preparing it is sent once after the lease runs out."""
    enroll(rt)
    crashed = Dispatcher(rt, owner="crashed")
    assert len(crashed.claim()) == 1
    crashed.close()
    clock.advance(timedelta(seconds=121))
    d = Dispatcher(rt, owner="survivor")
    try:
        report = d.run_once()
    finally:
        d.close()
    assert (report.reconciled, report.sent) == (1, 1)
    assert len(transports["sms"].sent) == 1 and one(rt, step_id="welcome").attempts == 1


class SlowLookup(RecordingTransport):
    """A provider whose first message lookup hangs until released (a slow API during crash recovery)."""

    def __init__(self, channel: str) -> None:
        super().__init__(channel)
        self.in_lookup, self.release = threading.Event(), threading.Event()
        self._first = True

    def find_sent(self, msg: Any, since: datetime) -> str | None:
        answer = super().find_sent(msg, since)  # the provider's answer as of the request, delivered late
        if self._first:
            self._first = False
            self.in_lookup.set()
            self.release.wait(timeout=30)
        return answer


def test_two_dispatchers_reconciling_the_same_message_send_it_once(db_url: str, clock: FakeClock) -> None:
    """While one dispatcher waits on the provider for a stale message, another cannot recover and resend it too."""
    sms = SlowLookup("sms")
    rt = build_runtime(
        make_settings(db_url), clock=clock, transports={"sms": sms, "email": RecordingTransport("email")}
    )
    enroll(rt)
    _crash_after_marking_sending(rt)
    clock.advance(timedelta(seconds=121))
    slow, fast = Dispatcher(rt, owner="slow"), Dispatcher(rt, owner="fast")
    errors: list[BaseException] = []

    def run_slow() -> None:
        try:
            slow.run_once()
        except Exception as exc:
            errors.append(exc)

    t = threading.Thread(target=run_slow)
    t.start()
    assert sms.in_lookup.wait(timeout=10)
    try:
        fast.run_once()
    finally:
        sms.release.set()
        t.join(timeout=30)
        slow.run_once()
        fast.run_once()
        slow.close()
        fast.close()
    assert Counter(o.message_id for o in sms.attempts) == Counter({one(rt, step_id="welcome").id: 1})
    assert one(rt, step_id="welcome").status == MessageState.SENT and errors == []
    rt.db.dispose()


class NoLookup(RecordingTransport):
    """An email provider that cannot say whether a message went out (SendGrid has no such API)."""

    def find_sent(self, msg: Any, since: datetime) -> str | None:
        raise LookupUnavailable("no per-message lookup")


@pytest.mark.parametrize("event_arrives", [True, False], ids=["event-settles-it", "no-event-after-grace"])
def test_interrupted_email_waits_for_events_before_resending(
    db_url: str, clock: FakeClock, event_arrives: bool
) -> None:
    """An interrupted email is not resent while its provider events may still come (grace); after it, once."""
    email = NoLookup("email")
    rt = build_runtime(
        make_settings(db_url), clock=clock, transports={"sms": RecordingTransport("sms"), "email": email}
    )
    enroll(rt, channel="email")
    (job,) = _crash_after_marking_sending(rt)
    email.send(job.out)  # it did reach the provider
    d = Dispatcher(rt, owner="survivor")
    try:
        clock.advance(timedelta(seconds=121))
        assert d.run_once().sent == 0  # inside the 600 s grace: wait for events
        assert one(rt, step_id="welcome").status == MessageState.SENDING
        if event_arrives:
            from followup.services.delivery import sendgrid_events

            sendgrid_events(
                rt, [{"event": "processed", "sg_event_id": "p1", "followup_message_id": str(job.message_id)}]
            )
        clock.advance(timedelta(seconds=600))
        d.run_once()
        d.run_once()
    finally:
        d.close()
        rt.db.dispose()
    w = one(rt, step_id="welcome")
    assert w.status == MessageState.SENT
    assert len(email.sent) == (1 if event_arrives else 2)  # without any event, a resend is the safe side


def test_a_claim_takes_urgent_messages_before_an_older_backlog(rt: Runtime, clock: FakeClock) -> None:
    """With planned messages overdue for hours, a claim of two takes the urgent alert due now first, then the
    oldest of the backlog; the rest wait for the next claim."""
    now = clock.now()
    with rt.db.session() as s:
        for i in range(4):
            queue(
                s,
                rt.settings,
                Draft(
                    f"backlog:{i}",
                    "sms",
                    MessageKind.TIP,
                    "tip_sleep",
                    now - timedelta(hours=4 - i),
                    to="+1310555014{i}",
                ),
                now,
            )
        queue(
            s,
            rt.settings,
            Draft("alert:9", "sms", MessageKind.ALERT, "clinic_alert", now, to="+13105550199", urgent=True),
            now,
        )
        s.commit()
    dispatcher = Dispatcher(rt, owner="claims-first")
    try:
        first = dispatcher.claim(limit=2)
        second = dispatcher.claim(limit=10)
    finally:
        dispatcher.close()
    keys = {x.id: x.dedupe_key for x in msgs(rt)}
    assert sorted(keys[i] for i in first) == ["alert:9", "backlog:0"]
    assert sorted(keys[i] for i in second) == ["backlog:1", "backlog:2", "backlog:3"]
