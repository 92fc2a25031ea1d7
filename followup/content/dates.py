"""Dates and times as a patient reads them, in their language ("martes 1 de diciembre, 09:30")."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

DAYS = {
    "en": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "es": ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"],
}
MONTHS = {
    "en": [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
    "es": [
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ],
}


def day_text(day: date, language: str = "en") -> str:
    lang = language if language in DAYS else "en"
    if lang == "es":
        return f"{DAYS[lang][day.weekday()]} {day.day} de {MONTHS[lang][day.month - 1]}"
    return f"{DAYS[lang][day.weekday()]} {day.day} {MONTHS[lang][day.month - 1]}"


def when_text(at: datetime, tz: ZoneInfo, language: str = "en") -> str:
    """The time as "Tuesday 1 December, 09:30" in the clinic's zone (24-hour: no AM/PM in two languages)."""
    local = at.astimezone(tz)
    return f"{day_text(local.date(), language)}, {local:%H:%M}"


SOON = timedelta(minutes=5)


def arrival(due: datetime, now: datetime, tz: ZoneInfo, language: str = "en") -> tuple[str, dict[str, str]]:
    """When a message will reach the patient, as a phrase key of pages.toml's [done] and its fill-ins: "soon"
    (within five minutes), "today" / "tomorrow" at a local time, or "on_day" for a later date."""
    if due - now <= SOON:
        return "soon", {}
    local, today = due.astimezone(tz), now.astimezone(tz).date()
    at = {"time": f"{local:%H:%M}"}
    if local.date() == today:
        return "today", at
    if local.date() == today + timedelta(days=1):
        return "tomorrow", at
    return "on_day", {**at, "day": day_text(local.date(), language)}
