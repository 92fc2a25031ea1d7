"""How long each patient has been silent, kept on the patient row so that the digest and the dashboard's "Not
responding" filter read an index range instead of every check-in and reply (issue 14; bench/README.md).

A patient is not responding when their last two check-ins that went out at least REPLY_GRACE ago were both sent
at or after their last reply (or they never replied). Two columns keep that cheap:

- `patient.last_reply_at`: when their latest reply arrived (set by `replied`, called where a reply is matched to
  its patient);
- `patient.silent_since`: when the second check-in at or after that reply was sent, NULL before there are two
  (set by `checkins_sent` after the dispatcher records a batch, and by `replied`).

`silent_since` counts every check-in that was sent, so it is never later than the exact answer: a check-in the
provider later reports undelivered is still counted. `not_responding` therefore adds the exact test, evaluated
only for the patients the index range yields (a few rows each through ix_message_patient_id).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, literal_column, or_, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, SQLModel, col, func, select

from followup.core.vocab import NOT_FINISHED, WENT_OUT, MessageKind
from followup.models import Message, Patient

REPLY_GRACE = timedelta(hours=48)  # a check-in younger than this may still be answered
CHUNK = 500  # patient ids per statement (SQLite's bound-parameter limit is far above)
CANDIDATES = 200  # at most, patients with a silence tested per statement by newest_silent


def _second_checkin_since_reply() -> ColumnElement[datetime | None]:
    """When the second check-in sent at or after the patient's last reply went out (NULL if fewer than two)."""
    t = SQLModel.metadata.tables["message"]
    p = SQLModel.metadata.tables["patient"]
    return (
        select(t.c.sent_at)
        .where(
            t.c.patient_id == p.c.id,
            t.c.kind == MessageKind.CHECKIN,
            t.c.sent_at.is_not(None),
            or_(p.c.last_reply_at.is_(None), t.c.sent_at >= p.c.last_reply_at),
        )
        .order_by(t.c.sent_at)
        .limit(1)
        .offset(1)
        .scalar_subquery()
    )


def refresh(s: Session, patient_ids: Iterable[int], only_unset: bool = False) -> None:
    """Recompute `silent_since` for these patients (only where it is still NULL when `only_unset`: once two
    check-ins are unanswered, later ones do not move it)."""
    p = SQLModel.metadata.tables["patient"]
    ids = sorted(set(patient_ids))
    for i in range(0, len(ids), CHUNK):
        where = [p.c.id.in_(ids[i : i + CHUNK])]
        if only_unset:
            where.append(p.c.silent_since.is_(None))
        s.connection().execute(update(p).where(*where).values(silent_since=_second_checkin_since_reply()))


def replied(s: Session, patient_id: int | None, at: datetime) -> None:
    """A reply from this patient arrived at `at` (called where an inbound reply is matched to its patient)."""
    if patient_id is None:
        return
    p = SQLModel.metadata.tables["patient"]
    later = or_(p.c.last_reply_at.is_(None), p.c.last_reply_at < at)
    s.connection().execute(
        update(p).where(p.c.id == patient_id).values(last_reply_at=case((later, at), else_=p.c.last_reply_at))
    )
    refresh(s, [patient_id])


def checkins_sent(s: Session, patient_ids: Iterable[int]) -> None:
    """Check-ins to these patients went out (called by the dispatcher once per recorded batch)."""
    refresh(s, patient_ids, only_unset=True)


def rebuild(s: Session, patient_ids: Iterable[int]) -> None:
    """Both columns worked out again from the patients' replies and check-ins (what the migration's backfill does;
    tests and bench/scale_db.py use it after writing rows directly)."""
    p, i = SQLModel.metadata.tables["patient"], SQLModel.metadata.tables["inbound"]
    ids = sorted(set(patient_ids))
    latest = select(func.max(i.c.received_at)).where(i.c.patient_id == p.c.id).scalar_subquery()
    for n in range(0, len(ids), CHUNK):
        s.connection().execute(update(p).where(p.c.id.in_(ids[n : n + CHUNK])).values(last_reply_at=latest))
    refresh(s, ids)


