"""The overview's rollup: its figures per clinic-local day in `OverviewDay`, so that a page view reads a few
dozen rows instead of every message, reply and escalation of eight weeks.

A day is computed once it is closed (its last check-in's reply window is over: nothing can change its figures any
more) and kept; the days still open (the last four or so) are worked out at each view from their own rows, which
indexed range scans find. The `overview` job (followup/jobs.py) computes closed days ahead of the first view and
refreshes the counts kept whole (patients ever enrolled, non-responders); a page view also stores any closed day it
had to compute.
The rules are core.figures.tally's, the same as the page used before (tests/test_rollup.py compares the two).
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnClause, delete, literal_column
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from followup.core.figures import REPLY_WINDOW, Rows, Tally, day_of, reply_mark, tally, weeks_to
from followup.core.vocab import WENT_OUT
from followup.models import Escalation, Inbound, Message, OverviewDay, Patient
from followup.runtime import Runtime
from followup.services import silence

log = logging.getLogger("followup.rollup")
CLOSED = "closed"  # the figure that marks a day as final
TOTALS = date(1970, 1, 1)  # the row day of the figures that are not by day (`enrolled`)
ENROLLED, SILENT = "enrolled", "non_responders"
# The job (every ten minutes) recounts the non-responders in its run within this many minutes past the hour: the
# figure is at most about an hour old (a view before any count counts at once).
SILENT_MINUTES = 10
# The partial indexes' predicates, as literals (models.partial): see ix_message_checkin_sent and ix_message_failed.
CHECKIN: ColumnClause[str] = literal_column("'checkin'")
FAILED: tuple[ColumnClause[str], ...] = (literal_column("'failed'"), literal_column("'undelivered'"))


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz)


def closed(day: date, tz: ZoneInfo, now: datetime) -> bool:
    """Nothing can change the day's figures any more: it is over, and so is the reply window of its check-ins."""
    return local_midnight(day + timedelta(days=1), tz) + REPLY_WINDOW <= now


def compute_days(s: Session, days: Sequence[date], tz: ZoneInfo, now: datetime) -> Tally:
    """The figures of `days` (clinic-local) from their own rows: one range read per table over first..last."""
    if not days:
        return {}
    start, end = local_midnight(min(days), tz), local_midnight(max(days) + timedelta(days=1), tz)
    escalations = s.exec(
        select(Escalation.created_at, Escalation.tier).where(
            Escalation.created_at >= start, Escalation.created_at < end
        )
    ).all()
    checkins = s.exec(
        select(Message.patient_id, Message.sent_at).where(
            col(Message.kind) == CHECKIN,
            col(Message.sent_at) >= start,
            col(Message.sent_at) < min(end, now),
            col(Message.status).in_(WENT_OUT),
        )
    ).all()
    failed = s.exec(
        select(Message.updated_at).where(
            col(Message.status).in_(FAILED), col(Message.updated_at) >= start, col(Message.updated_at) < end
        )
    ).all()
    inbound = s.exec(
        select(Inbound.patient_id, Inbound.received_at, Inbound.level, Inbound.meta).where(
            col(Inbound.received_at) >= start,
            col(Inbound.received_at) < end + REPLY_WINDOW,  # answers to the last day's check-ins
            col(Inbound.patient_id).is_not(None),
        )
    ).all()
    replies = [(pid, at, reply_mark(level, meta)) for pid, at, level, meta in inbound if pid is not None]
    rows: Rows[object] = Rows({}, 0, 0, 0, list(escalations), [], list(checkins), list(failed), replies, {})
    counted = tally(rows, tz, now, day_of)
    # Replies after the last day are only there to answer its check-ins: their own day is not counted here.
    return {d: counted.get(d, Counter()) for d in days}


def stored_days(s: Session, first: date, last: date) -> Tally:
    """The closed days between `first` and `last` kept in the rollup."""
    rows = s.exec(select(OverviewDay).where(OverviewDay.day >= first, OverviewDay.day <= last)).all()
    out: Tally = {}
    for r in rows:
        out.setdefault(r.day, Counter())[r.figure] = r.n
    return {day: figures for day, figures in out.items() if figures.get(CLOSED)}


