"""The grouped matcher gives the matches one spaCy Matcher per shard gave, in the same order (matcher.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import spacy
from spacy.matcher import Matcher
from spacy.tokens import Doc

from followup.redflags.load import load_rulebook
from followup.redflags.matcher import SHARD, CueMatcher, FirstWord, ShardedMatcher, first_word
from followup.redflags.rulebook import RuleBook

ROOT = Path(__file__).resolve().parent.parent
Pattern = list[dict[str, Any]]


class OneMatcherPerShard:
    """The matcher the detector used before: one spaCy Matcher per SHARD patterns, every one run on every reply."""

    def __init__(self, vocab: Any) -> None:
        self._shards: list[Matcher] = []
        self._count = 0
        self.vocab = vocab

    def add(self, key: str, patterns: list[Pattern]) -> None:
        if self._count % SHARD == 0:
            self._shards.append(Matcher(self.vocab, validate=False))
        self._shards[-1].add(key, patterns)
        self._count += 1

    def __call__(self, doc: Doc) -> list[tuple[int, int, int]]:
        matches: list[tuple[int, int, int]] = []
        for shard in self._shards:
            matches += shard(doc)
        matches.sort(key=lambda m: (m[1], m[2]))
        return matches


@pytest.fixture(scope="module")
def book() -> RuleBook:
    return load_rulebook(ROOT / "clinic/red_flags.toml")


def _doc(book: RuleBook, vocab: Any, text: str) -> Doc:
    tokens = book.normaliser.tokens(text)
    return Doc(vocab, words=[t.text for t in tokens], sent_starts=[t.sent_start for t in tokens])


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ([{"LOWER": "weak"}], FirstWord(frozenset({"weak"}), frozenset())),
        ([{"LOWER": {"IN": ["arm", "leg"]}}, {"LOWER": "x"}], FirstWord(frozenset({"arm", "leg"}), frozenset())),
        ([{"LOWER": {"REGEX": "^(?:choke$|swallow)"}}], FirstWord(frozenset({"choke"}), frozenset({"swallow"}))),
        ([{"LOWER": {"REGEX": r"^(?:a\.b$|c\-)"}}], FirstWord(frozenset({"a.b"}), frozenset({"c-"}))),
        ([{"LOWER": "weak", "OP": "?"}], None),
        ([{"LIKE_NUM": True}], None),
        ([{"LOWER": {"REGEX": "^swallow.*ing$"}}], None),
        ([{"LOWER": {"REGEX": "^(?:a|b)c"}}], None),
        ([{"LOWER": {"NOT_IN": ["but"]}}], None),
        ([], None),
    ],
)
def test_first_word_reads_only_the_shapes_it_knows(pattern: Pattern, expected: FirstWord | None) -> None:
    """Exact words, IN lists and patterns.py's `^(?:word$|prefix)` regexes are read; anything else is "could be any"."""
    assert first_word(pattern) == expected


def test_ties_keep_the_order_of_one_matcher() -> None:
    """Matches over the same tokens come in the order one Matcher gives, including when a pattern with a gap
    branches (its match then comes after a later pattern's), and patterns that cannot start together are split."""
    vocab = spacy.blank("en").vocab
    gap = {"LOWER": {"NOT_IN": ["."]}, "OP": "{0,3}"}
    patterns: list[Pattern] = [
        [{"LOWER": "x"}, gap, {"LOWER": "y"}],
        [{"LOWER": "q"}, {"LOWER": "y"}],
        [{"LOWER": "x"}, {"LOWER": "z"}, {"LOWER": "y"}],
        [{"LOWER": {"REGEX": "^(?:x)"}}, {"LOWER": "z", "OP": "?"}, {"LOWER": "y"}],
        [{"LOWER": {"IN": ["q", "z"]}}, {"LOWER": "y"}],
        [{"LOWER": "z"}, {"LOWER": "y"}],
    ]
    one, grouped = Matcher(vocab, validate=False), ShardedMatcher(vocab)
    for i, p in enumerate(patterns):
        one.add(f"p{i}", [p])
        grouped.add(f"p{i}", [p])
    grouped.build()
    for words in (["x", "z", "y"], ["q", "x", "z", "y", "z", "y"], ["x", "y"], ["q", "y", "."], ["a", "b"]):
        doc = Doc(vocab, words=words)
        expected = sorted(one(doc), key=lambda m: (m[1], m[2]))
        assert grouped(doc) == expected
    doc = Doc(vocab, words=["x", "z", "y"])
    tied = [vocab.strings[k] for k, s, e in grouped(doc) if (s, e) == (0, 3)]
    assert tied == ["p2", "p0", "p3"]  # not the patterns' order: p0's match came from a branch


