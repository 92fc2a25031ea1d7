"""The overview's rollup: its figures per clinic-local day in `OverviewDay`, so that a page view reads a few dozen rows
instead of every message, reply and escalation of eight weeks.

A day is computed once it is closed (its last check-in's reply window is over: nothing can change its figures any
more) and kept. The days still open (the last four or so) are kept too, as the job last saw them (marked OPEN, as at
OPEN_AT); a page view adds what changed since (`since_snapshot`: the escalations, failures and replies from then on,
and the few check-ins whose answer or window changed), so it reads minutes of rows, not days, and still says what a
direct count says. The `overview` job (followup/jobs.py) computes closed days ahead of the first view, rewrites the
open days' snapshot and, once an hour, recounts the figures kept whole (patients ever enrolled, non-responders); a
page view also stores any closed day it had to compute, and works a day out from its rows only when neither is kept
(before the job's first run, or when its snapshot is older than SNAPSHOT_STALE). The job's 10-minute runs carry the
snapshot forward the same way (last snapshot + what changed since); its run in the first minutes of every
REBUILD_HOURS-th hour rebuilds it from the rows, which corrects what carrying forward cannot see: a reply stored
before a run but read (its trend set) after it, a failed message whose `updated_at` moves again, a row committed
after a run but dated before it. Until then (at most REBUILD_HOURS) the open days' figures may be off by those rows;
closed days are always computed whole. The rules are core.figures.tally's, the same as the page used before
(tests/test_scale.py compares the two).
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnClause, ColumnElement, delete, insert, literal_column
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from followup.core.figures import (
    ANSWERED,
    ASKED,
    ESCALATION,
    FAILURES,
    PENDING,
    REPLY_WINDOW,
    TREND,
    Rows,
    Tally,
    day_of,
    reply_mark,
    tally,
    weeks_to,
)
from followup.core.vocab import WENT_OUT, Trend
from followup.models import Escalation, Inbound, Message, OverviewDay, Patient
from followup.runtime import Runtime
from followup.services import silence

log = logging.getLogger("followup.rollup")
CHUNK = 1000  # ids per IN list
CLOSED = "closed"  # the figure that marks a day as final
TOTALS = date(1970, 1, 1)  # the row day of the figures that are not by day (`enrolled`)
ENROLLED, SILENT = "enrolled", "non_responders"
OPEN, OPEN_AT = "open", "open_at"  # an open day's snapshot mark; on TOTALS, when it was taken (seconds from SINCE)
SINCE = datetime(2020, 1, 1, tzinfo=UTC)  # OPEN_AT in seconds from here fits the integer column until 2088
# A snapshot older than this (the job has stopped) is not used: the open days are worked out from their rows.
SNAPSHOT_STALE = timedelta(hours=1)
# The job (every ten minutes) recounts the non-responders and the patients enrolled in its run within this many
# minutes past the hour: the figures are at most about an hour old (a view before any count counts at once). Both
# read every patient in follow-up (or every patient): done at each run, the job's cost grew with the table.
SILENT_MINUTES = 10
# ...and rebuilds the open days' snapshot from their rows in that run of every REBUILD_HOURS-th hour (UTC) only: the
# rebuild reads every row of the four or five open days, and run hourly it was a sixth of a 100,000-patient
# simulation (bench/README.md); what carrying forward misses in between is listed in the module's docstring.
REBUILD_HOURS = 6
# The partial indexes' predicates, as literals (models.partial): see ix_message_checkin_sent and ix_message_failed.
CHECKIN: ColumnClause[str] = literal_column("'checkin'")
FAILED: tuple[ColumnClause[str], ...] = (literal_column("'failed'"), literal_column("'undelivered'"))


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz)


def closed(day: date, tz: ZoneInfo, now: datetime) -> bool:
    """Nothing can change the day's figures any more: it is over, and so is the reply window of its check-ins."""
    return local_midnight(day + timedelta(days=1), tz) + REPLY_WINDOW <= now


