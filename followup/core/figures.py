"""The overview's figures worked out from plain rows: enrolment, escalations by tier per week, check-ins answered,
delivery failures and what patients say about their twitching. Pure: `services/overview.py` reads the rows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from followup.core.vocab import EscalationStatus, Level, PatientStatus, Trend

P = TypeVar("P")  # the patient as the caller holds it (the overview's table row); only handed back
REPLY_WINDOW = timedelta(hours=72)  # a check-in counts as answered by any reply within this
TRENDS_SHOWN = 30
# The rollup's figure names (followup.models.OverviewDay.figure): per clinic-local day.
ESCALATION, TREND = "escalation:", "trend:"  # + the tier / the trend
ASKED, ANSWERED, PENDING, FAILURES = "asked", "answered", "pending", "failures"


def week_of(at: datetime, tz: ZoneInfo) -> date:
    """The Monday (clinic-local) that starts the week of `at`."""
    local = at.astimezone(tz).date()
    return local - timedelta(days=local.weekday())


def weeks_to(now: datetime, tz: ZoneInfo, weeks: int) -> list[date]:
    """The Mondays of the last `weeks` weeks, oldest first, the week of `now` last."""
    this_week = week_of(now, tz)
    return [this_week - timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]


def trend_of(meta: Mapping[str, Any] | None) -> Trend | None:
    """The trend a reply was read as (kept in its `meta`), or None."""
    value = (meta or {}).get("trend")
    return Trend(value) if value in tuple(Trend) else None


RED_FLAG_MARKS = (Level.EMERGENCY, Level.RED_FLAG)


def reply_mark(level: str | None, meta: Mapping[str, Any] | None) -> str | None:
    """How one assessed reply reads on a trend strip: a red flag (its level) outranks whatever better / same / worse
    it also said (issue 12: a green "better" sat beside "I can't breathe"); None for a reply that says neither."""
    if level in RED_FLAG_MARKS:
        return str(level)
    trend = trend_of(meta)
    return str(trend) if trend is not None else None


@dataclass(frozen=True)
class Rows(Generic[P]):
    """What the overview reads, from the first of its weeks on (counts: over all time)."""

    status_counts: Mapping[str, int]  # patients by status
    enrolled: int
    unreachable: int
    non_responders: int
    escalations: Sequence[tuple[datetime, str]]  # (created_at, tier)
    active_statuses: Sequence[str]  # the status of every escalation still to act on, whenever opened
    checkins: Sequence[tuple[int | None, datetime | None]]  # (patient_id, sent_at), sent by now
    failures: Sequence[datetime]  # when each failed or undelivered message was last updated
    replies: Sequence[tuple[int, datetime, str | None]]  # (patient_id, received_at, reply_mark or None)
    patients: Mapping[int, P]  # at least every patient with a trend


@dataclass
class Overview(Generic[P]):
    weeks: list[date]
    enrolled: int
    active: int
    escalated: int
    open_escalations: int
    unacknowledged: int
    unreachable: int
    non_responders: int
    response_rate: float | None  # over the whole window
    answered: int
    asked: int
    failures: int
    pending: int  # check-ins sent less than REPLY_WINDOW ago and not answered yet: neither answered nor missed
    escalations_by_week: dict[date, Counter[str]]
    response_by_week: dict[date, tuple[int, int]]  # (answered, asked)
    failures_by_week: dict[date, int]
    trend_by_week: dict[date, Counter[str]]
    trends: list[tuple[P, list[tuple[datetime, str]]]]  # most recent answer first


Tally = dict[date, Counter[str]]  # figures by clinic-local day or week: escalation:<tier>, asked, answered, ...


def tally(rows: Rows[Any], tz: ZoneInfo, now: datetime | None, bucket: Callable[[datetime, ZoneInfo], date]) -> Tally:
    """What the overview counts, by `bucket` (`week_of`, or `day_of` for the rollup): escalations by tier
    (`escalation:<tier>`), check-ins `asked` and `answered`, `pending` ones, `failures`, and the trends patients
    reported (`trend:<better|same|worse>`). A check-in is answered by any reply within REPLY_WINDOW after it; one
    sent less than REPLY_WINDOW before `now` and not answered yet is pending, counted apart, so an answer counts at
    once and the tile agrees with the charts (issue 12: "0 of 0" beside a chart counting an answer)."""
    out: Tally = {}

    def add(at: datetime, figure: str, n: int = 1) -> None:
        out.setdefault(bucket(at, tz), Counter())[figure] += n

    replies_by_patient: dict[int, list[datetime]] = {}
    for pid, received_at, mark in rows.replies:
        replies_by_patient.setdefault(pid, []).append(received_at)
        if mark in tuple(Trend):  # the chart counts check-in answers; red flags are on the escalations chart
            add(received_at, f"{TREND}{mark}")
    for created, tier in rows.escalations:
        add(created, f"{ESCALATION}{tier}")
    for asked_id, sent_at in rows.checkins:
        if sent_at is None or asked_id is None:
            continue
        ok = any(sent_at < r <= sent_at + REPLY_WINDOW for r in replies_by_patient.get(asked_id, []))
        if not ok and now is not None and sent_at > now - REPLY_WINDOW:
            add(sent_at, PENDING)
            continue
        add(sent_at, ASKED)
        add(sent_at, ANSWERED, int(ok))
    for at in rows.failures:
        add(at, FAILURES)
    return out


def day_of(at: datetime, tz: ZoneInfo) -> date:
    """The clinic-local date of `at`."""
    return at.astimezone(tz).date()


def by_week(days: Mapping[date, Mapping[str, int]]) -> Tally:
    """Daily figures (the rollup) added up into their weeks."""
    out: Tally = {}
    for day, figures in days.items():
        out.setdefault(day - timedelta(days=day.weekday()), Counter()).update(figures)
    return out


def trend_list(
    replies: Sequence[tuple[int, datetime, str | None]], patients: Mapping[int, P]
) -> list[tuple[P, list[tuple[datetime, str]]]]:
    """The patients who reported a trend, with their marks, the latest answer first (TRENDS_SHOWN of them)."""
    points: dict[int, list[tuple[datetime, str]]] = {}
    for pid, at, mark in replies:
        if mark is not None:
            points.setdefault(pid, []).append((at, mark))
    trends = sorted(
        ((patients[pid], sorted(pts)) for pid, pts in points.items() if pid in patients),
        key=lambda x: x[1][-1][0],
        reverse=True,
    )
    return trends[:TRENDS_SHOWN]


@dataclass(frozen=True)
class Counts:
    """The overview's figures that are not by week: patients by status, enrolled, unreachable, silent, and the
    status of every escalation still to act on."""

    status_counts: Mapping[str, int]
    enrolled: int
    unreachable: int
    non_responders: int
    active_statuses: Sequence[str]


def overview_of(
    weeks: list[date], weekly: Tally, counts: Counts, trends: list[tuple[P, list[tuple[datetime, str]]]]
) -> Overview[P]:
    """The overview from figures by week (`tally` by `week_of`, or the rollup's days `by_week`)."""
    empty: Counter[str] = Counter()
    figures = {w: weekly.get(w, empty) for w in weeks}
    answered = sum(f[ANSWERED] for f in figures.values())
    asked = sum(f[ASKED] for f in figures.values())
    return Overview(
        weeks=weeks,
        enrolled=counts.enrolled,
        active=counts.status_counts.get(PatientStatus.ACTIVE, 0),
        escalated=counts.status_counts.get(PatientStatus.ESCALATED, 0),
        open_escalations=len(counts.active_statuses),
        unacknowledged=sum(1 for st in counts.active_statuses if st == EscalationStatus.OPEN),
        unreachable=counts.unreachable,
        non_responders=counts.non_responders,
        response_rate=answered / asked if asked else None,
        answered=answered,
        asked=asked,
        failures=sum(f[FAILURES] for f in figures.values()),
        pending=sum(f[PENDING] for f in figures.values()),
        escalations_by_week={w: _strip(f, ESCALATION) for w, f in figures.items()},
        response_by_week={w: (f[ANSWERED], f[ASKED]) for w, f in figures.items()},
        failures_by_week={w: f[FAILURES] for w, f in figures.items()},
        trend_by_week={w: _strip(f, TREND) for w, f in figures.items()},
        trends=trends,
    )


def _strip(figures: Counter[str], prefix: str) -> Counter[str]:
    return Counter({k.removeprefix(prefix): n for k, n in figures.items() if k.startswith(prefix) and n})


def summarise(rows: Rows[P], weeks: list[date], tz: ZoneInfo, now: datetime | None = None) -> Overview[P]:
    """The figures over `weeks` (Mondays, oldest first), straight from the rows (`tally` by week). Events are
    counted in their clinic-local week; the totals count every row given, also those before the first week."""
    weekly = tally(rows, tz, now, week_of)
    counts = Counts(rows.status_counts, rows.enrolled, rows.unreachable, rows.non_responders, rows.active_statuses)
    o = overview_of(weeks, weekly, counts, trend_list(rows.replies, rows.patients))
    o.answered = sum(f[ANSWERED] for f in weekly.values())
    o.asked = sum(f[ASKED] for f in weekly.values())
    o.response_rate = o.answered / o.asked if o.asked else None
    o.failures = len(rows.failures)
    o.pending = sum(f[PENDING] for f in weekly.values())
    return o
