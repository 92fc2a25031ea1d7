"""A clinic's FHIR transaction enrolls its patient through the triage service (`enrollment.submit_triage`, as
`POST /api/triage` does, a clinic-entered contact included), once per Patient identifier and submission.

The identifier's link to the patient (`FhirLink`) is written in the triage's own transaction, so a replay finds
it or finds nothing: the same Bundle again answers with the resources it made and writes nothing; the same
identifier with other answers is a re-triage of that patient; an identifier that the contact details put on
another patient is refused, and nothing of that triage is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from followup.core.triage import InputError
from followup.fhir.outcome import refuse
from followup.fhir.transaction import Submission, read_transaction, transaction_response
from followup.models import Escalation, FhirLink, Patient, Triage
from followup.runtime import Runtime
from followup.services import audit, fhir_read
from followup.services.enrollment import submit_triage


@dataclass(frozen=True)
class Enrolled:
    patient_id: int
    triage_id: int
    created: bool  # False: this very submission was recorded before, and nothing was written now
    disposition: str  # enrolled | escalated
    escalation_id: int | None
    red_flags: list[str]


class IdentifierTaken(ValueError):
    """The Patient identifier enrolled another patient than the one this submission's contact details match."""


class _Replayed(Exception):
    """A twin of this submission committed between the look-up and the lock: roll back and answer with it."""


def enroll(rt: Runtime, sub: Submission, actor: str) -> Enrolled:
    """Enroll (or escalate) the submission's patient once. Raises InputError (a triage rule, naming the field) or
    IdentifierTaken; either way nothing is written."""
    for _ in range(3):
        found = replayed(rt, sub)
        if found is not None:
            return found
        try:
            result = submit_triage(
                rt,
                sub.triage,
                source="api",  # a clinic's record system, as the authenticated API: contacts entered by the clinic
                actor=actor,
                on_recorded=lambda s, patient, triage_id: _link(s, sub, patient, triage_id, actor, rt.clock.now()),
            )
        except _Replayed:
            continue
        except IntegrityError:
            if replayed(rt, sub) is None:  # a unique key other than ours: not a replay
                raise
            continue
        return Enrolled(
            result.patient_id,
            result.triage_id,
            True,
            result.disposition,
            result.escalation_id,
            result.red_flags,
        )
    raise RuntimeError("a FHIR transaction kept racing its own replay")  # pragma: no cover - needs three races


def replayed(rt: Runtime, sub: Submission) -> Enrolled | None:
    """What this exact submission enrolled before, or None."""
    with rt.db.session() as s:
        link = s.exec(select(FhirLink).where(FhirLink.system == sub.system, FhirLink.value == sub.value)).first()
        if link is None or link.digest != sub.digest:
            return None
        triage = s.get(Triage, link.triage_id)
        assert triage is not None and triage.id is not None
        esc = None
        if triage.disposition == "escalated":
            esc = s.exec(select(Escalation).where(Escalation.triage_id == triage.id)).first()
            if esc is None:  # the triage added to an escalation already open, which points at its own triage
                latest = select(Escalation).where(Escalation.patient_id == link.patient_id)
                esc = s.exec(latest.order_by(col(Escalation.id).desc())).first()
        return Enrolled(
            link.patient_id,
            triage.id,
            False,
            triage.disposition,
            esc.id if esc is not None else None,
            list(triage.red_flags),
        )


def _link(s: Session, sub: Submission, patient: Patient, triage_id: int, actor: str, now: datetime) -> None:
    assert patient.id is not None
    stmt = select(FhirLink).where(FhirLink.system == sub.system, FhirLink.value == sub.value).with_for_update()
    link = s.exec(stmt).first()
    if link is None:
        s.add(
            FhirLink(
                system=sub.system,
                value=sub.value,
                patient_id=patient.id,
                triage_id=triage_id,
                digest=sub.digest,
                created_at=now,
                updated_at=now,
            )
        )
    elif link.patient_id != patient.id:
        raise IdentifierTaken("this identifier enrolled another patient, whose phone or email differ")
    elif link.digest == sub.digest:
        raise _Replayed
    else:
        link.triage_id, link.digest, link.updated_at = triage_id, sub.digest, now
    audit.record(s, now, actor, "fhir.transaction", f"patient:{patient.id}", triage_id=triage_id, system=sub.system)


def transaction(rt: Runtime, body: Any, actor: str) -> dict[str, Any]:
    """A transaction Bundle in, its transaction-response out. Raises FhirError (naming the element at fault) for
    anything refused; nothing is written then."""
    sub = read_transaction(
        body, rt.settings.clinic.timezone, rt.settings.clinic.default_region, rt.settings.texting_regions
    )
    try:
        done = enroll(rt, sub, actor)
    except InputError as exc:
        raise refuse("rule", sub.where(exc.field), f"{exc.field}: {exc.message}", "value") from None
    except IdentifierTaken as exc:
        raise refuse("conflict", sub.paths.get("identifier", "Bundle"), str(exc), "conflict") from None
    made = {
        "Patient": fhir_read.read(rt, "Patient", str(done.patient_id)),
        "QuestionnaireResponse": fhir_read.read(rt, "QuestionnaireResponse", str(done.triage_id)),
    }
    if done.disposition == "escalated":
        refs = f" (Flag/{done.escalation_id}, Task/{done.escalation_id})" if done.escalation_id else ""
        outcome = f"escalated to the clinic: {', '.join(done.red_flags)}{refs}"
    else:
        outcome = "enrolled in the follow-up program"
    if not done.created:
        outcome = f"already recorded: {outcome}"
    return transaction_response(fhir_read.base_url(rt), sub, made, done.created, outcome)
