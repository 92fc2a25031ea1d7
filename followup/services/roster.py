"""The clinic's patient list: search with status filters, including silence (unreachable patients, patients who
did not answer two check-ins in a row), and the staff's change of a patient's channel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, literal_column, or_
from sqlmodel import Session, col, func, select

from followup.core.paging import COUNT_CAP, Page, cut
from followup.core.storable import storable
from followup.core.vocab import CHANNELS, NOT_FINISHED, Channel, MessageState
from followup.models import Message, Patient
from followup.runtime import Runtime
from followup.services import audit, silence

REPLY_GRACE = silence.REPLY_GRACE
FILTERS = {
    "active": "Active",
    "paused": "Paused",
    "escalated": "Escalated",
    "opted_out": "Opted out",
    "unreachable": "Unreachable",
    "not_responding": "Not responding",
    "unenrolled": "Unenrolled",
    "completed": "Completed",
}


# "Not responding" is counted up to here ("100+"): each candidate's test reads its check-ins (about nine pages), so
# counted to COUNT_CAP it read every non-responder at each view (21,012 buffers at 300,000 patients,
# bench/README.md). The overview shows the whole number, recounted once an hour.
SILENT_COUNT_CAP = 100


def count_cap(status: str | None) -> int:
    """How far the list's total is counted for a filter."""
    return SILENT_COUNT_CAP if status == "not_responding" else COUNT_CAP


class RosterError(ValueError):
    """A staff request that cannot be done; the message says why."""


def unreachable_clause() -> ColumnElement[bool]:
    """Still followed up, but no channel works (opted out everywhere, invalid number, bounced email). Spelled with
    literals as the predicate of ix_patient_unreachable (models.UNREACHABLE_SQL), so PostgreSQL reads that index:
    bound parameters would hide from the planner that the query implies it, and it would filter every patient in
    follow-up (6,219 at 100,000 patients, bench/README.md)."""
    ok: ColumnElement[str] = literal_column("'ok'")
    return and_(
        col(Patient.status).in_([literal_column(f"'{st}'") for st in NOT_FINISHED]),
        or_(col(Patient.phone).is_(None), col(Patient.sms_state) != ok),
        or_(col(Patient.email).is_(None), col(Patient.email_state) != ok),
    )


def opted_out_clause() -> ColumnElement[bool]:
    return or_(col(Patient.sms_state) == "opted_out", col(Patient.email_state) == "opted_out")


@dataclass(frozen=True)
class Silent:
    patient_id: int
    last_checkin_at: datetime
    last_reply_at: datetime | None


def non_responders(s: Session, now: datetime) -> list[Silent]:
    """Patients who did not answer their last two check-ins (the later one at least REPLY_GRACE old): no reply of
    any kind since the earlier of the two was sent. Read through the maintained `silent_since`
    (services/silence.py), so the cost follows the answer, not the tables."""
    rows = s.exec(
        select(Patient.id, Patient.last_reply_at).where(silence.not_responding_clause(now)).order_by(col(Patient.id))
    ).all()
    ids = [pid for pid, _ in rows if pid is not None]
    last = silence.last_checkins(s, ids, now)
    out = [Silent(pid, last[pid], reply) for pid, reply in rows if pid is not None and pid in last]
    return sorted(out, key=lambda x: x.last_checkin_at)


def search(
    rt: Runtime, q: str | None, status: str | None, limit: int = 50, before: int | None = None
) -> tuple[int, Page[Patient]]:
    """Patients matching a name, number or email fragment and one of FILTERS, newest first, a page of `limit`
    with ids below `before` (keyset: core/paging.py). The total is counted up to count_cap(status) + 1."""
    now = rt.clock.now()
    q = storable(q or "")  # a NUL in a search box must not reach PostgreSQL
    if status == "not_responding":
        return _not_responding(rt, q, now, limit, before)
    with rt.db.session() as s:
        stmt = select(Patient)
        if q.strip():
            stmt = stmt.where(matches(q))
        if status == "opted_out":
            stmt = stmt.where(opted_out_clause())
        elif status == "unreachable":
            stmt = stmt.where(unreachable_clause())
        elif status:
            stmt = stmt.where(Patient.status == status)
        total = s.exec(select(func.count()).select_from(stmt.limit(count_cap(status) + 1).subquery())).one()
        if before is not None:
            stmt = stmt.where(col(Patient.id) < before)
        rows = s.exec(stmt.order_by(col(Patient.id).desc()).limit(limit + 1)).all()
        return int(total), cut(rows, limit, lambda p: p.id)


def _not_responding(rt: Runtime, q: str, now: datetime, limit: int, before: int | None) -> tuple[int, Page[Patient]]:
    """The "Not responding" filter: newest first through silence.newest_silent, counted up to SILENT_COUNT_CAP."""
    where = [matches(q)] if q.strip() else []
    with rt.db.session() as s:
        newest = silence.newest_silent(s, now, max(SILENT_COUNT_CAP, limit) + 1, *where)
        total = min(len(newest), SILENT_COUNT_CAP + 1)
        # The first page is the count's head; a later one reads on from its cursor
        ids = newest[: limit + 1] if before is None else silence.newest_silent(s, now, limit + 1, *where, before=before)
        rows = s.exec(select(Patient).where(col(Patient.id).in_(ids)).order_by(col(Patient.id).desc())).all()
        return total, cut(rows, limit, lambda x: x.id)


def matches(q: str) -> ColumnElement[bool]:
    """A name, email or number fragment (3+ digits for a number). On PostgreSQL trigram indexes serve the
    `LIKE '%...%'` on each (migration d1a5c0e2f3b4)."""
    like = f"%{q.strip().lower()}%"
    digits = "".join(ch for ch in q if ch.isdigit())
    conds = [func.lower(Patient.name).like(like), col(Patient.email).like(like)]
    if len(digits) >= 3:
        conds.append(col(Patient.phone).like(f"%{digits}%"))
    return or_(*conds)


def change_channel(rt: Runtime, patient_id: int, channel: str, actor: str) -> Patient:
    """Move a patient's follow-up to the other channel (scheduled messages follow) when it can be used."""
    if channel not in CHANNELS:
        raise RosterError("channel must be sms or email")
    now = rt.clock.now()
    with rt.db.session() as s:
        p = s.get(Patient, patient_id)
        if p is None:
            raise LookupError(f"patient {patient_id}")
        address, state = (p.phone, p.sms_state) if channel == Channel.SMS else (p.email, p.email_state)
        if not address:
            raise RosterError(f"the patient has no {'phone number' if channel == 'sms' else 'email address'}")
        if state != "ok":
            raise RosterError(f"{channel} cannot be used: {state.replace('_', ' ')}")
        if p.channel == channel:
            return p
        before, p.channel, p.updated_at = p.channel, channel, now
        for msg in s.exec(
            select(Message).where(
                Message.patient_id == patient_id, Message.status == MessageState.SCHEDULED, Message.channel == before
            )
        ):
            msg.channel, msg.updated_at = channel, now
        audit.record(s, now, actor, "patient.channel", f"patient:{patient_id}", was=before, now=channel)
        s.commit()
        return p
