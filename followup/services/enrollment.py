"""Triage from the clinic: match or create the patient, record consent and answers, then escalate or enroll. One
commit. The public form's self-enrolment is `services.intake`, which shares `record_triage` and `enroll`."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from followup.core.schedule import Window, added_step_send, planned_send
from followup.core.triage import Contact, InputError, TriageIn, check_contact
from followup.core.vocab import (
    FINISHED,
    PROGRAM_KINDS,
    Channel,
    Level,
    MessageState,
    PatientStatus,
    Tier,
    level_of,
    most_serious,
)
from followup.models import Consent, Message, Patient, Triage
from followup.runtime import Runtime
from followup.services import audit, confirmation, drafts
from followup.services.escalation import escalate
from followup.services.queue import queue, ttl_for

DEFAULT_CONSENT_TEXT = (
    "I agree to receive follow-up messages about my muscle twitching from the clinic by text message and/or "
    "email. Message and data rates may apply. Reply STOP to opt out at any time."
)


@dataclass(frozen=True)
class ScheduledStep:
    step_id: str
    kind: str
    channel: str
    due_at: datetime
    status: str


@dataclass(frozen=True)
class TriageResult:
    patient_id: int
    triage_id: int
    disposition: str  # enrolled | escalated
    created: bool
    escalation_id: int | None
    red_flags: list[str]
    steps: list[ScheduledStep]


# Called inside the triage's transaction once its rows are written, before the commit, with the triage's id: it
# may add rows of its own (the FHIR link of a transaction Bundle) or raise to roll the whole triage back.
Recorded = Callable[[Session, Patient, int], None]


def submit_triage(
    rt: Runtime, data: TriageIn, *, source: str, actor: str, on_recorded: Recorded | None = None
) -> TriageResult:
    """The clinic's triage (the authenticated API, an import, a FHIR transaction): match the patient by phone or
    email, update them, and count the contacts as confirmed (the clinic vouches for them). The public form goes
    through `services.intake.submit_public`, which never touches an existing patient."""
    contact = check_contact(data, rt.settings.clinic.default_region, rt.settings.texting_regions)
    now = rt.clock.now()
    replan = False  # a patient who moved to another time zone has their scheduled steps planned again
    with rt.db.session() as s:
        patient, created = _match_patient(s, contact.phone, contact.email)
        if patient is None:
            patient = new_patient(data, contact.phone, contact.email, now)
            s.add(patient)
        else:
            replan = patient.timezone != data.timezone
            patient.name, patient.channel, patient.timezone = data.name, data.channel, data.timezone
            patient.language, patient.updated_at = data.language, now
            if contact.phone and contact.phone != patient.phone:
                patient.sms_confirmed_at = None  # vouched for again below, as the number it now is
                if patient.sms_state == "invalid":
                    patient.sms_state = "ok"  # a new number is not the one the provider refused
            if contact.email and contact.email != patient.email:
                patient.email_confirmed_at = None
                if patient.email_state == "suppressed":
                    patient.email_state = "ok"  # nor is a new address the one that bounced
            patient.phone = contact.phone or patient.phone
            patient.email = contact.email or patient.email
            if patient.status in FINISHED:
                patient.status, patient.enrolled_at = PatientStatus.ACTIVE, None
        for channel, address in ((Channel.SMS, contact.phone), (Channel.EMAIL, contact.email)):
            if address:
                confirmation.vouch(patient, channel, now)
        outcome = record_triage(rt, s, patient, data, contact, source=source, actor=actor, now=now, created=created)
        if not outcome.escalation_id:
            _enroll(rt, s, patient, data, now, replan=replan)
        if on_recorded is not None:
            on_recorded(s, patient, outcome.triage_id)
        s.commit()
        assert patient.id is not None
        steps = upcoming(s, patient.id)
    rt.wake()
    return replace(outcome, steps=steps)


def new_patient(data: TriageIn, phone: str | None, email: str | None, now: datetime) -> Patient:
    return Patient(**new_patient_values(data, phone, email, now))


def new_patient_values(data: TriageIn, phone: str | None, email: str | None, now: datetime) -> dict[str, Any]:
    """The columns a new patient starts with (a bulk import inserts these without building the object)."""
    return dict(
        name=data.name,
        phone=phone,
        email=email,
        channel=data.channel,
        timezone=data.timezone,
        language=data.language,
        reply_token=_reply_token(),
        created_at=now,
        updated_at=now,
    )


def record_triage(
    rt: Runtime,
    s: Session,
    patient: Patient,
    data: TriageIn,
    contact: Contact,
    *,
    source: str,
    actor: str,
    now: datetime,
    created: bool,
) -> TriageResult:
    """Record consent and answers, and escalate red flags (the caller enrolls when there are none). No commit;
    the result's steps are filled in by the caller after the commit."""
    flags = rt.intake.red_flags(data.answers)
    patient.onset_at = now - timedelta(weeks=data.answers.onset_weeks)
    s.flush()
    assert patient.id is not None
    _record_consent(s, patient, data, contact.phone, contact.email, source, now)
    triage = Triage(
        patient_id=patient.id,
        source=source,
        answers=data.answers.model_dump(),
        red_flags=[f.criterion for f in flags],
        disposition="escalated" if flags else "enrolled",
        created_at=now,
    )
    s.add(triage)
    s.flush()
    assert triage.id is not None
    audit.record(
        s,
        now,
        actor,
        "triage.submitted",
        f"patient:{patient.id}",
        triage_id=triage.id,
        created=created,
        red_flags=triage.red_flags,
    )
    escalation_id = None
    if flags:
        _cancel_program(s, patient.id, now, "red flag at triage")
        level, tier = _level_and_tier(rt, [f.criterion for f in flags])
        evidence = [
            {"text": f.evidence, "criterion": f.criterion, "source": f"triage.answers.{f.answer}"} for f in flags
        ]
        esc, _ = escalate(
            rt,
            s,
            patient,
            level=level,
            tier=tier,
            criteria=[f.criterion for f in flags],
            evidence=evidence,
            source="triage",
            now=now,
            triage_id=triage.id,
        )
        escalation_id = esc.id
    return TriageResult(
        patient.id, triage.id, triage.disposition, created, escalation_id, [f.criterion for f in flags], []
    )


