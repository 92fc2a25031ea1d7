"""Staff actions on patients and the views the API shows: search, timeline, schedule, pause/resume/unenroll."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_
from sqlmodel import col, func, select

from followup.core.paging import COUNT_CAP, Page, cut
from followup.core.vocab import (
    ACTIVE_ESCALATION,
    FOLLOWED_UP,
    NOT_CLOSED,
    OPEN_STATES,
    EscalationStatus,
    MessageState,
    PatientStatus,
)
from followup.models import AuditLog, Consent, DeliveryEvent, Escalation, Inbound, Message, Patient, Triage
from followup.runtime import Runtime
from followup.services import audit, webhooks_out
from followup.services.dispatch import held
from followup.services.drafts import CONFIRM_REQUEST
from followup.services.escalation import has_active_escalation


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


KIND_TITLES = {"escalation": "Advice after a red flag", "system": "Reply to the patient", "consent": "Consent"}
TEMPLATE_TITLES = {CONFIRM_REQUEST: "Confirmation request (reply YES)"}  # a consent message staff should tell apart


def message_title(rt: Runtime, msg: Message) -> str:
    """How staff name a message: its program step, else what it is (the confirmation request, advice, ...)."""
    return (
        rt.program.step_title(msg.step_id)
        or TEMPLATE_TITLES.get(msg.template)
        or KIND_TITLES.get(msg.kind, msg.template.replace("_", " "))
    )


@dataclass(frozen=True)
class ScheduleRow:
    """One message still to go, as staff read it: the program's label for its step, and whether it is held."""

    message: Message
    title: str
    state: str  # scheduled | held | will be cancelled
    reason: str | None


def schedule_row(rt: Runtime, patient: Patient, msg: Message) -> ScheduleRow:
    """The program's label and the state the dispatcher would give the message now (dispatch.held decides)."""
    title = message_title(rt, msg)
    verdict = held(patient, msg) if msg.status == MessageState.SCHEDULED else None
    if verdict is None:
        return ScheduleRow(msg, title, msg.status, msg.reason)
    kind, reason = verdict
    return ScheduleRow(msg, title, "held" if kind == "hold" else "will be cancelled", reason)


def search(
    rt: Runtime, q: str | None, status: str | None, limit: int, offset: int = 0, before: int | None = None
) -> tuple[int, Page[Patient]]:
    """The API's patient list, newest first: a page below `before` (keyset; `offset` is still honoured for old
    clients, and costs what it skips). The total is counted up to COUNT_CAP + 1."""
    with rt.db.session() as s:
        stmt = select(Patient)
        if q:
            like = f"%{q.strip().lower()}%"
            digits = "".join(ch for ch in q if ch.isdigit())
            conds = [func.lower(Patient.name).like(like), col(Patient.email).like(like)]
            if digits:
                conds.append(col(Patient.phone).like(f"%{digits}%"))
            stmt = stmt.where(or_(*conds))
        if status:
            stmt = stmt.where(Patient.status == status)
        total = s.exec(select(func.count()).select_from(stmt.limit(COUNT_CAP + 1).subquery())).one()
        if before is not None:
            stmt = stmt.where(col(Patient.id) < before)
        rows = s.exec(stmt.order_by(col(Patient.id).desc()).limit(limit + 1).offset(offset)).all()
        return int(total), cut(rows, limit, lambda p: p.id)


