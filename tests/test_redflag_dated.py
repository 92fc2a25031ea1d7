"""Named dates as the onset of twitching ("since Christmas", "desde el 3 de noviembre"), counted back from the
reply's date: a week in early December for Thanksgiving, most of a year for Christmas (followup/redflags/dated.py).
And, from the same session (blind set AA), numbered answers read item by item ("1 worse 2 no 3 ...") and a person
stiffening then shaking read as a seizure, each in this project's own words."""

from __future__ import annotations

import json
from datetime import date
from io import StringIO
from pathlib import Path

import pytest

from followup.cli.check import run_check
from followup.redflags import ReplyContext, Screen
from followup.redflags.dated import easter, nth_weekday, parse_spec, weeks_since
from followup.redflags.load import CriteriaError, load_rulebook

ROOT = Path(__file__).resolve().parent.parent
CRITERIA = ROOT / "clinic" / "red_flags.toml"
DEC_4 = date(2026, 12, 4)


@pytest.fixture(scope="module")
def screen() -> Screen:
    return Screen.from_file(CRITERIA)


@pytest.mark.parametrize(
    ("spec", "year", "expected"),
    [
        ("12-25", 2026, date(2026, 12, 25)),
        ("02-29", 2027, date(2027, 2, 28)),
        ("11:thu:4", 2026, date(2026, 11, 26)),
        ("11:thu:4", 2027, date(2027, 11, 25)),
        ("05:mon:-1", 2026, date(2026, 5, 25)),
        ("09:mon:1", 2026, date(2026, 9, 7)),
        ("easter", 2026, date(2026, 4, 5)),
        ("easter", 2027, date(2027, 3, 28)),
        ("easter-7", 2026, date(2026, 3, 29)),
    ],
)
def test_spec_resolves_to_the_day(spec: str, year: int, expected: date) -> None:
    """Each kind of spec names the right day in a given year (fixed, Nth weekday, last weekday, Easter)."""
    assert parse_spec(spec)(year) == expected


@pytest.mark.parametrize("spec", ["13-01", "12-32", "11:xyz:4", "11:thu:6", "christmas", "easter*2", ""])
def test_bad_spec_is_refused(spec: str) -> None:
    """A spec that names no day is refused, with the spec in the message."""
    with pytest.raises(ValueError, match=r"expected|not a day"):
        parse_spec(spec)


def test_bad_spec_in_the_criteria_file_names_the_key(tmp_path: Path) -> None:
    """A bad named date in the criteria file is a CriteriaError naming the table and the name."""
    text = CRITERIA.read_text(encoding="utf-8").replace('thanksgiving = "11:thu:4"', 'thanksgiving = "11-31"', 1)
    bad = tmp_path / "red_flags.toml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(CriteriaError, match=r"named_dates.*thanksgiving.*not a day"):
        load_rulebook(bad)


def test_nth_weekday_and_easter_agree_with_known_dates() -> None:
    """Thanksgiving and Easter over a decade match the published dates."""
    thanksgivings = [nth_weekday(y, 11, 3, 4).day for y in range(2020, 2030)]
    assert thanksgivings == [26, 25, 24, 23, 28, 27, 26, 25, 23, 22]
    easters = [easter(y) for y in (2024, 2025, 2026, 2030)]
    assert easters == [date(2024, 3, 31), date(2025, 4, 20), date(2026, 4, 5), date(2030, 4, 21)]


@pytest.mark.parametrize(
    ("words", "today", "weeks"),
    [
        ("since christmas", DEC_4, 49.1),  # last year's: this year's is still to come
        ("since christmas", date(2027, 1, 3), 1.3),
        ("since thanksgiving", DEC_4, 1.1),
        ("since october", DEC_4, 9.1),
        ("since mid october", DEC_4, 7.1),
        ("since late november", DEC_4, 1.4),
        ("since december", DEC_4, 0.4),
        ("since nov 3rd", DEC_4, 4.4),
        ("desde el 3 de noviembre", DEC_4, 4.4),
        ("desde el dia de muertos", DEC_4, 4.6),
    ],
)
def test_weeks_since_a_named_date(words: str, today: date, weeks: float) -> None:
    """The weeks between the date named and the reply's date, the latest such date not after the reply."""
    book = load_rulebook(CRITERIA)
    assert round(weeks_since(words.split(), book.named_dates, book.day_words, today) or 0, 1) == weeks


@pytest.mark.parametrize(
    ("text", "today", "level"),
    [
        ("had it since christmas, still going", DEC_4, "red_flag"),
        ("the calf twitching started around halloween and hasn't stopped", DEC_4, "red_flag"),
        ("since New Year's the twitches in my arm haven't let up", DEC_4, "red_flag"),
        ("my eyelid keeps twitching every day since october", DEC_4, "red_flag"),
        ("sigo con los brincos en la pierna desde el dia de muertos", DEC_4, "red_flag"),
        ("el parpado me sigue brincando desde el 2 de noviembre, todos los dias", DEC_4, "red_flag"),
        ("sigo con los espasmos desde navidad", DEC_4, "red_flag"),
        ("since thanksgiving my calf keeps twitching, every evening", date(2027, 1, 5), "red_flag"),
    ],
)
def test_a_named_onset_long_ago_is_persisting(screen: Screen, text: str, today: date, level: str) -> None:
    """Twitching still there since a date at least three weeks before the reply is persisting, found by the rules."""
    verdict = screen.assess(text, ReplyContext(today=today))
    assert verdict.level == level
    assert "persisting" in verdict.criteria
    assert any(f.rule.startswith("dated:") and today.isoformat() in f.rule for f in verdict.findings)


