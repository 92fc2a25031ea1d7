"""Opt-out, opt-in and help keywords (followup/core/keywords.py), with plain objects and small TOML files: what
`normalise` keeps, which whole messages are keywords, which longer ones hold an opt-out phrase, and the errors a
wrong keywords file gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from followup.core.keywords import Keywords, load_keywords, normalise

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shipped() -> Keywords:
    return load_keywords(ROOT / "clinic/keywords.toml")


def keywords_file(tmp_path: Path, text: str) -> Path:
    """A keywords TOML file holding `text`."""
    path = tmp_path / "keywords.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "text",
    ["don't", "DON'T", "don’t", "Donʼt", "‘dont’", "dont!"],
    ids=["ascii", "upper", "right-quote", "modifier-letter", "curly-quoted", "no-apostrophe"],
)
def test_a_keyword_with_an_apostrophe_matches_however_the_apostrophe_is_typed(tmp_path: Path, text: str) -> None:
    """A keyword written with an apostrophe matches the typed (’, ʼ, ‘) and the plain (') apostrophe, or none."""
    kw = load_keywords(keywords_file(tmp_path, '[keywords]\nopt_out = ["don\'t"]\n'))
    assert kw.keyword(text) == "opt_out"


def test_an_apostrophe_is_not_a_word_break(tmp_path: Path) -> None:
    """A space where the apostrophe was ("don t") makes two words, so it is not the keyword "don't"."""
    kw = load_keywords(keywords_file(tmp_path, '[keywords]\nopt_out = ["don\'t"]\n'))
    assert kw.keyword("don t") is None


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("Don't text me anymore", "don't text me anymore"),
        ("Don’t text me anymore", "don't text me anymore"),
        ("please DONʼT contact me", "don't contact me"),
    ],
    ids=["ascii", "right-quote", "modifier-letter"],
)
def test_an_opt_out_phrase_matches_a_typed_apostrophe(shipped: Keywords, text: str, phrase: str) -> None:
    """The shipped opt-out phrases match "Don’t text me" as phones with smart punctuation send it."""
    assert shipped.opt_out_phrase(text) == phrase


@pytest.mark.parametrize("text", ["don't", "don’t", "donʼt", "don‘t"], ids=["ascii", "right", "modifier", "left"])
def test_normalise_removes_every_apostrophe(text: str) -> None:
    """`normalise` removes an apostrophe however it is typed, so "don’t" and "don't" are both "dont"."""
    assert normalise(text) == "dont"


@pytest.mark.parametrize(
    "text",
    ["Stop please please", "STOP thanks, thanks!", "please please stop", "thank you stop thank you"],
    ids=["please-twice", "thanks-twice", "please-twice-first", "thank-you-around"],
)
def test_a_politeness_word_said_twice_still_leaves_the_keyword(shipped: Keywords, text: str) -> None:
    """A politeness word repeated next to itself is dropped each time: "Stop please please" opts out."""
    assert shipped.keyword(text) == "opt_out"
