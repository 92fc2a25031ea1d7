"""The slice of spaCy's `Matcher` that medspaCy uses (`add`, call), split so that a reply only meets the patterns
that can start on one of its words.

spaCy's Matcher starts every pattern on every token: with ~9,000 phrasings (English and Spanish) that was ~90% of
the rule layer's time, though a reply of 30 words can start only a few hundred of them. So:

- Patterns are kept in shards of `SHARD` in the order they were added (a bounded `Matcher.add` cost at start: spaCy
  3.7 rebuilds a dict of all predicates added so far on every `add`, n² in the matcher's size).
- Each shard is split into groups: patterns whose first tokens could match the same word (an exact word, an `IN`
  list, a `^(?:word$|prefix)` regex from patterns.py) share a group, and each group is one `Matcher`, patterns in
  their order. A pattern whose first token is anything else (optional, another attribute, a regex of another
  shape) puts its whole shard in one group that always runs.
- A call runs only the groups with a first word among the reply's words.

The result is the list one matcher per shard gave, in the same order: matches are sorted by (start, end), ties
kept in shard order. Two matches can only tie if their patterns start on the same word, so they are in the same
group of a shard, and one Matcher's order between two patterns does not depend on the other patterns in it (states
are filtered in place, branches appended after, new ones appended in pattern order).
tests/test_redflag_matcher.py checks this against one Matcher per shard.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from spacy.matcher import Matcher
from spacy.tokens import Doc

SHARD = 250
_ALTERNATIVES = re.compile(r"^\^\(\?:(.*)\)$", re.DOTALL)
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)

Pattern = list[dict[str, Any]]


@dataclass(frozen=True)
class FirstWord:
    """What a pattern's first token matches: exact words and word prefixes (None: can't tell, could be anything)."""

    words: frozenset[str]
    prefixes: frozenset[str]


def first_word(pattern: Pattern) -> FirstWord | None:
    """The words the first token of `pattern` can match, when it is one of the shapes patterns.py writes."""
    if not pattern:
        return None
    tok = pattern[0]
    if set(tok) != {"LOWER"}:
        return None  # optional (OP), another attribute, several attributes
    value = tok["LOWER"]
    if isinstance(value, str):
        return FirstWord(frozenset({value}), frozenset())
    if not isinstance(value, dict) or len(value) != 1:
        return None
    if "IN" in value and isinstance(value["IN"], list) and all(isinstance(w, str) for w in value["IN"]):
        return FirstWord(frozenset(value["IN"]), frozenset())
    if "REGEX" in value and isinstance(value["REGEX"], str):
        return _regex_words(value["REGEX"])
    return None


def _regex_words(regex: str) -> FirstWord | None:
    """`^(?:a$|b$|pre)` back to its words and prefixes; None unless rebuilding it gives the very same regex."""
    m = _ALTERNATIVES.match(regex)
    if m is None:
        return None
    words, prefixes = [], []
    for alt in m.group(1).split("|"):
        if alt.endswith("$") and not alt.endswith("\\$"):
            words.append(_UNESCAPE.sub(r"\1", alt[:-1]))
        else:
            prefixes.append(_UNESCAPE.sub(r"\1", alt))
    rebuilt = [re.escape(w) + "$" for w in words] + [re.escape(p) for p in prefixes]
    if "^(?:" + "|".join(rebuilt) + ")" != regex or not all(words + prefixes):
        return None
    return FirstWord(frozenset(words), frozenset(prefixes))


def _overlap(a: FirstWord, b: FirstWord) -> bool:
    """Could one word match both first tokens?"""
    if a.words & b.words:
        return True
    if any(w.startswith(p) for w in a.words for p in b.prefixes):
        return True
    if any(w.startswith(p) for w in b.words for p in a.prefixes):
        return True
    return any(p.startswith(q) or q.startswith(p) for p in a.prefixes for q in b.prefixes)


@dataclass
class _Group:
    matcher: Matcher
    always: bool = False
    words: set[str] = field(default_factory=set)
    prefixes: set[str] = field(default_factory=set)


class ShardedMatcher:
    """`add` then call, like spaCy's Matcher; built into its groups on the first call (or `build()`)."""

    def __init__(self, vocab: Any) -> None:
        self.vocab = vocab
        self._shards: list[list[tuple[str, list[Pattern], Any]]] = []
        self._count = 0
        self._groups: list[_Group] | None = None
        self._by_word: dict[str, list[int]] = {}
        self._by_prefix: dict[str, list[int]] = {}
        self._always: list[int] = []
        self._longest_prefix = 0

    def add(self, key: str, patterns: list[Pattern], on_match: Any = None) -> None:
        if self._count % SHARD == 0:
            self._shards.append([])
        self._shards[-1].append((key, patterns, on_match))
        self._count += 1
        self._groups = None

    def __len__(self) -> int:
        return self._count

    def build(self) -> None:
        """Split each shard into groups and build their matchers (at start, not on a patient's reply)."""
        groups: list[_Group] = []
        for shard in self._shards:
            groups += self._split(shard)
        self._by_word, self._by_prefix, self._always = {}, {}, []
        for i, g in enumerate(groups):
            if g.always:
                self._always.append(i)
            for w in g.words:
                self._by_word.setdefault(w, []).append(i)
            for p in g.prefixes:
                self._by_prefix.setdefault(p, []).append(i)
        self._longest_prefix = max(map(len, self._by_prefix), default=0)
        self._groups = groups

    def _split(self, shard: list[tuple[str, list[Pattern], Any]]) -> list[_Group]:
        firsts: list[FirstWord | None] = []
        for _key, patterns, _on_match in shard:
            found = [first_word(p) for p in patterns]
            if any(f is None for f in found):
                firsts.append(None)
            else:
                firsts.append(
                    FirstWord(
                        frozenset().union(*(f.words for f in found if f)),
                        frozenset().union(*(f.prefixes for f in found if f)),
                    )
                )
        if any(f is None for f in firsts):
            return [self._group(shard, None)]
        parent = list(range(len(shard)))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        owner: dict[str, int] = {}
        for i, f in enumerate(firsts):
            assert f is not None
            for w in f.words:
                if w in owner:
                    parent[root(i)] = root(owner[w])
                else:
                    owner[w] = i
        with_prefixes = [i for i, f in enumerate(firsts) if f is not None and f.prefixes]
        for i in with_prefixes:
            for j in range(len(shard)):
                fi, fj = firsts[i], firsts[j]
                if i != j and fi is not None and fj is not None and root(i) != root(j) and _overlap(fi, fj):
                    parent[root(i)] = root(j)
        members: dict[int, list[int]] = {}
        for i in range(len(shard)):
            members.setdefault(root(i), []).append(i)
        out = []
        for rows in sorted(members.values(), key=lambda r: r[0]):
            first = [firsts[i] for i in rows]
            out.append(self._group([shard[i] for i in rows], [f for f in first if f is not None]))
        return out

    def _group(self, rules: list[tuple[str, list[Pattern], Any]], firsts: Iterable[FirstWord] | None) -> _Group:
        matcher = Matcher(self.vocab, validate=False)
        for key, patterns, on_match in rules:
            matcher.add(key, patterns, on_match=on_match)
        if firsts is None:
            return _Group(matcher, always=True)
        group = _Group(matcher)
        for f in firsts:
            group.words |= f.words
            group.prefixes |= f.prefixes
        return group

    def __call__(self, doc: Doc) -> list[tuple[int, int, int]]:
        if self._groups is None:
            self.build()
        assert self._groups is not None
        live = live_groups(doc, self._always, self._by_word, self._by_prefix, self._longest_prefix)
        matches: list[tuple[int, int, int]] = []
        for i in sorted(live):
            matches += self._groups[i].matcher(doc)
        matches.sort(key=lambda m: (m[1], m[2]))  # by start, then end; ties in shard order (see the docstring)
        return matches


