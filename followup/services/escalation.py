"""Escalation: one open record per patient, the patient told what to do at once, the clinic alerted.

Called inside another service's transaction (triage, inbound reply); it adds rows and never commits.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from followup.core.vocab import ACTIVE_ESCALATION, FOLLOWED_UP, Level, PatientStatus, Tier, more_serious
from followup.models import Escalation, Patient
from followup.runtime import Runtime
from followup.services import audit, drafts, webhooks_out
from followup.services.queue import queue
from followup.services.reachability import reachable_channel

log = logging.getLogger("followup.escalation")


def open_escalation(s: Session, patient_id: int) -> Escalation | None:
    return s.exec(
        select(Escalation)
        .where(Escalation.patient_id == patient_id, col(Escalation.status).in_(ACTIVE_ESCALATION))
        .order_by(col(Escalation.id).desc())
    ).first()


def has_active_escalation(s: Session, patient_id: int, besides: int | None = None) -> bool:
    """Whether the patient has an escalation still to act on (other than `besides`): if so they stay escalated."""
    stmt = select(Escalation.id).where(
        Escalation.patient_id == patient_id, col(Escalation.status).in_(ACTIVE_ESCALATION)
    )
    if besides is not None:
        stmt = stmt.where(Escalation.id != besides)
    return s.exec(stmt).first() is not None


def escalate(
    rt: Runtime,
    s: Session,
    patient: Patient,
    *,
    level: Level,
    tier: Tier,
    criteria: list[str],
    evidence: list[dict[str, Any]],
    source: str,
    now: datetime,
    channel: str | None = None,
    triage_id: int | None = None,
    inbound_id: int | None = None,
    review: bool = False,
    tell_patient: bool = True,
) -> tuple[Escalation, bool]:
    """Open an escalation or add to the open one. Returns it and whether patient and clinic were alerted
    (a new escalation, or one that moved up a tier). A `review` (a reply the learned layer finds somewhat
    concerning, or in a language the clinic does not read) is a routine item: the clinic is told as for any
    routine escalation, and the patient gets the routine answer with "we will read it today", not the red-flag
    message. Without `tell_patient` (a message not proven to be the patient's), only the clinic hears of it."""
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
        alerted = more_serious(tier, than=esc.tier)
        esc.criteria = list(dict.fromkeys([*esc.criteria, *criteria]))
        esc.evidence = [*esc.evidence, *evidence]
        if inbound_id:
            esc.inbound_ids = [*esc.inbound_ids, inbound_id]
        if alerted:
            esc.tier, esc.level = tier, level
        esc.updated_at = now
        action = "escalation.upgraded" if alerted else "escalation.added_to"
    patient.status = PatientStatus.ESCALATED if patient.status in FOLLOWED_UP else patient.status
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
    if action == "escalation.opened":
        webhooks_out.emit(
            rt,
            s,
            "escalation.opened",
            now,
            webhooks_out.escalation_data(rt, esc),
            webhooks_out.escalation_health(rt, esc),
            patient_id=patient.id,
        )
    if alerted and review:
        chosen = reachable_channel(patient, channel)
        if chosen is not None and tell_patient:
            queue(s, rt.settings, drafts.review_ack(esc, patient.id, chosen, now), now)
        _alert_clinic(rt, s, esc, now)
    elif alerted:
        if tell_patient:
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
    chosen = reachable_channel(patient, channel)
    if chosen is None:
        audit.record(s, now, "system", "escalation.patient_unreachable", f"escalation:{esc.id}", patient_id=patient.id)
        return
    # Worded for what happened: after the intake form or after a reply, and "we have alerted the clinic" only when
    # an on-call contact exists to be alerted.
    alerted = bool(drafts.oncall(rt.settings))
    draft = drafts.escalation_reply(esc, patient.id, chosen, criteria, rt.links, now, source=source, alerted=alerted)
    queue(s, rt.settings, draft, now)


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
    targets = drafts.oncall(rt.settings)
    for channel, address in targets:
        queue(s, rt.settings, drafts.clinic_alert(esc, channel, address, context, now), now)
    if not targets:
        audit.record(s, now, "system", "escalation.no_oncall_configured", f"escalation:{esc.id}")


def criteria_labels(rt: Runtime, criteria: list[str]) -> list[str]:
    """Clinician labels of the criteria (their ids when the red-flag file cannot be read)."""
    try:
        known = rt.detector.criteria
    except Exception:  # the labels are a courtesy: an alert must go out even if the criteria file is broken
        log.warning("red-flag criteria unavailable; alerts show criterion ids")
        return list(criteria)
    return [str(getattr(known.get(c), "clinician_label", c)) for c in criteria]
