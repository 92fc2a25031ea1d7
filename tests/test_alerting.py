"""Alerts that someone owns: re-alerting unacknowledged escalations tier by tier, and the daily digest."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import T0, make_settings
from factories import delivered_checkin
from sqlmodel import select

from followup.clock import FakeClock
from followup.jobs import DispatchLoop
from followup.models import AuditLog, Escalation, EscalationAlert, Message, Patient
from followup.runtime import Runtime
from followup.services import silence
from followup.services.alerting import contact_tiers, realert_due, run_realerts, sla, tier_index
from followup.services.digest import send_digest
from followup.services.dispatch import Dispatcher
from followup.services.escalation import escalate
from followup.services.overview import escalation_queue
from followup.services.patients import change_escalation
from followup.settings import Settings
from followup.transports.recording import RecordingTransport

LA = ZoneInfo("America/Los_Angeles")
TIERS = [["+13105550198", "lead@clinic.example"], ["chief@clinic.example"]]


@pytest.fixture
def settings(db_url: str) -> Settings:
    return make_settings(db_url, alerts={"escalation_tiers": TIERS})


def patient(rt: Runtime, name: str, phone: str, **fields: object) -> int:
    now = rt.clock.now()
    with rt.db.session() as s:
        p = Patient(
            name=name,
            phone=phone,
            channel="sms",
            timezone="America/Los_Angeles",
            reply_token=f"p{int(phone[-8:]):016x}",
            enrolled_at=now,
            sms_confirmed_at=now,
            email_confirmed_at=now,
            created_at=now,
            updated_at=now,
            **fields,
        )  # type: ignore[arg-type]
        s.add(p)
        s.commit()
        assert p.id is not None
        return p.id


def open_escalation(rt: Runtime, tier: str, name: str = "Ana Diaz", phone: str = "+13105550142") -> int:
    """An escalation opened the way a reply opens one (patient told, on-call alerted)."""
    pid = patient(rt, name, phone)
    with rt.db.session() as s:
        p = s.get(Patient, pid)
        assert p is not None
        esc, _ = escalate(
            rt,
            s,
            p,
            level="emergency" if tier == "emergency" else "red_flag",
            tier=tier,
            criteria=["weakness"],
            evidence=[{"text": "hand weaker"}],
            source="reply",
            now=rt.clock.now(),
        )
        s.commit()
        assert esc.id is not None
        return esc.id


def realerts(rt: Runtime) -> list[Message]:
    with rt.db.session() as s:
        return list(s.exec(select(Message).where(Message.template == "realert").order_by(Message.id)).all())


def rounds(rt: Runtime) -> list[EscalationAlert]:
    with rt.db.session() as s:
        return list(s.exec(select(EscalationAlert).order_by(EscalationAlert.round)).all())


# ---- pure decisions --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "status", "waited", "due"),
    [
        ("emergency", "open", timedelta(minutes=14, seconds=59), False),
        ("emergency", "open", timedelta(minutes=15), True),
        ("urgent", "open", timedelta(hours=3, minutes=59), False),
        ("urgent", "open", timedelta(hours=4), True),
        ("routine", "open", timedelta(days=30), False),  # routine goes to the digest instead
        ("emergency", "acknowledged", timedelta(hours=5), False),
        ("urgent", "booked", timedelta(hours=5), False),
        ("emergency", "closed", timedelta(hours=5), False),
    ],
)
def test_realert_due(tier: str, status: str, waited: timedelta, due: bool) -> None:
    """Only open emergency and urgent escalations are re-alerted, once their SLA has passed since the last alert."""
    assert realert_due(tier, status, T0, T0 + waited, Settings()) is due


@pytest.mark.parametrize(("round_", "index"), [(1, 1), (2, 2), (3, 2), (9, 2)])
def test_rounds_climb_the_tiers_then_repeat_the_last(round_: int, index: int) -> None:
    """Round n goes to tier n; past the last tier, the last tier again."""
    settings = Settings().with_overrides(alerts={"escalation_tiers": TIERS})
    assert tier_index(settings, round_) == index
    assert contact_tiers(settings)[2] == [("email", "chief@clinic.example")]


def test_sla_comes_from_settings() -> None:
    """Acknowledgement deadlines per tier are settings."""
    s = Settings().with_overrides(alerts={"emergency_ack_minutes": 5, "urgent_ack_minutes": 60})
    assert (sla(s, "emergency"), sla(s, "urgent")) == (timedelta(minutes=5), timedelta(hours=1))


@pytest.mark.parametrize("bad", [[[]], [["not a contact"]], [["+1555"]], [["a@b"]]])
def test_bad_escalation_tiers_are_refused(bad: list[list[str]]) -> None:
    """An empty tier, or a contact that is neither an email nor a +country phone number, is refused."""
    with pytest.raises(ValueError, match="tier 1"):
        Settings().with_overrides(alerts={"escalation_tiers": bad})


# ---- the re-alert job with a fake clock -------------------------------------------------------------------------


def test_emergency_is_realerted_tier_by_tier_until_acknowledged(
    rt: Runtime, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """15 minutes without acknowledgement: tier 1; 15 more: tier 2; again every 15; acknowledgement stops it."""
    eid = open_escalation(rt, "emergency")
    clock.advance(timedelta(minutes=14))
    assert run_realerts(rt) == 0
    clock.advance(timedelta(minutes=1))
    assert run_realerts(rt) == 1
    assert run_realerts(rt) == 0  # the same minute again: nothing new
    assert {(x.channel, x.to) for x in realerts(rt)} == {("sms", "+13105550198"), ("email", "lead@clinic.example")}
    dispatcher = Dispatcher(rt)
    dispatcher.run_once()
    clock.advance(timedelta(minutes=15))
    assert run_realerts(rt) == 1
    clock.advance(timedelta(minutes=15))
    assert run_realerts(rt) == 1
    dispatcher.run_once()
    dispatcher.close()
    assert [(r.round, r.tier_index, r.recipients) for r in rounds(rt)] == [(1, 1, 2), (2, 2, 1), (3, 2, 1)]
    assert [x.to for x in realerts(rt)][2:] == ["chief@clinic.example", "chief@clinic.example"]
    change_escalation(rt, eid, "acknowledge", "staff:1")
    clock.advance(timedelta(hours=2))
    assert run_realerts(rt) == 0 and len(rounds(rt)) == 3
    with rt.db.session() as s:
        actions = [a.action for a in s.exec(select(AuditLog).where(AuditLog.subject == f"escalation:{eid}"))]
    assert actions.count("escalation.realerted") == 3 and "escalation.acknowledge" in actions
    sms = [x for x in transports["sms"].sent if x.to == "+13105550198"]
    assert len(sms) == 1 and f"#{eid}" in sms[0].body and "EMERGENCY" in sms[0].body
    assert "Ana" not in sms[0].body and "weak" not in sms[0].body.lower()
    chief = [x for x in transports["email"].sent if x.to == "chief@clinic.example"]
    assert len(chief) == 2 and "REPEAT" in (chief[0].subject or "")


def test_urgent_waits_its_own_sla_and_routine_is_never_realerted(rt: Runtime, clock: FakeClock) -> None:
    """Urgent escalations are re-alerted after 4 hours; routine ones never (they go in the digest)."""
    open_escalation(rt, "urgent")
    open_escalation(rt, "routine", name="Rob Routine", phone="+13105550143")
    clock.advance(timedelta(hours=3, minutes=59))
    assert run_realerts(rt) == 0
    clock.advance(timedelta(minutes=1))
    assert run_realerts(rt) == 1
    clock.advance(timedelta(days=3))
    run_realerts(rt)
    with rt.db.session() as s:
        tiers = {
            e.tier
            for e in s.exec(select(Escalation).join(EscalationAlert, EscalationAlert.escalation_id == Escalation.id))
        }
    assert tiers == {"urgent"}


def test_upgrade_restarts_the_clock_from_the_new_alert(rt: Runtime, clock: FakeClock) -> None:
    """An escalation that moved up a tier was alerted then: its clock and the next re-alert count from there."""
    open_escalation(rt, "urgent")
    clock.advance(timedelta(hours=1))
    with rt.db.session() as s:
        p = s.exec(select(Patient)).one()
        escalate(
            rt,
            s,
            p,
            level="emergency",
            tier="emergency",
            criteria=["breathing"],
            evidence=[],
            source="reply",
            now=clock.now(),
        )
        s.commit()
    upgraded_at = clock.now()
    (item,) = escalation_queue(rt)
    assert item.clock.due_at == upgraded_at + timedelta(minutes=15)  # the dashboard's clock restarts too
    clock.advance(timedelta(minutes=14))
    assert run_realerts(rt) == 0
    clock.advance(timedelta(minutes=1))
    assert run_realerts(rt) == 1 and rounds(rt)[0].tier == "emergency"


def test_two_workers_alert_a_round_once(rt: Runtime, clock: FakeClock) -> None:
    """Two processes running the job at the same moment send one round, not two."""
    open_escalation(rt, "emergency")
    clock.advance(timedelta(minutes=20))
    barrier = threading.Barrier(2)
    sent: list[int] = []

    def worker() -> None:
        barrier.wait()
        sent.append(run_realerts(rt))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(sent) == [0, 1]
    assert len(rounds(rt)) == 1 and len(realerts(rt)) == 2


def test_without_contacts_a_round_is_recorded_not_sent(
    db_url: str, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """No on-call contacts at all: the round is still recorded and audited, so the gap shows."""
    from followup.runtime import build_runtime

    settings = make_settings(db_url, clinic={"oncall_sms": [], "oncall_email": []})
    rt = build_runtime(settings, clock=clock, transports=dict(transports))
    open_escalation(rt, "emergency")
    clock.advance(timedelta(minutes=15))
    assert run_realerts(rt) == 1
    assert [(r.round, r.recipients) for r in rounds(rt)] == [(1, 0)] and realerts(rt) == []
    with rt.db.session() as s:
        assert s.exec(select(AuditLog).where(AuditLog.action == "escalation.realert_nobody")).first() is not None
    rt.db.dispose()


# ---- the daily digest --------------------------------------------------------------------------------------------


def at_local(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=LA).astimezone(UTC)


def test_digest_lists_routine_escalations_unreachable_and_non_responders(
    rt: Runtime, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """At 07:30 the on-call email gets new routine escalations, unreachable patients and non-responders, by id."""
    clock.set(at_local(24, 10))
    routine = open_escalation(rt, "routine")
    open_escalation(rt, "urgent", name="Ugo Urgent", phone="+13105550144")
    lost = patient(rt, "Lou Lost", "+13105550145", sms_state="invalid")
    silent = patient(rt, "Sid Silent", "+13105550146")
    with rt.db.session() as s:
        for n, days in enumerate((9, 3)):
            sent = clock.now() - timedelta(days=days)
            s.add(delivered_checkin(silent, sent, f"ci:{n}"))
        s.flush()
        silence.rebuild(s, [silent])
        s.commit()
    clock.set(at_local(25, 7, 30))
    assert send_digest(rt) == 1
    Dispatcher(rt).run_once()
    (mail,) = [x for x in transports["email"].sent if x.to == "oncall@clinic.example" and "digest" in (x.subject or "")]
    assert "2026-11-25" in (mail.subject or "") and "1 new" in (mail.subject or "")
    assert f"#{routine} routine" in mail.body
    assert f"patient #{lost} (sms invalid, no email)" in mail.body
    assert f"patient #{silent}, last check-in 2026-11-21" in mail.body
    assert "Open escalations (all tiers): 2" in mail.body
    for name in ("Ana", "Lou", "Sid", "Ugo"):
        assert name not in mail.body


def test_digest_goes_once_a_day_and_covers_since_the_last(rt: Runtime, clock: FakeClock) -> None:
    """A second run the same day queues nothing; the next day's digest lists only what is new since."""
    clock.set(at_local(24, 7, 30))
    assert send_digest(rt) == 1
    assert send_digest(rt) == 0
    clock.set(at_local(24, 12))
    open_escalation(rt, "routine")
    clock.set(at_local(25, 7, 30))
    assert send_digest(rt) == 1
    with rt.db.session() as s:
        digests = s.exec(select(Message).where(Message.template == "digest").order_by(Message.id)).all()
    assert [len(d.context["digest"]["new_escalations"]) for d in digests] == [0, 1]
    assert digests[1].context["digest"]["since"] == "2026-11-24 07:30"


