"""What the patient's pages share: their Jinja environment, the page's language, and its words.

A page's language is the one the patient picked (the switch at the top: `?lang=es`, then a hidden field in the
form), else their browser's (`Accept-Language`), else English. Its words come from templates/<lang>/pages.toml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from followup.content.pages import choose_language, page_texts
from followup.runtime import Runtime

pages = Jinja2Templates(directory=str(Path(__file__).parent / "pages"))


def fill(text: str, **values: Any) -> Markup:
    """A page string with its {braces} filled in: the text is escaped, values that are Markup (a tel: link) stay
    HTML, other values are escaped."""
    return Markup.escape(text).format(**values)


pages.env.filters["fill"] = fill


def tel(number: str) -> str:
    """The tel: URI of a number as people write it ("+1 310 555 0100" -> "tel:+13105550100")."""
    return "tel:" + "".join(ch for ch in number if ch.isdigit() or ch == "+")


pages.env.filters["tel"] = tel


def page_language(request: Request, rt: Runtime, asked: str | None = None) -> str:
    supported = list(rt.settings.clinic.languages)
    return choose_language(asked, request.headers.get("accept-language"), supported, supported[0])


def words(rt: Runtime, language: str) -> dict[str, Any]:
    return page_texts(rt.settings.clinic.templates, language)


def switch(rt: Runtime, path: str, current: str) -> list[dict[str, Any]]:
    """The language switch at the top of a page: every language, in its own name, the current one marked."""
    out = []
    for code in rt.settings.clinic.languages:
        name = words(rt, code)["meta"]["name"]
        out.append({"lang": code, "name": name, "href": f"{path}?lang={code}", "current": code == current})
    return out


def tel_link(number: str, css: str = "") -> Markup:
    """A number as a tap-to-call link."""
    cls = Markup(' class="{}"').format(css) if css else Markup("")
    return Markup('<a href="{}"{}>{}</a>').format(tel(number), cls, number)


def common(rt: Runtime, language: str) -> dict[str, Any]:
    """What every patient page's template sees: the clinic, the language and its words, and tap-to-call links for
    the emergency number and the clinic."""
    clinic = rt.settings.clinic
    return {
        "clinic": clinic,
        "lang": language,
        "t": words(rt, language),
        "emergency": clinic.emergency_number,
        "tel_link": tel_link(clinic.emergency_number),
        "clinic_link": tel_link(clinic.phone),
    }
