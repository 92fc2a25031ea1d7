"""When a step is due and whether a due message goes out (followup/core/schedule.py), at the boundaries: a step
offset from enrollment, a message exactly at its time-to-live, quiet hours reopening exactly at expiry, and the
reasons a message waits or expires. Plain values; `now` is an argument."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from followup.core.program import Step
from followup.core.schedule import (
    Decision,
    Defer,
    Expire,
    Send,
    Window,
    decide_send,
    planned_send,
    step_due,
)

LA, KOLKATA = ZoneInfo("America/Los_Angeles"), ZoneInfo("Asia/Kolkata")
WINDOW = Window(time(9, 0), time(20, 0))


def la(*fields: int) -> datetime:
    """A UTC instant given as Los Angeles wall-clock fields."""
    return datetime(*fields, tzinfo=LA).astimezone(UTC)


def step(offset: timedelta, at: time | None) -> Step:
    return Step("s", "tip", offset, at, "tip_sleep")


@pytest.mark.parametrize(
    ("offset", "at", "enrolled", "due"),
    [
        (timedelta(0), None, la(2026, 11, 25, 22, 30), la(2026, 11, 25, 22, 30)),
        (timedelta(hours=2, minutes=30), None, la(2026, 11, 25, 10, 0), la(2026, 11, 25, 12, 30)),
        (timedelta(days=3), None, la(2026, 11, 25, 10, 0), la(2026, 11, 28, 10, 0)),
        (timedelta(0), time(18, 0), la(2026, 11, 25, 10, 0), la(2026, 11, 25, 18, 0)),
        (timedelta(days=3), time(10, 15), la(2026, 11, 25, 16, 0), la(2026, 11, 28, 10, 15)),
        (timedelta(days=1), time(9, 0), la(2026, 11, 25, 19, 0), la(2026, 11, 26, 9, 0)),
        (timedelta(days=7), time(10, 30), la(2026, 3, 1, 10, 0), datetime(2026, 3, 8, 17, 30, tzinfo=UTC)),
        (timedelta(days=1, hours=2), time(9, 0), la(2026, 11, 25, 10, 0), la(2026, 11, 26, 11, 0)),
    ],
    ids=[
        "now-at-enrollment",
        "now-plus-hours",
        "now-plus-days",
        "same-day-at-a-time",
        "three-days-on-at-a-time",
        "local-day-not-utc-day",
        "across-spring-forward",
        "remainder-after-the-time",
    ],
)
def test_step_due(offset: timedelta, at: time | None, enrolled: datetime, due: datetime) -> None:
    """Without `at` a step is due `offset` after enrollment; with it, `offset` days on from the local date at `at`."""
    assert step_due(step(offset, at), enrolled, LA) == due


def test_the_enrollment_day_is_the_patients_local_day() -> None:
    """At 22:00 in Kolkata the UTC date is still the day before; the step counts from Kolkata's date."""
    enrolled = datetime(2026, 11, 25, 22, 0, tzinfo=KOLKATA).astimezone(UTC)
    assert enrolled.date().day == 25
    due = step_due(step(timedelta(days=1), time(10, 0)), enrolled, KOLKATA)
    assert due == datetime(2026, 11, 26, 10, 0, tzinfo=KOLKATA).astimezone(UTC)


@pytest.mark.parametrize(
    ("offset", "at", "enrolled", "planned"),
    [
        (timedelta(days=2), time(18, 0), la(2026, 11, 25, 10, 0), la(2026, 11, 27, 18, 0)),
        (timedelta(days=2), time(21, 0), la(2026, 11, 25, 10, 0), la(2026, 11, 28, 9, 0)),
        (timedelta(days=2), time(6, 0), la(2026, 11, 25, 10, 0), la(2026, 11, 27, 9, 0)),
        (timedelta(hours=11), None, la(2026, 11, 25, 10, 0), la(2026, 11, 26, 9, 0)),
        (timedelta(hours=9, minutes=59), None, la(2026, 11, 25, 10, 0), la(2026, 11, 25, 19, 59)),
    ],
    ids=["inside", "after-closing-next-morning", "before-opening-same-morning", "now-step-late", "now-step-in-time"],
)
def test_planned_send_moves_a_due_step_into_the_window(
    offset: timedelta, at: time | None, enrolled: datetime, planned: datetime
) -> None:
    """A step offset from enrollment goes out when due if the window is open, else when it next opens."""
    assert planned_send(step(offset, at), enrolled, LA, WINDOW) == planned


