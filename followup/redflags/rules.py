"""From matched mentions and their ConText modifiers to findings: the decisions, as pure functions.

- a mention counts unless a modifier suppresses it (negated, someone else, hypothetical or worry, question,
  past, resolved, trigger), with the exceptions the file allows: inability phrases ignore negation, a
  relative writing for the patient makes "she"/"mom" the patient (and so does a relative as the subject of a
  symptom, unless the reply marks someone else's history or condition: [modifiers.relative] needs
  [context] other_history), criteria list reasons they `ignore`, and
  emergencies that passed still count;
- a question ("...?") that does not say the patient has the symptom is only asking about it;
- a symptom that came on suddenly becomes its emergency criterion (`sudden_from`), unless its sentence tells a slow
  time course ([context] gradual: "desde hace semanas", "poco a poco", "little by little");
- an emergency criterion told as a slow change (or, per `gradual_cues`, on effort or as something that keeps
  happening) becomes its lesser criterion (`gradual_to`: "cada vez me cuesta más respirar" is breathlessness on
  exertion, "se atraganta con el agua a diario" a swallowing problem, not 911 calls), unless the reply has a
  `gradual_unless` cue (at rest, lying flat);
- twitching that goes on: a stated duration of `persisting_min_weeks` or more, or any mention of the twitching
  still being there once onset is `context_persisting_weeks` ago, is "persisting" unless it is improving.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from spacy.tokens import Doc

from followup.redflags.dated import weeks_since
from followup.redflags.rulebook import RuleBook
from followup.redflags.verdict import Finding, Reason, ReplyContext, Suppressed

# When several modifiers reach a mention, the reason reported is the first of these that applies.
_PRIORITY: tuple[Reason, ...] = (
    "other_person",
    "hypothetical",
    "question",
    "historical",
    "trigger",
    "explained",
    "resolved",
    "negated",
)
PERSISTING = "persisting"


@dataclass(frozen=True)
class Cue:
    """A message-level cue over tokens [start, end): proxy, question anchor, improving, exclusion, duration."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True)
class Mention:
    """A criterion or helper signal matched over tokens [start, end), with the modifier categories on it."""

    label: str
    kind: str
    index: int
    start: int
    end: int
    categories: frozenset[str]


class Evidence:
    """Maps token ranges back to the patient's own text."""

    def __init__(self, text: str, offsets: Sequence[tuple[int, int]]) -> None:
        self.text, self.offsets = text, offsets

    def span(self, start: int, end: int) -> tuple[str, int, int]:
        a, b = self.offsets[start][0], self.offsets[end - 1][1]
        return self.text[a:b], a, b


def evaluate(
    book: RuleBook, doc: Doc, mentions: list[Mention], cues: Sequence[Cue], context: ReplyContext, evidence: Evidence
) -> tuple[list[Finding], list[Suppressed]]:
    """Findings and suppressions for one reply."""
    kinds = {c.kind for c in cues}
    # A modifier that `needs` a cue list discounts nothing in a reply without one of its cues.
    reasons = {
        m.name.upper(): (m.reason, m.applies_to)
        for m in book.modifiers
        if m.reason and (m.needs is None or m.needs in kinds)
    }
    sudden = {m.name.upper() for m in book.modifiers if m.effect == "sudden"}
    course: dict[str, set[int]] = {}  # cue list -> the sentences it marks
    for c in cues:
        course.setdefault(c.kind, set()).add(doc[c.start].sent.start)
    gradual = course.get("gradual", set())
    proxy = any(c.kind == "proxy" for c in cues)
    asking = _question_sentences(book, doc, cues)
    findings: list[Finding] = []
    suppressed: list[Suppressed] = []
    present: list[Mention] = []
    for m in mentions:
        crit = book.criteria.get(m.label)
        ignore = set(crit.ignore if crit else ())
        if m.kind == "inability":
            ignore.add("negated")
        if proxy:
            ignore.add("other_person")
        if crit and crit.counts_when_resolved:
            ignore.add("resolved")
        found = {
            reasons[c][0] for c in m.categories if c in reasons and (not reasons[c][1] or m.label in reasons[c][1])
        }
        if doc[m.start].sent.start in asking:
            found.add("question")
        reason = next((r for r in _PRIORITY if r in found and r not in ignore), None)
        if crit is None:
            if reason is None:
                present.append(m)
            continue
        text, start, end = evidence.span(m.start, m.end)
        if reason is not None:
            suppressed.append(Suppressed(crit.id, text, start, end, reason))
            continue
        sent = doc[m.start].sent.start
        slow = any(sent in course.get(k, ()) for k in crit.gradual_cues) and not sudden & m.categories
        slow = slow and m.kind != "inability"  # "can't swallow at all", however long it has been, stays
        if slow and crit.gradual_to and (crit.gradual_unless is None or crit.gradual_unless not in kinds):
            lesser = book.criteria[crit.gradual_to]
            rule = f"{m.kind}:{crit.id}#{m.index}+gradual"
            findings.append(Finding(lesser.id, lesser.tier, text, start, end, rule))
            continue
        findings.append(Finding(crit.id, crit.tier, text, start, end, f"{m.kind}:{crit.id}#{m.index}"))
        if sudden & m.categories and sent not in gradual:
            for emergency in book.criteria.values():
                if crit.id in emergency.sudden_from:
                    findings.append(Finding(emergency.id, emergency.tier, text, start, end, f"onset:sudden+{crit.id}"))
    f, s = _persisting(book, doc, present, cues, context, evidence)
    return findings + f, suppressed + s