def compute_days(s: Session, days: Sequence[date], tz: ZoneInfo, now: datetime, upto: datetime | None = None) -> Tally:
    """The figures of `days` (clinic-local) from their own rows: one range read per table over first..last. With
    `upto` (the job's snapshot, taken at `now`), only the rows dated before it: what is dated from it on, a view adds
    (`since_snapshot`)."""
    if not days:
        return {}
    start, end = local_midnight(min(days), tz), local_midnight(max(days) + timedelta(days=1), tz)
    stop = min(end, upto) if upto is not None else end
    escalations = s.exec(
        select(Escalation.created_at, Escalation.tier).where(
            Escalation.created_at >= start, Escalation.created_at < stop
        )
    ).all()
    checkins = [
        (pid, at) for _, pid, at in _went_out(s, col(Message.sent_at) >= start, col(Message.sent_at) < min(end, now))
    ]
    failed = s.exec(
        select(Message.updated_at).where(
            col(Message.status).in_(FAILED), col(Message.updated_at) >= start, col(Message.updated_at) < stop
        )
    ).all()
    inbound = s.exec(
        select(Inbound.patient_id, Inbound.received_at, Inbound.level, Inbound.meta).where(
            col(Inbound.received_at) >= start,
            col(Inbound.received_at) < (end + REPLY_WINDOW if upto is None else min(end + REPLY_WINDOW, upto)),
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
    """The figures of every day from `first` to today: closed ones stored, open ones from the job's snapshot and
    what changed since, and any other day computed from its rows (closed ones then stored)."""
    tz = ZoneInfo(rt.settings.clinic.timezone)
    today = day_of(now, tz)
    days = [first + timedelta(days=i) for i in range((today - first).days + 1)]
    with rt.db.session() as s:
        stored = stored_days(s, first, today)
        taken, snapshot = open_snapshot(s, first, today)
        usable = taken is not None and now - SNAPSHOT_STALE <= taken <= now
        snapshot = {d: f for d, f in snapshot.items() if usable and d not in stored and not closed(d, tz, now)}
        if snapshot and taken is not None:
            snapshot = _plus(snapshot, since_snapshot(s, tz, taken, now))
        missing = [d for d in days if d not in stored and d not in snapshot]
        fresh = compute_days(s, missing, tz, now)
    store_closed(rt, fresh, tz, now)
    return {**stored, **snapshot, **fresh}


def open_snapshot(s: Session, first: date, last: date) -> tuple[datetime | None, Tally]:
    """The open days the job last kept (marked OPEN) between `first` and `last`, and when it took them."""
    at = s.exec(select(OverviewDay.n).where(OverviewDay.day == TOTALS, OverviewDay.figure == OPEN_AT)).first()
    t = OverviewDay.__table__.c  # type: ignore[attr-defined]
    marked = select(t.day).where(t.figure == OPEN, t.day >= first, t.day <= last)
    # the open days' rows only, as tuples: the closed weeks beside them are read by `stored_days`
    rows = s.connection().execute(select(t.day, t.figure, t.n).where(t.day.in_(marked))).all()
    days: Tally = {}
    for day, figure, n in rows:
        counts = days.setdefault(day, Counter())  # a day with only its OPEN mark is an open day with no figures
        if figure != OPEN:
            counts[figure] = n
    return (SINCE + timedelta(seconds=at) if at is not None else None), days


def store_open(rt: Runtime, first: date, tz: ZoneInfo, now: datetime, rebuild: bool = True) -> int:
    """Rewrite the snapshot of the days from `first` to today that are not closed yet, as at `now` (their rows
    dated before it): from their rows (`rebuild`, or with no recent snapshot), else the last snapshot plus what
    changed since, so that a 10-minute run reads ten minutes of rows. Returns the days kept."""
    now = now.replace(microsecond=0)  # OPEN_AT holds whole seconds: what is dated from it on, a view adds
    today = day_of(now, tz)
    days = [first + timedelta(days=i) for i in range((today - first).days + 1)]
    days = [d for d in days if not closed(d, tz, now)]
    with rt.db.session() as s:
        taken, last = open_snapshot(s, first, today)
        carried: Tally = {}
        if not rebuild and taken is not None and now - SNAPSHOT_STALE <= taken <= now:
            carried = _plus({d: f for d, f in last.items() if d in days}, since_snapshot(s, tz, taken, now, upto=now))
        figures = {**compute_days(s, [d for d in days if d not in carried], tz, now, upto=now), **carried}
        s.exec(delete(OverviewDay).where(col(OverviewDay.day).in_(days), col(OverviewDay.figure) != CLOSED))
        s.exec(delete(OverviewDay).where(col(OverviewDay.day) == TOTALS, col(OverviewDay.figure) == OPEN_AT))
        rows = [
            {"day": day, "figure": k, "n": n}
            for day in days
            for k, n in {**figures.get(day, Counter()), OPEN: 1}.items()
            if n
        ]
        rows.append({"day": TOTALS, "figure": OPEN_AT, "n": int((now - SINCE).total_seconds())})
        s.connection().execute(insert(OverviewDay), rows)  # one statement, no ORM objects: this runs every ten minutes
        try:
            s.commit()
        except IntegrityError:  # another process rewrote it at the same moment
            log.info("overview snapshot already stored by another process")
            return 0
    return len(days)


def since_snapshot(s: Session, tz: ZoneInfo, taken: datetime, now: datetime, upto: datetime | None = None) -> Tally:
    """What changed in the open days' figures from `taken` (the snapshot) to `now`, by day: the escalations,
    failures and trends dated from `taken` on (and before `upto`, for the job's next snapshot), and, for the
    check-ins that may have changed their state (sent since; still pending then and answered since, or whose reply
    window ran out since), their state now minus their state then. Every read is an index range starting at
    `taken` (minutes of rows) or a few patients'."""
    out: Tally = {}
    far = upto if upto is not None else datetime.max.replace(tzinfo=UTC)

    def add(at: datetime, figure: str, n: int = 1) -> None:
        out.setdefault(day_of(at, tz), Counter())[figure] += n

    for created, tier in s.exec(
        select(Escalation.created_at, Escalation.tier).where(
            Escalation.created_at >= taken, Escalation.created_at < far
        )
    ).all():
        add(created, f"{ESCALATION}{tier}")
    for updated in s.exec(
        select(Message.updated_at).where(
            col(Message.status).in_(FAILED), col(Message.updated_at) >= taken, col(Message.updated_at) < far
        )
    ).all():
        add(updated, FAILURES)
    new_replies = s.exec(
        select(Inbound.patient_id, Inbound.received_at, Inbound.level, Inbound.meta).where(
            col(Inbound.received_at) >= taken, col(Inbound.received_at) < far, col(Inbound.patient_id).is_not(None)
        )
    ).all()
    for _, at, level, meta in new_replies:
        mark = reply_mark(level, meta)
        if mark in tuple(Trend):
            add(at, f"{TREND}{mark}")
    # The check-ins whose state may differ: sent since; or sent in the REPLY_WINDOW before `taken` (pending then,
    # at most) by a patient who replied since, or so long ago that their window has run out since.
    # Two plain ranges of the check-ins' sent_at index (an OR of both walked the status index too: `_went_out`).
    ranges = (
        (col(Message.sent_at) >= taken, col(Message.sent_at) < now),
        (col(Message.sent_at) > taken - REPLY_WINDOW, col(Message.sent_at) <= now - REPLY_WINDOW),
    )
    recent = [row for bounds in ranges for row in _went_out(s, *bounds)]  # one in both ranges: kept once below
    repliers = sorted({pid for pid, *_ in new_replies if pid is not None})
    answered: list[tuple[int | None, int | None, datetime | None]] = []
    for i in range(0, len(repliers), CHUNK):
        answered += _went_out(
            s,
            col(Message.patient_id).in_(repliers[i : i + CHUNK]),
            col(Message.sent_at) > taken - REPLY_WINDOW,
            col(Message.sent_at) < taken,
        )
    checkins = {mid: (pid, at) for mid, pid, at in [*recent, *answered] if pid is not None and at is not None}
    if not checkins:
        return out
    pids = sorted({pid for pid, _ in checkins.values()})
    replies: list[tuple[int, datetime, str | None]] = []
    for i in range(0, len(pids), CHUNK):
        replies += [
            (pid, at, None)  # no mark: the trends were counted above, these only answer check-ins
            for pid, at in s.exec(
                select(Inbound.patient_id, Inbound.received_at).where(
                    col(Inbound.patient_id).in_(pids[i : i + CHUNK]),
                    col(Inbound.received_at) > taken - REPLY_WINDOW,
                    col(Inbound.received_at) < far,
                )
            ).all()
            if pid is not None
        ]
    before = [r for r in replies if r[1] < taken]
    then = _states([c for c in checkins.values() if c[1] < taken], before, tz, taken)
    later = _states(list(checkins.values()), replies, tz, now)
    for day in then.keys() | later.keys():
        for figure in (ASKED, ANSWERED, PENDING):
            n = later.get(day, Counter())[figure] - then.get(day, Counter())[figure]
            if n:
                out.setdefault(day, Counter())[figure] += n
    return out


def _went_out(s: Session, *where: ColumnElement[bool]) -> list[tuple[int | None, int | None, datetime | None]]:
    """(id, patient, sent_at) of the check-ins that went out among those matching `where`. The state is filtered here,
    not in the statement: with `status IN` there, SQLite's sampled statistics walked every sent message by state
    (ix_message_status_channel) instead of the check-ins' sent_at index (bench/README.md, the 100,000-patient
    simulation; tests/test_planner_stats.py)."""
    rows = s.exec(
        select(Message.id, Message.patient_id, Message.sent_at, Message.status).where(
            col(Message.kind) == CHECKIN, *where
        )
    ).all()
    return [(mid, pid, at) for mid, pid, at, status in rows if status in WENT_OUT]


def _states(
    checkins: list[tuple[int, datetime]], replies: list[tuple[int, datetime, str | None]], tz: ZoneInfo, at: datetime
) -> Tally:
    """The check-ins asked (answered or not) and pending at `at`, by day (core.figures.tally's rule)."""
    rows: Rows[object] = Rows({}, 0, 0, 0, [], [], list(checkins), [], replies, {})
    return tally(rows, tz, at, day_of)


def _plus(days: Tally, delta: Tally) -> Tally:
    """`days` with `delta` added, on those days only (a counter may go down: Counter.update keeps negatives)."""
    out = {d: Counter(f) for d, f in days.items()}
    for day, f in delta.items():
        if day in out:
            out[day].update(f)
    return out


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
    """The `overview` job: compute and keep the closed days of the last `weeks` weeks not kept yet, carry the
    snapshot of the open days forward by what changed since the last run, and, only in the run that falls in the
    first SILENT_MINUTES of each hour, count the patients enrolled and the non-responders (both read every patient
    in follow-up or every patient: at every run, the job's cost grew with the table) and, every REBUILD_HOURS
    hours, rebuild that snapshot from its rows. Returns the closed days stored."""
    now = rt.clock.now()
    tz = ZoneInfo(rt.settings.clinic.timezone)
    first = weeks_to(now, tz, weeks)[0]
    today = day_of(now, tz)
    with rt.db.session() as s:
        kept = closed_days(s, first, today)
        missing = [first + timedelta(days=i) for i in range((today - first).days + 1)]
        missing = [d for d in missing if d not in kept and closed(d, tz, now)]
        fresh = compute_days(s, missing, tz, now)
    stored = store_closed(rt, fresh, tz, now)
    hourly = now.minute < SILENT_MINUTES
    rebuild = hourly and now.astimezone(UTC).hour % REBUILD_HOURS == 0  # see since_snapshot for what carrying misses
    store_open(rt, first, tz, now, rebuild=rebuild)
    if hourly:
        refresh_total(rt, ENROLLED, _count_enrolled)
        refresh_total(rt, SILENT, lambda s: silence.count(s, now))
    return stored
