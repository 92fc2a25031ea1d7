"""The patient-facing intake page: the triage questions on a phone screen, no login, consent, CSRF.

The page speaks the patient's language (the switch at the top, else the browser's). Every problem with the answers
is found in one pass and shown next to its field in plain words; nothing is written unless all is valid. Questions
about the eyelid and face are asked only of someone whose twitching may be there (hidden by CSS `:has()`, no
script; without `:has()` they show and stay optional).
"""

from __future__ import annotations

import math
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from followup.content.dates import arrival
from followup.core.schedule import Window
from followup.core.triage import EMAIL, Answers, InputError, TriageIn, normalise_phone
from followup.core.vocab import Tier, most_serious
from followup.runtime import Runtime
from followup.services.drafts import CRISIS_CRITERIA_PREFIX, oncall
from followup.services.enrollment import TriageResult
from followup.services.intake import submit_public
from followup.settings import check_timezone
from followup.web.csrf import COOKIE, MAX_AGE, Csrf
from followup.web.deps import RuntimeDep
from followup.web.headers import CSP_WITH_SCRIPT
from followup.web.patientpages import common, page_language, pages, switch, words

router = APIRouter(tags=["intake"])
ZONES = sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/", "posix/")))

SYMPTOMS = (
    "weakness",
    "atrophy",
    "daily_activities",
    "speech_swallowing",
    "breathing",
    "numbness_tingling",
    "balance",
    "severe_cramps",
)
EYE = ("eyelid_closes", "face_spread", "vision_changes")  # asked only when the twitching may be in the eye or face
EYE_PLACES = frozenset({"eyelid", "face", "widespread"})
PLACES = ("eyelid", "face", "calf", "thigh", "foot", "arm", "hand", "back", "chest", "tongue", "widespread")
NUMBERS = ("onset_weeks", "caffeine_per_day", "sleep_hours", "stress", "water_glasses", "alcohol_per_week")
OPTIONAL_NUMBERS = {"alcohol_per_week": 0}  # left empty: none


def eye_questions_apply(places: list[str]) -> bool:
    """The eyelid and face questions matter unless the patient named only places away from the face."""
    return not places or bool(EYE_PLACES & set(places))


def _bounds(name: str) -> tuple[float, float, bool]:
    """A number question's range and whether it takes whole numbers only, from the triage model itself."""
    field = Answers.model_fields[name]
    low = next(float(m.ge) for m in field.metadata if hasattr(m, "ge"))
    high = next(float(m.le) for m in field.metadata if hasattr(m, "le"))
    return low, high, field.annotation is int


