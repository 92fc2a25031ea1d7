"""The patient-facing intake page: a form with a CSRF token; a POST without it is refused and writes nothing; a valid
one enrolls the patient; a wrong field is shown next to the field. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from factories import intake_form
from fastapi.testclient import TestClient
from sqlmodel import func, select

from followup import models as m
from followup.runtime import Runtime, build_runtime
from followup.web.app import create_app
from followup.web.csrf import COOKIE

TABLES = (m.Patient, m.Triage, m.Consent, m.Message, m.AuditLog)


def counts(rt: Runtime) -> dict[str, int]:
    with rt.db.session() as s:
        return {t.__name__: s.exec(select(func.count()).select_from(t)).one() for t in TABLES}


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the form carries no CSRF token"
    return match.group(1)


def form(**over: str | list[str] | None) -> dict[str, str | list[str]]:
    """A complete, valid intake form as a phone's browser posts it; a value of None leaves the field out."""
    return intake_form(**over)


@pytest.fixture
def page(client: TestClient) -> str:
    """GET the form (which sets the CSRF cookie on the client) and return its token."""
    r = client.get("/intake")
    assert r.status_code == 200
    return csrf_token(r.text)


def test_form_renders_with_a_csrf_token_and_cookie(client: TestClient) -> None:
    """GET /intake shows the questions, a hidden signed token, and sets the matching HttpOnly, SameSite cookie."""
    r = client.get("/intake")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert csrf_token(r.text)
    assert COOKIE in client.cookies
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    for text in ('name="phone"', 'name="consent"', 'name="weakness"', "America/Los Angeles", "911"):
        assert text in r.text


@pytest.mark.parametrize(
    "case",
    ["no-token", "forged-token", "token-without-cookie", "token-for-another-cookie"],
)
def test_post_without_a_valid_token_is_403_and_writes_nothing(
    client: TestClient, rt: Runtime, page: str, case: str
) -> None:
    """Without the token that matches the browser's cookie the form is refused (403) and nothing is stored."""
    data = form()
    if case == "forged-token":
        data["csrf_token"] = page[:-4] + "AAAA"
    elif case in ("token-without-cookie", "token-for-another-cookie"):
        data["csrf_token"] = page
        client.cookies.clear()
        if case == "token-for-another-cookie":
            client.cookies.set(COOKIE, "someone-elses-cookie")
    before = counts(rt)
    r = client.post("/intake", data=data)
    assert r.status_code == 403
    assert "This page was open too long" in r.text and 'value="Ana Diaz"' in r.text  # answers kept for a retry
    assert counts(rt) == before


def test_valid_post_enrolls_the_patient(client: TestClient, rt: Runtime, page: str) -> None:
    """A valid form answers 201 with the thank-you page and enrolls the patient by SMS, with consent recorded."""
    r = client.post("/intake", data={**form(), "csrf_token": page})
    assert r.status_code == 201, r.text
    assert "You're all set" in r.text or "You&#39;re all set" in r.text
    with rt.db.session() as s:
        (p,) = s.exec(select(m.Patient)).all()
        (t,) = s.exec(select(m.Triage)).all()
        consents = s.exec(select(m.Consent)).all()
        steps = {x.step_id for x in s.exec(select(m.Message)).all()}
    assert (p.phone, p.email, p.channel, p.status) == ("+13105550142", "ana@example.org", "sms", "active")
    assert (t.source, t.disposition, t.answers["caffeine_per_day"], t.answers["alcohol_per_week"]) == (
        "intake",
        "enrolled",
        4,
        0,
    )
    assert {c.source for c in consents} == {"intake"} and all("STOP" in c.text for c in consents)
    assert {"welcome", "caffeine", "sleep", "hydration", "stress"} <= steps