def test_digest_does_not_wait_for_patients_quiet_hours(
    rt: Runtime, clock: FakeClock, transports: dict[str, RecordingTransport]
) -> None:
    """The digest is staff email at the hour the clinic chose: 07:30 is before the sending window, it goes anyway."""
    clock.set(at_local(25, 7, 30))
    send_digest(rt)
    Dispatcher(rt).run_once()
    assert any("digest" in (x.subject or "") for x in transports["email"].sent)


def test_scheduler_hook_adds_the_realert_and_digest_jobs(rt: Runtime) -> None:
    """The dispatcher's scheduler also runs the re-alert pass every check_seconds and the digest at 07:30 local."""
    loop = DispatchLoop(rt)
    try:
        realert = loop.scheduler.get_job("realert")
        digest = loop.scheduler.get_job("digest")
        assert realert is not None and realert.trigger.interval == timedelta(seconds=60)
        assert digest is not None
        nxt = digest.trigger.get_next_fire_time(None, at_local(25, 8))
        assert nxt.astimezone(LA).replace(tzinfo=None) == datetime(2026, 11, 26, 7, 30)
    finally:
        loop.dispatcher.close()


def test_queue_shows_acknowledgement_and_alert_history(rt: Runtime, clock: FakeClock) -> None:
    """Each alert round and the acknowledgement are recorded on the escalation."""
    from followup.services.overview import case_file

    eid = open_escalation(rt, "emergency")
    clock.advance(timedelta(minutes=16))
    run_realerts(rt)
    change_escalation(rt, eid, "acknowledge", "staff:7")
    case = case_file(rt, eid)
    assert [r.round for r in case.rounds] == [1]
    assert {a.template for a in case.alerts} == {"clinic_alert", "realert"}
    assert case.escalation.acknowledged_by == "staff:7" and case.clock.due_at is None
    assert [h.action for h in case.history][-1] == "escalation.acknowledge"
