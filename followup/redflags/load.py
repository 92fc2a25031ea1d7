"""Load and check the clinic's red-flag file (clinic/red_flags.toml).

Every problem is reported with the table and key it sits in ("criteria.weakness.tier: must be one of
emergency, urgent, routine; got 'soon'"), so a clinician can fix the file without reading Python. Every
phrase is compiled while loading, so a broken pattern stops the service at start-up, not on a reply.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

from followup.core.vocab import TIERS, Tier
from followup.redflags.dated import Resolver, SpecError, parse_spec
from followup.redflags.normalise import SENTENCE_END, NormaliseConfig, Normaliser, fold_accents
from followup.redflags.patterns import PatternError, PhraseCompiler
from followup.redflags.rulebook import (
    CUE_LISTS,
    EFFECTS,
    Answers,
    ContextWords,
    CriteriaError,
    Effect,
    Modifier,
    RuleBook,
    Settings,
    TokenPatterns,
)
from followup.redflags.verdict import REASONS, Criterion, Question, Reason

__all__ = ["CriteriaError", "RuleBook", "load_rulebook"]

_ID = re.compile(r"^[a-z][a-z0-9_]*$")


class _Table:
    """Typed reads from one TOML table, with errors that name the table and key."""

    def __init__(self, data: object, where: str, path: str) -> None:
        self.where, self.path = where, path
        if not isinstance(data, dict):
            raise self.error("", "must be a table")
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def error(self, key: str, problem: str) -> CriteriaError:
        place = f"{self.where}.{key}" if key and self.where else key or self.where or "top level"
        return CriteriaError(f"{self.path}: {place}: {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., what: str = "") -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise self.error(key, "is missing")
            return default
        value = self.data[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
            raise self.error(key, f"must be {what or getattr(kind, '__name__', 'a number')}; got {value!r}")
        return value

    def strings(self, key: str, default: Any = ...) -> tuple[str, ...]:
        value = self.get(key, list, default, "a list of strings")
        if any(not isinstance(v, str) or not v.strip() for v in value):
            raise self.error(key, "must be a list of non-empty strings")
        return tuple(value)

    def table(self, key: str, default: Any = ...) -> _Table:
        return _Table(self.get(key, dict, default, "a table"), f"{self.where}.{key}" if self.where else key, self.path)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown key (check the spelling)")


def load_rulebook(path: Path | str) -> RuleBook:
    """Read, check and compile the red-flag file; raise CriteriaError saying what is wrong and where."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CriteriaError(f"{path}: cannot read the red-flag file ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CriteriaError(f"{path}: not valid TOML: {exc}") from exc
    top = _Table(data, "", str(path))
    if top.get("schema", int) != 1:
        raise top.error("schema", "must be 1")
    st = top.table("settings")
    settings = Settings(
        gap_words=st.get("gap_words", int),
        gap_stops=frozenset(w.lower() for w in st.strings("gap_stops", ())),
        persisting_min_weeks=float(st.get("persisting_min_weeks", (int, float))),
        context_persisting_weeks=float(st.get("context_persisting_weeks", (int, float))),
    )
    forbidden = st.strings("forbidden_in_patient_labels", [])
    st.done()
    normaliser = Normaliser(_normalise_config(top.table("normalise"), top.table("answers", {})))
    criteria = _criteria(top.table("criteria"), forbidden)
    modifiers = _modifiers(top.table("modifiers"), criteria)
    book = RuleBook(
        path=str(path),
        settings=settings,
        criteria=criteria,
        signals=_signals(top.table("signals")),
        **_durations(top.table("durations")),
        modifiers=modifiers,
        context=_context(top.table("context"), modifiers),
        answers=_answers(top.table("answers")),
        questions=_questions(top.table("questions", {}), criteria),
        normaliser=normaliser,
    )
    unprompted = book.answers.unprompted_question
    if unprompted is not None and unprompted not in book.questions:
        raise CriteriaError(f"{path}: answers.unprompted_question: no question called {unprompted!r}")
    words = _words(top.table("words", {}))
    if "named_date" in words:
        raise CriteriaError(f"{path}: words.named_date: this set is [durations] named_dates' names; define them there")
    # A name is looked up in the reply's own tokens, so it is normalised as a reply is ("New Year's" -> new year).
    book.named_dates = {
        " ".join(t.text for t in normaliser.tokens(name) if t.text not in SENTENCE_END): when
        for name, when in book.named_dates.items()
    }
    words["named_date"] = sorted(book.named_dates)
    _compile(book, words)
    top.get("learned", dict, {}, "a table")  # the learned layer's settings: read by followup.redflags.learned.config
    top.done()
    return book


