"""Self-enrolment from the public intake form. It never changes a patient already held (issue 11, findings 1-3).

Anyone can post the form, so what it says cannot name a patient:
- a phone or email that is already some patient's is not attached to the new record, and that patient is not
  touched: no name, contact, consent, escalation or program of theirs changes. Staff see the match in the audit
  log (`intake.contact_already_held`), by ids only;
- the answer is the same as for contacts never seen: status, page, and the messages anyone else receives (a
  contact that is free gets its confirmation request whether or not the other one was known);
- the contacts given here are unconfirmed: each gets one confirmation request and nothing else until its owner
  answers (services/confirmation.py);
- a number outside the texting regions is refused (`contacts.allowed_regions`), naming the field.

A red flag escalates at once: the clinic is alerted, and the thank-you page tells the patient what to do now;
the advice message to the patient waits for the confirmation like everything else.

A contact given here whose owner never answered (its request expired) is released from that record when the form
gives it again, so a stranger's typo cannot keep its real owner from enrolling.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlmodel import Session, select

from followup.core.triage import Contact, TriageIn, check_contact
from followup.core.vocab import Channel
from followup.models import Patient
from followup.runtime import Runtime
from followup.services import audit, confirmation
from followup.services.enrollment import TriageResult, enroll, new_patient, record_triage, upcoming


def submit_public(rt: Runtime, data: TriageIn) -> TriageResult:
    """Record a triage from the public form as a new, unconfirmed patient (see the module docstring)."""
    contact = check_contact(data, rt.settings.clinic.default_region, rt.settings.texting_regions)
    now = rt.clock.now()
    with rt.db.session() as s:
        phone, phone_holder = _free(rt, s, Channel.SMS, contact.phone, now)
        email, email_holder = _free(rt, s, Channel.EMAIL, contact.email, now)
        patient = new_patient(data, phone, email, now)
        s.add(patient)
        s.flush()
        assert patient.id is not None
        held = sorted({h for h in (phone_holder, email_holder) if h is not None})
        if held:
            fields = [f for f, h in (("phone", phone_holder), ("email", email_holder)) if h is not None]
            audit.record(
                s,
                now,
                "intake",
                "intake.contact_already_held",
                f"patient:{patient.id}",
                held_by=[f"patient:{h}" for h in held],
                fields=fields,
            )
        kept = Contact(phone, email)
        outcome = record_triage(rt, s, patient, data, kept, source="intake", actor="intake", now=now, created=True)
        if not outcome.escalation_id:
            enroll(rt, s, patient, data, now)
        for channel in (Channel.SMS, Channel.EMAIL):
            confirmation.request(rt, s, patient, channel, now)
        s.commit()
        steps = upcoming(s, patient.id)
    rt.wake()
    return replace(outcome, steps=steps)


def _free(rt: Runtime, s: Session, channel: str, address: str | None, now: datetime) -> tuple[str | None, int | None]:
    """(the address, None) when no patient holds it; (None, the holder's id) when one does. An unconfirmed
    contact whose request expired is released from its holder first."""
    if not address:
        return None, None
    column = Patient.phone if channel == Channel.SMS else Patient.email
    holder = s.exec(select(Patient).where(column == address)).first()
    if holder is None:
        return address, None
    assert holder.id is not None
    if confirmation.pending_expired(s, holder, channel, now):
        if channel == Channel.SMS:
            holder.phone = None
        else:
            holder.email = None
        holder.updated_at = now
        audit.record(s, now, "intake", "contact.released", f"patient:{holder.id}", channel=channel)
        s.flush()
        return address, None
    return None, holder.id
