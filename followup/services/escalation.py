"""Escalation: one open record per patient, the patient told what to do at once, the clinic alerted.

Called inside another service's transaction (triage, inbound reply); it adds rows and never commits.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from followup.models import Escalation, Patient
from followup.runtime import Runtime
from followup.services import audit
from followup.services.queue import queue
from followup.services.reachability import reachable_channel

TIER_RANK = {"routine": 1, "urgent": 2, "emergency": 3}
OPEN = ("open", "acknowledged")
CRISIS_CRITERIA_PREFIX = "self_harm"

log = logging.getLogger("followup.escalation")


def open_escalation(s: Session, patient_id: int) -> Escalation | None:
    return s.exec(
        select(Escalation)
        .where(Escalation.patient_id == patient_id, col(Escalation.status).in_(OPEN))
        .order_by(col(Escalation.id).desc())
    ).first()


def escalate(
    rt: Runtime,
    s: Session,
    patient: Patient,
    *,
    level: str,
    tier: str,
    criteria: list[str],
    evidence: list[dict[str, Any]],
    source: str,
    now: datetime,
    channel: str | None = None,
    triage_id: int | None = None,
    inbound_id: int | None = None,
) -> tuple[Escalation, bool]:
    """Open an escalation or add to the open one. Returns it and whether patient and clinic were alerted
    (a new escalation, or one that moved up a tier)."""
    assert patient.id is not None
    esc = open_escalation(s, patient.id)
    alerted = True
    if esc is None:
        esc = Escalation(
            patient_id=patient.id,
            level=level,
            tier=tier,
            source=source,
            criteria=list(criteria),
            evidence=list(evidence),
            triage_id=triage_id,
            inbound_ids=[inbound_id] if inbound_id else [],
            created_at=now,
            updated_at=now,
        )
        s.add(esc)
        s.flush()
        action = "escalation.opened"
    else:
        alerted = TIER_RANK[tier] > TIER_RANK[esc.tier]
        esc.criteria = list(dict.fromkeys([*esc.criteria, *criteria]))
        esc.evidence = [*esc.evidence, *evidence]
        if inbound_id:
            esc.inbound_ids = [*esc.inbound_ids, inbound_id]
        if alerted:
            esc.tier, esc.level = tier, level
        esc.updated_at = now
        action = "escalation.upgraded" if alerted else "escalation.added_to"
    patient.status = "escalated" if patient.status in ("active", "escalated") else patient.status
    patient.updated_at = now
    assert esc.id is not None
    audit.record(
        s,
        now,
        "system",
        action,
        f"escalation:{esc.id}",
        patient_id=patient.id,
        tier=esc.tier,
        criteria=list(criteria),
        source=source,
    )
    if alerted:
        _tell_patient(rt, s, patient, esc, criteria, now, channel, source)
        _alert_clinic(rt, s, esc, now)
    return esc, alerted


def _tell_patient(
    rt: Runtime,
    s: Session,
    patient: Patient,
    esc: Escalation,
    criteria: list[str],
    now: datetime,
    channel: str | None,
    source: str,
) -> None:
    assert esc.id is not None and patient.id is not None
    # Worded for what happened: after the intake form or after a reply, and "we have alerted the clinic" only when
    # an on-call contact exists to be alerted.
    context: dict[str, Any] = {"source": source, "alerted": bool(oncall_targets(rt))}
    if esc.level == "emergency":
        crisis = any(c.startswith(CRISIS_CRITERIA_PREFIX) for c in criteria)
        template = "escalation_selfharm" if crisis else "escalation_emergency"
    else:
        template = "escalation_red_flag"
        context["booking_url"] = rt.links.booking(esc.id)
    chosen = reachable_channel(patient, channel)
    if chosen is None:
        audit.record(s, now, "system", "escalation.patient_unreachable", f"escalation:{esc.id}", patient_id=patient.id)
        return
    queue(
        s,
        rt.settings,
        now=now,
        dedupe_key=f"esc:{esc.id}:{esc.tier}:patient",
        channel=chosen,
        kind="escalation",
        template=template,
        due_at=now,
        patient_id=patient.id,
        urgent=True,
        escalation_id=esc.id,
        context=context,
    )


def _alert_clinic(rt: Runtime, s: Session, esc: Escalation, now: datetime) -> None:
    assert esc.id is not None
    labels = criteria_labels(rt, esc.criteria)
    context = {
        "escalation": {
            "id": esc.id,
            "tier": esc.tier,
            "level": esc.level,
            "criteria_labels": labels,
            "evidence": [str(e.get("text", "")) for e in esc.evidence][:10],
        },
        "escalation_url": rt.links.escalation(esc.id),
    }
    targets = oncall_targets(rt)
    for channel, address in targets:
        queue(
            s,
            rt.settings,
            now=now,
            dedupe_key=f"esc:{esc.id}:{esc.tier}:alert:{channel}:{address}",
            channel=channel,
            kind="alert",
            template="clinic_alert",
            due_at=now,
            to=address,
            urgent=True,
            escalation_id=esc.id,
            context=context,
        )
    if not targets:
        audit.record(s, now, "system", "escalation.no_oncall_configured", f"escalation:{esc.id}")


def oncall_targets(rt: Runtime) -> list[tuple[str, str]]:
    """Who is alerted at once for a new escalation: (channel, address) of every on-call contact."""
    clinic = rt.settings.clinic
    return [("sms", n) for n in clinic.oncall_sms] + [("email", e) for e in clinic.oncall_email]


def criteria_labels(rt: Runtime, criteria: list[str]) -> list[str]:
    """Clinician labels of the criteria (their ids when the red-flag file cannot be read)."""
    try:
        known = rt.detector.criteria
    except Exception:  # the labels are a courtesy: an alert must go out even if the criteria file is broken
        log.warning("red-flag criteria unavailable; alerts show criterion ids")
        return list(criteria)
    return [str(getattr(known.get(c), "clinician_label", c)) for c in criteria]
