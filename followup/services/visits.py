"""Upcoming visits for staff: the booked appointments from the start of today (clinic time), grouped by day.
Read-only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import col, select

from followup.core.vocab import AppointmentStatus
from followup.models import Appointment, Escalation, Patient
from followup.runtime import Runtime


@dataclass(frozen=True)
class Visit:
    starts_at: datetime  # UTC
    ends_at: datetime
    appointment_id: int
    escalation_id: int
    tier: str
    escalation_status: str
    patient_id: int
    patient_name: str
    phone: str | None
    email: str | None
    booked_by: str


@dataclass(frozen=True)
class VisitDay:
    day: date  # clinic-local
    visits: list[Visit]


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def upcoming_visits(rt: Runtime, days: int = 28) -> list[VisitDay]:
    """Booked visits from the start of today to `days` days ahead, by clinic-local day, earliest first."""
    tz = ZoneInfo(rt.settings.clinic.timezone)
    today = rt.clock.now().astimezone(tz).date()
    start = datetime.combine(today, time.min, tzinfo=tz)
    end = start + timedelta(days=days)
    with rt.db.session() as s:
        rows = s.exec(
            select(Appointment, Escalation, Patient)
            .join(Escalation, col(Escalation.id) == Appointment.escalation_id)
            .join(Patient, col(Patient.id) == Appointment.patient_id)
            .where(
                Appointment.status == AppointmentStatus.BOOKED,
                Appointment.starts_at >= start.astimezone(UTC),
                Appointment.starts_at < end.astimezone(UTC),
            )
            .order_by(col(Appointment.starts_at))
        ).all()
    by_day: dict[date, list[Visit]] = {}
    for a, esc, patient in rows:
        assert a.id is not None
        starts = _utc(a.starts_at)
        visit = Visit(
            starts,
            _utc(a.ends_at),
            a.id,
            a.escalation_id,
            esc.tier,
            esc.status,
            a.patient_id,
            patient.name,
            patient.phone,
            patient.email,
            a.booked_by,
        )
        by_day.setdefault(starts.astimezone(tz).date(), []).append(visit)
    return [VisitDay(day, visits) for day, visits in by_day.items()]


def visits_this_week(days: list[VisitDay], today: date) -> int:
    """How many of the listed visits fall within the next seven days, today included (the overview tile)."""
    return sum(len(d.visits) for d in days if d.day < today + timedelta(days=7))
