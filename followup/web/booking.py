"""The patient's booking page behind the link in an escalation message: /book/<token>.

The token is signed, expires (security.booking_link_days) and names one escalation; a bad or expired one gets a
plain "link expired" page (404) that shows nothing about anyone. The page works without JavaScript on a small
screen: one radio button per slot, grouped by day in <details>, one submit button.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from followup.content.dates import day_text, when_text
from followup.core.vocab import ABOVE_ROUTINE
from followup.runtime import Runtime
from followup.services import audit, booking
from followup.web.csrf import COOKIE, MAX_AGE, Csrf
from followup.web.deps import RuntimeDep
from followup.web.patientpages import common, pages, switch, words

router = APIRouter(tags=["booking"], include_in_schema=False)
DONE = ("booked", "moved", "cancelled")
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token must not leak to other sites
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}


def _page(
    request: Request, rt: Runtime, template: str, status: int = 200, lang: str = "en", **context: Any
) -> HTMLResponse:
    cookie = request.cookies.get(COOKIE) or Csrf.new_cookie()
    response = pages.TemplateResponse(
        request,
        template,
        {**common(rt, lang), "csrf_token": Csrf(rt.links.key).token(cookie), **context},
        status_code=status,
    )
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=MAX_AGE,
        httponly=True,
        samesite="strict",
        secure=rt.settings.server.public_url.startswith("https://"),
    )
    response.headers.update(HEADERS)
    return response


def _expired(request: Request, rt: Runtime, status: int = 404, closed: bool = False) -> HTMLResponse:
    """Nobody is known from a bad link: the page says it in every language."""
    every = [(lang, words(rt, lang)) for lang in rt.settings.clinic.languages]
    return _page(request, rt, "book_expired.html", status, closed=closed, every=every)


def _language(view: booking.BookingView, rt: Runtime, asked: str | None) -> str:
    """The patient's language, unless they chose another with the switch at the top."""
    languages = rt.settings.clinic.languages
    if asked in languages:
        return str(asked)
    return view.language if view.language in languages else languages[0]


def _form(
    request: Request,
    rt: Runtime,
    token: str,
    view: booking.BookingView,
    status: int = 200,
    error: str = "",
    done: str = "",
    asked: str | None = None,
) -> HTMLResponse:
    if view.status == "closed" and view.appointment is None:
        return _expired(request, rt, 410, closed=True)
    lang = _language(view, rt, asked)
    tz = ZoneInfo(rt.settings.clinic.timezone)
    days: dict[str, list[tuple[str, str, bool]]] = {}
    for slot in view.slots:
        local = slot.astimezone(tz)
        day = day_text(local.date(), lang)
        days.setdefault(day, []).append((slot.isoformat(), f"{local:%H:%M}", slot < view.reserve_until))
    appt = view.appointment
    return _page(
        request,
        rt,
        "book.html",
        status,
        token=token,
        view=view,
        days=list(days.items()),
        urgent=view.tier in ABOVE_ROUTINE,
        appointment=when_text(appt.starts_at, tz, lang) if appt else None,
        error=words(rt, lang)["booking"][error] if error else "",
        done=done if done in DONE else "",
        lang=lang,
        asked=asked if asked in rt.settings.clinic.languages else "",
        languages=switch(rt, f"/book/{token}", lang),
        tz=rt.settings.clinic.timezone,
    )


def _escalation(rt: Runtime, token: str) -> int | None:
    return booking.escalation_for_token(rt, token)


@router.get("/book/{token}", response_class=HTMLResponse)
def booking_page(request: Request, token: str, rt: RuntimeDep, done: str = "", lang: str = "") -> Response:
    """The slots this escalation may take, or its booked visit with cancel and move."""
    escalation_id = _escalation(rt, token)
    if escalation_id is None:
        return _expired(request, rt)
    if rt.settings.booking.external_url:
        audit.note(rt, "patient", "booking.link_opened", f"escalation:{escalation_id}", external=True)
        return RedirectResponse(
            rt.settings.booking.external_url, status_code=303, headers={"Referrer-Policy": "no-referrer"}
        )
    try:
        view = booking.view(rt, escalation_id)
    except booking.NoSuchEscalation:
        return _expired(request, rt)
    return _form(request, rt, token, view, done=done, asked=lang)


@router.post("/book/{token}", response_class=HTMLResponse)
async def booking_submit(request: Request, token: str, rt: RuntimeDep) -> Response:
    """Book (or move to) a slot, or cancel. A slot someone else just took gets "pick another" and fresh slots."""
    escalation_id = await run_in_threadpool(_escalation, rt, token)
    if escalation_id is None or rt.settings.booking.external_url:
        return _expired(request, rt)
    form = await request.form()
    action = str(form.get("action") or "book")
    asked = str(form.get("lang") or "")
    raw_slot = str(form.get("slot") or "")
    try:
        view = await run_in_threadpool(booking.view, rt, escalation_id)
    except booking.NoSuchEscalation:
        return _expired(request, rt)
    if not Csrf(rt.links.key).valid(request.cookies.get(COOKIE), str(form.get("csrf_token") or "")):
        return _form(request, rt, token, view, 403, "expired_form", asked=asked)
    try:
        if action == "cancel":
            await run_in_threadpool(booking.cancel, rt, escalation_id)
            done = "cancelled"
        elif action == "book":
            slot = _parse_slot(raw_slot)
            if slot is None:
                return _form(request, rt, token, view, 422, "no_slot", asked=asked)
            moving = view.appointment is not None
            await run_in_threadpool(booking.book, rt, escalation_id, slot)
            done = "moved" if moving else "booked"
        else:
            return _form(request, rt, token, view, 422, "no_slot", asked=asked)
    except booking.SlotTaken:
        fresh = await run_in_threadpool(booking.view, rt, escalation_id)
        return _form(request, rt, token, fresh, 409, "taken", asked=asked)
    except booking.BookingClosed:
        return _expired(request, rt, 410, closed=True)
    except booking.NothingBooked:
        fresh = await run_in_threadpool(booking.view, rt, escalation_id)
        return _form(request, rt, token, fresh, 409, "nothing", asked=asked)
    chosen = f"&lang={asked}" if asked in rt.settings.clinic.languages else ""
    return RedirectResponse(f"/book/{token}?done={done}{chosen}", status_code=303)


@router.get("/book/{token}/calendar.ics")
def booking_ics(token: str, rt: RuntimeDep) -> Response:
    """The booked visit as an iCalendar invite."""
    escalation_id = _escalation(rt, token)
    appt = booking.appointment_for(rt, escalation_id) if escalation_id is not None else None
    if appt is None:
        return Response("no booked visit for this link", status_code=404, media_type="text/plain")
    return Response(
        booking.ics(rt, appt),
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="visit.ics"', **HEADERS},
    )


def _parse_slot(raw: str) -> datetime | None:
    if not raw or len(raw) > 40:
        return None
    try:
        slot = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return slot.astimezone(UTC) if slot.tzinfo else None