ERROR_CASES = [
    # (id, form overrides, field, English words, Spanish words)
    ("no-name", {"name": "  "}, "name", "Please tell us your name.", "Díganos su nombre"),
    ("bad-phone", {"phone": "12345"}, "phone", "does not look like a phone number", "no parece un número"),
    ("landline", {"phone": "+44 20 7946 0958"}, "phone", "cannot get text messages", "no puede recibir mensajes"),
    ("sms-without-phone", {"phone": "", "channel": "sms"}, "phone", "Please give your mobile number", "Escriba su"),
    ("bad-email", {"email": "ana@", "channel": "email"}, "email", "name@example.com", "nombre@ejemplo.com"),
    ("email-without-address", {"email": "", "channel": "email"}, "email", "give your email", "su correo"),
    ("no-consent", {"consent": None}, "consent", "tick the box", "marque la casilla"),
    ("unanswered", {"weakness": None}, "weakness", "Please choose Yes or No.", "Elija Sí o No"),
    ("empty-number", {"sleep_hours": ""}, "sleep_hours", "Please write a number", "Escriba un número"),
    ("not-a-number", {"water_glasses": "lots"}, "water_glasses", "from 0 to 60", "del 0 al 60"),
    ("out-of-range", {"stress": "11"}, "stress", "whole number from 0 to 10", "número entero del 0 al 10"),
    ("half-stress", {"stress": "4.5"}, "stress", "whole number from 0 to 10", "número entero del 0 al 10"),
    ("zone", {"timezone": "Mars/Base"}, "timezone", "choose your time zone", "zona horaria"),
    ("unknown-place", {"locations": ["calf", "spleen"]}, "locations", "choose from the list", "Elija de la lista"),
]
DEVELOPER_WORDS = ("String should", "Input should", "the patient", "IANA", "Value error", "channel is", "valid integer")


def error_at(html: str, field: str) -> str:
    match = re.search(rf'<p class="error" id="{field}-error">([^<]*)</p>', html)
    assert match, f"no error shown at {field}"
    return match.group(1)


