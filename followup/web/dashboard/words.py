"""What staff read instead of codes: events in sentences, who did it, triage questions and answers as entered, phone
numbers as people write them. Issue 12: "escalation.no_oncall_configured by system", "booked booked by the
patient", "6.0"."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import phonenumbers

from followup.core.triage import Answers

Local = Callable[..., str]


def actor_text(actor: str | None, names: Mapping[str, str]) -> str:
    """ "staff:3" -> their email; "patient:12" -> the patient; "system" -> the service."""
    if not actor:
        return "someone"
    if actor in names:
        return names[actor]
    if actor.startswith("patient:") or actor == "patient":
        return "the patient"
    if actor == "system":
        return "the service"
    if actor.startswith("token:"):
        return "the clinic's system (API)"
    if actor.startswith("oncall:tier"):  # a key pressed on the emergency phone call
        return f"on-call tier {actor.removeprefix('oncall:tier')} (phone call)"
    return actor


def _when(detail: Mapping[str, Any], key: str, local: Local) -> str:
    raw = detail.get(key)
    if not raw:
        return ""
    try:
        return local(datetime.fromisoformat(str(raw)), "%a %d %b %H:%M")
    except ValueError:
        return str(raw)


def _source(detail: Mapping[str, Any]) -> str:
    return {"reply": "a reply", "triage": "the triage answers"}.get(str(detail.get("source", "")), "")


# action -> a sentence from the entry's detail; the actor is added after ("by ...") unless it is the service.
EVENTS: dict[str, Callable[[Mapping[str, Any], Local], str]] = {
    "escalation.opened": lambda d, _: (
        f"Escalation opened, {d.get('tier', '')}" + (f", from {_source(d)}" if _source(d) else "")
    ),
    "escalation.upgraded": lambda d, _: (
        f"Moved up to {d.get('tier', '')}" + (f" by {_source(d)}" if _source(d) else "")
    ),
    "escalation.added_to": lambda d, _: (
        "Another red flag added" + (f" from {_source(d)}" if _source(d) else "") + " (tier unchanged, no new alert)"
    ),
    "escalation.patient_unreachable": lambda d, _: "The patient could not be sent advice: no channel reaches them",
    "escalation.no_oncall_configured": lambda d, _: "No one was alerted: no on-call contact is configured",
    "escalation.sender_unverified": lambda d, _: (
        "From an email not proven to be the patient's (no reply token, SPF and DKIM did not pass): nothing was sent"
        f" to the patient; read as {d.get('read_as', 'a red flag')}, raised for review: call the patient to check"
    ),
    "escalation.realerted": lambda d, _: (
        ("Not acknowledged on the phone call" if d.get("why", "sla") != "sla" else "Not acknowledged in time")
        + f": re-alert {d.get('round', '')} sent to {d.get('recipients', 0)} contact(s) of on-call tier "
        f"{d.get('tier_index', '')}" + (f", {d['calls']} called" if d.get("calls") else "")
    ),
    "voice.call_placed": lambda d, _: f"Phone call placed to on-call tier {d.get('tier', '')}",
    "voice.acknowledged": lambda d, _: "Acknowledged on the phone call (pressed 1)",
    "voice.not_acknowledged": lambda d, _: f"Phone call not acknowledged ({d.get('why', '')})",
    "escalation.realert_nobody": lambda d, _: (
        f"Not acknowledged in time: re-alert {d.get('round', '')} reached no one (no contacts in that tier)"
    ),
    "escalation.acknowledge": lambda d, _: "Acknowledged",
    "escalation.book": lambda d, _: "Marked as booked",
    "escalation.close": lambda d, _: "Closed",
    "appointment.booked": lambda d, local: f"Visit booked for {_when(d, 'starts_at', local)}",
    "appointment.moved": lambda d, local: (
        f"Visit moved from {_when(d, 'moved_from', local)} to {_when(d, 'starts_at', local)}"
    ),
    "appointment.cancelled": lambda d, local: f"Visit for {_when(d, 'starts_at', local)} cancelled",
    "booking.link_opened": lambda d, _: "Booking link opened (the clinic's own scheduler)",
}


def event_text(
    action: str, actor: str | None, detail: Mapping[str, Any], names: Mapping[str, str], local: Local
) -> str:
    """One audit entry as a sentence: "Acknowledged by nurse@clinic.example", "Visit booked for Tue 01 Dec 10:00 by
    the patient"; an action without a sentence yet reads as its words ("escalation reopened")."""
    make = EVENTS.get(action)
    text = make(detail, local) if make else action.replace(".", " ").replace("_", " ").capitalize()
    who = actor_text(actor, names)
    return text if who == "the service" else f"{text} by {who}"


def answer_label(key: str) -> str:
    """The triage question a key stands for (core/triage.py's descriptions), or the key in words."""
    field = Answers.model_fields.get(key)
    if field is not None and field.description:
        return field.description
    return key.replace("_", " ").capitalize()


def answer_text(value: Any) -> str:
    """An answer as the patient gave it: yes / no, 6 rather than 6.0, lists joined."""
    if value is True:
        return "yes"
    if value is False:
        return "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(answer_text(v) for v in value) or "none"
    if value is None or value == "":
        return "not answered"
    return str(value)


def phone_text(e164: str | None) -> str:
    """A stored E.164 number as people read it ("+1 310-555-0142")."""
    if not e164:
        return ""
    try:
        return phonenumbers.format_number(phonenumbers.parse(e164, None), phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    except phonenumbers.NumberParseException:
        return e164
