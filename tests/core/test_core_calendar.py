"""The clinic's booking calendar (followup/core/calendar.py), pure: which slot starts exist (opening hours, slot
length, horizon, closed days, notice, DST) and which an escalation's tier is offered (the urgent reserve)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from followup.core.calendar import Calendar, calendar_slots, offered_slots
from followup.settings import Settings

LA = ZoneInfo("America/Los_Angeles")
MON = date(2026, 11, 23)  # a Monday


def la(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    """A UTC instant given as Los Angeles wall-clock fields."""
    return datetime(y, mo, d, h, mi, tzinfo=LA).astimezone(UTC)


def cal(**over: Any) -> Calendar:
    """Monday 09:00-10:00 and 14:00-15:00, Tuesday 09:00-10:00; 30-minute slots, no notice, no reserve."""
    base: dict[str, Any] = {
        "opening": {0: [(time(9), time(10)), (time(14), time(15))], 1: [(time(9), time(10))]},
        "slot": timedelta(minutes=30),
        "horizon_days": 2,
        "closed": frozenset(),
        "tz": LA,
        "reserve": timedelta(0),
        "notice": timedelta(0),
    }
    return Calendar(**{**base, **over})


def hhmm(slots: list[datetime]) -> list[str]:
    """Slots as local "day HH:MM"."""
    return [s.astimezone(LA).strftime("%a %H:%M") for s in slots]


def test_calendar_from_settings() -> None:
    """The calendar is read from [booking] and the clinic's zone: weekday spans, minutes, days and hours."""
    settings = Settings().with_overrides(
        clinic={"timezone": "Europe/Madrid"},
        booking={
            "hours": {"tue": ["13:30-17:00", "09:00-12:30"], "sat": ["10:00-11:00"]},
            "slot_minutes": 20,
            "horizon_days": 9,
            "closed_days": ["2026-12-25"],
            "urgent_reserve_hours": 36,
            "min_notice_minutes": 90,
        },
    )
    assert Calendar.from_settings(settings) == Calendar(
        opening={1: [(time(9), time(12, 30)), (time(13, 30), time(17))], 5: [(time(10), time(11))]},
        slot=timedelta(minutes=20),
        horizon_days=9,
        closed=frozenset({date(2026, 12, 25)}),
        tz=ZoneInfo("Europe/Madrid"),
        reserve=timedelta(hours=36),
        notice=timedelta(minutes=90),
    )


@pytest.mark.parametrize(
    ("calendar", "now", "expected"),
    [
        (cal(), la(2026, 11, 23, 7), ["Mon 09:00", "Mon 09:30", "Mon 14:00", "Mon 14:30", "Tue 09:00", "Tue 09:30"]),
        (cal(horizon_days=1), la(2026, 11, 23, 7), ["Mon 09:00", "Mon 09:30", "Mon 14:00", "Mon 14:30"]),
        (cal(horizon_days=0), la(2026, 11, 23, 7), []),
        (cal(slot=timedelta(minutes=40)), la(2026, 11, 23, 7), ["Mon 09:00", "Mon 14:00", "Tue 09:00"]),
        (cal(slot=timedelta(minutes=60)), la(2026, 11, 23, 7), ["Mon 09:00", "Mon 14:00", "Tue 09:00"]),
        (cal(slot=timedelta(minutes=61)), la(2026, 11, 23, 7), []),
        (cal(closed=frozenset({MON})), la(2026, 11, 23, 7), ["Tue 09:00", "Tue 09:30"]),
        (
            cal(closed=frozenset({MON + timedelta(days=1)})),
            la(2026, 11, 23, 7),
            ["Mon 09:00", "Mon 09:30", "Mon 14:00", "Mon 14:30"],
        ),
        (cal(), la(2026, 11, 21, 7), []),
        (cal(horizon_days=3), la(2026, 11, 21, 7), ["Mon 09:00", "Mon 09:30", "Mon 14:00", "Mon 14:30"]),
        (cal(), la(2026, 11, 23, 9, 10), ["Mon 09:30", "Mon 14:00", "Mon 14:30", "Tue 09:00", "Tue 09:30"]),
        (
            cal(notice=timedelta(minutes=20)),
            la(2026, 11, 23, 9, 10),
            ["Mon 09:30", "Mon 14:00", "Mon 14:30", "Tue 09:00", "Tue 09:30"],
        ),
        (
            cal(notice=timedelta(minutes=21)),
            la(2026, 11, 23, 9, 10),
            ["Mon 14:00", "Mon 14:30", "Tue 09:00", "Tue 09:30"],
        ),
        (cal(), la(2026, 11, 23, 23, 30), ["Tue 09:00", "Tue 09:30"]),
    ],
    ids=[
        "two-days",
        "horizon-one-day",
        "horizon-none",
        "slots-that-do-not-fill-a-span",
        "a-slot-exactly-the-span",
        "a-slot-longer-than-the-span",
        "closed-monday",
        "closed-tuesday",
        "weekend-has-no-hours",
        "horizon-reaches-monday",
        "a-slot-already-started-is-gone",
        "notice-exactly-to-a-start",
        "notice-a-minute-past-a-start",
        "late-monday-local-is-tuesday-utc",
    ],
)
def test_calendar_slots(calendar: Calendar, now: datetime, expected: list[str]) -> None:
    """Slots fill each open day's spans over the horizon, end by closing and start no sooner than now + notice."""
    slots = calendar_slots(calendar, now)
    assert hhmm(slots) == expected
    assert all(s.tzinfo is UTC for s in slots)


