"""What a patient reads on the web pages (intake, thank-you, booking) and in the calendar file, per language.

The words live in `templates/<lang>/pages.toml` beside the message texts, so a clinic can change them without
touching code. Every language must hold every key the English file holds (`check_pages`, run at start): a page
never mixes languages because one string was forgotten.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

FALLBACK = "en"
FILE = "pages.toml"


class PagesProblem(Exception):
    """A pages.toml file is missing, unreadable or lacks keys the English one has."""


@lru_cache(maxsize=16)
def _load(path: str, mtime: float) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PagesProblem(f"{path}: {exc}") from exc


def page_texts(root: Path, language: str) -> dict[str, Any]:
    """The page words of one language (English for a language that has no pages.toml)."""
    path = root / language / FILE
    if not path.is_file():
        path = root / FALLBACK / FILE
    if not path.is_file():
        raise PagesProblem(f"{path}: missing")
    return _load(str(path), path.stat().st_mtime)


def _keys(data: Mapping[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, value in data.items():
        name = f"{prefix}{key}"
        out |= _keys(value, f"{name}.") if isinstance(value, Mapping) else {name}
    return out


def check_pages(root: Path, languages: list[str]) -> list[str]:
    """Every problem with the page words: a language without the file, or without a key English has."""
    try:
        wanted = _keys(page_texts(root, FALLBACK))
    except PagesProblem as exc:
        return [str(exc)]
    problems = []
    for lang in languages:
        path = root / lang / FILE
        if not path.is_file():
            problems.append(f"{lang}/{FILE}: missing")
            continue
        try:
            missing = sorted(wanted - _keys(page_texts(root, lang)))
        except PagesProblem as exc:
            problems.append(str(exc))
            continue
        if missing:
            problems.append(f"{lang}/{FILE}: missing " + ", ".join(missing))
    return problems


def choose_language(
    asked: str | None, accept_language: str | None, supported: list[str], default: str = FALLBACK
) -> str:
    """The page's language: the one the patient picked (`?lang=`, or the form's hidden field) if we have it, else
    the browser's first supported preference (`Accept-Language`, by q-value), else `default`."""
    if asked and asked.strip().lower() in supported:
        return asked.strip().lower()
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "")[:500].split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        primary = tag.strip().split("-")[0].lower()
        if primary in supported and q > 0:
            ranked.append((-q, i, primary))
    return min(ranked)[2] if ranked else default