def detail(rt: Runtime, patient_id: int) -> dict[str, Any]:
    with rt.db.session() as s:
        p = s.get(Patient, patient_id)
        if p is None:
            raise NotFound(f"patient {patient_id}")
        msgs = s.exec(
            select(Message).where(col(Message.patient_id) == patient_id).order_by(col(Message.due_at), col(Message.id))
        ).all()
        events = (
            s.exec(
                select(DeliveryEvent)
                .where(col(DeliveryEvent.message_id).in_([x.id for x in msgs]))
                .order_by(col(DeliveryEvent.at))
            ).all()
            if msgs
            else []
        )
        inbound = s.exec(
            select(Inbound).where(col(Inbound.patient_id) == patient_id).order_by(col(Inbound.received_at))
        ).all()
        escalations = s.exec(
            select(Escalation).where(col(Escalation.patient_id) == patient_id).order_by(col(Escalation.id))
        ).all()
        triages = s.exec(select(Triage).where(col(Triage.patient_id) == patient_id).order_by(col(Triage.id))).all()
        consents = s.exec(select(Consent).where(col(Consent.patient_id) == patient_id).order_by(col(Consent.at))).all()
        held = s.exec(
            select(AuditLog.detail).where(
                col(AuditLog.subject) == f"patient:{patient_id}", col(AuditLog.action) == "intake.contact_already_held"
            )
        ).all()
    by_msg: dict[int, list[dict[str, Any]]] = {}
    for e in events:
        by_msg.setdefault(e.message_id or 0, []).append({"status": e.status, "at": e.at, "error_code": e.error_code})
    timeline: list[dict[str, Any]] = []
    for x in msgs:
        if x.status in OPEN_STATES:
            continue
        timeline.append(
            {
                "direction": "out",
                "at": x.sent_at or x.updated_at,
                "message_id": x.id,
                "kind": x.kind,
                "step_id": x.step_id,
                "title": message_title(rt, x),
                "channel": x.channel,
                "status": x.status,
                "reason": x.reason,
                "subject": x.subject,
                "body": x.body,
                "provider_id": x.provider_id,
                "events": by_msg.get(x.id or 0, []),
            }
        )
    for i in inbound:
        timeline.append(
            {
                "direction": "in",
                "at": i.received_at,
                "inbound_id": i.id,
                "channel": i.channel,
                "intent": i.intent,
                "level": i.level,
                "body": i.body,
                "status": i.status,
            }
        )
    timeline.sort(key=lambda e: e["at"])
    return {
        "patient": p,
        "timeline": timeline,
        "upcoming": [x for x in msgs if x.status in OPEN_STATES],
        "schedule": [schedule_row(rt, p, x) for x in msgs if x.status in OPEN_STATES],
        "escalations": escalations,
        "triages": triages,
        "consents": consents,
        "held_by": _held_by(held),
    }