def store_closed(rt: Runtime, figures: Tally, tz: ZoneInfo, now: datetime) -> int:
    """Keep the closed days among `figures`; another process storing the same day first is fine."""
    done = [(d, f) for d, f in figures.items() if closed(d, tz, now)]
    if not done:
        return 0
    with rt.db.session() as s:
        s.exec(delete(OverviewDay).where(col(OverviewDay.day).in_([d for d, _ in done])))
        for day, f in done:
            s.add_all(OverviewDay(day=day, figure=k, n=n) for k, n in {**f, CLOSED: 1}.items() if n)
        try:
            s.commit()
        except IntegrityError:
            log.info("overview days already stored by another process")
            return 0
    return len(done)


def figures_for(rt: Runtime, first: date, now: datetime) -> Tally:
    """The figures of every day from `first` to today: stored ones, and the rest computed (closed ones stored)."""
    tz = ZoneInfo(rt.settings.clinic.timezone)
    today = day_of(now, tz)
    days = [first + timedelta(days=i) for i in range((today - first).days + 1)]
    with rt.db.session() as s:
        stored = stored_days(s, first, today)
        missing = [d for d in days if d not in stored]
        fresh = compute_days(s, missing, tz, now)
    store_closed(rt, fresh, tz, now)
    return {**stored, **fresh}


def enrolled(rt: Runtime) -> int:
    """Patients ever enrolled, as the job last counted them (counted now if it has not run yet)."""
    return _total(rt, ENROLLED, _count_enrolled)


def silent(rt: Runtime) -> int:
    """Patients who did not answer their last two check-ins, as the job last counted them (now if it has not run):
    the count reads every followed-up patient's check-ins, too much for each view at a large cohort."""
    return _total(rt, SILENT, lambda s: silence.count(s, rt.clock.now()))


def _count_enrolled(s: Session) -> int:
    return int(s.exec(select(func.count()).where(col(Patient.enrolled_at).is_not(None))).one())


def _total(rt: Runtime, figure: str, count: Callable[[Session], int]) -> int:
    with rt.db.session() as s:
        kept = s.exec(select(OverviewDay.n).where(OverviewDay.day == TOTALS, OverviewDay.figure == figure)).first()
    return kept if kept is not None else refresh_total(rt, figure, count)


def refresh_total(rt: Runtime, figure: str, count: Callable[[Session], int]) -> int:
    """Count one of the TOTALS; written only when it changed (the job runs often, the simulator's every ten
    virtual minutes: a commit each time was a tenth of its run)."""
    with rt.db.session() as s:
        n = count(s)
        kept = s.exec(select(OverviewDay.n).where(OverviewDay.day == TOTALS, OverviewDay.figure == figure)).first()
        if kept == n:
            return n
        row = s.get(OverviewDay, (TOTALS, figure)) or OverviewDay(day=TOTALS, figure=figure, n=n)
        row.n = n
        s.add(row)
        with contextlib.suppress(IntegrityError):  # another process counted at the same moment
            s.commit()
    return n


def closed_days(s: Session, first: date, last: date) -> set[date]:
    """The days between `first` and `last` whose figures are kept (their `closed` mark; no rows loaded)."""
    return set(
        s.exec(
            select(col(OverviewDay.day)).where(
                OverviewDay.day >= first, OverviewDay.day <= last, OverviewDay.figure == CLOSED
            )
        ).all()
    )


def refresh(rt: Runtime, weeks: int = 8) -> int:
    """The `overview` job: compute and keep the closed days of the last `weeks` weeks not kept yet, and count the
    patients enrolled; the non-responders only in the run that falls in the first SILENT_MINUTES of each hour (their
    count reads every silent patient's check-ins: at every run, the job's cost grew with the cohort). Returns the
    days stored."""
    now = rt.clock.now()
    tz = ZoneInfo(rt.settings.clinic.timezone)
    first = weeks_to(now, tz, weeks)[0]
    today = day_of(now, tz)
    with rt.db.session() as s:
        kept = closed_days(s, first, today)
        missing = [first + timedelta(days=i) for i in range((today - first).days + 1)]
        missing = [d for d in missing if d not in kept and closed(d, tz, now)]
        fresh = compute_days(s, missing, tz, now)
    refresh_total(rt, ENROLLED, _count_enrolled)
    if now.minute < SILENT_MINUTES:
        refresh_total(rt, SILENT, lambda s: silence.count(s, now))
    return store_closed(rt, fresh, tz, now)