def _normalise_config(t: _Table, answers: _Table) -> NormaliseConfig:
    def split(key: str) -> dict[str, tuple[str, ...]]:
        table = t.get(key, dict, {}, "a table of word = replacement")
        if any(not isinstance(v, str) for v in table.values()):
            raise t.error(key, "every replacement must be a string")
        return {k.lower(): tuple(fold_accents(v.lower()).split()) for k, v in table.items()}

    spelling = {}
    for word, replacement in split("spelling").items():
        if len(replacement) != 1:
            raise t.error("spelling", f"{word!r} must map to one word (several words go in `replace`)")
        spelling[word] = replacement[0]
    replies = answers.data.get("yes", []) + answers.data.get("no", []) + answers.data.get("uncertain", [])
    config = NormaliseConfig(
        replace=split("replace"),
        between_words=split("between_words"),
        spelling=spelling,
        fuzzy_words=tuple(w.lower() for w in t.strings("fuzzy_words", [])),
        fuzzy_protect=frozenset(w.lower() for w in t.strings("fuzzy_protect", [])),
        fuzzy_min_length=t.get("fuzzy_min_length", int, 6),
        keep_sentence_after_question=frozenset(str(r).split()[0].lower() for r in replies if str(r).strip()),
        alone=split("alone"),
    )
    t.done()
    return config


def _criteria(t: _Table, forbidden: tuple[str, ...]) -> dict[str, Criterion]:
    out: dict[str, Criterion] = {}
    for cid in t.data:
        if not _ID.match(cid):
            raise t.error(cid, "criterion ids use lower-case letters, digits and '_'")
        c = t.table(cid)
        tier = c.get("tier", str)
        if tier not in TIERS:
            raise c.error("tier", f"must be one of {', '.join(TIERS)}; got {tier!r}")
        label = c.get("patient_label", str)
        words = set(re.findall(r"[a-z.]+", label.lower()))
        bad = [f for f in forbidden if (f in words if " " not in f else f in label.lower())]
        if bad:
            raise c.error("patient_label", f"must not name a diagnosis ({bad[0]!r}); describe the symptom")
        ignore = c.strings("ignore", ())
        for reason in ignore:
            if reason not in REASONS:
                raise c.error("ignore", f"{reason!r} is not a reason ({', '.join(REASONS)})")
        out[cid] = Criterion(
            id=cid,
            tier=Tier(tier),
            clinician_label=c.get("clinician_label", str),
            patient_label=label,
            source=c.get("source", str),
            patterns=c.strings("patterns"),
            inability=c.strings("inability", ()),
            sudden_from=c.strings("sudden_from", ()),
            refines=c.strings("refines", ()),
            gradual_to=c.get("gradual_to", str, None),
            gradual_cues=c.strings("gradual_cues", ("gradual",)),
            gradual_unless=c.get("gradual_unless", str, None),
            ignore=cast(tuple[Reason, ...], ignore),
            counts_when_resolved=c.get("counts_when_resolved", bool, False),
        )
        c.done()
    for crit in out.values():
        for key in ("sudden_from", "refines"):
            for ref in getattr(crit, key):
                if ref not in out:
                    raise CriteriaError(f"{t.path}: criteria.{crit.id}.{key}: no criterion called {ref!r}")
        if crit.sudden_from and crit.tier != Tier.EMERGENCY:
            raise CriteriaError(f"{t.path}: criteria.{crit.id}.sudden_from: only emergency criteria take it")
        if crit.gradual_to is not None:
            lesser = out.get(crit.gradual_to)
            if lesser is None or lesser.tier == Tier.EMERGENCY:
                raise CriteriaError(
                    f"{t.path}: criteria.{crit.id}.gradual_to: must name a criterion below the emergency tier"
                )
        for cue in crit.gradual_cues:
            if cue not in CUE_LISTS:
                raise CriteriaError(f"{t.path}: criteria.{crit.id}.gradual_cues: {cue!r} is not a [context] cue list")
        if crit.gradual_unless is not None and crit.gradual_unless not in CUE_LISTS:
            raise CriteriaError(
                f"{t.path}: criteria.{crit.id}.gradual_unless: must be one of the [context] cue lists "
                f"{', '.join(CUE_LISTS)}"
            )
    if not out:
        raise t.error("", "no criteria defined")
    return out