def _render(
    request: Request,
    rt: Runtime,
    lang: str,
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
            **common(rt, lang),
            "languages": switch(rt, "/intake", lang),
            "switch_form": "intake-form",  # the switch re-sends the form: answers typed so far are kept
            "values": values or {},
            "errors": errors or {},
            "zones": ZONES,
            "symptoms": SYMPTOMS,
            "eye": EYE,
            "places": PLACES,
            "numbers": [(name, *_bounds(name)) for name in NUMBERS],
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
def intake_form(request: Request, rt: RuntimeDep, lang: str = "") -> HTMLResponse:
    """The intake form, in the language asked for (`?lang=es`) or the browser's."""
    return _render(request, rt, page_language(request, rt, lang))


@router.post("/intake", response_class=HTMLResponse)
async def intake_submit(request: Request, rt: RuntimeDep) -> HTMLResponse:
    """Submit the intake form: errors are shown next to their fields; nothing is written unless all is valid."""
    form = await request.form()
    values: dict[str, Any] = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    values["locations_list"] = [v for v in form.getlist("locations") if isinstance(v, str)]
    lang = page_language(request, rt, values.get("switch_to") or values.get("language"))
    if values.get("switch_to"):  # the language switch at the top: the same answers, in the other language
        return _render(request, rt, lang, 200, values)
    said = words(rt, lang)["errors"]
    if not Csrf(rt.links.key).valid(request.cookies.get(COOKIE), values.get("csrf_token")):
        return _render(request, rt, lang, 403, values, {"form": said["form_expired"]})
    data, problems = _check(values, lang, rt)
    if problems or data is None:
        return _render(request, rt, lang, 422, values, _say(said, problems))
    try:
        result = await run_in_threadpool(submit_public, rt, data)
    except InputError as exc:
        field = exc.field.split(".")[-1]
        key = {("phone", "not_mobile"): "phone_not_mobile", ("phone", "region"): "phone_region"}.get(
            (field, exc.code), "other"
        )
        return _render(request, rt, lang, 422, values, _say(said, {field: (key, _regions(rt))}))
    return pages.TemplateResponse(
        request,
        "intake_done.html",
        {**common(rt, lang), **_outcome(rt, data, result, lang)},
        status_code=201,
    )


Problem = tuple[str, dict[str, str]]  # a key of pages.toml's [errors] and what fills its braces


def _say(said: dict[str, str], problems: dict[str, Problem]) -> dict[str, str]:
    return {field: said[key].format(**fill) for field, (key, fill) in problems.items()}


def _regions(rt: Runtime) -> dict[str, str]:
    return {"regions": ", ".join(rt.settings.texting_regions)}


def _number(raw: str) -> float | None:
    """A number as a patient types it: "6", "6.5", "6,5" (a decimal comma), " 7 "."""
    try:
        value = float(raw.strip().replace(",", "."))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _check(values: dict[str, Any], lang: str, rt: Runtime) -> tuple[TriageIn | None, dict[str, Problem]]:
    """Every problem with the form at once, in the order of the page, as (field -> problem)."""
    problems: dict[str, Problem] = {}
    region = rt.settings.clinic.default_region
    if not " ".join(str(values.get("name", "")).split()):
        problems["name"] = ("name", {})
    channel = values.get("channel") if values.get("channel") in ("sms", "email") else "sms"
    phone, email = str(values.get("phone", "")).strip(), str(values.get("email", "")).strip()
    if phone:
        try:
            normalise_phone(phone, region, rt.settings.texting_regions)
        except InputError as exc:
            key = {"not_mobile": "phone_not_mobile", "region": "phone_region"}.get(exc.code, "phone_invalid")
            problems["phone"] = (key, _regions(rt) if key == "phone_region" else {})
    elif channel == "sms":
        problems["phone"] = ("phone_needed", {})
    if email and not EMAIL.match(email.lower()):
        problems["email"] = ("email_invalid", {})
    elif not email and channel == "email":
        problems["email"] = ("email_needed", {})
    try:
        check_timezone(str(values.get("timezone", "")))
    except ValueError:
        problems["timezone"] = ("timezone", {})
    places = values.get("locations_list", [])
    if any(p not in PLACES for p in places):
        problems["locations"] = ("locations", {})
    answers: dict[str, Any] = {"locations": [p for p in places if p in PLACES]}
    asked = SYMPTOMS + (EYE if eye_questions_apply(places) else ())
    for name in NUMBERS[:1] + SYMPTOMS + EYE + NUMBERS[1:]:
        raw = str(values.get(name, "")).strip()
        if name in NUMBERS:
            low, high, whole = _bounds(name)
            if not raw and name in OPTIONAL_NUMBERS:
                answers[name] = OPTIONAL_NUMBERS[name]
                continue
            value = _number(raw)
            fill = {"low": f"{low:g}", "high": f"{high:g}"}
            if value is None and not raw:
                problems[name] = ("number", {})
            elif value is None or not low <= value <= high or (whole and value != int(value)):
                problems[name] = ("whole" if whole else "range", fill)
            else:
                answers[name] = int(value) if whole else value
        elif raw in ("yes", "no"):
            answers[name] = raw == "yes"  # a "yes" counts even to a question that no longer shows
        elif name in asked:
            problems[name] = ("yes_no", {})  # an unanswered symptom question is not a "no"
    answers["intense_exercise"] = values.get("intense_exercise") == "yes"
    if values.get("consent") != "yes":
        problems["consent"] = ("consent", {})
    if problems:
        return None, problems
    payload = {
        "name": values.get("name", ""),
        "phone": phone or None,
        "email": email or None,
        "channel": channel,
        "timezone": values.get("timezone", ""),
        "language": lang,
        "consent": True,
        "consent_text": words(rt, lang)["intake"]["consent_text"],
        "answers": answers,
    }
    try:
        return TriageIn.model_validate(payload), {}
    except ValidationError as exc:  # what the checks above do not foresee (a 300-character name, a NUL)
        for err in exc.errors():
            loc = [str(p) for p in err["loc"] if p != "answers"]
            problems.setdefault(loc[0] if loc else "form", ("other", {}))
        return None, problems


def _outcome(rt: Runtime, data: TriageIn, result: TriageResult, lang: str) -> dict[str, Any]:
    """What the thank-you page tells the patient: what to do now for an escalation (by tier), or when the first
    message will come, in their own time zone; and that their contact must be confirmed first. It reads nothing
    that differs between contacts already held and new ones (issue 11, finding 2): no message goes to an
    unconfirmed contact yet, so the page never says one was sent, only that the confirmation was."""
    now = rt.clock.now()
    tz = ZoneInfo(data.timezone)
    # The confirmation request is a consent message: it waits for the patient's sending hours like any other, so
    # a form sent at night is told when it will come, not that it has come.
    window = Window(rt.settings.schedule.send_from, rt.settings.schedule.send_until)
    confirm_at = window.next_open(now, tz)
    key, fill = arrival(confirm_at, now, tz, lang)
    out: dict[str, Any] = {
        "channel": data.channel,
        "alerted": bool(oncall(rt.settings)),
        "confirm": data.channel,
        "confirm_when": words(rt, lang)["done"][key].format(**fill),
    }
    if result.disposition != "escalated":
        # The program's first message (the confirmation request, a consent message, goes first and is not it).
        scheduled = [st.due_at for st in result.steps if st.status == "scheduled" and st.kind != "consent"]
        if scheduled:
            key, fill = arrival(min(scheduled), now, tz, lang)
            out["first"] = words(rt, lang)["done"][key].format(**fill)
            # A first message already due when the confirmation goes out waits for the patient's answer, not for
            # a clock time: saying "tomorrow at 09:00" for both would promise it before the patient could reply.
            waits = min(scheduled) <= confirm_at
            out["first_key"] = f"first_after_{data.channel}" if waits else f"first_{data.channel}"
        return {**out, "tier": None}
    criteria = rt.detector.criteria
    tiers = [criteria[c].tier if c in criteria else Tier.ROUTINE for c in result.red_flags]
    return {
        **out,
        "tier": str(most_serious(tiers)) if tiers else Tier.ROUTINE.value,
        "crisis": any(c.startswith(CRISIS_CRITERIA_PREFIX) for c in result.red_flags),
        "told": False,  # the advice waits for the confirmation: the page is what tells the patient now
        "told_by": data.channel,
    }
