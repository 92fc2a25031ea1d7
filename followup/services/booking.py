"""Booking from the escalation link: which slots a patient is offered, and holding + confirming one in one commit.

The calendar is pure (`offered_slots` takes `now`); the database decides races. Two partial unique indexes on
`appointment` (one active booking per slot, one per escalation) turn a lost race into `SlotTaken`, on PostgreSQL
and SQLite alike. The first statement of `book` and `cancel` is a conditional update of the escalation row, which
takes its row lock (PostgreSQL) or the write lock (SQLite), so two submits from one link run one after the other.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from followup.content.dates import when_text
from followup.content.ics import visit_ics
from followup.content.pages import page_texts
from followup.core.calendar import Calendar, offered_slots
from followup.core.sms import gsm_safe
from followup.core.vocab import NOT_CLOSED, AppointmentStatus, Channel, EscalationStatus, PatientStatus
from followup.models import Appointment, Escalation, Patient
from followup.runtime import Runtime
from followup.services import audit, drafts
from followup.services.escalation import has_active_escalation
from followup.services.queue import queue
from followup.services.reachability import reachable_channel

# after a cancellation, keyed by "was it acknowledged?"
REOPENED = {True: EscalationStatus.ACKNOWLEDGED, False: EscalationStatus.OPEN}


class BookingError(Exception):
    """Base of the errors below; the message is safe to show to the patient."""


class NoSuchEscalation(BookingError):
    pass


class BookingClosed(BookingError):
    """The escalation was closed by the clinic: nothing to book from this link any more."""


class SlotTaken(BookingError):
    """Someone else booked that slot a moment ago (or it is no longer offered)."""


class NothingBooked(BookingError):
    pass


def _when(at: datetime, tz: ZoneInfo, language: str, event: str) -> dict[str, str]:
    text = when_text(at, tz, language)
    return {"when": text, "when_sms": gsm_safe(text), "event": event}


# ---- reading ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BookingView:
    escalation_id: int
    tier: str
    status: str
    language: str
    appointment: Appointment | None
    slots: list[datetime]
    reserve_until: datetime  # slots before this are the urgent reserve


def link(rt: Runtime, escalation_id: int) -> str:
    """The patient's booking link for an escalation (as its messages carry it)."""
    with rt.db.session() as s:
        esc = s.get(Escalation, escalation_id)
    if esc is None:
        raise NoSuchEscalation("no such escalation")
    return rt.links.booking(escalation_id, esc.nonce)


def escalation_for_token(rt: Runtime, token: str) -> int | None:
    """The escalation a booking link opens: a valid, unexpired signature over its id and its own nonce, so a link
    whose escalation was erased opens nothing, whichever escalation holds that id now (issue 11, finding 4)."""
    bound = rt.links.booking_escalation(token) if len(token) <= 200 else None
    if bound is None:
        return None
    escalation_id, nonce = bound
    with rt.db.session() as s:
        esc = s.get(Escalation, escalation_id)
    if esc is None or not hmac.compare_digest(esc.nonce, nonce):
        return None
    return escalation_id


def view(rt: Runtime, escalation_id: int) -> BookingView:
    """What the booking page shows for one escalation: its appointment if any, and the slots it may take."""
    now = rt.clock.now()
    cal = Calendar.from_settings(rt.settings)
    with rt.db.session() as s:
        esc = s.get(Escalation, escalation_id)
        if esc is None:
            raise NoSuchEscalation("no such escalation")
        patient = s.get(Patient, esc.patient_id)
        current = _current(s, escalation_id)
        slots: list[datetime] = []
        if esc.status in NOT_CLOSED:
            slots = offered_slots(cal, now, esc.tier, _taken(s, now, cal))
    return BookingView(
        escalation_id=escalation_id,
        tier=esc.tier,
        status=esc.status,
        language=patient.language if patient else "en",
        appointment=current,
        slots=slots,
        reserve_until=now + cal.reserve,
    )


def appointment_for(rt: Runtime, escalation_id: int) -> Appointment | None:
    with rt.db.session() as s:
        return _current(s, escalation_id)


def _current(s: Session, escalation_id: int) -> Appointment | None:
    return s.exec(
        select(Appointment).where(
            Appointment.escalation_id == escalation_id, Appointment.status == AppointmentStatus.BOOKED
        )
    ).first()


def _taken(s: Session, now: datetime, cal: Calendar) -> set[datetime]:
    until = now + timedelta(days=cal.horizon_days + 1)
    rows = s.exec(
        select(Appointment.starts_at).where(
            Appointment.status == AppointmentStatus.BOOKED, Appointment.starts_at >= now, Appointment.starts_at <= until
        )
    ).all()
    return {_utc(r) for r in rows}


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


# ---- writing ------------------------------------------------------------------------------------------------


