"""What the staff dashboard reads: the escalation queue with its clocks, one escalation's case file, and the
overview figures (enrolment, escalations by tier per week, response rate, delivery failures, silence, trends).
Read-only: nothing here writes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import col, func, select

from followup import models as m
from followup.core.attention import attention_key
from followup.core.storable import storable
from followup.models import Appointment, AuditLog, Escalation, EscalationAlert, Inbound, Message, Patient, Triage
from followup.runtime import Runtime
from followup.services.alerting import Clock, ack_clock, alert_state
from followup.services.escalation import criteria_labels
from followup.services.roster import non_responders, unreachable_clause

QUEUE_FILTERS = {
    "active": ("open", "acknowledged"),
    "open": ("open",),
    "acknowledged": ("acknowledged",),
    "booked": ("booked",),
    "closed": ("closed",),
}
REPLY_WINDOW = timedelta(hours=72)  # a check-in counts as answered by any reply within this
FAILED = (m.FAILED, m.UNDELIVERED)


@dataclass(frozen=True)
class QueueItem:
    escalation: Escalation
    patient_name: str
    age: timedelta
    clock: Clock
    appointment_at: datetime | None
    phone: str | None = None
    email: str | None = None
    criteria: tuple[str, ...] = ()  # what was matched, in the clinician's words (clinic/red_flags.toml)


@dataclass(frozen=True)
class QueueCounts:
    """What the page title shows: open (nobody has acknowledged them yet), of which overdue."""

    open: int
    overdue: int


def escalation_queue(rt: Runtime, status: str = "active", limit: int = 300) -> list[QueueItem]:
    """Escalations with the given status: overdue first, then open by tier and age, then acknowledged
    (core/attention.py)."""
    now = rt.clock.now()
    statuses = QUEUE_FILTERS.get(status, QUEUE_FILTERS["active"])
    with rt.db.session() as s:
        rows = s.exec(
            select(Escalation, Patient.name, Patient.phone, Patient.email)
            .join(Patient, col(Patient.id) == Escalation.patient_id)
            .where(col(Escalation.status).in_(statuses))
            .order_by(col(Escalation.created_at).desc())
            .limit(limit)
        ).all()
        ids = [row[0].id for row in rows if row[0].id is not None]
        booked = dict(
            s.exec(
                select(Appointment.escalation_id, Appointment.starts_at).where(
                    col(Appointment.escalation_id).in_(ids), Appointment.status == "booked"
                )
            ).all()
        )
    state = alert_state(rt, [row[0] for row in rows])
    mentioned = list(dict.fromkeys(c for row in rows for c in row[0].criteria))
    labels = dict(zip(mentioned, criteria_labels(rt, mentioned), strict=True))
    items = []
    for esc, name, phone, email in rows:
        assert esc.id is not None
        clock = ack_clock(rt.settings, esc, state[esc.id], now)
        criteria = tuple(labels.get(c, c) for c in esc.criteria)
        items.append(QueueItem(esc, name, now - esc.created_at, clock, booked.get(esc.id), phone, email, criteria))
    items.sort(
        key=lambda i: attention_key(i.escalation.status, i.clock.overdue, i.escalation.tier, i.escalation.created_at)
    )
    return items


def queue_counts(items: list[QueueItem]) -> QueueCounts:
    """The open and overdue escalations among the queue's items."""
    waiting = [i for i in items if i.escalation.status == "open"]
    return QueueCounts(len(waiting), sum(1 for i in waiting if i.clock.overdue))


@dataclass
class CaseFile:
    escalation: Escalation
    patient: Patient
    labels: dict[str, str]
    replies: list[Inbound]
    triage: Triage | None
    clock: Clock
    alerts: list[Message]
    rounds: list[EscalationAlert]
    appointments: list[Appointment]
    history: list[AuditLog]
    other_escalations: list[Escalation] = field(default_factory=list)


