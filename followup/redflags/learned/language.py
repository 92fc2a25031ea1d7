"""Which language a reply is written in (lingua, restricted to the clinic's languages and a few common ones).

A reply in a language the clinic does not read must still reach a clinician: `Screen` sends it to review."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

if TYPE_CHECKING:
    from followup.redflags.learned.config import LearnedSettings


@dataclass(frozen=True)
class LanguageRead:
    """The language found (None when the reply is too short to tell), its confidence, and whether we read it."""

    code: str | None
    confidence: float
    readable: bool


class LanguageReader:
    """Tell a reply's language among `detect`; a reply is unreadable only when lingua is confident (at least
    `min_confidence`) that it is in a language outside `read`, and it has at least `min_letters` letters
    ("ok", "2", "gracias" are read whatever lingua guesses; Spanglish splits its votes and stays read). A reply
    with at least two `markers` of one read language, an eighth of its words or more, is read in that language
    whatever lingua says: its trigram mode mistakes short plain English for German."""

    def __init__(
        self,
        detect: tuple[str, ...],
        read: tuple[str, ...],
        min_letters: int,
        min_confidence: float,
        markers: tuple[tuple[str, frozenset[str]], ...] = (),
    ) -> None:
        languages = [Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())) for code in detect]
        # Low accuracy mode: trigram models only, loaded lazily (0.5 s on first use instead of 6 s at start);
        # it is as accurate as the full mode on texts of a sentence or more, which is all we act on.
        self._detector = LanguageDetectorBuilder.from_languages(*languages).with_low_accuracy_mode().build()
        self._read = frozenset(read)
        self._min_letters = min_letters
        self._min_confidence = min_confidence
        self._markers = markers

    @classmethod
    def from_settings(cls, settings: LearnedSettings) -> LanguageReader:
        """The reader the criteria file's [learned] section describes."""
        return cls(
            settings.detect_languages,
            settings.read_languages,
            settings.language_min_letters,
            settings.language_min_confidence,
            settings.language_markers,
        )

    def read(self, text: str) -> LanguageRead:
        """The language of `text` and whether the clinic reads it."""
        if sum(ch.isalpha() for ch in text) < self._min_letters:
            return LanguageRead(None, 0.0, True)
        values = self._detector.compute_language_confidence_values(text)
        if not values:
            return LanguageRead(None, 0.0, True)
        top = values[0]
        code = top.language.iso_code_639_1.name.lower()
        if code not in self._read:
            marked = self._marked(text)
            if marked is not None:
                value = next((v.value for v in values if v.language.iso_code_639_1.name.lower() == marked), 0.0)
                return LanguageRead(marked, round(float(value), 3), True)
        confident = top.value >= self._min_confidence
        return LanguageRead(code, round(float(top.value), 3), code in self._read or not confident)

    def _marked(self, text: str) -> str | None:
        """The read language whose marker words make up an eighth or more of `text` (at least two), if any."""
        words = _WORD.findall(text.lower())
        for code, markers in self._markers:
            hits = sum(w in markers for w in words)
            if hits >= 2 and hits * MARKER_SHARE >= len(words):
                return code
        return None


# An eighth, not a fifth: "fui a spinning y acabe sin aire" has two Spanish markers in seven words, and lingua took
# it for Tagalog. The markers are words no other detected language writes the same way.
MARKER_SHARE = 8
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
