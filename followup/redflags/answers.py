"""Short replies ("YES", "y", "2", "1 and 3", "yes to the second one") read against the question last asked.

A bare "yes" means nothing without the question. "no" adds nothing. Uncertain answers ("maybe", "a bit",
"not sure") count as yes: uncertainty never cancels a possible red flag. Numbers choose options only when the
reply starts with nothing but choices ("1 and 4, twitching worse"), so "3 weeks of twitching" chooses nothing.
"""

from __future__ import annotations

from followup.redflags.normalise import SENTENCE_END, Token
from followup.redflags.rulebook import RuleBook
from followup.redflags.verdict import Finding, Question, ReplyContext

_DETERMINERS = frozenset({"the", "this", "that", "which"})


def answer_findings(book: RuleBook, tokens: list[Token], context: ReplyContext, text: str) -> list[Finding]:
    """Findings that a short answer to `context.last_question` stands for."""
    question = context.last_question
    if question is None:
        return []
    words = [t for t in tokens if any(ch.isalnum() for ch in t.text) or t.text in ("👍", "👎")]
    if not words:
        return []
    if question.options:
        chosen = _chosen_options(book, question, tokens)
        if chosen:
            rule = "answer:option{}->" + question.id
            return [
                _finding(book, cid, text, tok, tok, rule.format(key))
                for key, tok in chosen
                for cid in question.options.get(key, ())
            ]
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
            parts = tuple(w for p in phrase.split() for w in book.normaliser.words(p))
            n = len(parts)
            if tuple(words[:n]) == parts and (best is None or n > best[1]):
                best = (kind, n)
    return best


def _chosen_options(book: RuleBook, question: Question, tokens: list[Token]) -> list[tuple[str, Token]]:
    """Option keys the reply starts with ("2", "1 and 3", "1,3", "the second one", "all of them")."""
    segments: list[list[Token]] = [[]]
    for tok in tokens:
        if tok.text in SENTENCE_END:
            break
        if tok.text == ",":
            segments.append([])
        else:
            segments[-1].extend(_split_number_list(tok))
    words = [t.text for t in segments[0]]
    lead = _lead(book, words)
    rest = words[lead[1] :] if lead and lead[0] == "yes" else words
    for phrase in book.answers.all_options:
        if rest and rest == phrase.split():
            return [(key, segments[0][0]) for key in question.options]
    chosen: list[tuple[str, Token]] = []
    for segment in segments:
        picks = _segment_choices(book, question, segment)
        if picks is None:
            break
        chosen.extend(picks)
    return chosen


def _segment_choices(book: RuleBook, question: Question, segment: list[Token]) -> list[tuple[str, Token]] | None:
    """The options one comma-separated piece names, or None if it says anything but choices."""
    answers = book.answers
    fillers = answers.option_fillers
    picks = []
    for i, tok in enumerate(segment):
        key = tok.text if tok.text.isdigit() else answers.ordinals.get(tok.text)
        previous = segment[i - 1].text if i else ""
        if (
            key is not None
            and tok.text in ("one", "two")
            and (previous in answers.ordinals or previous in _DETERMINERS)
        ):
            key = None  # "the second one", "this one"
        if key is not None and key in question.options:
            picks.append((key, tok))
        elif tok.text not in fillers and not (key is None and tok.text in ("one", "two")):
            return None
    return picks


def _split_number_list(tok: Token) -> list[Token]:
    """ "1,3" or "1.3" read as a number by the tokeniser: here it is two choices."""
    for sep in (",", "."):
        if sep in tok.text and all(part.isdigit() for part in tok.text.split(sep)):
            return [Token(part, tok.start, tok.end, False) for part in tok.text.split(sep)]
    return [tok]
