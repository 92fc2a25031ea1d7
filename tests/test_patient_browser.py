"""The patient's side in a real browser (Debian's Chromium driven by Playwright) on a 390 px phone screen, in English
and Spanish: axe-core finds no serious or critical problem on the intake form, its errors, the thank-you page of
every tier and the booking pages; tap targets are at least 44 px; the intake and the booking work from the keyboard
alone; and a Spanish patient's whole journey (form, SMS, reply, booking, calendar file) stays in Spanish.
Screenshots of every page in every language go to var/test-screenshots/ (the path is printed)."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from conftest import ROOT
from livestack import Live, eventually, live_stack
from sqlmodel import col, select

from followup import models as m

CHROMIUM = Path("/usr/bin/chromium")
REQUIRED = os.environ.get("FOLLOWUP_TEST_BROWSER_REQUIRED") == "1"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
PHONE_SCREEN = {"width": 390, "height": 844}
SHOTS = Path(os.environ.get("FOLLOWUP_TEST_SCREENSHOTS", ROOT / "var" / "test-screenshots"))
ACCEPT = {"en": "en-US,en;q=0.9", "es": "es-US,es;q=0.9,en;q=0.5"}
# axe-core's target-size rule (WCAG 2.2 2.5.8, 24 px) is off by default: turn it on.
AXE_OPTIONS = {"resultTypes": ["violations"], "rules": {"target-size": {"enabled": True}}}
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
# Zones an hour or three apart around the world: one of them is always in its daytime sending window.
ZONES = (
    "Pacific/Honolulu",
    "America/Los_Angeles",
    "America/Mexico_City",
    "America/New_York",
    "America/Sao_Paulo",
    "Atlantic/Azores",
    "Europe/London",
    "Europe/Madrid",
    "Europe/Athens",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Bangkok",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
)
AXE_SEEN: dict[str, dict[str, Any]] = {}


def daytime_zone() -> str:
    """A real zone (one the form lists) where it is between 10:00 and 17:00 now, so the welcome goes at once."""
    now = datetime.now(UTC)
    return next(z for z in ZONES if 10 <= now.astimezone(ZoneInfo(z)).hour < 17)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        reason = "Chromium not found at /usr/bin/chromium: install Debian's package with `apt-get install chromium`"
        if REQUIRED:
            pytest.fail(f"FOLLOWUP_TEST_BROWSER_REQUIRED=1 but {reason}")
        pytest.skip(reason)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if REQUIRED:
            raise
        pytest.skip("the playwright package is missing: `pip install -e '.[dev]'` (it uses /usr/bin/chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def live(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The app under uvicorn (dispatcher on) and the fake Twilio/SendGrid, on a fresh SQLite database; the intake
    rate limit raised, since every test here posts the form from 127.0.0.1."""
    path = tmp_path_factory.mktemp("patient-browser") / "followup.db"
    shutil.copy(sqlite_template, path)
    with live_stack(f"sqlite:///{path}", limits={"intake_per_minute": 1000}) as stack:
        assert stack.rt.detector.criteria  # load medspaCy now, not inside the first webhook's 10 s
        yield stack


def checkin_now(live: Live, phone: str) -> None:
    """Time passes: the patient's first check-in falls due now (the live stack runs on the real clock)."""
    now = datetime.now(UTC)
    with live.rt.db.session() as s:
        patient = s.exec(select(m.Patient).where(m.Patient.phone == phone)).one()
        first = s.exec(
            select(m.Message)
            .where(m.Message.patient_id == patient.id, m.Message.kind == "checkin")
            .order_by(col(m.Message.due_at))
        ).first()
        assert first is not None
        first.due_at, first.expires_at = now, now + timedelta(hours=1)
        s.add(first)
        s.commit()
    live.rt.wake()


@pytest.fixture(scope="module")
def shots(pytestconfig: pytest.Config) -> Iterator[Path]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield SHOTS
    (SHOTS / "axe-patient.json").write_text(json.dumps(AXE_SEEN, indent=2, sort_keys=True))
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # type: ignore[union-attr]
        print(f"\npatient browser screenshots and axe results: {SHOTS}")


