"""A patient's data rights and how long texts are kept: export everything held on one patient, erase it, and
purge old message texts.

What belongs to a patient: their row; their triages, consents, escalations (with re-alert rounds and booked
visits), messages to them and the clinic's alerts about them (an alert quotes their words), the delivery events
of those messages, and their replies (also those that came before they were enrolled, from their number or
address). On erasure the audit log keeps what was done, by whom and when, but its rows about the patient lose
their details (criteria, tiers, appointment times: health data, issue 11 finding 14); the erasure itself is
recorded there with counts only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, literal_column, or_, update
from sqlmodel import Session, SQLModel, col, select

from followup.core.vocab import TERMINAL_STATES
from followup.models import (
    PURGED_SQL,
    Appointment,
    AuditLog,
    Consent,
    ContactConfirmation,
    DeliveryEvent,
    Escalation,
    EscalationAlert,
    FhirLink,
    Inbound,
    Message,
    Patient,
    Triage,
    VoiceCall,
    WebhookDelivery,
)
from followup.runtime import Runtime
from followup.services import audit, drafts

log = logging.getLogger("followup.privacy")
PURGED = "[removed after the retention period]"
# Inbound rows still waiting to be acted on keep their text: a reply worker needs it.
_SETTLED_INBOUND = ("processed", "ignored")


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class _Owned:
    """The ids of every row that belongs to one patient."""

    patient: Patient
    escalations: list[int]
    messages: list[int]
    inbound: list[int]


def _owned(s: Session, patient_id: int) -> _Owned:
    """One indexed query per way a row can belong to the patient (an OR across columns, or a LIKE on the dedupe
    key of every message, read whole tables: bench/README.md)."""
    patient = s.get(Patient, patient_id)
    if patient is None:
        raise NotFound(f"patient {patient_id}")
    escalations = [int(i) for i in s.exec(select(Escalation.id).where(Escalation.patient_id == patient_id)) if i]
    messages = {int(i) for i in s.exec(select(Message.id).where(col(Message.patient_id) == patient_id)) if i}
    if escalations:
        messages |= {int(i) for i in s.exec(select(Message.id).where(col(Message.escalation_id).in_(escalations))) if i}
    # alerts that the patient cannot be reached carry only the patient's id, in the dedupe key; they are clinic
    # messages (no patient, no escalation), which ix_message_clinic holds apart
    messages |= {
        int(i)
        for i in s.exec(
            select(Message.id).where(
                col(Message.patient_id).is_(None),
                col(Message.escalation_id).is_(None),
                col(Message.template) == drafts.UNREACHABLE_ALERT,
                col(Message.dedupe_key).startswith(drafts.unreachable_prefix(patient_id)),
            )
        )
        if i
    }
    senders = [a for a in (patient.phone, patient.email) if a]
    inbound = {int(i) for i in s.exec(select(Inbound.id).where(col(Inbound.patient_id) == patient_id)) if i}
    if senders:  # replies from their number or address before they were enrolled
        inbound |= {
            int(i)
            for i in s.exec(
                select(Inbound.id).where(col(Inbound.patient_id).is_(None), col(Inbound.sender).in_(senders))
            )
            if i
        }
    return _Owned(patient, escalations, sorted(messages), sorted(inbound))


def _subjects(owned: _Owned) -> list[str]:
    assert owned.patient.id is not None
    return [
        f"patient:{owned.patient.id}",
        *(f"escalation:{i}" for i in owned.escalations),
        *(f"message:{i}" for i in owned.messages),
        *(f"inbound:{i}" for i in owned.inbound),
    ]


def _rows(s: Session, model: type[SQLModel], *where: Any) -> list[dict[str, Any]]:
    order = model.id  # type: ignore[attr-defined]
    return [_jsonable(r.model_dump()) for r in s.exec(select(model).where(*where).order_by(order))]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def export_patient(rt: Runtime, patient_id: int) -> dict[str, Any]:
    """Everything held on one patient, as JSON-able data (the subject access request)."""
    with rt.db.session() as s:
        owned = _owned(s, patient_id)
        # Every audit row about the patient names them, one of their escalations, messages or replies as its
        # subject (escalation.patient_unreachable also says patient_id in its detail, under its escalation): one
        # indexed lookup, where a match on the JSON detail read the whole audit log.
        audit_rows = _rows(s, AuditLog, col(AuditLog.subject).in_(_subjects(owned)))
        return {
            "exported_at": rt.clock.now().isoformat(),
            "patient": _jsonable(owned.patient.model_dump()),
            "triages": _rows(s, Triage, Triage.patient_id == patient_id),
            "consents": _rows(s, Consent, Consent.patient_id == patient_id),
            "escalations": _rows(s, Escalation, col(Escalation.id).in_(owned.escalations)),
            "escalation_alerts": _rows(s, EscalationAlert, col(EscalationAlert.escalation_id).in_(owned.escalations)),
            "appointments": _rows(s, Appointment, Appointment.patient_id == patient_id),
            "fhir_links": _rows(s, FhirLink, FhirLink.patient_id == patient_id),
            "messages": _rows(s, Message, col(Message.id).in_(owned.messages)),
            "delivery_events": _rows(s, DeliveryEvent, col(DeliveryEvent.message_id).in_(owned.messages)),
            "inbound": _rows(s, Inbound, col(Inbound.id).in_(owned.inbound)),
            "audit": audit_rows,
        }


def erase_patient(rt: Runtime, patient_id: int, actor: str) -> dict[str, int]:
    """Delete every row that belongs to the patient, in one transaction, and record the erasure (counts only)
    in the audit log. Returns the number of rows deleted per table. One transaction on purpose (never half
    erased); it locks only the patient's own rows, found by indexed lookups, so it stays short at any table size."""
    now = rt.clock.now()
    with rt.db.session() as s:
        owned = _owned(s, patient_id)
        esc, msgs, inb = owned.escalations, owned.messages, owned.inbound
        # Children before parents: the foreign keys are enforced (SQLite with PRAGMA foreign_keys=ON too).
        steps: list[tuple[str, Any]] = [
            *_chunked(
                "delivery_events", msgs, lambda ids: delete(DeliveryEvent).where(col(DeliveryEvent.message_id).in_(ids))
            ),
            *_chunked("messages", msgs, lambda ids: delete(Message).where(col(Message.id).in_(ids))),
            ("appointments", delete(Appointment).where(col(Appointment.patient_id) == patient_id)),
            ("escalation_alerts", delete(EscalationAlert).where(col(EscalationAlert.escalation_id).in_(esc))),
            ("voice_calls", delete(VoiceCall).where(col(VoiceCall.escalation_id).in_(esc))),
            ("webhook_deliveries", delete(WebhookDelivery).where(col(WebhookDelivery.patient_id) == patient_id)),
            *_chunked("inbound", inb, lambda ids: delete(Inbound).where(col(Inbound.id).in_(ids))),
            ("escalations", delete(Escalation).where(col(Escalation.id).in_(esc))),
            ("fhir_links", delete(FhirLink).where(col(FhirLink.patient_id) == patient_id)),
            ("triages", delete(Triage).where(col(Triage.patient_id) == patient_id)),
            ("consents", delete(Consent).where(col(Consent.patient_id) == patient_id)),
            (
                "confirmations",
                delete(ContactConfirmation).where(col(ContactConfirmation.patient_id) == patient_id),
            ),
            ("patients", delete(Patient).where(col(Patient.id) == patient_id)),
            # By subject alone, as the export finds them: the rows whose detail also says patient_id (escalation
            # opened, patient unreachable, sender unverified) have the patient's escalation as subject. An OR on
            # the JSON detail made PostgreSQL read the whole audit log (bench/README.md).
            *_chunked(
                "audit_details_removed",
                _subjects(owned),
                lambda subjects: (
                    update(AuditLog).where(col(AuditLog.subject).in_(subjects)).values(detail={"erased": True})
                ),
            ),
        ]
        counts: dict[str, int] = {}
        for name, stmt in steps:
            counts[name] = counts.get(name, 0) + int(
                s.exec(stmt.execution_options(synchronize_session=False)).rowcount or 0
            )
        audit.record(s, now, actor, "patient.erased", f"patient:{patient_id}", deleted=counts)
        s.commit()
    return counts


