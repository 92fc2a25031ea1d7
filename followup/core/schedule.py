"""Per-patient wall-clock time: when a step is due, the sending window (quiet hours), time-to-live.

Pure functions of their arguments: no clock, no database. All datetimes in and out are UTC-aware.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from followup.core.program import Step


@dataclass(frozen=True)
class Window:
    """Messages that are not urgent go out only between `start` and `end`, patient's local time."""

    start: time
    end: time

    def contains(self, when: datetime, tz: ZoneInfo) -> bool:
        local = when.astimezone(tz).time()
        return self.start <= local < self.end

    def next_open(self, when: datetime, tz: ZoneInfo) -> datetime:
        """`when` if the window is open then, else the next moment it opens."""
        if self.contains(when, tz):
            return when
        local = when.astimezone(tz)
        day = local.date() if local.time() < self.start else local.date() + timedelta(days=1)
        return wall_clock(day, self.start, tz)


def wall_clock(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time. A time skipped by a DST jump moves forward by the jump;
    a repeated time (fall back) means its first occurrence."""
    # zoneinfo reads a skipped time (fold=0) with the offset from before the jump, so it lands after it.
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def step_due(step: Step, enrolled_at: datetime, tz: ZoneInfo) -> datetime:
    """When a step falls due: `offset` days after the local enrollment date, at the step's local time."""
    if step.at is None:
        return enrolled_at + step.offset
    local_day = enrolled_at.astimezone(tz).date() + timedelta(days=step.offset.days)
    return wall_clock(local_day, step.at, tz) + timedelta(seconds=step.offset.seconds)


def planned_send(step: Step, enrolled_at: datetime, tz: ZoneInfo, window: Window) -> datetime:
    """The first moment a step may go out: its due time, moved into the sending window."""
    return window.next_open(step_due(step, enrolled_at, tz), tz)


def added_step_send(step: Step, enrolled_at: datetime, tz: ZoneInfo, window: Window, now: datetime) -> datetime | None:
    """When a step newly added to an enrollment goes out, or None: a step at a clock time whose moment has passed
    is not sent late (a re-triage adding it, or enrollment after that day's time)."""
    due = planned_send(step, enrolled_at, tz, window)
    return None if due < now and step.at is not None else due


@dataclass(frozen=True)
class Send:
    pass


@dataclass(frozen=True)
class Defer:
    until: datetime
    reason: str


@dataclass(frozen=True)
class Expire:
    reason: str


Decision = Send | Defer | Expire


def decide_send(
    *, now: datetime, due_at: datetime, expires_at: datetime, urgent: bool, tz: ZoneInfo, window: Window
) -> Decision:
    """Whether a due message goes out now, waits for the window, or is too late to be worth sending."""
    if now > expires_at:
        return Expire(f"{_hours(now - due_at)} late, past its time-to-live of {_hours(expires_at - due_at)}")
    if urgent or window.contains(now, tz):
        return Send()
    opens = window.next_open(now, tz)
    if opens > expires_at:
        return Expire(f"the next sending window opens after its time-to-live ({_hours(expires_at - due_at)})")
    return Defer(opens, "outside the patient's sending hours")


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h"
