"""The red-flag detector: a medspaCy pipeline (TargetMatcher + ConText) built once from the clinic's file.

    det = Detector.from_file(Path("clinic/red_flags.toml"))
    verdict = det.assess("my right hand feels weaker", ReplyContext(weeks_since_onset=5))

Patient text never reaches a log: PyRuSH (medspaCy's sentence splitter, which logs every word through loguru)
is not in the pipeline and is disabled anyway, and nothing here logs.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import medspacy
from loguru import logger
from medspacy.target_matcher import TargetRule
from spacy.tokens import Doc, Span

from followup.redflags import rules
from followup.redflags.answers import answer_findings
from followup.redflags.context import context_rules
from followup.redflags.load import load_rulebook
from followup.redflags.matcher import CueMatcher, ShardedMatcher
from followup.redflags.rulebook import CUE_LISTS, RuleBook
from followup.redflags.verdict import Criterion, Finding, Question, ReplyContext, Suppressed, Verdict

logger.disable("PyRuSH")

_GROUP = "medspacy_spans"
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_CUES = CUE_LISTS


class Detector:
    """Assess patients' replies against the clinic's red-flag criteria. `assess` is thread-safe."""

    def __init__(self, book: RuleBook) -> None:
        self._book = book
        self.criteria: Mapping[str, Criterion] = MappingProxyType(book.criteria)
        self._labels = {cid: c.clinician_label for cid, c in book.criteria.items()}
        nlp = medspacy.load(medspacy_enable=["medspacy_target_matcher", "medspacy_context"], load_rules=False)
        nlp.replace_pipe(
            "medspacy_target_matcher",
            "medspacy_target_matcher",
            config={"result_type": "group", "span_group_name": _GROUP, "prune": False},
        )
        nlp.replace_pipe(
            "medspacy_context",
            "medspacy_context",
            config={
                "rules": None,
                "input_span_type": "group",
                "span_group_name": _GROUP,
                "prune_on_target_overlap": True,
                "span_attrs": None,
            },
        )
        self._vocab = nlp.vocab
        self._targets = nlp.get_pipe("medspacy_target_matcher")
        self._context = nlp.get_pipe("medspacy_context")
        sharded = [
            _shard_and_skip_revalidation(self._targets, "_TargetMatcher__matcher"),
            _shard_and_skip_revalidation(self._context, "_ConText__matcher"),
        ]
        self._targets.add(self._target_rules())
        self._context.add(context_rules(book))
        for matcher in sharded:
            if matcher is not None:
                matcher.build()
        self._cues = CueMatcher(nlp.vocab)  # grouped by first word: a reply runs only the cues it can start
        for kind in _CUES:
            patterns = [p for where, ps in book.compiled.items() if where.startswith(f"context.{kind}[") for p in ps]
            if patterns:
                self._cues.add(kind, patterns)
        self._cues.add("duration", self._duration_patterns())
        open_ended = [p for where, ps in book.compiled.items() if where.startswith("durations.open_ended[") for p in ps]
        if open_ended:
            self._cues.add("open_duration", open_ended)
        dated = [p for where, ps in book.compiled.items() if where.startswith("durations.dated[") for p in ps]
        if dated:
            self._cues.add("dated_duration", dated)
        self._cues.build()
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: Path | str) -> Detector:
        """Load, check and compile the clinic's file; raises CriteriaError naming the problem."""
        return cls(load_rulebook(path))

    def question(self, qid: str) -> Question:
        """The question defined as [questions.<qid>] in the file."""
        try:
            return self._book.questions[qid]
        except KeyError:
            raise KeyError(f"no question {qid!r} in {self._book.path}") from None

    @property
    def questions(self) -> Mapping[str, Question]:
        return MappingProxyType(self._book.questions)

    def assess(self, text: str, context: ReplyContext | None = None) -> Verdict:
        """The verdict for one reply (for email, pass the reply with quoted history removed).

        A long reply is read in windows cut at sentence ends: ConText's cost grows with the square of the text,
        and no modifier reaches across a sentence end anyway. Offsets stay those of the whole text.
        Detection is bounded per reply: at most MAX_TOKENS tokens are read (the first ones; a 20,000-emoji email
        is 20,000 tokens), and the verdict says where reading stopped (`unread_from`)."""
        if isinstance(text, str) and len(text) > WINDOW_CHARS:
            findings: list[Finding] = []
            suppressed: list[Suppressed] = []
            excluded: list[tuple[int, int]] = []
            gradual = False
            read, unread_from = 0, None
            for start, chunk in windows(text, WINDOW_CHARS):
                if read >= MAX_TOKENS:
                    unread_from = start
                    break
                part, count = self._read(chunk, context, MAX_TOKENS - read)
                read += count
                findings += [replace(f, start=f.start + start, end=f.end + start) for f in part.findings]
                suppressed += [replace(x, start=x.start + start, end=x.end + start) for x in part.suppressed]
                excluded += [(a + start, b + start) for a, b in part.excluded]
                gradual = gradual or part.gradual
                if part.unread_from is not None:
                    unread_from = start + part.unread_from
                    break
            verdict = Verdict.of(findings, suppressed, self._labels)
            return replace(verdict, unread_from=unread_from, excluded=tuple(excluded), gradual=gradual)
        return self._read(text, context, MAX_TOKENS)[0]

    def _assess(self, text: str, context: ReplyContext | None = None) -> Verdict:
        return self._read(text, context, MAX_TOKENS)[0]

    def _read(self, text: str, context: ReplyContext | None, budget: int) -> tuple[Verdict, int]:
        """The verdict for one window and the tokens it read: at most `budget` (the rest is left unread)."""
        context = context or ReplyContext()
        # spaCy cannot hash a lone surrogate (a JSON "\ud800", undecodable argv bytes); one for one keeps offsets.
        text = _SURROGATE.sub("\ufffd", text) if isinstance(text, str) else ""
        tokens = self._book.normaliser.tokens(text)
        unread_from = None
        if len(tokens) > budget:
            unread_from = tokens[budget].start
            text, tokens = text[:unread_from], tokens[:budget]
        if not tokens:
            return replace(Verdict.of([], [], self._labels), unread_from=unread_from), 0
        doc = Doc(self._vocab, words=[t.text for t in tokens], sent_starts=[t.sent_start for t in tokens])
        with self._lock:  # spaCy matchers are not documented as thread-safe
            cues = [rules.Cue(self._vocab.strings[k], s, e) for k, s, e in self._cues(doc)]
            doc = self._targets(doc)
            doc.spans[_GROUP] = self._resolve(list(doc.spans[_GROUP]), cues)
            doc = self._context(doc)
            mentions = [_mention(span) for span in doc.spans[_GROUP]]
        offsets = [(t.start, t.end) for t in tokens]
        evidence = rules.Evidence(text, offsets)
        findings, suppressed = rules.evaluate(self._book, doc, mentions, cues, context, evidence)
        findings += answer_findings(self._book, tokens, context, text)
        excluded = tuple(evidence.span(c.start, c.end)[1:] for c in cues if c.kind == "exclusions")
        gradual = any(c.kind == "gradual" for c in cues)
        verdict = Verdict.of(findings, suppressed, self._labels)
        return replace(verdict, unread_from=unread_from, excluded=excluded, gradual=gradual), len(tokens)

    def _target_rules(self) -> list[TargetRule]:
        book = self._book
        out = []
        for cid, crit in book.criteria.items():
            for kind in ("patterns", "inability"):
                for i, phrase in enumerate(getattr(crit, kind), 1):
                    for pattern in book.compiled[f"criteria.{cid}.{kind}[{i}]"]:
                        meta = {"label": cid, "kind": kind.rstrip("s"), "index": i}
                        out.append(TargetRule(phrase, cid, pattern=pattern, metadata=meta))
        for name in book.signals:
            for i, phrase in enumerate(book.signals[name], 1):
                for pattern in book.compiled[f"signals.{name}[{i}]"]:
                    out.append(
                        TargetRule(
                            phrase,
                            f"signal_{name}",
                            pattern=pattern,
                            metadata={"label": f"signal_{name}", "kind": "signal", "index": i},
                        )
                    )
        return out

    def _duration_patterns(self) -> list[list[dict[str, Any]]]:
        """ "8 weeks", "a couple of months", "6 long weeks": a number, optional filler words, a unit."""
        book = self._book
        units = {"LOWER": {"IN": sorted(book.duration_units)}}
        filler: dict[str, Any] = {"LOWER": {"IN": sorted(book.duration_fillers)}, "OP": "?"}
        numbers: list[list[dict[str, Any]]] = [[{"LIKE_NUM": True}]]
        numbers += [[{"LOWER": w} for w in words.split()] for words in book.duration_numbers]
        return [[*num, filler, filler, units] for num in numbers]

    def _resolve(self, spans: list[Span], cues: list[rules.Cue]) -> list[Span]:
        """Keep the longest match per label, drop false friends and matches refined by a longer criterion."""
        excluded = [(c.start, c.end) for c in cues if c.kind == "exclusions"]
        kept: list[Span] = []
        for span in sorted(spans, key=lambda s: (-(s.end - s.start), s.start)):
            if any(span.start < e and b < span.end for b, e in excluded):
                continue
            if any(k.label_ == span.label_ and k.start < span.end and span.start < k.end for k in kept):
                continue
            kept.append(span)
        refiners = {cid: c.refines for cid, c in self._book.criteria.items() if c.refines}
        kept = [
            s
            for s in kept
            if not any(s.label_ in refiners.get(k.label_, ()) and k.start <= s.start and s.end <= k.end for k in kept)
        ]
        return sorted(kept, key=lambda s: (s.start, s.end))


