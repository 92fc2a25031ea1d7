"""What the staff dashboard reads: the escalation queue with its clocks, one escalation's case file, and the
overview figures (enrolment, escalations by tier per week, response rate, delivery failures, silence, trends).
Read-only: nothing here writes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, func, select

from followup.core.attention import attention_key
from followup.core.figures import TRENDS_SHOWN, Counts, Overview, by_week, overview_of, reply_mark, trend_list, weeks_to
from followup.core.paging import Page, cut
from followup.core.storable import storable
from followup.core.vocab import (
    ACTIVE_ESCALATION,
    FOLLOWED_UP,
    AppointmentStatus,
    EscalationStatus,
    MessageKind,
)
from followup.models import Appointment, AuditLog, Escalation, EscalationAlert, Inbound, Message, Patient, Triage
from followup.runtime import Runtime
from followup.services import rollup
from followup.services.alerting import Clock, ack_clock, alert_state
from followup.services.escalation import criteria_labels
from followup.services.roster import unreachable_clause

QUEUE_FILTERS: dict[str, tuple[EscalationStatus, ...]] = {
    "active": ACTIVE_ESCALATION,
    **{status.value: (status,) for status in EscalationStatus},
}


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
        # The escalations first (ix_escalation_status_created), then only their patients: a join let the planner
        # hash the whole patient table (bench/README.md).
        found = s.exec(
            select(Escalation)
            .where(col(Escalation.status).in_(statuses))
            .order_by(col(Escalation.created_at).desc())
            .limit(limit)
        ).all()
        people = {
            pid: (name, phone, email)
            for pid, name, phone, email in s.exec(
                select(Patient.id, Patient.name, Patient.phone, Patient.email).where(
                    col(Patient.id).in_({e.patient_id for e in found})
                )
            ).all()
        }
        rows = [(e, *people[e.patient_id]) for e in found if e.patient_id in people]
        ids = [row[0].id for row in rows if row[0].id is not None]
        booked = dict(
            s.exec(
                select(Appointment.escalation_id, Appointment.starts_at).where(
                    col(Appointment.escalation_id).in_(ids), Appointment.status == AppointmentStatus.BOOKED
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
    waiting = [i for i in items if i.escalation.status == EscalationStatus.OPEN]
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
                .where(
                    Message.escalation_id == escalation_id,
                    col(Message.kind).in_((MessageKind.ALERT, MessageKind.NOTICE)),
                )
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


TREND_SCAN = 2000  # the latest replies read, at most, to find the patients with the most recent trend
TREND_CHUNK = 200


def overview(rt: Runtime, weeks: int = 8) -> Overview[Patient]:
    """The overview's figures over the last `weeks` clinic-local weeks: the days from the rollup
    (services/rollup.py: closed days kept, open days from the job's snapshot plus what changed since), the counts
    from indexed reads of what is still open; never a scan of all messages, nor of the open days' rows."""
    now = rt.clock.now()
    tz = ZoneInfo(rt.settings.clinic.timezone)
    week_list = weeks_to(now, tz, weeks)
    days = rollup.figures_for(rt, week_list[0], now)
    start = datetime.combine(week_list[0], datetime.min.time(), tzinfo=tz)
    with rt.db.session() as s:
        counts = Counts(
            status_counts={
                st: int(n)
                for st, n in s.exec(
                    select(Patient.status, func.count())
                    .where(col(Patient.status).in_(FOLLOWED_UP))
                    .group_by(Patient.status)
                ).all()
            },
            enrolled=0,
            unreachable=int(s.exec(select(func.count()).select_from(Patient).where(unreachable_clause())).one()),
            non_responders=0,
            # counted by status (ix_escalation_status_created, index only), not one row per escalation
            active_statuses=[
                st
                for st, n in s.exec(
                    select(Escalation.status, func.count())
                    .where(col(Escalation.status).in_(ACTIVE_ESCALATION))
                    .group_by(Escalation.status)
                ).all()
                for _ in range(n)
            ],
        )
        trends = _recent_trends(s, start)
    counts = replace(counts, enrolled=rollup.enrolled(rt), non_responders=rollup.silent(rt))
    return overview_of(week_list, by_week(days), counts, trends)


def _recent_trends(s: Session, start: datetime) -> list[tuple[Patient, list[tuple[datetime, str]]]]:
    """The patients whose latest replies say how they are, with their marks since `start`: read from the latest
    replies (an index on received_at) TREND_CHUNK at a time until TRENDS_SHOWN patients are found or TREND_SCAN
    were read, then those patients' own replies. (Reading TREND_SCAN at once was 2,019 buffers at 100,000 patients
    for 30 patients found in the first few hundred.)"""
    pids: list[int] = []
    cursor: tuple[datetime, int] | None = None
    for _ in range(TREND_SCAN // TREND_CHUNK):
        stmt = sa_select(
            col(Inbound.id), col(Inbound.received_at), col(Inbound.patient_id), col(Inbound.level), col(Inbound.meta)
        ).where(col(Inbound.received_at) >= start, col(Inbound.patient_id).is_not(None))
        if cursor is not None:
            at, last = cursor
            stmt = stmt.where(
                or_(col(Inbound.received_at) < at, and_(col(Inbound.received_at) == at, col(Inbound.id) < last))
            )
        chunk = s.execute(
            stmt.order_by(col(Inbound.received_at).desc(), col(Inbound.id).desc()).limit(TREND_CHUNK)
        ).all()
        pids = list(
            dict.fromkeys([*pids, *(pid for _, _, pid, level, meta in chunk if pid and reply_mark(level, meta))])
        )
        if len(pids) >= TRENDS_SHOWN or len(chunk) < TREND_CHUNK:
            break
        iid, at, *_ = chunk[-1]
        assert iid is not None
        cursor = (at, iid)
    pids = pids[:TRENDS_SHOWN]
    if not pids:
        return []
    rows = s.exec(
        select(Inbound.patient_id, Inbound.received_at, Inbound.level, Inbound.meta).where(
            col(Inbound.patient_id).in_(pids), col(Inbound.received_at) >= start
        )
    ).all()
    replies = [(pid, at, reply_mark(level, meta)) for pid, at, level, meta in rows if pid is not None]
    patients = {p.id: p for p in s.exec(select(Patient).where(col(Patient.id).in_(pids))).all() if p.id is not None}
    return trend_list(replies, patients)


def patient_trend(rt: Runtime, patient_id: int) -> list[tuple[datetime, str]]:
    """A patient's assessed replies, oldest first: better / same / worse, or red_flag / emergency. The last point
    is the patient's current trend (core.figures.reply_mark)."""
    with rt.db.session() as s:
        rows = s.exec(
            select(Inbound.received_at, Inbound.level, Inbound.meta)
            .where(Inbound.patient_id == patient_id)
            .order_by(col(Inbound.received_at), col(Inbound.id))
        ).all()
    return [(at, mark) for at, level, meta in rows if (mark := reply_mark(level, meta)) is not None]


def audit_page(rt: Runtime, limit: int = 200, before: int | None = None, actor: str | None = None) -> Page[AuditLog]:
    """The audit log newest first, a page below `before` (keyset: core/paging.py)."""
    with rt.db.session() as s:
        stmt = select(AuditLog)
        if actor:
            stmt = stmt.where(AuditLog.actor == storable(actor))
        if before is not None:
            stmt = stmt.where(col(AuditLog.id) < before)
        return cut(s.exec(stmt.order_by(col(AuditLog.id).desc()).limit(limit + 1)).all(), limit, lambda a: a.id)


def staff_names(rt: Runtime) -> dict[str, str]:
    """Staff actors ("staff:3") to their email, to show who did what."""
    from followup.models import StaffUser

    with rt.db.session() as s:
        return {f"staff:{u.id}": u.email for u in s.exec(select(StaffUser)).all()}
