"""Upcoming visits for staff: the booked appointments from the start of today (clinic time), grouped by day, a
page at a time (keyset on their start). Read-only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement
from sqlmodel import Session, SQLModel, col, func, select

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


PAGE = 100  # visits per page: the list is read in pages so that its cost does not follow the clinic's bookings


@dataclass(frozen=True)
class VisitPage:
    """A page of upcoming visits by day, with the cursors of its neighbours (None where there is none)."""

    days: list[VisitDay]
    next_after: int | None  # `after` of the later page: the last visit shown
    prev_before: int | None  # `before` of the earlier page: the first visit shown


def upcoming_visits(
    rt: Runtime, days: int = 28, limit: int = PAGE, after: int | None = None, before: int | None = None
) -> VisitPage:
    """Booked visits from the start of today to `days` days ahead, by clinic-local day, earliest first: `limit` of
    them, after the visit `after` or before the visit `before` (keyset on starts_at, which is unique among booked
    visits: uq_appointment_slot_booked)."""
    tz = ZoneInfo(rt.settings.clinic.timezone)
    start, end = _horizon(rt, tz, days)
    booked_range = (Appointment.status == AppointmentStatus.BOOKED, Appointment.starts_at < end)
    with rt.db.session() as s:
        cursor = _starts_at(s, after if after is not None else before)
        # The visits first (an index range on starts_at), then their escalations and patients by id: as one join,
        # PostgreSQL hashed the whole escalation table (142,262 rows at 300,000 patients, bench/README.md).
        stmt = select(Appointment).where(*booked_range, Appointment.starts_at >= start)
        if before is not None and cursor is not None:
            found = s.exec(
                stmt.where(Appointment.starts_at < cursor).order_by(col(Appointment.starts_at).desc()).limit(limit)
            ).all()
            booked = list(reversed(found))
        else:
            if after is not None and cursor is not None:
                stmt = stmt.where(Appointment.starts_at > cursor)
            booked = list(s.exec(stmt.order_by(col(Appointment.starts_at)).limit(limit)).all())
        escalations = {e.id: e for e in _by_id(s, Escalation, {a.escalation_id for a in booked})}
        patients = {p.id: p for p in _by_id(s, Patient, {a.patient_id for a in booked})}
        earlier = bool(booked) and _any(
            s, *booked_range, Appointment.starts_at >= start, Appointment.starts_at < booked[0].starts_at
        )
        later = bool(booked) and _any(s, *booked_range, Appointment.starts_at > booked[-1].starts_at)
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
    return VisitPage(
        [VisitDay(day, visits) for day, visits in by_day.items()],
        booked[-1].id if later else None,
        booked[0].id if earlier else None,
    )


def visits_this_week(rt: Runtime) -> int:
    """How many visits are booked from the start of today for seven days (the overview tile): an index-only count,
    not the visits themselves."""
    start, end = _horizon(rt, ZoneInfo(rt.settings.clinic.timezone), 7)
    with rt.db.session() as s:
        return int(
            s.exec(
                select(func.count()).where(
                    Appointment.status == AppointmentStatus.BOOKED,
                    Appointment.starts_at >= start,
                    Appointment.starts_at < end,
                )
            ).one()
        )


def _horizon(rt: Runtime, tz: ZoneInfo, days: int) -> tuple[datetime, datetime]:
    """From the start of today (clinic time) to `days` days ahead, in UTC."""
    today = rt.clock.now().astimezone(tz).date()
    start = datetime.combine(today, time.min, tzinfo=tz)
    return start.astimezone(UTC), (start + timedelta(days=days)).astimezone(UTC)


def _starts_at(s: Session, appointment_id: int | None) -> datetime | None:
    """When the visit a cursor names starts (None for no cursor or an unknown id: the first page)."""
    if appointment_id is None:
        return None
    a = s.get(Appointment, appointment_id)
    return a.starts_at if a is not None else None


def _any(s: Session, *where: ColumnElement[bool] | bool) -> bool:
    return s.exec(select(Appointment.id).where(*where).limit(1)).first() is not None


def _by_id(s: Session, model: type[T], ids: set[int]) -> list[T]:
    """Rows of `model` by primary key, in chunks that keep each IN list bounded."""
    ordered, out = sorted(ids), list[T]()
    for i in range(0, len(ordered), 1000):
        out += s.exec(select(model).where(col(model.id).in_(ordered[i : i + 1000]))).all()  # type: ignore[attr-defined]
    return out
