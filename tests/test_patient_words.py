"""What patients read, in their language: the page's language from the switch and the browser, when the first
message comes in local time, page words complete in every language, keywords announced in each language, and
escalation messages worded for what happened (after the form or a reply; "we alerted the clinic" only if so)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from followup.content.dates import arrival
from followup.content.pages import check_pages, choose_language, page_texts
from followup.content.templates import Templates, check_all, sample_context
from followup.core.keywords import load_keywords
from followup.core.sms import is_gsm7, segments

ROOT = Path(__file__).resolve().parent.parent
LA = ZoneInfo("America/Los_Angeles")
SUPPORTED = ["en", "es"]


@pytest.mark.parametrize(
    ("asked", "accept", "expected"),
    [
        (None, None, "en"),
        (None, "", "en"),
        (None, "es", "es"),
        (None, "es-MX,es;q=0.9,en;q=0.8", "es"),
        (None, "en-US,en;q=0.9,es;q=0.8", "en"),
        (None, "en;q=0.4,es;q=0.8", "es"),  # by q-value, not by order
        (None, "fr,de;q=0.9", "en"),
        (None, "fr,es;q=0.1", "es"),
        (None, "es;q=0,en;q=0.1", "en"),  # q=0 means "not this one"
        (None, "es;q=abc", "en"),
        (None, "*", "en"),
        ("es", "en", "es"),
        (" ES ", None, "es"),
        ("xx", "es", "es"),
        ("", "es", "es"),
    ],
)
def test_choose_language(asked: str | None, accept: str | None, expected: str) -> None:
    """The patient's pick if supported, else the browser's best supported preference, else the default."""
    assert choose_language(asked, accept, SUPPORTED) == expected


@pytest.mark.parametrize(
    ("now", "due", "lang", "key", "fill"),
    [
        ("2026-11-25T10:00", "2026-11-25T10:00", "en", "soon", {}),
        ("2026-11-25T10:00", "2026-11-25T10:05", "en", "soon", {}),
        ("2026-11-25T10:00", "2026-11-25T10:06", "en", "today", {"time": "10:06"}),
        ("2026-11-25T20:22", "2026-11-26T09:00", "en", "tomorrow", {"time": "09:00"}),
        ("2026-11-25T20:22", "2026-11-26T09:00", "es", "tomorrow", {"time": "09:00"}),
        ("2026-11-25T20:22", "2026-11-27T09:00", "en", "on_day", {"time": "09:00", "day": "Friday 27 November"}),
        ("2026-11-25T20:22", "2026-11-27T09:00", "es", "on_day", {"time": "09:00", "day": "viernes 27 de noviembre"}),
    ],
)
def test_arrival_in_the_patients_time(now: str, due: str, lang: str, key: str, fill: dict) -> None:
    """When the first message comes: soon, today, tomorrow or a named day, at the patient's local clock time."""
    at = {name: datetime.fromisoformat(v).replace(tzinfo=LA).astimezone(UTC) for name, v in (("n", now), ("d", due))}
    assert arrival(at["d"], at["n"], LA, lang) == (key, fill)


def test_shipped_pages_are_complete_in_every_language() -> None:
    """Every key of the English page words exists in Spanish (no page half in one language)."""
    assert check_pages(ROOT / "templates", SUPPORTED) == []
    assert page_texts(ROOT / "templates", "es")["meta"]["name"] == "Español"


def test_check_pages_names_a_missing_key_and_a_missing_file(tmp_path: Path) -> None:
    """A Spanish file without a key, or no file at all for a language, is reported by name."""
    shutil.copytree(ROOT / "templates", tmp_path / "t")
    es = tmp_path / "t/es/pages.toml"
    es.write_text(es.read_text(encoding="utf-8").replace('emergency_button = "Llamar al {emergency}"\n', ""))
    problems = check_pages(tmp_path / "t", ["en", "es", "fr"])
    assert problems == ["es/pages.toml: missing done.emergency_button", "fr/pages.toml: missing"]


def test_keywords_announced_per_language_are_real_keywords() -> None:
    """Each language's messages name a word that does what they say (the Spanish restart word opts in)."""
    kw = load_keywords(ROOT / "clinic/keywords.toml")
    assert kw.announced("es") == {"opt_out": "BAJA", "opt_in": "COMENZAR", "help": "AYUDA"}
    assert kw.announced("en") == {"opt_out": "STOP", "opt_in": "START", "help": "HELP"}
    for lang in ("en", "es"):
        for intent, word in kw.announced(lang).items():
            assert kw.keyword(word) == intent


