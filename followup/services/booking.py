"""Booking from the escalation link: which slots a patient is offered, and holding + confirming one in one commit.

The calendar is pure (`offered_slots` takes `now`); the database decides races. Two partial unique indexes on
`appointment` (one active booking per slot, one per escalation) turn a lost race into `SlotTaken`, on PostgreSQL
and SQLite alike. The first statement of `book` and `cancel` is a conditional update of the escalation row, which
takes its row lock (PostgreSQL) or the write lock (SQLite), so two submits from one link run one after the other.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from followup.models import Appointment, Escalation, Patient
from followup.runtime import Runtime
from followup.services import audit
from followup.services.queue import queue
from followup.settings import Settings
from followup.sms import is_gsm7

BOOKABLE = ("open", "acknowledged", "booked")
REOPENED = {True: "acknowledged", False: "open"}  # after a cancellation, keyed by "was it acknowledged?"


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


# ---- the calendar (pure) ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calendar:
    opening: dict[int, list[tuple[time, time]]]  # weekday (Monday 0) -> local opening spans
    slot: timedelta
    horizon_days: int
    closed: frozenset[date]
    tz: ZoneInfo
    reserve: timedelta  # slots this soon are kept for urgent and emergency escalations
    notice: timedelta  # nothing starts sooner than this

    @classmethod
    def from_settings(cls, settings: Settings) -> Calendar:
        b = settings.booking
        return cls(
            opening=b.opening(),
            slot=timedelta(minutes=b.slot_minutes),
            horizon_days=b.horizon_days,
            closed=frozenset(b.closed_days),
            tz=ZoneInfo(settings.clinic.timezone),
            reserve=timedelta(hours=b.urgent_reserve_hours),
            notice=timedelta(minutes=b.min_notice_minutes),
        )


def calendar_slots(cal: Calendar, now: datetime) -> list[datetime]:
    """Every slot start (UTC) from `now + notice` to the end of the horizon, in opening hours, on open days.
    A local time that does not exist (the DST jump) is skipped; a repeated one (fall back) is its first instance."""
    today = now.astimezone(cal.tz).date()
    earliest = now + cal.notice
    out: list[datetime] = []
    for offset in range(cal.horizon_days):
        day = today + timedelta(days=offset)
        if day in cal.closed:
            continue
        for start, end in cal.opening.get(day.weekday(), []):
            at = datetime.combine(day, start)
            while at + cal.slot <= datetime.combine(day, end):
                local = at.replace(tzinfo=cal.tz)
                instant = local.astimezone(UTC)
                if instant.astimezone(cal.tz).replace(tzinfo=None) == at and instant >= earliest:
                    out.append(instant)
                at += cal.slot
    return out


def offered_slots(cal: Calendar, now: datetime, tier: str, taken: set[datetime]) -> list[datetime]:
    """Free slots for an escalation's tier: urgent and emergency get the earliest (the reserve) too; routine ones
    start after the reserve."""
    free = [s for s in calendar_slots(cal, now) if s not in taken]
    if tier in ("urgent", "emergency"):
        return free
    return [s for s in free if s >= now + cal.reserve]


DAYS = {
    "en": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "es": ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"],
}
MONTHS = {
    "en": [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
    "es": [
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ],
}


def day_text(day: date, language: str = "en") -> str:
    lang = language if language in DAYS else "en"
    if lang == "es":
        return f"{DAYS[lang][day.weekday()]} {day.day} de {MONTHS[lang][day.month - 1]}"
    return f"{DAYS[lang][day.weekday()]} {day.day} {MONTHS[lang][day.month - 1]}"


def when_text(at: datetime, tz: ZoneInfo, language: str = "en") -> str:
    """The time as "Tuesday 1 December, 09:30" in the clinic's zone (24-hour: no AM/PM in two languages)."""
    local = at.astimezone(tz)
    return f"{day_text(local.date(), language)}, {local:%H:%M}"


def gsm_safe(text: str) -> str:
    """Letters outside GSM-7 lose their accent ("sábado" -> "sabado"): one of them would halve an SMS."""
    out = []
    for ch in text:
        if not is_gsm7(ch):
            ch = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
        out.append(ch)
    return "".join(out)


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
        if esc.status in BOOKABLE:
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
        select(Appointment).where(Appointment.escalation_id == escalation_id, Appointment.status == "booked")
    ).first()


def _taken(s: Session, now: datetime, cal: Calendar) -> set[datetime]:
    until = now + timedelta(days=cal.horizon_days + 1)
    rows = s.exec(
        select(Appointment.starts_at).where(
            Appointment.status == "booked", Appointment.starts_at >= now, Appointment.starts_at <= until
        )
    ).all()
    return {_utc(r) for r in rows}


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


# ---- writing ------------------------------------------------------------------------------------------------


