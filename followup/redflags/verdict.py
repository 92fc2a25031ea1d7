"""The values the detector hands out: criteria, findings, suppressions and the verdict.

All are frozen dataclasses with no behaviour beyond presentation, so they can cross threads and be
compared in tests. Offsets (`start`, `end`) index the text given to `Detector.assess`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, TypeVar

from followup.core.vocab import Level, Tier, level_of, tier_rank

T = TypeVar("T")

Reason = Literal[
    "negated", "other_person", "hypothetical", "historical", "question", "resolved", "trigger", "explained"
]

REASONS: tuple[Reason, ...] = (
    "negated",
    "other_person",
    "hypothetical",
    "historical",
    "question",
    "resolved",
    "trigger",
    "explained",
)
_REASON_WORDS: dict[str, str] = {
    "negated": "the reply says it is absent",
    "other_person": "it is about someone else",
    "hypothetical": "it is a worry, a hypothetical or something read",
    "historical": "it is in the past",
    "question": "it is asked about, not reported",
    "resolved": "the reply says it has gone or is improving",
    "trigger": "it is a short-lived worsening tied to a trigger (stress, caffeine, exercise)",
    "explained": "it has an obvious passing cause (the dentist, the flu, hard exercise, laughing, drink)",
}


@dataclass(frozen=True)
class Criterion:
    """One red-flag criterion as the clinic wrote it in the TOML file."""

    id: str
    tier: Tier
    clinician_label: str
    patient_label: str
    source: str
    patterns: tuple[str, ...] = ()
    inability: tuple[str, ...] = ()
    sudden_from: tuple[str, ...] = ()
    refines: tuple[str, ...] = ()
    # Told as a slow change (a cue of `gradual_cues` in its sentence, no sudden cue on it): the finding becomes this
    # lesser criterion ("me cuesta respirar, cada vez más, desde hace semanas" is not a 911 call), unless the reply
    # has a cue of the [context] list named by gradual_unless (breathless at rest or lying flat stays an emergency).
    gradual_to: str | None = None
    gradual_cues: tuple[str, ...] = ("gradual",)  # the [context] cue lists that tell a slow (or a not-acute) course
    gradual_unless: str | None = None
    ignore: tuple[Reason, ...] = ()
    counts_when_resolved: bool = False


@dataclass(frozen=True)
class Question:
    """A question the programme asks, so that a short reply ("YES", "2") can be read against it."""

    id: str
    criteria_on_yes: tuple[str, ...] = ()
    options: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    text: str = ""
    min_weeks_since_onset: float | None = None  # a "yes" counts only this long after onset
    on_worse: tuple[str, ...] = ()  # criteria a "worse" answers (the check-in's "better, same or worse?")


@dataclass(frozen=True)
class ReplyContext:
    """What the programme knows about the conversation when a reply arrives."""

    weeks_since_onset: float | None = None
    last_question: Question | None = None
    # The reply's date where the patient is: "since Christmas" is counted back from it. Unknown (None), a named
    # date counts as long ago enough to be "persisting", as an open-ended "for months" does.
    today: date | None = None


@dataclass(frozen=True)
class Finding:
    """A criterion met by part of the reply."""

    criterion: str
    tier: Tier
    text: str
    start: int
    end: int
    rule: str


@dataclass(frozen=True)
class Suppressed:
    """A criterion mentioned in the reply but not counted, and why."""

    criterion: str
    text: str
    start: int
    end: int
    reason: Reason


Layer = Literal["rules", "learned", "both", "language"]
ReviewReason = Literal["learned", "language", "unread"]
_REVIEW_WORDS: dict[str, str] = {
    "learned": "the learned layer finds it somewhat concerning and no rule explains it",
    "language": "it is written in a language the clinic does not read",
    "unread": "it is longer than the detector reads in one reply, and nothing was found in the part it read",
}


@dataclass(frozen=True)
class Neighbour:
    """A labelled example of the training corpus close to the reply (cosine similarity of whole replies)."""

    text: str
    label: str
    similarity: float


@dataclass(frozen=True)
class LearnedReading:
    """What the learned layer read: its probabilities, the clause that drove them, the thresholds it was held to,
    the ConText modifiers whose clauses it left out, and the closest labelled examples."""

    probability: float  # p(any red flag)
    p_emergency: float
    criterion: str | None  # the criterion it points to (for a review, its best guess)
    clause: str
    start: int
    end: int
    flag_at: float
    review_at: float
    emergency_at: float
    checked: tuple[str, ...]  # the ConText reasons that, found by the rules, keep a clause out of its reading
    not_read: tuple[str, ...] = ()  # the clauses left out because the rules discounted what they say
    neighbours: tuple[Neighbour, ...] = ()
    # In the review band, but every one of its closest labelled examples needs nothing: not sent to review
    cleared_by_neighbours: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "probability": self.probability,
            "p_emergency": self.p_emergency,
            "criterion": self.criterion,
            "clause": self.clause,
            "start": self.start,
            "end": self.end,
            "thresholds": {"flag": self.flag_at, "review": self.review_at, "emergency": self.emergency_at},
            "checked": list(self.checked),
            "not_read": list(self.not_read),
            "neighbours": [{"text": n.text, "label": n.label, "similarity": n.similarity} for n in self.neighbours],
            "cleared_by_neighbours": self.cleared_by_neighbours,
        }


@dataclass(frozen=True)
class Verdict:
    """The detector's answer for one reply."""

    level: Level
    tier: Tier | None
    criteria: tuple[str, ...]
    findings: tuple[Finding, ...]
    suppressed: tuple[Suppressed, ...]
    labels: dict[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)
    layer: Layer | None = None  # which layer escalated: None for "none" (and for a rules-only detector's "none")
    review: bool = False  # a staff review item, not an alarm: the patient gets the routine answer
    review_reason: ReviewReason | None = None
    language: str | None = None  # the language read (None: too short to tell, or not detected)
    learned: LearnedReading | None = None
    # Where reading stopped in a reply too long to read whole (the detector's token cap); None: read to the end.
    unread_from: int | None = None
    # Character spans of the reply the rules read as a figure of speech or an admin request ([context] exclusions):
    # the learned layer does not read the clauses they are in either.
    excluded: tuple[tuple[int, int], ...] = field(default=(), compare=False)
    # The reply tells a slow time course ([context] gradual: "desde hace semanas", "little by little"): a finding of
    # the learned layer alone is then not made an emergency (it stays a red flag or a review).
    gradual: bool = field(default=False, compare=False)

    @classmethod
    def of(cls, findings: list[Finding], suppressed: list[Suppressed], labels: dict[str, str] | None = None) -> Verdict:
        """Build a verdict: findings ordered highest tier first, then by position in the text."""
        ordered = sorted(_unique(findings), key=lambda f: (tier_rank(f.tier), f.start, f.end))
        criteria = tuple(dict.fromkeys(f.criterion for f in ordered))
        tier: Tier | None = ordered[0].tier if ordered else None
        level = level_of(tier)
        found = {(f.criterion, f.start, f.end) for f in ordered}
        quiet = [s for s in _unique(suppressed) if (s.criterion, s.start, s.end) not in found]
        quiet.sort(key=lambda s: (s.start, s.end, s.criterion))
        return cls(level, tier, criteria, tuple(ordered), tuple(quiet), dict(labels or {}))

    @property
    def demoted(self) -> bool:
        """Whether the rules read an emergency criterion as its lesser one (told slowly, on effort, recurring)."""
        return any(f.rule.endswith("+gradual") for f in self.findings)

    @property
    def evidence(self) -> tuple[str, ...]:
        """The matched text spans, in the order of `findings`, without repeats."""
        return tuple(dict.fromkeys(f.text for f in self.findings))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view (the shape `followup check --jsonl` writes)."""
        return {
            "level": self.level,
            "tier": self.tier,
            "criteria": list(self.criteria),
            "evidence": list(self.evidence),
            "findings": [
                {
                    "criterion": f.criterion,
                    "tier": f.tier,
                    "text": f.text,
                    "start": f.start,
                    "end": f.end,
                    "rule": f.rule,
                }
                for f in self.findings
            ],
            "suppressed": [
                {"criterion": s.criterion, "text": s.text, "start": s.start, "end": s.end, "reason": s.reason}
                for s in self.suppressed
            ],
            "layer": self.layer,
            "probability": self.learned.probability if self.learned else None,
            "review": self.review,
            "review_reason": self.review_reason,
            "language": self.language,
            "neighbours": [
                {"text": n.text, "label": n.label, "similarity": n.similarity}
                for n in (self.learned.neighbours if self.learned else ())
            ],
            "learned": self.learned.to_dict() if self.learned else None,
            **({"unread_from": self.unread_from} if self.unread_from is not None else {}),
        }

    def explanation(self) -> str:
        """One human sentence per finding and per suppression."""
        lines = []
        for f in self.findings:
            label = self.labels.get(f.criterion, f.criterion)
            lines.append(f'{label} ({f.tier}): "{f.text}" matched {f.rule}.')
        for s in self.suppressed:
            label = self.labels.get(s.criterion, s.criterion)
            lines.append(f'Not counted as {label}: "{s.text}", because {_REASON_WORDS[s.reason]}.')
        if self.review and self.review_reason:
            lines.append(f"Needs review: {_REVIEW_WORDS[self.review_reason]}.")
        r = self.learned
        if r is not None and (self.layer in ("learned", "both") or self.review or r.cleared_by_neighbours):
            what = self.labels.get(r.criterion or "", r.criterion or "a red flag")
            lines.append(
                f"Learned layer: p={r.probability:.2f} (flag at {r.flag_at:.2f}, review at {r.review_at:.2f}; "
                f'emergency p={r.p_emergency:.2f}, at {r.emergency_at:.2f}), closest to {what}, driven by "{r.clause}".'
            )
            if r.cleared_by_neighbours:
                lines.append(
                    "Not sent to review: p is in the review band, but its closest labelled examples all needed nothing."
                )
            if r.not_read:
                lines.append(f"Learned layer did not read {len(r.not_read)} clause(s) the rules discounted.")
            for n in r.neighbours:
                lines.append(f'  closest example ({n.label}, {n.similarity:.2f}): "{n.text}"')
        if self.unread_from is not None:
            lines.append(f"Read only up to character {self.unread_from}: the rest is past the detector's limit.")
        if not lines:
            return "No red-flag criterion mentioned."
        return "\n".join(lines)


def _unique(items: list[T]) -> list[T]:
    return list(dict.fromkeys(items))