class CueMatcher:
    """The message-level cue lists (proxy, question anchors, improving, exclusions, durations) as groups of
    patterns that can start on the same word, like `ShardedMatcher` but pattern by pattern: a cue list is one key
    with hundreds of patterns, and a single Matcher started all ~670 on every token of every reply.

    Its result is the set of (key, start, end) one Matcher gave (spaCy keeps one match per key and span), sorted by
    (start, end), ties in the order the keys were added. Every reader of the cues uses them as a set, except
    `rules._persisting`, which sorts them by (start, end) and so keeps the order of ties: that order is now fixed.
    A pattern whose first token could be anything (a number, an optional word) goes to one group that always runs.
    """

    def __init__(self, vocab: Any) -> None:
        self.vocab = vocab
        self._keys: dict[str, int] = {}
        self._patterns: list[tuple[str, Pattern]] = []
        self._groups: list[Matcher] | None = None
        self._rank: dict[int, int] = {}
        self._by_word: dict[str, list[int]] = {}
        self._by_prefix: dict[str, list[int]] = {}
        self._always: list[int] = []
        self._longest_prefix = 0

    def add(self, key: str, patterns: list[Pattern]) -> None:
        self._keys.setdefault(key, len(self._keys))
        self._patterns += [(key, p) for p in patterns]
        self._groups = None

    def __len__(self) -> int:
        return len(self._patterns)

    def build(self) -> None:
        """Group the patterns and build one Matcher per group (at start, not on a patient's reply)."""
        firsts = [first_word(p) for _key, p in self._patterns]
        known = {i: f for i, f in enumerate(firsts) if f is not None}
        members: dict[FirstWord, list[int]] = {}
        for i, f in known.items():
            members.setdefault(f, []).append(i)
        always = [i for i, f in enumerate(firsts) if f is None]
        groups: list[Matcher] = []
        self._by_word, self._by_prefix, self._always = {}, {}, []
        for n, rows in enumerate(sorted(members.values(), key=lambda r: r[0])):
            groups.append(self._matcher(rows))
            for i in rows:
                for w in known[i].words:
                    self._by_word.setdefault(w, []).append(n)
                for p in known[i].prefixes:
                    self._by_prefix.setdefault(p, []).append(n)
        if always:
            self._always.append(len(groups))
            groups.append(self._matcher(always))
        self._longest_prefix = max(map(len, self._by_prefix), default=0)
        self._rank = {self.vocab.strings.add(key): rank for key, rank in self._keys.items()}
        self._groups = groups

    def _matcher(self, rows: list[int]) -> Matcher:
        """One Matcher for these patterns: one `add` per key (in key order), its patterns in their order."""
        by_key: dict[str, list[Pattern]] = {}
        for i in rows:
            key, pattern = self._patterns[i]
            by_key.setdefault(key, []).append(pattern)
        matcher = Matcher(self.vocab, validate=False)
        for key in sorted(by_key, key=self._keys.__getitem__):
            matcher.add(key, by_key[key])
        return matcher

    def __call__(self, doc: Doc) -> list[tuple[int, int, int]]:
        if self._groups is None:
            self.build()
        assert self._groups is not None
        live = live_groups(doc, self._always, self._by_word, self._by_prefix, self._longest_prefix)
        found: set[tuple[int, int, int]] = set()
        for i in live:
            found.update(self._groups[i](doc))
        rank = self._rank
        return sorted(found, key=lambda m: (m[1], m[2], rank[m[0]]))


def live_groups(
    doc: Doc,
    always: Iterable[int],
    by_word: Mapping[str, Iterable[int]],
    by_prefix: Mapping[str, Iterable[int]],
    longest: int,
) -> set[int]:
    """The groups a reply can match: those that always run, and those whose first word (or a prefix of it) it has."""
    live = set(always)
    for word in {t.lower_ for t in doc}:
        live.update(by_word.get(word, ()))
        for k in range(1, min(len(word), longest) + 1):
            live.update(by_prefix.get(word[:k], ()))
    return live