def book(rt: Runtime, escalation_id: int, starts_at: datetime, actor: str | None = None) -> Appointment:
    """Hold and confirm `starts_at` for the escalation in one transaction (moving an existing booking). Raises
    SlotTaken when another patient got there first, BookingClosed when the clinic closed the escalation. The
    actor is the escalation's patient unless a member of staff is named."""
    now = rt.clock.now()
    starts_at = _utc(starts_at)
    cal = Calendar.from_settings(rt.settings)
    with rt.db.session() as s:
        esc = _take(s, escalation_id, now)
        actor = actor or f"patient:{esc.patient_id}"
        current = _current(s, escalation_id)
        if current is not None and _utc(current.starts_at) == starts_at:
            return current  # the same form sent twice
        taken = _taken(s, now, cal) - ({_utc(current.starts_at)} if current else set())
        if starts_at not in offered_slots(cal, now, esc.tier, taken):
            raise SlotTaken("that time is no longer available")
        moved_from = None
        if current is not None:
            moved_from = _utc(current.starts_at)
            current.status, current.cancelled_at, current.updated_at = AppointmentStatus.CANCELLED, now, now
            s.flush()  # the old slot is free before the new row is checked against the unique index
        appt = Appointment(
            escalation_id=escalation_id,
            patient_id=esc.patient_id,
            starts_at=starts_at,
            ends_at=starts_at + cal.slot,
            booked_by=actor,
            created_at=now,
            updated_at=now,
        )
        s.add(appt)
        try:
            s.flush()
        except IntegrityError:
            s.rollback()
            raise SlotTaken("that time was just taken") from None
        assert appt.id is not None
        esc.status, esc.booked_at, esc.updated_at = EscalationStatus.BOOKED, now, now
        patient = s.get(Patient, esc.patient_id)
        assert patient is not None
        others = has_active_escalation(s, esc.patient_id, besides=escalation_id)
        if patient.status == PatientStatus.ESCALATED and not others:
            patient.status, patient.updated_at = PatientStatus.ACTIVE, now
        action = "appointment.moved" if moved_from else "appointment.booked"
        audit.record(
            s,
            now,
            actor,
            action,
            f"escalation:{escalation_id}",
            appointment_id=appt.id,
            starts_at=starts_at.isoformat(),
            moved_from=moved_from.isoformat() if moved_from else None,
        )
        event = "moved" if moved_from else "booked"
        _notify(rt, s, patient, esc, appt, event, now)
        s.commit()
    rt.wake()
    return appt


def cancel(rt: Runtime, escalation_id: int, actor: str | None = None) -> Appointment:
    """Cancel the escalation's booking; the escalation goes back to the clinic's queue. The actor is the
    escalation's patient unless a member of staff is named."""
    now = rt.clock.now()
    with rt.db.session() as s:
        esc = _take(s, escalation_id, now)
        actor = actor or f"patient:{esc.patient_id}"
        current = _current(s, escalation_id)
        if current is None:
            raise NothingBooked("there is no booked visit to cancel")
        current.status, current.cancelled_at, current.updated_at = AppointmentStatus.CANCELLED, now, now
        esc.status = REOPENED[esc.acknowledged_at is not None]
        esc.booked_at = None
        patient = s.get(Patient, esc.patient_id)
        assert patient is not None
        if patient.status == PatientStatus.ACTIVE:
            patient.status, patient.updated_at = PatientStatus.ESCALATED, now
        audit.record(
            s,
            now,
            actor,
            "appointment.cancelled",
            f"escalation:{escalation_id}",
            appointment_id=current.id,
            starts_at=_utc(current.starts_at).isoformat(),
        )
        _notify(rt, s, patient, esc, current, "cancelled", now)
        s.commit()
    rt.wake()
    return current


def _take(s: Session, escalation_id: int, now: datetime) -> Escalation:
    """Lock the escalation row (the first statement of the transaction) if it can still be booked."""
    took = s.exec(
        update(Escalation)
        .where(col(Escalation.id) == escalation_id, col(Escalation.status).in_(NOT_CLOSED))
        .values(updated_at=now)
    )
    esc = s.get(Escalation, escalation_id)
    if esc is None:
        raise NoSuchEscalation("no such escalation")
    if not took.rowcount:
        raise BookingClosed("the clinic has closed this request")
    return esc


def _notify(
    rt: Runtime, s: Session, patient: Patient, esc: Escalation, appt: Appointment, event: str, now: datetime
) -> None:
    """Tell the patient (their channel, at once: they just acted) and the clinic (within its sending window)."""
    assert esc.id is not None and appt.id is not None and patient.id is not None
    tz = ZoneInfo(rt.settings.clinic.timezone)
    manage = rt.links.booking(esc.id, esc.nonce)
    starts = _utc(appt.starts_at)
    channel = reachable_channel(patient)
    if channel is not None:
        context: dict[str, Any] = {
            "appointment": _when(starts, tz, patient.language, event),
            "manage_url": manage,
            "ics_url": f"{manage}/calendar.ics",
        }
        draft = drafts.booking_confirmation(appt, esc, event, patient.id, channel, context, now)
        queue(s, rt.settings, draft, now)
    clinic = rt.settings.clinic
    targets = [(Channel.EMAIL, e) for e in clinic.oncall_email] or [(Channel.SMS, n) for n in clinic.oncall_sms]
    notice = {
        "appointment": _when(starts, tz, "en", event),
        "escalation": {"id": esc.id, "tier": esc.tier},
        "escalation_url": rt.links.escalation(esc.id),
    }
    for ch, address in targets:
        queue(s, rt.settings, drafts.booking_notice(appt, esc, event, ch, address, notice, now), now)


def ics(rt: Runtime, appt: Appointment) -> bytes:
    """The visit as an iCalendar file (an invite the patient's calendar app can add)."""
    assert appt.id is not None
    host = rt.settings.server.public_url.split("://", 1)[-1].split("/")[0]
    with rt.db.session() as s:
        patient = s.get(Patient, appt.patient_id)
        language = patient.language if patient is not None else "en"
    words = page_texts(rt.settings.clinic.templates, language)["ics"]
    clinic = {"clinic": rt.settings.clinic.name, "phone": rt.settings.clinic.phone}
    return visit_ics(
        uid=f"appointment-{appt.id}@{host}",
        stamp=_utc(appt.updated_at),
        starts=_utc(appt.starts_at),
        ends=_utc(appt.ends_at),
        summary=words["summary"].format(**clinic),
        description=words["description"].format(**clinic),
        language=language,
        cancelled=appt.status != AppointmentStatus.BOOKED,
    )