def not_responding_clause(now: datetime) -> ColumnElement[bool]:
    """Patients still followed up whose last two check-ins older than REPLY_GRACE were both sent at or after their
    last reply: per status an index range on ix_patient_status_silent_since, then the exact count for those rows
    only."""
    return and_(
        col(Patient.silent_since).is_not(None),
        col(Patient.silent_since) <= now - REPLY_GRACE,
        col(Patient.status).in_(NOT_FINISHED),
        _unanswered(now) >= 2,
    )


def _unanswered(now: datetime) -> ColumnElement[int]:
    """How many check-ins older than REPLY_GRACE went out at or after the patient's last reply."""
    m = aliased(Message)
    return (
        select(func.count())
        .select_from(m)
        .where(
            col(m.patient_id) == Patient.id,
            m.kind == MessageKind.CHECKIN,
            col(m.status).in_(WENT_OUT),
            col(m.sent_at).is_not(None),
            col(m.sent_at) <= now - REPLY_GRACE,
            or_(col(Patient.last_reply_at).is_(None), col(m.sent_at) >= Patient.last_reply_at),
        )
        .scalar_subquery()
    )


def candidates(now: datetime, *where: ColumnElement[bool], before: int | None = None, limit: int = CANDIDATES) -> Any:
    """The next `limit` patients below `before`, newest first, whose silence began at least REPLY_GRACE before
    `now`: an index-only backward range on ix_patient_silent (id, silent_since) stopped by the LIMIT."""
    stmt = select(Patient.id).where(
        col(Patient.silent_since).is_not(None),
        col(Patient.status).in_([literal_column(f"'{st}'") for st in NOT_FINISHED]),
        col(Patient.silent_since) <= now - REPLY_GRACE,
        *where,
    )
    if before is not None:
        stmt = stmt.where(col(Patient.id) < before)
    return stmt.order_by(col(Patient.id).desc()).limit(limit)


def newest_silent(
    s: Session, now: datetime, n: int, *where: ColumnElement[bool], before: int | None = None
) -> list[int]:
    """The ids of up to `n` patients not responding at `now`, newest first (ids below `before`). The candidates
    come from ix_patient_silent (which holds only the followed-up patients with a silence) CANDIDATES at a time,
    newest first; each chunk gets the exact test by primary key, until `n` pass. So a page costs its rows, not
    every non-responder: as one query PostgreSQL tested every non-responder and sorted them (7,200 buffers at
    100,000 patients for a page of 50), or read and sorted every patient with a silence. The predicate is spelled
    with literals (models.SILENT_SQL) so that the planner can prove the index applies; the exact test names no
    status or silent_since, so that it can only go by primary key."""
    found: list[int | None] = []
    cursor = before
    while len(found) < n:
        # most candidates pass (about 2 in 3 in the bench): ask for half as many again as still wanted
        want = min(CANDIDATES, (n - len(found)) * 3 // 2 + 10)
        ids = [pid for pid in s.exec(candidates(now, *where, before=cursor, limit=want)).all() if pid]
        if ids:
            found += s.exec(
                select(Patient.id)
                .where(col(Patient.id).in_(ids), _unanswered(now) >= 2)
                .order_by(col(Patient.id).desc())
            ).all()
        if len(ids) < want:
            break
        cursor = ids[-1]
    return [pid for pid in found if pid is not None][:n]


def count(s: Session, now: datetime) -> int:
    """How many patients are not responding at `now` (the overview's figure)."""
    return int(s.exec(select(func.count()).select_from(Patient).where(not_responding_clause(now))).one())


def last_checkins(s: Session, patient_ids: list[int], now: datetime) -> dict[int, datetime]:
    """Each patient's latest check-in that went out at least REPLY_GRACE before `now` (the digest shows it)."""
    out: dict[int, datetime] = {}
    for i in range(0, len(patient_ids), CHUNK):
        rows = s.exec(
            select(Message.patient_id, func.max(Message.sent_at))
            .where(
                col(Message.patient_id).in_(patient_ids[i : i + CHUNK]),
                Message.kind == MessageKind.CHECKIN,
                col(Message.status).in_(WENT_OUT),
                col(Message.sent_at) <= now - REPLY_GRACE,
            )
            .group_by(col(Message.patient_id))
        ).all()
        out.update({pid: at for pid, at in rows if pid is not None and at is not None})
    return out
