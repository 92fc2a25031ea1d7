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
from followup.redflags.matcher import SHARD, FirstWord, ShardedMatcher, first_word
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
