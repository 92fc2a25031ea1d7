"""The patient's booking page behind the link in an escalation message: /book/<token>.

The token is signed, expires (security.booking_link_days) and names one escalation; a bad or expired one gets a
plain "link expired" page (404) that shows nothing about anyone. The page works without JavaScript on a small
screen: one radio button per slot, grouped by day in <details>, one submit button.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from followup.content.dates import day_text, when_text
from followup.core.vocab import ABOVE_ROUTINE
from followup.runtime import Runtime
from followup.services import audit, booking
from followup.web.csrf import COOKIE, MAX_AGE, Csrf
from followup.web.deps import RuntimeDep

router = APIRouter(tags=["booking"], include_in_schema=False)
pages = Jinja2Templates(directory=str(Path(__file__).parent / "pages"))
TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Book a visit",
        "intro": "Our neurologist would like to see you. Pick a time that suits you.",
        "urgent": "We have kept the earliest times for you: please take one of the first if you can.",
        "soon": "soonest",
        "booked": "Your visit is booked. We have sent you a confirmation.",
        "moved": "Your visit has been moved. We have sent you a confirmation.",
        "cancelled": "Your visit is cancelled. You can pick another time below.",
        "your_visit": "Your visit",
        "calendar": "Add to my calendar",
        "cancel": "Cancel this visit",
        "move": "Move it to another time",
        "pick": "Pick a time",
        "book": "Book this time",
        "move_to": "Move my visit to this time",
        "none": "There are no free times online right now. Please call us.",
        "call": "Questions, or no time suits you? Call",
        "emergency": "If things suddenly get worse (trouble breathing or swallowing, sudden weakness), call 911.",
        "times_in": "Times are in the clinic's local time",
    },
    "es": {
        "title": "Pida su cita",
        "intro": "Nuestro neurólogo quiere verle. Elija la hora que mejor le venga.",
        "urgent": "Le hemos reservado las primeras horas: si puede, elija una de las primeras.",
        "soon": "lo antes posible",
        "booked": "Su cita está reservada. Le hemos enviado una confirmación.",
        "moved": "Su cita ha cambiado. Le hemos enviado una confirmación.",
        "cancelled": "Su cita se ha anulado. Puede elegir otra hora abajo.",
        "your_visit": "Su cita",
        "calendar": "Añadir a mi calendario",
        "cancel": "Anular esta cita",
        "move": "Cambiarla a otra hora",
        "pick": "Elija una hora",
        "book": "Reservar esta hora",
        "move_to": "Cambiar mi cita a esta hora",
        "none": "Ahora no hay horas libres en línea. Llámenos, por favor.",
        "call": "¿Preguntas, o ninguna hora le viene bien? Llame al",
        "emergency": "Si empeora de repente (le cuesta respirar o tragar, debilidad repentina), llame al 911.",
        "times_in": "Horas en la hora local de la clínica",
    },
}
DONE = ("booked", "moved", "cancelled")
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token must not leak to other sites
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}


def _page(request: Request, rt: Runtime, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    cookie = request.cookies.get(COOKIE) or Csrf.new_cookie()
    response = pages.TemplateResponse(
        request,
        template,
        {"clinic": rt.settings.clinic, "csrf_token": Csrf(rt.links.key).token(cookie), **context},
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


def _expired(request: Request, rt: Runtime) -> HTMLResponse:
    return _page(request, rt, "book_expired.html", 404)


def _form(
    request: Request,
    rt: Runtime,
    token: str,
    view: booking.BookingView,
    status: int = 200,
    error: str = "",
    done: str = "",
) -> HTMLResponse:
    if view.status == "closed" and view.appointment is None:
        return _page(request, rt, "book_expired.html", 410, closed=True)
    tz = ZoneInfo(rt.settings.clinic.timezone)
    days: dict[str, list[tuple[str, str, bool]]] = {}
    for slot in view.slots:
        local = slot.astimezone(tz)
        day = day_text(local.date(), view.language)
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
        appointment=when_text(appt.starts_at, tz, view.language) if appt else None,
        error=error,
        done=done if done in DONE else "",
        lang=view.language if view.language in TEXTS else "en",
        t=TEXTS.get(view.language, TEXTS["en"]),
        tz=rt.settings.clinic.timezone,
    )


def _escalation(rt: Runtime, token: str) -> int | None:
    return rt.links.booking_escalation(token) if len(token) <= 200 else None


@router.get("/book/{token}", response_class=HTMLResponse)
def booking_page(request: Request, token: str, rt: RuntimeDep, done: str = "") -> Response:
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
    return _form(request, rt, token, view, done=done)


@router.post("/book/{token}", response_class=HTMLResponse)
async def booking_submit(request: Request, token: str, rt: RuntimeDep) -> Response:
    """Book (or move to) a slot, or cancel. A slot someone else just took gets "pick another" and fresh slots."""
    escalation_id = _escalation(rt, token)
    if escalation_id is None or rt.settings.booking.external_url:
        return _expired(request, rt)
    form = await request.form()
    action = str(form.get("action") or "book")
    raw_slot = str(form.get("slot") or "")
    try:
        view = await run_in_threadpool(booking.view, rt, escalation_id)
    except booking.NoSuchEscalation:
        return _expired(request, rt)
    if not Csrf(rt.links.key).valid(request.cookies.get(COOKIE), str(form.get("csrf_token") or "")):
        return _form(request, rt, token, view, 403, _say(view, "expired_form"))
    try:
        if action == "cancel":
            await run_in_threadpool(booking.cancel, rt, escalation_id)
            done = "cancelled"
        elif action == "book":
            slot = _parse_slot(raw_slot)
            if slot is None:
                return _form(request, rt, token, view, 422, _say(view, "no_slot"))
            moving = view.appointment is not None
            await run_in_threadpool(booking.book, rt, escalation_id, slot)
            done = "moved" if moving else "booked"
        else:
            return _form(request, rt, token, view, 422, _say(view, "no_slot"))
    except booking.SlotTaken:
        fresh = await run_in_threadpool(booking.view, rt, escalation_id)
        return _form(request, rt, token, fresh, 409, _say(fresh, "taken"))
    except booking.BookingClosed:
        return _page(request, rt, "book_expired.html", 410, closed=True)
    except booking.NothingBooked:
        fresh = await run_in_threadpool(booking.view, rt, escalation_id)
        return _form(request, rt, token, fresh, 409, _say(fresh, "nothing"))
    return RedirectResponse(f"/book/{token}?done={done}", status_code=303)


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


ERRORS = {
    "en": {
        "expired_form": "This page was open too long. Please choose again.",
        "no_slot": "Please pick a time.",
        "taken": "Sorry, that time was just taken. Please pick another.",
        "nothing": "There is no booked visit to cancel.",
    },
    "es": {
        "expired_form": "La página llevaba mucho tiempo abierta. Elija de nuevo, por favor.",
        "no_slot": "Elija una hora, por favor.",
        "taken": "Lo sentimos, alguien acaba de reservar esa hora. Elija otra, por favor.",
        "nothing": "No hay ninguna cita reservada que anular.",
    },
}


def _say(view: booking.BookingView, key: str) -> str:
    return ERRORS.get(view.language, ERRORS["en"])[key]


def _parse_slot(raw: str) -> datetime | None:
    if not raw or len(raw) > 40:
        return None
    try:
        slot = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return slot.astimezone(UTC) if slot.tzinfo else None
