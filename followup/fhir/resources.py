"""followup's rows as FHIR resources: Patient, QuestionnaireResponse (a triage), Communication (every message in
and out), Flag and Task (an escalation, and the staff work it asks for), Appointment and Slot (a booking).

Each function returns the resource as FHIR JSON after validating it with the `fhir.resources` R4B model, so a
mapping that drifts from the specification fails in the tests, not at a clinic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.communication import Communication
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from fhir.resources.R4B.slot import Slot
from fhir.resources.R4B.task import Task
from pydantic import ValidationError

from followup.core.vocab import EscalationStatus, Level, MessageState, PatientStatus, Tier
from followup.fhir.outcome import FhirError, checked, from_validation, refuse
from followup.fhir.questionnaire import CONSENT, canonical, items, location_system, red_flag_system
from followup.fhir.rows import (
    AppointmentRow,
    EscalationRow,
    InboundRow,
    MessageRow,
    PatientRow,
    TriageRow,
    instant,
    utc,
)
from followup.fhir.transaction import TIMEZONE

# Communication.status (event-status) for each MessageState.
COMMUNICATION_STATUS: dict[str, str] = {
    MessageState.SCHEDULED: "preparation",
    MessageState.CLAIMED: "preparation",
    MessageState.SENDING: "in-progress",
    MessageState.SENT: "completed",
    MessageState.DELIVERED: "completed",
    MessageState.UNDELIVERED: "stopped",
    MessageState.FAILED: "stopped",
    MessageState.EXPIRED: "not-done",
    MessageState.CANCELLED: "not-done",
}
# Task.status for each EscalationStatus: acknowledging accepts the work, booking starts it, closing completes it.
TASK_STATUS: dict[str, str] = {
    EscalationStatus.OPEN: "requested",
    EscalationStatus.ACKNOWLEDGED: "accepted",
    EscalationStatus.BOOKED: "in-progress",
    EscalationStatus.CLOSED: "completed",
}
TASK_PRIORITY: dict[str, str] = {Tier.EMERGENCY: "stat", Tier.URGENT: "urgent", Tier.ROUTINE: "routine"}
REPLY_PRIORITY: dict[str, str] = {Level.EMERGENCY: "stat", Level.RED_FLAG: "urgent"}
MEDIUM = {  # v3 ParticipationMode
    "sms": {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode", "code": "SMSWRIT"},
    "email": {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode", "code": "EMAILWRIT"},
}
CLINIC_KINDS = ("alert", "notice", "digest")  # messages to the clinic's on-call staff, not to the patient


def _meta(at: Any) -> dict[str, str]:
    return {"lastUpdated": instant(at)}


def _ref(kind: str, rid: int | str | None) -> dict[str, str]:
    return {"reference": f"{kind}/{rid}"}


def patient(row: PatientRow, identifiers: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    telecom = []
    if row.phone:
        telecom.append(
            {"system": "phone", "value": row.phone, "use": "mobile", "rank": 1 if row.channel == "sms" else 2}
        )
    if row.email:
        telecom.append({"system": "email", "value": row.email, "rank": 1 if row.channel == "email" else 2})
    data = {
        "resourceType": "Patient",
        "id": str(row.id),
        "meta": _meta(row.updated_at),
        "identifier": [{"system": s, "value": v} for s, v in identifiers],
        "active": row.status != PatientStatus.UNENROLLED,
        "name": [{"text": row.name}],
        "telecom": telecom,
        "communication": [
            {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": row.language}]}, "preferred": True}
        ],
        "extension": [{"url": TIMEZONE, "valueCode": row.timezone}],
    }
    return checked(Patient, data)


def questionnaire_response(row: TriageRow, base_url: str) -> dict[str, Any]:
    """A triage as the answers to Questionnaire/intake (with the consent every triage was given with)."""
    answers = row.answers
    out = []
    for it in items():
        if it.link_id == CONSENT:
            out.append({"linkId": CONSENT, "answer": [{"valueBoolean": True}]})
            continue
        if it.link_id not in answers or answers[it.link_id] is None:
            continue
        value = answers[it.link_id]
        given: list[dict[str, Any]]
        if it.type == "choice":
            given = [{"valueCoding": {"system": location_system(base_url), "code": v}} for v in value]
        elif it.type == "boolean":
            given = [{"valueBoolean": bool(value)}]
        elif it.type == "integer":
            given = [{"valueInteger": int(value)}]
        else:
            given = [{"valueDecimal": value}]
        if given:
            out.append({"linkId": it.link_id, "answer": given})
    data = {
        "resourceType": "QuestionnaireResponse",
        "id": str(row.id),
        "meta": _meta(row.created_at),
        "questionnaire": canonical(base_url),
        "status": "completed",
        "subject": _ref("Patient", row.patient_id),
        "authored": instant(row.created_at),
        "item": out,
    }
    return checked(QuestionnaireResponse, data)


def communication_out(row: MessageRow) -> dict[str, Any]:
    """An outbound message: to the patient, or (alerts, notices, the digest) to the clinic about the patient."""
    to_clinic = row.kind in CLINIC_KINDS
    data: dict[str, Any] = {
        "resourceType": "Communication",
        "id": f"out-{row.id}",
        "meta": _meta(row.updated_at),
        "status": COMMUNICATION_STATUS.get(row.status, "unknown"),
        "category": [{"text": row.kind}],
        "medium": [{"coding": [MEDIUM[row.channel]]}] if row.channel in MEDIUM else None,
        "sender": {"display": "followup"},
        "recipient": [{"display": "the clinic's on-call staff"}]
        if to_clinic or row.patient_id is None
        else [_ref("Patient", row.patient_id)],
        "sent": instant(row.sent_at) if row.sent_at else None,
        "received": instant(row.delivered_at) if row.delivered_at else None,
        "topic": {"text": row.subject} if row.subject else None,
        "payload": [{"contentString": row.body}] if row.body else None,
        "statusReason": {"text": row.reason} if row.reason else None,
    }
    if row.patient_id is not None:
        data["subject"] = _ref("Patient", row.patient_id)
    if row.escalation_id is not None:
        data["about"] = [_ref("Flag", row.escalation_id)]
    return checked(Communication, data)


def communication_in(row: InboundRow) -> dict[str, Any]:
    """A reply as received; `priority` says what the red-flag reading made of it (stat: an emergency)."""
    data: dict[str, Any] = {
        "resourceType": "Communication",
        "id": f"in-{row.id}",
        "meta": _meta(row.processed_at or row.received_at),
        "status": "completed",
        "medium": [{"coding": [MEDIUM[row.channel]]}] if row.channel in MEDIUM else None,
        "recipient": [{"display": "followup"}],
        "received": instant(row.received_at),
        "topic": {"text": row.subject} if row.subject else None,
        "payload": [{"contentString": row.body}] if row.body else None,
        "priority": REPLY_PRIORITY.get(row.level or ""),
    }
    if row.patient_id is not None:
        data["subject"] = data["sender"] = _ref("Patient", row.patient_id)
    return checked(Communication, data)


def _codes(row: EscalationRow, base_url: str) -> dict[str, Any]:
    return {
        "coding": [{"system": red_flag_system(base_url), "code": c} for c in row.criteria],
        "text": f"{row.tier} red flag: {', '.join(row.criteria) or 'unspecified'}",
    }


def flag(row: EscalationRow, base_url: str) -> dict[str, Any]:
    """An escalation as a clinical Flag on the patient's chart: active until it is closed."""
    period: dict[str, str] = {"start": instant(row.created_at)}
    if row.closed_at:
        period["end"] = instant(row.closed_at)
    data = {
        "resourceType": "Flag",
        "id": str(row.id),
        "meta": _meta(row.updated_at),
        "status": "inactive" if row.status == EscalationStatus.CLOSED else "active",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": "clinical"}]}
        ],
        "code": _codes(row, base_url),
        "subject": _ref("Patient", row.patient_id),
        "period": period,
    }
    return checked(Flag, data)


