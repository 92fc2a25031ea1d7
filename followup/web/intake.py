"""The patient-facing intake page: the triage questions on a phone screen, no login, consent, CSRF."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import available_timezones

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from followup.core.triage import Answers, InputError, TriageIn
from followup.services.enrollment import DEFAULT_CONSENT_TEXT, submit_triage
from followup.web.csrf import COOKIE, MAX_AGE, Csrf
from followup.web.deps import RuntimeDep
from followup.web.headers import CSP_WITH_SCRIPT

router = APIRouter(tags=["intake"])
pages = Jinja2Templates(directory=str(Path(__file__).parent / "pages"))
ZONES = sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/", "posix/")))

YES_NO = [
    ("weakness", "Have you noticed any muscle weakness or loss of strength?"),
    ("atrophy", "Does any muscle look smaller or thinner than before (wasting)?"),
    (
        "daily_activities",
        "Any new trouble with daily activities: walking, climbing stairs, lifting, writing, buttoning, opening jars?",
    ),
    ("speech_swallowing", "Any trouble speaking or swallowing?"),
    ("breathing", "Any trouble breathing?"),
    ("numbness_tingling", "Any numbness or tingling?"),
    ("balance", "Any problems with balance or coordination?"),
    ("severe_cramps", "Severe or disruptive cramps, or twitching that keeps you from sleeping?"),
    ("eyelid_closes", "Does eyelid twitching close your eye completely?"),
    ("face_spread", "Has the twitching spread to other parts of your face?"),
    ("vision_changes", "Any changes in your vision?"),
]
LOCATIONS = [
    ("eyelid", "Eyelid"),
    ("face", "Face"),
    ("calf", "Calves"),
    ("thigh", "Thighs"),
    ("foot", "Feet"),
    ("arm", "Arms"),
    ("hand", "Hands"),
    ("back", "Back"),
    ("chest", "Chest"),
    ("tongue", "Tongue"),
    ("widespread", "All over / moving around"),
]
NUMBERS = [
    ("onset_weeks", "How many weeks have you had the twitching?", "0", "1040", "0.5"),
    ("caffeine_per_day", "Cups of coffee, tea or energy drinks a day", "0", "40", "0.5"),
    ("sleep_hours", "Hours of sleep on a usual night", "0", "24", "0.5"),
    ("stress", "Stress lately, from 0 (none) to 10 (extreme)", "0", "10", "1"),
    ("water_glasses", "Glasses of water a day", "0", "60", "1"),
    ("alcohol_per_week", "Alcoholic drinks a week", "0", "200", "1"),
]


def _render(
    request: Request,
    rt: Any,
    status: int = 200,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
) -> HTMLResponse:
    csrf = Csrf(rt.links.key)
    cookie = request.cookies.get(COOKIE) or Csrf.new_cookie()
    response = pages.TemplateResponse(
        request,
        "intake.html",
        {
            "clinic": rt.settings.clinic,
            "values": values or {},
            "errors": errors or {},
            "zones": ZONES,
            "yes_no": YES_NO,
            "locations": LOCATIONS,
            "numbers": NUMBERS,
            "consent_text": DEFAULT_CONSENT_TEXT,
            "csrf_token": csrf.token(cookie),
        },
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
    response.headers["Content-Security-Policy"] = CSP_WITH_SCRIPT  # /static/intake.js, nothing inline
    return response


@router.get("/intake", response_class=HTMLResponse)
def intake_form(request: Request, rt: RuntimeDep) -> HTMLResponse:
    """The intake form."""
    return _render(request, rt)


@router.post("/intake", response_class=HTMLResponse)
async def intake_submit(request: Request, rt: RuntimeDep) -> HTMLResponse:
    """Submit the intake form: errors are shown next to their fields; nothing is written unless all is valid."""
    form = await request.form()
    values: dict[str, Any] = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    values["locations_list"] = [v for v in form.getlist("locations") if isinstance(v, str)]
    if not Csrf(rt.links.key).valid(request.cookies.get(COOKIE), values.get("csrf_token")):
        return _render(
            request,
            rt,
            403,
            values,
            {"form": "This form expired. Please check your answers and send it again."},
        )
    data, errors = _parse(form, values)
    if errors or data is None:
        return _render(request, rt, 422, values, errors)
    try:
        result = await run_in_threadpool(submit_triage, rt, data, source="intake", actor="intake")
    except InputError as exc:
        return _render(request, rt, 422, values, {exc.field.split(".")[-1]: exc.message})
    return pages.TemplateResponse(
        request,
        "intake_done.html",
        {
            "clinic": rt.settings.clinic,
            "disposition": result.disposition,
            "channel": data.channel if data else "sms",
        },
        status_code=201,
    )


def _parse(form: Any, values: dict[str, Any]) -> tuple[TriageIn | None, dict[str, str]]:
    answers: dict[str, Any] = {name: values.get(name) == "yes" for name, _ in YES_NO}
    errors: dict[str, str] = {}
    for name, _ in YES_NO:  # an unanswered symptom question is not a "no"
        if values.get(name) not in ("yes", "no"):
            errors[name] = "Please answer yes or no."
    for name, *_ in NUMBERS:
        raw = values.get(name, "").strip()
        answers[name] = raw if raw else (0 if name == "alcohol_per_week" else None)
    answers["locations"] = [v for v in form.getlist("locations") if isinstance(v, str)]
    answers["intense_exercise"] = values.get("intense_exercise") == "yes"
    payload = {
        "name": values.get("name", ""),
        "phone": values.get("phone") or None,
        "email": values.get("email") or None,
        "channel": values.get("channel", "sms"),
        "timezone": values.get("timezone", ""),
        "language": values.get("language", "en"),
        "consent": values.get("consent") == "yes",
        "consent_text": DEFAULT_CONSENT_TEXT,
        "answers": answers,
    }
    try:
        data = TriageIn.model_validate(payload)
    except ValidationError as exc:
        for err in exc.errors():
            loc = [str(p) for p in err["loc"] if p != "answers"]
            key = loc[0] if loc else "form"
            errors.setdefault(key, _friendly(key, str(err["msg"])))
        return None, errors
    if errors:
        return None, errors
    return data, {}


def _friendly(field: str, msg: str) -> str:
    if field in Answers.model_fields and ("valid number" in msg or "none" in msg.lower()):
        return "Please enter a number."
    return msg.removeprefix("Value error, ")
