"""Upcoming visits for staff: the booked appointments from the start of today (clinic time), grouped by day.
Read-only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlmodel import Session, SQLModel, col, select

from followup.core.vocab import AppointmentStatus
from followup.models import Appointment, Escalation, Patient
from followup.runtime import Runtime

T = TypeVar("T", bound=SQLModel)


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
        # The visits first (an index range on starts_at), then their escalations and patients by id: as one join,
        # PostgreSQL hashed the whole escalation table (142,262 rows at 300,000 patients, bench/README.md).
        booked = s.exec(
            select(Appointment)
            .where(
                Appointment.status == AppointmentStatus.BOOKED,
                Appointment.starts_at >= start.astimezone(UTC),
                Appointment.starts_at < end.astimezone(UTC),
            )
            .order_by(col(Appointment.starts_at))
        ).all()
        escalations = {e.id: e for e in _by_id(s, Escalation, {a.escalation_id for a in booked})}
        patients = {p.id: p for p in _by_id(s, Patient, {a.patient_id for a in booked})}
    by_day: dict[date, list[Visit]] = {}
    for a in booked:
        esc, patient = escalations.get(a.escalation_id), patients.get(a.patient_id)
        if esc is None or patient is None:  # as the inner join it replaces (the foreign keys make it never)
            continue
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


def _by_id(s: Session, model: type[T], ids: set[int]) -> list[T]:
    """Rows of `model` by primary key, in chunks that keep each IN list bounded."""
    ordered, out = sorted(ids), list[T]()
    for i in range(0, len(ordered), 1000):
        out += s.exec(select(model).where(col(model.id).in_(ordered[i : i + 1000]))).all()  # type: ignore[attr-defined]
    return out


def visits_this_week(days: list[VisitDay], today: date) -> int:
    """How many of the listed visits fall within the next seven days, today included (the overview tile)."""
    return sum(len(d.visits) for d in days if d.day < today + timedelta(days=7))
