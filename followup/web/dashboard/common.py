"""What every dashboard page shares: the templates, time formatting in the clinic's zone, and `render`, which adds
the signed-in staff member, the CSRF token, the navigation and the dashboard's CSP (our own script files only)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from followup.runtime import Runtime
from followup.services.alerting import Clock
from followup.services.staff import Staff
from followup.settings import Settings
from followup.web.dashboard import words
from followup.web.signatures import dev_twilio_token
from followup.web.staffauth import csrf_token

pages = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "pages"))

# Staff pages run only our own script files (the live queue count: /dashboard/assets/): no inline script and no
# eval, so even a missed escape could not run a patient's "<script>".
CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
DONE = {
    "acknowledge": "Acknowledged: the re-alert clock has stopped.",
    "book": "Marked as booked.",
    "close": "Closed.",
    "pause": "Follow-up paused.",
    "resume": "Follow-up resumed.",
    "unenroll": "Patient unenrolled: scheduled messages cancelled.",
    "channel": "Channel changed: scheduled messages moved.",
    "replied": "Reply sent through the SMS webhook, as if from the patient's phone.",
    "password": "Password changed. Your other sessions have ended.",
    "totp_confirm": "Second factor on: you will be asked for a code when you sign in.",
    "totp_remove": "Second factor off.",
    "staff_disable": "Account disabled: its sessions have ended.",
    "staff_enable": "Account enabled.",
    "staff_revoke": "Every session of the account has ended.",
    "staff_password": "Password set. The account's sessions have ended.",
    "staff_totp_reset": "Second factor reset: they sign in with the password and set up a new one.",
    "staff_unlock": "Failed sign-in counts cleared for the account.",
}


URL = re.compile(r"https?://[^\s<>\"']+")


def linkify(text: str) -> Markup:
    """Escape a message the service sent and make its links clickable (never used on patients' replies)."""
    parts: list[Markup] = []
    pos = 0
    for found in URL.finditer(text):
        url = escape(found.group(0))
        parts += [escape(text[pos : found.start()]), Markup('<a href="{0}">{0}</a>').format(url)]
        pos = found.end()
    parts.append(escape(text[pos:]))
    return Markup("").join(parts)


def phone_demo_available(settings: Settings) -> bool:
    """The patient-phone view exists only with the outbox (no real provider), where the development signing
    token lets a reply take the same signed webhook path as a real one."""
    return not settings.twilio_configured and not settings.sendgrid_configured and bool(dev_twilio_token(settings))


def duration(td: timedelta) -> str:
    """A short human duration: "45 s", "12 min", "3 h 05 min", "2 d 4 h"."""
    secs = int(abs(td.total_seconds()))
    if secs < 60:
        return f"{secs} s"
    mins = secs // 60
    if mins < 60:
        return f"{mins} min"
    hours, mins = divmod(mins, 60)
    if hours < 48:
        return f"{hours} h {mins:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def clock_text(clock: Clock, now: datetime, escalation: Any = None) -> tuple[str, str]:
    """(text, css class) for an acknowledgement clock. A stopped clock says why: acknowledged, or booked or closed
    without anyone acknowledging it (issue 12: "owned" showed for escalations nobody had taken)."""
    if clock.due_at is None:
        if escalation is None or escalation.acknowledged_at is not None:
            return "acknowledged", "ok"
        return f"{escalation.status}, never acknowledged", "muted"
    if clock.overdue:
        return f"overdue by {duration(now - clock.due_at)}", "late"
    return f"due in {duration(clock.due_at - now)}", "soon"


def render(
    request: Request, rt: Runtime, staff: Staff, template: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    tz = ZoneInfo(rt.settings.clinic.timezone)

    def local(dt: datetime | None, fmt: str = "%a %d %b %H:%M") -> str:
        return dt.astimezone(tz).strftime(fmt) if dt else ""

    def patient_time(zone: str) -> str:
        try:
            return rt.clock.now().astimezone(ZoneInfo(zone)).strftime("%H:%M")
        except (ValueError, KeyError):
            return ""

    def event_text(action: str, actor: str | None, detail: dict[str, Any], names: dict[str, str]) -> str:
        return words.event_text(action, actor, detail or {}, names, local)

    done = request.query_params.get("done", "")
    response = pages.TemplateResponse(
        request,
        f"dashboard/{template}",
        {
            "clinic": rt.settings.clinic,
            "staff": staff,
            "csrf_token": csrf_token(rt, request),
            "phone_demo": phone_demo_available(rt.settings),
            "now": rt.clock.now(),
            "local": local,
            "duration": duration,
            "clock_text": clock_text,
            "linkify": linkify,
            "phone_text": words.phone_text,
            "answer_label": words.answer_label,
            "answer_text": words.answer_text,
            "actor_text": words.actor_text,
            "event_text": event_text,
            "patient_time": patient_time,
            "flash": DONE.get(done, ""),
            **context,
        },
        status_code=status_code,
    )
    response.headers["Cache-Control"] = "no-store"
    # Scripts from this origin only, never inline (see CSP above); web/headers.py adds nosniff, the referrer
    # policy and X-Frame-Options.
    response.headers["Content-Security-Policy"] = CSP
    return response
