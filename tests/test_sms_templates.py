"""SMS segment arithmetic and the message templates: every shipped text renders, fits two segments, and a broken
template is reported instead of sent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from followup.content.templates import TemplateProblem, Templates, check_all, sample_context
from followup.core.program import load_program
from followup.core.sms import MAX_SEGMENTS, segments
from followup.core.triage import answer_fields

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ("GSM-7", 1)),
        ("a" * 160, ("GSM-7", 1)),
        ("a" * 161, ("GSM-7", 2)),
        ("a" * 306, ("GSM-7", 2)),
        ("a" * 307, ("GSM-7", 3)),
        ("é" * 160, ("GSM-7", 1)),
        ("€" * 80, ("GSM-7", 1)),
        ("€" * 81, ("GSM-7", 2)),
        ("’" + "a" * 69, ("UCS-2", 1)),
        ("’" + "a" * 70, ("UCS-2", 2)),
        ("’" + "a" * 133, ("UCS-2", 2)),
        ("’" + "a" * 134, ("UCS-2", 3)),
        ("😀" * 35, ("UCS-2", 1)),
        ("😀" * 36, ("UCS-2", 2)),
    ],
    ids=[
        "empty",
        "gsm-160",
        "gsm-161",
        "gsm-306",
        "gsm-307",
        "gsm-accent",
        "gsm-extended-80",
        "gsm-extended-81",
        "ucs2-70",
        "ucs2-71",
        "ucs2-134",
        "ucs2-135",
        "emoji-35",
        "emoji-36",
    ],
)
def test_segments(text: str, expected: tuple[str, int]) -> None:
    """GSM-7 fits 160 (153 a part, extended characters count 2); one other character makes UCS-2: 70 (67 a part)."""
    assert segments(text) == expected


@pytest.fixture(scope="module")
def shipped() -> Templates:
    return Templates(ROOT / "templates")


def test_every_shipped_template_renders_and_fits(shipped: Templates) -> None:
    """Every template on disk renders with long sample data, and every SMS fits in two segments."""
    rows = check_all(shipped)
    assert len(rows) >= 50
    assert [r for r in rows if r.problem] == []
    assert all(r.segments <= MAX_SEGMENTS for r in rows if r.channel == "sms")


def test_every_program_step_has_both_channels_in_both_languages(shipped: Templates) -> None:
    """Each step's template exists as SMS and email, in English and Spanish (no silent fallback)."""
    program = load_program(ROOT / "clinic/program.toml", answer_fields())
    for step in program.steps:
        for lang in ("en", "es"):
            for channel in ("sms", "email"):
                assert shipped.path(step.template, channel, lang) == f"{lang}/{step.template}.{channel}.j2"


@pytest.mark.parametrize("lang", ["en", "es"])
def test_welcome_sms_carries_the_safety_net_and_opt_out(shipped: Templates, lang: str) -> None:
    """The welcome SMS names the patient, gives the clinic's number, says 911, and says how to opt out (in the
    word its language announces)."""
    ctx = sample_context(clinic_phone="+1 310 555 0100")
    ctx["keywords"] = {"en": {"opt_out": "STOP"}, "es": {"opt_out": "BAJA"}}[lang]
    r = shipped.render("welcome", "sms", lang, ctx)
    assert r.language == lang
    assert "Maximiliano" in r.body and "+1 310 555 0100" in r.body
    assert "911" in r.body and ctx["keywords"]["opt_out"] in r.body


def test_email_renders_subject_text_and_escaped_html(shipped: Templates) -> None:
    """An email has a one-line subject, a text body, and an HTML part where the patient's name is escaped."""
    ctx = sample_context()
    ctx["patient"] = {"first_name": "<b>Ana</b>", "language": "en"}
    r = shipped.render("tip_caffeine", "email", "en", ctx)
    assert r.subject and "\n" not in r.subject
    assert "<b>Ana</b>" in r.body  # plain text keeps it as typed
    assert r.html is not None and "&lt;b&gt;Ana&lt;/b&gt;" in r.html and "<b>Ana</b>" not in r.html


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A template folder with the HTML shell and one English template per case."""
    shutil.copy(ROOT / "templates/_email.html.j2", tmp_path / "_email.html.j2")
    (tmp_path / "en").mkdir()
    (tmp_path / "es").mkdir()
    return tmp_path


def test_missing_language_falls_back_to_english(scratch: Path) -> None:
    """A template missing in the patient's language is rendered in English."""
    (scratch / "en/hello.sms.j2").write_text("Hello {{ patient.first_name }}")
    r = Templates(scratch).render("hello", "sms", "es", {"patient": {"first_name": "Ana"}})
    assert (r.language, r.body) == ("en", "Hello Ana")


@pytest.mark.parametrize(
    ("files", "name", "channel", "message"),
    [
        ({"en/a.sms.j2": "Hi {{ patient.nickname }}"}, "a", "sms", "nickname"),
        ({"en/b.email.j2": "{% block body %}Hi{% endblock %}"}, "b", "email", "subject block"),
        ({"en/c.sms.j2": "{% if %}"}, "c", "sms", "en/c.sms.j2"),
        ({}, "nope", "sms", "no template nope.sms.j2"),
    ],
    ids=["undefined-variable", "email-without-subject", "syntax-error", "missing"],
)
def test_broken_templates_raise_template_problem(
    scratch: Path, files: dict[str, str], name: str, channel: str, message: str
) -> None:
    """An undefined variable, a missing block, a syntax error or a missing file is a TemplateProblem, not a text."""
    for rel, text in files.items():
        (scratch / rel).write_text(text)
    with pytest.raises(TemplateProblem, match=message):
        Templates(scratch).render(name, channel, "en", {"patient": {"first_name": "Ana"}})


def test_check_all_flags_an_sms_over_two_segments(scratch: Path) -> None:
    """check_all reports an SMS that would need three segments, with its encoding."""
    (scratch / "en/long.sms.j2").write_text("Hi {{ patient.first_name }}. " + "x" * 300)
    (scratch / "en/short.sms.j2").write_text("Hi {{ patient.first_name }}’s")
    rows = {r.name: r for r in check_all(Templates(scratch))}
    assert rows["long"].problem is not None and "3 segments" in rows["long"].problem
    assert rows["short"].problem is None and rows["short"].encoding == "UCS-2"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Ana Diaz", "Ana"),
        ("Zoë Smith", "Zoe"),
        ("Łukasz", "Lukasz"),
        ("李 雷", "Li"),
        ("Ñandú", "Ñandu"),
        ("A" * 40, "A" * 20),
        ("🙂", "there"),
    ],
    ids=["plain", "diaeresis", "polish", "chinese", "gsm-accents-kept", "long", "emoji"],
)
def test_sms_first_name_keeps_texts_in_gsm7(name: str, expected: str) -> None:
    """A first name outside GSM-7 is transliterated for SMS (so two segments still hold the text); long ones cut."""
    from followup.core.sms import is_gsm7
    from followup.services.context import sms_first_name

    got = sms_first_name(name)
    assert got == expected and is_gsm7(got)
