"""Per-patient wall-clock timing, tested as pure functions: the sending window, DST, the whole default program's send
times in several zones, and the send / defer / expire decision."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from followup.core.program import Program, Step, load_program
from followup.core.schedule import Defer, Expire, Send, Window, decide_send, planned_send, step_due, wall_clock
from followup.core.triage import answer_fields

ROOT = Path(__file__).resolve().parent.parent
WINDOW = Window(time(9, 0), time(20, 0))
LA, LONDON, KOLKATA = ZoneInfo("America/Los_Angeles"), ZoneInfo("Europe/London"), ZoneInfo("Asia/Kolkata")
SYDNEY, NEW_YORK = ZoneInfo("Australia/Sydney"), ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def program() -> Program:
    return load_program(ROOT / "clinic/program.toml", answer_fields())


def local(tz: ZoneInfo, *args: int) -> datetime:
    """A UTC instant given as local wall-clock fields."""
    return datetime(*args, tzinfo=tz).astimezone(UTC)


@pytest.mark.parametrize(
    ("tz", "when", "inside", "opens"),
    [
        (LA, (2026, 11, 25, 10, 0), True, (2026, 11, 25, 10, 0)),
        (LA, (2026, 11, 25, 9, 0), True, (2026, 11, 25, 9, 0)),
        (LA, (2026, 11, 25, 20, 0), False, (2026, 11, 26, 9, 0)),
        (LA, (2026, 11, 25, 21, 0), False, (2026, 11, 26, 9, 0)),
        (LA, (2026, 11, 25, 6, 30), False, (2026, 11, 25, 9, 0)),
        (LA, (2026, 11, 25, 0, 0), False, (2026, 11, 25, 9, 0)),
        (KOLKATA, (2026, 11, 25, 23, 59), False, (2026, 11, 26, 9, 0)),
        (LA, (2026, 3, 7, 22, 0), False, (2026, 3, 8, 9, 0)),
        (LONDON, (2026, 10, 24, 21, 0), False, (2026, 10, 25, 9, 0)),
    ],
    ids=[
        "morning",
        "opening-minute",
        "closing-minute",
        "evening",
        "dawn",
        "midnight",
        "kolkata-late",
        "la-dst-eve",
        "london-fallback-eve",
    ],
)
def test_window_contains_and_next_open(tz: ZoneInfo, when: tuple, inside: bool, opens: tuple) -> None:
    """The window is [09:00, 20:00) local; outside it the next opening is 09:00 local, the same or the next day."""
    at = local(tz, *when)
    assert WINDOW.contains(at, tz) is inside
    assert WINDOW.next_open(at, tz) == local(tz, *opens)


@pytest.mark.parametrize(
    ("tz", "day", "at", "utc"),
    [
        (LA, date(2026, 3, 8), time(2, 30), datetime(2026, 3, 8, 10, 30, tzinfo=UTC)),  # skipped: 03:30 PDT
        (LA, date(2026, 3, 8), time(10, 30), datetime(2026, 3, 8, 17, 30, tzinfo=UTC)),
        (LA, date(2026, 3, 7), time(10, 30), datetime(2026, 3, 7, 18, 30, tzinfo=UTC)),
        (LA, date(2026, 11, 1), time(1, 30), datetime(2026, 11, 1, 8, 30, tzinfo=UTC)),  # repeated: first (PDT)
        (LONDON, date(2026, 3, 29), time(1, 30), datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),  # skipped: 02:30 BST
        (KOLKATA, date(2026, 6, 1), time(9, 0), datetime(2026, 6, 1, 3, 30, tzinfo=UTC)),
        (SYDNEY, date(2026, 10, 4), time(2, 30), datetime(2026, 10, 3, 16, 30, tzinfo=UTC)),  # skipped: 03:30 AEDT
    ],
    ids=["la-skipped", "la-after-jump", "la-before-jump", "la-repeated", "london-skipped", "kolkata", "sydney-skipped"],
)
def test_wall_clock_across_dst(tz: ZoneInfo, day: date, at: time, utc: datetime) -> None:
    """A local time maps to one UTC instant: a skipped time moves forward by the jump, a repeated one is the first."""
    assert wall_clock(day, at, tz) == utc


# (zone, enrollment in local time, a step and the UTC instant it must fall on: pins the offset after a DST change)
ZONE_CASES = [
    (LA, (2026, 3, 1, 10, 0), "caffeine", datetime(2026, 3, 2, 18, 15, tzinfo=UTC)),  # PST, UTC-8
    (LA, (2026, 3, 1, 10, 0), "checkin_1", datetime(2026, 3, 8, 17, 30, tzinfo=UTC)),  # day 7 = jump day, PDT
    (LONDON, (2026, 3, 20, 12, 0), "checkin_1", datetime(2026, 3, 27, 10, 30, tzinfo=UTC)),  # GMT
    (LONDON, (2026, 3, 20, 12, 0), "eyelid", datetime(2026, 3, 31, 8, 45, tzinfo=UTC)),  # BST, UTC+1
    (KOLKATA, (2026, 3, 1, 15, 0), "checkin_2", datetime(2026, 3, 15, 12, 45, tzinfo=UTC)),  # always UTC+5:30
    (SYDNEY, (2026, 9, 25, 11, 0), "stress", datetime(2026, 9, 29, 7, 30, tzinfo=UTC)),  # AEST, UTC+10
    (SYDNEY, (2026, 9, 25, 11, 0), "alcohol", datetime(2026, 10, 5, 3, 0, tzinfo=UTC)),  # AEDT, UTC+11
    (NEW_YORK, (2026, 10, 20, 9, 30), "eyelid", datetime(2026, 10, 31, 13, 45, tzinfo=UTC)),  # EDT, UTC-4
    (NEW_YORK, (2026, 10, 20, 9, 30), "video", datetime(2026, 11, 1, 18, 15, tzinfo=UTC)),  # EST, UTC-5
    (LA, (2026, 10, 25, 19, 0), "eyelid", datetime(2026, 11, 5, 17, 45, tzinfo=UTC)),  # fall-back crossed, PST
]


@pytest.mark.parametrize(
    ("tz", "enrolled", "step_id", "utc"),
    ZONE_CASES,
    ids=[
        "la-before-spring",
        "la-spring-forward",
        "london-before",
        "london-after-bst",
        "kolkata",
        "sydney-before",
        "sydney-after-dst",
        "ny-before-fallback",
        "ny-after-fallback",
        "la-after-fallback",
    ],
)
def test_whole_program_keeps_local_clock_time(
    program: Program, tz: ZoneInfo, enrolled: tuple, step_id: str, utc: datetime
) -> None:
    """Every step goes out on its day at its `at` in the patient's zone, inside the window, across DST changes."""
    enrolled_at = local(tz, *enrolled)
    start_day = enrolled_at.astimezone(tz).date()
    for step in program.steps:
        send = planned_send(step, enrolled_at, tz, WINDOW)
        assert WINDOW.contains(send, tz), step.id
        if step.at is None:
            assert send == WINDOW.next_open(enrolled_at + step.offset, tz)
            continue
        lt = send.astimezone(tz)
        assert (lt.date(), lt.time()) == (start_day + timedelta(days=step.offset.days), step.at), step.id
    pinned = next(s for s in program.steps if s.id == step_id)
    assert planned_send(pinned, enrolled_at, tz, WINDOW) == utc


