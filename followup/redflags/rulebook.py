"""The checked, compiled content of the clinic's red-flag file, as the detector uses it.

`load.load_rulebook` builds a RuleBook from clinic/red_flags.toml; these types only hold it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from followup.redflags.dated import Resolver
from followup.redflags.normalise import Normaliser
from followup.redflags.verdict import Criterion, Question, Reason

Effect = Literal["suppress", "terminate", "pseudo", "sudden"]
EFFECTS: tuple[Effect, ...] = ("suppress", "terminate", "pseudo", "sudden")
TokenPatterns = list[list[dict[str, Any]]]
# The [context] phrase lists matched over a whole reply as message-level cues.
CUE_LISTS = (
    "proxy",
    "question_anchors",
    "improving",
    "not_improving",
    "exclusions",
    "other_history",
    "gradual",
    "recurring",
    "exertion",
    "acute",
)


class CriteriaError(ValueError):
    """The red-flag file is missing, unreadable or wrong; the message says where."""


@dataclass(frozen=True)
class Modifier:
    """One [modifiers.NAME] table: cue phrases and how they act on the symptoms around them."""

    name: str
    effect: Effect
    reason: Reason | None
    forward: tuple[str, ...]
    backward: tuple[str, ...]
    both: tuple[str, ...]
    max_scope: int | None
    first_person_breaks: bool
    second_subject_breaks: bool
    clause_break: bool
    clause_break_on_verbs: bool
    applies_to: tuple[str, ...]
    # A [context] cue list: the modifier discounts a mention only when the reply also has one of its cues
    # (a relative as the subject of a symptom is the patient unless the reply marks someone else's history).
    needs: str | None = None


@dataclass(frozen=True)
class ContextWords:
    """The [context] table."""

    boundaries: frozenset[str]
    subjects: frozenset[str]
    verbs: frozenset[str]
    first_person: frozenset[str]
    list_breaks: frozenset[str]
    terminators: frozenset[str]
    reporter_verbs: frozenset[str]
    proxy: tuple[str, ...]
    question_anchors: tuple[str, ...]
    question_openers: frozenset[str]
    question_lead_ins: frozenset[str]
    improving: tuple[str, ...]
    not_improving: tuple[str, ...]  # an improving word that is not one here: "ya no sé qué hacer"
    exclusions: tuple[str, ...]
    other_history: tuple[str, ...] = ()
    gradual: tuple[str, ...] = ()  # a slow time course: "for weeks", "poco a poco", "cada vez más"
    recurring: tuple[str, ...] = ()  # it keeps happening: "a diario", "seguido", "every meal"
    exertion: tuple[str, ...] = ()  # on effort: stairs, a walk, getting dressed
    acute: tuple[str, ...] = ()  # at rest, lying flat, turning blue, today: keeps it an emergency however told


@dataclass(frozen=True)
class Answers:
    """The [answers] table: how short replies to a question read."""

    yes: tuple[str, ...]
    no: tuple[str, ...]
    uncertain: tuple[str, ...]
    all_options: tuple[str, ...]
    option_fillers: frozenset[str]
    ordinals: dict[str, str]
    worse: frozenset[str] = frozenset()
    trend: frozenset[str] = frozenset()
    unprompted_question: str | None = None


@dataclass(frozen=True)
class Settings:
    gap_words: int
    gap_stops: frozenset[str]
    persisting_min_weeks: float
    context_persisting_weeks: float


@dataclass
class RuleBook:
    """The whole file, checked, with every phrase compiled to token patterns (keyed by where it sits)."""

    path: str
    settings: Settings
    criteria: dict[str, Criterion]
    signals: dict[str, tuple[str, ...]]
    duration_numbers: dict[str, float]
    duration_units: dict[str, float]
    duration_not_after: frozenset[str]
    duration_fillers: frozenset[str]
    open_ended: tuple[str, ...]
    dated: tuple[str, ...]  # phrases naming when the twitching began ("since christmas"): see redflags/dated.py
    named_dates: dict[str, Resolver]
    day_words: dict[str, int]
    modifiers: tuple[Modifier, ...]
    context: ContextWords
    answers: Answers
    questions: dict[str, Question]
    normaliser: Normaliser
    compiled: dict[str, TokenPatterns] = field(default_factory=dict)

    def phrases(self) -> Iterator[tuple[str, str]]:
        """Every (location, phrase) in the file that is compiled."""
        for cid, c in self.criteria.items():
            yield from ((f"criteria.{cid}.patterns[{i}]", p) for i, p in enumerate(c.patterns, 1))
            yield from ((f"criteria.{cid}.inability[{i}]", p) for i, p in enumerate(c.inability, 1))
        for name, phrases in self.signals.items():
            yield from ((f"signals.{name}[{i}]", p) for i, p in enumerate(phrases, 1))
        yield from ((f"durations.open_ended[{i}]", p) for i, p in enumerate(self.open_ended, 1))
        yield from ((f"durations.dated[{i}]", p) for i, p in enumerate(self.dated, 1))
        for m in self.modifiers:
            for key in ("forward", "backward", "both"):
                yield from ((f"modifiers.{m.name}.{key}[{i}]", p) for i, p in enumerate(getattr(m, key), 1))
        for key in CUE_LISTS:
            yield from ((f"context.{key}[{i}]", p) for i, p in enumerate(getattr(self.context, key), 1))