def task(row: EscalationRow, base_url: str, appointment_id: int | None = None) -> dict[str, Any]:
    """The staff work an escalation asks for, its status in step with acknowledge, book and close."""
    data: dict[str, Any] = {
        "resourceType": "Task",
        "id": str(row.id),
        "meta": _meta(row.updated_at),
        "status": TASK_STATUS.get(row.status, "requested"),
        "businessStatus": {"text": row.status},
        "intent": "order",
        "priority": TASK_PRIORITY.get(row.tier, "routine"),
        "code": {"text": "Contact the patient about a red flag and arrange a visit"},
        "description": "; ".join(str(e.get("text", "")) for e in row.evidence if e.get("text")) or None,
        "focus": _ref("Flag", row.id),
        "for": _ref("Patient", row.patient_id),
        "authoredOn": instant(row.created_at),
        "lastModified": instant(row.updated_at),
        "executionPeriod": {
            "start": instant(row.created_at),
            **({"end": instant(row.closed_at)} if row.closed_at else {}),
        },
        "reasonCode": _codes(row, base_url),
    }
    if row.acknowledged_by:
        data["owner"] = {"display": row.acknowledged_by}
    if row.note:
        data["note"] = [{"text": row.note}]
    if appointment_id is not None:
        data["output"] = [{"type": {"text": "appointment"}, "valueReference": _ref("Appointment", appointment_id)}]
    return checked(Task, data)