def test_a_dst_change_shifts_utc_but_not_local_time(program: Program) -> None:
    """Across the LA spring-forward the same 10:30 local check-in moves one hour earlier in UTC."""
    before = local(LA, 2026, 2, 22, 10, 0)  # day 7 is 2026-03-01, PST
    after = local(LA, 2026, 3, 1, 10, 0)  # day 7 is 2026-03-08, PDT
    step = next(s for s in program.steps if s.id == "checkin_1")
    a, b = planned_send(step, before, LA, WINDOW), planned_send(step, after, LA, WINDOW)
    assert (a.time(), b.time()) == (time(18, 30), time(17, 30))
    assert a.astimezone(LA).time() == b.astimezone(LA).time() == time(10, 30)


@pytest.mark.parametrize(
    ("tz", "enrolled", "expected"),
    [
        (LA, (2026, 11, 25, 22, 30), (2026, 11, 26, 9, 0)),
        (LA, (2026, 11, 25, 6, 0), (2026, 11, 25, 9, 0)),
        (LA, (2026, 11, 25, 19, 59), (2026, 11, 25, 19, 59)),
        (KOLKATA, (2026, 11, 25, 20, 0), (2026, 11, 26, 9, 0)),
        (SYDNEY, (2026, 10, 3, 23, 0), (2026, 10, 4, 9, 0)),
        (LA, (2026, 3, 7, 21, 15), (2026, 3, 8, 9, 0)),
    ],
    ids=[
        "la-late-evening",
        "la-early-morning",
        "la-just-inside",
        "kolkata-at-close",
        "sydney-dst-night",
        "la-dst-night",
    ],
)
def test_now_steps_outside_the_window_wait_for_nine(
    program: Program, tz: ZoneInfo, enrolled: tuple, expected: tuple
) -> None:
    """A step due "now" during quiet hours is planned for 09:00 local; inside the window it goes at once."""
    welcome = program.steps[0]
    assert welcome.at is None
    assert planned_send(welcome, local(tz, *enrolled), tz, WINDOW) == local(tz, *expected)