def test_announcing_a_word_that_is_not_a_keyword_is_refused(tmp_path: Path) -> None:
    """A clinic that announces "VOLVER" without listing it as an opt-in keyword cannot start."""
    path = tmp_path / "keywords.toml"
    text = (ROOT / "clinic/keywords.toml").read_text(encoding="utf-8")
    path.write_text(text.replace('opt_in = "COMENZAR"', 'opt_in = "VOLVER"'), encoding="utf-8")
    with pytest.raises(ValueError, match=r"announce\.es\.opt_in: 'VOLVER' is not an opt_in keyword"):
        load_keywords(path)


@pytest.fixture(scope="module")
def shipped() -> Templates:
    return Templates(ROOT / "templates")


def render(shipped: Templates, name: str, lang: str, **over: object) -> str:
    kw = load_keywords(ROOT / "clinic/keywords.toml").announced(lang)
    ctx = {**sample_context(), "keywords": kw, **over}
    ctx["patient"] = {"first_name": "Maximiliano", "language": lang}
    return shipped.render(name, "sms", lang, ctx).body


@pytest.mark.parametrize(
    ("lang", "template", "says", "never"),
    [
        ("en", "opt_out_confirm", "Reply START", "COMENZAR"),
        ("es", "opt_out_confirm", "Responda COMENZAR", "START"),
        ("es", "help_reply", "Responda BAJA para salir, COMENZAR para volver", "STOP"),
        ("es", "opt_in_confirm", "Responda AYUDA si necesita ayuda, BAJA para salir", "HELP"),
        ("es", "welcome", "Responda BAJA para salir", "STOP"),
        ("en", "welcome", "Reply STOP to opt out", "BAJA"),
    ],
)
def test_keyword_answers_name_the_word_of_the_patients_language(
    shipped: Templates, lang: str, template: str, says: str, never: str
) -> None:
    """The Spanish opt-out confirmation tells the patient the Spanish word to restart, and so on."""
    body = render(shipped, template, lang)
    assert says in body and never not in body


@pytest.mark.parametrize("lang", ["en", "es"])
@pytest.mark.parametrize(
    ("template", "source", "alerted", "says", "never"),
    [
        (
            "escalation_red_flag",
            "triage",
            True,
            {"en": "filling in our form", "es": "llenar nuestro formulario"},
            {"en": "your reply", "es": "responder"},
        ),
        (
            "escalation_red_flag",
            "reply",
            True,
            {"en": "thanks for your reply", "es": "gracias por responder"},
            {"en": "form", "es": "formulario"},
        ),
        ("escalation_emergency", "triage", True, {"en": "We have alerted", "es": "Ya avisamos"}, {}),
        (
            "escalation_emergency",
            "triage",
            False,
            {"en": "call 911", "es": "Llame al 911"},
            {"en": "We have alerted", "es": "Ya avisamos"},
        ),
        (
            "escalation_selfharm",
            "reply",
            False,
            {"en": "988", "es": "marque 2"},
            {"en": "We have let", "es": "Ya avisamos"},
        ),
    ],
    ids=["form-red-flag", "reply-red-flag", "emergency-alerted", "emergency-no-on-call", "selfharm-no-on-call"],
)
def test_escalation_messages_say_what_happened(
    shipped: Templates, lang: str, template: str, source: str, alerted: bool, says: dict, never: dict
) -> None:
    """After the form the message does not thank for a reply; with nobody on call it does not say the clinic was
    alerted. Every variant stays GSM-7 within two segments."""
    body = render(shipped, template, lang, source=source, alerted=alerted)
    assert says[lang].lower() in body.lower()
    if lang in never:
        assert never[lang].lower() not in body.lower()
    assert is_gsm7(body) and segments(body)[1] <= 2


def test_every_variant_of_every_template_fits_with_each_languages_keywords(shipped: Templates) -> None:
    """The check renders every variant with the words each language announces: all fit, none fails."""
    announce = load_keywords(ROOT / "clinic/keywords.toml").announce
    rows = check_all(shipped, announce=announce)
    assert [r for r in rows if r.problem] == []
    assert all(r.encoding == "GSM-7" and r.segments <= 2 for r in rows if r.channel == "sms")


def test_emergency_number_comes_from_the_settings(shipped: Templates) -> None:
    """A clinic outside the US sets its emergency number once; messages say it."""
    ctx_clinic = {**sample_context()["clinic"], "emergency": "112"}
    body = render(shipped, "escalation_emergency", "es", clinic=ctx_clinic)
    assert "Llame al 112" in body and "911" not in body