def _signals(t: _Table) -> dict[str, tuple[str, ...]]:
    out = {"twitch": t.strings("twitch"), "ongoing": t.strings("ongoing")}
    t.done()
    return out


def _durations(t: _Table) -> dict[str, Any]:
    def numbers(key: str) -> dict[str, float]:
        table = t.get(key, dict, what="a table of word = number")
        if any(isinstance(v, bool) or not isinstance(v, int | float) or v <= 0 for v in table.values()):
            raise t.error(key, "every value must be a positive number")
        return {k.lower(): float(v) for k, v in table.items()}

    day_words = t.get("day_words", dict, {}, "a table of word = day of the month")
    if any(isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 31 for d in day_words.values()):
        raise t.error("day_words", "every value must be a day of the month (1 to 31)")
    out = {
        "duration_numbers": numbers("numbers"),
        "duration_units": numbers("units"),
        "duration_not_after": frozenset(w.lower() for w in t.strings("not_after", ())),
        "duration_fillers": frozenset(w.lower() for w in t.strings("fillers", ())),
        "open_ended": t.strings("open_ended", ()),
        "dated": t.strings("dated", ()),
        "named_dates": _named_dates(t),
        "day_words": {k.lower(): d for k, d in day_words.items()},
    }
    t.done()
    return out


def _named_dates(t: _Table) -> dict[str, Resolver]:
    """`named_dates`: a name as patients write it = when it falls (see redflags/dated.py)."""
    table = t.get("named_dates", dict, {}, "a table of name = date")
    out = {}
    for name, spec in table.items():
        if not isinstance(spec, str):
            raise t.error("named_dates", f'{name!r}: the date must be a string such as "12-25"')
        try:
            out[name] = parse_spec(spec)
        except SpecError as exc:
            raise t.error("named_dates", f"{name!r}: {exc}") from None
    return out


def _modifiers(t: _Table, criteria: dict[str, Criterion]) -> tuple[Modifier, ...]:
    out = []
    for name in t.data:
        m = t.table(name)
        effect = m.get("effect", str)
        if effect not in EFFECTS:
            raise m.error("effect", f"must be one of {', '.join(EFFECTS)}; got {effect!r}")
        reason = m.get("reason", str, None)
        if (effect == "suppress") != (reason is not None):
            raise m.error("reason", 'is required with effect = "suppress" and only then')
        if reason is not None and reason not in REASONS:
            raise m.error("reason", f"must be one of {', '.join(REASONS)}; got {reason!r}")
        applies_to = m.strings("applies_to", ())
        for ref in applies_to:
            if ref not in criteria:
                raise m.error("applies_to", f"no criterion called {ref!r}")
        needs = m.get("needs", str, None)
        if needs is not None and needs not in CUE_LISTS:
            raise m.error("needs", f"must be one of the [context] cue lists {', '.join(CUE_LISTS)}; got {needs!r}")
        max_scope = m.get("max_scope", int, None)
        if max_scope is not None and max_scope <= 0:
            raise m.error("max_scope", "must be a positive number of words")
        mod = Modifier(
            name=name,
            effect=cast(Effect, effect),
            reason=cast(Reason | None, reason),
            forward=m.strings("forward", ()),
            backward=m.strings("backward", ()),
            both=m.strings("both", ()),
            max_scope=max_scope,
            first_person_breaks=m.get("first_person_breaks", bool, False),
            second_subject_breaks=m.get("second_subject_breaks", bool, False),
            clause_break=m.get("clause_break", bool, effect == "suppress"),
            clause_break_on_verbs=m.get("clause_break_on_verbs", bool, True),
            applies_to=applies_to,
            needs=needs,
        )
        if not (mod.forward or mod.backward or mod.both):
            raise m.error("", "needs at least one of forward, backward, both")
        m.done()
        out.append(mod)
    return tuple(out)