def _held_by(details: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """From the intake's audit: which patients already held the contacts this public form gave (the form kept
    them off this record), as [{"id": 3, "fields": ["phone"]}]: most often the same person sending the form twice."""
    out: dict[int, set[str]] = {}
    for d in details:
        for ref in d.get("held_by", []):
            if isinstance(ref, str) and ref.startswith("patient:") and ref[8:].isdigit():
                out.setdefault(int(ref[8:]), set()).update(str(f) for f in d.get("fields", []))
    return [{"id": pid, "fields": sorted(fields)} for pid, fields in sorted(out.items())]


TRANSITIONS: dict[str, tuple[set[str], PatientStatus]] = {
    "pause": (set(FOLLOWED_UP), PatientStatus.PAUSED),
    "resume": ({PatientStatus.PAUSED}, PatientStatus.ACTIVE),
    "unenroll": (
        {PatientStatus.ACTIVE, PatientStatus.PAUSED, PatientStatus.ESCALATED, PatientStatus.COMPLETED},
        PatientStatus.UNENROLLED,
    ),
}


def change_status(rt: Runtime, patient_id: int, action: str, actor: str) -> Patient:
    allowed, target = TRANSITIONS[action]
    now = rt.clock.now()
    with rt.db.session() as s:
        p = s.get(Patient, patient_id)
        if p is None:
            raise NotFound(f"patient {patient_id}")
        if p.status not in allowed:
            raise Conflict(f"cannot {action} a patient who is {p.status}")
        before = p.status
        if action == "resume":
            has_open = has_active_escalation(s, patient_id)
            target = PatientStatus.ESCALATED if has_open else PatientStatus.ACTIVE
        p.status, p.updated_at = target, now
        if action == "unenroll":
            for msg in s.exec(
                select(Message).where(Message.patient_id == patient_id, Message.status == MessageState.SCHEDULED)
            ):
                msg.status, msg.reason, msg.updated_at = MessageState.CANCELLED, f"unenrolled by {actor}", now
        audit.record(s, now, actor, f"patient.{action}", f"patient:{patient_id}", was=before)
        s.commit()
        return p


def answer_pending(rt: Runtime, patient_id: int) -> bool:
    """Whether an urgent message to the patient (an answer to a reply, an escalation's advice) is due and not yet
    handed to the provider: what the patient-phone demo waits for before showing the conversation."""
    now = rt.clock.now()
    with rt.db.session() as s:
        row = s.exec(
            select(Message.id)
            .where(
                col(Message.patient_id) == patient_id,
                col(Message.urgent).is_(True),
                col(Message.status).in_([MessageState.SCHEDULED, MessageState.CLAIMED, MessageState.SENDING]),
                col(Message.due_at) <= now,
            )
            .limit(1)
        ).first()
    return row is not None


def next_scheduled(rt: Runtime, limit: int) -> list[Message]:
    with rt.db.session() as s:
        return list(
            s.exec(
                select(Message)
                .where(col(Message.status) == MessageState.SCHEDULED)
                .order_by(col(Message.due_at))
                .limit(limit)
            ).all()
        )


def escalations(
    rt: Runtime, status: str | None, limit: int, offset: int = 0, before: int | None = None
) -> Page[Escalation]:
    """Escalations newest first, a page below `before` (keyset; `offset` kept for old clients)."""
    with rt.db.session() as s:
        stmt = select(Escalation)
        if status:
            stmt = stmt.where(Escalation.status == status)
        if before is not None:
            stmt = stmt.where(col(Escalation.id) < before)
        rows = s.exec(stmt.order_by(col(Escalation.id).desc()).limit(limit + 1).offset(offset)).all()
        return cut(rows, limit, lambda e: e.id)


def escalation(rt: Runtime, escalation_id: int) -> Escalation:
    with rt.db.session() as s:
        e = s.get(Escalation, escalation_id)
        if e is None:
            raise NotFound(f"escalation {escalation_id}")
        return e


ESC_TRANSITIONS: dict[str, tuple[set[str], EscalationStatus]] = {
    "acknowledge": ({EscalationStatus.OPEN}, EscalationStatus.ACKNOWLEDGED),
    "book": (set(ACTIVE_ESCALATION), EscalationStatus.BOOKED),
    "close": (set(NOT_CLOSED), EscalationStatus.CLOSED),
}


def change_escalation(rt: Runtime, escalation_id: int, action: str, actor: str, note: str | None = None) -> Escalation:
    allowed, target = ESC_TRANSITIONS[action]
    now = rt.clock.now()
    with rt.db.session() as s:
        e = s.get(Escalation, escalation_id)
        if e is None:
            raise NotFound(f"escalation {escalation_id}")
        if e.status not in allowed:
            raise Conflict(f"cannot {action} an escalation that is {e.status}")
        before, e.status, e.updated_at = e.status, target, now
        if action == "acknowledge":
            e.acknowledged_at, e.acknowledged_by = now, actor
        elif action == "book":
            e.booked_at = now
        else:
            e.closed_at, e.closed_by, e.note = now, actor, note
        if target in (EscalationStatus.BOOKED, EscalationStatus.CLOSED):
            p = s.get(Patient, e.patient_id)
            others = has_active_escalation(s, e.patient_id, besides=escalation_id)
            if p is not None and p.status == PatientStatus.ESCALATED and not others:
                p.status, p.updated_at = PatientStatus.ACTIVE, now
        audit.record(s, now, actor, f"escalation.{action}", f"escalation:{escalation_id}", was=before)
        webhooks_out.emit(
            rt,
            s,
            f"escalation.{target}",
            now,
            webhooks_out.escalation_data(rt, e, by=actor),
            # a closing note is free text: clinical, for trusted endpoints only
            lambda: {**webhooks_out.escalation_health(rt, e)(), **({"note": note} if note else {})},
            patient_id=e.patient_id,
        )
        s.commit()
        return e