def _shard_and_skip_revalidation(component: object, attribute: str) -> ShardedMatcher | None:
    """Two start-up costs of spaCy's Matcher removed, and most of its per-reply cost (see `matcher.py`).

    - Every `Matcher.add` rebuilds a dict of all the predicates added so far (spaCy 3.7 `_get_extra_predicates`),
      so adding n patterns costs n²: with English and Spanish phrasings (~10,000 patterns) that was 10 of 15 s.
      The patterns are spread over matchers of bounded size; matching is unchanged.
    - Our compiler emits only well-formed token patterns (a test validates every one of them), so spaCy's
      per-pattern schema check is switched off.
    If medspaCy renames its internals this silently keeps one (slower) matcher."""
    medspacy_matcher = getattr(component, attribute, None)
    spacy_matcher = getattr(medspacy_matcher, "_MedspacyMatcher__matcher", None)
    if spacy_matcher is None or not hasattr(spacy_matcher, "validate"):
        return None
    sharded = ShardedMatcher(spacy_matcher.vocab)
    medspacy_matcher._MedspacyMatcher__matcher = sharded  # type: ignore[union-attr]
    return sharded


def _mention(span: Span) -> rules.Mention:
    meta = span._.target_rule.metadata
    cats = frozenset(m.category for m in span._.modifiers)
    if meta["label"] != span.label_:  # another label matched the very same text: extensions are shared
        meta = {"kind": "pattern", "index": 0}
    return rules.Mention(span.label_, meta["kind"], meta["index"], span.start, span.end, cats)


WINDOW_CHARS = 1500
MAX_TOKENS = 6000  # per reply: bounds the detector's time on one reply (issue 11, finding 7); about 25,000 characters


def windows(text: str, size: int) -> list[tuple[int, str]]:
    """(offset, chunk) pieces of `text` of at most `size` characters, cut after a sentence end or line break
    (else a space) when one falls in the second half of the window."""
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(text):
        end = min(len(text), i + size)
        if end < len(text):
            cut = max(text.rfind(mark, i, end) for mark in (". ", "! ", "? ", "\n"))
            if cut <= i + size // 2:
                cut = text.rfind(" ", i, end)  # no sentence end: at least never cut a word
            if cut > i + size // 2:
                end = cut + 1
        out.append((i, text[i:end]))
        i = end
    return out
