"""Opt-out, opt-in and help keywords (clinic/keywords.toml), decided without I/O."""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Intent = Literal["opt_out", "opt_in", "help"]
# Typed apostrophes read as "'": phones with smart punctuation (iOS by default) send "don’t", not "don't".
_APOSTROPHES = str.maketrans(dict.fromkeys("\u2018\u2019\u02bc", "'"))


@dataclass(frozen=True)
class Keywords:
    words: dict[str, Intent]
    politeness: tuple[str, ...]
    phrases: tuple[re.Pattern[str], ...]

    def keyword(self, text: str) -> Intent | None:
        """The intent when the whole message is one keyword (with optional politeness words), else None."""
        core = normalise(text)
        for word in sorted(self.politeness, key=len, reverse=True):
            # Lookarounds rather than matching the spaces: "stop please please" loses both words (a consumed
            # space used to leave the second one, so the opt-out was missed).
            core = " ".join(re.sub(rf"(?<!\S){re.escape(word)}(?!\S)", " ", core).split())
        return self.words.get(core)

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
    for intent in ("opt_out", "opt_in", "help"):
        for w in data.get("keywords", {}).get(intent, []):
            key = normalise(w)
            if key in words:
                raise ValueError(f"{path}: keyword {w!r} is listed twice")
            words[key] = intent
    try:
        phrases = tuple(re.compile(p) for p in data.get("opt_out_phrases", {}).get("patterns", []))
    except re.error as exc:
        raise ValueError(f"{path}: opt_out_phrases: {exc}") from exc
    return Keywords(words, tuple(normalise(w) for w in data.get("politeness", {}).get("words", [])), phrases)
