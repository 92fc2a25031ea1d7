"""Both layers behind the detector's interface: the rules (medspaCy) first, then the learned layer and the
reply's language, combined by `combine.combine`. This is what the service and `followup check` use.

    screen = Screen.from_file(Path("clinic/red_flags.toml"))   # loads the model if the file has [learned]
    verdict = screen.assess("feels like breathing through a straw")
    verdict.level, verdict.layer, verdict.learned.probability, verdict.learned.neighbours
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from followup.core.vocab import Tier
from followup.redflags.combine import combine, unread_to_review
from followup.redflags.detector import Detector
from followup.redflags.learned.clauses import clauses
from followup.redflags.learned.config import LearnedSettings, parse_learned
from followup.redflags.learned.features import Encoder
from followup.redflags.learned.language import LanguageRead, LanguageReader
from followup.redflags.learned.model import LearnedModel, Prediction
from followup.redflags.load import RuleBook, load_rulebook
from followup.redflags.verdict import Criterion, Question, ReplyContext, Verdict

_WORD = re.compile(r"\w+")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class Screen:
    """Assess replies with the rules and, when configured, the learned layer. `assess` is thread-safe."""

    def __init__(
        self,
        rules: Detector,
        settings: LearnedSettings | None = None,
        model: LearnedModel | None = None,
        languages: LanguageReader | None = None,
    ) -> None:
        self.rules = rules
        self.settings = settings
        self.model = model
        self.languages = languages
        self.criteria: Mapping[str, Criterion] = rules.criteria
        self._tiers: dict[str, Tier] = {cid: c.tier for cid, c in rules.criteria.items()}

    @classmethod
    def from_file(cls, path: Path | str, *, learned: bool = True, encoder: Encoder | None = None) -> Screen:
        """Load the rules and, if the file has an enabled [learned] table and `learned`, the pinned model.
        Raises CriteriaError or ArtefactError naming the problem: the service must not start half-armed."""
        book = load_rulebook(path)
        layer = load_learned(path, encoder, book) if learned else None
        rules = Detector(book)
        return cls(rules) if layer is None else cls(rules, *layer)

    def question(self, qid: str) -> Question:
        return self.rules.question(qid)

    @property
    def questions(self) -> Mapping[str, Question]:
        return self.rules.questions

    def assess(self, text: str, context: ReplyContext | None = None) -> Verdict:
        """The combined verdict for one reply (for email, pass the reply with quoted history removed)."""
        verdict, prediction, language = self.read(text, context)
        if self.settings is None or language is None:
            return unread_to_review(verdict if verdict.level == "none" else _with_layer(verdict))
        return unread_to_review(combine(verdict, prediction, language, self.settings, self._tiers))

    def read(
        self, text: str, context: ReplyContext | None = None
    ) -> tuple[Verdict, Prediction | None, LanguageRead | None]:
        """What each layer read, before they are combined: the rules' verdict, the learned layer's prediction (None
        for a reply too short for it) and the language (None without the learned layer)."""
        verdict = self.rules.assess(text, context)
        if self.settings is None or self.model is None or self.languages is None or not isinstance(text, str):
            return verdict, None, None
        # A lone surrogate (a JSON "\ud800") cannot reach the tokenizer or lingua's Rust; one for one keeps offsets.
        text = _SURROGATE.sub("\ufffd", text)
        gated = [(s.start, s.end) for s in verdict.suppressed if s.reason in self.settings.gated_by]
        short = len(_WORD.findall(text)) < self.settings.min_words
        seen = text
        if self.settings.gate_exclusions and verdict.excluded:
            seen, dropped = _without_exclusions(text, verdict.excluded, self.settings.min_words)
            gated += dropped
        prediction = None if short else self.model.predict(seen, gated)
        return verdict, prediction, self.languages.read(text)


def load_learned(
    path: Path | str, encoder: Encoder | None = None, book: RuleBook | None = None
) -> tuple[LearnedSettings, LearnedModel, LanguageReader] | None:
    """The criteria file's learned layer (settings, pinned model, language reader), None when it has none enabled:
    what `Screen.from_file` adds to the rules, and all a process that only reads ahead needs (no medspaCy)."""
    path = Path(path)
    settings = parse_learned(tomllib.loads(path.read_text(encoding="utf-8")).get("learned"), path)
    if settings is None or not settings.enabled:
        return None
    tiers = {cid: c.tier for cid, c in (book or load_rulebook(path)).criteria.items()}
    model = LearnedModel.load(settings, tiers, encoder)
    model.predict("loaded and ready")  # the encoder loads its weights lazily: at start, not on a patient's reply
    return settings, model, LanguageReader.from_settings(settings)


def _without_exclusions(
    text: str, spans: tuple[tuple[int, int], ...], min_words: int
) -> tuple[str, list[tuple[int, int]]]:
    """A figure of speech or an admin request the rules excluded, kept from the model as well: the text with each
    excluded span blanked (same length: offsets stay those of the reply), and the clauses with fewer than
    `min_words` words left once blanked, or with less than half of its words left, not read at all ("se me cae la
    cara de vergüenza", "please take me off these texts", "the [twitching is less] since I [cut down] on coffee"). A
    clause that says more ("I'm confused about the dose and my arm won't lift") is still read."""
    blanked = text
    for start, end in spans:
        blanked = blanked[:start] + " " * (end - start) + blanked[end:]
    dropped = []
    for c in clauses(text):
        if not any(c.start < e and s < c.end for s, e in spans):
            continue
        left, words = len(_WORD.findall(blanked[c.start : c.end])), len(_WORD.findall(c.text))
        if left < min_words or 2 * left < words:  # "The ... since I ...": what is left of it is not a sentence
            dropped.append((c.start, c.end))
    return blanked, dropped


def _with_layer(verdict: Verdict) -> Verdict:
    return replace(verdict, layer="rules")
