"""A small phrase language a clinician can read, compiled to spaCy Matcher token patterns.

weak            the word, after normalisation ("can't" is written and matched as "can not")
swallow*        any word that starts with it (swallow, swallowing, swallowed)
(a|b c)         one of the alternatives; an alternative may be several words
[my]            optional; [a|b] is an optional choice
...             up to a few other words, within one sentence and not across "but", "," or the like
@name           any entry of the word set [words.name]
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

_LEX = re.compile(r"\.\.\.|[()\[\]|]|[^\s()\[\]|]+")
_MAX_VARIANTS = 1500
_BRACKET_QUESTION = re.compile(r"[\])]\?")


class PatternError(ValueError):
    """A phrase cannot be compiled; the message says what is wrong."""


@dataclass(frozen=True)
class _Tok:
    exact: frozenset[str] = frozenset()
    prefixes: frozenset[str] = frozenset()
    optional: bool = False
    gap: bool = False


_Variant = tuple[_Tok, ...]


class PhraseCompiler:
    """Compile phrases to lists of spaCy token patterns (one phrase may need several)."""

    def __init__(
        self, words: Callable[[str], tuple[str, ...]], sets: dict[str, list[str]], gap: int, gap_stops: Iterable[str]
    ) -> None:
        self._words = words
        self._sets = sets
        self._gap = gap
        self._gap_stops = sorted(set(gap_stops))
        self._set_cache: dict[str, list[_Variant]] = {}
        self._resolving: set[str] = set()

    def compile(self, phrase: str) -> list[list[dict[str, Any]]]:
        """Token patterns for one phrase; raises PatternError with a plain explanation."""
        variants = self._variants(phrase)
        patterns = []
        for variant in variants:
            if not any(not t.optional and not t.gap for t in variant):
                raise PatternError("the phrase can match nothing (every word is optional)")
            if variant[0].gap or variant[-1].gap:
                raise PatternError("'...' must stand between two words")
            patterns.append([self._to_dict(t) for t in variant])
        return patterns

    def _variants(self, phrase: str) -> list[_Variant]:
        if _BRACKET_QUESTION.search(phrase):
            raise PatternError("write [words] for optional words, not (words)? or [words]?")
        tokens = _LEX.findall(phrase)
        if not tokens:
            raise PatternError("the phrase is empty")
        variants, pos = self._sequence(tokens, 0)
        if pos != len(tokens):
            raise PatternError(f"unexpected '{tokens[pos]}'")
        return variants

    def _sequence(self, tokens: list[str], pos: int) -> tuple[list[_Variant], int]:
        parts: list[list[_Variant]] = []
        while pos < len(tokens) and tokens[pos] not in (")", "]", "|"):
            part, pos = self._item(tokens, pos)
            parts.append(part)
        variants = [tuple(itertools.chain.from_iterable(combo)) for combo in itertools.product(*parts)]
        if len(variants) > _MAX_VARIANTS:
            raise PatternError(f"the phrase expands to {len(variants)} variants; split it into simpler phrases")
        return variants, pos

    def _item(self, tokens: list[str], pos: int) -> tuple[list[_Variant], int]:
        tok = tokens[pos]
        if tok in ("(", "["):
            close = ")" if tok == "(" else "]"
            options: list[_Variant] = []
            pos += 1
            while True:
                seq, pos = self._sequence(tokens, pos)
                if not seq or seq == [()]:
                    raise PatternError(f"empty alternative inside '{tok}{close}'")
                options.extend(seq)
                if pos >= len(tokens):
                    raise PatternError(f"'{tok}' is never closed")
                if tokens[pos] == "|":
                    pos += 1
                    continue
                if tokens[pos] != close:
                    raise PatternError(f"'{tok}' closed by '{tokens[pos]}'")
                pos += 1
                break
            return (_merge(options, optional=True) if tok == "[" else _merge(options)), pos
        if tok == "...":
            return [(_Tok(gap=True),)], pos + 1
        if tok.startswith("@"):
            return self._set(tok[1:]), pos + 1
        if tok.endswith("*"):
            stem = tok.rstrip("*").lower()
            if not stem or "*" in stem:
                raise PatternError(f"'{tok}': '*' goes at the end of a word")
            return [(_Tok(prefixes=frozenset({stem})),)], pos + 1
        words = self._words(tok)
        return [tuple(_Tok(exact=frozenset({w})) for w in words)], pos + 1

    def _set(self, name: str) -> list[_Variant]:
        if name in self._set_cache:
            return self._set_cache[name]
        if name not in self._sets:
            raise PatternError(f"unknown word set '@{name}' (define it under [words])")
        if name in self._resolving:
            raise PatternError(f"word set '@{name}' refers to itself")
        self._resolving.add(name)
        try:
            options = [v for entry in self._sets[name] for v in self._variants(entry)]
        finally:
            self._resolving.discard(name)
        merged = _merge(options)
        self._set_cache[name] = merged
        return merged

    def _to_dict(self, tok: _Tok) -> dict[str, Any]:
        if tok.gap:
            # every sentence ends in a stop token (the normaliser adds "." where the patient wrote none)
            return {"LOWER": {"NOT_IN": self._gap_stops}, "OP": f"{{0,{self._gap}}}"}
        spec: dict[str, Any]
        if tok.prefixes:
            alts = [re.escape(w) + "$" for w in sorted(tok.exact)] + [re.escape(p) for p in sorted(tok.prefixes)]
            spec = {"LOWER": {"REGEX": "^(?:" + "|".join(alts) + ")"}}
        elif len(tok.exact) == 1:
            spec = {"LOWER": next(iter(tok.exact))}
        else:
            spec = {"LOWER": {"IN": sorted(tok.exact)}}
        if tok.optional:
            spec["OP"] = "?"
        return spec


def _merge(options: list[_Variant], optional: bool = False) -> list[_Variant]:
    """Alternatives of single words become one token; longer ones stay separate variants."""
    simple = [v[0] for v in options if len(v) == 1 and not v[0].gap and not v[0].optional]
    complex_ = [v for v in options if not (len(v) == 1 and not v[0].gap and not v[0].optional)]
    merged: list[_Variant] = []
    if simple:
        exact = frozenset().union(*(t.exact for t in simple))
        prefixes = frozenset().union(*(t.prefixes for t in simple))
        merged.append((_Tok(exact, prefixes, optional=optional and not complex_),))
    merged.extend(_factor(list(dict.fromkeys(complex_))))
    if optional and complex_:
        merged.append(())
    return merged


def _factor(variants: list[_Variant]) -> list[_Variant]:
    """Merge variants that differ in one plain word: (get up), (stand up) -> ({get, stand} up). Exact."""
    changed = True
    while changed and len(variants) > 1:
        changed = False
        for pos in range(max(len(v) for v in variants)):
            groups: dict[tuple[object, ...], list[_Variant]] = {}
            rest: list[_Variant] = []
            for v in variants:
                if pos < len(v) and not v[pos].gap and not v[pos].optional:
                    groups.setdefault((len(v), v[:pos], v[pos + 1 :]), []).append(v)
                else:
                    rest.append(v)
            merged = []
            for members in groups.values():
                if len(members) > 1:
                    changed = True
                    tok = _Tok(
                        frozenset().union(*(m[pos].exact for m in members)),
                        frozenset().union(*(m[pos].prefixes for m in members)),
                    )
                    merged.append((*members[0][:pos], tok, *members[0][pos + 1 :]))
                else:
                    merged.extend(members)
            variants = rest + merged
    return variants