ERASE_CHUNK = 500  # ids per DELETE: a long-followed patient's statements stay bounded


def _chunked(name: str, ids: list[Any], stmt: Callable[[list[Any]], Any]) -> list[tuple[str, Any]]:
    """One DELETE per ERASE_CHUNK ids (at least one, so every table is counted)."""
    return [(name, stmt(ids[i : i + ERASE_CHUNK])) for i in range(0, max(len(ids), 1), ERASE_CHUNK)]


def purge_old_texts(rt: Runtime, now: datetime | None = None, batch: int = 1000) -> dict[str, int]:
    """Replace message texts older than `privacy.retention_days` with a marker: the bodies and subjects of
    finished outbound messages (and their template variables, which may quote a reply), and the bodies, subjects
    and quoted words of settled replies. Idempotent; several processes may run it. Runs in batches of `batch`
    rows, each committed on its own. Returns rows changed."""
    days = rt.settings.privacy.retention_days
    if days == 0:
        return {"messages": 0, "inbound": 0}
    now = now or rt.clock.now()
    cutoff = now - timedelta(days=days)
    messages = 0
    while True:  # in batches, each its own short transaction: no lock is held across the whole backlog
        with rt.db.session() as s:
            ids = list(
                s.exec(
                    select(Message.id)
                    .where(
                        _not_purged_message(),
                        col(Message.created_at) < cutoff,
                        col(Message.status).in_(TERMINAL_STATES),
                    )
                    .order_by(col(Message.created_at))
                    .limit(batch)
                )
            )
            if ids:
                s.exec(
                    update(Message)
                    .where(col(Message.id).in_(ids))
                    # updated_at stays: it dates the message's last change of state, which the overview counts
                    # failures by (an old failure purged today is not this week's: tests/test_scale.py)
                    .values(body=PURGED, subject=None, context={})
                    .execution_options(synchronize_session=False)
                )
            s.commit()
        messages += len(ids)
        if len(ids) < batch:
            break
    inbound = 0
    while True:  # replies in batches: their verdicts are rewritten in Python
        with rt.db.session() as s:
            rows = list(
                s.exec(
                    select(Inbound)
                    .where(
                        _not_purged_inbound(),
                        col(Inbound.received_at) < cutoff,
                        col(Inbound.status).in_(_SETTLED_INBOUND),
                    )
                    .order_by(col(Inbound.received_at))
                    .limit(batch)
                )
            )
            for row in rows:
                row.body, row.subject, row.verdict = PURGED, None, _without_quotes(row.verdict or {})
            s.commit()
        inbound += len(rows)
        if len(rows) < batch:
            break
    if messages or inbound:
        with rt.db.session() as s:
            audit.record(s, now, "system", "retention.purged", "", days=days, messages=messages, inbound=inbound)
            s.commit()
    return {"messages": int(messages), "inbound": inbound}


def _not_purged_message() -> ColumnElement[bool]:
    """The predicate of ix_message_unpurged, spelled with the same literal so that the planner (SQLite's too) uses
    the index: the purge reads only the rows it still has to change, not every old message each day."""
    return or_(col(Message.body).is_(None), col(Message.body) != literal_column(PURGED_SQL))


def _not_purged_inbound() -> ColumnElement[bool]:
    """The predicate of ix_inbound_unpurged (as _not_purged_message)."""
    return col(Inbound.body) != literal_column(PURGED_SQL)


def _without_quotes(verdict: dict[str, Any]) -> dict[str, Any]:
    """A verdict that still says what was found (criteria, tiers, why not counted) but no longer quotes it."""
    keep = ("criterion", "tier", "rule", "reason")
    return {
        "level": verdict.get("level"),
        "tier": verdict.get("tier"),
        "criteria": list(verdict.get("criteria") or []),
        "findings": [{k: f.get(k) for k in keep if k in f} for f in verdict.get("findings") or []],
        "suppressed": [{k: x.get(k) for k in keep if k in x} for x in verdict.get("suppressed") or []],
        "context": verdict.get("context"),
        "purged": True,
    }