@pytest.mark.parametrize(
    ("when", "inside", "opens"),
    [
        (la(2026, 11, 25, 8, 59), False, la(2026, 11, 25, 9, 0)),
        (la(2026, 11, 25, 9, 0), True, la(2026, 11, 25, 9, 0)),
        (la(2026, 11, 25, 19, 59), True, la(2026, 11, 25, 19, 59)),
        (la(2026, 11, 25, 20, 0), False, la(2026, 11, 26, 9, 0)),
        (la(2026, 11, 25, 23, 59), False, la(2026, 11, 26, 9, 0)),
    ],
    ids=["minute-before-opening", "opening", "last-minute", "closing", "midnight"],
)
def test_window_is_open_from_start_until_just_before_end(when: datetime, inside: bool, opens: datetime) -> None:
    """The window is [start, end) in the patient's zone; outside it the next opening is start, today or tomorrow."""
    assert WINDOW.contains(when, LA) is inside
    assert WINDOW.next_open(when, LA) == opens


DUE = la(2026, 11, 25, 10, 0)


def decide(now: datetime, ttl: timedelta, *, urgent: bool = False) -> Decision:
    return decide_send(now=now, due_at=DUE, expires_at=DUE + ttl, urgent=urgent, tz=LA, window=WINDOW)


@pytest.mark.parametrize(
    ("now", "ttl", "urgent", "expected"),
    [
        (la(2026, 11, 25, 10, 0), timedelta(0), False, Send()),
        (la(2026, 11, 25, 16, 0), timedelta(hours=6), False, Send()),
        (la(2026, 11, 25, 16, 0, 1), timedelta(hours=6), False, Expire("6.0 h late, past its time-to-live of 6.0 h")),
        (la(2026, 11, 25, 16, 0, 1), timedelta(hours=6), True, Expire("6.0 h late, past its time-to-live of 6.0 h")),
        (la(2026, 11, 25, 10, 3), timedelta(minutes=2), False, Expire("0.1 h late, past its time-to-live of 0.0 h")),
        (la(2026, 11, 28, 13, 0), timedelta(hours=24), False, Expire("75.0 h late, past its time-to-live of 24.0 h")),
        (
            la(2026, 11, 25, 21, 0),
            timedelta(hours=23),
            False,
            Defer(la(2026, 11, 26, 9, 0), "outside the patient's sending hours"),
        ),
        (la(2026, 11, 25, 21, 0), timedelta(hours=23), True, Send()),
        (
            la(2026, 11, 25, 21, 0),
            timedelta(hours=22, minutes=59),
            False,
            Expire("the next sending window opens after its time-to-live (23.0 h)"),
        ),
        (
            la(2026, 11, 25, 21, 0),
            timedelta(hours=11),
            False,
            Expire("the next sending window opens after its time-to-live (11.0 h)"),
        ),
        (la(2026, 11, 25, 21, 1), timedelta(hours=11), True, Expire("11.0 h late, past its time-to-live of 11.0 h")),
        (
            la(2026, 11, 25, 20, 0),
            timedelta(hours=10),
            False,
            Expire("the next sending window opens after its time-to-live (10.0 h)"),
        ),
        (la(2026, 11, 25, 20, 0), timedelta(hours=10), True, Send()),
    ],
    ids=[
        "due-now-no-ttl",
        "exactly-at-ttl",
        "a-second-past-ttl",
        "urgent-a-second-past-ttl",
        "minutes-in-tenths-of-hours",
        "days-late",
        "reopens-exactly-at-expiry",
        "urgent-in-quiet-hours",
        "reopens-a-minute-after-expiry",
        "reopens-long-after-expiry",
        "urgent-past-ttl-in-quiet-hours",
        "quiet-hours-start-exactly-at-expiry",
        "urgent-exactly-at-expiry-in-quiet-hours",
    ],
)
def test_decide_send_at_the_boundaries(now: datetime, ttl: timedelta, urgent: bool, expected: Decision) -> None:
    """A message at its TTL goes, past it expires; in quiet hours it waits if they end by expiry, unless urgent."""
    assert decide(now, ttl, urgent=urgent) == expected
