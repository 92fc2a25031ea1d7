"""The overview's figures worked out from plain rows: enrolment, escalations by tier per week, check-ins answered,
delivery failures and what patients say about their twitching. Pure: `services/overview.py` reads the rows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from followup.core.vocab import EscalationStatus, Level, PatientStatus, Trend

P = TypeVar("P")  # the patient as the caller holds it (the overview's table row); only handed back
REPLY_WINDOW = timedelta(hours=72)  # a check-in counts as answered by any reply within this
TRENDS_SHOWN = 30


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


def summarise(rows: Rows[P], weeks: list[date], tz: ZoneInfo, now: datetime | None = None) -> Overview[P]:
    """The figures over `weeks` (Mondays, oldest first). A check-in is answered by any reply within
    REPLY_WINDOW after it; one sent less than REPLY_WINDOW before `now` and not answered yet is pending, counted
    apart, so an answer counts at once and the tile agrees with the charts (issue 12: "0 of 0" beside a chart
    counting an answer). Events are counted in their clinic-local week."""
    pending = 0
    replies_by_patient: dict[int, list[datetime]] = {}
    trend_points: dict[int, list[tuple[datetime, str]]] = {}
    for pid, received_at, trend in rows.replies:
        replies_by_patient.setdefault(pid, []).append(received_at)
        if trend is not None:
            trend_points.setdefault(pid, []).append((received_at, trend))
    by_week: dict[date, Counter[str]] = {w: Counter() for w in weeks}
    for created, tier in rows.escalations:
        by_week.setdefault(week_of(created, tz), Counter())[tier] += 1
    response: dict[date, tuple[int, int]] = {w: (0, 0) for w in weeks}
    for asked_id, sent_at in rows.checkins:
        if sent_at is None or asked_id is None:
            continue
        ok = any(sent_at < r <= sent_at + REPLY_WINDOW for r in replies_by_patient.get(asked_id, []))
        if not ok and now is not None and sent_at > now - REPLY_WINDOW:
            pending += 1
            continue
        wk = week_of(sent_at, tz)
        a, n = response.get(wk, (0, 0))
        response[wk] = (a + int(ok), n + 1)
    fails: dict[date, int] = {w: 0 for w in weeks}
    for at in rows.failures:
        wk = week_of(at, tz)
        fails[wk] = fails.get(wk, 0) + 1
    trend_week: dict[date, Counter[str]] = {w: Counter() for w in weeks}
    for points in trend_points.values():
        for at, t in points:
            if t in tuple(Trend):  # the chart counts check-in answers; red flags are on the escalations chart
                trend_week.setdefault(week_of(at, tz), Counter())[t] += 1
    answered = sum(a for a, _ in response.values())
    asked = sum(n for _, n in response.values())
    trends = sorted(
        ((rows.patients[pid], sorted(pts)) for pid, pts in trend_points.items() if pid in rows.patients),
        key=lambda x: x[1][-1][0],
        reverse=True,
    )
    return Overview(
        weeks=weeks,
        enrolled=rows.enrolled,
        active=rows.status_counts.get(PatientStatus.ACTIVE, 0),
        escalated=rows.status_counts.get(PatientStatus.ESCALATED, 0),
        open_escalations=len(rows.active_statuses),
        unacknowledged=sum(1 for st in rows.active_statuses if st == EscalationStatus.OPEN),
        unreachable=rows.unreachable,
        non_responders=rows.non_responders,
        response_rate=answered / asked if asked else None,
        answered=answered,
        asked=asked,
        failures=len(rows.failures),
        pending=pending,
        escalations_by_week={w: by_week[w] for w in weeks},
        response_by_week={w: response[w] for w in weeks},
        failures_by_week={w: fails[w] for w in weeks},
        trend_by_week={w: trend_week[w] for w in weeks},
        trends=trends[:TRENDS_SHOWN],
    )