def test_step_due_in_a_skipped_hour_lands_after_the_jump() -> None:
    """A step set at 02:30 on the spring-forward day is due at 03:30 PDT, then waits for the window."""
    step = Step("night", "tip", timedelta(days=1), time(2, 30), "tip_sleep")
    enrolled = local(LA, 2026, 3, 7, 12, 0)
    assert step_due(step, enrolled, LA).astimezone(LA).time() == time(3, 30)
    assert planned_send(step, enrolled, LA, WINDOW) == local(LA, 2026, 3, 8, 9, 0)


TTL = timedelta(hours=24)


@pytest.mark.parametrize(
    ("now_local", "due_local", "ttl", "urgent", "expected"),
    [
        ((2026, 11, 25, 10, 0), (2026, 11, 25, 10, 0), TTL, False, Send()),
        ((2026, 11, 25, 21, 0), (2026, 11, 25, 18, 0), TTL, False, (2026, 11, 26, 9, 0)),
        ((2026, 11, 25, 3, 0), (2026, 11, 25, 2, 0), TTL, False, (2026, 11, 25, 9, 0)),
        ((2026, 11, 25, 23, 0), (2026, 11, 25, 23, 0), timedelta(hours=2), True, Send()),
        ((2026, 11, 25, 21, 0), (2026, 11, 25, 18, 0), timedelta(hours=6), False, "opens after its time-to-live"),
        ((2026, 11, 28, 10, 0), (2026, 11, 25, 10, 0), TTL, False, "72.0 h late"),
        ((2026, 11, 25, 13, 0), (2026, 11, 25, 10, 0), timedelta(hours=2), True, "past its time-to-live"),
    ],
    ids=[
        "inside-window",
        "evening-defers",
        "night-defers",
        "urgent-at-night",
        "ttl-before-window",
        "outage",
        "urgent-late",
    ],
)
def test_decide_send(now_local: tuple, due_local: tuple, ttl: timedelta, urgent: bool, expected) -> None:
    """Inside the window send; outside defer to 09:00 local unless urgent; past the time-to-live expire."""
    due = local(LA, *due_local)
    decision = decide_send(
        now=local(LA, *now_local), due_at=due, expires_at=due + ttl, urgent=urgent, tz=LA, window=WINDOW
    )
    if isinstance(expected, Send):
        assert isinstance(decision, Send)
    elif isinstance(expected, tuple):
        assert isinstance(decision, Defer)
        assert decision.until == local(LA, *expected)
        assert "sending hours" in decision.reason
    else:
        assert isinstance(decision, Expire)
        assert expected in decision.reason
