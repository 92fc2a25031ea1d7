"""Opt-out, opt-in and help keywords (clinic/keywords.toml), decided without I/O."""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Intent = Literal["opt_out", "opt_in", "help"]
INTENTS: tuple[Intent, ...] = ("opt_out", "opt_in", "help")
DEFAULT_ANNOUNCE: dict[str, str] = {"opt_out": "STOP", "opt_in": "START", "help": "HELP"}
# Typed apostrophes read as "'": phones with smart punctuation (iOS by default) send "don’t", not "don't".
_APOSTROPHES = str.maketrans(dict.fromkeys("\u2018\u2019\u02bc", "'"))


@dataclass(frozen=True)
class Keywords:
    words: dict[str, Intent]
    politeness: tuple[str, ...]
    phrases: tuple[re.Pattern[str], ...]
    announce: dict[str, dict[str, str]] = field(default_factory=dict)

    def keyword(self, text: str) -> Intent | None:
        """The intent when the whole message is one keyword (with optional politeness words), else None."""
        core = normalise(text)
        for word in sorted(self.politeness, key=len, reverse=True):
            # Lookarounds rather than matching the spaces: "stop please please" loses both words (a consumed
            # space used to leave the second one, so the opt-out was missed).
            core = " ".join(re.sub(rf"(?<!\S){re.escape(word)}(?!\S)", " ", core).split())
        return self.words.get(core)

    def announced(self, language: str) -> dict[str, str]:
        """The words messages in `language` tell the patient to send ("BAJA", "COMENZAR", "AYUDA"): English's for
        a language that names none."""
        return self.announce.get(language) or self.announce.get("en") or DEFAULT_ANNOUNCE

    def opt_out_phrase(self, text: str) -> str | None:
        """The opt-out phrase found in a longer message, if any."""
        low = " ".join(text.translate(_APOSTROPHES).lower().split())
        for p in self.phrases:
            m = p.search(low)
            if m:
                return m.group(0)
        return None


def normalise(text: str) -> str:
    """Lower-case, accents kept, apostrophes removed ("don’t" is "dont"), other punctuation and emoji dropped,
    spaces folded."""
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).lower()
    text = "".join(ch if ch.isalnum() or ch.isspace() or ch == "'" else " " for ch in text)
    return " ".join(text.replace("'", "").split())


def load_keywords(path: Path) -> Keywords:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    words: dict[str, Intent] = {}
    for intent in INTENTS:
        for w in data.get("keywords", {}).get(intent, []):
            key = normalise(w)
            if key in words:
                raise ValueError(f"{path}: keyword {w!r} is listed twice")
            words[key] = intent
    try:
        phrases = tuple(re.compile(p) for p in data.get("opt_out_phrases", {}).get("patterns", []))
    except re.error as exc:
        raise ValueError(f"{path}: opt_out_phrases: {exc}") from exc
    announce: dict[str, dict[str, str]] = {}
    for lang, said in data.get("announce", {}).items():
        if not isinstance(said, dict) or set(said) != set(INTENTS):
            raise ValueError(f"{path}: announce.{lang}: give opt_out, opt_in and help")
        for intent in INTENTS:
            if words.get(normalise(str(said[intent]))) != intent:
                raise ValueError(f"{path}: announce.{lang}.{intent}: {said[intent]!r} is not an {intent} keyword above")
        announce[lang] = {intent: str(said[intent]) for intent in INTENTS}
    politeness = tuple(normalise(w) for w in data.get("politeness", {}).get("words", []))
    return Keywords(words, politeness, phrases, announce)
