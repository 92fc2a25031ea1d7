"""Turn a patient's reply into normalised word tokens that still point back into the original text.

Patients text in lower case, without apostrophes, in shorthand and with typos ("cant breath", "legs r weeker",
"numb n tingly"). Every token keeps the character offsets of the text it came from, so evidence quoted back to
the clinic is the patient's own wording. The word lists (contractions, shorthand, spellings, words to
fuzzy-match) come from the criteria file; this module only holds the mechanics.
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from dataclasses import dataclass, field

_TOKEN = re.compile(
    r"""
    (?P<nl>[\r\n]+)
  | (?P<short>w/o|w/|b/c)(?![^\W\d_])
  | (?P<num>\d+(?:[.,]\d+)?(?:st|nd|rd|th|k(?![^\W\d_]))?)  # "10k" is a race, not "10" and "k" ("que")
  | (?P<word>[^\W\d_]+(?:['’‘`´][^\W\d_]+)*)
  | (?P<dots>\.{2,}|…)
  | (?P<punct>[^\w\s])
    """,
    re.VERBOSE | re.IGNORECASE,
)
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'"})
_DROPPED = frozenset("'\"“”‘’()[]{}*_~^|<>#¿¡«»")
_JOINERS = frozenset("-")
SENTENCE_END = frozenset({".", "!", "?", ";"})
_NOT_BASES = {"ca": "can", "wo": "will", "sha": "shall", "ai": "is"}
_IS_BASES = frozenset({"it", "that", "what", "there", "he", "she", "who", "here", "where", "how", "this"})
_SUFFIXES = {"'m": "am", "'re": "are", "'ve": "have", "'ll": "will", "'d": "would"}


@dataclass(frozen=True)
class Token:
    """One normalised word, with the span of original text it came from."""

    text: str
    start: int
    end: int
    sent_start: bool


@dataclass(frozen=True)
class NormaliseConfig:
    """Word lists from the criteria file's [normalise] table."""

    replace: dict[str, tuple[str, ...]]
    between_words: dict[str, tuple[str, ...]]
    spelling: dict[str, str]
    fuzzy_words: tuple[str, ...]
    fuzzy_protect: frozenset[str]
    fuzzy_min_length: int
    keep_sentence_after_question: frozenset[str]
    alone: dict[str, tuple[str, ...]] = field(default_factory=dict)


class Normaliser:
    """Tokenise and normalise text; thread-safe (the fuzzy cache is guarded)."""

    def __init__(self, config: NormaliseConfig) -> None:
        self.config = config
        self._fuzzy_set = frozenset(config.fuzzy_words)
        self._protected = config.fuzzy_protect
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()

    def protect(self, words: frozenset[str]) -> None:
        """Never fuzzy-match these words (the words the patterns themselves use)."""
        with self._lock:
            self._protected = self._protected | words
            self._cache.clear()

    def words(self, raw: str) -> tuple[str, ...]:
        """Normalise one word as written in a pattern (no fuzzy matching, no shorthand)."""
        return self._expand(raw.lower().translate(_APOSTROPHES), fuzzy=False)

    def tokens(self, text: str) -> list[Token]:
        """Normalised tokens with sentence starts; sentences not ending in punctuation get a "." token."""
        raw = _raw_tokens(text)
        items = enumeration_starts(text)
        out: list[Token] = []
        new_sentence = True
        for i, (kind, word, start, end) in enumerate(raw):
            if start in items and out:
                self._close(out)  # "1 worse 2 no 3 ...": each numbered answer is a sentence
                new_sentence = True
            if kind == "nl":
                self._close(out)
                new_sentence = True
                continue
            if kind == "punct" and (word in _DROPPED or (word in _JOINERS and _joined(raw, i))):
                continue
            if kind == "dots":
                word = "."
            words = self._words_in_context(raw, i, kind, word)
            for w in words:
                if w in SENTENCE_END and out and out[-1].text in SENTENCE_END:
                    new_sentence = False  # "?!" or "!!!" stays with its sentence
                out.append(Token(w, start, end, new_sentence))
                new_sentence = False
            if words and words[-1] in SENTENCE_END and not self._answer_follows(raw, i, words[-1]):
                new_sentence = True
        self._close(out)
        return out

    def _words_in_context(self, raw: list[tuple[str, str, int, int]], i: int, kind: str, word: str) -> tuple[str, ...]:
        if kind not in ("word", "short"):
            return (word.lower(),)
        lowered = word.lower().translate(_APOSTROPHES)
        between = self.config.between_words.get(lowered)
        if between and 0 < i < len(raw) - 1 and raw[i - 1][0] == "word" and raw[i + 1][0] == "word":
            return between
        alone = self.config.alone.get(lowered)
        if alone and (i == len(raw) - 1 or raw[i + 1][0] in ("punct", "nl", "dots")):
            return alone  # "si." / "creo que si" is "yes"; "si me acuesto" is "if I lie down"
        return self._expand(lowered, fuzzy=True)

    def _answer_follows(self, raw: list[tuple[str, str, int, int]], i: int, end_word: str) -> bool:
        if end_word != "?":
            return False
        for kind, word, _, _ in raw[i + 1 :]:
            if kind == "punct" and word in "?!":
                continue
            return kind == "word" and word.lower() in self.config.keep_sentence_after_question
        return False

    @staticmethod
    def _close(out: list[Token]) -> None:
        if out and out[-1].text not in SENTENCE_END:
            last = out[-1]
            out.append(Token(".", last.end, last.end, False))

    def _expand(self, word: str, *, fuzzy: bool) -> tuple[str, ...]:
        cfg = self.config
        if word in cfg.replace:
            return cfg.replace[word]
        if "'" in word:
            return self._contraction(word)
        if word in cfg.spelling:
            return (cfg.spelling[word],)
        folded = fold_accents(word)
        if folded != word:  # "está" is read as "esta", "año" as "ano": patterns are folded the same way
            return self._expand(folded, fuzzy=fuzzy)
        return (self._fuzzy(word),) if fuzzy else (word,)

    def _contraction(self, word: str) -> tuple[str, ...]:
        if word.endswith("n't"):
            base = word[:-3]
            return (*self._expand(_NOT_BASES.get(base, base), fuzzy=False), "not")
        for suffix, full in _SUFFIXES.items():
            if word.endswith(suffix):
                return (*self._expand(word[: -len(suffix)], fuzzy=False), full)
        if word.endswith("'s"):
            base = word[:-2]
            return (base, "is") if base in _IS_BASES else self._expand(base, fuzzy=False)
        return self._expand(word.replace("'", ""), fuzzy=False)

    def _fuzzy(self, word: str) -> str:
        cfg = self.config
        if len(word) < cfg.fuzzy_min_length or word in self._fuzzy_set or word in self._protected or not word.isalpha():
            return word
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        limit = 1 if len(word) < 8 else 2
        best, best_distance = word, limit + 1
        for target in cfg.fuzzy_words:
            if abs(len(target) - len(word)) > limit:
                continue
            distance = edit_distance(word, target, limit)
            if distance < best_distance:
                best, best_distance = target, distance
        with self._lock:
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[word] = best
        return best


def fold_accents(word: str) -> str:
    """The word without accents, tildes or diaeresis ("está" -> "esta", "pingüino" -> "pinguino")."""
    if word.isascii():
        return word
    decomposed = unicodedata.normalize("NFD", word)
    return unicodedata.normalize("NFC", "".join(ch for ch in decomposed if not unicodedata.combining(ch)))


_MARKER_PUNCT = frozenset(").:-")
_MAX_MARKER = 9
_UNITS = frozenset({
    "day", "days", "week", "weeks", "wk", "wks", "month", "months", "year", "years", "hour", "hours", "hr", "hrs", "h",
    "min", "mins", "minute", "minutes", "time", "times", "x", "dia", "dias", "semana", "semanas", "mes", "meses",
    "ano", "anos", "hora", "horas", "minuto", "minutos", "vez", "veces", "am", "pm",
})  # fmt: skip


@functools.lru_cache(maxsize=8)  # the tokens, the clauses and the answers of one reply each ask for it
def enumeration_starts(text: str) -> frozenset[int]:
    """Where each item of a numbered answer begins ("1 worse 2 no 3 ..."), as character offsets.

    Numbers 1, 2, ... in that order, the 1 at the start of the reply, a line or a sentence, each followed by a word
    in the same way (all by ")", all by "." ... or all by nothing), a word that is not a unit ("2 weeks"): the
    answers to a numbered check-in. Each begins a sentence of its own, so a "no" answering one item does not negate
    the next. A lone option list ("1 and 3", "1 2 5") is not an enumeration: its numbers are the answer."""
    raw = _raw_tokens(text)
    found: list[int] = []
    style: str | None = None
    for i, (kind, word, start, _) in enumerate(raw):
        if kind != "num" or word != str(len(found) + 1) or len(found) >= _MAX_MARKER:
            continue
        if not found and i and not (raw[i - 1][0] in ("nl", "dots") or raw[i - 1][1] in ".!?:;,"):
            continue  # "I had 1 coffee and 2 beers": the list starts the reply, a line or a sentence
        j = i + 1
        while j < len(raw) and raw[j][0] == "punct" and raw[j][1] in _MARKER_PUNCT:
            j += 1
        after = "".join(p for _, p, _, _ in raw[i + 1 : j])
        if j == len(raw) or raw[j][0] not in ("word", "short") or raw[j][1].lower() in _UNITS:
            continue
        if style is not None and after != style:
            continue  # "1 - worse, and it wasn't 2 weeks ago" is one answer
        style = after
        found.append(start)
    return frozenset(found) if len(found) >= 2 else frozenset()


def _raw_tokens(text: str) -> list[tuple[str, str, int, int]]:
    return [(m.lastgroup or "punct", m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def _joined(raw: list[tuple[str, str, int, int]], i: int) -> bool:
    """A hyphen written inside a word ("short-of-breath", "self-harm") joins words and is dropped."""
    if i == 0 or i == len(raw) - 1:
        return False
    before, after = raw[i - 1], raw[i + 1]
    return before[0] == "word" and after[0] == "word" and before[3] == raw[i][2] and raw[i][3] == after[2]


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance between a and b, or limit + 1 once it must exceed limit."""
    if a == b:
        return 0
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return min(previous[-1], limit + 1)
