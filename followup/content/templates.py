"""Message texts: Jinja2 templates in `templates/<lang>/<name>.<channel>.j2`, the patient's language first,
English as fallback. Undefined variables are errors; SMS must fit in two segments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError, select_autoescape

from followup.core.sms import MAX_SEGMENTS, segments
from followup.core.triage import OPTIONAL_RED_FLAG_QUESTIONS, RED_FLAG_QUESTIONS
from followup.core.vocab import CHANNELS

FALLBACK = "en"

SAMPLE_ANSWERS: dict[str, Any] = {
    "onset_weeks": 3,
    **dict.fromkeys(RED_FLAG_QUESTIONS + OPTIONAL_RED_FLAG_QUESTIONS, False),
    "caffeine_per_day": 5,
    "sleep_hours": 5.5,
    "stress": 7,
    "water_glasses": 3,
    "intense_exercise": True,
    "alcohol_per_week": 9,
    "eyelid_only": False,
    "locations": ["calf", "eyelid"],
}


class TemplateProblem(Exception):
    """A template is missing, does not render, or renders an SMS that is too long."""


@dataclass(frozen=True)
class Rendered:
    language: str
    body: str
    subject: str | None = None
    html: str | None = None

    @property
    def segments(self) -> tuple[str, int]:
        return segments(self.body)


@lru_cache(maxsize=32)
def _environments(root: str) -> tuple[Environment, Environment]:
    """The text and HTML environments of a template folder, shared by every `Templates` on it: compiled templates
    stay cached (and are recompiled when their file changes), so building a runtime again does not recompile all."""
    text = Environment(
        loader=FileSystemLoader(root),
        undefined=StrictUndefined,
        autoescape=False,  # noqa: S701 - SMS and plain-text email are not HTML; the HTML layout escapes
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    html = Environment(
        loader=FileSystemLoader(root),
        undefined=StrictUndefined,
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    return text, html


class Templates:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env, self.html_env = _environments(str(root))

    def path(self, name: str, channel: str, language: str) -> str:
        for lang in (language, FALLBACK):
            rel = f"{lang}/{name}.{channel}.j2"
            if (self.root / rel).is_file():
                return rel
        raise TemplateProblem(f"no template {name}.{channel}.j2 in {language} or {FALLBACK}")

    def names(self) -> list[tuple[str, str, str]]:
        """Every (language, name, channel) on disk."""
        out = []
        for f in sorted(self.root.glob("*/*.j2")):
            name, _, channel = f.name.removesuffix(".j2").rpartition(".")
            out.append((f.parent.name, name, channel))
        return out

    def render(self, name: str, channel: str, language: str, context: dict[str, Any]) -> Rendered:
        rel = self.path(name, channel, language)
        lang = rel.split("/", 1)[0]
        try:
            tmpl = self.env.get_template(rel)
            if channel == "sms":
                return Rendered(lang, _tidy(tmpl.render(context)))
            ctx = tmpl.new_context(context)
            if "subject" not in tmpl.blocks or "body" not in tmpl.blocks:
                raise TemplateProblem(f"{rel}: an email template needs a subject block and a body block")
            subject = " ".join("".join(tmpl.blocks["subject"](ctx)).split())
            body = _tidy("".join(tmpl.blocks["body"](ctx)))
        except TemplateError as exc:
            raise TemplateProblem(f"{rel}: {exc}") from exc
        html = self.html_env.get_template("_email.html.j2").render(
            subject=subject, paragraphs=[p for p in body.split("\n\n") if p.strip()], **context
        )
        return Rendered(lang, body, subject, html)


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out)


def sample_context(clinic_name: str = "Achilles Neurology Clinic", clinic_phone: str = "+1 310 555 0100") -> dict:
    """Data to render every template with: long enough names to catch overlong SMS."""
    return {
        "patient": {"first_name": "Maximiliano", "language": "en"},
        "clinic": {"name": clinic_name, "phone": clinic_phone, "emergency": "911"},
        "keywords": {"opt_out": "STOP", "opt_in": "COMENZAR", "help": "AYUDA"},  # the longest shipped words
        "source": "reply",  # an escalation message: after a reply or after the intake form ("triage")
        "alerted": True,  # an escalation message: whether an on-call contact was alerted
        "answers": SAMPLE_ANSWERS,
        "week": 6,
        "booking_url": "https://followup.clinic.example/book/eyJlIjo0Mn0.ZmFrZXNpZ25hdHVyZQ",
        "escalation": {
            "id": 12345,
            "tier": "emergency",
            "level": "emergency",
            "criteria_labels": ["Breathing difficulty"],
            "evidence": ["short of breath"],
        },
        "escalation_url": "https://followup.clinic.example/escalations/12345",
        "patient_id": 12345,
        "patient_url": "https://followup.clinic.example/patients/12345",
        "reason": "SMS number invalid, email bounced",
        # booking, re-alerts and the digest (issue 4)
        "appointment": {
            "when": "miércoles 30 de septiembre, 16:30",
            "when_sms": "miercoles 30 de septiembre, 16:30",
            "event": "moved",
        },
        "manage_url": "https://followup.clinic.example/book/eyJlIjo0Mn0.ZmFrZXNpZ25hdHVyZQ",
        "confirm_url": "https://followup.clinic.example/confirm/Zm9sbG93dXAtY29uZmlybS10b2tlbi1zYW1wbGU",
        "ics_url": "https://followup.clinic.example/book/eyJlIjo0Mn0.ZmFrZXNpZ25hdHVyZQ/calendar.ics",
        "realert": {"round": 12, "minutes": 2880},
        "digest": {
            "date": "2026-11-25",
            "since": "2026-11-24 07:30",
            "new_escalations": [
                {
                    "id": 12345,
                    "tier": "routine",
                    "status": "open",
                    "opened": "2026-11-24 16:02",
                    "criteria": ["Numbness or tingling"],
                    "url": "https://followup.clinic.example/dashboard/escalations/1",
                }
            ],
            "open_count": 3,
            "unacknowledged_count": 1,
            "unreachable": [{"id": 12345, "reason": "sms invalid", "url": "https://followup.clinic.example/x"}],
            "non_responders": [{"id": 12345, "last_checkin": "2026-11-20", "url": "https://followup.clinic.example/x"}],
        },
        "dashboard_url": "https://followup.clinic.example/dashboard",
    }


@dataclass(frozen=True)
class CheckRow:
    language: str
    name: str
    channel: str
    encoding: str
    segments: int
    problem: str | None


# What differs between renderings of one template: an escalation message after a reply or after the intake form,
# with or without an on-call contact alerted. Every variant must render and fit.
VARIANTS: tuple[dict[str, Any], ...] = (
    {"source": "reply", "alerted": True},
    {"source": "triage", "alerted": True},
    {"source": "triage", "alerted": False},
)


def check_all(
    templates: Templates, context: dict[str, Any] | None = None, announce: Mapping[str, Mapping[str, str]] | None = None
) -> list[CheckRow]:
    """Render every template with sample data (each variant, and each language's keywords from `announce`);
    report encoding, the most segments and any problem."""
    ctx = context or sample_context()
    rows = []
    for lang, name, channel in templates.names():
        if channel not in CHANNELS:
            continue
        problem = None
        enc, n = "-", 0
        base = {**ctx, "patient": {**ctx["patient"], "language": lang}}
        if announce and lang in announce:
            base["keywords"] = dict(announce[lang])
        try:
            for variant in VARIANTS:
                r = templates.render(name, channel, lang, {**base, **variant})
                if channel == "sms" and r.segments[1] >= n:
                    enc, n = r.segments
                    if n > MAX_SEGMENTS:
                        problem = f"{n} segments ({enc}, {len(r.body)} chars): the limit is {MAX_SEGMENTS}"
        except TemplateProblem as exc:
            problem = str(exc)
        rows.append(CheckRow(lang, name, channel, enc, n, problem))
    return rows
