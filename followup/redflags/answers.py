"""Short replies ("YES", "y", "2", "1 and 3", "yes to the second one") read against the question last asked.

A bare "yes" means nothing without the question. "no" adds nothing. Uncertain answers ("maybe", "a bit",
"not sure") count as yes: uncertainty never cancels a possible red flag.
"""

from __future__ import annotations

from followup.redflags.criteria import RuleBook
from followup.redflags.model import Finding, Question, ReplyContext
from followup.redflags.normalise import Token

_MAX_OPTION_REPLY_WORDS = 12
_DETERMINERS = frozenset({"the", "this", "that", "which"})


def answer_findings(book: RuleBook, tokens: list[Token], context: ReplyContext, text: str) -> list[Finding]:
    """Findings that a short answer to `context.last_question` stands for."""
    question = context.last_question
    if question is None:
        return []
    words = [t for t in tokens if any(ch.isalnum() for ch in t.text) or t.text in ("👍", "👎")]
    if not words:
        return []
    findings: list[Finding] = []
    if question.options and len(words) <= _MAX_OPTION_REPLY_WORDS:
        for key, tok in _selected(book, question, words):
            for cid in question.options.get(key, ()):
                findings.append(_finding(book, cid, text, tok, tok, f"answer:option{key}->{question.id}"))
    if findings:
        return findings
    lead = _lead(book, [t.text for t in words])
    if lead is None or lead[0] == "no" or not _old_enough(question, context):
        return []
    first, last = words[0], words[lead[1] - 1]
    return [_finding(book, cid, text, first, last, f"answer:yes->{question.id}") for cid in question.criteria_on_yes]


def _finding(book: RuleBook, cid: str, text: str, first: Token, last: Token, rule: str) -> Finding:
    crit = book.criteria[cid]
    return Finding(cid, crit.tier, text[first.start : last.end], first.start, last.end, rule)


def _old_enough(question: Question, context: ReplyContext) -> bool:
    need = question.min_weeks_since_onset
    if need is None:
        return True
    return context.weeks_since_onset is not None and context.weeks_since_onset >= need


def _lead(book: RuleBook, words: list[str]) -> tuple[str, int] | None:
    """("yes" | "no", number of words) for the answer phrase the reply starts with, longest first."""
    a = book.answers
    best: tuple[str, int] | None = None
    for kind, phrases in (("yes", a.yes), ("yes", a.uncertain), ("no", a.no)):
        for phrase in phrases:
            parts = (
                book.normaliser.words(phrase)
                if " " not in phrase
                else tuple(w for p in phrase.split() for w in book.normaliser.words(p))
            )
            n = len(parts)
            if tuple(words[:n]) == parts and (best is None or n > best[1]):
                best = (kind, n)
    return best


def _selected(book: RuleBook, question: Question, words: list[Token]) -> list[tuple[str, Token]]:
    """Option keys chosen in the reply ("2", "1 and 3", "the second one", "all of them")."""
    texts = [t.text for t in words]
    lead = _lead(book, texts)
    rest = texts[lead[1] :] if lead and lead[0] == "yes" else texts
    for phrase in book.answers.all_options:
        parts = phrase.split()
        if rest[: len(parts)] == parts:
            return [(key, words[0]) for key in question.options]
    out = []
    ordinals = book.answers.ordinals
    for i, tok in enumerate(words):
        key = tok.text if tok.text.isdigit() else ordinals.get(tok.text)
        if key is None or key not in question.options:
            continue
        if tok.text in ("one", "two") and i and (texts[i - 1] in ordinals or texts[i - 1] in _DETERMINERS):
            continue  # "the second one", "this one"
        out.append((key, tok))
    return out