def _question_sentences(book: RuleBook, doc: Doc, cues: Sequence[Cue]) -> set[int]:
    """Start tokens of sentences that ask ("is weakness a sign...?") without saying the patient has it."""
    words = book.context
    anchored = {doc[c.start].sent.start for c in cues if c.kind == "question_anchors"}
    out = set()
    for sent in doc.sents:
        if sent.start in anchored or not any(t.text == "?" for t in sent[-3:]):
            continue
        lead = [t.text for t in sent if t.text not in words.question_lead_ins]
        first = lead[0] if lead else ""
        if first in words.question_openers and not _subjectless_not(lead):
            out.add(sent.start)
    return out


_SUBJECTS = frozenset({
    "i", "you", "he", "she", "it", "we", "they", "this", "that", "these", "those", "there", "my", "your", "his", "her",
    "its", "our", "their",
})  # fmt: skip


def _subjectless_not(lead: list[str]) -> bool:
    """ "can not breathe right, lips blue, is this the muscles??": a negated verb with its subject left out is a
    statement; the question is another part of the sentence ("can not you ...?" is a question)."""
    return len(lead) > 2 and lead[1] == "not" and lead[2] not in _SUBJECTS


def _persisting(
    book: RuleBook, doc: Doc, present: list[Mention], cues: Sequence[Cue], context: ReplyContext, evidence: Evidence
) -> tuple[list[Finding], list[Suppressed]]:
    if PERSISTING not in book.criteria:
        return [], []
    tier = book.criteria[PERSISTING].tier
    taken = [(m.start, m.end) for m in present] + [(c.start, c.end) for c in cues if c.kind == "not_improving"]
    improving = {
        doc[c.start].sent.start
        for c in cues
        if c.kind == "improving" and not any(s < c.end and c.start < e for s, e in taken)
    }
    signals = [m for m in present if m.label in ("signal_twitch", "signal_ongoing")]
    easing = [m for m in present if doc[m.start].sent.start in improving]
    ongoing = [m for m in signals if m not in easing]
    suppressed = []
    min_weeks = book.settings.persisting_min_weeks
    excluded = [(c.start, c.end) for c in cues if c.kind == "exclusions"]
    for c in sorted(cues, key=lambda c: (c.start, -c.end)):
        if c.kind not in ("duration", "open_duration", "dated_duration"):
            continue
        if any(c.start < e and b < c.end for b, e in excluded):
            continue  # inside a figure of speech: "un mes de infarto" is a hectic month, not a month of twitching
        if (
            c.start
            and doc[c.start - 1].text in book.duration_not_after
            and not any(_just_before(doc, s.end, c.start - 1) for s in signals)
        ):  # "in 6 weeks" is a date, "hasn't stopped (for a single day) in 6 weeks" is not
            continue
        words = [t.text for t in doc[c.start : c.end]]
        if c.kind == "dated_duration":
            weeks = dated_weeks(book, words, context.today)
        else:
            weeks = duration_weeks(book, words, c.kind)
        if weeks is None or weeks < min_weeks or not signals:
            continue
        text, start, end = evidence.span(c.start, c.end)
        if doc[c.start].sent.start in improving or not ongoing:
            suppressed.append(Suppressed(PERSISTING, text, start, end, "resolved"))
            continue
        if c.kind != "dated_duration":
            rule = f"duration:{weeks:g}w"
        elif context.today is None:
            rule = "dated:reply date unknown, counted as long enough"
        else:
            rule = f"dated:{weeks:.1f}w before {context.today.isoformat()}"
        return [Finding(PERSISTING, tier, text, start, end, rule)], []
    weeks_since = context.weeks_since_onset
    threshold = book.settings.context_persisting_weeks
    if weeks_since is None or weeks_since < threshold:
        return [], suppressed
    rule = f"context:persisting>={threshold:g}w"
    if ongoing:
        text, start, end = evidence.span(ongoing[0].start, ongoing[0].end)
        return [Finding(PERSISTING, tier, text, start, end, rule)], []
    for m in easing[:1]:
        text, start, end = evidence.span(m.start, m.end)
        suppressed.append(Suppressed(PERSISTING, text, start, end, "resolved"))
    return [], suppressed


def _just_before(doc: Doc, end: int, at: int, gap: int = 5) -> bool:
    """A signal ending at most `gap` words before `at`, in its sentence ("hasn't stopped for a single day in")."""
    return end > 0 and 0 <= at - end <= gap and doc[end - 1].sent.start == doc[at].sent.start


def dated_weeks(book: RuleBook, words: list[str], today: date | None) -> float | None:
    """Weeks since the date a dated phrase names ("since christmas"), counted back from the reply's date."""
    if today is None:
        return max(book.settings.persisting_min_weeks, book.settings.context_persisting_weeks)
    return weeks_since(words, book.named_dates, book.day_words, today)


def duration_weeks(book: RuleBook, words: list[str], kind: str) -> float | None:
    """Weeks in a matched duration ("8 weeks", "a couple of months"); open-ended ones count as long enough."""
    if kind == "open_duration":
        return max(book.settings.persisting_min_weeks, book.settings.context_persisting_weeks)
    unit = book.duration_units.get(words[-1])
    if unit is None:
        return None
    number_words = [w for w in words[:-1] if w not in book.duration_fillers]
    phrase = " ".join(number_words)
    if phrase in book.duration_numbers:
        return book.duration_numbers[phrase] * unit
    try:
        return float(phrase.replace(",", ".")) * unit
    except ValueError:
        return None