def appointment(row: AppointmentRow) -> dict[str, Any]:
    data = {
        "resourceType": "Appointment",
        "id": str(row.id),
        "meta": _meta(row.updated_at),
        "status": "cancelled" if row.status == "cancelled" else "booked",
        "start": instant(row.starts_at),
        "end": instant(row.ends_at),
        "minutesDuration": int((utc(row.ends_at) - utc(row.starts_at)).total_seconds() // 60),
        "slot": [_ref("Slot", row.id)],
        "created": instant(row.created_at),
        "supportingInformation": [_ref("Flag", row.escalation_id)],
        "participant": [{"actor": _ref("Patient", row.patient_id), "status": "accepted"}],
    }
    return checked(Appointment, data)


def slot(row: AppointmentRow) -> dict[str, Any]:
    """The slot behind a booking: busy while it is booked, free again once cancelled. It names no patient."""
    data = {
        "resourceType": "Slot",
        "id": str(row.id),
        "meta": _meta(row.updated_at),
        "schedule": {"display": "the clinic's visit calendar"},
        "status": "free" if row.status == "cancelled" else "busy",
        "start": instant(row.starts_at),
        "end": instant(row.ends_at),
    }
    return checked(Slot, data)


# A Task PUT back with one of these statuses asks for the escalation action that gives it.
TASK_ACTIONS: dict[str, str] = {"accepted": "acknowledge", "in-progress": "book", "completed": "close"}


def task_action(current: dict[str, Any], sent: Any) -> tuple[str | None, str | None]:
    """What a Task sent back (PUT) asks of its escalation: the action (None: no change of status) and the note.
    Raises FhirError naming the element for a Task that is not valid, not this one, or asks for a status staff
    cannot set."""
    if not isinstance(sent, dict) or sent.get("resourceType") != "Task":
        raise refuse("structure", "Task", "PUT a Task")
    try:
        Task.model_validate(sent)
    except ValidationError as exc:
        raise FhirError("structure", from_validation(exc, "Task")) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise refuse("structure", "Task", f"is not a valid FHIR Task ({type(exc).__name__})") from None
    if sent.get("id") != current["id"]:
        raise refuse("rule", "Task.id", f"must be {current['id']}, the Task at this address")
    status = sent["status"]
    notes = [n.get("text", "") for n in sent.get("note", []) if n.get("text")]
    note = notes[-1] if notes else None
    if status == current["status"]:
        return None, note
    if status not in TASK_ACTIONS:
        allowed = ", ".join(TASK_ACTIONS)
        raise refuse("rule", "Task.status", f"staff set {allowed} (acknowledge, book, close), not {status!r}", "value")
    return TASK_ACTIONS[status], note