def case_file(rt: Runtime, escalation_id: int) -> CaseFile:
    """Everything the escalation page shows; raises LookupError for an unknown id."""
    now = rt.clock.now()
    with rt.db.session() as s:
        esc = s.get(Escalation, escalation_id)
        if esc is None:
            raise LookupError(f"escalation {escalation_id}")
        patient = s.get(Patient, esc.patient_id)
        assert patient is not None
        replies = (
            list(s.exec(select(Inbound).where(col(Inbound.id).in_(esc.inbound_ids)).order_by(col(Inbound.id))).all())
            if esc.inbound_ids
            else []
        )
        # A reply-sourced escalation has no triage of its own: show the patient's latest one (issue 12).
        triage = (
            s.get(Triage, esc.triage_id)
            if esc.triage_id
            else s.exec(
                select(Triage).where(Triage.patient_id == esc.patient_id).order_by(col(Triage.id).desc())
            ).first()
        )
        alerts = list(
            s.exec(
                select(Message)
                .where(Message.escalation_id == escalation_id, col(Message.kind).in_(("alert", "notice")))
                .order_by(col(Message.created_at), col(Message.id))
            ).all()
        )
        rounds = list(
            s.exec(
                select(EscalationAlert)
                .where(EscalationAlert.escalation_id == escalation_id)
                .order_by(col(EscalationAlert.round))
            ).all()
        )
        appointments = list(
            s.exec(
                select(Appointment)
                .where(Appointment.escalation_id == escalation_id)
                .order_by(col(Appointment.created_at).desc())
            ).all()
        )
        history = list(
            s.exec(
                select(AuditLog).where(AuditLog.subject == f"escalation:{escalation_id}").order_by(col(AuditLog.at))
            ).all()
        )
        others = list(
            s.exec(
                select(Escalation)
                .where(Escalation.patient_id == esc.patient_id, Escalation.id != escalation_id)
                .order_by(col(Escalation.id).desc())
            ).all()
        )
    mentioned = list(esc.criteria)
    for r in replies:
        mentioned += [str(x.get("criterion", "")) for x in (r.verdict or {}).get("suppressed", [])]
    labels = dict(zip(mentioned, criteria_labels(rt, mentioned), strict=True))
    clock = ack_clock(rt.settings, esc, alert_state(rt, [esc])[escalation_id], now)
    return CaseFile(esc, patient, labels, replies, triage, clock, alerts, rounds, appointments, history, others)


# ---- the overview page ----------------------------------------------------------------------------------------