def test_the_clinics_date_is_today_not_utcs() -> None:
    """At 23:30 on Monday in Los Angeles it is Tuesday in UTC: today is still Monday for the clinic."""
    now = la(2026, 11, 23, 23, 30)
    assert now.date() == date(2026, 11, 24)
    slots = calendar_slots(cal(horizon_days=1, opening={1: [(time(9), time(10))]}), now)
    assert slots == []


def test_a_skipped_local_time_has_no_slot_and_a_repeated_one_has_one() -> None:
    """On the spring-forward Sunday 02:00-03:00 does not exist; on the fall-back Sunday 01:00 counts once."""
    night = {6: [(time(1), time(4))]}
    spring = calendar_slots(cal(opening=night, horizon_days=1, slot=timedelta(hours=1)), la(2026, 3, 8, 0))
    assert [s.isoformat() for s in spring] == ["2026-03-08T09:00:00+00:00", "2026-03-08T10:00:00+00:00"]
    autumn = calendar_slots(cal(opening=night, horizon_days=1, slot=timedelta(hours=1)), la(2026, 11, 1, 0))
    assert [s.isoformat() for s in autumn] == [
        "2026-11-01T08:00:00+00:00",
        "2026-11-01T10:00:00+00:00",
        "2026-11-01T11:00:00+00:00",
    ]


NOW = la(2026, 11, 23, 7)


@pytest.mark.parametrize(
    ("tier", "reserve", "expected"),
    [
        ("routine", timedelta(0), ["Mon 09:00", "Mon 09:30", "Mon 14:00", "Mon 14:30", "Tue 09:00", "Tue 09:30"]),
        ("routine", timedelta(hours=7), ["Mon 14:00", "Mon 14:30", "Tue 09:00", "Tue 09:30"]),
        ("routine", timedelta(hours=7, minutes=1), ["Mon 14:30", "Tue 09:00", "Tue 09:30"]),
        ("routine", timedelta(hours=48), []),
        ("urgent", timedelta(hours=48), ["Mon 09:00", "Mon 09:30", "Mon 14:00", "Mon 14:30", "Tue 09:00", "Tue 09:30"]),
        (
            "emergency",
            timedelta(hours=48),
            ["Mon 09:00", "Mon 09:30", "Mon 14:00", "Mon 14:30", "Tue 09:00", "Tue 09:30"],
        ),
    ],
    ids=[
        "routine-no-reserve",
        "routine-reserve-ends-exactly-at-a-start",
        "routine-reserve-a-minute-longer",
        "routine-all-reserved",
        "urgent-sees-the-reserve",
        "emergency-sees-the-reserve",
    ],
)
def test_the_reserve_is_offered_to_urgent_and_emergency_only(
    tier: str, reserve: timedelta, expected: list[str]
) -> None:
    """Slots sooner than `now + reserve` go to urgent and emergency escalations; routine ones start at it."""
    assert hhmm(offered_slots(cal(reserve=reserve), NOW, tier, set())) == expected


@pytest.mark.parametrize("tier", ["routine", "urgent"])
def test_taken_slots_are_not_offered(tier: str) -> None:
    """A booked slot is offered to no one; the others are."""
    taken = {la(2026, 11, 23, 9, 30), la(2026, 11, 24, 9)}
    assert hhmm(offered_slots(cal(), NOW, tier, taken)) == ["Mon 09:00", "Mon 14:00", "Mon 14:30", "Tue 09:30"]
