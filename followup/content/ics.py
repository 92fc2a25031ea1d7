"""A booked visit as an iCalendar file, for the patient's calendar app."""

from __future__ import annotations

from datetime import datetime

from icalendar import Calendar, Event


def visit_ics(
    *, uid: str, stamp: datetime, starts: datetime, ends: datetime, clinic_name: str, clinic_phone: str, cancelled: bool
) -> bytes:
    cal = Calendar()
    cal.add("prodid", "-//followup//booking//EN")
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    event = Event()
    event.add("uid", uid)
    event.add("dtstamp", stamp)
    event.add("dtstart", starts)
    event.add("dtend", ends)
    event.add("summary", f"Visit at {clinic_name}")
    event.add("description", f"To change or cancel, use your booking link or call {clinic_phone}.")
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    cal.add_component(event)
    return bytes(cal.to_ical())