def _utc(at: datetime) -> datetime:
    """SQLite hands datetimes back naive (they are stored in UTC)."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def week_of(at: datetime, tz: ZoneInfo) -> date:
    """The Monday (clinic-local) that starts the week of `at`."""
    local = at.astimezone(tz).date()
    return local - timedelta(days=local.weekday())


@dataclass
class Overview:
    weeks: list[date]
    enrolled: int
    active: int
    escalated: int
    open_escalations: int
    unacknowledged: int
    unreachable: int
    non_responders: int
    response_rate: float | None  # over the whole window
    answered: int
    asked: int
    pending: int  # check-ins sent less than REPLY_WINDOW ago and not answered yet
    failures: int
    escalations_by_week: dict[date, Counter[str]]
    response_by_week: dict[date, tuple[int, int]]  # (answered, asked)
    failures_by_week: dict[date, int]
    trend_by_week: dict[date, Counter[str]]
    trends: list[tuple[Patient, list[tuple[datetime, str]]]]


def overview(rt: Runtime, weeks: int = 8) -> Overview:
    now = rt.clock.now()
    tz = ZoneInfo(rt.settings.clinic.timezone)
    this_week = week_of(now, tz)
    week_list = [this_week - timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]
    start = datetime.combine(week_list[0], datetime.min.time(), tzinfo=tz)
    with rt.db.session() as s:
        counts = dict(s.exec(select(Patient.status, func.count()).group_by(Patient.status)).all())
        enrolled = s.exec(select(func.count()).where(col(Patient.enrolled_at).is_not(None))).one()
        unreachable = s.exec(select(func.count()).select_from(Patient).where(unreachable_clause())).one()
        esc_rows = s.exec(
            select(Escalation.created_at, Escalation.tier, Escalation.status).where(Escalation.created_at >= start)
        ).all()
        open_rows = s.exec(select(Escalation.status).where(col(Escalation.status).in_(("open", "acknowledged")))).all()
        checkins = s.exec(
            select(Message.patient_id, Message.sent_at).where(
                Message.kind == "checkin",
                col(Message.status).in_((m.SENT, m.DELIVERED)),
                col(Message.sent_at) >= start,
                col(Message.sent_at) <= now,
            )
        ).all()
        failed = s.exec(
            select(Message.updated_at).where(col(Message.status).in_(FAILED), Message.updated_at >= start)
        ).all()
        inbound = s.exec(
            select(Inbound).where(col(Inbound.patient_id).is_not(None), Inbound.received_at >= start)
        ).all()
        silent = non_responders(s, now)
        replies_by_patient: dict[int, list[datetime]] = {}
        trend_points: dict[int, list[tuple[datetime, str]]] = {}
        for i in inbound:
            assert i.patient_id is not None
            replies_by_patient.setdefault(i.patient_id, []).append(i.received_at)
            mark = reply_mark(i.level, i.meta)
            if mark is not None:
                trend_points.setdefault(i.patient_id, []).append((i.received_at, mark))
        patients = (
            {p.id: p for p in s.exec(select(Patient).where(col(Patient.id).in_(list(trend_points)))).all()}
            if trend_points
            else {}
        )
    by_week: dict[date, Counter[str]] = {w: Counter() for w in week_list}
    for created, tier, _ in esc_rows:
        by_week.setdefault(week_of(created, tz), Counter())[tier] += 1
    response: dict[date, tuple[int, int]] = {w: (0, 0) for w in week_list}
    pending = 0
    for pid, sent_at in checkins:
        if sent_at is None or pid is None:
            continue
        ok = any(sent_at < r <= sent_at + REPLY_WINDOW for r in replies_by_patient.get(pid, []))
        if not ok and _utc(sent_at) > now - REPLY_WINDOW:
            pending += 1  # still inside its window: neither answered nor missed yet (issue 12: "0 of 0")
            continue
        wk = week_of(sent_at, tz)
        a, n = response.get(wk, (0, 0))
        response[wk] = (a + int(ok), n + 1)
    fails: dict[date, int] = {w: 0 for w in week_list}
    for at in failed:
        wk = week_of(at, tz)
        fails[wk] = fails.get(wk, 0) + 1
    trend_week: dict[date, Counter[str]] = {w: Counter() for w in week_list}
    for points in trend_points.values():
        for at, t in points:
            if t in TRENDS:  # the chart counts check-in answers; red flags have their own chart
                trend_week.setdefault(week_of(at, tz), Counter())[t] += 1
    answered = sum(a for a, _ in response.values())
    asked = sum(n for _, n in response.values())
    trends = sorted(
        ((patients[pid], sorted(pts)) for pid, pts in trend_points.items() if pid in patients),
        key=lambda x: x[1][-1][0],
        reverse=True,
    )
    return Overview(
        weeks=week_list,
        enrolled=int(enrolled),
        active=int(counts.get("active", 0)),
        escalated=int(counts.get("escalated", 0)),
        open_escalations=len(open_rows),
        unacknowledged=sum(1 for st in open_rows if st == "open"),
        unreachable=int(unreachable),
        non_responders=len(silent),
        response_rate=answered / asked if asked else None,
        answered=answered,
        asked=asked,
        pending=pending,
        failures=len(failed),
        escalations_by_week={w: by_week[w] for w in week_list},
        response_by_week={w: response[w] for w in week_list},
        failures_by_week={w: fails[w] for w in week_list},
        trend_by_week={w: trend_week[w] for w in week_list},
        trends=trends[:30],
    )


TRENDS = ("better", "same", "worse")
RED_FLAG_MARKS = ("emergency", "red_flag")


def reply_mark(level: str | None, meta: Mapping[str, Any] | None) -> str | None:
    """How one assessed reply reads on a trend strip: a red flag outranks whatever better / same / worse it also
    said (issue 12: a green "better" sat beside "I can't breathe"); None for a reply that says neither."""
    if level in RED_FLAG_MARKS:
        return level
    trend = (meta or {}).get("trend")
    return trend if trend in TRENDS else None


def patient_trend(rt: Runtime, patient_id: int) -> list[tuple[datetime, str]]:
    """A patient's assessed replies, oldest first: better / same / worse, or red_flag / emergency. The last point
    is the patient's current trend."""
    with rt.db.session() as s:
        rows = s.exec(
            select(Inbound.received_at, Inbound.level, Inbound.meta)
            .where(Inbound.patient_id == patient_id)
            .order_by(col(Inbound.received_at), col(Inbound.id))
        ).all()
    points = [(at, reply_mark(level, meta)) for at, level, meta in rows]
    return [(at, mark) for at, mark in points if mark is not None]


def audit_page(rt: Runtime, limit: int = 200, offset: int = 0, actor: str | None = None) -> list[AuditLog]:
    with rt.db.session() as s:
        stmt = select(AuditLog)
        if actor:
            stmt = stmt.where(AuditLog.actor == storable(actor))
        return list(s.exec(stmt.order_by(col(AuditLog.id).desc()).limit(limit).offset(offset)).all())


def staff_names(rt: Runtime) -> dict[str, str]:
    """Staff actors ("staff:3") to their email, to show who did what."""
    from followup.models import StaffUser

    with rt.db.session() as s:
        return {f"staff:{u.id}": u.email for u in s.exec(select(StaffUser)).all()}