def test_clinic_patterns_match_as_one_matcher_per_shard(book: RuleBook) -> None:
    """Every phrase of clinic/red_flags.toml, added in one grouped matcher and in one Matcher per shard, gives the
    same matches in the same order on the labelled replies of tests/redflag_cases*.toml."""
    vocab = spacy.blank("en").vocab
    one, grouped = OneMatcherPerShard(vocab), ShardedMatcher(vocab)
    n = 0
    for patterns in book.compiled.values():
        for p in patterns:
            one.add(f"r{n}", [p])
            grouped.add(f"r{n}", [p])
            n += 1
    grouped.build()
    texts = [
        case["text"]
        for path in sorted(ROOT.glob("tests/redflag_cases*.toml"))
        for case in tomllib.loads(path.read_text(encoding="utf-8"))["case"]
    ]
    matched = 0
    for text in texts[::3]:
        doc = _doc(book, vocab, text)
        expected = one(doc)
        assert grouped(doc) == expected, text
        matched += bool(expected)
    assert matched > 100


@pytest.mark.parametrize(
    "words",
    [["my", "wife", "says", "8", "weeks"], ["a", "few", "weeks", "."], ["nothing", "x"], [], ["8", "8", "weeks"]],
)
def test_cue_matcher_finds_what_one_matcher_finds_sorted(words: list[str]) -> None:
    """The cue matcher gives one Matcher's matches, once each, by (start, end), ties in the keys' order, including
    a pattern that starts on any number (its group always runs) and keys sharing a span."""
    vocab = spacy.blank("en").vocab
    cues: dict[str, list[Pattern]] = {
        "proxy": [[{"LOWER": {"IN": ["wife", "son"]}}, {"LOWER": "says"}], [{"LOWER": "my"}, {"LOWER": "wife"}]],
        "improving": [[{"LOWER": {"REGEX": "^(?:noth)"}}], [{"LOWER": "few"}, {"LOWER": "weeks"}]],
        "duration": [[{"LIKE_NUM": True}, {"LOWER": "weeks"}], [{"LOWER": "a"}, {"LOWER": "few"}, {"LOWER": "weeks"}]],
        "open_duration": [[{"LOWER": "few"}, {"LOWER": "weeks"}], [{"LOWER": "a", "OP": "?"}, {"LOWER": "few"}]],
    }
    one, grouped = Matcher(vocab, validate=False), CueMatcher(vocab)
    for key, patterns in cues.items():
        one.add(key, patterns)
        grouped.add(key, patterns)
    grouped.build()
    rank = {vocab.strings[k]: i for i, k in enumerate(cues)}
    doc = Doc(vocab, words=words)
    expected = sorted(set(one(doc)), key=lambda m: (m[1], m[2], rank[m[0]]))
    assert grouped(doc) == expected
    assert len(grouped) == 8


def test_clinic_cues_match_as_one_matcher(book: RuleBook) -> None:
    """The clinic's cue lists and durations, as the detector builds them, give one Matcher's matches on the labelled
    replies of tests/redflag_cases*.toml (no two cues there share a span, so the order is one Matcher's sorted)."""
    from followup.redflags.detector import Detector

    detector = Detector(book)
    cues: CueMatcher = detector._cues
    one = Matcher(detector._vocab, validate=False)
    for key in cues._keys:
        one.add(key, [p for k, p in cues._patterns if k == key])
    texts = [
        case["text"]
        for path in sorted(ROOT.glob("tests/redflag_cases*.toml"))
        for case in tomllib.loads(path.read_text(encoding="utf-8"))["case"]
    ]
    matched = 0
    for text in texts:
        doc = _doc(book, detector._vocab, text)
        expected = sorted(one(doc), key=lambda m: (m[1], m[2]))
        assert cues(doc) == expected, text
        matched += bool(expected)
    assert matched > 100
