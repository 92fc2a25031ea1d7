"""The clinic's booking calendar, pure: which slot starts exist, and which an escalation's tier is offered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from followup.core.vocab import ABOVE_ROUTINE
from followup.settings import Settings


@dataclass(frozen=True)
class Calendar:
    opening: dict[int, list[tuple[time, time]]]  # weekday (Monday 0) -> local opening spans
    slot: timedelta
    horizon_days: int
    closed: frozenset[date]
    tz: ZoneInfo
    reserve: timedelta  # slots this soon are kept for urgent and emergency escalations
    notice: timedelta  # nothing starts sooner than this

    @classmethod
    def from_settings(cls, settings: Settings) -> Calendar:
        b = settings.booking
        return cls(
            opening=b.opening(),
            slot=timedelta(minutes=b.slot_minutes),
            horizon_days=b.horizon_days,
            closed=frozenset(b.closed_days),
            tz=ZoneInfo(settings.clinic.timezone),
            reserve=timedelta(hours=b.urgent_reserve_hours),
            notice=timedelta(minutes=b.min_notice_minutes),
        )


def calendar_slots(cal: Calendar, now: datetime) -> list[datetime]:
    """Every slot start (UTC) from `now + notice` to the end of the horizon, in opening hours, on open days.
    A local time that does not exist (the DST jump) is skipped; a repeated one (fall back) is its first instance."""
    today = now.astimezone(cal.tz).date()
    earliest = now + cal.notice
    out: list[datetime] = []
    for offset in range(cal.horizon_days):
        day = today + timedelta(days=offset)
        if day in cal.closed:
            continue
        for start, end in cal.opening.get(day.weekday(), []):
            at = datetime.combine(day, start)
            while at + cal.slot <= datetime.combine(day, end):
                local = at.replace(tzinfo=cal.tz)
                instant = local.astimezone(UTC)
                if instant.astimezone(cal.tz).replace(tzinfo=None) == at and instant >= earliest:
                    out.append(instant)
                at += cal.slot
    return out


def offered_slots(cal: Calendar, now: datetime, tier: str, taken: set[datetime]) -> list[datetime]:
    """Free slots for an escalation's tier: urgent and emergency get the earliest (the reserve) too; routine ones
    start after the reserve."""
    free = [s for s in calendar_slots(cal, now) if s not in taken]
    if tier in ABOVE_ROUTINE:
        return free
    return [s for s in free if s >= now + cal.reserve]