def _match_patient(s: Session, phone: str | None, email: str | None) -> tuple[Patient | None, bool]:
    by_phone = s.exec(select(Patient).where(Patient.phone == phone)).first() if phone else None
    by_email = s.exec(select(Patient).where(Patient.email == email)).first() if email else None
    if by_phone and by_email and by_phone.id != by_email.id:
        raise InputError("email", "belongs to another patient than the phone number; check both", "taken")
    found = by_phone or by_email
    return found, found is None


def _reply_token() -> str:
    return "p" + secrets.token_hex(8)


def _record_consent(
    s: Session,
    patient: Patient,
    data: TriageIn,
    phone: str | None,
    email: str | None,
    source: str,
    now: datetime,
) -> None:
    assert patient.id is not None
    text = data.consent_text or DEFAULT_CONSENT_TEXT
    for channel, address in ((Channel.SMS, phone), (Channel.EMAIL, email)):
        if address:
            s.add(Consent(patient_id=patient.id, channel=channel, action="opt_in", source=source, text=text, at=now))
    if phone and patient.sms_state == "opted_out":
        patient.sms_state = "ok"  # a fresh, explicit consent at triage opts back in
    if email and patient.email_state == "opted_out":
        patient.email_state = "ok"


def _level_and_tier(rt: Runtime, criteria: list[str]) -> tuple[Level, Tier]:
    tier = most_serious(rt.detector.criteria[c].tier if c in rt.detector.criteria else Tier.ROUTINE for c in criteria)
    return level_of(tier), tier


def enroll(rt: Runtime, s: Session, patient: Patient, data: TriageIn, now: datetime) -> None:
    """Schedule the program for a patient whose triage raised nothing (no commit)."""
    _enroll(rt, s, patient, data, now)


def _enroll(rt: Runtime, s: Session, patient: Patient, data: TriageIn, now: datetime, *, replan: bool = False) -> None:
    """Store every applicable step as a scheduled row. Re-triage keeps the enrollment date: it adds steps the
    new answers call for and cancels unsent ones they no longer do; `replan` (a new time zone) moves the unsent
    ones to their local time in the new zone."""
    assert patient.id is not None
    if patient.enrolled_at is None:
        patient.enrolled_at = now
        patient.status = PatientStatus.ACTIVE if patient.status != PatientStatus.ESCALATED else patient.status
    enrolled_at = patient.enrolled_at
    tz = ZoneInfo(patient.timezone)
    window = Window(rt.settings.schedule.send_from, rt.settings.schedule.send_until)
    prefix = drafts.step_prefix(patient.id, enrolled_at)
    existing = {
        msg.dedupe_key: msg
        for msg in s.exec(
            select(Message).where(Message.patient_id == patient.id, col(Message.dedupe_key).startswith(prefix))
        )
    }
    wanted = {prefix + st.id: st for st in rt.program.steps_for(data.answers.for_program())}
    for key, msg in existing.items():
        if msg.status != MessageState.SCHEDULED:
            continue
        if key not in wanted:
            msg.status, msg.reason, msg.updated_at = MessageState.CANCELLED, "no longer applies after re-triage", now
            continue
        if msg.channel != patient.channel:
            msg.channel, msg.updated_at = patient.channel, now
        if replan:
            due = planned_send(wanted[key], enrolled_at, tz, window)
            if due != msg.due_at:
                msg.due_at, msg.expires_at = due, due + ttl_for(rt.settings, msg.kind, msg.urgent)
                msg.reason, msg.updated_at = "planned again for a new time zone", now
    for key, step in wanted.items():
        if key in existing:
            continue
        send_at = added_step_send(step, enrolled_at, tz, window, now)
        if send_at is None:
            continue  # a step added by re-triage whose day has passed is not sent late
        queue(s, rt.settings, drafts.program_step(patient.id, patient.channel, step, enrolled_at, send_at), now)


def _cancel_program(s: Session, patient_id: int, now: datetime, reason: str) -> None:
    for msg in s.exec(
        select(Message).where(
            Message.patient_id == patient_id,
            Message.status == MessageState.SCHEDULED,
            col(Message.kind).in_(PROGRAM_KINDS),
        )
    ):
        msg.status, msg.reason, msg.updated_at = MessageState.CANCELLED, reason, now


def upcoming(s: Session, patient_id: int, limit: int = 100) -> list[ScheduledStep]:
    rows = s.exec(
        select(Message)
        .where(Message.patient_id == patient_id)
        .order_by(col(Message.due_at), col(Message.id))
        .limit(limit)
    ).all()
    return [ScheduledStep(r.step_id or r.template, r.kind, r.channel, r.due_at, r.status) for r in rows]
