"""Short replies ("YES", "y", "2", "1 and 3", "yes to the second one") read against the question last asked.

A bare "yes" means nothing without the question. "no" adds nothing. Uncertain answers ("maybe", "a bit",
"not sure") count as yes: uncertainty never cancels a possible red flag. Numbers choose options only when the
reply starts with nothing but choices ("1 and 4, twitching worse"), so "3 weeks of twitching" chooses nothing;
a choice said with "no" ("4 no", "no to 2 and 3") chooses nothing.

With no question known (a late reply, `followup check`), a reply that starts with option numbers is read against
`[answers] unprompted_question`, the one numbered question the programme asks, when it also answers the trend
("3, worse" still means trouble breathing; a bare "2" means nothing). A "worse" answers the question's trend
part ("better, same or worse?") with its `on_worse` criteria.
"""

from __future__ import annotations

from followup.redflags.normalise import SENTENCE_END, Token, enumeration_starts
from followup.redflags.rulebook import RuleBook
from followup.redflags.verdict import Finding, Question, ReplyContext

_DETERMINERS = frozenset({"the", "this", "that", "which"})
_SEPARATORS = frozenset({"-", ":", "=", "("})


def answer_findings(book: RuleBook, tokens: list[Token], context: ReplyContext, text: str) -> list[Finding]:
    """Findings that a short answer to `context.last_question` stands for."""
    question = context.last_question
    prompted = question is not None
    if question is None:
        unprompted = book.answers.unprompted_question
        if unprompted is None:
            return []
        question = book.questions[unprompted]
    words = [t for t in tokens if any(ch.isalnum() for ch in t.text) or t.text in ("👍", "👎")]
    if not words:
        return []
    if question.options:
        items = _items(tokens, text)
        if items:
            # "1 yes 2 no 3 no 4 worse": the numbered list answered item by item; an item answered yes, maybe or
            # worse is chosen, one answered no, better or in words of its own is not (the rules read the words).
            kind = "item"
            chosen = [(key, tok) for key, tok, answer in items if key in question.options and _affirms(book, answer)]
        else:
            kind = "option"
            chosen = _chosen_options(book, question, tokens, digits_only=not prompted)
        if chosen and not prompted and not _trend_answered(book, tokens):
            chosen = []  # a bare "2" with no question asked means nothing; "2, worse" is a check-in answer
        if chosen:
            return [
                _finding(book, cid, text, tok, tok, f"answer:{kind}{key}->{question.id}")
                for key, tok in chosen
                for cid in question.options.get(key, ())
            ] + _worse(book, question, tokens, text, chosen=True)
    if not prompted:
        return []
    trend = _worse(book, question, tokens, text, chosen=False)
    lead = _lead(book, [t.text for t in words])
    if trend and (lead is None or lead[0] == "no"):
        return trend
    if lead is None or lead[0] == "no" or not _old_enough(question, context):
        return []
    first, last = words[0], words[lead[1] - 1]
    found = [_finding(book, cid, text, first, last, f"answer:yes->{question.id}") for cid in question.criteria_on_yes]
    return found + trend


def _items(tokens: list[Token], text: str) -> list[tuple[str, Token, list[str]]]:
    """(number, its token, the words answering it) for each item of a numbered answer ("1 worse 2 no")."""
    starts = enumeration_starts(text)
    out: list[tuple[str, Token, list[str]]] = []
    for tok in tokens:
        if tok.start in starts and tok.text.isdigit():
            out.append((tok.text, tok, []))
        elif out and any(ch.isalnum() for ch in tok.text):
            out[-1][2].append(tok.text)
    return out


def _affirms(book: RuleBook, answer: list[str]) -> bool:
    """An item's answer says yes: "yes", "maybe", "a bit", or "worse" (its trend)."""
    lead = _lead(book, answer)
    return (lead is not None and lead[0] == "yes") or any(w in book.answers.worse for w in answer[:3])


def _trend_answered(book: RuleBook, tokens: list[Token]) -> bool:
    """The first sentence also answers "better, same or worse?"."""
    words = book.answers.worse | book.answers.trend
    for tok in tokens:
        if tok.text in SENTENCE_END:
            return False
        if tok.text in words:
            return True
    return False


def _worse(book: RuleBook, question: Question, tokens: list[Token], text: str, *, chosen: bool) -> list[Finding]:
    """ "3, worse" / "4 - peor" / "Peor.": the trend part of the question answered "worse".

    After option numbers any "worse" in the first sentence counts; a reply that is only an answer ("worse",
    "no, peor") counts too; "worse" inside a longer sentence is left to the phrase patterns."""
    if not question.on_worse or not book.answers.worse:
        return []
    first: list[Token] = []
    for tok in tokens:
        if tok.text in SENTENCE_END and first:
            break
        first.append(tok)
    words = [t for t in first if any(ch.isalnum() for ch in t.text)]
    hits = [t for t in words if t.text in book.answers.worse]
    if not hits or (not chosen and len(words) > 3):
        return []
    rule = f"answer:worse->{question.id}"
    return [_finding(book, cid, text, hits[0], hits[0], rule) for cid in question.on_worse]


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


def _chosen_options(
    book: RuleBook, question: Question, tokens: list[Token], *, digits_only: bool = False
) -> list[tuple[str, Token]]:
    """Option keys the reply starts with ("2", "1 and 3", "1,3", "the second one", "all of them"); with
    `digits_only` (no question was asked) only a reply that starts with a digit chooses."""
    segments: list[list[Token]] = [[]]
    after: list[Token] = []
    for i, tok in enumerate(tokens):
        if tok.text in SENTENCE_END:
            after = [t for t in tokens[i + 1 :] if t.text not in SENTENCE_END]
            break
        if tok.text == ",":
            segments.append([])
        else:
            segments[-1].extend(_split_number_list(tok))
    if after and _negates(book, after[:1]):
        return []  # "2? nope"
    words = [t.text for t in segments[0]]
    if digits_only and not (words and words[0].isdigit()):
        return []
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


def _negates(book: RuleBook, segment: list[Token]) -> bool:
    """ "4 no", "no to 2 and 3", "none": the choice is refused ("no.4", "no 2" = number 4, 2 still choose)."""
    refusals = {p for p in book.answers.no if " " not in p}
    for i, tok in enumerate(segment):
        if tok.text in refusals:
            after = segment[i + 1].text if i + 1 < len(segment) else ""
            if not (tok.text == "no" and after.isdigit()):
                return True
    return False


def _segment_choices(book: RuleBook, question: Question, segment: list[Token]) -> list[tuple[str, Token]] | None:
    """The options one comma-separated piece names, or None if it says anything but choices."""
    answers = book.answers
    fillers = answers.option_fillers
    if _negates(book, segment):
        return []
    picks: list[tuple[str, Token]] = []
    for i, tok in enumerate(segment):
        if tok.text in _SEPARATORS and picks:
            return picks  # "2 - choking on water", "3: since Tuesday I can't lie down"
        if tok.text in answers.worse or tok.text in answers.trend:
            continue  # "4 worse": the trend part, read by _worse
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