@pytest.mark.parametrize(("over", "field", "en", "es"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
@pytest.mark.parametrize("lang", ["en", "es"])
def test_invalid_field_is_422_in_plain_words_at_the_field_and_writes_nothing(
    client: TestClient, rt: Runtime, page: str, over: dict, field: str, en: str, es: str, lang: str
) -> None:
    """A wrong answer re-renders the form with 422, a plain sentence to the patient next to that field and in the
    summary, in the form's language; nothing is stored."""
    before = counts(rt)
    r = client.post("/intake", data={**form(**over), "language": lang, "csrf_token": page})
    assert r.status_code == 422
    shown = error_at(r.text, field)
    assert (en if lang == "en" else es) in shown
    assert f'lang="{lang}"' in r.text.split(">", 2)[1]
    assert shown in r.text.split('class="error-summary"', 1)[1].split("</div>", 1)[0]  # also listed at the top
    said = " ".join(re.findall(r'<p class="error"[^>]*>([^<]*)</p>', r.text))
    assert not [w for w in DEVELOPER_WORDS if w in said]
    assert counts(rt) == before
    assert csrf_token(r.text)  # the re-rendered form can be sent again


def test_every_problem_is_shown_in_one_round(client: TestClient, rt: Runtime, page: str) -> None:
    """Missing name, phone, consent and an answer are all reported on the first try, not one after another."""
    r = client.post(
        "/intake", data={**form(name="", phone="", consent=None, breathing=None, stress="x"), "csrf_token": page}
    )
    assert r.status_code == 422
    for field in ("name", "phone", "consent", "breathing", "stress"):
        error_at(r.text, field)
    summary = r.text.split('class="error-summary"', 1)[1].split("</div>", 1)[0]
    assert summary.count("<li>") == 5 and 'href="#breathing-yes"' in summary and 'href="#consent"' in summary


@pytest.mark.parametrize(
    ("places", "eye_answered", "status"),
    [
        (["calf"], False, 201),  # twitching in the calf: eyelid and face questions do not apply
        (["calf", "hand"], False, 201),
        (["eyelid"], False, 422),
        (["face"], False, 422),
        (["widespread"], False, 422),
        ([], False, 422),  # nowhere named: they may apply
        (["eyelid"], True, 201),
    ],
)
def test_eyelid_questions_are_asked_only_when_they_apply(
    client: TestClient, page: str, places: list[str], eye_answered: bool, status: int
) -> None:
    """Eyelid and face questions are required only when the twitching may be in the eyelid or face."""
    eye = {q: ("no" if eye_answered else None) for q in ("eyelid_closes", "face_spread", "vision_changes")}
    r = client.post("/intake", data={**form(locations=places, **eye), "csrf_token": page})
    assert r.status_code == status, r.text
    if status == 422:
        assert "Please choose Yes or No." in error_at(r.text, "eyelid_closes")


def test_eyelid_questions_hide_without_javascript(client: TestClient) -> None:
    """The page hides the eyelid and face group with a CSS rule on the ticked places, and no script is needed."""
    html = client.get("/intake").text
    assert re.search(r"form:has\(input\[name=locations\]:checked\):not\(:has\(", html)
    group = html.split('<div class="eye">', 1)[1].split("</div>\n</fieldset>", 1)[0]
    assert all(f'name="{q}"' in group for q in ("eyelid_closes", "face_spread", "vision_changes"))
    assert 'name="weakness"' not in group


def test_a_decimal_comma_is_read_as_a_decimal_point(client: TestClient, rt: Runtime, page: str) -> None:
    """ "6,5" hours of sleep, as a Spanish speaker writes it, is 6.5."""
    r = client.post("/intake", data={**form(sleep_hours="6,5"), "language": "es", "csrf_token": page})
    assert r.status_code == 201, r.text
    with rt.db.session() as s:
        (t,) = s.exec(select(m.Triage)).all()
    assert t.answers["sleep_hours"] == 6.5


def test_red_flag_on_the_form_asks_for_a_visit(client: TestClient, rt: Runtime, page: str) -> None:
    """Weakness ticked on the form: 201 with the "the clinic would like to see you" page, an escalation, no tips."""
    r = client.post("/intake", data={**form(weakness="yes"), "csrf_token": page})
    assert r.status_code == 201 and "The clinic would like to see you" in r.text and 'href="tel:911"' in r.text
    with rt.db.session() as s:
        (esc,) = s.exec(select(m.Escalation)).all()
        kinds = {x.kind for x in s.exec(select(m.Message)).all()}
    assert esc.source == "triage" and kinds == {"escalation", "alert", "consent"}  # consent: "reply YES to start"


@pytest.mark.parametrize(
    ("query", "accept", "lang", "heading"),
    [
        ("", "", "en", "Muscle twitching: your follow-up"),
        ("", "es-MX,es;q=0.9,en;q=0.8", "es", "Espasmos musculares: su seguimiento"),
        ("", "fr-FR,fr;q=0.9,es;q=0.5", "es", "Espasmos musculares"),
        ("", "fr-FR", "en", "Muscle twitching"),
        ("?lang=es", "", "es", "Espasmos musculares"),
        ("?lang=en", "es-US,es", "en", "Muscle twitching"),
        ("?lang=xx", "es", "es", "Espasmos musculares"),
    ],
    ids=["default", "accept-es", "accept-second-choice", "accept-unknown", "switch-es", "switch-beats-browser", "bad"],
)
def test_form_language_follows_the_switch_then_the_browser(
    client: TestClient, query: str, accept: str, lang: str, heading: str
) -> None:
    """`?lang=` wins, then Accept-Language, then English; <html lang> says which, and language is no question."""
    r = client.get(f"/intake{query}", headers={"Accept-Language": accept} if accept else {})
    assert r.status_code == 200
    assert f'<html lang="{lang}">' in r.text and heading in r.text
    assert f'<input type="hidden" name="language" value="{lang}">' in r.text
    assert '<select id="language"' not in r.text
    other = "en" if lang == "es" else "es"
    switch = f'<button type="submit" form="intake-form" name="switch_to" value="{other}" formnovalidate lang="{other}">'
    assert switch in r.text  # the switch at the top
    assert r.text.index('aria-label="Language"' if lang == "en" else 'aria-label="Idioma"') < r.text.index("<h1>")


def test_spanish_form_enrolls_a_spanish_patient_with_the_spanish_consent(
    client: TestClient, rt: Runtime, page: str
) -> None:
    """Sent from the Spanish page: the patient's language is Spanish and the consent stored is the Spanish text they
    agreed to; the thank-you page is in Spanish."""
    r = client.post("/intake", data={**form(), "language": "es", "csrf_token": page})
    assert r.status_code == 201
    assert '<html lang="es">' in r.text and "Ya está todo listo" in r.text
    with rt.db.session() as s:
        (p,) = s.exec(select(m.Patient)).all()
        consents = s.exec(select(m.Consent)).all()
    assert p.language == "es"
    assert consents and all(c.text.startswith("Acepto recibir") and "BAJA" in c.text for c in consents)


TIERS = [
    # (id, answers, English must say, Spanish must say)
    ("emergency", {"breathing": "yes"}, "Call 911 now", "Llame al 911 ahora"),
    ("urgent", {"speech_swallowing": "yes"}, "Please book a visit in the next day or two", "Pida una cita"),
    ("routine", {"weakness": "yes"}, "The clinic would like to see you", "La clínica quiere verle"),
    ("none", {}, "You're all set", "Ya está todo listo"),
]


@pytest.mark.parametrize(("answers", "en", "es"), [t[1:] for t in TIERS], ids=[t[0] for t in TIERS])
@pytest.mark.parametrize("lang", ["en", "es"])
def test_thank_you_page_says_what_to_do_for_each_tier(
    client: TestClient, page: str, answers: dict, en: str, es: str, lang: str
) -> None:
    """Each tier has its own page, in the patient's language; an emergency's first words are what to do now, with a
    tap-to-call link to the emergency number, before anything else on the page."""
    r = client.post("/intake", data={**form(**answers), "language": lang, "csrf_token": page})
    assert r.status_code == 201
    content = r.text.split("<main>", 1)[1]
    said = en if lang == "en" else es
    assert said.replace("'", "&#39;") in content
    if "breathing" in answers:
        assert content.lstrip().startswith('<section class="now"')
        first_link = re.search(r'<a [^>]*href="([^"]+)"', content)
        assert first_link and first_link.group(1) == "tel:911"
        assert re.search(r"<h1 id=\"now-h\">[^<]*911", content)


@pytest.mark.parametrize(("oncall", "told"), [(True, True), (False, False)], ids=["on-call", "no-on-call"])
def test_patients_are_told_the_clinic_was_alerted_only_when_someone_was(
    settings: Any, clock: Any, transports: dict, oncall: bool, told: bool
) -> None:
    """With no on-call contact configured, neither the page nor the emergency SMS says the clinic was alerted."""
    if not oncall:
        settings = settings.with_overrides(clinic={"oncall_sms": [], "oncall_email": []})
    rt = build_runtime(settings, clock=clock, transports=dict(transports))
    try:
        with TestClient(create_app(runtime=rt, background=False)) as client:
            token = csrf_token(client.get("/intake").text)
            r = client.post("/intake", data={**form(breathing="yes"), "csrf_token": token})
            assert r.status_code == 201
            assert ("We have told" in r.text) is told
        with rt.db.session() as s:
            (msg,) = s.exec(select(m.Message).where(m.Message.kind == "escalation")).all()
        assert msg.context["alerted"] is told and msg.context["source"] == "triage"
    finally:
        rt.db.dispose()


@pytest.mark.parametrize(
    ("local", "zone", "lang", "says"),
    [
        ("2026-11-25T10:00", "America/Los_Angeles", "en", "in the next few minutes"),
        ("2026-11-25T20:22", "America/Los_Angeles", "en", "tomorrow at 09:00, your time"),
        ("2026-11-25T20:22", "America/Los_Angeles", "es", "mañana a las 09:00, en su hora local"),
        ("2026-11-25T06:30", "Europe/Madrid", "es", "hoy a las 09:00"),
        ("2026-11-25T23:59", "Asia/Tokyo", "en", "tomorrow at 09:00"),
    ],
    ids=["daytime", "evening", "evening-es", "early-morning-es", "midnight"],
)
def test_thank_you_page_says_when_the_first_message_arrives_in_local_time(
    client: TestClient, clock: Any, page: str, local: str, zone: str, lang: str, says: str
) -> None:
    """A form sent at 20:22 waits for the 09:00 sending window, and the page says so in the patient's own time for
    the confirmation request (never "we have sent" when it waits); the first message, already due, follows the
    patient's YES rather than a clock time it could not keep."""
    clock.set(datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC))
    r = client.post("/intake", data={**form(timezone=zone), "language": lang, "csrf_token": page})
    assert r.status_code == 201
    first = re.search(r'data-testid="first-message">([^<]*)<', r.text)
    after = "a few minutes after you reply YES" if lang == "en" else "unos minutos después de que responda SI"
    assert first and after in first.group(1) and says not in first.group(1)
    confirm = re.search(r'data-testid="confirm">([^<]*)<', r.text)
    assert confirm and says in confirm.group(1)
    assert ("reply YES" if lang == "en" else "responda SI") in confirm.group(1)


def test_switching_language_keeps_the_answers_and_stores_nothing(client: TestClient, rt: Runtime, page: str) -> None:
    """The switch at the top re-sends the form: the page comes back in Spanish with what was typed, no error shown,
    nothing stored; `?lang=` links work too for a fresh form."""
    before = counts(rt)
    r = client.post("/intake", data={**form(phone="", weakness=None), "switch_to": "es", "csrf_token": page})
    assert r.status_code == 200 and '<html lang="es">' in r.text
    assert (
        'value="Ana Diaz"' in r.text and 'id="loc-calf" type="checkbox" name="locations" value="calf" checked' in r.text
    )
    assert 'class="error' not in r.text and counts(rt) == before
    assert '<input type="hidden" name="language" value="es">' in r.text
