"""ConText modifier rules built from the [modifiers] tables, with the scope checks patients' writing needs.

medspaCy's ConText decides which symptom mentions a cue ("no", "my brother", "if", "used to") reaches within
a sentence. Its stock rules are not used: they treat "can't" as negation, which for a patient IS the
symptom. On top of ConText's own scope, each rule gets an `on_modifies` check:

- clause break: "no pain, my hand is weak" — after "," / "and" a new clause (a subject or verb) starts, so
  "no" does not reach "weak"; "no weakness, numbness or tingling" stays one list and is all negated.
- first person: "worried because my hand is weak", "my wife says my speech is slurred" — the patient
  speaks of themselves between the cue and the symptom, so the worry / other person does not apply.
- second subject: "if I lie flat I can't breathe" — the if-clause ended at the second "I" (in Spanish, which drops
  the subject, at a symptom starting with "me"/"se" after the if-clause's verb: "si me acuesto me ahogo").
"""

from __future__ import annotations

from collections.abc import Callable

from medspacy.context import ConTextRule
from spacy.tokens import Doc, Span

from followup.redflags.rulebook import ContextWords, Modifier, RuleBook

OnModifies = Callable[[Span, Span, Span], bool]
_DIRECTIONS = (("forward", "FORWARD"), ("backward", "BACKWARD"), ("both", "BIDIRECTIONAL"))
_SPECIAL = {"terminate": "TERMINATE", "pseudo": "PSEUDO"}
# medspaCy only lets a terminator cut another modifier's scope when their scopes "overlap" by its test, which
# misses a sentence-wide terminator scope that contains the other scope; a one-word scope always passes it.
_TERMINATOR_SCOPE = 1


def category(modifier: Modifier) -> str:
    """The ConText category for a [modifiers.NAME] table."""
    return modifier.name.upper()


def context_rules(book: RuleBook) -> list[ConTextRule]:
    """One ConTextRule per compiled cue pattern."""
    rules = []
    for mod in book.modifiers:
        check = None if mod.effect in _SPECIAL else _on_modifies(mod, book.context)
        allowed = set(mod.applies_to) or None
        for key, direction in _DIRECTIONS:
            for i, phrase in enumerate(getattr(mod, key), 1):
                for pattern in book.compiled[f"modifiers.{mod.name}.{key}[{i}]"]:
                    rules.append(
                        ConTextRule(
                            literal=phrase,
                            category=category(mod),
                            pattern=pattern,
                            direction=_SPECIAL.get(mod.effect, direction),
                            on_modifies=check,
                            allowed_types=allowed,
                            max_scope=_TERMINATOR_SCOPE if mod.effect == "terminate" else mod.max_scope,
                        )
                    )
    return rules


def _on_modifies(mod: Modifier, words: ContextWords) -> OnModifies:
    def check(target: Span, cue: Span, _between: Span) -> bool:
        doc = target.doc
        forward = cue.end <= target.start
        between = doc[cue.end : target.start] if forward else doc[target.end : cue.start]
        texts = [t.text for t in between]
        if mod.first_person_breaks and _speaks_of_self(doc, target, texts, words):
            return False
        if mod.second_subject_breaks and forward and _second_subject(texts, target, words):
            return False
        return not (mod.clause_break and _clause_break(doc, target, texts, forward, words, mod.clause_break_on_verbs))

    return check


def _second_subject(between: list[str], target: Span, words: ContextWords) -> bool:
    """A new subject after the if-clause's own: "if I lie flat I can't breathe", or, as Spanish drops the subject,
    a symptom that starts with its clitic after a clause: "si me acuesto | me ahogo"."""
    if any(t in words.subjects for t in between[1:]):
        return True
    return bool(between) and target[0].text in words.subjects


def _speaks_of_self(doc: Doc, target: Span, between: list[str], words: ContextWords) -> bool:
    """The patient speaks of themselves between cue and symptom, in the match, or just after it."""
    if any(t in words.first_person or t in words.reporter_verbs for t in between):
        return True
    if any(t.text in words.first_person for t in target):  # "I'm dropping things"
        return True
    return any(t in words.first_person for t in _clause_after(doc, target, words, limit=2))  # "weakness in my hand"


def _clause_after(doc: Doc, target: Span, words: ContextWords, limit: int | None = None) -> list[str]:
    """The words after the target up to the end of its clause (at most `limit`)."""
    if target[-1].is_punct or target[-1].text in words.boundaries:
        return []
    end = target.sent.end if limit is None else min(target.end + limit, target.sent.end)
    out = []
    for tok in doc[target.end : end]:
        if tok.is_punct or tok.text in words.boundaries or tok.text in words.terminators:
            break
        out.append(tok.text)
    return out


def _clause_break(
    doc: Doc, target: Span, between: list[str], forward: bool, words: ContextWords, on_verbs: bool
) -> bool:
    """True when a clause boundary separates cue and target (see the module docstring)."""
    if not forward and any(t in words.list_breaks for t in between[:-1]):
        return True
    marks = [i for i, t in enumerate(between) if t in words.boundaries]
    if not marks:
        return False
    clause = words.subjects | words.verbs if on_verbs else words.subjects
    if forward:
        segment = between[marks[-1] + 1 :] + [t.text for t in target]
        if any(t in clause for t in segment):
            return True
        if not on_verbs:
            return False
        return any(t in words.verbs for t in _clause_after(doc, target, words))
    sent_start = target.sent.start
    before = []
    for tok in reversed(doc[sent_start : target.start]):
        if tok.text in words.boundaries:
            break
        before.append(tok.text)
    segment = before + [t.text for t in target] + between[: marks[0]]
    return any(t in words.verbs for t in segment)