def _context(t: _Table, modifiers: tuple[Modifier, ...]) -> ContextWords:
    def words(key: str) -> frozenset[str]:
        return frozenset(w.lower() for w in t.strings(key))

    out = ContextWords(
        boundaries=words("boundaries"),
        subjects=words("subjects"),
        verbs=words("verbs"),
        first_person=words("first_person"),
        list_breaks=words("list_breaks"),
        terminators=frozenset(w for m in modifiers if m.effect == "terminate" for p in m.both for w in p.split()),
        reporter_verbs=words("reporter_verbs"),
        proxy=t.strings("proxy"),
        question_anchors=t.strings("question_anchors"),
        question_openers=words("question_openers"),
        question_lead_ins=words("question_lead_ins"),
        improving=t.strings("improving"),
        not_improving=t.strings("not_improving", ()),
        exclusions=t.strings("exclusions", ()),
        other_history=t.strings("other_history", ()),
        gradual=t.strings("gradual", ()),
        recurring=t.strings("recurring", ()),
        exertion=t.strings("exertion", ()),
        acute=t.strings("acute", ()),
    )
    t.done()
    return out


def _answers(t: _Table) -> Answers:
    ordinals = t.get("ordinals", dict, {}, "a table of word = option")
    yes, uncertain = t.strings("yes"), t.strings("uncertain", ())
    out = Answers(
        yes=yes,
        no=t.strings("no"),
        uncertain=uncertain,
        all_options=t.strings("all_options", ()),
        option_fillers=frozenset(
            w for p in (*t.strings("option_fillers", ()), *yes, *uncertain) for w in p.lower().split()
        ),
        ordinals={str(k).lower(): str(v) for k, v in ordinals.items()},
        worse=frozenset(fold_accents(w.lower()) for w in t.strings("worse", ())),
        trend=frozenset(fold_accents(w.lower()) for w in t.strings("trend", ())),
        unprompted_question=t.get("unprompted_question", str, None),
    )
    t.done()
    return out


def _questions(t: _Table, criteria: dict[str, Criterion]) -> dict[str, Question]:
    out = {}
    for qid in t.data:
        q = t.table(qid)
        on_yes = q.strings("criteria_on_yes", ())
        on_worse = q.strings("on_worse", ())
        raw_options = q.get("options", dict, {}, "a table of option = [criteria]")
        options = {}
        for key, ids in raw_options.items():
            if not isinstance(ids, list) or any(not isinstance(i, str) for i in ids):
                raise q.error(f"options.{key}", "must be a list of criterion ids")
            options[str(key).lower()] = tuple(ids)
        for ref in (*on_yes, *on_worse, *(i for ids in options.values() for i in ids)):
            if ref not in criteria:
                key = "criteria_on_yes" if ref in on_yes else "on_worse" if ref in on_worse else "options"
                raise q.error(key, f"no criterion called {ref!r}")
        weeks = q.get("min_weeks_since_onset", (int, float), None)
        out[qid] = Question(
            id=qid,
            criteria_on_yes=on_yes,
            options=options,
            text=q.get("text", str, ""),
            min_weeks_since_onset=None if weeks is None else float(weeks),
            on_worse=on_worse,
        )
        q.done()
    return out


def _words(t: _Table) -> dict[str, list[str]]:
    out = {name: list(t.strings(name)) for name in t.data}
    t.done()
    return out


def _compile(book: RuleBook, words: dict[str, list[str]]) -> None:
    stops = {*SENTENCE_END, ",", *book.settings.gap_stops}
    for m in book.modifiers:
        if m.effect == "terminate":
            stops.update(phrase.lower() for phrase in m.both if " " not in phrase.strip())
    compiler = PhraseCompiler(book.normaliser.words, words, book.settings.gap_words, stops)
    for where, phrase in book.phrases():
        try:
            book.compiled[where] = compiler.compile(phrase)
        except PatternError as exc:
            raise CriteriaError(f"{book.path}: {where}: {exc} in {phrase!r}") from exc
    book.normaliser.protect(frozenset(_literal_words(book.compiled.values())))


def _literal_words(patterns: Iterable[TokenPatterns]) -> Iterator[str]:
    for variants in patterns:
        for pattern in variants:
            for token in pattern:
                value = token.get("LOWER")
                if isinstance(value, str):
                    yield value
                elif isinstance(value, dict) and "IN" in value:
                    yield from value["IN"]
