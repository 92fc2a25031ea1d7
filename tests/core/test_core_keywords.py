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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("STOP", "stop"),
        ("  Stop.  ", "stop"),
        ("Opt-Out!!", "opt out"),
        ("ＳＴＯＰ", "stop"),
        ("Sí", "sí"),
        ("stop 🙏", "stop"),
        ("stop\tnow\n", "stop now"),
        ("It's", "its"),
        ("", ""),
    ],
    ids=["upper", "spaces-dot", "hyphen", "fullwidth", "accent-kept", "emoji", "tab-newline", "apostrophe", "empty"],
)
def test_normalise(text: str, expected: str) -> None:
    """`normalise` lower-cases (NFKC), keeps accents, drops punctuation and emoji, and folds spaces."""
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("STOP", "opt_out"),
        ("stop", "opt_out"),
        ("Stop.", "opt_out"),
        ("Stop. Thank you", "opt_out"),
        ("STOP please", "opt_out"),
        ("please stop now", "opt_out"),
        ("opt out", "opt_out"),
        ("OPT-OUT", "opt_out"),
        ("Unsubscribe", "opt_out"),
        ("baja por favor", "opt_out"),
        ("START", "opt_in"),
        ("Sí", "opt_in"),
        ("yes", "opt_in"),
        ("HELP", "help"),
        ("ayuda gracias", "help"),
        ("info", "help"),
        ("STOP worrying, I'm choking", None),
        ("stop stop", None),
        ("please", None),
        ("stopping", None),
        ("", None),
    ],
)
def test_shipped_keywords_are_recognised_only_as_the_whole_message(shipped: Keywords, text: str, intent: str) -> None:
    """A shipped keyword is recognised when it is the whole message, politeness words aside, and only then."""
    assert shipped.keyword(text) == intent


def test_every_shipped_keyword_is_recognised(shipped: Keywords) -> None:
    """Each word in clinic/keywords.toml, typed in capitals with a full stop, gives its own intent."""
    assert len(shipped.words) == 24
    for word, intent in shipped.words.items():
        assert shipped.keyword(f"{word.upper()}.") == intent, word


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("stop thank you", "opt_out"),
        ("thank you stop", "opt_out"),
        ("stop you", "opt_out"),
        ("stop thank", None),
        ("stopthank you", None),
    ],
)
def test_longer_politeness_words_go_first(text: str, intent: str | None) -> None:
    """Politeness words are removed longest first, so "thank you" goes whole before "you" could split it."""
    kw = Keywords({"stop": "opt_out"}, ("you", "thank you"), ())
    assert kw.keyword(text) == intent


def test_politeness_is_removed_whole_words_only() -> None:
    """A politeness word inside another word ("ty" in "pretty") is left alone."""
    kw = Keywords({"pretty": "help", "stop": "opt_out"}, ("ty",), ())
    assert (kw.keyword("pretty"), kw.keyword("ty stop ty"), kw.keyword("ty")) == ("help", "opt_out", None)


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("Please STOP texting me, I'm fine", "please stop texting me"),
        ("ok   stop\nmessaging   me thanks", "stop messaging me"),
        ("No more texts please", "no more texts"),
        ("Can you remove me from this list", "remove me from"),
        ("no quiero recibir más mensajes", "no quiero recibir más mensajes"),
        ("I stopped texting my ex", None),
        ("Stop", None),
        ("", None),
    ],
)
def test_shipped_opt_out_phrases(shipped: Keywords, text: str, phrase: str | None) -> None:
    """A shipped opt-out phrase is found anywhere in a reply (lower-cased, spaces folded) and returned whole."""
    assert shipped.opt_out_phrase(text) == phrase


def test_the_first_matching_phrase_wins(tmp_path: Path) -> None:
    """Phrases are tried in file order and the first that matches is returned."""
    path = keywords_file(tmp_path, '[opt_out_phrases]\npatterns = ["no (more)", "no more texts"]\n')
    assert load_keywords(path).opt_out_phrase("NO MORE TEXTS") == "no more"


def test_a_keywords_file_loads_words_politeness_and_phrases(tmp_path: Path) -> None:
    """Every list of the file is read: keywords normalised under their intent, politeness words, phrases."""
    path = keywords_file(
        tmp_path,
        '[keywords]\nopt_out = ["Opt-Out", "STOP"]\nopt_in = ["Sí"]\nhelp = ["Help!"]\n'
        '[politeness]\nwords = ["Thank-You", "PLS"]\n'
        '[opt_out_phrases]\npatterns = ["leave me alone"]\n',
    )
    kw = load_keywords(path)
    assert kw.words == {"opt out": "opt_out", "stop": "opt_out", "sí": "opt_in", "help": "help"}
    assert kw.politeness == ("thank you", "pls")
    assert [p.pattern for p in kw.phrases] == ["leave me alone"]


def test_an_empty_keywords_file_recognises_nothing(tmp_path: Path) -> None:
    """A file without tables loads with no keyword, no politeness word and no phrase."""
    kw = load_keywords(keywords_file(tmp_path, ""))
    assert (kw.words, kw.politeness, kw.phrases) == ({}, (), ())
    assert (kw.keyword("stop"), kw.opt_out_phrase("stop texting me")) == (None, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[keywords]\nopt_out = ["stop"]\nopt_in = ["STOP!"]\n', "keyword 'STOP!' is listed twice"),
        ('[keywords]\nhelp = ["help", "Help"]\n', "keyword 'Help' is listed twice"),
        ('[opt_out_phrases]\npatterns = ["(stop"]\n', "opt_out_phrases: missing \\), unterminated subpattern"),
    ],
    ids=["twice-across-intents", "twice-in-one-intent", "bad-regex"],
)
def test_a_wrong_keywords_file_is_refused_with_the_file_and_the_fault(tmp_path: Path, text: str, message: str) -> None:
    """A keyword listed twice (after normalising) or a phrase that is not a regex is a ValueError naming both."""
    path = keywords_file(tmp_path, text)
    with pytest.raises(ValueError) as info:
        load_keywords(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message.replace("\\", "") in str(info.value)