@pytest.fixture
def phone(browser: Any, live: Live) -> Iterator[Callable[[str], Any]]:
    """A new phone-sized page whose browser asks for `lang` (Accept-Language and locale)."""
    contexts: list[Any] = []

    def open_page(lang: str) -> Any:
        context = browser.new_context(
            viewport=PHONE_SCREEN,
            base_url=live.base,
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
            locale="es-US" if lang == "es" else "en-US",
            extra_http_headers={"Accept-Language": ACCEPT[lang]},
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.on("dialog", lambda d: d.dismiss())
        return page

    yield open_page
    for context in contexts:
        context.close()


_numbers = iter(range(150, 200))


def new_phone() -> str:
    return f"+1 310 555 0{next(_numbers)}"


def e164(phone: str) -> str:
    return phone.replace(" ", "")


def audit(page: Any, shots: Path, name: str) -> None:
    """Screenshot the page, run axe-core on it and fail on any serious or critical violation; check that every
    control a finger taps is at least 44 px tall (links inside sentences excepted, as WCAG 2.5.8 allows)."""
    from axe_playwright_python.sync_playwright import Axe

    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    page.screenshot(path=str(shots / f"{name}-first-screen.png"))  # what the patient sees before scrolling
    results = Axe().run(page, options=AXE_OPTIONS).response
    violations = [
        {"id": v["id"], "impact": v["impact"], "nodes": len(v["nodes"]), "help": v["help"]}
        for v in results["violations"]
    ]
    passed = sorted(r["id"] for r in results.get("passes", []))
    unsure = sorted(r["id"] for r in results.get("incomplete", []))
    AXE_SEEN[name] = {"violations": violations, "passes": passed, "incomplete": unsure}
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, f"{name}: axe found {bad}"
    assert {"color-contrast", "html-has-lang"} <= set(passed), f"{name}: {unsure}"  # these really ran and passed
    moot = {r["id"] for r in results.get("inapplicable", [])}  # a page without controls has no targets to size
    assert {"target-size", "label"} <= set(passed) | moot, f"{name}: {unsure}"
    small = page.evaluate(
        """() => [...document.querySelectorAll(
              'button, select, input:not([type=hidden]):not([type=radio]):not([type=checkbox]), label:has(> input), '
              + 'summary, a.call, nav a, nav [aria-current]')]
            .filter(el => el.offsetParent !== null)
            .map(el => { const r = el.getBoundingClientRect(); return [el.outerHTML.slice(0, 80), r.width, r.height]; })
            .filter(([, w, h]) => h < 44 || w < 44)"""
    )
    assert not small, f"{name}: targets smaller than 44 px: {small}"


def fill_intake(
    page: Any, *, name: str, phone: str, yes: tuple[str, ...] = (), places: tuple[str, ...] = ("calf",)
) -> None:
    """Answer the form by its ids (the label texts differ by language)."""
    page.fill("#name", name)
    page.fill("#phone", phone)
    page.select_option("#timezone", daytime_zone())
    for place in places:
        page.check(f"#loc-{place}")
    page.fill("#onset_weeks", "2")
    for question in SYMPTOMS:
        page.check(f"#{question}-{'yes' if question in yes else 'no'}")
    for field, value in (("caffeine_per_day", "4"), ("sleep_hours", "6,5"), ("stress", "5"), ("water_glasses", "4")):
        page.fill(f"#{field}", value)
    page.check("#consent")


@pytest.mark.parametrize("lang", ["en", "es"])
def test_intake_form_and_its_errors_pass_axe(phone: Any, shots: Path, lang: str) -> None:
    """The form and its error state, in each language: lang attribute, switch, no serious axe violation; errors are
    listed at the top with links and sit next to their fields."""
    page = phone(lang)
    page.goto("/intake")
    assert page.locator("html").get_attribute("lang") == lang
    assert page.locator("nav ul.langs").is_visible()
    audit(page, shots, f"intake-{lang}")
    page.get_by_role("button", name={"en": "Send my answers", "es": "Enviar mis respuestas"}[lang]).click()
    summary = page.locator("#errors")
    assert summary.is_visible() and summary.evaluate("el => el === document.activeElement")
    assert summary.locator("li").count() >= 10
    assert (
        page.locator("#name-error").inner_text()
        == {"en": "Please tell us your name.", "es": "Díganos su nombre, por favor."}[lang]
    )
    audit(page, shots, f"intake-errors-{lang}")


def test_language_switch_keeps_what_was_typed(phone: Any, shots: Path) -> None:
    """Half-way through the English form, the patient taps "Español": the form comes back in Spanish with her
    answers in place."""
    page = phone("en")
    page.goto("/intake")
    page.fill("#name", "Lucía Gómez")
    page.check("#loc-hand")
    page.check("#breathing-no")
    page.get_by_role("button", name="Español").click()
    assert page.locator("html").get_attribute("lang") == "es"
    assert page.get_by_role("heading", level=1).inner_text() == "Espasmos musculares: su seguimiento"
    assert page.input_value("#name") == "Lucía Gómez"
    assert page.is_checked("#loc-hand") and page.is_checked("#breathing-no")
    assert page.locator("#errors").count() == 0
    page.screenshot(path=str(shots / "intake-switched-to-es.png"))


def test_eyelid_questions_hide_for_twitching_in_the_calf_without_script(browser: Any, live: Live, shots: Path) -> None:
    """With JavaScript off, ticking "Calves" hides the eyelid and face questions and ticking "Eyelid" shows them."""
    context = browser.new_context(viewport=PHONE_SCREEN, base_url=live.base, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto("/intake")
        eye = page.locator("#eyelid_closes")
        assert eye.is_visible()  # nothing ticked yet: they may apply
        page.check("#loc-calf")
        assert not eye.is_visible()
        page.screenshot(path=str(shots / "intake-calf-no-eyelid-questions.png"), full_page=True)
        page.check("#loc-eyelid")
        assert eye.is_visible()
    finally:
        context.close()


TIERS = [
    # (tier, answers "yes", English heading, Spanish heading)
    ("emergency", ("breathing",), "Call 911 now", "Llame al 911 ahora"),
    ("urgent", ("speech_swallowing",), "Please book a visit in the next day or two", "Pida una cita"),
    ("routine", ("weakness",), "The clinic would like to see you", "La clínica quiere verle"),
    ("none", (), "Thank you. You're all set.", "Gracias. Ya está todo listo."),
]


CONFIRM = {"en": ("Reply YES", "YES"), "es": ("Responda SI", "SI")}


def confirmed_texts(live: Live, number: str, lang: str) -> list[dict[str, Any]]:
    """A number from the form first gets "reply YES" (double opt-in); the patient answers it, and the texts that
    waited for the confirmation follow."""
    asks, answer = CONFIRM[lang]
    first = eventually(lambda: live.sent_to(e164(number)), what="the confirmation request")
    assert len(first) == 1 and asks in first[0]["body"]
    assert live.sms_from_patient(e164(number), answer)["status"] == 200
    return eventually(lambda: live.sent_to(e164(number))[1:], what="the texts that waited for YES")


@pytest.mark.parametrize(("tier", "yes", "en", "es"), TIERS, ids=[t[0] for t in TIERS])
@pytest.mark.parametrize("lang", ["en", "es"])
def test_thank_you_page_of_each_tier(
    phone: Any, live: Live, shots: Path, lang: str, tier: str, yes: tuple[str, ...], en: str, es: str
) -> None:
    """Each tier's page, in each language, passes axe; an emergency's first heading says to call 911 in large type
    with a tap-to-call button, as the SMS the patient gets once they reply YES to the confirmation says."""
    page = phone(lang)
    page.goto("/intake")
    number = new_phone()
    fill_intake(page, name="Rosa Vega", phone=number, yes=yes)
    page.locator("#intake-form button[type=submit]").click()
    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text().startswith(en if lang == "en" else es)
    if tier == "emergency":
        size = float(heading.evaluate("el => getComputedStyle(el).fontSize").removesuffix("px"))
        assert size >= 28
        call = page.locator("a.call")
        assert call.get_attribute("href") == "tel:911" and call.bounding_box()["height"] >= 48
        box = call.bounding_box()
        assert box["y"] + box["height"] <= PHONE_SCREEN["height"]  # on the first screen, no scrolling
        sms = confirmed_texts(live, number, lang)
        said = {"en": "call 911", "es": "Llame al 911"}[lang]
        assert said in sms[0]["body"]
    if tier in ("urgent", "routine"):
        sms = confirmed_texts(live, number, lang)
        assert "/book/" in sms[0]["body"]
        opening = {"en": "thanks for filling in our form", "es": "gracias por llenar nuestro formulario"}[lang]
        assert opening in sms[0]["body"] and "reply" not in sms[0]["body"]
    audit(page, shots, f"done-{tier}-{lang}")


def test_keyboard_alone_fills_and_sends_the_intake(phone: Any, shots: Path) -> None:
    """Tab, type, arrows and space through the whole form in page order, with a visible focus ring on every stop;
    Enter on the button sends it. The eyelid questions, hidden for calf twitching, are never a stop."""
    page = phone("en")
    page.goto("/intake")
    texts = {"name": "Kim Lee", "phone": new_phone(), "onset_weeks": "2", "caffeine_per_day": "1"}
    texts |= {"sleep_hours": "8", "stress": "2", "water_glasses": "8"}
    stops: list[str] = []
    for _ in range(150):
        page.keyboard.press("Tab")
        el = page.evaluate(
            """() => { const e = document.activeElement; const s = getComputedStyle(e);
                 return {tag: e.tagName.toLowerCase(), type: e.type || '', name: e.name || '', value: e.value || '',
                         checked: !!e.checked, outline: s.outlineStyle, width: parseFloat(s.outlineWidth)}; }"""
        )
        stops.append(f"{el['name']}={el['value']}" if el["name"] else el["tag"])
        if el["tag"] in ("input", "select", "button"):
            assert el["outline"] != "none" and el["width"] >= 2, f"no visible focus on {el}"
        if el["type"] in ("text", "tel") and el["name"] in texts:
            page.keyboard.type(texts[el["name"]])
        elif el["type"] == "radio" and not el["checked"] and el["name"] in SYMPTOMS:
            page.keyboard.press("ArrowRight")  # from "Yes" to "No", which checks it
        elif el["type"] == "checkbox" and (el["name"] == "consent" or el["value"] == "calf"):
            page.keyboard.press("Space")
        elif el["tag"] == "button" and el["name"] != "switch_to":
            page.keyboard.press("Enter")
            break
    page.wait_for_url("**/intake")
    assert page.get_by_role("heading", level=1).inner_text() == "Thank you. You're all set.", stops
    assert not [s for s in stops if s.startswith(("eyelid_closes", "face_spread", "vision_changes"))]
    assert stops.index("name=") < stops.index("consent=yes")
    page.screenshot(path=str(shots / "keyboard-done-en.png"), full_page=True)


def book_by_keyboard(page: Any) -> str:
    """Tab to the first free time, Space to pick it, Tab to the button, Enter; returns the time chosen."""
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.name") == "slot":
            break
    chosen = page.evaluate("() => document.activeElement.closest('label').innerText.split('\\n')[0]")
    page.keyboard.press("Space")
    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.tagName") == "BUTTON":
            break
    page.keyboard.press("Enter")
    page.wait_for_url("**done=booked**")
    return str(chosen)


def test_the_whole_spanish_journey(phone: Any, live: Live, shots: Path) -> None:
    """A Spanish-speaking patient: the form in Spanish (from her browser), the Spanish "responda SI" and her SI, the
    Spanish welcome SMS at the provider,
    a Spanish check-in and her answer, the Spanish booking SMS, the booking page in Spanish (<html lang="es">)
    booked from the keyboard, the Spanish confirmation, and a calendar file in Spanish."""
    page = phone("es")
    page.goto("/intake")
    assert page.locator("html").get_attribute("lang") == "es"
    assert page.get_by_role("heading", level=1).inner_text() == "Espasmos musculares: su seguimiento"
    number = new_phone()
    fill_intake(page, name="Lucía Gómez", phone=number)
    page.get_by_role("button", name="Enviar mis respuestas").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Gracias. Ya está todo listo."
    assert "unos minutos después de que responda SI" in page.get_by_test_id("first-message").inner_text()
    page.screenshot(path=str(shots / "journey-1-done-es.png"), full_page=True)

    welcome = confirmed_texts(live, number, "es")[0]["body"]  # after her "SI" to the confirmation
    assert welcome.startswith("Hola Lucia") and "BAJA" in welcome and "STOP" not in welcome
    checkin_now(live, e164(number))
    question = eventually(
        lambda: [x for x in live.sent_to(e164(number)) if "Responda los numeros" in x["body"]], what="the check-in"
    )
    assert "Le cuesta respirar (llame al 911)" in question[0]["body"]
    # She answers "1" (more weakness): reading Spanish free text is issue 8; a number reads the same in any language.
    assert live.sms_from_patient(e164(number), "1")["status"] == 200
    sms = eventually(
        lambda: [x for x in live.sent_to(e164(number)) if "/book/" in x["body"]], what="the Spanish booking SMS"
    )[0]["body"]
    assert "gracias por responder" in sms and "Pida cita aqui" in sms
    link = re.search(r"https?://\S+/book/\S+", sms)
    assert link is not None

    page.goto(link.group(0).rstrip("."))
    assert page.locator("html").get_attribute("lang") == "es"
    assert page.get_by_role("heading", level=1).inner_text().endswith("pida su cita")
    audit(page, shots, "booking-es")
    chosen = book_by_keyboard(page)
    assert "Su cita está reservada" in page.get_by_role("status").inner_text()
    assert chosen in page.locator(".visit").inner_text()
    audit(page, shots, "booked-es")

    confirm = eventually(
        lambda: [x for x in live.sent_to(e164(number)) if "su cita es el" in x["body"]], what="the Spanish confirmation"
    )
    assert chosen in confirm[0]["body"]
    ics_link = page.get_by_role("link", name="Añadir a mi calendario").get_attribute("href")
    ics = httpx.get(f"{live.base}{ics_link}", timeout=10)
    assert ics.status_code == 200 and ics.headers["content-type"].startswith("text/calendar")
    unfolded = ics.text.replace("\r\n ", "")
    assert "SUMMARY;LANGUAGE=es:Cita en Achilles Neurology Clinic" in unfolded
    assert "DESCRIPTION;LANGUAGE=es:Para cambiarla o anularla" in unfolded


def test_english_booking_from_the_keyboard_and_the_expired_link(phone: Any, live: Live, shots: Path) -> None:
    """The English booking page and its booked state pass axe and book from the keyboard; a bad link gets the
    bilingual "expired" page, which passes axe too."""
    page = phone("en")
    page.goto("/intake")
    number = new_phone()
    fill_intake(page, name="Sam Park", phone=number, yes=("weakness",))
    page.locator("#intake-form button[type=submit]").click()
    confirmed_texts(live, number, "en")
    sms = eventually(lambda: [x for x in live.sent_to(e164(number)) if "/book/" in x["body"]], what="booking SMS")
    link = re.search(r"https?://\S+/book/\S+", sms[0]["body"])
    assert link is not None
    page.goto(link.group(0).rstrip("."))
    assert page.locator("html").get_attribute("lang") == "en"
    audit(page, shots, "booking-en")
    book_by_keyboard(page)
    assert "Your visit is booked" in page.get_by_role("status").inner_text()
    audit(page, shots, "booked-en")
    page.goto("/book/not-a-real-token")
    assert page.locator("[lang=es]").count() == 1
    audit(page, shots, "booking-expired")