@pytest.mark.parametrize(
    "text",
    [
        "since thanksgiving my calf keeps twitching, every evening",
        "my eyelid keeps twitching every day since december",
        "el parpado me sigue brincando desde el 28 de noviembre",
    ],
)
def test_a_recent_named_onset_is_not_persisting(screen: Screen, text: str) -> None:
    """A date less than three weeks before the reply does not make the twitching persisting."""
    verdict = screen.assess(text, ReplyContext(today=DEC_4))
    assert "persisting" not in verdict.criteria
    assert not any(f.rule.startswith("dated:") for f in verdict.findings)


def test_without_the_reply_date_a_named_onset_counts_as_long_enough(screen: Screen) -> None:
    """With no reply date, "since thanksgiving" is not assumed recent: safety first, as for "for months"."""
    verdict = screen.assess("since thanksgiving my calf keeps twitching, every evening")
    assert "persisting" in verdict.criteria
    assert any(f.rule == "dated:reply date unknown, counted as long enough" for f in verdict.findings)


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ({"text": "x", "received_on": "12/04/2026"}, '"received_on" must be a date (YYYY-MM-DD)'),
        ({"text": "x", "received_on": 20261204}, '"received_on" must be a date (YYYY-MM-DD)'),
        ({"text": "x", "received_on": "2026-13-01"}, '"received_on" must be a date (YYYY-MM-DD)'),
    ],
)
def test_check_refuses_a_bad_reply_date(screen: Screen, line: dict[str, object], error: str) -> None:
    """`followup check --jsonl` names the field when "received_on" is not a date, and assesses nothing."""
    out = StringIO()
    assert run_check([json.dumps(line)], out, screen) == 1
    assert json.loads(out.getvalue()) == {"error": error, "level": None}


def test_check_counts_back_from_the_reply_date(screen: Screen) -> None:
    """`followup check --jsonl` reads "received_on": the same reply is persisting in December, not in mid-January."""
    text = "twitching in my calf since christmas, still there"
    out = StringIO()
    lines = [json.dumps({"text": text, "received_on": d}) for d in ("2026-12-04", "2027-01-04")]
    assert run_check(lines, out, screen) == 0
    december, january = (json.loads(line) for line in out.getvalue().splitlines())
    assert "persisting" in december["criteria"]
    assert "persisting" not in january["criteria"]


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ("1 worse 2 no 3 something else", 3),
        ("hi. 1) same 2) no", 2),
        ("1. No.\n2. No.\n3. Yes", 3),
        ("ok\n1 yes\n2 no", 2),
        ("1 and 3", 0),  # an option list: its numbers are the answer
        ("1 2 5", 0),
        ("1 yes", 0),
        ("I had 1 coffee and 2 beers", 0),  # the list starts the reply, a line or a sentence
        ("1 - much worse, and it wasn't 2 weeks ago", 0),  # one answer: "2 weeks" is a duration
        ("1) better 2 no 3) no", 0),  # numbered one way, then another: not read as a list
    ],
)
def test_numbered_answers_are_found(text: str, items: int) -> None:
    """Numbers 1, 2, ... each followed by a word in the same way mark the items of a numbered answer."""
    from followup.redflags.normalise import enumeration_starts

    assert len(enumeration_starts(text)) == items


@pytest.mark.parametrize(
    ("text", "level", "criterion"),
    [
        ("1 same 2 no 3 honestly i just want to end it all", "emergency", "self_harm"),
        ("1) igual 2) no 3) ya no quiero seguir viviendo", "emergency", "self_harm"),
        ("1 worse 2 yes my left hand is weaker 3 no", "red_flag", "weakness"),
        ("1. better\n2. no\n3. no", "none", None),
        ("my husband went rigid and then started shaking, he is confused now", "emergency", "seizure"),
        ("she stiffened and then jerked for about a minute", "emergency", "seizure"),
    ],
)
def test_a_numbered_answer_is_read_item_by_item(screen: Screen, text: str, level: str, criterion: str | None) -> None:
    """A "no" answering one numbered item does not negate the next; a person stiffening then shaking is a seizure."""
    verdict = screen.assess(text)
    assert verdict.level == level, verdict.explanation()
    if criterion:
        assert criterion in verdict.criteria


def test_numbered_items_answered_yes_choose_their_options(screen: Screen) -> None:
    """Against the check-in's numbered list, "1 yes 2 no 3 no 4 yes 5 no" chooses options 1 and 4, and no others."""
    from followup.redflags.verdict import ReplyContext as Context

    question = screen.question("safety_screen")
    verdict = screen.assess("1 yes 2 no 3 no 4 yes 5 no", Context(last_question=question))
    assert set(verdict.criteria) == {*question.options["1"], *question.options["4"]}
    assert all(f.rule.startswith("answer:item") for f in verdict.findings)


@pytest.mark.parametrize(
    "text",
    ["I'm 34 years old and my calf twitches", "my 15 year old son has twitching in his calf", "a 40-year-old man"],
)
def test_an_age_is_not_how_long_the_twitching_has_lasted(screen: Screen, text: str) -> None:
    """ "15 year old" is an age: the rules find no persisting twitching in it (it was read as 780 weeks)."""
    assert "persisting" not in screen.rules.assess(text).criteria
