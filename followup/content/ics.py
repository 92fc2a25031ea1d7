"""A booked visit as an iCalendar file, for the patient's calendar app, in the patient's language."""

from __future__ import annotations

from datetime import datetime

from icalendar import Calendar, Event


def visit_ics(
    *,
    uid: str,
    stamp: datetime,
    starts: datetime,
    ends: datetime,
    summary: str,
    description: str,
    language: str,
    cancelled: bool,
) -> bytes:
    """One VEVENT; its texts carry their language (RFC 5545 LANGUAGE) so a calendar app can tell."""
    cal = Calendar()
    cal.add("prodid", f"-//followup//booking//{language.upper()}")
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    event = Event()
    event.add("uid", uid)
    event.add("dtstamp", stamp)
    event.add("dtstart", starts)
    event.add("dtend", ends)
    event.add("summary", summary, parameters={"LANGUAGE": language})
    event.add("description", description, parameters={"LANGUAGE": language})
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    cal.add_component(event)
    return bytes(cal.to_ical())