def book(rt: Runtime, escalation_id: int, starts_at: datetime, actor: str) -> Appointment:
    """Hold and confirm `starts_at` for the escalation in one transaction (moving an existing booking). Raises
    SlotTaken when another patient got there first, BookingClosed when the clinic closed the escalation."""
    now = rt.clock.now()
    starts_at = _utc(starts_at)
    cal = Calendar.from_settings(rt.settings)
    with rt.db.session() as s:
        esc = _take(s, escalation_id, now)
        current = _current(s, escalation_id)
        if current is not None and _utc(current.starts_at) == starts_at:
            return current  # the same form sent twice
        taken = _taken(s, now, cal) - ({_utc(current.starts_at)} if current else set())
        if starts_at not in offered_slots(cal, now, esc.tier, taken):
            raise SlotTaken("that time is no longer available")
        moved_from = None
        if current is not None:
            moved_from = _utc(current.starts_at)
            current.status, current.cancelled_at, current.updated_at = "cancelled", now, now
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
        esc.status, esc.booked_at, esc.updated_at = "booked", now, now
        patient = s.get(Patient, esc.patient_id)
        assert patient is not None
        others = _other_open(s, esc)
        if patient.status == "escalated" and not others:
            patient.status, patient.updated_at = "active", now
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


def cancel(rt: Runtime, escalation_id: int, actor: str) -> Appointment:
    """Cancel the escalation's booking; the escalation goes back to the clinic's queue."""
    now = rt.clock.now()
    with rt.db.session() as s:
        esc = _take(s, escalation_id, now)
        current = _current(s, escalation_id)
        if current is None:
            raise NothingBooked("there is no booked visit to cancel")
        current.status, current.cancelled_at, current.updated_at = "cancelled", now, now
        esc.status = REOPENED[esc.acknowledged_at is not None]
        esc.booked_at = None
        patient = s.get(Patient, esc.patient_id)
        assert patient is not None
        if patient.status == "active":
            patient.status, patient.updated_at = "escalated", now
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
        .where(col(Escalation.id) == escalation_id, col(Escalation.status).in_(BOOKABLE))
        .values(updated_at=now)
    )
    esc = s.get(Escalation, escalation_id)
    if esc is None:
        raise NoSuchEscalation("no such escalation")
    if not took.rowcount:
        raise BookingClosed("the clinic has closed this request")
    return esc


def _other_open(s: Session, esc: Escalation) -> bool:
    return (
        s.exec(
            select(Escalation.id).where(
                Escalation.patient_id == esc.patient_id,
                Escalation.id != esc.id,
                col(Escalation.status).in_(("open", "acknowledged")),
            )
        ).first()
        is not None
    )


def reachable_channel(patient: Patient) -> str | None:
    usable = {
        "sms": bool(patient.phone) and patient.sms_state == "ok",
        "email": bool(patient.email) and patient.email_state == "ok",
    }
    for ch in (patient.channel, "sms", "email"):
        if usable.get(ch):
            return ch
    return None


def _notify(
    rt: Runtime, s: Session, patient: Patient, esc: Escalation, appt: Appointment, event: str, now: datetime
) -> None:
    """Tell the patient (their channel, at once: they just acted) and the clinic (within its sending window)."""
    assert esc.id is not None and appt.id is not None and patient.id is not None
    tz = ZoneInfo(rt.settings.clinic.timezone)
    manage = rt.links.booking(esc.id)
    starts = _utc(appt.starts_at)
    channel = reachable_channel(patient)
    if channel is not None:
        context: dict[str, Any] = {
            "appointment": _when(starts, tz, patient.language, event),
            "manage_url": manage,
            "ics_url": f"{manage}/calendar.ics",
        }
        queue(
            s,
            rt.settings,
            now=now,
            dedupe_key=f"appt:{appt.id}:{event}:patient",
            channel=channel,
            kind="system",
            template="booking_cancelled" if event == "cancelled" else "booking_confirm",
            due_at=now,
            patient_id=patient.id,
            urgent=True,
            escalation_id=esc.id,
            context=context,
        )
    clinic = rt.settings.clinic
    targets = [("email", e) for e in clinic.oncall_email] or [("sms", n) for n in clinic.oncall_sms]
    notice = {
        "appointment": _when(starts, tz, "en", event),
        "escalation": {"id": esc.id, "tier": esc.tier},
        "escalation_url": f"{rt.settings.server.public_url}/dashboard/escalations/{esc.id}",
    }
    for ch, address in targets:
        queue(
            s,
            rt.settings,
            now=now,
            dedupe_key=f"appt:{appt.id}:{event}:clinic:{ch}:{address}",
            channel=ch,
            kind="notice",
            template="clinic_booking_notice",
            due_at=now,
            to=address,
            escalation_id=esc.id,
            context=notice,
        )


def ics(rt: Runtime, appt: Appointment) -> bytes:
    """The visit as an iCalendar file (an invite the patient's calendar app can add)."""
    from icalendar import Calendar as ICal
    from icalendar import Event

    clinic = rt.settings.clinic
    host = rt.settings.server.public_url.split("://", 1)[-1].split("/")[0]
    cal = ICal()
    cal.add("prodid", "-//followup//booking//EN")
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    event = Event()
    event.add("uid", f"appointment-{appt.id}@{host}")
    event.add("dtstamp", _utc(appt.updated_at))
    event.add("dtstart", _utc(appt.starts_at))
    event.add("dtend", _utc(appt.ends_at))
    event.add("summary", f"Visit at {clinic.name}")
    event.add("description", f"To change or cancel, use your booking link or call {clinic.phone}.")
    event.add("status", "CONFIRMED" if appt.status == "booked" else "CANCELLED")
    cal.add_component(event)
    return bytes(cal.to_ical())
